-- Run by each parallel worker after begin.sql. :snapshot_id is substituted
-- with the quoted id from export_snapshot.sql (SET takes no parameters).
SET TRANSACTION SNAPSHOT :snapshot_id

-- Returns, in order: latest timestamptz, the latest created_at in the
-- snapshot that is not after the database's clock (NULL when there is none);
-- now timestamptz, the database's clock (the transaction's start, when the
-- snapshot was taken). A row stamped after the clock (an application clock
-- gone wrong) must not move the late-data watermark past rows still to
-- arrive. Nor can '-infinity', which no later watermark bound could be
-- compared with in the job. Two backward index scans of the created_at indexes.
SELECT GREATEST(
           (SELECT max(created_at) FROM messages WHERE created_at <= now() AND created_at > '-infinity'),
           (SELECT max(created_at) FROM conversation_events WHERE created_at <= now() AND created_at > '-infinity')),
       now()

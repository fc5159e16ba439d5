-- First statements of the run's transaction: one consistent, read-only
-- snapshot for every extract query, and a ceiling on any single statement.
SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY;
SET LOCAL statement_timeout = '30min';
-- resolve_history.sql's DISTINCT over a day's resolved conversations
-- (about 15 MB at 250,000 of them; 64 MB holds a million) must not spill: a spilling hash
-- aggregate fed by parallel workers sometimes re-partitions without end
-- (seen on PostgreSQL 15: 208,770 batches, 317 s instead of 2 s).
SET LOCAL work_mem = '64MB';

-- First statements of the run's transaction: one consistent, read-only
-- snapshot for every extract query, and a ceiling on any single statement.
SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY;
SET LOCAL statement_timeout = '30min';

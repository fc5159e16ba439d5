-- First statements of the run's transaction: one consistent, read-only
-- snapshot for every extract query, and a ceiling on any single statement.
SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY;
SET LOCAL statement_timeout = '30min';
-- Hash joins and aggregates over a day must not spill: a spilling hash
-- aggregate fed by parallel workers once re-partitioned without end
-- (PostgreSQL 15: 208,770 batches, 317 s instead of 2 s), and events.sql's
-- join with conversations took 4 batches at the default 4 MB.
SET LOCAL work_mem = '64MB';
-- The job's own streams already keep both cores busy. JIT compiled
-- resolve_history.sql for 0.6 s on every day (more than the query ran), and
-- parallel workers only take CPU from the streams beside them.
SET LOCAL jit = off;
SET LOCAL max_parallel_workers_per_gather = 0;

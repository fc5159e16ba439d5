-- Returns: snapshot_id text. Lets parallel day workers share the run's snapshot.
SELECT pg_export_snapshot()

-- Returns: watermark timestamptz, the latest created_at in the snapshot (NULL
-- when empty). Two index lookups.
SELECT GREATEST((SELECT max(created_at) FROM messages), (SELECT max(created_at) FROM conversation_events))

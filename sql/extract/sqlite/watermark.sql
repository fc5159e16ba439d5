-- Returns: the latest created_at in the database (Unix microseconds), NULL when empty.
SELECT max(w) FROM (SELECT max(created_at) AS w FROM messages UNION ALL SELECT max(created_at) FROM conversation_events)

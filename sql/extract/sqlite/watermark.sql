-- Returns: the latest created_at in the database (Unix microseconds), NULL when empty.
-- Only numbers count: SQLite orders text and blobs after every number, so a
-- created_at of the wrong type would otherwise be the maximum (its row is
-- rejected as bad_value). The range keeps the created_at index usable.
SELECT CAST(max(w) AS INTEGER) FROM (
    SELECT max(created_at) AS w FROM messages WHERE created_at <= 9223372036854775807
    UNION ALL
    SELECT max(created_at) FROM conversation_events WHERE created_at <= 9223372036854775807
)

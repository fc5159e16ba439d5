-- Returns: the latest created_at in the database (Unix microseconds) that is
-- not after ?1 (the job's clock, in Unix microseconds: SQLite has none of its
-- own), NULL when there is none. A row stamped after the clock (an
-- application clock gone wrong) must not move the late-data watermark past
-- rows still to arrive. Only numbers count: SQLite orders text and blobs
-- after every number, so the bound also leaves out a created_at of the wrong
-- type (its row is rejected as bad_value). The bound keeps the created_at
-- index usable.
SELECT CAST(max(w) AS INTEGER) FROM (
    SELECT max(created_at) AS w FROM messages WHERE created_at <= ?1
    UNION ALL
    SELECT max(created_at) FROM conversation_events WHERE created_at <= ?1
)

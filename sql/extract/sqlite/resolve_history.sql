-- What a day's resolves need from before the day: for every conversation
-- with a valid resolve in the UTC day (the job passes them, from events.sql)
-- that also has messages before it, its first
-- message and earliest outbound message before the day, and whether a resolve
-- before the day already counted it (see postgres/resolve_history.sql).
-- Parameters: ?1 the day's first instant; ?2 the conversations, a JSON array.
-- Returns, in order: conversation_id, first_at, first_id, first_direction,
--   first_outbound (NULL when none before the day), settled (0 or 1).
WITH r AS (
    SELECT value AS conversation_id FROM json_each(?2)
),
h AS (
    SELECT r.conversation_id,
           (SELECT m.sent_at FROM messages m WHERE m.conversation_id = r.conversation_id AND m.sent_at < ?1
            ORDER BY m.sent_at, m.id LIMIT 1) AS first_at,
           (SELECT m.id FROM messages m WHERE m.conversation_id = r.conversation_id AND m.sent_at < ?1
            ORDER BY m.sent_at, m.id LIMIT 1) AS first_id,
           (SELECT m.direction FROM messages m WHERE m.conversation_id = r.conversation_id AND m.sent_at < ?1
            ORDER BY m.sent_at, m.id LIMIT 1) AS first_direction,
           (SELECT min(m.sent_at) FROM messages m WHERE m.conversation_id = r.conversation_id AND m.sent_at < ?1
              AND m.direction = 'outbound') AS first_outbound
    FROM r
)
SELECT conversation_id, first_at, first_id, first_direction, first_outbound,
       CASE WHEN first_outbound IS NOT NULL AND EXISTS (
           SELECT 1 FROM conversation_events e2
           WHERE e2.conversation_id = h.conversation_id AND e2.kind = 'resolved'
             AND e2.occurred_at >= h.first_outbound AND e2.occurred_at < ?1) THEN 1 ELSE 0 END
FROM h
WHERE first_at IS NOT NULL

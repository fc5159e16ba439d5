-- What a day's resolves need from before the day: for every conversation
-- with a resolve in the UTC day that also has messages before it, its first
-- message and earliest outbound message before the day, and whether a resolve
-- before the day already counted it (see postgres/resolve_history.sql).
-- Parameters: as events.sql.
-- Returns, in order: conversation_id, first_at, first_id, first_direction,
--   first_outbound (NULL when none before the day), settled (0 or 1).
WITH r AS (
    SELECT DISTINCT e.conversation_id
    FROM conversation_events e
    LEFT JOIN conversations c ON c.id = e.conversation_id
    WHERE e.kind = 'resolved' AND e.occurred_at >= ?1 AND e.occurred_at < ?2
      AND (?3 IS NULL OR c.account_id IN (SELECT value FROM json_each(?3))
           OR (?4 IS NOT NULL AND (c.account_id IS NULL OR c.account_id NOT IN (SELECT value FROM json_each(?4)))))
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

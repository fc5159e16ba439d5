-- What a day's resolves need from before the day (DESIGN.md §2): for every
-- conversation with a resolve in the UTC day that also has messages before
-- it, its first message and earliest outbound message before the day, and
-- whether a resolve before the day already counted it. The day's own
-- messages come from messages.sql; the aggregation code combines the two.
-- Looked up per conversation through messages(conversation_id, sent_at) and
-- conversation_events(conversation_id, occurred_at): a conversation that
-- started in the day costs one empty index probe, and history is never scanned.
-- Parameters: as events.sql.
-- Returns, in order: conversation_id bigint, first_at timestamptz,
--   first_id bigint, first_direction text, first_outbound timestamptz (NULL
--   when no outbound message before the day), settled boolean.
WITH r AS (
    SELECT DISTINCT e.conversation_id
    FROM conversation_events e
    LEFT JOIN conversations c ON c.id = e.conversation_id
    WHERE e.kind = 'resolved' AND e.occurred_at >= $1 AND e.occurred_at < $2
      AND ($3::bigint[] IS NULL OR c.account_id = ANY($3)
           OR ($4::bigint[] IS NOT NULL AND (c.account_id IS NULL OR c.account_id <> ALL($4))))
)
SELECT r.conversation_id, h.sent_at, h.id, h.direction, o.at,
       o.at IS NOT NULL AND EXISTS (
           SELECT 1 FROM conversation_events e2
           WHERE e2.conversation_id = r.conversation_id AND e2.kind = 'resolved'
             AND e2.occurred_at >= o.at AND e2.occurred_at < $1)
FROM r
CROSS JOIN LATERAL (
    SELECT m.sent_at, m.id, m.direction FROM messages m
    WHERE m.conversation_id = r.conversation_id AND m.sent_at < $1
    ORDER BY m.sent_at, m.id LIMIT 1
) h
LEFT JOIN LATERAL (
    SELECT min(m.sent_at) AS at FROM messages m
    WHERE m.conversation_id = r.conversation_id AND m.sent_at < $1 AND m.direction = 'outbound'
) o ON true

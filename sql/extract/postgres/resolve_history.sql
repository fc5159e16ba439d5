-- What a day's resolves need from before the day (DESIGN.md §2): for every
-- conversation with a valid resolve in the UTC day that also has messages
-- before it, its first message and earliest outbound message before the
-- day, and whether a resolve before the day already counted it. The day's
-- own messages come from messages.sql; the aggregation code combines the two.
-- The conversations come from the job, which has just read the day's
-- resolves through events.sql: no second scan of the day's events.
-- Looked up per conversation through messages(conversation_id, sent_at) and
-- conversation_events(conversation_id, occurred_at): a conversation that
-- started in the day costs one empty index probe, and history is never scanned.
-- Parameters: $1 timestamptz, the day's first instant; $2 bigint[], the
--   conversations (sorted, distinct).
-- Returns, in order: conversation_id bigint, first_at timestamptz,
--   first_id bigint, first_direction text, first_outbound timestamptz (NULL
--   when no outbound message before the day), settled boolean.
SELECT r.conversation_id, h.sent_at, h.id::bigint, h.direction::text, o.at,
       o.at IS NOT NULL AND EXISTS (
           SELECT 1 FROM conversation_events e2
           WHERE e2.conversation_id = r.conversation_id AND e2.kind = 'resolved'
             AND e2.occurred_at >= o.at AND e2.occurred_at < $1)
FROM unnest($2::bigint[]) AS r(conversation_id)
CROSS JOIN LATERAL (
    SELECT m.sent_at, m.id, m.direction FROM messages m
    WHERE m.conversation_id = r.conversation_id AND m.sent_at < $1
    ORDER BY m.sent_at, m.id LIMIT 1
) h
LEFT JOIN LATERAL (
    SELECT min(m.sent_at) AS at FROM messages m
    WHERE m.conversation_id = r.conversation_id AND m.sent_at < $1 AND m.direction = 'outbound'
) o ON true

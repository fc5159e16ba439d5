-- One UTC day of conversation events, with what decides whether a resolve
-- counts (DESIGN.md §2): the conversation's first message, and the first
-- resolve at or after its earliest outbound message, looked up per event
-- through messages(conversation_id, sent_at) and
-- conversation_events(conversation_id, occurred_at).
-- Parameters: ?1, ?2 the UTC day [start, end) in Unix microseconds; ?3 NULL
--   or a JSON array of account ids; ?4 NULL or a JSON array of every
--   known account (when set, also take events whose account is NULL or unknown).
-- Returns, in order: id, conversation_id, kind, occurred_at, created_at,
--   account_id, channel_id (from conversations; NULL when it is missing),
--   first_direction (NULL unless kind = 'resolved'),
--   counting_event_id (NULL unless kind = 'resolved').
SELECT e.id, e.conversation_id, e.kind, e.occurred_at, e.created_at,
       c.account_id, c.channel_id,
       CASE WHEN e.kind = 'resolved' THEN (
           SELECT m.direction FROM messages m
           WHERE m.conversation_id = e.conversation_id
           ORDER BY m.sent_at, m.id LIMIT 1) END,
       CASE WHEN e.kind = 'resolved' THEN (
           SELECT e2.id FROM conversation_events e2
           WHERE e2.conversation_id = e.conversation_id AND e2.kind = 'resolved'
             AND e2.occurred_at >= (SELECT min(m.sent_at) FROM messages m
                                    WHERE m.conversation_id = e.conversation_id AND m.direction = 'outbound')
           ORDER BY e2.occurred_at, e2.id LIMIT 1) END
FROM conversation_events e
LEFT JOIN conversations c ON c.id = e.conversation_id
WHERE e.occurred_at >= ?1 AND e.occurred_at < ?2
  AND (?3 IS NULL OR c.account_id IN (SELECT value FROM json_each(?3))
       OR (?4 IS NOT NULL AND (c.account_id IS NULL OR c.account_id NOT IN (SELECT value FROM json_each(?4)))))

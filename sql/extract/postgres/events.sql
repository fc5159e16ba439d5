-- One UTC day of conversation events, with what decides whether a resolve
-- counts (DESIGN.md §2): the conversation's first message, and the first
-- resolve at or after its earliest outbound message. Both are looked up per
-- event through messages(conversation_id, sent_at) and
-- conversation_events(conversation_id, occurred_at), never by scanning history.
-- Parameters: $1, $2 timestamptz (the UTC day [start, end)); $3 bigint[] or
--   NULL (this run's accounts; NULL = all); $4 bigint[] or NULL
--   (every known account: when set, also take events whose account is NULL or unknown).
-- Returns, in order: id bigint, conversation_id bigint, kind text,
--   occurred_at timestamptz, created_at timestamptz, account_id bigint,
--   channel_id bigint (both from conversations; NULL when it is missing),
--   first_direction text (NULL unless kind = 'resolved'),
--   counting_event_id bigint (NULL unless kind = 'resolved').
SELECT e.id, e.conversation_id, e.kind, e.occurred_at, e.created_at,
       c.account_id, c.channel_id, f.first_direction, q.id
FROM conversation_events e
LEFT JOIN conversations c ON c.id = e.conversation_id
-- One probe of the conversation's messages gives both its first message's
-- direction and its earliest outbound instant (a measured 2x over two probes).
LEFT JOIN LATERAL (
    SELECT (array_agg(m.direction ORDER BY m.sent_at, m.id))[1] AS first_direction,
           min(m.sent_at) FILTER (WHERE m.direction = 'outbound') AS first_outbound
    FROM messages m
    WHERE m.conversation_id = e.conversation_id
) f ON e.kind = 'resolved'
LEFT JOIN LATERAL (
    SELECT e2.id FROM conversation_events e2
    WHERE e2.conversation_id = e.conversation_id AND e2.kind = 'resolved'
      AND e2.occurred_at >= f.first_outbound
    ORDER BY e2.occurred_at, e2.id LIMIT 1
) q ON e.kind = 'resolved'
WHERE e.occurred_at >= $1 AND e.occurred_at < $2
  AND ($3::bigint[] IS NULL OR c.account_id = ANY($3)
       OR ($4::bigint[] IS NOT NULL AND (c.account_id IS NULL OR c.account_id <> ALL($4))))

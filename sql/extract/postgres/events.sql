-- One UTC day of conversation events, with their conversation's account and
-- channel. Whether a resolve counts (DESIGN.md §2) is decided in the pure
-- aggregation code, from this, the day's messages and resolve_history.sql.
-- Parameters: $1, $2 timestamptz (the UTC day [start, end)); $3 bigint[] or
--   NULL (this run's accounts; NULL = all); $4 bigint[] or NULL (every known
--   account: when set, also take events whose account is NULL or unknown).
-- Returns, in order: id bigint, conversation_id bigint, kind text,
--   occurred_at timestamptz, created_at timestamptz, account_id bigint,
--   channel_id bigint (both from conversations; NULL when it is missing).
-- Reads through conversation_events(occurred_at) and conversations' key.
SELECT e.id, e.conversation_id, e.kind, e.occurred_at, e.created_at, c.account_id, c.channel_id
FROM conversation_events e
LEFT JOIN conversations c ON c.id = e.conversation_id
WHERE e.occurred_at >= $1 AND e.occurred_at < $2
  AND ($3::bigint[] IS NULL OR c.account_id = ANY($3)
       OR ($4::bigint[] IS NOT NULL AND (c.account_id IS NULL OR c.account_id <> ALL($4))))

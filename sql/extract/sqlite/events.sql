-- One UTC day of conversation events, with their conversation's account and
-- channel. Whether a resolve counts is decided in the aggregation code.
-- Parameters: ?1, ?2 the UTC day [start, end) in Unix microseconds; ?3 NULL
--   or a JSON array of account ids; ?4 NULL or a JSON array of every known
--   account (when set, also take events whose account is NULL or unknown).
-- Returns, in order: id, conversation_id, kind, occurred_at, created_at,
--   account_id, channel_id (from conversations; NULL when it is missing).
SELECT e.id, e.conversation_id, e.kind, e.occurred_at, e.created_at, c.account_id, c.channel_id
FROM conversation_events e
LEFT JOIN conversations c ON c.id = e.conversation_id
WHERE e.occurred_at >= ?1 AND e.occurred_at < ?2
  AND (?3 IS NULL OR c.account_id IN (SELECT value FROM json_each(?3))
       OR (?4 IS NOT NULL AND (c.account_id IS NULL OR c.account_id NOT IN (SELECT value FROM json_each(?4)))))

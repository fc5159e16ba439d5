-- One UTC day of messages.
-- Returns, in order: id, account_id, conversation_id, channel_id, contact_id,
--   direction, sender_type, agent_id, sent_at, created_at (timestamps as
--   INTEGER Unix microseconds).
-- Parameters: ?1, ?2 the UTC day [start, end) in Unix microseconds; ?3 NULL
--   or a JSON array of account ids; ?4 NULL or a JSON array of every known account
--   (when set, also take rows whose account is NULL or unknown).
-- Reads through messages(sent_at).
SELECT id, account_id, conversation_id, channel_id, contact_id,
       direction, sender_type, agent_id, sent_at, created_at
FROM messages
WHERE sent_at >= ?1 AND sent_at < ?2
  AND (?3 IS NULL OR account_id IN (SELECT value FROM json_each(?3))
       OR (?4 IS NOT NULL AND (account_id IS NULL OR account_id NOT IN (SELECT value FROM json_each(?4)))))

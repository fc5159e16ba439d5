-- One UTC day of messages, streamed as binary COPY.
-- Returns, in order: id bigint, account_id bigint, conversation_id bigint,
--   channel_id bigint, contact_id bigint, direction text, sender_type text,
--   agent_id bigint, sent_at timestamptz, created_at timestamptz.
-- COPY takes no bind parameters, so these placeholders are replaced with
-- literals that the job formats itself (never user text):
--   :day_start, :day_end   timestamptz literals, the UTC day [start, end)
--   :account_filter        a boolean expression over account_id
-- Reads through messages(sent_at).
COPY (
    SELECT id::bigint, account_id::bigint, conversation_id::bigint, channel_id::bigint, contact_id::bigint,
           direction::text, sender_type::text, agent_id::bigint, sent_at, created_at
    FROM messages
    WHERE sent_at >= :day_start AND sent_at < :day_end
      AND (:account_filter)
) TO STDOUT (FORMAT binary)

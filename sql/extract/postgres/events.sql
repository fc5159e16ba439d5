-- One UTC day of conversation events, with their conversation's account and
-- channel, streamed as binary COPY. Whether a resolve counts (DESIGN.md §2)
-- is decided in the pure aggregation code, from this, the day's messages and
-- resolve_history.sql.
-- Returns, in order: id bigint, conversation_id bigint, kind text,
--   occurred_at timestamptz, created_at timestamptz, account_id bigint,
--   channel_id bigint (both from conversations; NULL when it is missing).
-- COPY takes no bind parameters, so these placeholders are replaced with
-- literals that the job formats itself (never user text):
--   :day_start, :day_end   timestamptz literals, the UTC day [start, end)
--   :account_filter        a boolean expression over c.account_id
-- Reads through conversation_events(occurred_at) and conversations' key.
COPY (
    SELECT e.id::bigint, e.conversation_id::bigint, e.kind::text, e.occurred_at, e.created_at,
           c.account_id::bigint, c.channel_id::bigint
    FROM conversation_events e
    LEFT JOIN conversations c ON c.id = e.conversation_id
    WHERE e.occurred_at >= :day_start AND e.occurred_at < :day_end
      AND (:account_filter)
) TO STDOUT (FORMAT binary)

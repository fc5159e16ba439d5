-- UTC days that received rows after the last published watermark, through the
-- created_at indexes; includes the days of the resolves of conversations that
-- got a late message or a late resolve (either can change which resolve
-- counts: an earlier first message, an earlier outbound one, an earlier
-- resolve that counts instead of one already counted). Only rows placed
-- before the previous watermark can: see the PostgreSQL file.
-- A row whose instant is NULL, text or a blob belongs to no day: the day it
-- arrived counts it (arrival_rejects.sql), so that day is taken.
-- Parameters: ?1 previous watermark (exclusive), ?2 this run's watermark
--   (inclusive), Unix microseconds.
-- Returns: day, as days since 1970-01-01 (UTC).
SELECT DISTINCT day FROM (
    SELECT CASE WHEN sent_at IS NULL OR typeof(sent_at) IN ('text', 'blob') THEN created_at ELSE sent_at END
           / 86400000000 AS day
    FROM messages WHERE created_at > ?1 AND created_at <= ?2
    UNION
    SELECT CASE WHEN occurred_at IS NULL OR typeof(occurred_at) IN ('text', 'blob') THEN created_at ELSE occurred_at END
           / 86400000000
    FROM conversation_events WHERE created_at > ?1 AND created_at <= ?2
    UNION
    SELECT e.occurred_at / 86400000000
    FROM conversation_events e
    WHERE e.kind = 'resolved'
      AND e.conversation_id IN (
          SELECT conversation_id FROM messages
          WHERE created_at > ?1 AND created_at <= ?2 AND sent_at < ?1
          UNION
          SELECT conversation_id FROM conversation_events
          WHERE kind = 'resolved' AND created_at > ?1 AND created_at <= ?2 AND occurred_at < ?1)
)
WHERE day IS NOT NULL
ORDER BY day

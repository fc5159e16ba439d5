-- UTC days that received rows after the last published watermark, found
-- through the created_at indexes (no fixed lookback). A late message or a late
-- resolve can also change which resolve of its conversation counts (an
-- earlier first message, an earlier outbound one, an earlier resolve that
-- counts instead of one already counted), so the days of that conversation's
-- resolves are included. Only rows placed before the previous watermark can
-- do that: a row changes only resolves at or after its own instant, and one
-- placed after the previous watermark is of a day no run has published yet
-- (or of the watermark's own day, which the first branch takes). Without
-- that bound every conversation active in the window would reprocess the
-- days of its earlier resolves.
-- A row without an instant (NULL sent_at or occurred_at) belongs to no day:
-- the day it arrived counts it (arrival_rejects.sql), so that day is taken.
-- A row at '-infinity', 'infinity' or after the year 9999 is on a day no run
-- can name (and one the job could not even hold as a date): its day is left
-- out, as one far in the past or the future is by the job's own bounds.
-- Parameters: $1 timestamptz (previous watermark, exclusive), $2 timestamptz
--   (this run's watermark, inclusive).
-- Returns: day date (UTC).
SELECT DISTINCT day FROM (
    SELECT (COALESCE(sent_at, created_at) AT TIME ZONE 'UTC')::date AS day
    FROM messages WHERE created_at > $1 AND created_at <= $2
    UNION
    SELECT (COALESCE(occurred_at, created_at) AT TIME ZONE 'UTC')::date
    FROM conversation_events WHERE created_at > $1 AND created_at <= $2
    UNION
    SELECT (e.occurred_at AT TIME ZONE 'UTC')::date
    FROM conversation_events e
    WHERE e.kind = 'resolved'
      AND e.conversation_id IN (
          SELECT conversation_id FROM messages
          WHERE created_at > $1 AND created_at <= $2 AND sent_at < $1
          UNION
          SELECT conversation_id FROM conversation_events
          WHERE kind = 'resolved' AND created_at > $1 AND created_at <= $2 AND occurred_at < $1)
) d
WHERE isfinite(day) AND day < DATE '10000-01-01'
ORDER BY day

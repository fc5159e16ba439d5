-- Rejects counted on the day a row reached the database, because no day of
-- its own can count them, so that no row is silently lost:
-- - too_late: rows placed before the late-data horizon, a day too old to
--   reprocess. Rows whose own day this run processes too (a backfill over
--   both days) are counted there, from the same snapshot, so they are no
--   rejects here;
-- - null_field: rows whose instant (sent_at, occurred_at) is NULL, which
--   places them on no day.
-- Parameters: $1, $2 timestamptz (arrival day [start, end)); $3 timestamptz
--   (the horizon: rows placed before it are too late); $4 bigint[] or NULL
--   (this run's accounts; NULL = all); $5 bigint[] or NULL (every known account:
--   when set, also take rows whose account is NULL or unknown); $6 date[]
--   (the UTC days this run processes).
-- Returns, in order: source_table text, reason text, account_id bigint,
--   rows bigint, example_id bigint. Reads through the created_at indexes.
SELECT 'messages', CASE WHEN sent_at IS NULL THEN 'null_field' ELSE 'too_late' END, account_id::bigint, count(*), min(id)::bigint
FROM messages
WHERE created_at >= $1 AND created_at < $2
  AND (sent_at IS NULL
       OR (sent_at < $3 AND NOT ((sent_at AT TIME ZONE 'UTC')::date = ANY($6::date[]))))
  AND ($4::bigint[] IS NULL OR account_id = ANY($4)
       OR ($5::bigint[] IS NOT NULL AND (account_id IS NULL OR account_id <> ALL($5))))
GROUP BY 2, account_id
UNION ALL
SELECT 'conversation_events', CASE WHEN e.occurred_at IS NULL THEN 'null_field' ELSE 'too_late' END,
       c.account_id::bigint, count(*), min(e.id)::bigint
FROM conversation_events e
LEFT JOIN conversations c ON c.id = e.conversation_id
WHERE e.created_at >= $1 AND e.created_at < $2
  AND (e.occurred_at IS NULL
       OR (e.occurred_at < $3 AND NOT ((e.occurred_at AT TIME ZONE 'UTC')::date = ANY($6::date[]))))
  AND ($4::bigint[] IS NULL OR c.account_id = ANY($4)
       OR ($5::bigint[] IS NOT NULL AND (c.account_id IS NULL OR c.account_id <> ALL($5))))
GROUP BY 2, c.account_id

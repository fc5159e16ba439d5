-- Rejects counted on the day a row reached the database, because no day of
-- its own can count them, so that no row is silently lost:
-- - too_late: rows placed before the late-data horizon, a day too old to
--   reprocess. Rows whose own day this run processes too (a backfill over
--   both days) are counted there, from the same snapshot, so they are no
--   rejects here;
-- - null_field: rows whose instant (sent_at, occurred_at) is NULL;
-- - bad_value: rows whose instant is text or a blob (SQLite keeps a value it
--   cannot read as a number as it was given), which sorts after every
--   number, so no day's range holds it.
-- Parameters: ?1, ?2 arrival day [start, end) in Unix microseconds; ?3 the
--   horizon (rows placed before it are too late); ?4 NULL or a JSON array of
--   account ids; ?5 NULL or a JSON array of every
--   known account (when set, also take rows whose account is NULL or unknown);
--   ?6 a JSON array of the UTC days this run processes, as Unix days.
-- Returns, in order: source_table, reason, account_id, rows, example_id.
SELECT 'messages',
       CASE WHEN sent_at IS NULL THEN 'null_field'
            WHEN typeof(sent_at) IN ('text', 'blob') THEN 'bad_value'
            ELSE 'too_late' END AS reason,
       account_id, count(*), min(id)
FROM messages
WHERE created_at >= ?1 AND created_at < ?2
  AND (sent_at IS NULL OR typeof(sent_at) IN ('text', 'blob')
       OR (sent_at < ?3
           AND (CASE WHEN sent_at >= 0 THEN sent_at / 86400000000 ELSE (sent_at + 1) / 86400000000 - 1 END)
               NOT IN (SELECT value FROM json_each(?6))))
  AND (?4 IS NULL OR account_id IN (SELECT value FROM json_each(?4))
       OR (?5 IS NOT NULL AND (account_id IS NULL OR account_id NOT IN (SELECT value FROM json_each(?5)))))
GROUP BY reason, account_id
UNION ALL
SELECT 'conversation_events',
       CASE WHEN e.occurred_at IS NULL THEN 'null_field'
            WHEN typeof(e.occurred_at) IN ('text', 'blob') THEN 'bad_value'
            ELSE 'too_late' END AS reason,
       c.account_id, count(*), min(e.id)
FROM conversation_events e
LEFT JOIN conversations c ON c.id = e.conversation_id
WHERE e.created_at >= ?1 AND e.created_at < ?2
  AND (e.occurred_at IS NULL OR typeof(e.occurred_at) IN ('text', 'blob')
       OR (e.occurred_at < ?3
           AND (CASE WHEN e.occurred_at >= 0 THEN e.occurred_at / 86400000000 ELSE (e.occurred_at + 1) / 86400000000 - 1 END)
               NOT IN (SELECT value FROM json_each(?6))))
  AND (?4 IS NULL OR c.account_id IN (SELECT value FROM json_each(?4))
       OR (?5 IS NOT NULL AND (c.account_id IS NULL OR c.account_id NOT IN (SELECT value FROM json_each(?5)))))
GROUP BY reason, c.account_id

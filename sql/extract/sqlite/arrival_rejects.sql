-- Rows that reached the database during one UTC day but belong to a day too
-- old to reprocess: counted as rejects with reason too_late. Rows whose own
-- day this run processes too (a backfill over both days) are counted there,
-- from the same snapshot, so they are no rejects.
-- Parameters: ?1, ?2 arrival day [start, end) in Unix microseconds; ?3 the
--   horizon (rows placed before it are too late); ?4 NULL or a JSON array of
--   account ids; ?5 NULL or a JSON array of every
--   known account (when set, also take rows whose account is NULL or unknown);
--   ?6 a JSON array of the UTC days this run processes, as Unix days.
-- Returns, in order: source_table, account_id, rows, example_id.
SELECT 'messages', account_id, count(*), min(id)
FROM messages
WHERE created_at >= ?1 AND created_at < ?2 AND sent_at < ?3
  AND (CASE WHEN sent_at >= 0 THEN sent_at / 86400000000 ELSE (sent_at + 1) / 86400000000 - 1 END)
      NOT IN (SELECT value FROM json_each(?6))
  AND (?4 IS NULL OR account_id IN (SELECT value FROM json_each(?4))
       OR (?5 IS NOT NULL AND (account_id IS NULL OR account_id NOT IN (SELECT value FROM json_each(?5)))))
GROUP BY account_id
UNION ALL
SELECT 'conversation_events', c.account_id, count(*), min(e.id)
FROM conversation_events e
LEFT JOIN conversations c ON c.id = e.conversation_id
WHERE e.created_at >= ?1 AND e.created_at < ?2 AND e.occurred_at < ?3
  AND (CASE WHEN e.occurred_at >= 0 THEN e.occurred_at / 86400000000 ELSE (e.occurred_at + 1) / 86400000000 - 1 END)
      NOT IN (SELECT value FROM json_each(?6))
  AND (?4 IS NULL OR c.account_id IN (SELECT value FROM json_each(?4))
       OR (?5 IS NOT NULL AND (c.account_id IS NULL OR c.account_id NOT IN (SELECT value FROM json_each(?5)))))
GROUP BY c.account_id

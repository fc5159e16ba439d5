-- 1 when any reference table already holds a row, else 0 (PostgreSQL and SQLite).
SELECT CASE WHEN EXISTS (SELECT 1 FROM accounts)
              OR EXISTS (SELECT 1 FROM channels)
              OR EXISTS (SELECT 1 FROM agents)
              OR EXISTS (SELECT 1 FROM contacts)
              OR EXISTS (SELECT 1 FROM conversations)
              OR EXISTS (SELECT 1 FROM messages)
              OR EXISTS (SELECT 1 FROM conversation_events)
            THEN 1 ELSE 0 END

-- `seed --truncate` on SQLite: empty every reference table.
DELETE FROM accounts;
DELETE FROM channels;
DELETE FROM agents;
DELETE FROM contacts;
DELETE FROM conversations;
DELETE FROM messages;
DELETE FROM conversation_events;

-- `seed --truncate` on PostgreSQL: empty every reference table in one statement.
TRUNCATE accounts, channels, agents, contacts, conversations, messages, conversation_events

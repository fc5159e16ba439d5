-- Row insert used by `seed` on SQLite; binds follow this column order.
INSERT INTO conversation_events (id, conversation_id, kind, agent_id, occurred_at, created_at) VALUES (?, ?, ?, ?, ?, ?)

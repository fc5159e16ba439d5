-- Row insert used by `seed` on SQLite; binds follow this column order.
INSERT INTO messages (id, account_id, conversation_id, channel_id, contact_id, direction, sender_type, agent_id, sent_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)

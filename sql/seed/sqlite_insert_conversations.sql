-- Row insert used by `seed` on SQLite; binds follow this column order.
INSERT INTO conversations (id, account_id, channel_id, contact_id, created_at) VALUES (?, ?, ?, ?, ?)

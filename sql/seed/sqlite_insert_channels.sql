-- Row insert used by `seed` on SQLite; binds follow this column order.
INSERT INTO channels (id, account_id, platform, name, environment, connected_at, disconnected_at) VALUES (?, ?, ?, ?, ?, ?, ?)

-- Row insert used by `seed` on SQLite; binds follow this column order.
INSERT INTO agents (id, account_id, name) VALUES (?, ?, ?)

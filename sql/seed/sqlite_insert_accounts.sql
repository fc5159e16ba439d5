-- Row insert used by `seed` on SQLite; binds follow this column order.
INSERT INTO accounts (id, name, time_zone, created_at) VALUES (?, ?, ?, ?)

-- Row insert used by `seed` on SQLite; binds follow this column order.
INSERT INTO contacts (id, account_id, platform, external_id) VALUES (?, ?, ?, ?)

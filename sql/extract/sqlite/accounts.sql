-- Dimension snapshot. Returns, in order: id, name, time_zone, created_at (Unix microseconds).
SELECT id, name, time_zone, created_at FROM accounts

-- Dimension snapshot. Returns, in order: id, account_id, platform, name,
--   environment, connected_at, disconnected_at (Unix microseconds).
SELECT id, account_id, platform, name, environment, connected_at, disconnected_at FROM channels

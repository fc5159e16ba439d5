-- Dimension snapshot. Returns, in order: id bigint, account_id bigint,
--   platform text, name text, environment text, connected_at timestamptz,
--   disconnected_at timestamptz.
SELECT id::bigint, account_id::bigint, platform::text, name::text, environment::text, connected_at, disconnected_at
FROM channels

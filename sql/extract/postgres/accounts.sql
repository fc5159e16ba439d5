-- Dimension snapshot. Returns, in order: id bigint, name text, time_zone text, created_at timestamptz.
SELECT id::bigint, name::text, time_zone::text, created_at FROM accounts

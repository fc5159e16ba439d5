-- Bulk load used by `seed` on PostgreSQL; rows are encoded in src/seed/postgres.rs in this column order.
COPY channels (id, account_id, platform, name, environment, connected_at, disconnected_at) FROM STDIN (FORMAT binary)

-- Bulk load used by `seed` on PostgreSQL; rows are encoded in src/seed/postgres.rs in this column order.
COPY accounts (id, name, time_zone, created_at) FROM STDIN (FORMAT binary)

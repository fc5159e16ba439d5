-- Bulk load used by `seed` on PostgreSQL; rows are encoded in src/seed/postgres.rs in this column order.
COPY agents (id, account_id, name) FROM STDIN (FORMAT binary)

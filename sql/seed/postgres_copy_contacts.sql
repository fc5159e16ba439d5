-- Bulk load used by `seed` on PostgreSQL; rows are encoded in src/seed/postgres.rs in this column order.
COPY contacts (id, account_id, platform, external_id) FROM STDIN (FORMAT binary)

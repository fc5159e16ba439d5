-- Bulk load used by `seed` on PostgreSQL; rows are encoded in src/seed/postgres.rs in this column order.
COPY conversations (id, account_id, channel_id, contact_id, created_at) FROM STDIN (FORMAT binary)

-- Bulk load used by `seed` on PostgreSQL; rows are encoded in src/seed/postgres.rs in this column order.
COPY messages (id, account_id, conversation_id, channel_id, contact_id, direction, sender_type, agent_id, sent_at, created_at) FROM STDIN (FORMAT binary)

-- Bulk load used by `seed` on PostgreSQL; rows are encoded in src/seed/postgres.rs in this column order.
COPY conversation_events (id, conversation_id, kind, agent_id, occurred_at, created_at) FROM STDIN (FORMAT binary)

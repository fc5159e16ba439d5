-- Baseline (b) of bench/run_vs_copy.sh: the job's per-day aggregates computed
-- inside PostgreSQL with INSERT … SELECT … GROUP BY, as a dbt model would.
-- psql variables: :day_start, :day_end (quoted timestamptz literals).
DROP TABLE IF EXISTS b_contact_activity, b_agent_activity, b_proactive_messages, b_resolved_conversations;
CREATE UNLOGGED TABLE b_contact_activity (account_id bigint, channel_id bigint, contact_id bigint, hour timestamptz, first_at timestamptz, last_at timestamptz);
CREATE UNLOGGED TABLE b_agent_activity (account_id bigint, channel_id bigint, agent_id bigint, hour timestamptz, first_at timestamptz, last_at timestamptz);
CREATE UNLOGGED TABLE b_proactive_messages (account_id bigint, channel_id bigint, slot_start timestamptz, messages bigint);
CREATE UNLOGGED TABLE b_resolved_conversations (account_id bigint, channel_id bigint, conversation_id bigint, resolved_at timestamptz, event_id bigint);

INSERT INTO b_contact_activity
SELECT account_id, channel_id, contact_id, date_trunc('hour', sent_at), min(sent_at), max(sent_at)
FROM messages WHERE sent_at >= :day_start AND sent_at < :day_end
GROUP BY 1, 2, 3, 4;

INSERT INTO b_agent_activity
SELECT account_id, channel_id, agent_id, date_trunc('hour', sent_at), min(sent_at), max(sent_at)
FROM messages WHERE sent_at >= :day_start AND sent_at < :day_end
  AND direction = 'outbound' AND sender_type = 'agent' AND agent_id IS NOT NULL
GROUP BY 1, 2, 3, 4;

INSERT INTO b_proactive_messages
SELECT account_id, channel_id, to_timestamp(floor(extract(epoch FROM sent_at) / 900) * 900), count(*)
FROM messages WHERE sent_at >= :day_start AND sent_at < :day_end
  AND direction = 'outbound' AND sender_type = 'proactive_api'
GROUP BY 1, 2, 3;

INSERT INTO b_resolved_conversations
SELECT c.account_id, c.channel_id, e.conversation_id, e.occurred_at, e.id
FROM conversation_events e
JOIN conversations c ON c.id = e.conversation_id
JOIN LATERAL (SELECT m.direction FROM messages m WHERE m.conversation_id = e.conversation_id
              ORDER BY m.sent_at, m.id LIMIT 1) f ON f.direction = 'inbound'
JOIN LATERAL (SELECT min(m.sent_at) AS at FROM messages m
              WHERE m.conversation_id = e.conversation_id AND m.direction = 'outbound') o ON true
JOIN LATERAL (SELECT e2.id FROM conversation_events e2
              WHERE e2.conversation_id = e.conversation_id AND e2.kind = 'resolved' AND e2.occurred_at >= o.at
              ORDER BY e2.occurred_at, e2.id LIMIT 1) q ON q.id = e.id
WHERE e.kind = 'resolved' AND e.occurred_at >= :day_start AND e.occurred_at < :day_end;

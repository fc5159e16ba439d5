-- Reference operational schema (PostgreSQL), DESIGN.md section 1.
--
-- This is the contract between the operational database and account-usage:
-- `seed` fills it and the queries in sql/extract/ read it. It is deliberately
-- free of foreign keys and CHECK constraints, because real operational data
-- breaks them; the job validates rows itself and counts rejects.
--
-- Loadable with `psql -f sql/source/postgres.sql` into an empty database, and
-- safe to load twice (every statement is IF NOT EXISTS).

CREATE TABLE IF NOT EXISTS accounts (
    id          bigint PRIMARY KEY,
    name        text,
    time_zone   text,          -- IANA name: the account's default reporting zone
    created_at  timestamptz
);

CREATE TABLE IF NOT EXISTS channels (
    id              bigint PRIMARY KEY,
    account_id      bigint,
    platform        text,      -- open set: facebook, twitter, whatsapp, sms, ...
    name            text,
    environment     text,      -- production, test, development
    connected_at    timestamptz,
    disconnected_at timestamptz
);

CREATE TABLE IF NOT EXISTS agents (
    id          bigint PRIMARY KEY,
    account_id  bigint,
    name        text
);

CREATE TABLE IF NOT EXISTS contacts (
    id          bigint PRIMARY KEY,
    account_id  bigint,
    platform    text,
    external_id text
);

CREATE TABLE IF NOT EXISTS conversations (
    id          bigint PRIMARY KEY,
    account_id  bigint,
    channel_id  bigint,
    contact_id  bigint,
    created_at  timestamptz
);

CREATE TABLE IF NOT EXISTS messages (
    id              bigint PRIMARY KEY,
    account_id      bigint,
    conversation_id bigint,
    channel_id      bigint,
    contact_id      bigint,
    direction       text,      -- inbound, outbound
    sender_type     text,      -- contact, agent, proactive_api, automation
    agent_id        bigint,    -- set when sender_type = agent
    sent_at         timestamptz,
    created_at      timestamptz -- when the row reached the database
);

CREATE TABLE IF NOT EXISTS conversation_events (
    id              bigint PRIMARY KEY,
    conversation_id bigint,
    kind            text,      -- resolved, reopened
    agent_id        bigint,
    occurred_at     timestamptz,
    created_at      timestamptz
);

-- The extract reads a UTC day by these indexes and never scans a table.
CREATE INDEX IF NOT EXISTS messages_sent_at_idx ON messages (sent_at);
CREATE INDEX IF NOT EXISTS messages_conversation_sent_at_idx ON messages (conversation_id, sent_at);
CREATE INDEX IF NOT EXISTS messages_created_at_idx ON messages (created_at);
CREATE INDEX IF NOT EXISTS conversation_events_occurred_at_idx ON conversation_events (occurred_at);
CREATE INDEX IF NOT EXISTS conversation_events_conversation_occurred_at_idx ON conversation_events (conversation_id, occurred_at);
CREATE INDEX IF NOT EXISTS conversation_events_created_at_idx ON conversation_events (created_at);

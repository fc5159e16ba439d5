-- Reference operational schema (SQLite), DESIGN.md section 1.
--
-- The same tables, columns and indexes as postgres.sql. SQLite has no
-- timestamp type, so every timestamp column holds one representation:
--
--     INTEGER microseconds since 1970-01-01T00:00:00Z (Unix epoch, UTC).
--
-- e.g. 2026-03-01T12:00:00Z is 1772366400000000. This keeps instants exact to
-- the microsecond (PostgreSQL's timestamptz precision), sortable, and cheap to
-- range-scan through the indexes. Read one back with
-- `datetime(sent_at / 1000000, 'unixepoch')`.
--
-- No foreign keys or CHECK constraints, on purpose: the job validates rows
-- itself and counts rejects. Safe to load twice (IF NOT EXISTS everywhere).

CREATE TABLE IF NOT EXISTS accounts (
    id          INTEGER PRIMARY KEY,
    name        TEXT,
    time_zone   TEXT,          -- IANA name: the account's default reporting zone
    created_at  INTEGER
);

CREATE TABLE IF NOT EXISTS channels (
    id              INTEGER PRIMARY KEY,
    account_id      INTEGER,
    platform        TEXT,      -- open set: facebook, twitter, whatsapp, sms, ...
    name            TEXT,
    environment     TEXT,      -- production, test, development
    connected_at    INTEGER,
    disconnected_at INTEGER
);

CREATE TABLE IF NOT EXISTS agents (
    id          INTEGER PRIMARY KEY,
    account_id  INTEGER,
    name        TEXT
);

CREATE TABLE IF NOT EXISTS contacts (
    id          INTEGER PRIMARY KEY,
    account_id  INTEGER,
    platform    TEXT,
    external_id TEXT
);

CREATE TABLE IF NOT EXISTS conversations (
    id          INTEGER PRIMARY KEY,
    account_id  INTEGER,
    channel_id  INTEGER,
    contact_id  INTEGER,
    created_at  INTEGER
);

CREATE TABLE IF NOT EXISTS messages (
    id              INTEGER PRIMARY KEY,
    account_id      INTEGER,
    conversation_id INTEGER,
    channel_id      INTEGER,
    contact_id      INTEGER,
    direction       TEXT,      -- inbound, outbound
    sender_type     TEXT,      -- contact, agent, proactive_api, automation
    agent_id        INTEGER,    -- set when sender_type = agent
    sent_at         INTEGER,
    created_at      INTEGER -- when the row reached the database
);

CREATE TABLE IF NOT EXISTS conversation_events (
    id              INTEGER PRIMARY KEY,
    conversation_id INTEGER,
    kind            TEXT,      -- resolved, reopened
    agent_id        INTEGER,
    occurred_at     INTEGER,
    created_at      INTEGER
);

-- The extract reads a UTC day by these indexes and never scans a table.
CREATE INDEX IF NOT EXISTS messages_sent_at_idx ON messages (sent_at);
CREATE INDEX IF NOT EXISTS messages_conversation_sent_at_idx ON messages (conversation_id, sent_at);
CREATE INDEX IF NOT EXISTS messages_created_at_idx ON messages (created_at);
CREATE INDEX IF NOT EXISTS conversation_events_occurred_at_idx ON conversation_events (occurred_at);
CREATE INDEX IF NOT EXISTS conversation_events_conversation_occurred_at_idx ON conversation_events (conversation_id, occurred_at);
CREATE INDEX IF NOT EXISTS conversation_events_created_at_idx ON conversation_events (created_at);

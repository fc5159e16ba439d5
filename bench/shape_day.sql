-- One UTC day of a chosen shape in the reference schema (sql/source/postgres.sql),
-- for bench/run_vs_copy.sh. Deterministic: the same variables give the same rows.
--
--   psql -v day="'2026-03-02'" -v conversations=400000 -v per_conversation=5 \
--        -v contacts=600000 -v agents=2000 -v accounts=50 -v span_minutes=5 \
--        -f bench/shape_day.sql
--
-- Every conversation starts with an inbound message from its contact at a
-- time spread evenly over the day, then alternates agent replies and
-- contact messages, `per_conversation` messages over `span_minutes`. One
-- conversation in 20 is opened by the proactive API instead. Two thirds are
-- resolved, within five minutes of their last message; one resolve in ten
-- is later reopened. Long conversations may run past midnight into the next
-- day, as real ones do.
\set ON_ERROR_STOP 1
\i sql/source/postgres.sql

INSERT INTO accounts
SELECT a, 'account ' || a,
       (ARRAY['UTC', 'Europe/Brussels', 'America/New_York', 'Asia/Kathmandu', 'Australia/Lord_Howe'])[1 + a % 5],
       :day::timestamptz - interval '400 days'
FROM generate_series(1, :accounts) a;

-- Four channels per account, the fourth a test channel.
INSERT INTO channels
SELECT a * 4 + c, a, (ARRAY['facebook', 'whatsapp', 'sms', 'twitter'])[1 + c],
       'channel ' || c, CASE WHEN c = 3 THEN 'test' ELSE 'production' END,
       :day::timestamptz - interval '300 days', NULL
FROM generate_series(1, :accounts) a, generate_series(0, 3) c;

INSERT INTO agents
SELECT g, 1 + (g - 1) % :accounts, 'agent ' || g FROM generate_series(1, :agents) g;

INSERT INTO contacts
SELECT k, 1 + k % :accounts, 'whatsapp', 'ext-' || k FROM generate_series(1, :contacts) k;

-- A conversation's contact is a multiplicative hash of its id; its account
-- is the contact's and its channel one of the account's production three.
CREATE TEMP TABLE shape AS
SELECT id,
       contact,
       1 + contact % :accounts AS account,
       (1 + contact % :accounts) * 4 + id % 3 AS channel,
       :day::timestamptz + (id - 1) * (interval '1 day' / :conversations) AS started,
       id % 20 = 0 AS proactive
FROM (SELECT id, 1 + (id * 2654435761) % :contacts AS contact
      FROM generate_series(1, :conversations) id) s;

INSERT INTO conversations SELECT id, account, channel, contact, started FROM shape;

INSERT INTO messages
SELECT s.id * :per_conversation + k,
       s.account, s.id, s.channel, s.contact,
       CASE WHEN k % 2 = 1 OR (k = 0 AND s.proactive) THEN 'outbound' ELSE 'inbound' END,
       CASE WHEN k = 0 AND s.proactive THEN 'proactive_api'
            WHEN k % 2 = 1 THEN 'agent' ELSE 'contact' END,
       -- agent g belongs to account 1 + (g - 1) % accounts
       CASE WHEN k % 2 = 1 THEN s.account + ((s.id + k) % (:agents / :accounts)) * :accounts END,
       s.started + k * (interval '1 minute' * :span_minutes / :per_conversation),
       s.started + k * (interval '1 minute' * :span_minutes / :per_conversation) + interval '40 ms'
FROM shape s, generate_series(0, :per_conversation - 1) k;

INSERT INTO conversation_events
SELECT 2 * s.id, s.id, 'resolved', NULL,
       s.started + interval '1 minute' * :span_minutes + (s.id % 300) * interval '1 second',
       s.started + interval '1 minute' * :span_minutes + (s.id % 300) * interval '1 second' + interval '40 ms'
FROM shape s WHERE s.id % 3 <> 0;

INSERT INTO conversation_events
SELECT 2 * s.id + 1, s.id, 'reopened', NULL,
       s.started + interval '1 minute' * :span_minutes + interval '15 minutes',
       s.started + interval '1 minute' * :span_minutes + interval '15 minutes 40 ms'
FROM shape s WHERE s.id % 3 <> 0 AND s.id % 10 = 1;

//! Named report cases with hand-checked expected values, on a small source
//! written by hand (every row below), through the real binary.

use chrono::DateTime;
use serde_json::Value;

use crate::common::{self, TempDir};
use crate::run::Src;
use crate::wh;

/// The hand-made source: four accounts, each for its own cases.
fn source_sql() -> String {
    let mut sql = String::new();
    let jan = wh::micros("2026-01-01T00:00:00Z");
    for (id, zone) in [
        (1, "America/New_York"),
        (2, "Australia/Lord_Howe"),
        (3, "Asia/Kathmandu"),
        (4, "UTC"),
    ] {
        sql.push_str(&format!(
            "INSERT INTO accounts VALUES ({id}, 'Account {id}', '{zone}', {jan});\n"
        ));
    }
    let disconnect = wh::micros("2026-11-05T12:00:00+05:45");
    // Channel 35 is connected for exactly the local date 5 November: from
    // one Kathmandu midnight to the next, on the buckets' edges.
    let (midnight_5th, midnight_6th) = (
        wh::micros("2026-11-05T00:00:00+05:45"),
        wh::micros("2026-11-06T00:00:00+05:45"),
    );
    sql.push_str(&format!(
        "INSERT INTO channels VALUES (35, 3, 'line', 'Channel 35', 'production', {midnight_5th}, {midnight_6th});\n"
    ));
    for (id, account, platform, env, disconnected) in [
        (11, 1, "sms", "production", "NULL".to_string()),
        (21, 2, "whatsapp", "production", "NULL".to_string()),
        (31, 3, "whatsapp", "production", "NULL".to_string()),
        (32, 3, "sms", "production", "NULL".to_string()),
        (33, 3, "email", "test", "NULL".to_string()),
        (34, 3, "facebook", "production", disconnect.to_string()),
        (41, 4, "sms", "production", "NULL".to_string()),
    ] {
        sql.push_str(&format!(
            "INSERT INTO channels VALUES ({id}, {account}, '{platform}', 'Channel {id}', '{env}', {jan}, {disconnected});\n"
        ));
    }
    let mut next_id = 1000;
    let mut msg = |account: i64,
                   conversation: i64,
                   channel: i64,
                   contact: i64,
                   dir: &str,
                   sender: &str,
                   agent: &str,
                   at: &str| {
        next_id += 1;
        let t = wh::micros(at);
        sql.push_str(&format!(
            "INSERT INTO messages VALUES ({next_id}, {account}, {conversation}, {channel}, {contact}, '{dir}', '{sender}', {agent}, {t}, {t});\n"
        ));
    };
    // 1: one proactive message in the middle of every local hour of New York's DST days.
    for (first, hours, conversation) in [("2026-03-08T05:30:00Z", 23, 100), ("2026-11-01T04:30:00Z", 25, 101)] {
        for k in 0..hours {
            let t = wh::micros(first) + k * 3_600_000_000;
            let at = DateTime::from_timestamp_micros(t).unwrap().to_rfc3339();
            msg(1, conversation, 11, 1, "outbound", "proactive_api", "NULL", &at);
        }
    }
    // (account, conversation, channel, contact, direction, sender_type, agent_id, sent_at)
    #[rustfmt::skip]
    let messages = [
        // 2: Lord Howe: the 90-minute hour of 2026-04-05 and the 30-minute one of 2026-10-04.
        (2, 200, 21, 2, "outbound", "proactive_api", "NULL", "2026-04-05T00:30:00+11:00"),
        (2, 200, 21, 2, "outbound", "proactive_api", "NULL", "2026-04-05T01:15:00+11:00"),
        (2, 200, 21, 2, "outbound", "proactive_api", "NULL", "2026-04-05T01:45:00+10:30"),
        (2, 201, 21, 2, "outbound", "proactive_api", "NULL", "2026-10-04T01:50:00+10:30"),
        (2, 201, 21, 2, "outbound", "proactive_api", "NULL", "2026-10-04T02:40:00+11:00"),
        // 3: Kathmandu's month end cuts the UTC hour 18:00Z at 18:15Z.
        (3, 300, 31, 9, "outbound", "agent", "301", "2026-03-31T23:50:00+05:45"),
        (3, 300, 31, 9, "outbound", "agent", "302", "2026-04-01T00:10:00+05:45"),
        (3, 300, 31, 9, "outbound", "agent", "303", "2026-03-31T23:50:00+05:45"),
        (3, 300, 31, 9, "outbound", "agent", "303", "2026-04-01T00:10:00+05:45"),
        // UMC: 501 late in November, 502 in October, 503 on two platforms.
        (3, 310, 31, 501, "inbound", "contact", "NULL", "2026-11-20T10:00:00+05:45"),
        (3, 311, 31, 502, "inbound", "contact", "NULL", "2026-10-05T10:00:00+05:45"),
        (3, 312, 31, 503, "inbound", "contact", "NULL", "2026-11-04T10:00:00+05:45"),
        (3, 313, 32, 503, "inbound", "contact", "NULL", "2026-11-06T10:00:00+05:45"),
        // 4: resolved, reopened and resolved again (counts once, at the first);
        // first message outbound (never counts); resolved before any reply,
        // then answered and resolved the next day (counts then).
        (4, 4001, 41, 41, "inbound", "contact", "NULL", "2026-03-31T10:00:00Z"),
        (4, 4001, 41, 41, "outbound", "agent", "401", "2026-03-31T10:05:00Z"),
        (4, 4001, 41, 41, "inbound", "contact", "NULL", "2026-03-31T11:05:00Z"),
        (4, 4001, 41, 41, "outbound", "agent", "401", "2026-03-31T11:10:00Z"),
        (4, 4002, 41, 42, "outbound", "proactive_api", "NULL", "2026-03-31T12:00:00Z"),
        (4, 4002, 41, 42, "inbound", "contact", "NULL", "2026-03-31T12:10:00Z"),
        (4, 4002, 41, 42, "outbound", "agent", "401", "2026-03-31T12:20:00Z"),
        (4, 4003, 41, 43, "inbound", "contact", "NULL", "2026-03-31T13:00:00Z"),
        (4, 4003, 41, 43, "outbound", "agent", "401", "2026-04-01T09:00:00Z"),
        // 3: a conversation of channel 32 (sms) whose messages went
        // through channel 31 (whatsapp): resolved counts it under sms.
        (3, 3201, 31, 504, "inbound", "contact", "NULL", "2026-03-20T10:00:00+05:45"),
        (3, 3201, 31, 504, "outbound", "agent", "304", "2026-03-20T10:05:00+05:45"),
    ];
    for (account, conversation, channel, contact, dir, sender, agent, at) in messages {
        msg(account, conversation, channel, contact, dir, sender, agent, at);
    }
    for (conv, channel, contact) in [(4001, 41, 41), (4002, 41, 42), (4003, 41, 43)] {
        sql.push_str(&format!(
            "INSERT INTO conversations VALUES ({conv}, 4, {channel}, {contact}, {jan});\n"
        ));
    }
    sql.push_str(&format!(
        "INSERT INTO conversations VALUES (3201, 3, 32, 504, {});\n",
        wh::micros("2026-03-20T10:00:00+05:45")
    ));
    for (id, conv, kind, at) in [
        (7, 3201, "resolved", "2026-03-20T10:30:00+05:45"),
        (1, 4001, "resolved", "2026-03-31T10:30:00Z"),
        (2, 4001, "reopened", "2026-03-31T11:00:00Z"),
        (3, 4001, "resolved", "2026-03-31T11:30:00Z"),
        (4, 4002, "resolved", "2026-03-31T12:30:00Z"),
        (5, 4003, "resolved", "2026-03-31T13:10:00Z"),
        (6, 4003, "resolved", "2026-04-01T09:30:00Z"),
    ] {
        let t = wh::micros(at);
        sql.push_str(&format!(
            "INSERT INTO conversation_events VALUES ({id}, {conv}, '{kind}', NULL, {t}, {t});\n"
        ));
    }
    sql
}

struct Named {
    _dir: TempDir,
    warehouse: String,
}

async fn named() -> Named {
    let dir = TempDir::new("named");
    let src = Src::sqlite(&dir);
    let schema = std::fs::read_to_string(format!("{}/sql/source/sqlite.sql", env!("CARGO_MANIFEST_DIR"))).unwrap();
    src.exec(&format!("{schema}\n{}", source_sql())).await;
    let warehouse = dir.path().join("wh").display().to_string();
    for (from, to) in [("2026-03-07", "2026-04-06"), ("2026-09-30", "2026-12-01")] {
        common::run_ok(&[
            "run",
            "--source",
            src.url(),
            "--warehouse",
            &warehouse,
            "--from",
            from,
            "--to",
            to,
            "--parallel",
            "2",
        ]);
    }
    Named { _dir: dir, warehouse }
}

fn report(n: &Named, account: &str, from: &str, to: &str, extra: &[&str]) -> Value {
    let mut args = vec![
        "report",
        "--warehouse",
        &n.warehouse,
        "--account",
        account,
        "--from",
        from,
        "--to",
        to,
        "--format",
        "json",
    ];
    args.extend_from_slice(extra);
    serde_json::from_str(&common::run_ok(&args)).unwrap()
}

/// (bucket_start, group, value) of the rows.
fn rows(v: &Value) -> Vec<(String, String, u64)> {
    v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["bucket_start"].as_str().unwrap().to_string(),
                r["group"].as_str().unwrap().to_string(),
                r["value"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn totals(v: &Value) -> Vec<(Option<String>, u64)> {
    v["totals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["group"].as_str().map(str::to_string), t["value"].as_u64().unwrap()))
        .collect()
}

fn r(bucket: &str, group: &str, value: u64) -> (String, String, u64) {
    (bucket.into(), group.into(), value)
}

#[tokio::test]
async fn hand_checked_cases() {
    let n = named().await;
    let hourly = ["--interval", "hourly", "--metric", "proactive_messages"];

    // New York spring forward: 23 hourly buckets, one message in each.
    let v = report(&n, "1", "2026-03-08", "2026-03-08", &hourly);
    let got = rows(&v);
    assert_eq!(got.len(), 23);
    assert!(got.iter().all(|(_, g, v)| g == "sms" && *v == 1));
    assert_eq!(got[1].0, "2026-03-08T01:00:00-05:00");
    assert_eq!(got[2].0, "2026-03-08T03:00:00-04:00");
    assert_eq!(totals(&v), [(Some("sms".into()), 23), (None, 23)]);
    // Fall back: 25 buckets; 01:00 twice, told apart by offset.
    let got = rows(&report(&n, "1", "2026-11-01", "2026-11-01", &hourly));
    assert_eq!(got.len(), 25);
    assert!(got.iter().all(|(_, _, v)| *v == 1));
    assert_eq!(got[1].0, "2026-11-01T01:00:00-04:00");
    assert_eq!(got[2].0, "2026-11-01T01:00:00-05:00");

    // Lord Howe: 90 minutes from 01:00 (+11) on 2026-04-05; 30 from 02:30 (+11) on 2026-10-04.
    let got = rows(&report(&n, "2", "2026-04-05", "2026-04-05", &hourly));
    assert_eq!(got.len(), 24);
    assert_eq!(got[0], r("2026-04-05T00:00:00+11:00", "whatsapp", 1));
    assert_eq!(got[1], r("2026-04-05T01:00:00+11:00", "whatsapp", 2));
    assert_eq!(got[2], r("2026-04-05T02:00:00+10:30", "whatsapp", 0));
    let got = rows(&report(&n, "2", "2026-10-04", "2026-10-04", &hourly));
    assert_eq!(got.len(), 24);
    assert_eq!(got[1], r("2026-10-04T01:00:00+10:30", "whatsapp", 1));
    assert_eq!(got[2], r("2026-10-04T02:30:00+11:00", "whatsapp", 1));
    assert_eq!(got[3], r("2026-10-04T03:00:00+11:00", "whatsapp", 0));

    // Kathmandu, daily across a month end that cuts a UTC hour: agents 301
    // and 303 before midnight, 302 and 303 after; three distinct in all.
    let v = report(&n, "3", "2026-03-31", "2026-04-01", &["--metric", "active_agents"]);
    assert_eq!(
        rows(&v),
        [
            r("2026-03-31T00:00:00+05:45", "whatsapp", 2),
            r("2026-04-01T00:00:00+05:45", "whatsapp", 2)
        ]
    );
    assert_eq!(totals(&v), [(Some("whatsapp".into()), 3), (None, 3)]);

    // UMC for 3 to 10 November is all of November; 503 is on two platforms
    // and counts once in the grand total.
    let umc = ["--metric", "unique_monthly_contacts"];
    let v = report(&n, "3", "2026-11-03", "2026-11-10", &umc);
    assert_eq!(
        rows(&v),
        [
            r("2026-11-01T00:00:00+05:45", "sms", 1),
            r("2026-11-01T00:00:00+05:45", "whatsapp", 2)
        ]
    );
    assert_eq!(
        totals(&v),
        [(Some("sms".into()), 1), (Some("whatsapp".into()), 2), (None, 2)]
    );
    // 20 October to 5 November: two months.
    let v = report(&n, "3", "2026-10-20", "2026-11-05", &umc);
    assert_eq!(
        rows(&v),
        [
            r("2026-10-01T00:00:00+05:45", "sms", 0),
            r("2026-10-01T00:00:00+05:45", "whatsapp", 1),
            r("2026-11-01T00:00:00+05:45", "sms", 1),
            r("2026-11-01T00:00:00+05:45", "whatsapp", 2)
        ]
    );
    assert_eq!(
        totals(&v),
        [(Some("sms".into()), 1), (Some("whatsapp".into()), 3), (None, 3)]
    );

    // Channels: the test channel never counts; facebook is disconnected
    // during 5 November, so it counts that day and not after. Line (35) is
    // connected at the 5th's first instant and disconnected at the 6th's:
    // a channel connected at a bucket's end, or disconnected at its start,
    // was not connected during it (DESIGN §2), so it counts on the 5th only.
    let v = report(&n, "3", "2026-11-04", "2026-11-06", &["--metric", "channels"]);
    assert_eq!(
        rows(&v),
        [
            r("2026-11-04T00:00:00+05:45", "facebook", 1),
            r("2026-11-04T00:00:00+05:45", "line", 0),
            r("2026-11-04T00:00:00+05:45", "sms", 1),
            r("2026-11-04T00:00:00+05:45", "whatsapp", 1),
            r("2026-11-05T00:00:00+05:45", "facebook", 1),
            r("2026-11-05T00:00:00+05:45", "line", 1),
            r("2026-11-05T00:00:00+05:45", "sms", 1),
            r("2026-11-05T00:00:00+05:45", "whatsapp", 1),
            r("2026-11-06T00:00:00+05:45", "facebook", 0),
            r("2026-11-06T00:00:00+05:45", "line", 0),
            r("2026-11-06T00:00:00+05:45", "sms", 1),
            r("2026-11-06T00:00:00+05:45", "whatsapp", 1),
        ]
    );
    assert_eq!(
        totals(&v),
        [
            (Some("facebook".into()), 1),
            (Some("line".into()), 1),
            (Some("sms".into()), 1),
            (Some("whatsapp".into()), 1),
            (None, 4)
        ]
    );
    // The same edges as a range's: line is in neither the 4th's report nor
    // the 6th's, hourly or daily, and in every hour of the 5th, its last
    // one included.
    for day in ["2026-11-04", "2026-11-06"] {
        for interval in ["daily", "hourly"] {
            let v = report(&n, "3", day, day, &["--metric", "channels", "--interval", interval]);
            assert!(
                rows(&v).iter().all(|(_, group, _)| group != "line"),
                "{day} {interval}: {v}"
            );
            assert!(!totals(&v).contains(&(Some("line".into()), 1)), "{day} {interval}");
        }
    }
    let v = report(
        &n,
        "3",
        "2026-11-05",
        "2026-11-05",
        &["--metric", "channels", "--interval", "hourly"],
    );
    let line: Vec<_> = rows(&v).into_iter().filter(|(_, group, _)| group == "line").collect();
    assert_eq!(line.len(), 24);
    assert!(line.iter().all(|(_, _, value)| *value == 1), "{line:?}");
    assert_eq!(line[23].0, "2026-11-05T23:00:00+05:45");

    // A resolved conversation is grouped by the conversation's channel,
    // its messages by theirs (DESIGN §2).
    let metrics = ["--metric", "resolved_conversations", "--metric", "active_agents"];
    let by_metric = |v: &Value, metric: &str| -> Vec<(String, String, u64)> {
        let all = v["rows"].as_array().unwrap();
        let mine: Vec<Value> = all.iter().filter(|r| r["metric"] == metric).cloned().collect();
        rows(&serde_json::json!({ "rows": mine }))
    };
    for (group_by, conversations_group, messages_group) in [("platform", "sms", "whatsapp"), ("channel", "32", "31")] {
        let v = report(
            &n,
            "3",
            "2026-03-20",
            "2026-03-20",
            &[&metrics[..], &["--group-by", group_by]].concat(),
        );
        assert_eq!(
            by_metric(&v, "resolved_conversations"),
            [r("2026-03-20T00:00:00+05:45", conversations_group, 1)]
        );
        assert_eq!(
            by_metric(&v, "active_agents"),
            [r("2026-03-20T00:00:00+05:45", messages_group, 1)]
        );
    }

    // Resolved: 4001 once (not again after reopening); 4002 never (first
    // message outbound); 4003 on 1 April, its first resolve after a reply.
    let v = report(
        &n,
        "4",
        "2026-03-31",
        "2026-04-01",
        &["--metric", "resolved_conversations"],
    );
    assert_eq!(
        rows(&v),
        [
            r("2026-03-31T00:00:00+00:00", "sms", 1),
            r("2026-04-01T00:00:00+00:00", "sms", 1)
        ]
    );
    assert_eq!(totals(&v), [(Some("sms".into()), 2), (None, 2)]);
    // Grouped by channel, the group is the channel id and its name is a label.
    let v = report(
        &n,
        "4",
        "2026-03-31",
        "2026-04-01",
        &["--metric", "resolved_conversations", "--group-by", "channel"],
    );
    assert_eq!(rows(&v)[0].1, "41");
    assert_eq!(v["group_labels"]["41"], "Channel 41");
}

//! A naive reference implementation of the Account usage report, straight
//! from raw source rows and DESIGN.md §2–§4. It shares no bucketing or
//! counting code with the engine: buckets come from converting every
//! instant to local time and walking the clock minute by minute.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, Offset, Timelike, Utc};
use chrono_tz::Tz;
use sqlx::{Connection, SqliteConnection};

pub struct Message {
    pub id: i64,
    pub account: i64,
    pub conversation: i64,
    pub channel: i64,
    pub contact: i64,
    pub inbound: bool,
    pub sender: String,
    pub agent: Option<i64>,
    pub sent_at: i64,
}

pub struct Channel {
    pub id: i64,
    pub account: i64,
    pub platform: String,
    pub production: bool,
    pub connected_at: i64,
    pub disconnected_at: Option<i64>,
}

pub struct Source {
    pub messages: Vec<Message>,
    /// (id, conversation, occurred_at) of resolves
    pub resolves: Vec<(i64, i64, i64)>,
    /// conversation -> channel
    pub conversation_channel: HashMap<i64, (i64, i64)>,
    pub channels: Vec<Channel>,
}

impl Source {
    /// Every row of a SQLite source whose instant lies in `[lo, hi)` (the
    /// published UTC days).
    pub async fn load(url: &str, lo: i64, hi: i64) -> Source {
        let mut c = SqliteConnection::connect(url).await.unwrap();
        type MessageRow = (i64, i64, i64, i64, i64, String, String, Option<i64>, i64);
        let rows: Vec<MessageRow> = sqlx::query_as(
            "SELECT id, account_id, conversation_id, channel_id, contact_id, direction, sender_type, agent_id, sent_at
             FROM messages",
        )
        .fetch_all(&mut c)
        .await
        .unwrap();
        // Every message matters to "first message" and "earliest outbound";
        // only those in the published days are counted by message metrics.
        let messages = rows
            .into_iter()
            .map(|r| Message {
                id: r.0,
                account: r.1,
                conversation: r.2,
                channel: r.3,
                contact: r.4,
                inbound: r.5 == "inbound",
                sender: r.6,
                agent: r.7,
                sent_at: r.8,
            })
            .collect();
        let resolves: Vec<(i64, i64, i64)> =
            sqlx::query_as("SELECT id, conversation_id, occurred_at FROM conversation_events WHERE kind = 'resolved'")
                .fetch_all(&mut c)
                .await
                .unwrap();
        let convs: Vec<(i64, i64, i64)> = sqlx::query_as("SELECT id, account_id, channel_id FROM conversations")
            .fetch_all(&mut c)
            .await
            .unwrap();
        let channels: Vec<(i64, i64, String, String, i64, Option<i64>)> =
            sqlx::query_as("SELECT id, account_id, platform, environment, connected_at, disconnected_at FROM channels")
                .fetch_all(&mut c)
                .await
                .unwrap();
        let _ = (lo, hi);
        Source {
            messages,
            resolves,
            conversation_channel: convs.into_iter().map(|(id, a, ch)| (id, (a, ch))).collect(),
            channels: channels
                .into_iter()
                .map(|c| Channel {
                    id: c.0,
                    account: c.1,
                    platform: c.2,
                    production: c.3 == "production",
                    connected_at: c.4,
                    disconnected_at: c.5,
                })
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interval {
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Quarterly,
    Yearly,
}

pub struct Query {
    pub account: i64,
    pub tz: Tz,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub interval: Interval,
    pub by_channel: bool,
    pub channels: Option<BTreeSet<i64>>,
}

/// (metric, bucket_start, group, value) and (metric, group, value).
pub type Rows = Vec<(String, String, String, u64)>;
pub type Totals = Vec<(String, Option<String>, u64)>;
/// `(metric, bucket_start, value over all groups)`, every bucket.
pub type BucketTotals = Vec<(String, String, u64)>;

fn utc(t: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t).unwrap()
}

fn local(tz: &Tz, t: i64) -> NaiveDateTime {
    utc(t).with_timezone(tz).naive_local()
}

/// The first instant whose local time is at or after `target`: walks UTC
/// minutes from well before it.
fn first_instant_at_or_after(tz: &Tz, target: NaiveDateTime) -> i64 {
    let mut t = target.and_utc().timestamp_micros() - 16 * 3_600_000_000;
    while local(tz, t) < target {
        t += 60_000_000;
    }
    t
}

thread_local! {
    static DAY_STARTS: std::cell::RefCell<HashMap<(&'static str, NaiveDate), i64>> = Default::default();
    static HOUR_STARTS: std::cell::RefCell<HashMap<(&'static str, NaiveDateTime, i32), i64>> = Default::default();
}

fn day_start(tz: &Tz, d: NaiveDate) -> i64 {
    let key = (tz.name(), d);
    if let Some(t) = DAY_STARTS.with(|m| m.borrow().get(&key).copied()) {
        return t;
    }
    let t = first_instant_at_or_after(tz, d.and_time(NaiveTime::MIN));
    DAY_STARTS.with(|m| m.borrow_mut().insert(key, t));
    t
}

/// The start of the (unclipped) bucket holding `t`.
fn bucket_start(tz: &Tz, interval: Interval, t: i64) -> i64 {
    let l = local(tz, t);
    let d = l.date();
    match interval {
        Interval::Daily => day_start(tz, d),
        Interval::Weekly => day_start(tz, d - Duration::days(d.weekday().num_days_from_monday() as i64)),
        Interval::Monthly => day_start(tz, d.with_day(1).unwrap()),
        Interval::Quarterly => day_start(
            tz,
            NaiveDate::from_ymd_opt(d.year(), (d.month0() / 3) * 3 + 1, 1).unwrap(),
        ),
        Interval::Yearly => day_start(tz, NaiveDate::from_ymd_opt(d.year(), 1, 1).unwrap()),
        Interval::Hourly => {
            let hour = d.and_hms_opt(l.hour(), 0, 0).unwrap();
            let offset_of = |x: i64| utc(x).with_timezone(tz).offset().fix().local_minus_utc();
            let key = (tz.name(), hour, offset_of(t));
            if let Some(s) = HOUR_STARTS.with(|m| m.borrow().get(&key).copied()) {
                return s;
            }
            // An hour's bucket is one stretch of the clock showing that hour:
            // it begins where the clock shows the whole hour, or where it
            // comes to this hour from another (a DST change). So a repeated
            // hour is two buckets, and so is an hour the clock leaves and
            // comes back to (Chatham falls back from 03:45 to 02:45).
            let minute = 60_000_000;
            let clock_hour = |x: i64| {
                let l = local(tz, x);
                (l.date(), l.hour())
            };
            let mut start = t - t.rem_euclid(minute);
            while local(tz, start).minute() != 0 && clock_hour(start - minute) == clock_hour(t) {
                start -= minute;
            }
            HOUR_STARTS.with(|m| m.borrow_mut().insert(key, start));
            start
        }
    }
}

fn label(tz: &Tz, t: i64) -> String {
    utc(t)
        .with_timezone(tz)
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
}

/// All bucket starts of the range, clipped (walks the range five minutes at
/// a time: every offset in use is a multiple of five minutes).
fn all_buckets(tz: &Tz, interval: Interval, lo: i64, hi: i64) -> Vec<i64> {
    let mut out = BTreeSet::new();
    let mut t = lo;
    while t < hi {
        out.insert(bucket_start(tz, interval, t).max(lo));
        t += 5 * 60_000_000;
    }
    out.into_iter().collect()
}

pub fn report(src: &Source, q: &Query, published: (i64, i64)) -> (Rows, Totals, BucketTotals) {
    let tz = &q.tz;
    let (lo, hi) = (day_start(tz, q.from), day_start(tz, q.to + Duration::days(1)));
    let month_lo = day_start(tz, q.from.with_day(1).unwrap());
    let next_month = |d: NaiveDate| {
        if d.month() == 12 {
            NaiveDate::from_ymd_opt(d.year() + 1, 1, 1).unwrap()
        } else {
            NaiveDate::from_ymd_opt(d.year(), d.month() + 1, 1).unwrap()
        }
    };
    let month_hi = day_start(tz, next_month(q.to));
    let channel_of: HashMap<i64, &Channel> = src.channels.iter().map(|c| (c.id, c)).collect();
    let group = |channel: i64| {
        if q.by_channel {
            (String::new(), channel)
        } else {
            (channel_of[&channel].platform.clone(), 0)
        }
    };
    let in_filter = |channel: i64| q.channels.as_ref().is_none_or(|s| s.contains(&channel));
    let counted = |t: i64| t >= published.0 && t < published.1;
    let mine: Vec<&Message> = src
        .messages
        .iter()
        .filter(|m| m.account == q.account && in_filter(m.channel) && counted(m.sent_at))
        .collect();

    type G = (String, i64);
    let mut rows = Vec::new();
    let mut totals = Vec::new();
    let mut bucket_totals = Vec::new();
    let mut emit = |metric: &str,
                    buckets: &[i64],
                    cells: &BTreeMap<(i64, G), u64>,
                    per_bucket: &BTreeMap<i64, u64>,
                    per_group: &BTreeMap<G, u64>,
                    grand: u64| {
        let groups: BTreeSet<&G> = cells.iter().filter(|(_, v)| **v > 0).map(|((_, g), _)| g).collect();
        for b in buckets {
            bucket_totals.push((
                metric.to_string(),
                label(tz, *b),
                per_bucket.get(b).copied().unwrap_or(0),
            ));
            for g in &groups {
                let name = if q.by_channel { g.1.to_string() } else { g.0.clone() };
                rows.push((
                    metric.to_string(),
                    label(tz, *b),
                    name,
                    cells.get(&(*b, (*g).clone())).copied().unwrap_or(0),
                ));
            }
        }
        for g in &groups {
            let name = if q.by_channel { g.1.to_string() } else { g.0.clone() };
            totals.push((metric.to_string(), Some(name), per_group.get(*g).copied().unwrap_or(0)));
        }
        totals.push((metric.to_string(), None, grand));
    };
    let interval_buckets = all_buckets(tz, q.interval, lo, hi);
    let clip = |t: i64| bucket_start(tz, q.interval, t).max(lo);

    // active_agents
    {
        let mut cells: BTreeMap<(i64, G), HashSet<i64>> = BTreeMap::new();
        let mut by_bucket: BTreeMap<i64, HashSet<i64>> = BTreeMap::new();
        let mut per: BTreeMap<G, HashSet<i64>> = BTreeMap::new();
        let mut grand = HashSet::new();
        for m in mine
            .iter()
            .filter(|m| !m.inbound && m.sender == "agent" && m.agent.is_some())
        {
            if m.sent_at < lo || m.sent_at >= hi {
                continue;
            }
            let (a, g) = (m.agent.unwrap(), group(m.channel));
            cells.entry((clip(m.sent_at), g.clone())).or_default().insert(a);
            by_bucket.entry(clip(m.sent_at)).or_default().insert(a);
            per.entry(g).or_default().insert(a);
            grand.insert(a);
        }
        let c = cells.into_iter().map(|(k, s)| (k, s.len() as u64)).collect();
        let p = per.into_iter().map(|(k, s)| (k, s.len() as u64)).collect();
        let b = by_bucket.into_iter().map(|(k, s)| (k, s.len() as u64)).collect();
        emit("active_agents", &interval_buckets, &c, &b, &p, grand.len() as u64);
    }
    // channels
    {
        let mut cells = BTreeMap::new();
        let mut by_bucket = BTreeMap::new();
        let mut per = BTreeMap::new();
        let mut grand = 0;
        let live = |c: &Channel, s: i64, e: i64| c.connected_at < e && c.disconnected_at.is_none_or(|d| d > s);
        for c in src
            .channels
            .iter()
            .filter(|c| c.account == q.account && c.production && in_filter(c.id))
        {
            for (i, b) in interval_buckets.iter().enumerate() {
                let end = interval_buckets.get(i + 1).copied().unwrap_or(hi);
                if live(c, *b, end) {
                    *cells.entry((*b, group(c.id))).or_insert(0) += 1;
                    *by_bucket.entry(*b).or_insert(0) += 1;
                }
            }
            if live(c, lo, hi) {
                *per.entry(group(c.id)).or_insert(0) += 1;
                grand += 1;
            }
        }
        emit("channels", &interval_buckets, &cells, &by_bucket, &per, grand);
    }
    // proactive_messages
    {
        let mut cells = BTreeMap::new();
        let mut by_bucket = BTreeMap::new();
        let mut per = BTreeMap::new();
        let mut grand = 0;
        for m in mine.iter().filter(|m| !m.inbound && m.sender == "proactive_api") {
            if m.sent_at < lo || m.sent_at >= hi {
                continue;
            }
            *cells.entry((clip(m.sent_at), group(m.channel))).or_insert(0) += 1;
            *by_bucket.entry(clip(m.sent_at)).or_insert(0) += 1;
            *per.entry(group(m.channel)).or_insert(0) += 1;
            grand += 1;
        }
        emit("proactive_messages", &interval_buckets, &cells, &by_bucket, &per, grand);
    }
    // resolved_conversations
    {
        let mut by_conversation: HashMap<i64, Vec<&Message>> = HashMap::new();
        for m in &src.messages {
            by_conversation.entry(m.conversation).or_default().push(m);
        }
        let mut resolves: HashMap<i64, Vec<(i64, i64)>> = HashMap::new();
        for (id, conv, at) in &src.resolves {
            resolves.entry(*conv).or_default().push((*at, *id));
        }
        let mut cells = BTreeMap::new();
        let mut by_bucket = BTreeMap::new();
        let mut per = BTreeMap::new();
        let mut grand = 0;
        for (conv, events) in &resolves {
            let Some(&(account, channel)) = src.conversation_channel.get(conv) else {
                continue;
            };
            if account != q.account || !in_filter(channel) {
                continue;
            }
            let Some(msgs) = by_conversation.get(conv) else {
                continue;
            };
            let first = msgs.iter().min_by_key(|m| (m.sent_at, m.id)).unwrap();
            if !first.inbound {
                continue;
            }
            let Some(out) = msgs.iter().filter(|m| !m.inbound).map(|m| m.sent_at).min() else {
                continue;
            };
            let Some(&(at, _)) = events.iter().filter(|(at, _)| *at >= out).min() else {
                continue;
            };
            if at < lo || at >= hi || !counted(at) {
                continue;
            }
            *cells.entry((clip(at), group(channel))).or_insert(0) += 1;
            *by_bucket.entry(clip(at)).or_insert(0) += 1;
            *per.entry(group(channel)).or_insert(0) += 1;
            grand += 1;
        }
        emit(
            "resolved_conversations",
            &interval_buckets,
            &cells,
            &by_bucket,
            &per,
            grand,
        );
    }
    // unique_monthly_contacts: whole months
    {
        let months = all_buckets(tz, Interval::Monthly, month_lo, month_hi);
        let mut cells: BTreeMap<(i64, G), HashSet<i64>> = BTreeMap::new();
        let mut by_bucket: BTreeMap<i64, HashSet<i64>> = BTreeMap::new();
        let mut per: BTreeMap<G, HashSet<i64>> = BTreeMap::new();
        let mut grand = HashSet::new();
        for m in &mine {
            if m.sent_at < month_lo || m.sent_at >= month_hi {
                continue;
            }
            let b = bucket_start(tz, Interval::Monthly, m.sent_at);
            let g = group(m.channel);
            cells.entry((b, g.clone())).or_default().insert(m.contact);
            by_bucket.entry(b).or_default().insert(m.contact);
            per.entry(g).or_default().insert(m.contact);
            grand.insert(m.contact);
        }
        let c = cells.into_iter().map(|(k, s)| (k, s.len() as u64)).collect();
        let p = per.into_iter().map(|(k, s)| (k, s.len() as u64)).collect();
        let b = by_bucket.into_iter().map(|(k, s)| (k, s.len() as u64)).collect();
        emit("unique_monthly_contacts", &months, &c, &b, &p, grand.len() as u64);
    }
    (rows, totals, bucket_totals)
}

//! Pure, deterministic synthetic operational data (no I/O).
//!
//! [`generate`] walks the seeded window one UTC hour at a time and hands each
//! hour's new rows to a callback as a [`Batch`]. The same [`SeedParams`] always
//! give the same rows in the same order, whatever sink receives them.
//!
//! What must hold, and what the tests check:
//! - exactly `messages_per_day * days` messages, spread over accounts by a
//!   heavy-tailed account weight and over hours by the *local* daily and
//!   weekly cycle of each account's time zone;
//! - every feature the report's edge cases need: proactive-first and never
//!   answered conversations, resolves before any reply, reopen-and-resolve,
//!   automation replies, test and development channels, channels connected and
//!   disconnected mid-window, shift-working agents, heavy-tailed contacts and
//!   about 2% late rows (`created_at` hours to days after `sent_at`).
//!
//! Memory is bounded by the entities (contacts, agents, channels), not by the
//! number of messages: message rows leave in the hour they were made.

use std::collections::HashMap;

use chrono::{Datelike, NaiveDate, Offset, TimeZone, Timelike};
use chrono_tz::Tz;

use super::rng::Rng;
use crate::model::*;

/// What to generate. Validated by the CLI before it gets here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedParams {
    pub accounts: u32,
    pub days: u32,
    /// First UTC day of the window.
    pub start: NaiveDate,
    /// Messages per day on average over the window, all accounts together.
    pub messages_per_day: u64,
    pub seed: u64,
}

/// New rows of one step of the generator.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Batch {
    pub accounts: Vec<Account>,
    pub channels: Vec<Channel>,
    pub agents: Vec<Agent>,
    pub contacts: Vec<Contact>,
    pub conversations: Vec<Conversation>,
    pub messages: Vec<Message>,
    pub events: Vec<ConversationEvent>,
}

/// Row counts per table, in the order of [`TABLES`](super::TABLES).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RowCounts(pub [u64; 7]);

impl Batch {
    pub fn counts(&self) -> RowCounts {
        RowCounts([
            self.accounts.len() as u64,
            self.channels.len() as u64,
            self.agents.len() as u64,
            self.contacts.len() as u64,
            self.conversations.len() as u64,
            self.messages.len() as u64,
            self.events.len() as u64,
        ])
    }
}

impl std::ops::AddAssign for RowCounts {
    fn add_assign(&mut self, other: RowCounts) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a += b;
        }
    }
}

/// Zones handed to accounts in turn: the awkward ones first, so that even a
/// handful of accounts covers +05:45, +05:30, 30-minute DST, DST at midnight,
/// and the 23- and 25-hour days of the northern and southern hemispheres.
pub const ZONES: &[&str] = &[
    "Asia/Kathmandu",
    "Asia/Kolkata",
    "America/New_York",
    "Australia/Lord_Howe",
    "America/Santiago",
    "Europe/London",
    "America/St_Johns",
    "Pacific/Chatham",
    "UTC",
    "Europe/Berlin",
    "America/Los_Angeles",
    "Asia/Tokyo",
    "America/Sao_Paulo",
    "Australia/Sydney",
];

/// Platform mix of production channels (relative weights).
const PLATFORMS: &[(&str, f64)] = &[
    ("whatsapp", 25.0),
    ("facebook", 18.0),
    ("instagram", 14.0),
    ("sms", 10.0),
    ("web_messenger", 10.0),
    ("email", 6.0),
    ("twitter", 5.0),
    ("apple_messages_for_business", 4.0),
    ("line", 3.0),
    ("telegram", 2.0),
    ("wechat", 2.0),
    ("viber", 1.0),
];

/// Conversation starts by local hour of day: quiet nights, busy office hours.
const HOUR_WEIGHTS: [f64; 24] = [
    0.15, 0.10, 0.07, 0.06, 0.06, 0.10, 0.25, 0.50, 0.90, 1.30, 1.50, 1.55, //
    1.40, 1.45, 1.50, 1.45, 1.35, 1.20, 1.00, 0.85, 0.70, 0.55, 0.40, 0.25,
];

/// Conversation starts by local weekday, Monday first.
const WEEKDAY_WEIGHTS: [f64; 7] = [1.15, 1.10, 1.05, 1.05, 1.00, 0.55, 0.40];

/// Shift start hours (local) of agents, and how common each is.
const SHIFT_STARTS: &[(u32, f64)] = &[
    (8, 0.35),
    (9, 0.20),
    (12, 0.10),
    (14, 0.10),
    (16, 0.10),
    (6, 0.05),
    (22, 0.05),
    (0, 0.05),
];
const SHIFT_HOURS: u32 = 8;

/// Share of messages whose row reaches the database late.
const LATE_SHARE: f64 = 0.02;

#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Inbound first, answered by an agent (sometimes after an automated ack).
    Answered,
    /// Inbound only; sometimes resolved anyway (which must not count).
    Unanswered,
    /// Starts with a proactive outbound message (never counts as resolved).
    Proactive,
    /// Inbound, answered by automation and resolved by it.
    AutomationOnly,
    /// Resolved before any reply, then answered and resolved again.
    ResolvedBeforeReply,
}

const KINDS: &[(Kind, f64)] = &[
    (Kind::Answered, 0.60),
    (Kind::Unanswered, 0.12),
    (Kind::Proactive, 0.12),
    (Kind::AutomationOnly, 0.08),
    (Kind::ResolvedBeforeReply, 0.08),
];

struct ChannelPick {
    id: i64,
    platform: &'static str,
    weight: f64,
    connected_at: UnixMicros,
    disconnected_at: Option<UnixMicros>,
}

struct AccountState {
    id: i64,
    channels: Vec<ChannelPick>,
    agent_ids: Vec<i64>,
    /// Agents on shift for each local hour of the week (Monday 00:00 = 0).
    on_shift: Vec<Vec<i64>>,
    contacts: HashMap<&'static str, Vec<i64>>,
}

#[derive(Default)]
struct Ids {
    channel: i64,
    agent: i64,
    contact: i64,
    conversation: i64,
    message: i64,
    event: i64,
}

fn next(id: &mut i64) -> i64 {
    *id += 1;
    *id
}

/// Generates the whole window, calling `emit` once per UTC hour (the first call
/// also carries accounts, channels and agents). Stops at the first error of
/// `emit` and returns it.
pub fn generate<E>(params: &SeedParams, mut emit: impl FnMut(Batch) -> Result<(), E>) -> Result<(), E> {
    let window_start = utc_midnight(params.start);
    let hours = params.days as usize * 24;
    let window_end = window_start + hours as i64 * MICROS_PER_HOUR;
    let mut ids = Ids::default();
    let mut setup_rng = Rng::fork(params.seed, 1);
    let mut first = Batch::default();

    let mut accounts = Vec::with_capacity(params.accounts as usize);
    let mut zones = Vec::with_capacity(params.accounts as usize);
    let mut weights = Vec::with_capacity(params.accounts as usize);
    // Heavy-tailed account sizes: account 1 is the largest.
    let account_weight = |index: usize| 1.0 / ((index + 1) as f64).powf(0.8);
    let weight_sum: f64 = (0..params.accounts as usize).map(account_weight).sum();
    for index in 0..params.accounts as usize {
        let weight = account_weight(index);
        let expected_daily = params.messages_per_day as f64 * weight / weight_sum;
        let (account, tz) = make_account(index, window_start, &mut setup_rng, &mut first);
        let state = make_account_state(
            index,
            &account,
            expected_daily,
            (window_start, window_end),
            &mut ids,
            &mut setup_rng,
            &mut first,
        );
        accounts.push(state);
        zones.push(tz);
        weights.push(weight);
    }

    // Per (hour, account): the local hour of week and the message budget.
    // Budgets are rounded cumulatively so that they add up exactly.
    let mut local_hour_of_week = vec![0u8; hours * accounts.len()];
    let mut intensity = vec![0f64; hours * accounts.len()];
    for hour in 0..hours {
        let instant = to_datetime(window_start + hour as i64 * MICROS_PER_HOUR)
            .expect("seed window within chrono's range")
            .naive_utc();
        for (a, tz) in zones.iter().enumerate() {
            let offset = tz.offset_from_utc_datetime(&instant).fix();
            let local = instant + offset;
            let how = local.weekday().num_days_from_monday() * 24 + local.hour();
            local_hour_of_week[hour * zones.len() + a] = how as u8;
            intensity[hour * zones.len() + a] = weights[a]
                * HOUR_WEIGHTS[local.hour() as usize]
                * WEEKDAY_WEIGHTS[local.weekday().num_days_from_monday() as usize];
        }
    }
    let total_messages = params.messages_per_day * params.days as u64;
    let total_intensity: f64 = intensity.iter().sum();
    let mut cumulative = 0.0;
    let mut allotted = 0u64;
    let budgets: Vec<u64> = intensity
        .iter()
        .map(|w| {
            cumulative += w;
            let target = ((cumulative / total_intensity) * total_messages as f64).round() as u64;
            let target = target.min(total_messages);
            let budget = target - allotted;
            allotted = target;
            budget
        })
        .collect();
    let budgets = {
        // Float rounding can leave the last cell a message short.
        let mut b = budgets;
        if let Some(last) = b.last_mut() {
            *last += total_messages - allotted;
        }
        b
    };

    let mut rng = Rng::fork(params.seed, 2);
    let mut batch = first;
    for hour in 0..hours {
        let hour_start = window_start + hour as i64 * MICROS_PER_HOUR;
        for (a, account) in accounts.iter_mut().enumerate() {
            let cell = hour * zones.len() + a;
            let mut budget = budgets[cell];
            let how = local_hour_of_week[cell] as usize;
            while budget > 0 {
                budget -= conversation(account, hour_start, how, budget, &mut ids, &mut rng, &mut batch);
            }
        }
        emit(std::mem::take(&mut batch))?;
    }
    Ok(())
}

fn make_account(index: usize, window_start: UnixMicros, rng: &mut Rng, out: &mut Batch) -> (Account, Tz) {
    let zone = ZONES[index % ZONES.len()];
    let tz: Tz = zone.parse().expect("ZONES are valid IANA names");
    let id = index as i64 + 1;
    let account = Account {
        id,
        name: format!("Account {id}"),
        time_zone: zone.to_string(),
        created_at: window_start - rng.range(60, 900) * MICROS_PER_DAY - rng.range(0, MICROS_PER_DAY),
    };
    out.accounts.push(account.clone());
    (account, tz)
}

#[allow(clippy::too_many_arguments)]
fn make_account_state(
    index: usize,
    account: &Account,
    expected_daily: f64,
    (window_start, window_end): (UnixMicros, UnixMicros),
    ids: &mut Ids,
    rng: &mut Rng,
    out: &mut Batch,
) -> AccountState {
    let platform_weights: Vec<f64> = PLATFORMS.iter().map(|(_, w)| *w).collect();
    let window = window_end - window_start;
    let mut channels = Vec::new();
    let mut add_channel = |platform: &'static str,
                           environment: Environment,
                           connected_at: UnixMicros,
                           disconnected_at: Option<UnixMicros>,
                           weight: f64,
                           out: &mut Batch| {
        let id = next(&mut ids.channel);
        let ordinal = channels.len() + 1;
        let label = match environment {
            Environment::Production => String::new(),
            Environment::Test => " (test)".into(),
            Environment::Development => " (dev)".into(),
        };
        out.channels.push(Channel {
            id,
            account_id: account.id,
            platform,
            name: format!("{} {platform} {ordinal}{label}", account.name),
            environment,
            connected_at,
            disconnected_at,
        });
        channels.push(ChannelPick {
            id,
            platform,
            weight,
            connected_at,
            disconnected_at,
        });
    };
    let before_window = |rng: &mut Rng| account.created_at + rng.range(0, window_start - account.created_at);

    let base = 2 + rng.range(0, 4) as usize;
    for i in 0..base {
        let (platform, weight) = PLATFORMS[rng.weighted(&platform_weights)];
        // The last base channel is disconnected part-way through the window.
        let disconnected = (i == base - 1).then(|| window_start + (window as f64 * (0.5 + 0.3 * rng.unit())) as i64);
        let connected = before_window(rng);
        add_channel(platform, Environment::Production, connected, disconnected, weight, out);
    }
    // Connected part-way through the window.
    let (platform, weight) = PLATFORMS[rng.weighted(&platform_weights)];
    let connected = window_start + (window as f64 * (0.2 + 0.3 * rng.unit())) as i64;
    add_channel(platform, Environment::Production, connected, None, weight, out);
    // Disconnected long before the window: never active in it.
    if rng.chance(0.3) {
        let (platform, weight) = PLATFORMS[rng.weighted(&platform_weights)];
        let connected = account.created_at;
        let disconnected = before_window(rng);
        add_channel(
            platform,
            Environment::Production,
            connected,
            Some(disconnected),
            weight,
            out,
        );
    }
    // Test and development channels carry a trickle of traffic of their own.
    let (platform, _) = PLATFORMS[rng.weighted(&platform_weights)];
    add_channel(platform, Environment::Test, before_window(rng), None, 0.4, out);
    if index.is_multiple_of(2) {
        let (platform, _) = PLATFORMS[rng.weighted(&platform_weights)];
        add_channel(platform, Environment::Development, before_window(rng), None, 0.3, out);
    }

    let agent_count = (3.0 + expected_daily / 2500.0).min(300.0) as usize;
    let shift_weights: Vec<f64> = SHIFT_STARTS.iter().map(|(_, w)| *w).collect();
    let mut on_shift = vec![Vec::new(); 7 * 24];
    let mut agent_ids = Vec::with_capacity(agent_count);
    for _ in 0..agent_count {
        let id = next(&mut ids.agent);
        out.agents.push(Agent {
            id,
            account_id: account.id,
            name: format!("Agent {id}"),
        });
        agent_ids.push(id);
        let shift_start = SHIFT_STARTS[rng.weighted(&shift_weights)].0;
        let first_day_off = rng.range(0, 7) as u32;
        for day in 0..7u32 {
            if day == first_day_off || day == (first_day_off + 1) % 7 {
                continue;
            }
            for h in 0..SHIFT_HOURS {
                on_shift[((day * 24 + shift_start + h) % 168) as usize].push(id);
            }
        }
    }
    AccountState {
        id: account.id,
        channels,
        agent_ids,
        on_shift,
        contacts: HashMap::new(),
    }
}

/// One conversation starting in the hour, with at most `max_messages`
/// messages. Returns how many messages it made (at least one).
fn conversation(
    account: &mut AccountState,
    hour_start: UnixMicros,
    local_hour_of_week: usize,
    max_messages: u64,
    ids: &mut Ids,
    rng: &mut Rng,
    out: &mut Batch,
) -> u64 {
    let start = hour_start + rng.range(0, MICROS_PER_HOUR);
    let channel_index = pick_channel(account, start, rng);
    let (channel_id, platform) = (
        account.channels[channel_index].id,
        account.channels[channel_index].platform,
    );
    let contact_id = pick_contact(account, platform, ids, rng, out);
    // Nobody on shift: the conversation waits for the next shift to start.
    let waited_hours = (0..168)
        .find(|h| !account.on_shift[(local_hour_of_week + h) % 168].is_empty())
        .unwrap_or(0);
    let agent_id = {
        let shift = &account.on_shift[(local_hour_of_week + waited_hours) % 168];
        if shift.is_empty() {
            account.agent_ids[rng.range(0, account.agent_ids.len() as i64) as usize]
        } else {
            shift[rng.range(0, shift.len() as i64) as usize]
        }
    };
    let wait = if waited_hours == 0 {
        0
    } else {
        waited_hours as i64 * MICROS_PER_HOUR - (start - hour_start) + rng.range(0, 20 * MICROS_PER_MINUTE)
    };
    let conversation_id = next(&mut ids.conversation);
    out.conversations.push(Conversation {
        id: conversation_id,
        account_id: account.id,
        channel_id,
        contact_id,
        created_at: start,
    });

    use Direction::*;
    use SenderType as S;
    let kind = if max_messages == 1 {
        Kind::Unanswered
    } else {
        KINDS[rng.weighted(&KINDS.iter().map(|(_, w)| *w).collect::<Vec<_>>())].0
    };
    let mut convo = ConversationWriter {
        conversation_id,
        account_id: account.id,
        channel_id,
        contact_id,
        clock: start,
        budget: max_messages,
        sent: 0,
        ids,
        rng,
        out,
    };
    let reply_gap = |rng: &mut Rng| rng.log_uniform(20 * MICROS_PER_SECOND, 30 * MICROS_PER_MINUTE);
    // The first agent reply also waits for a shift to start.
    let first_reply_gap = |rng: &mut Rng| wait + reply_gap(rng);
    let answer_gap = |rng: &mut Rng| rng.log_uniform(10 * MICROS_PER_SECOND, 2 * MICROS_PER_HOUR);
    match kind {
        Kind::Answered => {
            convo.message(Inbound, S::Contact, None, 0);
            if convo.rng.chance(0.3) {
                let gap = convo.rng.range(MICROS_PER_SECOND, 5 * MICROS_PER_SECOND);
                convo.message(Outbound, S::Automation, None, gap);
            }
            let exchanges = 1 + geometric(convo.rng, 0.35);
            for exchange in 0..exchanges {
                let gap = if exchange == 0 {
                    first_reply_gap(convo.rng)
                } else {
                    reply_gap(convo.rng)
                };
                convo.message(Outbound, S::Agent, Some(agent_id), gap);
                let gap = answer_gap(convo.rng);
                if convo.rng.chance(0.6) {
                    convo.message(Inbound, S::Contact, None, gap);
                }
            }
            if convo.resolve_maybe_later(Some(agent_id), 0.9) && convo.rng.chance(0.12) && convo.budget >= 2 {
                // The contact writes again: reopened, answered, resolved again.
                let gap = convo.rng.log_uniform(10 * MICROS_PER_MINUTE, 2 * MICROS_PER_DAY);
                convo.event(EventKind::Reopened, None, gap);
                convo.message(Inbound, S::Contact, None, MICROS_PER_SECOND);
                let gap = reply_gap(convo.rng);
                convo.message(Outbound, S::Agent, Some(agent_id), gap);
                convo.resolve_maybe_later(Some(agent_id), 1.0);
            }
        }
        Kind::Unanswered => {
            let count = 1 + convo.rng.range(0, 3);
            for _ in 0..count {
                let gap = answer_gap(convo.rng);
                convo.message(Inbound, S::Contact, None, gap);
            }
            convo.resolve_maybe_later(Some(agent_id), 0.3);
        }
        Kind::Proactive => {
            convo.message(Outbound, S::ProactiveApi, None, 0);
            if convo.rng.chance(0.5) {
                let gap = answer_gap(convo.rng);
                convo.message(Inbound, S::Contact, None, gap);
                if convo.rng.chance(0.5) {
                    let gap = first_reply_gap(convo.rng);
                    convo.message(Outbound, S::Agent, Some(agent_id), gap);
                }
            }
            convo.resolve_maybe_later(Some(agent_id), 0.4);
        }
        Kind::AutomationOnly => {
            convo.message(Inbound, S::Contact, None, 0);
            let gap = convo.rng.range(MICROS_PER_SECOND, 5 * MICROS_PER_SECOND);
            convo.message(Outbound, S::Automation, None, gap);
            convo.resolve_maybe_later(None, 1.0);
        }
        Kind::ResolvedBeforeReply => {
            convo.message(Inbound, S::Contact, None, 0);
            convo.resolve_maybe_later(Some(agent_id), 1.0);
            let gap = first_reply_gap(convo.rng);
            convo.message(Outbound, S::Agent, Some(agent_id), gap);
            convo.resolve_maybe_later(Some(agent_id), 1.0);
        }
    }
    convo.sent
}

/// Appends one conversation's messages and events, keeping its clock and the
/// message budget of the hour.
struct ConversationWriter<'a> {
    conversation_id: i64,
    account_id: i64,
    channel_id: i64,
    contact_id: i64,
    clock: UnixMicros,
    budget: u64,
    sent: u64,
    ids: &'a mut Ids,
    rng: &'a mut Rng,
    out: &'a mut Batch,
}

impl ConversationWriter<'_> {
    /// Appends a message `gap` after the previous one, if the budget allows.
    fn message(&mut self, direction: Direction, sender_type: SenderType, agent_id: Option<i64>, gap: i64) -> bool {
        if self.budget == 0 {
            return false;
        }
        self.budget -= 1;
        self.sent += 1;
        self.clock += gap;
        let created_at = self.arrival(self.clock);
        self.out.messages.push(Message {
            id: next(&mut self.ids.message),
            account_id: self.account_id,
            conversation_id: self.conversation_id,
            channel_id: self.channel_id,
            contact_id: self.contact_id,
            direction,
            sender_type,
            agent_id,
            sent_at: self.clock,
            created_at,
        });
        true
    }

    fn event(&mut self, kind: EventKind, agent_id: Option<i64>, gap: i64) {
        self.clock += gap;
        let created_at = self.arrival(self.clock);
        self.out.events.push(ConversationEvent {
            id: next(&mut self.ids.event),
            conversation_id: self.conversation_id,
            kind,
            agent_id,
            occurred_at: self.clock,
            created_at,
        });
    }

    /// With probability `p`, resolves the conversation minutes to hours later,
    /// and now and then days later. Returns whether it did.
    fn resolve_maybe_later(&mut self, agent_id: Option<i64>, p: f64) -> bool {
        if !self.rng.chance(p) {
            return false;
        }
        let mut gap = self.rng.log_uniform(MICROS_PER_MINUTE, 4 * MICROS_PER_HOUR);
        if self.rng.chance(0.08) {
            gap += self.rng.log_uniform(6 * MICROS_PER_HOUR, 3 * MICROS_PER_DAY);
        }
        self.event(EventKind::Resolved, agent_id, gap);
        true
    }

    /// When the row reached the database: almost always at once, sometimes late.
    fn arrival(&mut self, at: UnixMicros) -> UnixMicros {
        if self.rng.chance(LATE_SHARE) {
            at + self.rng.log_uniform(MICROS_PER_HOUR, 4 * MICROS_PER_DAY)
        } else {
            at + self.rng.range(1_000, 3 * MICROS_PER_SECOND)
        }
    }
}

fn geometric(rng: &mut Rng, p_stop: f64) -> u32 {
    let mut n = 0;
    while n < 30 && !rng.chance(p_stop) {
        n += 1;
    }
    n
}

fn pick_channel(account: &AccountState, at: UnixMicros, rng: &mut Rng) -> usize {
    let weights: Vec<f64> = account
        .channels
        .iter()
        .map(|c| {
            let live = c.connected_at <= at && c.disconnected_at.is_none_or(|d| at < d);
            if live { c.weight } else { 0.0 }
        })
        .collect();
    if weights.iter().all(|w| *w == 0.0) {
        // Only possible before any channel connected; use the first.
        return 0;
    }
    rng.weighted(&weights)
}

/// Heavy-tailed contacts: about half the conversations come from a new
/// contact, the rest from earlier ones, strongly favouring the earliest (a
/// few very busy contacts; most seen once).
fn pick_contact(
    account: &mut AccountState,
    platform: &'static str,
    ids: &mut Ids,
    rng: &mut Rng,
    out: &mut Batch,
) -> i64 {
    let pool = account.contacts.entry(platform).or_default();
    if !pool.is_empty() && rng.chance(0.45) {
        let index = (pool.len() as f64 * rng.unit().powi(4)) as usize;
        return pool[index.min(pool.len() - 1)];
    }
    let id = next(&mut ids.contact);
    pool.push(id);
    let external_id = match platform {
        "sms" | "whatsapp" | "viber" | "telegram" => format!("+{}", 15_550_000_000i64 + id * 7919 % 9_999_999),
        "email" => format!("contact{id}@example.com"),
        _ => format!("{platform}:{:016x}", (id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
    };
    out.contacts.push(Contact {
        id,
        account_id: account.id,
        platform,
        external_id,
    });
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> SeedParams {
        SeedParams {
            accounts: 4,
            days: 3,
            start: NaiveDate::from_ymd_opt(2026, 3, 7).unwrap(),
            messages_per_day: 5_000,
            seed: 42,
        }
    }

    fn collect(p: &SeedParams) -> Batch {
        let mut all = Batch::default();
        generate::<()>(p, |b| {
            all.accounts.extend(b.accounts);
            all.channels.extend(b.channels);
            all.agents.extend(b.agents);
            all.contacts.extend(b.contacts);
            all.conversations.extend(b.conversations);
            all.messages.extend(b.messages);
            all.events.extend(b.events);
            Ok(())
        })
        .unwrap();
        all
    }

    #[test]
    fn generates_exactly_the_requested_messages() {
        let all = collect(&params());
        assert_eq!(all.messages.len(), 15_000);
        assert_eq!(all.accounts.len(), 4);
    }

    #[test]
    fn is_deterministic_for_a_seed_and_differs_across_seeds() {
        let a = collect(&params());
        let b = collect(&params());
        assert_eq!(a, b);
        let c = collect(&SeedParams { seed: 43, ..params() });
        assert_ne!(a.messages, c.messages);
    }

    #[test]
    fn messages_stay_in_their_conversation_channel_and_contact() {
        let all = collect(&params());
        let conversations: HashMap<i64, &Conversation> = all.conversations.iter().map(|c| (c.id, c)).collect();
        for m in &all.messages {
            let c = conversations[&m.conversation_id];
            assert_eq!(
                (m.channel_id, m.contact_id, m.account_id),
                (c.channel_id, c.contact_id, c.account_id)
            );
            assert!(m.created_at > m.sent_at);
            assert_eq!(m.agent_id.is_some(), m.sender_type == SenderType::Agent);
        }
    }

    #[test]
    fn one_message_per_day_still_works() {
        let all = collect(&SeedParams {
            messages_per_day: 1,
            ..params()
        });
        assert_eq!(all.messages.len(), 3);
    }
}

//! Pure aggregation of one UTC day: raw source rows in, exact partial
//! aggregates, distinct sets and counted rejects out. No I/O.
//!
//! What this module owns, and what must always hold:
//! - **Validation.** Every raw row is either used or counted as a reject with
//!   a [`RejectReason`]. Nothing is dropped silently and nothing panics.
//!   A rejected row takes part in no metric.
//! - **Exact grains** (DESIGN.md §3):
//!   - distinct contacts and agents: one entry per (account, channel, entity,
//!     UTC hour) with the first and last instant in that hour. A local bucket
//!     edge cuts a UTC hour at most once in every zone in use, so the first
//!     and last instant decide exactly which side(s) of the cut the entity is
//!     on;
//!   - resolved conversations: one entry per conversation, at the instant of
//!     its counting resolve (exact for any bucket). Which resolve counts is
//!     decided here too ([`decide_resolved`]), from the day's messages (first
//!     message, earliest outbound), the day's resolves, and what happened
//!     before the day ([`RawHistory`]);
//!   - proactive messages: counts per 15-minute UTC slot, a grain every
//!     zone's bucket edges fall on.
//! - **Derived grains** ([`ContactDays`], [`SlotCounts`]): contacts per UTC
//!   day and resolved conversations per slot, folded from the sorted exact
//!   entries as they are written; exact for the buckets their readers use
//!   them for (see `derived`).
//! - **Bounded memory.** Entries accumulate in [`KeyedAgg`] maps that the
//!   caller drains into sorted runs whenever they grow past its budget;
//!   [`merge_sorted_runs`] combines the runs (and any duplicate keys) again.
//!   Memory is bounded by that budget, not by the messages of the day.

mod derived;
mod keyed;
mod rows;

pub use crate::metric::ChannelDim;
pub use derived::{ContactDays, Fold, SlotCounts, fold_all};
pub use keyed::{Entry, IdBuildHasher, Key, KeyedAgg, Merge, Value, merge_sorted_runs};
pub use rows::{AccountDim, Dimensions, RawEvent, RawHistory, RawMessage, Text};

use std::collections::BTreeMap;

use crate::model::*;

/// Width of an additive-count slot.
pub const SLOT_MICROS: i64 = 15 * MICROS_PER_MINUTE;

/// Why a source row was not used. The names are stable: they are written to
/// the `rejects` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RejectReason {
    /// A required column is NULL (id, account, conversation, channel, created_at).
    NullField,
    /// `contact_id` is NULL on a message.
    NullContact,
    /// The account does not exist in `accounts`.
    UnknownAccount,
    /// The channel does not exist in `channels`.
    UnknownChannel,
    /// The channel belongs to another account than the row says.
    ChannelAccountMismatch,
    /// `direction` is not inbound or outbound.
    UnknownDirection,
    /// `sender_type` is not contact, agent, proactive_api or automation.
    UnknownSenderType,
    /// `kind` is not resolved or reopened.
    UnknownEventKind,
    /// The event's conversation does not exist.
    OrphanEvent,
    /// The row's instant is more than a day after it reached the database.
    FutureTimestamp,
    /// The same id was seen twice in one day.
    DuplicateId,
    /// The row reached the database too late to reprocess its day (older than
    /// the late-data horizon); counted on the day it arrived.
    TooLate,
    /// A value could not be decoded (e.g. text in an INTEGER column in SQLite).
    BadValue,
}

impl RejectReason {
    pub const ALL: [RejectReason; 13] = [
        RejectReason::NullField,
        RejectReason::NullContact,
        RejectReason::UnknownAccount,
        RejectReason::UnknownChannel,
        RejectReason::ChannelAccountMismatch,
        RejectReason::UnknownDirection,
        RejectReason::UnknownSenderType,
        RejectReason::UnknownEventKind,
        RejectReason::OrphanEvent,
        RejectReason::FutureTimestamp,
        RejectReason::DuplicateId,
        RejectReason::TooLate,
        RejectReason::BadValue,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::NullField => "null_field",
            RejectReason::NullContact => "null_contact",
            RejectReason::UnknownAccount => "unknown_account",
            RejectReason::UnknownChannel => "unknown_channel",
            RejectReason::ChannelAccountMismatch => "channel_account_mismatch",
            RejectReason::UnknownDirection => "unknown_direction",
            RejectReason::UnknownSenderType => "unknown_sender_type",
            RejectReason::UnknownEventKind => "unknown_event_kind",
            RejectReason::OrphanEvent => "orphan_event",
            RejectReason::FutureTimestamp => "future_timestamp",
            RejectReason::DuplicateId => "duplicate_id",
            RejectReason::TooLate => "too_late",
            RejectReason::BadValue => "bad_value",
        }
    }
}

/// Which source table a reject came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SourceTable {
    Messages,
    ConversationEvents,
}

impl SourceTable {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceTable::Messages => "messages",
            SourceTable::ConversationEvents => "conversation_events",
        }
    }
}

/// What a reject count is kept per: source table, reason, account.
pub type RejectKey = (SourceTable, RejectReason, Option<i64>);

/// Rejects of one day, counted per (table, reason, account).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Rejects {
    /// (rows, smallest example id) per key.
    pub counts: BTreeMap<RejectKey, (u64, Option<i64>)>,
}

impl Rejects {
    pub fn add(&mut self, table: SourceTable, reason: RejectReason, account: Option<i64>, rows: u64, id: Option<i64>) {
        let entry = self.counts.entry((table, reason, account)).or_insert((0, None));
        entry.0 += rows;
        entry.1 = match (entry.1, id) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }

    pub fn total(&self) -> u64 {
        self.counts.values().map(|(n, _)| n).sum()
    }

    pub fn by_reason(&self) -> BTreeMap<&'static str, u64> {
        let mut out = BTreeMap::new();
        for ((_, reason, _), (n, _)) in &self.counts {
            *out.entry(reason.as_str()).or_insert(0) += n;
        }
        out
    }
}

/// The keyed aggregates of a day: four that are written out, and four
/// intermediate ones from which [`decide_resolved`] finds the counting resolves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Aggregate {
    ContactActivity,
    AgentActivity,
    ResolvedConversations,
    ProactiveMessages,
    /// `[conversation, 0, 0, 0] -> [sent_at, id * 2 + (0 if inbound else 1)]`
    FirstMessage,
    /// `[conversation, 0, 0, 0] -> [sent_at, 0]` of outbound messages
    FirstOutbound,
    /// `[conversation, occurred_at, id, 0] -> [account, channel]` of valid resolves
    ResolveCandidates,
    /// `[conversation, 0, 0, 0] -> [1, 0]`: counted by a resolve before the day
    Settled,
}

impl Aggregate {
    pub const ALL: [Aggregate; 8] = [
        Aggregate::ContactActivity,
        Aggregate::AgentActivity,
        Aggregate::ResolvedConversations,
        Aggregate::ProactiveMessages,
        Aggregate::FirstMessage,
        Aggregate::FirstOutbound,
        Aggregate::ResolveCandidates,
        Aggregate::Settled,
    ];

    /// The aggregates written as tables.
    pub const OUTPUTS: [Aggregate; 4] = [
        Aggregate::ContactActivity,
        Aggregate::AgentActivity,
        Aggregate::ResolvedConversations,
        Aggregate::ProactiveMessages,
    ];

    pub fn index(self) -> usize {
        Aggregate::ALL.iter().position(|a| *a == self).expect("listed")
    }

    pub fn merge(self) -> Merge {
        match self {
            Aggregate::ContactActivity | Aggregate::AgentActivity => Merge::FirstLast,
            Aggregate::ProactiveMessages => Merge::Sum,
            Aggregate::ResolvedConversations
            | Aggregate::FirstMessage
            | Aggregate::FirstOutbound
            | Aggregate::ResolveCandidates
            | Aggregate::Settled => Merge::Earliest,
        }
    }
}

/// Aggregates one UTC day `[day_start, day_start + 1 day)`.
pub struct DayAggregator {
    known: Known,
    day_start: UnixMicros,
    /// One map per [`Aggregate`], in the order of [`Aggregate::ALL`].
    maps: Vec<KeyedAgg>,
    seen_messages: IdSet,
    seen_events: IdSet,
    pub rejects: Rejects,
    pub messages_read: u64,
    pub events_read: u64,
    /// Rows that passed validation and reached the aggregates: every row
    /// read is either here or in `rejects`.
    pub messages_accepted: u64,
    pub events_accepted: u64,
}

/// Which accounts exist and whose each channel is: what every row is
/// checked against. A fleet's dimension rows are large (names, platforms)
/// and its channels many, so looking rows up there missed the cache on
/// every message.
struct Known {
    accounts: std::collections::HashSet<i64, keyed::IdBuildHasher>,
    channel_accounts: std::collections::HashMap<i64, i64, keyed::IdBuildHasher>,
    /// The valid case in one load: by channel id (from `first_channel`), its
    /// account when that account exists, else [`Known::NO_VALID_ROW`]. Built
    /// when channel ids are dense enough (they come from a sequence), which
    /// takes the two hash lookups of a fleet's 12,000 channels off every row.
    valid_owner: Vec<i64>,
    first_channel: i64,
}

impl Known {
    /// No row of this channel is valid (it is not there, or its account is not).
    const NO_VALID_ROW: i64 = i64::MIN;
    /// `valid_owner` may be this many times longer than the channels are many
    /// (plus a constant, for small or young sources), eight bytes a slot.
    const MAX_SPREAD: usize = 4;
    const MIN_SLOTS: usize = 64 * 1024;

    fn of(dims: &Dimensions) -> Self {
        let accounts: std::collections::HashSet<i64, keyed::IdBuildHasher> = dims.accounts.keys().copied().collect();
        let channel_accounts: std::collections::HashMap<i64, i64, keyed::IdBuildHasher> =
            dims.channels.iter().map(|(id, c)| (*id, c.account_id)).collect();
        let first_channel = channel_accounts.keys().copied().min().unwrap_or(0);
        let last_channel = channel_accounts.keys().copied().max().unwrap_or(0);
        let slots = (last_channel as i128 - first_channel as i128 + 1) as u128;
        let limit = (Self::MAX_SPREAD * channel_accounts.len() + Self::MIN_SLOTS) as u128;
        let mut valid_owner = Vec::new();
        if !channel_accounts.is_empty() && slots <= limit {
            valid_owner = vec![Self::NO_VALID_ROW; slots as usize];
            for (channel, owner) in &channel_accounts {
                if accounts.contains(owner) {
                    valid_owner[(channel - first_channel) as usize] = *owner;
                }
            }
        }
        Known {
            accounts,
            channel_accounts,
            valid_owner,
            first_channel,
        }
    }

    /// Why a row of `account` and `channel` is rejected, if it is.
    #[inline]
    fn check(&self, account: i64, channel: i64) -> Option<RejectReason> {
        let slot = (channel as u64).wrapping_sub(self.first_channel as u64);
        match self.valid_owner.get(slot as usize) {
            Some(owner) if *owner == account && account != Self::NO_VALID_ROW => None,
            _ => self.why_rejected(account, channel),
        }
    }

    /// The full check, in the order of precedence of the reasons.
    fn why_rejected(&self, account: i64, channel: i64) -> Option<RejectReason> {
        if !self.accounts.contains(&account) {
            return Some(RejectReason::UnknownAccount);
        }
        match self.channel_accounts.get(&channel) {
            None => Some(RejectReason::UnknownChannel),
            Some(owner) if *owner != account => Some(RejectReason::ChannelAccountMismatch),
            Some(_) => None,
        }
    }
}

/// Which ids were seen; ids of a day are dense, so a bitmap per 2^16 block
/// stays small (8 KiB per 65,536 ids).
#[derive(Default)]
struct IdSet {
    blocks: std::collections::HashMap<i64, Box<[u64; 1024]>, keyed::IdBuildHasher>,
}

impl IdSet {
    /// Inserts `id`; false if it was already there.
    fn insert(&mut self, id: i64) -> bool {
        let block = self.blocks.entry(id >> 16).or_insert_with(|| Box::new([0; 1024]));
        let bit = (id & 0xffff) as usize;
        let (word, mask) = (bit / 64, 1u64 << (bit % 64));
        let fresh = block[word] & mask == 0;
        block[word] |= mask;
        fresh
    }
}

impl DayAggregator {
    pub fn new(dims: &Dimensions, day_start: UnixMicros) -> Self {
        DayAggregator {
            known: Known::of(dims),
            day_start,
            maps: Aggregate::ALL.iter().map(|a| KeyedAgg::new(a.merge())).collect(),
            seen_messages: IdSet::default(),
            seen_events: IdSet::default(),
            rejects: Rejects::default(),
            messages_read: 0,
            events_read: 0,
            messages_accepted: 0,
            events_accepted: 0,
        }
    }

    pub fn day_start(&self) -> UnixMicros {
        self.day_start
    }

    pub fn keyed(&self, which: Aggregate) -> &KeyedAgg {
        &self.maps[which.index()]
    }

    pub fn keyed_mut(&mut self, which: Aggregate) -> &mut KeyedAgg {
        &mut self.maps[which.index()]
    }

    fn add(&mut self, which: Aggregate, key: Key, value: Value) {
        self.maps[which.index()].add(key, value);
    }

    /// Entries held in memory across all aggregates.
    pub fn entries(&self) -> usize {
        self.maps.iter().map(KeyedAgg::len).sum()
    }

    fn reject_message(&mut self, reason: RejectReason, m: &RawMessage) {
        self.rejects.add(SourceTable::Messages, reason, m.account_id, 1, m.id);
    }

    /// Validates one message of the day and adds it to the aggregates.
    pub fn push_message(&mut self, m: &RawMessage) {
        use RejectReason::*;
        self.messages_read += 1;
        // Which message of a conversation comes first is a fact about the
        // source, judged over every row that has an id and a conversation.
        if let (Some(id), Some(conversation)) = (m.id, m.conversation_id) {
            let inbound = matches!(m.direction, Text::Known(Direction::Inbound));
            let order = id.wrapping_mul(2) + i64::from(!inbound);
            self.add(Aggregate::FirstMessage, [conversation, 0, 0, 0], [m.sent_at, order]);
            if matches!(m.direction, Text::Known(Direction::Outbound)) {
                self.add(Aggregate::FirstOutbound, [conversation, 0, 0, 0], [m.sent_at, 0]);
            }
        }
        // A value of the wrong type reads as NULL: it is named for what it is.
        if m.bad_value {
            return self.reject_message(BadValue, m);
        }
        let (Some(id), Some(account), Some(_conversation), Some(channel), Some(created_at)) =
            (m.id, m.account_id, m.conversation_id, m.channel_id, m.created_at)
        else {
            return self.reject_message(NullField, m);
        };
        let Some(contact) = m.contact_id else {
            return self.reject_message(NullContact, m);
        };
        let direction = match &m.direction {
            Text::Known(d) => *d,
            Text::Null => return self.reject_message(NullField, m),
            Text::Unknown => return self.reject_message(UnknownDirection, m),
        };
        let sender = match &m.sender_type {
            Text::Known(s) => *s,
            Text::Null => return self.reject_message(NullField, m),
            Text::Unknown => return self.reject_message(UnknownSenderType, m),
        };
        if let Some(reason) = self.known.check(account, channel) {
            return self.reject_message(reason, m);
        }
        // Saturating: a created_at near the end of time is not an overflow.
        if m.sent_at > created_at.saturating_add(MICROS_PER_DAY) {
            return self.reject_message(FutureTimestamp, m);
        }
        if !self.seen_messages.insert(id) {
            return self.reject_message(DuplicateId, m);
        }
        self.messages_accepted += 1;

        let hour = m.sent_at.div_euclid(MICROS_PER_HOUR) * MICROS_PER_HOUR;
        self.add(
            Aggregate::ContactActivity,
            [account, channel, contact, hour],
            [m.sent_at, m.sent_at],
        );
        if direction == Direction::Outbound {
            match sender {
                SenderType::Agent => {
                    if let Some(agent) = m.agent_id {
                        self.add(
                            Aggregate::AgentActivity,
                            [account, channel, agent, hour],
                            [m.sent_at, m.sent_at],
                        );
                    }
                }
                SenderType::ProactiveApi => {
                    let slot = m.sent_at.div_euclid(SLOT_MICROS) * SLOT_MICROS;
                    self.add(Aggregate::ProactiveMessages, [account, channel, slot, 0], [1, 0]);
                }
                SenderType::Contact | SenderType::Automation => {}
            }
        }
    }

    fn reject_event(&mut self, reason: RejectReason, e: &RawEvent) {
        self.rejects
            .add(SourceTable::ConversationEvents, reason, e.account_id, 1, e.id);
    }

    /// Validates one conversation event of the day; a valid resolve becomes a
    /// candidate for [`decide_resolved`].
    pub fn push_event(&mut self, e: &RawEvent) {
        use RejectReason::*;
        self.events_read += 1;
        if e.bad_value {
            return self.reject_event(BadValue, e);
        }
        let (Some(id), Some(_conversation), Some(created_at)) = (e.id, e.conversation_id, e.created_at) else {
            return self.reject_event(NullField, e);
        };
        let kind = match &e.kind {
            Text::Known(k) => *k,
            Text::Null => return self.reject_event(NullField, e),
            Text::Unknown => return self.reject_event(UnknownEventKind, e),
        };
        let (Some(account), Some(channel)) = (e.account_id, e.channel_id) else {
            return self.reject_event(OrphanEvent, e);
        };
        if let Some(reason) = self.known.check(account, channel) {
            return self.reject_event(reason, e);
        }
        if e.occurred_at > created_at.saturating_add(MICROS_PER_DAY) {
            return self.reject_event(FutureTimestamp, e);
        }
        if !self.seen_events.insert(id) {
            return self.reject_event(DuplicateId, e);
        }
        self.events_accepted += 1;
        if kind == EventKind::Resolved {
            let conversation = e.conversation_id.expect("checked above");
            self.add(
                Aggregate::ResolveCandidates,
                [conversation, e.occurred_at, id, 0],
                [account, channel],
            );
        }
    }

    /// Adds what happened before the day to a conversation resolved in it
    /// (a key of [`Aggregate::ResolveCandidates`]).
    pub fn push_history(&mut self, h: &RawHistory) {
        let key = [h.conversation_id, 0, 0, 0];
        let inbound = matches!(h.first_direction, Text::Known(Direction::Inbound));
        let order = h.first_id.wrapping_mul(2) + i64::from(!inbound);
        self.add(Aggregate::FirstMessage, key, [h.first_at, order]);
        if let Some(at) = h.first_outbound {
            self.add(Aggregate::FirstOutbound, key, [at, 0]);
        }
        if h.settled {
            self.add(Aggregate::Settled, key, [1, 0]);
        }
    }
}

/// Decides which resolves of the day count (DESIGN.md §2): a conversation
/// whose first message (earliest `sent_at`, ties by lowest id) is inbound
/// counts once, at its first resolve at or after its earliest outbound
/// message. Takes the four intermediate aggregates as streams sorted by key
/// and emits `[account, channel, conversation, 0] -> [resolved_at, event_id]`
/// in conversation order.
pub fn decide_resolved(
    candidates: impl Iterator<Item = Entry>,
    first_message: impl Iterator<Item = Entry>,
    first_outbound: impl Iterator<Item = Entry>,
    settled: impl Iterator<Item = Entry>,
    mut emit: impl FnMut(Entry),
) {
    fn lookup(it: &mut std::iter::Peekable<impl Iterator<Item = Entry>>, conversation: i64) -> Option<Value> {
        while let Some((k, _)) = it.peek() {
            if k[0] >= conversation {
                break;
            }
            it.next();
        }
        match it.peek() {
            Some((k, v)) if k[0] == conversation => Some(*v),
            _ => None,
        }
    }
    let (mut first_message, mut first_outbound, mut settled) =
        (first_message.peekable(), first_outbound.peekable(), settled.peekable());
    let mut current: Option<i64> = None;
    let mut done = false;
    let mut earliest_outbound = 0;
    for (key, value) in candidates {
        let [conversation, at, id, _] = key;
        if current != Some(conversation) {
            current = Some(conversation);
            let inbound_first = lookup(&mut first_message, conversation).is_some_and(|v| v[1] & 1 == 0);
            let outbound = lookup(&mut first_outbound, conversation);
            let already_counted = lookup(&mut settled, conversation).is_some();
            done = !inbound_first || already_counted || outbound.is_none();
            earliest_outbound = outbound.map_or(0, |v| v[0]);
        }
        if done {
            continue;
        }
        // Candidates come in (occurred_at, id) order: the first one at or
        // after the earliest outbound message is the counting resolve.
        if at >= earliest_outbound {
            emit(([value[0], value[1], conversation, 0], [at, id]));
            done = true;
        }
    }
}

/// The shard (of `count`) that owns an account: a stable hash, so that a
/// Kubernetes Indexed Job splits accounts the same way on every run.
pub fn shard_of(account_id: i64, count: u32) -> u32 {
    let mut z = (account_id as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z % u64::from(count.max(1))) as u32
}

#[cfg(test)]
mod tests;

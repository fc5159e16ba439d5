//! Raw rows as the extract returns them: every column that real data may
//! break is optional, and text enums keep "unknown" apart from NULL, so that
//! validation can name the reason.

use std::collections::HashMap;

use super::keyed::IdBuildHasher;
use crate::metric::ChannelDim;
use crate::model::*;

/// A text column that should hold one of a closed set of values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Text<T> {
    Known(T),
    Unknown,
    Null,
}

impl Text<Direction> {
    pub fn parse(s: Option<&[u8]>) -> Self {
        match s {
            None => Text::Null,
            Some(b"inbound") => Text::Known(Direction::Inbound),
            Some(b"outbound") => Text::Known(Direction::Outbound),
            Some(_) => Text::Unknown,
        }
    }
}

impl Text<SenderType> {
    pub fn parse(s: Option<&[u8]>) -> Self {
        match s {
            None => Text::Null,
            Some(b"contact") => Text::Known(SenderType::Contact),
            Some(b"agent") => Text::Known(SenderType::Agent),
            Some(b"proactive_api") => Text::Known(SenderType::ProactiveApi),
            Some(b"automation") => Text::Known(SenderType::Automation),
            Some(_) => Text::Unknown,
        }
    }
}

impl Text<EventKind> {
    pub fn parse(s: Option<&[u8]>) -> Self {
        match s {
            None => Text::Null,
            Some(b"resolved") => Text::Known(EventKind::Resolved),
            Some(b"reopened") => Text::Known(EventKind::Reopened),
            Some(_) => Text::Unknown,
        }
    }
}

/// One `messages` row of the day (placed by `sent_at`, never NULL here since
/// the extract selects by it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMessage {
    pub id: Option<i64>,
    pub account_id: Option<i64>,
    pub conversation_id: Option<i64>,
    pub channel_id: Option<i64>,
    pub contact_id: Option<i64>,
    pub direction: Text<Direction>,
    pub sender_type: Text<SenderType>,
    pub agent_id: Option<i64>,
    pub sent_at: UnixMicros,
    pub created_at: Option<UnixMicros>,
    /// A column held a value of the wrong type (SQLite is dynamically typed).
    pub bad_value: bool,
}

/// One `conversation_events` row of the day, with its conversation's account
/// and channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEvent {
    pub id: Option<i64>,
    pub conversation_id: Option<i64>,
    pub kind: Text<EventKind>,
    pub occurred_at: UnixMicros,
    pub created_at: Option<UnixMicros>,
    /// From `conversations`; NULL when the conversation is missing.
    pub account_id: Option<i64>,
    pub channel_id: Option<i64>,
    pub bad_value: bool,
}

/// What happened before the day to a conversation resolved in the day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawHistory {
    pub conversation_id: i64,
    /// The conversation's first message before the day.
    pub first_at: UnixMicros,
    pub first_id: i64,
    pub first_direction: Text<Direction>,
    /// Its earliest outbound message before the day.
    pub first_outbound: Option<UnixMicros>,
    /// A resolve before the day, at or after that outbound message, already counted it.
    pub settled: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountDim {
    pub id: i64,
    pub name: Option<String>,
    pub time_zone: Option<String>,
    pub created_at: Option<UnixMicros>,
}

/// The accounts and channels of a run, by id.
#[derive(Debug, Default, Clone)]
pub struct Dimensions {
    pub accounts: HashMap<i64, AccountDim, IdBuildHasher>,
    pub channels: HashMap<i64, ChannelDim, IdBuildHasher>,
}

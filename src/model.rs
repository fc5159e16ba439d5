//! Typed rows of the operational source (DESIGN.md §1), shared by every stage.
//!
//! Instants are [`UnixMicros`]: microseconds since the Unix epoch, UTC. That is
//! PostgreSQL's `timestamptz` precision and SQLite's documented storage form, so
//! a value round-trips through either source unchanged.

use chrono::{DateTime, NaiveDate, Utc};

/// Microseconds since 1970-01-01T00:00:00Z.
pub type UnixMicros = i64;

pub const MICROS_PER_SECOND: i64 = 1_000_000;
pub const MICROS_PER_MINUTE: i64 = 60 * MICROS_PER_SECOND;
pub const MICROS_PER_HOUR: i64 = 60 * MICROS_PER_MINUTE;
pub const MICROS_PER_DAY: i64 = 24 * MICROS_PER_HOUR;

/// The first instant of a UTC date.
pub fn utc_midnight(date: NaiveDate) -> UnixMicros {
    date.and_hms_opt(0, 0, 0)
        .expect("midnight exists")
        .and_utc()
        .timestamp_micros()
}

/// The instant as a chrono value; `None` only outside chrono's range (±262,000 years).
pub fn to_datetime(micros: UnixMicros) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_micros(micros)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: i64,
    pub name: String,
    pub time_zone: String,
    pub created_at: UnixMicros,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Environment {
    Production,
    Test,
    Development,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Production => "production",
            Environment::Test => "test",
            Environment::Development => "development",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    pub id: i64,
    pub account_id: i64,
    pub platform: &'static str,
    pub name: String,
    pub environment: Environment,
    pub connected_at: UnixMicros,
    pub disconnected_at: Option<UnixMicros>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    pub id: i64,
    pub account_id: i64,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    pub id: i64,
    pub account_id: i64,
    pub platform: &'static str,
    pub external_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    pub id: i64,
    pub account_id: i64,
    pub channel_id: i64,
    pub contact_id: i64,
    pub created_at: UnixMicros,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    Inbound,
    Outbound,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SenderType {
    Contact,
    Agent,
    ProactiveApi,
    Automation,
}

impl SenderType {
    pub fn as_str(self) -> &'static str {
        match self {
            SenderType::Contact => "contact",
            SenderType::Agent => "agent",
            SenderType::ProactiveApi => "proactive_api",
            SenderType::Automation => "automation",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: i64,
    pub account_id: i64,
    pub conversation_id: i64,
    pub channel_id: i64,
    pub contact_id: i64,
    pub direction: Direction,
    pub sender_type: SenderType,
    pub agent_id: Option<i64>,
    pub sent_at: UnixMicros,
    pub created_at: UnixMicros,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    Resolved,
    Reopened,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Resolved => "resolved",
            EventKind::Reopened => "reopened",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationEvent {
    pub id: i64,
    pub conversation_id: i64,
    pub kind: EventKind,
    pub agent_id: Option<i64>,
    pub occurred_at: UnixMicros,
    pub created_at: UnixMicros,
}

/// The error and its causes on one line, joined by ": " (for messages and
/// log fields). Our errors name only their own step, but some libraries'
/// messages (sqlx, object_store) repeat their source's text; a cause already
/// said is left out.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = String::new();
    let mut cause = Some(e);
    while let Some(c) = cause {
        // sqlx ends a PostgreSQL error with " at line N", the line of the
        // server's own C source that raised it, which reads as a line of
        // ours; its code is what a DBA looks up.
        let database = match c.downcast_ref::<sqlx::Error>() {
            Some(sqlx::Error::Database(db)) => Some(match db.code() {
                Some(code) => format!("error returned from database: {} (code {code})", db.message()),
                None => format!("error returned from database: {}", db.message()),
            }),
            _ => None,
        };
        let text = database.clone().unwrap_or_else(|| c.to_string());
        if !text.is_empty() && !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
        // The database error's own source is the same message again.
        cause = if database.is_some() { None } else { c.source() };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_midnight_matches_the_documented_example() {
        let noon = utc_midnight(NaiveDate::from_ymd_opt(2026, 3, 1).unwrap()) + 12 * MICROS_PER_HOUR;
        assert_eq!(noon, 1_772_366_400_000_000);
    }
}

//! The metric definitions of DESIGN.md §2 that more than one layer applies
//! (pure, no I/O): which metrics exist, which channels count, and how a
//! channel maps to its platform group.
//!
//! The report engine, the rollup builder and the job all read these from
//! here, so a definition changes in one place or not at all. Nothing here
//! imports from a layer above (`aggregate` and up).

use serde::Serialize;

use crate::model::UnixMicros;

/// A channel as the warehouse's dimension tables hold it. Fields are
/// optional because a source row may lack them; the rules below say what a
/// missing field means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelDim {
    pub id: i64,
    pub account_id: i64,
    pub platform: Option<String>,
    pub name: Option<String>,
    pub environment: Option<String>,
    pub connected_at: Option<UnixMicros>,
    pub disconnected_at: Option<UnixMicros>,
}

#[cfg(test)]
impl ChannelDim {
    /// A production channel connected since the epoch, for tests.
    pub fn connected(id: i64, account_id: i64, platform: &str) -> ChannelDim {
        ChannelDim {
            id,
            account_id,
            platform: Some(platform.into()),
            name: None,
            environment: Some("production".into()),
            connected_at: Some(0),
            disconnected_at: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum Metric {
    ActiveAgents,
    Channels,
    ProactiveMessages,
    ResolvedConversations,
    UniqueMonthlyContacts,
}

impl Metric {
    /// In the order rows are reported (by JSON name).
    pub const ALL: [Metric; 5] = [
        Metric::ActiveAgents,
        Metric::Channels,
        Metric::ProactiveMessages,
        Metric::ResolvedConversations,
        Metric::UniqueMonthlyContacts,
    ];

    /// The name, always at one address: readers compare names by address
    /// before bytes. (A literal returned here may be copied into each
    /// codegen unit that inlines this; a static's value is one pointer.)
    pub fn as_str(self) -> &'static str {
        static NAMES: [&str; 5] = [
            "active_agents",
            "channels",
            "proactive_messages",
            "resolved_conversations",
            "unique_monthly_contacts",
        ];
        NAMES[self as usize]
    }
}

/// Whether a channel counts in the `channels` metric of `[start, end)`
/// (DESIGN.md §2): production, and connected during the interval.
pub fn counts_as_connected(c: &ChannelDim, start: UnixMicros, end: UnixMicros) -> bool {
    c.environment.as_deref() == Some("production")
        && c.connected_at.is_some_and(|at| at < end)
        && c.disconnected_at.is_none_or(|d| d > start)
}

/// The group name of a channel grouped by platform.
pub fn platform_of(channel: Option<&ChannelDim>) -> &str {
    channel.and_then(|c| c.platform.as_deref()).unwrap_or("unknown")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_metric_is_named_as_its_json_and_flag_value() {
        for metric in Metric::ALL {
            let json = serde_json::to_value(metric).expect("serializes");
            assert_eq!(json.as_str(), Some(metric.as_str()));
            let flag = clap::ValueEnum::to_possible_value(&metric).expect("a flag value");
            assert_eq!(flag.get_name(), metric.as_str());
        }
    }

    /// DESIGN §2: `connected_at < bucket_end` and (`disconnected_at` null or
    /// `> bucket_start`), so a channel connected at a bucket's end or
    /// disconnected at its start was not connected during it.
    #[test]
    fn a_channel_counts_where_its_connection_overlaps_the_bucket() {
        let channel = |env: Option<&str>, connected_at: Option<i64>, disconnected_at: Option<i64>| ChannelDim {
            id: 1,
            account_id: 1,
            platform: None,
            name: None,
            environment: env.map(str::to_string),
            connected_at,
            disconnected_at,
        };
        let (start, end) = (100, 200);
        for (env, connected_at, disconnected_at, counts) in [
            (Some("production"), Some(199), None, true),
            (Some("production"), Some(200), None, false),
            (Some("production"), Some(0), Some(101), true),
            (Some("production"), Some(0), Some(100), false),
            // Inside the bucket, even for no time at all: the rule's letter.
            (Some("production"), Some(150), Some(150), true),
            (Some("production"), Some(0), Some(300), true),
            (Some("production"), None, None, false),
            (Some("test"), Some(0), None, false),
            (Some("development"), Some(0), None, false),
            (None, Some(0), None, false),
        ] {
            assert_eq!(
                counts_as_connected(&channel(env, connected_at, disconnected_at), start, end),
                counts,
                "{env:?} {connected_at:?} {disconnected_at:?}"
            );
        }
    }
}

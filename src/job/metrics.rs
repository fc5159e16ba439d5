//! What a run reports when it ends: the end log line and the metrics pushed
//! to a Prometheus Pushgateway.
//!
//! A batch job has no port to scrape, so it pushes once, at the end of every
//! run, success or failure, with POST to
//! `/metrics/job/account-usage/shard/<index>`. POST replaces only the
//! metric families it sends, so a failed run, which does not send
//! `account_usage_last_success_timestamp_seconds`, leaves the last success
//! where it was. A push that fails is a warning, never a failed run.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use crate::aggregate::RejectReason;
use crate::warehouse::paths::Table;

/// How long the push may take; it runs after the work, so it bounds how
/// much later than its last publish the process exits.
pub const PUSH_TIMEOUT: Duration = Duration::from_secs(3);

/// What a run did, as far as it got.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunStats {
    pub days_processed: u64,
    pub late_days: u64,
    /// Earlier days no run had published (a night that failed).
    pub catch_up_days: u64,
    /// Source rows read, by source table.
    pub rows_read: BTreeMap<&'static str, u64>,
    /// Warehouse rows written, by table.
    pub rows_written: BTreeMap<String, u64>,
    pub rejects: BTreeMap<&'static str, u64>,
}

impl RunStats {
    pub fn add_day(
        &mut self,
        messages: u64,
        events: u64,
        rows: &BTreeMap<String, u64>,
        rejects: &BTreeMap<&'static str, u64>,
    ) {
        self.days_processed += 1;
        *self.rows_read.entry("messages").or_default() += messages;
        *self.rows_read.entry("conversation_events").or_default() += events;
        for (table, n) in rows {
            *self.rows_written.entry(table.clone()).or_default() += n;
        }
        for (reason, n) in rejects {
            *self.rejects.entry(reason).or_default() += n;
        }
    }
}

/// The Prometheus text exposition of a finished run. Every table and reject
/// reason is present (zero when nothing happened), so series do not vanish
/// between runs. `last_success` is the run's end (Unix seconds) on success.
pub fn render(stats: &RunStats, duration: Duration, last_success: Option<f64>) -> String {
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, samples: &[(Option<(&str, &str)>, f64)]| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        for (label, value) in samples {
            match label {
                Some((key, val)) => {
                    let _ = writeln!(out, "{name}{{{key}=\"{val}\"}} {value}");
                }
                None => {
                    let _ = writeln!(out, "{name} {value}");
                }
            }
        }
    };
    gauge(
        "account_usage_run_duration_seconds",
        "Wall time of the last run of this shard.",
        &[(None, duration.as_secs_f64())],
    );
    gauge(
        "account_usage_days_processed",
        "UTC days the last run published.",
        &[(None, stats.days_processed as f64)],
    );
    let read: Vec<_> = ["messages", "conversation_events"]
        .iter()
        .map(|t| (Some(("table", *t)), *stats.rows_read.get(t).unwrap_or(&0) as f64))
        .collect();
    gauge(
        "account_usage_rows_read",
        "Source rows the last run read, by source table.",
        &read,
    );
    let written: Vec<_> = Table::ALL
        .iter()
        .map(|t| {
            (
                Some(("table", t.name())),
                *stats.rows_written.get(t.name()).unwrap_or(&0) as f64,
            )
        })
        .collect();
    gauge(
        "account_usage_rows_written",
        "Warehouse rows the last run wrote, by table.",
        &written,
    );
    let rejects: Vec<_> = RejectReason::ALL
        .iter()
        .map(|r| {
            (
                Some(("reason", r.as_str())),
                *stats.rejects.get(r.as_str()).unwrap_or(&0) as f64,
            )
        })
        .collect();
    gauge(
        "account_usage_rejects",
        "Source rows the last run rejected, by reason.",
        &rejects,
    );
    gauge(
        "account_usage_late_days",
        "Earlier days the last run reprocessed for late rows.",
        &[(None, stats.late_days as f64)],
    );
    gauge(
        "account_usage_catch_up_days",
        "Earlier days the last run published because no run had (a night that failed or did not run).",
        &[(None, stats.catch_up_days as f64)],
    );
    if let Some(at) = last_success {
        gauge(
            "account_usage_last_success_timestamp_seconds",
            "When a run of this shard last succeeded (Unix time).",
            &[(None, at)],
        );
    }
    out
}

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("pushing metrics to {url} failed")]
    Request {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("the Pushgateway at {url} answered {status}")]
    Status { url: String, status: u16 },
}

/// The grouping key URL of a shard.
pub fn push_url(gateway: &url::Url, shard_index: u32) -> String {
    format!(
        "{}/metrics/job/account-usage/shard/{shard_index}",
        gateway.as_str().trim_end_matches('/')
    )
}

/// POSTs `body` to the shard's group.
pub async fn push(gateway: &url::Url, shard_index: u32, body: String) -> Result<(), PushError> {
    let url = push_url(gateway, shard_index);
    let response = reqwest::Client::new()
        .post(&url)
        .timeout(PUSH_TIMEOUT)
        .header("content-type", "text/plain; version=0.0.4")
        .body(body)
        .send()
        .await
        .map_err(|source| PushError::Request {
            url: crate::source::redact(&url),
            source: source.without_url(),
        })?;
    if !response.status().is_success() {
        return Err(PushError::Status {
            url: crate::source::redact(&url),
            status: response.status().as_u16(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_and_last_success_only_when_given() {
        let mut stats = RunStats::default();
        let rows: BTreeMap<String, u64> = [("contact_activity".to_string(), 7)].into();
        let rejects: BTreeMap<&'static str, u64> = [("too_late", 2)].into();
        stats.add_day(10, 4, &rows, &rejects);
        stats.add_day(5, 1, &rows, &BTreeMap::new());
        stats.catch_up_days = 1;
        let text = render(&stats, Duration::from_millis(1500), None);
        assert!(text.contains("account_usage_run_duration_seconds 1.5\n"), "{text}");
        assert!(text.contains("account_usage_days_processed 2\n"));
        assert!(text.contains("account_usage_catch_up_days 1\n"));
        assert!(text.contains("account_usage_rows_read{table=\"messages\"} 15\n"));
        assert!(text.contains("account_usage_rows_read{table=\"conversation_events\"} 5\n"));
        assert!(text.contains("account_usage_rows_written{table=\"contact_activity\"} 14\n"));
        assert!(text.contains("account_usage_rows_written{table=\"rejects\"} 0\n"));
        assert!(text.contains("account_usage_rejects{reason=\"too_late\"} 2\n"));
        assert!(text.contains("account_usage_rejects{reason=\"bad_value\"} 0\n"));
        assert!(!text.contains("last_success"));
        let text = render(&stats, Duration::ZERO, Some(1_700_000_000.5));
        assert!(text.contains("account_usage_last_success_timestamp_seconds 1700000000.5\n"));
    }

    #[test]
    fn the_group_is_the_shard() {
        let gw: url::Url = "http://gw:9091/".parse().unwrap();
        assert_eq!(push_url(&gw, 3), "http://gw:9091/metrics/job/account-usage/shard/3");
    }
}

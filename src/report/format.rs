//! Output formats of a report: JSON (DESIGN.md §4, plus `bucket_totals`),
//! CSV (rows and totals), and a table for people (every bucket, with its
//! `all` column from `bucket_totals`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use super::engine::{GroupBy, Report};
use crate::calendar::Interval;
use crate::metric::Metric;

pub fn json(report: &Report) -> String {
    serde_json::to_string_pretty(report).expect("reports serialize") + "\n"
}

/// The same document as [`json`] without the indentation people read: what
/// the API sends, as about half the bytes.
pub fn json_compact(report: &Report) -> Vec<u8> {
    let mut out = serde_json::to_vec(report).expect("reports serialize");
    out.push(b'\n');
    out
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Rows, then totals with an empty `bucket_start` (and an empty group for
/// the grand total).
pub fn csv(report: &Report) -> String {
    let mut out = String::from("metric,bucket_start,group,value\n");
    for r in &report.rows {
        let _ = writeln!(
            out,
            "{},{},{},{}",
            r.metric,
            r.bucket_start,
            csv_field(&r.group),
            r.value
        );
    }
    for t in &report.totals {
        let group = t.group.as_deref().map(csv_field).unwrap_or_default();
        let _ = writeln!(out, "{},,{group},{}", t.metric, t.value);
    }
    out
}

/// One block per metric: buckets as rows, groups as columns, totals last.
pub fn table(report: &Report) -> String {
    let mut out = String::new();
    let channels = match &report.channels {
        None => "all channels".to_string(),
        Some(ids) => format!("channels {ids:?}"),
    };
    let _ = writeln!(
        out,
        "Account usage: account {}, {} to {}, {}, {}, by {}, {}",
        report.account_id,
        report.from,
        report.to,
        report.time_zone,
        report.interval.as_str(),
        match report.group_by {
            GroupBy::Platform => "platform",
            GroupBy::Channel => "channel",
        },
        channels
    );
    let metrics: Vec<&str> = {
        let mut seen = Vec::new();
        for t in &report.totals {
            if !seen.contains(&t.metric) {
                seen.push(t.metric);
            }
        }
        seen
    };
    for metric in metrics {
        let rows: Vec<_> = report.rows.iter().filter(|r| r.metric == metric).collect();
        let groups: Vec<String> = {
            let set: BTreeSet<&str> = rows.iter().map(|r| r.group.as_str()).collect();
            let mut v: Vec<String> = report
                .totals
                .iter()
                .filter(|t| t.metric == metric)
                .filter_map(|t| t.group.clone())
                .collect();
            v.retain(|g| set.contains(g.as_str()));
            v
        };
        let header_of = |g: &str| match report.group_labels.get(g) {
            Some(name) => format!("{name} ({g})"),
            None => g.to_string(),
        };
        let mut cells: BTreeMap<(&str, &str), u64> = BTreeMap::new();
        for r in &rows {
            cells.insert((&r.bucket_start, &r.group), r.value);
        }
        // Buckets of a day or longer start at a local midnight (or the first
        // instant of a day that skips it): their local date says it all.
        let by_date = report.interval != Interval::Hourly || metric == Metric::UniqueMonthlyContacts.as_str();
        let label = |b: &str| if by_date { b[..10].to_string() } else { b.to_string() };
        let mut header = vec!["bucket".to_string()];
        header.extend(groups.iter().map(|g| header_of(g)));
        header.push("all".into());
        let mut lines: Vec<Vec<String>> = Vec::new();
        for bucket in report.bucket_totals.iter().filter(|t| t.metric == metric) {
            let b = bucket.bucket_start.as_str();
            let mut line = vec![label(b)];
            line.extend(
                groups
                    .iter()
                    .map(|g| cells.get(&(b, g.as_str())).copied().unwrap_or(0).to_string()),
            );
            line.push(bucket.value.to_string());
            lines.push(line);
        }
        let total = |g: Option<&str>| {
            report
                .totals
                .iter()
                .find(|t| t.metric == metric && t.group.as_deref() == g)
                .map(|t| t.value)
                .unwrap_or(0)
        };
        let mut line = vec!["total".to_string()];
        line.extend(groups.iter().map(|g| total(Some(g)).to_string()));
        line.push(total(None).to_string());
        lines.push(line);

        let widths: Vec<usize> = (0..header.len())
            .map(|c| {
                lines
                    .iter()
                    .map(|l| l[c].len())
                    .chain([header[c].len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let _ = writeln!(out, "\n{metric}");
        let render = |cells: &[String]| {
            cells
                .iter()
                .enumerate()
                .map(|(c, v)| {
                    if c == 0 {
                        format!("{v:<w$}", w = widths[c])
                    } else {
                        format!("{v:>w$}", w = widths[c])
                    }
                })
                .collect::<Vec<_>>()
                .join("  ")
        };
        let _ = writeln!(out, "{}", render(&header));
        let _ = writeln!(
            out,
            "{}",
            widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().join("  ")
        );
        for l in &lines {
            let _ = writeln!(out, "{}", render(l).trim_end());
        }
    }
    out
}

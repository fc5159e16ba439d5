//! Output formats of a report: JSON (DESIGN.md §4, plus `bucket_totals`),
//! CSV (rows and totals), and a table for people (every bucket, with its
//! `all` column from `bucket_totals`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::sync::Arc;

use super::engine::{GroupBy, Report};
use crate::calendar::Interval;
use crate::metric::Metric;

pub fn json(report: &Report) -> String {
    serde_json::to_string_pretty(report).expect("reports serialize") + "\n"
}

/// The same document as [`json`] without the indentation people read: what
/// the API sends, as about half the bytes.
///
/// Written by hand rather than through serde: escaping every key and label
/// of every row was a third of an uncached answer's time, and a row's keys
/// are fixed and its labels almost never need escaping. The fields and
/// their order are serde's (a test compares the bytes).
pub fn json_compact(report: &Report) -> Vec<u8> {
    let mut out = Vec::with_capacity(json_capacity(report));
    let head = |out: &mut Vec<u8>, key: &str, value: &dyn erased::Json| {
        out.push(if out.is_empty() { b'{' } else { b',' });
        json_str(out, key);
        out.push(b':');
        value.write(out);
    };
    head(&mut out, "account_id", &report.account_id);
    head(&mut out, "time_zone", &report.time_zone);
    head(&mut out, "from", &report.from);
    head(&mut out, "to", &report.to);
    head(&mut out, "interval", &report.interval);
    head(&mut out, "group_by", &report.group_by);
    head(&mut out, "channels", &report.channels);
    // Rows, bucket totals and totals: a metric, labels, a value.
    metric_objects(
        &mut out,
        "rows",
        &report.rows,
        |r| (r.metric, r.value),
        |out, plain, r| {
            out.extend_from_slice(b",\"bucket_start\":");
            plain.json_str(out, &r.bucket_start);
            out.extend_from_slice(b",\"group\":");
            plain.json_str(out, &r.group);
        },
    );
    metric_objects(
        &mut out,
        "bucket_totals",
        &report.bucket_totals,
        |t| (t.metric, t.value),
        |out, plain, t| {
            out.extend_from_slice(b",\"bucket_start\":");
            plain.json_str(out, &t.bucket_start);
        },
    );
    metric_objects(
        &mut out,
        "totals",
        &report.totals,
        |t| (t.metric, t.value),
        |out, plain, t| {
            out.extend_from_slice(b",\"group\":");
            match &t.group {
                Some(g) => plain.json_str(out, g),
                None => out.extend_from_slice(b"null"),
            }
        },
    );
    head(&mut out, "group_labels", &report.group_labels);
    head(&mut out, "answered_from", &report.answered_from);
    out.extend_from_slice(b"}\n");
    out
}

/// What [`json_compact`] writes at most when no label needs escaping,
/// reserved up front so the buffer never grows (growing copied the whole
/// answer): per item its keys, punctuation and a 20-digit value (the
/// constants count `,{"metric":"","bucket_start":"","group":"","value":}`
/// and the like), plus its labels.
fn json_capacity(report: &Report) -> usize {
    const ROW: usize = 52 + 20;
    const BUCKET_TOTAL: usize = 41 + 20;
    const TOTAL: usize = 34 + 20;
    const GROUP_LABEL: usize = 6;
    // The keys and values of the header, and the filter's ids with a comma.
    const HEADER: usize = 512;
    let len = |labels: &[&str]| labels.iter().map(|l| l.len()).sum::<usize>();
    HEADER
        + report.channels.as_ref().map_or(0, |ids| 21 * ids.len())
        + report
            .rows
            .iter()
            .map(|r| ROW + len(&[r.metric, &r.bucket_start, &r.group]))
            .sum::<usize>()
        + report
            .bucket_totals
            .iter()
            .map(|t| BUCKET_TOTAL + len(&[t.metric, &t.bucket_start]))
            .sum::<usize>()
        + report
            .totals
            .iter()
            .map(|t| TOTAL + len(&[t.metric, t.group.as_deref().unwrap_or("null")]))
            .sum::<usize>()
        + report
            .group_labels
            .iter()
            .map(|(k, v)| GROUP_LABEL + len(&[k, v]))
            .sum::<usize>()
}

/// `,"key":[{"metric":…,<labels>,"value":…},…]`: `parts` gives an item's
/// metric and value, `labels` writes its fields between the two.
///
/// Items come in runs of one metric, so the opening up to the metric's name
/// is written once per run and then copied whole.
fn metric_objects<T>(
    out: &mut Vec<u8>,
    key: &str,
    items: &[T],
    parts: impl Fn(&T) -> (&'static str, u64),
    labels: impl Fn(&mut Vec<u8>, &mut Plain, &T),
) {
    out.push(b',');
    json_str(out, key);
    out.extend_from_slice(b":[");
    let mut plain = Plain::default();
    // `,{"metric":"…"` of the run's metric.
    let mut opening: Vec<u8> = Vec::with_capacity(64);
    let mut run: Option<&'static str> = None;
    let mut number = itoa::Buffer::new();
    for (i, item) in items.iter().enumerate() {
        let (metric, value) = parts(item);
        if run.is_none_or(|m| !std::ptr::eq(m, metric)) {
            opening.clear();
            opening.extend_from_slice(b",{\"metric\":");
            json_str(&mut opening, metric);
            run = Some(metric);
        }
        out.extend_from_slice(&opening[usize::from(i == 0)..]);
        labels(out, &mut plain, item);
        out.extend_from_slice(b",\"value\":");
        out.extend_from_slice(number.format(value).as_bytes());
        out.push(b'}');
    }
    out.push(b']');
}

/// A JSON string: copied as it is when nothing in it needs escaping (ids,
/// timestamps, platform names), else escaped by serde_json. Whether it was
/// copied as it is.
fn json_str(out: &mut Vec<u8>, s: &str) -> bool {
    // A fold, not `all`: without an early exit the check vectorizes.
    let plain = !s
        .bytes()
        .fold(false, |escape, b| escape | (b < 0x20) | (b == b'"') | (b == b'\\'));
    if plain {
        quoted(out, s);
    } else {
        serde_json::to_writer(out, s).expect("strings serialize");
    }
    plain
}

fn quoted(out: &mut Vec<u8>, s: &str) {
    out.reserve(s.len() + 2);
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
}

/// Strings of the report already found to need no escaping, by address and
/// length, in a small table indexed by address. Its labels are shared
/// (`Arc<str>`), so most rows repeat a string checked before; while the
/// report is borrowed, the bytes at an address cannot change.
struct Plain {
    seen: [(usize, usize); 64],
}

impl Default for Plain {
    fn default() -> Self {
        Plain { seen: [(0, 0); 64] }
    }
}

impl Plain {
    fn json_str(&mut self, out: &mut Vec<u8>, s: &str) {
        let key = (s.as_ptr() as usize, s.len());
        // Shared strings are separate allocations: their addresses differ
        // in the bits above the allocator's alignment.
        let slot = (key.0 >> 4) % self.seen.len();
        if self.seen[slot] == key {
            quoted(out, s);
        } else if json_str(out, s) {
            self.seen[slot] = key;
        }
    }
}

/// The report's few head fields go through serde (one call each).
mod erased {
    pub trait Json {
        fn write(&self, out: &mut Vec<u8>);
    }
    impl<T: serde::Serialize> Json for T {
        fn write(&self, out: &mut Vec<u8>) {
            serde_json::to_writer(out, self).expect("report fields serialize");
        }
    }
}

/// RFC 4180: a field holding a separator, a quote or a line break (CR as
/// well as LF) is quoted, its quotes doubled.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
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
/// `text` from the source (a channel's name, a platform) made safe for a
/// terminal: a control character (a newline that would break the table, an
/// escape sequence that would drive the terminal) becomes U+FFFD.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

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
        let groups: Vec<Arc<str>> = {
            let set: BTreeSet<&str> = rows.iter().map(|r| &*r.group).collect();
            let mut v: Vec<Arc<str>> = report
                .totals
                .iter()
                .filter(|t| t.metric == metric)
                .filter_map(|t| t.group.clone())
                .collect();
            v.retain(|g| set.contains(&**g));
            v
        };
        let header_of = |g: &str| match report.group_labels.get(g) {
            Some(name) => printable(&format!("{name} ({g})")),
            None => printable(g),
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
            let b = &*bucket.bucket_start;
            let mut line = vec![label(b)];
            line.extend(
                groups
                    .iter()
                    .map(|g| cells.get(&(b, &**g)).copied().unwrap_or(0).to_string()),
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::NaiveDate;

    use super::*;
    use crate::report::engine::{AnsweredFrom, BucketTotal, Row, Total};

    fn report(groups: &[&str], channels: Option<Vec<i64>>) -> Report {
        let day = |d| NaiveDate::from_ymd_opt(2026, 3, d).unwrap();
        let rows = groups
            .iter()
            .enumerate()
            .map(|(i, g)| Row {
                metric: "unique_contacts",
                bucket_start: format!("2026-03-0{}T00:00:00+05:45", i % 9 + 1).into(),
                group: (*g).into(),
                value: [0, 1, 9, 10, 12_345, u64::MAX][i % 6],
            })
            .collect();
        Report {
            account_id: -42,
            time_zone: "Asia/Kathmandu".into(),
            from: day(1),
            to: day(9),
            interval: Interval::Daily,
            group_by: GroupBy::Channel,
            channels,
            rows,
            bucket_totals: vec![BucketTotal {
                metric: "active_agents",
                bucket_start: "2026-03-01T00:00:00+05:45".into(),
                value: 7,
            }],
            totals: vec![
                Total {
                    metric: "active_agents",
                    group: Some(groups.first().copied().unwrap_or("x").into()),
                    value: 3,
                },
                Total {
                    metric: "active_agents",
                    group: None,
                    value: 0,
                },
            ],
            group_labels: groups
                .iter()
                .map(|g| (g.to_string(), format!("name \"{g}\"")))
                .collect::<BTreeMap<_, _>>(),
            answered_from: AnsweredFrom::Rollups,
        }
    }

    /// A document whose labels need no escaping fits the buffer reserved for
    /// it: the buffer never grew (20-digit values and long labels included).
    #[test]
    fn compact_json_fits_the_buffer_reserved_for_it() {
        let names: Vec<String> = (0..600)
            .map(|i| format!("channel {i}"))
            .chain(["l".repeat(300)])
            .collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        for mut r in [
            report(&names, Some((0..500).map(|i| i64::MIN + i).collect())),
            report(&[], None),
        ] {
            // The longest values, everywhere, and labels without escapes.
            r.group_labels = names.iter().map(|g| (g.to_string(), format!("name {g}"))).collect();
            r.totals = r.totals.iter().cycle().take(2 * names.len()).cloned().collect();
            r.bucket_totals = r.bucket_totals.iter().cycle().take(names.len()).cloned().collect();
            r.rows.iter_mut().for_each(|row| row.value = u64::MAX);
            r.bucket_totals.iter_mut().for_each(|t| t.value = u64::MAX);
            r.totals.iter_mut().for_each(|t| t.value = u64::MAX);
            let json = json_compact(&r);
            assert_eq!(json.capacity(), json_capacity(&r), "{} bytes", json.len());
        }
    }

    /// Splits RFC 4180 text into records of fields (quoted fields may hold
    /// separators, doubled quotes and line breaks).
    /// A channel's name or a platform is the source's text: in a table it
    /// can neither break a line nor drive the terminal.
    #[test]
    fn a_table_shows_no_control_character_of_the_source() {
        let mut r = report(&["7", "whats\x1b[2Japp"], None);
        r.rows.iter_mut().for_each(|row| row.metric = "active_agents");
        r.group_labels = [("7".to_string(), "Support\nline \u{9b}31m".to_string())].into();
        r.totals.push(Total {
            metric: "active_agents",
            group: Some("whats\x1b[2Japp".into()),
            value: 1,
        });
        let text = table(&r);
        assert!(!text.chars().any(|c| c.is_control() && c != '\n'), "{text:?}");
        let header = text.lines().find(|l| l.starts_with("bucket")).unwrap();
        assert!(header.contains("Support\u{fffd}line \u{fffd}31m (7)"), "{header:?}");
        assert!(header.contains("whats\u{fffd}[2Japp"), "{header:?}");
    }

    fn parse_csv(text: &str) -> Vec<Vec<String>> {
        let (mut records, mut record, mut field) = (Vec::new(), Vec::new(), String::new());
        let mut chars = text.chars().peekable();
        let mut quoted = false;
        while let Some(c) = chars.next() {
            match (quoted, c) {
                (true, '"') if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                (true, '"') => quoted = false,
                (true, c) => field.push(c),
                (false, '"') if field.is_empty() => quoted = true,
                (false, ',') => record.push(std::mem::take(&mut field)),
                // A bare CR ends a record too, as spreadsheet and Python
                // readers take it.
                (false, '\n' | '\r') => {
                    if c == '\r' && chars.peek() == Some(&'\n') {
                        chars.next();
                    }
                    record.push(std::mem::take(&mut field));
                    records.push(std::mem::take(&mut record));
                }
                (false, c) => field.push(c),
            }
        }
        assert!(
            !quoted && field.is_empty() && record.is_empty(),
            "unterminated CSV: {text:?}"
        );
        records
    }

    /// Every CSV record has four fields, and a group name with a separator,
    /// a quote or a line break reads back as it was.
    #[test]
    fn csv_fields_that_need_quoting_read_back_as_they_were() {
        let awkward = [
            "whatsapp",
            "a,comma",
            "a\"quote\"",
            "line\nbreak",
            "carriage\rreturn",
            "",
            "12",
        ];
        let r = report(&awkward, None);
        let records = parse_csv(&csv(&r));
        assert_eq!(records[0], ["metric", "bucket_start", "group", "value"]);
        assert!(records.iter().all(|f| f.len() == 4), "{records:?}");
        let groups: Vec<&str> = records[1..=awkward.len()].iter().map(|f| f[2].as_str()).collect();
        assert_eq!(groups, awkward);
        assert_eq!(records[awkward.len() + 1][2], "whatsapp");
        assert_eq!(records.len(), 1 + awkward.len() + 2);
    }

    /// The table of strings known to be plain knows one by its address and
    /// length together: a string at the same address with another length,
    /// or another string of the same length in the same slot (1,024 bytes
    /// on), is checked again.
    #[test]
    fn plain_strings_are_known_by_address_and_length() {
        let text = format!("ab\"{}\"b", "x".repeat(1021));
        let (first, longer, same_slot) = (&text[0..2], &text[0..3], &text[1024..1026]);
        assert_eq!((first, longer, same_slot), ("ab", "ab\"", "\"b"));
        let mut plain = Plain::default();
        let mut out = Vec::new();
        for s in [first, longer, first, same_slot] {
            out.clear();
            plain.json_str(&mut out, s);
            assert_eq!(out, serde_json::to_vec(s).unwrap(), "{s}");
        }
    }

    /// The hand-written document is serde's, byte for byte, with names
    /// that need escaping, and with empty and missing parts.
    #[test]
    fn compact_json_is_serdes_document() {
        let awkward = [
            "whatsapp",
            "a\"quote",
            "back\\slash",
            "tab\there",
            "\u{1}",
            "ünïcödé ✓",
            "",
            "12",
        ];
        for r in [
            report(&awkward, Some(vec![3, -1])),
            report(&awkward[..1], None),
            report(&[], Some(vec![])),
        ] {
            let mut expected = serde_json::to_vec(&r).unwrap();
            expected.push(b'\n');
            assert_eq!(
                String::from_utf8(json_compact(&r)).unwrap(),
                String::from_utf8(expected).unwrap()
            );
        }
    }
}

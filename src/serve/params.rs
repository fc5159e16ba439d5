//! The report endpoint's query string, parsed into a [`ReportQuestion`]
//! with the CLI's messages. Pure.
//!
//! Repeated keys (`channel=1&channel=2`) and comma lists (`channel=1,2`)
//! both work for the lists; an unknown key is an error, so a typo never
//! silently widens an answer, and so is any other key given twice
//! (`from=…&from=…`), which would otherwise answer for one of the two
//! without saying which.

use chrono::NaiveDate;
use clap::ValueEnum;

use crate::calendar::{Interval, parse_date};
use crate::metric::Metric;
use crate::report::ReportQuestion;
use crate::report::engine::GroupBy;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Json,
    Csv,
}

fn one_of<T: ValueEnum>(key: &str, value: &str) -> Result<T, String> {
    T::from_str(value, false).map_err(|_| {
        let names: Vec<String> = T::value_variants()
            .iter()
            .filter_map(|v| Some(v.to_possible_value()?.get_name().to_string()))
            .collect();
        format!("{key}: unknown value {value:?}; expected one of {}", names.join(", "))
    })
}

/// The question and the format asked for (`format=` wins over `Accept`).
pub fn parse(account: i64, query: Option<&str>, accepts_csv: bool) -> Result<(ReportQuestion, Format), String> {
    let mut from: Option<NaiveDate> = None;
    let mut to: Option<NaiveDate> = None;
    let mut time_zone = None;
    let mut interval = None;
    let mut group_by = None;
    let mut channels = Vec::new();
    let mut metrics = Vec::new();
    let mut base_grain_only = None;
    let mut format = None;
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let date = |v: &str| parse_date(v).map_err(|e| format!("{key}: {e}"));
        match key.as_ref() {
            "from" => once(&mut from, &key, date(&value)?)?,
            "to" => once(&mut to, &key, date(&value)?)?,
            "time_zone" => once(&mut time_zone, &key, value.to_string())?,
            "interval" => once(&mut interval, &key, one_of(&key, &value)?)?,
            "group_by" => once(&mut group_by, &key, one_of(&key, &value)?)?,
            "channel" => {
                for part in value.split(',').filter(|p| !p.is_empty()) {
                    let id = part
                        .trim()
                        .parse::<i64>()
                        .map_err(|_| format!("channel: expected a channel id (a number), got {part:?}"))?;
                    channels.push(id);
                }
            }
            "metric" => {
                for part in value.split(',').filter(|p| !p.is_empty()) {
                    metrics.push(one_of::<Metric>(&key, part.trim())?);
                }
            }
            "format" => {
                let asked = match value.as_ref() {
                    "json" => Format::Json,
                    "csv" => Format::Csv,
                    other => return Err(format!("format: unknown value {other:?}; expected one of json, csv")),
                };
                once(&mut format, &key, asked)?;
            }
            "base_grain" => {
                let only = match value.as_ref() {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    other => return Err(format!("base_grain: expected true or false, got {other:?}")),
                };
                once(&mut base_grain_only, &key, only)?;
            }
            other => return Err(format!("unknown parameter {other:?}")),
        }
    }
    let from = from.ok_or("from: a first local date (YYYY-MM-DD) is required")?;
    let to = to.ok_or("to: a last local date (YYYY-MM-DD) is required")?;
    if from > to {
        return Err(format!("--from {from} is after --to {to}"));
    }
    // Normalized, so equal questions share a cache entry and an ETag.
    channels.sort_unstable();
    channels.dedup();
    metrics.sort_unstable();
    metrics.dedup();
    Ok((
        ReportQuestion {
            account,
            from,
            to,
            time_zone,
            interval: interval.unwrap_or(Interval::Daily),
            group_by: group_by.unwrap_or(GroupBy::Platform),
            channels,
            metrics,
            base_grain_only: base_grain_only.unwrap_or(false),
        },
        format.unwrap_or(if accepts_csv { Format::Csv } else { Format::Json }),
    ))
}

/// Whether an `Accept` header (its lines joined by commas) asks for CSV
/// before JSON (RFC 9110 §12.5.1): each type's weight is that of the most
/// specific range that matches it (`text/csv`, then `text/*`, then `*/*`),
/// `q=0` refuses a type, and media types are compared without case. CSV
/// wins on a higher weight, or on an equal one when it is named itself;
/// anything else (no header, `*/*`, a type we do not serve) gets JSON.
pub fn prefers_csv(accept: Option<&str>) -> bool {
    // (specificity, weight) of the best range seen for each type.
    let mut csv: Option<(u8, f32)> = None;
    let mut json: Option<(u8, f32)> = None;
    for range in accept.unwrap_or("").split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let weight = parts
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
            .map_or(Some(1.0), |(_, v)| {
                v.trim().parse::<f32>().ok().filter(|q| (0.0..=1.0).contains(q))
            });
        let Some(weight) = weight else { continue };
        let consider = |slot: &mut Option<(u8, f32)>, exact: &str, family: &str| {
            let specificity = match media.as_str() {
                m if m == exact => 3,
                m if m == family => 2,
                "*/*" => 1,
                _ => return,
            };
            if slot.is_none_or(|(s, _)| specificity > s) {
                *slot = Some((specificity, weight));
            }
        };
        consider(&mut csv, "text/csv", "text/*");
        consider(&mut json, "application/json", "application/*");
    }
    match (csv, json) {
        (Some((_, c)), _) if c <= 0.0 => false,
        (Some((s, c)), Some((_, j))) => c > j || (c == j && s == 3),
        (Some(_), None) => true,
        (None, _) => false,
    }
}

/// Sets a parameter that may be given once.
fn once<T>(slot: &mut Option<T>, key: &str, value: T) -> Result<(), String> {
    if slot.replace(value).is_some() {
        return Err(format!("{key}: given more than once"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalizes_a_question() {
        let (q, f) = parse(
            3,
            Some("from=2026-01-01&to=2026-01-31&interval=weekly&group_by=channel&channel=5,2&channel=2&metric=channels&format=csv"),
            false,
        )
        .unwrap();
        assert_eq!(f, Format::Csv);
        assert_eq!(
            (q.account, q.interval, q.group_by),
            (3, Interval::Weekly, GroupBy::Channel)
        );
        assert_eq!(q.channels, vec![2, 5]);
        assert_eq!(q.metrics, vec![Metric::Channels]);
        let (q2, _) = parse(3, Some("to=2026-01-31&from=2026-01-01"), true).unwrap();
        assert_eq!(q2.interval, Interval::Daily);
    }

    /// One question however it is spelt: the same cache entry and ETag.
    #[test]
    fn lists_and_flags_spelt_differently_ask_the_same_question() {
        let question = |q: &str| {
            parse(3, Some(&format!("from=2026-01-01&to=2026-01-31&{q}")), false)
                .unwrap()
                .0
        };
        assert_eq!(
            question("metric=channels,active_agents&metric=channels"),
            question("metric=active_agents,channels")
        );
        assert_eq!(
            question("metric=active_agents&metric=channels").metrics,
            vec![Metric::ActiveAgents, Metric::Channels]
        );
        assert_eq!(question("channel=5&channel=2,5,"), question("channel=2,5"));
        assert_eq!(question("base_grain=1"), question("base_grain=true"));
        assert_eq!(question("base_grain=0"), question("base_grain=false"));
        assert!(question("base_grain=1").base_grain_only);
        assert!(!question("base_grain=0").base_grain_only);
        assert!(parse(3, Some("from=2026-01-01&to=2026-01-31&base_grain=yes"), false).is_err());
    }

    #[test]
    fn csv_is_chosen_by_the_accept_headers_weights() {
        for (accept, csv) in [
            (None, false),
            (Some(""), false),
            (Some("text/csv"), true),
            (Some("TEXT/CSV"), true),
            (Some("text/csv; charset=utf-8"), true),
            (Some("text/csv;q=0"), false),
            (Some("text/csv;q=0, application/json"), false),
            (Some("text/csv;q=0, */*"), false),
            (Some("application/json;q=0.1, text/csv;q=0.9"), true),
            (Some("application/json;q=0.9, text/csv;q=0.1"), false),
            (Some("text/csv, application/json"), true),
            (Some("application/json, text/csv"), true),
            (Some("*/*"), false),
            (Some("text/*"), true),
            (Some("text/*, application/json"), false),
            (Some("text/html"), false),
            (Some("text/csv;q=2"), false),
            (Some("text/csv;q=x"), false),
            (Some("*/*;q=0.1, text/csv"), true),
        ] {
            assert_eq!(prefers_csv(accept), csv, "{accept:?}");
        }
    }

    #[test]
    fn bad_parameters_get_one_line_messages() {
        let err = |q: &str| parse(1, Some(q), false).unwrap_err();
        assert!(err("from=2026-13-01&to=2026-01-01").starts_with("from: expected a date as YYYY-MM-DD"));
        assert_eq!(
            err("from=2026-02-01&to=2026-01-01"),
            "--from 2026-02-01 is after --to 2026-01-01"
        );
        assert!(err("from=2026-01-01&to=2026-01-01&interval=fortnightly").contains("expected one of hourly, daily"));
        assert!(err("from=2026-01-01&to=2026-01-01&metric=umc").starts_with("metric: unknown value"));
        assert!(err("from=2026-01-01&to=2026-01-01&chanel=1").contains("unknown parameter"));
        assert!(err("to=2026-01-01").starts_with("from: "));
        assert!(err("from=2026-01-01&to=2026-01-01&channel=x").starts_with("channel: "));
        for twice in [
            "from=2026-01-02",
            "to=2026-01-01",
            "time_zone=UTC&time_zone=UTC",
            "interval=daily&interval=weekly",
            "group_by=channel&group_by=channel",
            "format=csv&format=json",
            "base_grain=1&base_grain=0",
        ] {
            let got = err(&format!("from=2026-01-01&to=2026-01-01&{twice}"));
            let key = twice.split('=').next().unwrap();
            assert_eq!(got, format!("{key}: given more than once"), "{twice}");
        }
    }
}

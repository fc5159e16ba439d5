//! What every report over a warehouse reads first, read once: the published
//! days, the latest day's accounts and channels, the latest finished run,
//! and a version that changes whenever a day is published again.
//!
//! - A [`Snapshot`] is immutable. `serve` keeps one and swaps in a new one
//!   only once it has been loaded completely; the CLI loads one per
//!   process. Both answer through [`Snapshot::report`], so they give the
//!   same numbers.
//! - Which days are published, and the dimensions, come from the snapshot
//!   for the whole of a request. Day files and rollups are read when a
//!   request needs them: a day's files by the keys of the runs the
//!   snapshot's index names, or, when one of them is gone, through the
//!   day's manifests. A rerun deletes the files it replaced right after it
//!   writes its manifest, so a rerun that lands between two refreshes shows
//!   its numbers from then on (one version of the day either way, never a
//!   mix), and changes [`Snapshot::version`] at the next refresh.
//! - Rollups are answered from only as the snapshot's view has them: days
//!   of refreshes under way go to the base grain, rows of refreshes it did
//!   not see finish are not used, and a cached part is confirmed against the
//!   store once per version, so one answer never mixes two refreshes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex, PoisonError};

use arrow::array::{Array, AsArray};
use chrono::NaiveDate;
use chrono_tz::Tz;

use super::engine::{Counter, Metric, Query, Report};
use super::{Error, ReportQuestion, ints, parse_time_zone, rollups, strings};
use crate::calendar;
use crate::metric::ChannelDim;
use crate::model::MICROS_PER_DAY;
use crate::model::UnixMicros;
use crate::rollup::{PartCache, View};
use crate::warehouse::Warehouse;
use crate::warehouse::manifest::Fnv64;
use crate::warehouse::paths::{RunId, ShardSpec, Table};

/// An account as of the latest published day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountInfo {
    pub id: i64,
    pub name: Option<String>,
    /// The account's IANA zone, as the source has it (may be invalid).
    pub time_zone: Option<String>,
}

impl AccountInfo {
    /// The zone reports default to and rollups are built in: UTC when the
    /// source's is missing or no IANA name (the job warns of those).
    pub fn zone(&self) -> Tz {
        calendar::stored_zone(self.time_zone.as_deref()).unwrap_or(Tz::UTC)
    }
}

#[derive(Debug)]
pub struct Snapshot {
    warehouse: Warehouse,
    published: BTreeSet<NaiveDate>,
    /// The same days in order, so that a span's published days are counted
    /// by two binary searches rather than walked (a year is 365 steps).
    published_in_order: Vec<NaiveDate>,
    /// The runs that published each day's shards, where the index names them.
    runs: BTreeMap<NaiveDate, Vec<(ShardSpec, RunId)>>,
    shard_counts: BTreeSet<u32>,
    accounts: BTreeMap<i64, AccountInfo>,
    channels: HashMap<i64, Vec<ChannelDim>>,
    latest_run: Option<RunId>,
    /// Days of rollup refreshes under way when the snapshot was loaded.
    refreshing: BTreeSet<NaiveDate>,
    /// By shard spec, the stamp of its latest finished rollup refresh.
    rollups_refreshed: BTreeMap<ShardSpec, UnixMicros>,
    version: u64,
    caches: Caches,
}

/// What the snapshots of one `serve` share, so that an answer reads what an
/// earlier one decoded; a one-shot `report` has none.
#[derive(Debug, Clone, Default)]
pub struct Caches {
    /// Decoded rollup parts.
    pub parts: Option<Arc<PartCache>>,
    /// Accounts' decoded base-grain rows.
    pub grain: Option<Arc<super::GrainCache>>,
}

impl Snapshot {
    /// Reads the rollups' dirty markers, the published-days index
    /// (`warehouse::index`) and the latest day's dimension tables: a few
    /// objects, however old the warehouse. An empty warehouse is a snapshot
    /// with no days. Rollup parts are decoded through `caches.parts` when
    /// given; a part is confirmed against the store once per snapshot
    /// version, so the cache may outlive the snapshot. Base-grain rows are
    /// kept in `caches.grain` when given: a data file's key names its run and
    /// is never rewritten, so its entries need no confirming.
    pub async fn load(warehouse: Warehouse, caches: Caches) -> Result<Snapshot, Error> {
        let loaded = Snapshot::load_unless_at(warehouse, caches, None).await?;
        Ok(loaded.expect("no version to be at"))
    }

    /// As [`Snapshot::load`], but `None` when the warehouse is still at
    /// `version`: then only the markers and the index are read, not the
    /// dimension tables, which change only with the index.
    pub async fn load_unless_at(
        warehouse: Warehouse,
        caches: Caches,
        version: Option<u64>,
    ) -> Result<Option<Snapshot>, Error> {
        // Markers first: a refresh that ends in between records its stamp
        // before it deletes its marker, so it is seen as under way or as
        // finished, never as neither.
        let markers = crate::rollup::dirty_markers(&warehouse)
            .await
            .map_err(Error::DirtyMarkers)?;
        let index = crate::warehouse::index::load(&warehouse).await?;
        let mut fingerprint = Fnv64::default();
        fingerprint.write(&index.fingerprint.to_le_bytes());
        for key in markers.keys() {
            fingerprint.write(key.as_bytes());
        }
        let fingerprint = fingerprint.finish();
        if version == Some(fingerprint) {
            return Ok(None);
        }
        let refreshing = markers.into_values().flat_map(|(_, days)| days).collect();
        let (published, latest_run) = (index.days, index.latest_run);
        let mut accounts = BTreeMap::new();
        let mut channels: HashMap<i64, Vec<ChannelDim>> = HashMap::new();
        if let Some(&latest) = published.iter().next_back() {
            let runs = index.runs.get(&latest);
            let (account_batches, channel_batches) = futures::try_join!(
                super::day_table(&warehouse, latest, runs, Table::Accounts),
                super::day_table(&warehouse, latest, runs, Table::Channels),
            )?;
            for b in account_batches {
                let ids = ints(&b, "account_id", Table::Accounts)?;
                let names = strings(&b, "name");
                let zones = b.column_by_name("time_zone").map(|c| c.as_string::<i32>().clone());
                for (i, id) in ids.iter().enumerate() {
                    let Some(id) = *id else { continue };
                    let time_zone = zones
                        .as_ref()
                        .and_then(|z| z.is_valid(i).then(|| z.value(i).to_string()));
                    accounts.insert(
                        id,
                        AccountInfo {
                            id,
                            name: names[i].clone(),
                            time_zone,
                        },
                    );
                }
            }
            for c in super::channels_from(&channel_batches)? {
                channels.entry(c.account_id).or_default().push(c);
            }
        }
        Ok(Some(Snapshot {
            warehouse,
            published_in_order: published.iter().copied().collect(),
            published,
            runs: index.runs,
            shard_counts: index.shard_counts,
            accounts,
            channels,
            latest_run,
            refreshing,
            rollups_refreshed: index.rollups_refreshed,
            version: fingerprint,
            caches,
        }))
    }

    pub fn warehouse(&self) -> &Warehouse {
        &self.warehouse
    }

    /// Changes whenever any day is published (again), a run finishes, or a
    /// rollup refresh starts or ends.
    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn published(&self) -> &BTreeSet<NaiveDate> {
        &self.published
    }

    pub fn latest_run(&self) -> Option<&RunId> {
        self.latest_run.as_ref()
    }

    pub fn account(&self, id: i64) -> Option<&AccountInfo> {
        self.accounts.get(&id)
    }

    pub fn accounts(&self) -> impl Iterator<Item = &AccountInfo> {
        self.accounts.values()
    }

    /// The account's channels as of the latest published day, by id.
    pub fn channels(&self, account: i64) -> &[ChannelDim] {
        self.channels.get(&account).map_or(&[], |v| v.as_slice())
    }

    /// Validates a question against this snapshot and answers it.
    pub async fn report(&self, question: &ReportQuestion) -> Result<Report, Error> {
        let (query, account_tz, spans) = self.plan(question)?;
        let wanted = spans.hull();
        let channels = self.channels(question.account);
        if !question.base_grain_only {
            let view = View {
                counts: &self.shard_counts,
                finished: Some(&self.rollups_refreshed),
                cache: self.caches.parts.as_deref().map(|c| (c, self.version)),
            };
            match rollups::try_answer(
                &self.warehouse,
                view,
                &self.published,
                &self.refreshing,
                &query,
                account_tz,
                channels,
                &wanted,
            )
            .await
            {
                Ok(Some(report)) => return Ok(report),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "Rollups could not be read; answering from the base grain."),
            }
        }
        let mut days = super::GrainDays {
            range: super::days_within(&self.published, &spans.range).collect(),
            months: spans
                .months
                .iter()
                .flat_map(|m| super::days_within(&self.published, m))
                .collect(),
            runs: BTreeMap::new(),
        };
        days.runs = days
            .range
            .union(&days.months)
            .filter_map(|d| Some((*d, self.runs.get(d)?.clone())))
            .collect();
        let counter = Arc::new(Mutex::new(Counter::new(&query, channels)));
        let grain_cache = self.caches.grain.as_ref();
        super::count_account(
            &self.warehouse,
            question.account,
            &days,
            &query.metrics,
            &counter,
            grain_cache,
        )
        .await?;
        // Counting is CPU work: off the async workers, so a long report
        // never stalls other requests (or their timeouts).
        tokio::task::spawn_blocking(move || {
            let counter = Arc::into_inner(counter).expect("every day was counted");
            counter.into_inner().unwrap_or_else(PoisonError::into_inner).finish()
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))
    }

    /// The validated query, the account's zone, and the UTC days it reads.
    fn plan(&self, q: &ReportQuestion) -> Result<(Query, Tz, Spans), Error> {
        if q.from > q.to {
            return Err(Error::FromAfterTo { from: q.from, to: q.to });
        }
        if (q.to - q.from).num_days() >= super::MAX_RANGE_DAYS {
            return Err(Error::RangeTooLong { from: q.from, to: q.to });
        }
        let requested_tz = q.time_zone.as_deref().map(parse_time_zone).transpose()?;
        let Some(&latest) = self.published.iter().next_back() else {
            return Err(Error::EmptyWarehouse);
        };
        let account = self.account(q.account).ok_or(Error::UnknownAccount(q.account))?;
        // An account whose stored zone is missing or no IANA name is in UTC
        // here as in its rollups (the job names it in a warning): the zone
        // the asker did not give is not the asker's input error.
        let tz = requested_tz.unwrap_or_else(|| account.zone());
        let channels = self.channels(q.account);
        for id in &q.channels {
            if !channels.iter().any(|c| c.id == *id) {
                return Err(Error::UnknownChannel {
                    account: q.account,
                    channel: *id,
                });
            }
        }
        let query = Query {
            account_id: q.account,
            tz,
            from: q.from,
            to: q.to,
            interval: q.interval,
            group_by: q.group_by,
            channels: (!q.channels.is_empty()).then(|| q.channels.iter().copied().collect()),
            metrics: if q.metrics.is_empty() {
                Metric::ALL.into_iter().collect()
            } else {
                q.metrics.iter().copied().collect()
            },
        };

        // UTC days under the range must be published; so must the days of
        // the whole months of UMC, up to the latest published day (later
        // ones have not happened yet). Both are spans of days: counted in
        // the published set, not listed, unless some are missing.
        let utc_days = |start: i64, end: i64| -> RangeInclusive<NaiveDate> {
            let day = |t: i64| NaiveDate::from_epoch_days(i32::try_from(t.div_euclid(MICROS_PER_DAY)).ok()?);
            match (day(start), day(end - 1)) {
                (Some(first), Some(last)) => first..=last,
                _ => NaiveDate::MAX..=NaiveDate::MIN,
            }
        };
        let (start, end) = calendar::range(&tz, query.from, query.to);
        let rows = answer_rows(&query, channels, end - start);
        if rows > super::MAX_ANSWER_ROWS {
            return Err(Error::TooManyRows { rows });
        }
        let range = utc_days(start, end);
        let (months, months_so_far) = if query.metrics.contains(&Metric::UniqueMonthlyContacts) {
            let months = calendar::umc_months(tz, query.from, query.to);
            let month_days = utc_days(months.start(), months.end());
            let so_far = *month_days.start()..=(*month_days.end()).min(latest);
            (Some(month_days), so_far)
        } else {
            (None, NaiveDate::MAX..=NaiveDate::MIN)
        };
        let published_all = |span: &RangeInclusive<NaiveDate>| {
            let days = &self.published_in_order;
            span.is_empty()
                || (days.partition_point(|d| d <= span.end()) - days.partition_point(|d| d < span.start())) as i64
                    == (*span.end() - *span.start()).num_days() + 1
        };
        if !(published_all(&range) && published_all(&months_so_far)) {
            let required: BTreeSet<NaiveDate> = [range.clone(), months_so_far]
                .into_iter()
                .filter(|s| !s.is_empty())
                .flat_map(|s| s.start().iter_days().take_while(move |d| d <= s.end()))
                .collect();
            let missing: Vec<NaiveDate> = required.into_iter().filter(|d| !self.published.contains(d)).collect();
            return Err(Error::MissingDays(missing));
        }
        Ok((query, account.zone(), Spans { range, months }))
    }
}

/// About how many rows the answer to `query` has (at least as many, and
/// not half as many again): a row per bucket, metric and group, a bucket
/// total per bucket and metric, and a total per metric and group and over
/// all; unique monthly contacts by month. `micros` is the range's length:
/// hourly buckets are its hours plus one a day (where a 30-minute DST
/// change splits an hour), so as not to walk ten years of hours to refuse
/// them.
fn answer_rows(query: &Query, channels: &[ChannelDim], micros: i64) -> u64 {
    use crate::calendar::Interval;
    let wanted: Vec<&ChannelDim> = match &query.channels {
        Some(ids) => channels.iter().filter(|c| ids.contains(&c.id)).collect(),
        None => channels.iter().collect(),
    };
    let groups = match query.group_by {
        super::engine::GroupBy::Channel => wanted.len(),
        super::engine::GroupBy::Platform => wanted.iter().map(|c| &c.platform).collect::<BTreeSet<_>>().len(),
    } as u64;
    let days = (query.to - query.from).num_days().unsigned_abs() + 1;
    let buckets = match query.interval {
        Interval::Hourly => micros.unsigned_abs().div_ceil(crate::model::MICROS_PER_HOUR as u64) + days,
        Interval::Daily => days,
        Interval::Weekly => days / 7 + 2,
        Interval::Monthly => days / 28 + 2,
        Interval::Quarterly => days / 90 + 2,
        Interval::Yearly => days / 365 + 2,
    };
    let months = days / 28 + 2;
    // Each metric's buckets and its total, by group and over all groups.
    query
        .metrics
        .iter()
        .map(|m| match m {
            Metric::UniqueMonthlyContacts => months + 1,
            _ => buckets + 1,
        })
        .sum::<u64>()
        .saturating_mul(groups + 1)
}

/// The UTC days a question covers: those under its range, and those of the
/// whole months of unique monthly contacts (when asked).
struct Spans {
    range: RangeInclusive<NaiveDate>,
    months: Option<RangeInclusive<NaiveDate>>,
}

impl Spans {
    /// From the first day either needs to the last.
    fn hull(&self) -> RangeInclusive<NaiveDate> {
        match &self.months {
            Some(m) => (*self.range.start()).min(*m.start())..=(*self.range.end()).max(*m.end()),
            None => self.range.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::Interval;
    use crate::report::engine::{AccountGrain, GroupBy, compute};
    use crate::seed::rng::Rng;

    /// The bound on an answer's rows, against the rows answers have, over
    /// random questions in zones with 30-minute and midnight DST changes:
    /// never below them (a question under the cap is never cut), and close
    /// enough that the cap means what it says.
    #[test]
    fn answer_rows_bounds_the_rows_of_answers_closely() {
        let platforms = ["whatsapp", "sms", "email", "line"];
        let channels: Vec<ChannelDim> = (1..=7)
            .map(|id| ChannelDim {
                id,
                account_id: 1,
                platform: Some(platforms[id as usize % 4].into()),
                name: None,
                environment: Some(if id == 7 { "test" } else { "production" }.into()),
                connected_at: Some(0),
                disconnected_at: None,
            })
            .collect();
        let zones = [
            "Australia/Lord_Howe",
            "America/Santiago",
            "Asia/Kathmandu",
            "UTC",
            "Pacific/Chatham",
        ];
        let mut rng = Rng::new(11);
        for case in 0..300 {
            let interval = Interval::ALL[case % Interval::ALL.len()];
            let span = if interval == Interval::Hourly { 40 } else { 900 };
            let from = NaiveDate::from_ymd_opt(2024, 1, 1).unwrap() + chrono::Days::new(rng.range(0, 700) as u64);
            let to = from + chrono::Days::new(rng.range(0, span) as u64);
            let metrics: BTreeSet<Metric> = Metric::ALL.into_iter().filter(|_| rng.range(0, 3) > 0).collect();
            let query = Query {
                account_id: 1,
                tz: zones[rng.range(0, zones.len() as i64) as usize].parse().unwrap(),
                from,
                to,
                interval,
                group_by: if rng.range(0, 2) == 0 {
                    GroupBy::Platform
                } else {
                    GroupBy::Channel
                },
                channels: (rng.range(0, 3) == 0).then(|| [1, 2, 7].into_iter().collect()),
                metrics: if metrics.is_empty() {
                    [Metric::ActiveAgents].into()
                } else {
                    metrics
                },
            };
            // A group has rows once it has data: every channel has some.
            let (start, end) = calendar::range(&query.tz, query.from, query.to);
            let mut grain = AccountGrain {
                channels: channels.clone(),
                ..AccountGrain::default()
            };
            for c in &channels {
                grain.contacts.push((c.id, 1, start, start));
                grain.agents.push((c.id, 1, start, start));
                grain.resolved.push((c.id, start, 1));
                grain.proactive.push((c.id, start, 1));
            }
            let report = compute(&query, &grain);
            let rows = (report.rows.len() + report.bucket_totals.len() + report.totals.len()) as u64;
            let bound = answer_rows(&query, &channels, end - start);
            assert!(bound >= rows, "{query:?}: {bound} < {rows}");
            assert!(bound <= rows * 3 / 2 + 60, "{query:?}: {bound} against {rows}");
        }
    }
}

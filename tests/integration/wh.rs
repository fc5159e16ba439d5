//! Reading what the job published, through the library's manifest-aware
//! reader, into plain values that tests can compare.

use std::collections::{BTreeMap, BTreeSet};

use account_usage::warehouse::manifest::{self, DayManifest};
use account_usage::warehouse::paths::Table;
use account_usage::warehouse::{Warehouse, WarehouseUrl};
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int64Type};
use arrow::util::display::array_value_to_string;
use chrono::NaiveDate;

pub fn open(url: &str, options: &[(&'static str, String)]) -> Warehouse {
    let url: WarehouseUrl = url.parse().unwrap();
    let opts: Vec<(&str, &str)> = options.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Warehouse::open_with_options(&url, &opts).unwrap()
}

pub fn day(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

/// An RFC 3339 instant, as the microseconds the SQLite source stores.
pub fn micros(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .timestamp_micros()
}

pub fn days(from: &str, to: &str) -> Vec<NaiveDate> {
    day(from).iter_days().take_while(|d| *d <= day(to)).collect()
}

pub async fn batches(wh: &Warehouse, d: NaiveDate, table: Table) -> Vec<RecordBatch> {
    manifest::read_day_table(wh, d, table)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("day {d} is not published"))
}

pub async fn manifests(wh: &Warehouse, d: NaiveDate) -> Option<Vec<DayManifest>> {
    manifest::published_day(wh, d).await.unwrap()
}

/// One integer (or timestamp, as Unix microseconds) column of every batch.
pub fn ints(batches: &[RecordBatch], column: &str) -> Vec<Option<i64>> {
    let mut out = Vec::new();
    for b in batches {
        let col = b.column_by_name(column).unwrap_or_else(|| panic!("no column {column}"));
        let col = arrow::compute::cast(col, &DataType::Int64).unwrap();
        let col = col.as_primitive::<Int64Type>();
        out.extend((0..col.len()).map(|i| col.is_valid(i).then(|| col.value(i))));
    }
    out
}

pub fn strings(batches: &[RecordBatch], column: &str) -> Vec<Option<String>> {
    let mut out = Vec::new();
    for b in batches {
        let col = b.column_by_name(column).unwrap_or_else(|| panic!("no column {column}"));
        out.extend((0..col.len()).map(|i| col.is_valid(i).then(|| array_value_to_string(col, i).unwrap())));
    }
    out
}

/// Every row of some batches, rendered and sorted: equal tables give equal vectors.
pub fn rendered_rows(batches: impl IntoIterator<Item = RecordBatch>) -> Vec<String> {
    let mut rows = Vec::new();
    for b in batches {
        for i in 0..b.num_rows() {
            let cells: Vec<String> = b
                .columns()
                .iter()
                .map(|c| array_value_to_string(c, i).unwrap())
                .collect();
            rows.push(cells.join("|"));
        }
    }
    rows.sort();
    rows
}

/// Every row of a table of a day, rendered and sorted.
pub async fn table_rows(wh: &Warehouse, d: NaiveDate, table: Table) -> Vec<String> {
    rendered_rows(batches(wh, d, table).await)
}

/// A reader that reads every table of every day in a loop until `stop`,
/// asserting each read equals `reference` (a partial day never does);
/// returns how many tables it read.
pub fn spawn_day_reader(
    url: &str,
    options: &[(&'static str, String)],
    reference: &BTreeMap<(NaiveDate, &'static str), Vec<String>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<usize> {
    let (url, options, reference) = (url.to_string(), options.to_vec(), reference.clone());
    tokio::spawn(async move {
        let wh = open(&url, &options);
        let mut reads = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            for ((d, name), expected) in &reference {
                let table = Table::from_name(name).unwrap();
                assert_eq!(
                    &table_rows(&wh, *d, table).await,
                    expected,
                    "a reader saw a partial {d} {name}"
                );
                reads += 1;
            }
        }
        reads
    })
}

/// Every table of every day, for comparing whole warehouses.
pub async fn snapshot(wh: &Warehouse, ds: &[NaiveDate]) -> BTreeMap<(NaiveDate, &'static str), Vec<String>> {
    let mut out = BTreeMap::new();
    for d in ds {
        for t in Table::ALL {
            out.insert((*d, t.name()), table_rows(wh, *d, t).await);
        }
    }
    out
}

/// A day's reject rows, summed by reason.
pub async fn rejects_by_reason(wh: &Warehouse, d: NaiveDate) -> BTreeMap<String, i64> {
    let rejects = batches(wh, d, Table::Rejects).await;
    let mut by_reason = BTreeMap::new();
    for (reason, n) in strings(&rejects, "reason").into_iter().zip(ints(&rejects, "rows")) {
        *by_reason.entry(reason.unwrap()).or_insert(0) += n.unwrap();
    }
    by_reason
}

/// Counts per (a, b) key over two integer columns, dividing the first by `div`.
pub fn count_by(batches: &[RecordBatch], a: &str, div: i64, b: &str, value: Option<&str>) -> BTreeMap<(i64, i64), i64> {
    let (xs, ys) = (ints(batches, a), ints(batches, b));
    let vs = value.map(|v| ints(batches, v));
    let mut out = BTreeMap::new();
    for i in 0..xs.len() {
        let add = vs.as_ref().map(|v| v[i].unwrap()).unwrap_or(1);
        *out.entry((xs[i].unwrap() / div, ys[i].unwrap())).or_insert(0) += add;
    }
    out
}

/// Distinct values of `entity` per `key / div`.
pub fn distinct_by(batches: &[RecordBatch], key: &str, div: i64, entity: &str) -> BTreeMap<i64, i64> {
    let mut sets: BTreeMap<i64, BTreeSet<i64>> = BTreeMap::new();
    for (k, e) in ints(batches, key).into_iter().zip(ints(batches, entity)) {
        sets.entry(k.unwrap() / div).or_default().insert(e.unwrap());
    }
    sets.into_iter().map(|(k, s)| (k, s.len() as i64)).collect()
}

/// The rollups as readers see them: per bucket folder
/// (`rollups/interval=I/period=P`) and account, the rows of the part that
/// refreshed the account last (of any shard count), rendered without the
/// stamp. Fails on an account held twice with the same stamp.
pub async fn rollup_snapshot(wh: &Warehouse) -> BTreeMap<String, Vec<String>> {
    let mut newest: BTreeMap<(String, i64), account_usage::rollup::AccountBucket> = BTreeMap::new();
    for key in wh.list("rollups").await.unwrap() {
        let bytes = wh.get(&key).await.unwrap().unwrap();
        let folder = key.rsplit_once('/').unwrap().0.to_string();
        let any_key = account_usage::warehouse::paths::RollupKey {
            interval: account_usage::calendar::Interval::Daily,
            period: NaiveDate::MIN,
            shard: account_usage::warehouse::paths::ShardSpec::WHOLE,
        };
        for bucket in account_usage::rollup::decode(&any_key, bytes, true, None).unwrap() {
            let slot = (folder.clone(), bucket.account);
            match newest.get(&slot) {
                Some(have) if have.refreshed_at > bucket.refreshed_at => {}
                Some(have) if have.refreshed_at == bucket.refreshed_at => {
                    assert_eq!(
                        have, &bucket,
                        "{key}: two parts hold account {} with one stamp",
                        bucket.account
                    )
                }
                _ => {
                    newest.insert(slot, bucket);
                }
            }
        }
    }
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for ((folder, account), bucket) in newest {
        let rows = out.entry(folder).or_default();
        for r in &bucket.rows {
            rows.push(format!(
                "{account}|{}|{}|{}|{}|{:?}|{}|{:?}",
                bucket.time_zone,
                bucket.start,
                bucket.end,
                account_usage::rollup::cells::rollup_metric_name(r.metric),
                r.group,
                r.value,
                r.ids
            ));
        }
    }
    out
}

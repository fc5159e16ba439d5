//! Splicing a day's table: the rows of some accounts replaced, every other
//! row kept as it was. A run of some accounts (`run --accounts`) writes a
//! shard's day this way, so that the shard's other accounts keep their rows.
//!
//! What must always hold:
//! - the output holds the old files' rows of every account outside
//!   `replaced` (and those with no account), unchanged and in their order,
//!   and the new file's rows, which are all of accounts in `replaced`;
//! - every table is sorted by `account_id` first, and so is the output: the
//!   two sides hold disjoint accounts, so a merge by account keeps each
//!   side's order within an account;
//! - a table of a day is held in memory while it is spliced: its rows are a
//!   day's aggregates of one shard, not its messages.

use std::collections::BTreeSet;

use arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use arrow::compute::{concat_batches, filter_record_batch, interleave_record_batch};
use arrow::datatypes::Int64Type;
use futures::TryStreamExt;

use super::paths::Table;
use super::read::stream_batches;
use super::write::ParquetFile;
use super::{Error, Result, Warehouse, tables};

/// Writes `out`: the rows of `old` (a shard's published files of `table` for
/// a day) outside `replaced`, merged with the rows of `new`. Returns the rows
/// written.
pub async fn splice_accounts(
    warehouse: &Warehouse,
    table: Table,
    old: &[String],
    new: &str,
    out: &str,
    replaced: &BTreeSet<i64>,
) -> Result<u64> {
    let arrow_err = |key: &str| {
        let key = key.to_string();
        move |source| Error::Arrow { key, source }
    };
    let mut kept = Vec::new();
    for key in old {
        for batch in read_all(warehouse, table, key).await? {
            let accounts = accounts(&batch, table, key)?;
            let keep: BooleanArray = accounts
                .iter()
                .map(|a| Some(a.is_none_or(|a| !replaced.contains(&a))))
                .collect();
            kept.push(filter_record_batch(&batch, &keep).map_err(arrow_err(key))?);
        }
    }
    let schema = tables::schema(table);
    let kept = concat_batches(&schema, &kept).map_err(arrow_err(out))?;
    let fresh = concat_batches(&schema, &read_all(warehouse, table, new).await?).map_err(arrow_err(new))?;
    let order = merge_order(&accounts(&kept, table, out)?, &accounts(&fresh, table, new)?);
    let mut file = ParquetFile::create(warehouse, out, table)?;
    for chunk in order.chunks(super::write::ROW_GROUP_ROWS) {
        let batch = interleave_record_batch(&[&kept, &fresh], chunk).map_err(arrow_err(out))?;
        file.write(&batch).await?;
    }
    file.finish().await
}

async fn read_all(warehouse: &Warehouse, table: Table, key: &str) -> Result<Vec<RecordBatch>> {
    let Some(stream) = stream_batches(warehouse, key).await? else {
        return Err(Error::BadManifest {
            key: key.to_string(),
            reason: format!("a published file of table {} is missing", table.name()),
        });
    };
    stream.try_collect().await.map_err(|source| Error::ReadParquet {
        key: key.to_string(),
        source,
    })
}

fn accounts(batch: &RecordBatch, table: Table, key: &str) -> Result<Vec<Option<i64>>> {
    let column = batch
        .column_by_name("account_id")
        .filter(|c| c.data_type() == &arrow::datatypes::DataType::Int64)
        .ok_or_else(|| Error::WrongSchema {
            key: key.to_string(),
            table: table.name(),
            column: "account_id".into(),
        })?;
    Ok(column.as_primitive::<Int64Type>().iter().collect())
}

/// The merge of two account-sorted sides with disjoint accounts, as
/// (side, row) pairs: side 0 is `kept`, side 1 `fresh`. Rows with no
/// account sort first, as the tables write them.
fn merge_order(kept: &[Option<i64>], fresh: &[Option<i64>]) -> Vec<(usize, usize)> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::with_capacity(kept.len() + fresh.len());
    while i < kept.len() || j < fresh.len() {
        if j == fresh.len() || (i < kept.len() && kept[i] <= fresh[j]) {
            out.push((0, i));
            i += 1;
        } else {
            out.push((1, j));
            j += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_merge_keeps_each_sides_order_and_sorts_by_account() {
        let kept = [None, Some(1), Some(1), Some(4), Some(9)];
        let fresh = [Some(2), Some(2), Some(5), Some(10)];
        let order = merge_order(&kept, &fresh);
        let merged: Vec<Option<i64>> = order
            .iter()
            .map(|&(side, row)| if side == 0 { kept[row] } else { fresh[row] })
            .collect();
        assert_eq!(
            merged,
            [
                None,
                Some(1),
                Some(1),
                Some(2),
                Some(2),
                Some(4),
                Some(5),
                Some(9),
                Some(10)
            ]
        );
        // Within a side, rows come in their order.
        let rows = |side| order.iter().filter(|p| p.0 == side).map(|p| p.1).collect::<Vec<_>>();
        assert_eq!(rows(0), [0, 1, 2, 3, 4]);
        assert_eq!(rows(1), [0, 1, 2, 3]);
        assert_eq!(merge_order(&[], &[Some(3)]), [(1, 0)]);
        assert_eq!(merge_order(&[Some(3)], &[]), [(0, 0)]);
    }
}

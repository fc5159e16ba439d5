//! One account's decoded base-grain rows of a data file, kept between
//! answers by `serve` (the one-shot `report` reads without it). A served
//! answer from the base grain then counts rows already in memory instead of
//! fetching, parsing and decoding its days again.
//!
//! What must always hold:
//! - an entry never goes stale: a data file's key names the run that wrote
//!   it, and a file is written once, before the manifest that makes it
//!   readable; a rerun writes new keys, and the snapshot that names them;
//! - the entries' weights (their rows' bytes) never sum past the capacity.

use std::sync::{Arc, Mutex, PoisonError};

use super::AccountRows;
use crate::fifo::Fifo;

/// The rows of one account, one entry per batch read.
pub(super) type Rows = Arc<Vec<AccountRows<'static>>>;

#[derive(Debug)]
pub struct GrainCache {
    /// By data file key and account.
    entries: Mutex<Fifo<(String, i64), Rows>>,
}

impl GrainCache {
    /// At most about `capacity_bytes` of rows (0 keeps nothing).
    pub fn new(capacity_bytes: u64) -> Self {
        GrainCache {
            entries: Mutex::new(Fifo::new(capacity_bytes)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Fifo<(String, i64), Rows>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn get(&self, key: &str, account: i64) -> Option<Rows> {
        self.lock().get(&(key.to_string(), account)).cloned()
    }

    pub(super) fn insert(&self, key: String, account: i64, rows: Rows) {
        let weight = rows
            .iter()
            .map(|r| (r.channels.len() + r.columns.iter().map(|c| c.len()).sum::<usize>()) * 8 + 64)
            .sum::<usize>() as u64;
        self.lock().insert((key, account), rows, weight);
    }

    /// Entries held, and the bytes they weigh.
    pub fn usage(&self) -> (usize, u64) {
        let entries = self.lock();
        (entries.len(), entries.used())
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;

    fn rows(n: usize) -> Rows {
        Arc::new(vec![AccountRows {
            channels: Cow::Owned(vec![7; n]),
            columns: vec![Cow::Owned(vec![1; n])],
        }])
    }

    #[test]
    fn keeps_rows_by_file_and_account_within_its_capacity() {
        let cache = GrainCache::new(2 * (16 * 8 + 64));
        cache.insert("a".into(), 1, rows(8));
        assert_eq!(cache.get("a", 1).map(|r| r[0].channels.len()), Some(8));
        assert!(cache.get("a", 2).is_none(), "another account's rows");
        assert!(cache.get("b", 1).is_none(), "another file's rows");
        cache.insert("b".into(), 1, rows(8));
        cache.insert("c".into(), 1, rows(8));
        assert!(cache.get("a", 1).is_none(), "the oldest entry goes first");
        assert_eq!(cache.usage().0, 2);
        cache.insert("d".into(), 1, rows(1000));
        assert!(cache.get("d", 1).is_none(), "heavier than the whole cache");
        let off = GrainCache::new(0);
        off.insert("a".into(), 1, rows(1));
        assert_eq!(off.usage(), (0, 0));
    }
}

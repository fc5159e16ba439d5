//! Computed answers kept in memory, keyed to the data they came from.
//!
//! - A key is (snapshot version, normalized question); the question holds
//!   the account, so one account's answer can never be another's, and a
//!   new snapshot can never be answered from an old one's entry.
//! - At most `entries` entries and `bytes` estimated bytes; the oldest
//!   inserted goes first, and an answer heavier than `bytes` is not kept.
//!   An entry count alone let a few answers of millions of rows (hourly
//!   buckets over years, by channel: 275 MB of JSON each) hold gigabytes.
//! - A swap to a new snapshot empties the cache, as nothing in it can be
//!   hit again.

use std::sync::{Arc, Mutex};

use crate::fifo::Fifo;
use crate::report::ReportQuestion;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub version: u64,
    pub question: ReportQuestion,
}

#[derive(Debug)]
pub struct ResultCache<V> {
    inner: Mutex<Fifo<Key, Arc<V>>>,
    /// The least an entry weighs: `bytes / entries`, so that the weights
    /// bound the count as well as the bytes.
    floor: u64,
}

impl<V> ResultCache<V> {
    /// Off when either bound is 0.
    pub fn new(entries: usize, bytes: u64) -> Self {
        let (capacity, floor) = match entries {
            0 => (0, 1),
            n => (bytes, (bytes / n as u64).max(1)),
        };
        ResultCache {
            inner: Mutex::new(Fifo::new(capacity)),
            floor,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Fifo<Key, Arc<V>>> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn get(&self, key: &Key) -> Option<Arc<V>> {
        self.lock().get(key).cloned()
    }

    /// Keeps `value`, which takes about `bytes` in memory.
    pub fn insert(&self, key: Key, value: Arc<V>, bytes: u64) {
        self.lock().insert(key, value, bytes.max(self.floor));
    }

    pub fn clear(&self) {
        self.lock().clear();
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// The estimated bytes held (an entry lighter than the floor counts as
    /// the floor).
    pub fn bytes(&self) -> u64 {
        self.lock().used()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::Interval;
    use crate::report::engine::GroupBy;

    fn key(version: u64, account: i64) -> Key {
        let day = chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
        Key {
            version,
            question: ReportQuestion {
                account,
                from: day,
                to: day,
                time_zone: None,
                interval: Interval::Daily,
                group_by: GroupBy::Platform,
                channels: vec![],
                metrics: vec![],
                base_grain_only: false,
            },
        }
    }

    #[test]
    fn keeps_at_most_capacity_and_never_mixes_accounts_or_versions() {
        let c = ResultCache::new(2, 1000);
        c.insert(key(1, 1), Arc::new("a1"), 10);
        c.insert(key(1, 2), Arc::new("a2"), 10);
        assert_eq!(c.get(&key(1, 2)).as_deref(), Some(&"a2"));
        assert_eq!(c.get(&key(2, 1)), None);
        c.insert(key(1, 3), Arc::new("a3"), 10);
        assert_eq!(c.len(), 2);
        assert_eq!(c.get(&key(1, 1)), None, "the oldest went first");
        c.clear();
        assert!(c.is_empty());
        for off in [ResultCache::new(0, 1000), ResultCache::new(4, 0)] {
            off.insert(key(1, 1), Arc::new("x"), 1);
            assert!(off.is_empty());
        }
    }

    #[test]
    fn keeps_at_most_its_bytes_and_no_answer_heavier_than_them() {
        let c = ResultCache::new(100, 1000);
        c.insert(key(1, 1), Arc::new("small"), 1);
        assert_eq!(c.bytes(), 10, "a light entry weighs the floor");
        c.insert(key(1, 2), Arc::new("big"), 600);
        c.insert(key(1, 3), Arc::new("bigger"), 500);
        assert!(c.bytes() <= 1000, "{}", c.bytes());
        assert_eq!(c.get(&key(1, 2)), None, "the oldest went to make room");
        assert_eq!(c.get(&key(1, 3)).as_deref(), Some(&"bigger"));
        c.insert(key(1, 4), Arc::new("huge"), 1001);
        assert_eq!(c.get(&key(1, 4)), None, "heavier than the whole cache");
        assert_eq!(c.get(&key(1, 3)).as_deref(), Some(&"bigger"));
    }
}

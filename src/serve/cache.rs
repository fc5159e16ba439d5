//! Computed answers kept in memory, keyed to the data they came from.
//!
//! - A key is (snapshot version, normalized question); the question holds
//!   the account, so one account's answer can never be another's, and a
//!   new snapshot can never be answered from an old one's entry.
//! - At most `capacity` entries; the oldest inserted goes first. A swap to
//!   a new snapshot empties the cache, as nothing in it can be hit again.

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
}

impl<V> ResultCache<V> {
    pub fn new(capacity: usize) -> Self {
        ResultCache {
            inner: Mutex::new(Fifo::new(capacity as u64)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Fifo<Key, Arc<V>>> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn get(&self, key: &Key) -> Option<Arc<V>> {
        self.lock().get(key).cloned()
    }

    pub fn insert(&self, key: Key, value: Arc<V>) {
        self.lock().insert(key, value, 1);
    }

    pub fn clear(&self) {
        self.lock().clear();
    }

    pub fn len(&self) -> usize {
        self.lock().len()
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
        let c = ResultCache::new(2);
        c.insert(key(1, 1), Arc::new("a1"));
        c.insert(key(1, 2), Arc::new("a2"));
        assert_eq!(c.get(&key(1, 2)).as_deref(), Some(&"a2"));
        assert_eq!(c.get(&key(2, 1)), None);
        c.insert(key(1, 3), Arc::new("a3"));
        assert_eq!(c.len(), 2);
        assert_eq!(c.get(&key(1, 1)), None, "the oldest went first");
        c.clear();
        assert!(c.is_empty());
        let off = ResultCache::new(0);
        off.insert(key(1, 1), Arc::new("x"));
        assert!(off.is_empty());
    }
}

//! A bounded map that forgets its oldest entries first (pure, no I/O): what
//! `serve`'s answer cache and the decoded-rollup cache keep their entries in.
//!
//! What must always hold:
//! - the weights of the entries held never sum past the capacity (an entry
//!   heavier than the whole capacity is not kept at all);
//! - a replaced entry's weight stops counting, and its older place in the
//!   order never evicts the new value.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

#[derive(Debug)]
pub struct Fifo<K, V> {
    capacity: u64,
    used: u64,
    /// Value, weight, and the insertion that put it there.
    map: HashMap<K, (V, u64, u64)>,
    order: VecDeque<(K, u64)>,
    inserted: u64,
}

impl<K: Hash + Eq + Clone, V> Fifo<K, V> {
    pub fn new(capacity: u64) -> Self {
        Fifo {
            capacity,
            used: 0,
            map: HashMap::new(),
            order: VecDeque::new(),
            inserted: 0,
        }
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        self.map.get(key).map(|(v, _, _)| v)
    }

    pub fn insert(&mut self, key: K, value: V, weight: u64) {
        self.remove(&key);
        if weight > self.capacity {
            return;
        }
        self.inserted += 1;
        self.used += weight;
        self.map.insert(key.clone(), (value, weight, self.inserted));
        self.order.push_back((key, self.inserted));
        while self.used > self.capacity {
            let Some((oldest, at)) = self.order.pop_front() else {
                break;
            };
            if self.map.get(&oldest).is_some_and(|(_, _, i)| *i == at) {
                self.remove(&oldest);
            }
        }
        // Places left by replaced or removed entries: dropped once they
        // outnumber the entries, so the order stays proportional to the map.
        if self.order.len() > 2 * self.map.len() + 16 {
            let map = &self.map;
            self.order.retain(|(k, at)| map.get(k).is_some_and(|(_, _, i)| i == at));
        }
    }

    pub fn remove(&mut self, key: &K) {
        if let Some((_, weight, _)) = self.map.remove(key) {
            self.used -= weight;
        }
    }

    pub fn clear(&mut self) {
        self.map.clear();
        self.order.clear();
        self.used = 0;
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The weights held.
    pub fn used(&self) -> u64 {
        self.used
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cache that holds everything it is given and whose few keys are
    /// replaced again and again (concurrent misses of one answer each insert
    /// it) keeps an order the size of what it holds.
    #[test]
    fn replacing_one_entry_for_ever_does_not_grow_the_order() {
        let mut fifo = Fifo::new(u64::MAX);
        for step in 0..10_000 {
            fifo.insert(step % 3, step, 1);
            assert!(fifo.order.len() <= 2 * fifo.len() + 17, "step {step}");
        }
        assert_eq!(fifo.len(), 3);
    }

    /// Against a naive model: a list of (key, value, weight) in insertion
    /// order, trimmed from the front.
    #[test]
    fn matches_a_list_trimmed_from_the_front() {
        let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = |n: i64| {
            rng = rng
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((rng >> 33) % n as u64) as i64
        };
        for _ in 0..200 {
            let capacity = next(40) as u64;
            let mut fifo = Fifo::new(capacity);
            let mut model: Vec<(i64, i64, u64)> = Vec::new();
            for step in 0..300 {
                let key = next(12);
                match next(10) {
                    0 => {
                        fifo.remove(&key);
                        model.retain(|(k, _, _)| *k != key);
                    }
                    1 => {
                        fifo.clear();
                        model.clear();
                    }
                    _ => {
                        let weight = next(15) as u64;
                        fifo.insert(key, step, weight);
                        model.retain(|(k, _, _)| *k != key);
                        if weight <= capacity {
                            model.push((key, step, weight));
                            while model.iter().map(|e| e.2).sum::<u64>() > capacity {
                                model.remove(0);
                            }
                        }
                    }
                }
                assert_eq!(fifo.len(), model.len());
                assert_eq!(fifo.used(), model.iter().map(|e| e.2).sum::<u64>());
                assert!(fifo.used() <= capacity);
                for k in 0..12 {
                    let expected = model.iter().find(|e| e.0 == k).map(|e| e.1);
                    assert_eq!(fifo.get(&k).copied(), expected, "key {k} at step {step}");
                }
            }
        }
    }
}

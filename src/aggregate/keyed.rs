//! Keyed partial aggregates with a memory budget: a hash map the caller
//! drains into sorted runs, and a k-way merge that combines runs again.
//!
//! Keys and values are fixed-width (`[i64; 4]`, `[i64; 2]`), so a run can be
//! spilled and read back field by field, without a schema.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

pub type Key = [i64; 4];
pub type Value = [i64; 2];
pub type Entry = (Key, Value);

/// How two values of the same key combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// `[first, last]`: the earliest first and the latest last.
    FirstLast,
    /// `[at, id]`: the smaller `(at, id)`.
    Earliest,
    /// `[count, _]`: the sum.
    Sum,
}

impl Merge {
    #[inline]
    pub fn combine(self, into: &mut Value, other: Value) {
        match self {
            Merge::FirstLast => {
                into[0] = into[0].min(other[0]);
                into[1] = into[1].max(other[1]);
            }
            Merge::Earliest => {
                if other < *into {
                    *into = other;
                }
            }
            Merge::Sum => into[0] += other[0],
        }
    }
}

/// A multiply-rotate hasher for integer keys: SipHash's DoS resistance buys
/// nothing for ids from our own database, and costs a third of the
/// aggregation time.
#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    /// Integer arrays arrive here as one byte slice (`hash_slice`): mix them
    /// a word at a time.
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for w in words.by_ref() {
            self.write_u64(u64::from_le_bytes(w.try_into().expect("8 bytes")));
        }
        for b in words.remainder() {
            self.write_u64(u64::from(*b));
        }
    }
    #[inline]
    fn write_i64(&mut self, v: i64) {
        self.write_u64(v as u64);
    }
    #[inline]
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    #[inline]
    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }
}

pub type IdBuildHasher = BuildHasherDefault<IdHasher>;

/// One keyed aggregate being built.
#[derive(Debug)]
pub struct KeyedAgg {
    merge: Merge,
    map: HashMap<Key, Value, IdBuildHasher>,
}

impl KeyedAgg {
    pub fn new(merge: Merge) -> Self {
        KeyedAgg {
            merge,
            map: HashMap::default(),
        }
    }

    pub fn merge(&self) -> Merge {
        self.merge
    }

    #[inline]
    pub fn add(&mut self, key: Key, value: Value) {
        let merge = self.merge;
        self.map
            .entry(key)
            .and_modify(|v| merge.combine(v, value))
            .or_insert(value);
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn keys(&self) -> impl Iterator<Item = &Key> {
        self.map.keys()
    }

    /// Empties the map into a run sorted by key, releasing its memory (keeping
    /// the capacity was measured: no faster, and the map and the run then
    /// coexist at the peak).
    pub fn drain_sorted(&mut self) -> Vec<Entry> {
        let mut run: Vec<Entry> = std::mem::take(&mut self.map).into_iter().collect();
        run.sort_unstable_by_key(|(k, _)| *k);
        run
    }
}

/// Merges runs that are each sorted by key into one sorted stream, combining
/// the values of equal keys (within a run as across runs).
pub fn merge_sorted_runs<I>(runs: Vec<I>, merge: Merge) -> impl Iterator<Item = Entry>
where
    I: Iterator<Item = Entry>,
{
    let mut tree = LoserTree::new(runs);
    std::iter::from_fn(move || {
        let (key, mut value) = tree.pop()?;
        while tree.peek_key() == Some(&key) {
            let (_, more) = tree.pop().expect("peeked");
            merge.combine(&mut value, more);
        }
        Some((key, value))
    })
}

/// A tournament tree of losers over sorted runs: taking the smallest head
/// costs one comparison per level and moves only run indices. A big day
/// merges dozens of spilled runs per aggregate, and a binary heap's pop and
/// push (two passes, each moving whole entries) were most of its merge time.
///
/// Node `n` of `1..k` holds the run that lost the match there; the leaves
/// (runs) sit at `k..2k`; `losers[0]` is the overall winner. Ties go to the
/// lower run, and an exhausted run loses to every other.
struct LoserTree<I> {
    runs: Vec<I>,
    heads: Vec<Option<Entry>>,
    losers: Vec<usize>,
}

impl<I: Iterator<Item = Entry>> LoserTree<I> {
    fn new(mut runs: Vec<I>) -> Self {
        let k = runs.len();
        let heads: Vec<Option<Entry>> = runs.iter_mut().map(Iterator::next).collect();
        let mut tree = LoserTree {
            runs,
            heads,
            losers: vec![0; k],
        };
        if k > 0 {
            let mut winners = vec![0; 2 * k];
            for (run, leaf) in winners[k..].iter_mut().enumerate() {
                *leaf = run;
            }
            for node in (1..k).rev() {
                let (a, b) = (winners[2 * node], winners[2 * node + 1]);
                let (winner, loser) = if tree.beats(a, b) { (a, b) } else { (b, a) };
                winners[node] = winner;
                tree.losers[node] = loser;
            }
            tree.losers[0] = winners[1];
        }
        tree
    }

    /// Whether run `a`'s head comes before run `b`'s.
    #[inline]
    fn beats(&self, a: usize, b: usize) -> bool {
        match (&self.heads[a], &self.heads[b]) {
            (Some((ka, _)), Some((kb, _))) => (ka, a) < (kb, b),
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => a < b,
        }
    }

    fn peek_key(&self) -> Option<&Key> {
        let winner = *self.losers.first()?;
        self.heads[winner].as_ref().map(|(k, _)| k)
    }

    /// The smallest head, its run advanced and replayed up to the root.
    #[inline]
    fn pop(&mut self) -> Option<Entry> {
        let k = self.runs.len();
        let mut winner = *self.losers.first()?;
        let entry = self.heads[winner].take()?;
        self.heads[winner] = self.runs[winner].next();
        let mut node = (k + winner) / 2;
        while node > 0 {
            let loser = self.losers[node];
            if self.beats(loser, winner) {
                self.losers[node] = winner;
                winner = loser;
            }
            node /= 2;
        }
        self.losers[0] = winner;
        Some(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seed::rng::Rng;
    use std::collections::BTreeMap;

    /// Property: splitting the inputs into any number of drained runs and
    /// merging them gives exactly what one BTreeMap of all inputs gives.
    #[test]
    fn drained_runs_merge_to_the_same_result_as_one_map() {
        for (seed, merge) in (0..60).map(|s| (s, [Merge::FirstLast, Merge::Earliest, Merge::Sum][s as usize % 3])) {
            let mut rng = Rng::new(seed);
            let mut oracle: BTreeMap<Key, Value> = BTreeMap::new();
            let mut agg = KeyedAgg::new(merge);
            let mut runs = Vec::new();
            let budget = 1 + rng.range(0, 50) as usize;
            for _ in 0..rng.range(0, 2000) {
                let key = [rng.range(0, 3), rng.range(0, 4), rng.range(0, 30), rng.range(0, 3)];
                let a = rng.range(0, 1000);
                let value = match merge {
                    Merge::FirstLast => [a, a],
                    Merge::Earliest => [a, rng.range(0, 10)],
                    Merge::Sum => [rng.range(1, 5), 0],
                };
                oracle
                    .entry(key)
                    .and_modify(|v| merge.combine(v, value))
                    .or_insert(value);
                agg.add(key, value);
                if agg.len() >= budget {
                    runs.push(agg.drain_sorted().into_iter());
                }
            }
            runs.push(agg.drain_sorted().into_iter());
            let merged: Vec<Entry> = merge_sorted_runs(runs, merge).collect();
            let expected: Vec<Entry> = oracle.into_iter().collect();
            assert_eq!(merged, expected, "seed {seed}");
        }
    }

    #[test]
    fn combine_rules() {
        let mut v = [5, 5];
        Merge::FirstLast.combine(&mut v, [3, 4]);
        Merge::FirstLast.combine(&mut v, [7, 9]);
        assert_eq!(v, [3, 9]);
        let mut v = [5, 2];
        Merge::Earliest.combine(&mut v, [5, 1]);
        Merge::Earliest.combine(&mut v, [6, 0]);
        assert_eq!(v, [5, 1]);
        let mut v = [2, 0];
        Merge::Sum.combine(&mut v, [3, 0]);
        assert_eq!(v, [5, 0]);
    }
}

//! Distinct entities per (group, bucket) cell, counted as rows arrive (pure).
//!
//! - Each group keeps bitmaps of 1,024-id blocks, allocated as ids appear;
//!   a block holds one 1,024-bit row per bucket. Serial ids fill blocks
//!   densely, and rows sorted by id hit the block they hit last.
//! - Past a memory budget (ids spread thinly, or very many buckets), the
//!   counts move to hash sets, whose size is bounded by the rows.
//! - A cell's count is the popcount of its rows. A group's total over the
//!   buckets, a bucket's total over the groups and the grand total are
//!   popcounts of ORs of the same blocks: an entity counts once in each,
//!   however many cells it is in. Distinct counts are never summed.

use std::collections::{HashMap, HashSet};

use crate::aggregate::IdBuildHasher;

const BLOCK_IDS: i64 = 1024;
const BLOCK_WORDS: usize = 16;

/// Largest bitmap memory, in 64-bit words, before falling back to hash sets.
const BUDGET_WORDS: usize = 16 << 20;

type IdSet = HashSet<i64, IdBuildHasher>;

/// Distinct entities of one metric per (group, bucket).
#[derive(Debug)]
pub struct DistinctCells {
    n_buckets: usize,
    budget_words: usize,
    state: State,
}

#[derive(Debug)]
enum State {
    /// Blocks by group, and the words they take.
    Blocked(Vec<GroupBlocks>, usize),
    /// Sets by group, then by bucket.
    Hashed(Vec<HashMap<usize, IdSet>>),
}

#[derive(Debug, Default)]
struct GroupBlocks {
    /// Block number (`id.div_euclid(1024)`) to its offset in `bits`.
    offsets: HashMap<i64, usize, IdBuildHasher>,
    bits: Vec<u64>,
    last: Option<(i64, usize)>,
}

/// The counts of one metric, by group (in the caller's numbering) and bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counts {
    /// `cells[group][bucket]`
    pub cells: Vec<Vec<u64>>,
    pub bucket_all: Vec<u64>,
    pub totals: Vec<u64>,
    pub grand: u64,
}

impl DistinctCells {
    pub fn new(n_buckets: usize) -> Self {
        Self::with_budget(n_buckets, BUDGET_WORDS)
    }

    fn with_budget(n_buckets: usize, budget_words: usize) -> Self {
        DistinctCells {
            n_buckets,
            budget_words,
            state: State::Blocked(Vec::new(), 0),
        }
    }

    /// Counts `entity` in bucket `bucket` of group `group`.
    pub fn insert(&mut self, group: usize, bucket: usize, entity: i64) {
        debug_assert!(bucket < self.n_buckets);
        let block_words = self.n_buckets * BLOCK_WORDS;
        let State::Blocked(groups, words) = &mut self.state else {
            return self.insert_hashed(group, bucket, entity);
        };
        if groups.len() <= group {
            groups.resize_with(group + 1, GroupBlocks::default);
        }
        let blocks = &mut groups[group];
        let block = entity.div_euclid(BLOCK_IDS);
        let offset = match blocks.last {
            Some((b, offset)) if b == block => offset,
            _ => match blocks.offsets.get(&block) {
                Some(offset) => *offset,
                None if *words + block_words > self.budget_words => {
                    self.move_to_hash_sets();
                    return self.insert_hashed(group, bucket, entity);
                }
                None => {
                    let offset = blocks.bits.len();
                    blocks.bits.resize(offset + block_words, 0);
                    blocks.offsets.insert(block, offset);
                    *words += block_words;
                    offset
                }
            },
        };
        blocks.last = Some((block, offset));
        let bit = entity.rem_euclid(BLOCK_IDS) as usize;
        blocks.bits[offset + bucket * BLOCK_WORDS + bit / 64] |= 1 << (bit % 64);
    }

    /// Counts each of `entities` in bucket `bucket` of group `group`.
    pub fn insert_all(&mut self, group: usize, bucket: usize, entities: &[i64]) {
        for e in entities {
            self.insert(group, bucket, *e);
        }
    }

    fn insert_hashed(&mut self, group: usize, bucket: usize, entity: i64) {
        let State::Hashed(groups) = &mut self.state else {
            unreachable!("called once hashed");
        };
        if groups.len() <= group {
            groups.resize_with(group + 1, HashMap::new);
        }
        groups[group].entry(bucket).or_default().insert(entity);
    }

    /// Moves every entity counted so far into hash sets.
    fn move_to_hash_sets(&mut self) {
        let State::Blocked(groups, _) = &self.state else {
            return;
        };
        let mut sets: Vec<HashMap<usize, IdSet>> = Vec::with_capacity(groups.len());
        for blocks in groups {
            let mut by_bucket: HashMap<usize, IdSet> = HashMap::new();
            for (&block, &offset) in &blocks.offsets {
                for bucket in 0..self.n_buckets {
                    let row = &blocks.bits[offset + bucket * BLOCK_WORDS..][..BLOCK_WORDS];
                    for (w, word) in row.iter().enumerate() {
                        let mut word = *word;
                        while word != 0 {
                            let bit = (w * 64) as i64 + i64::from(word.trailing_zeros());
                            word &= word - 1;
                            by_bucket.entry(bucket).or_default().insert(block * BLOCK_IDS + bit);
                        }
                    }
                }
            }
            sets.push(by_bucket);
        }
        self.state = State::Hashed(sets);
    }

    /// The counts, for groups `0..n_groups` (groups never inserted into
    /// count zero).
    pub fn finish(self, n_groups: usize) -> Counts {
        let n_buckets = self.n_buckets;
        let mut counts = Counts {
            cells: vec![vec![0; n_buckets]; n_groups],
            bucket_all: vec![0; n_buckets],
            totals: vec![0; n_groups],
            grand: 0,
        };
        match self.state {
            State::Blocked(groups, _) => blocked_counts(&groups, n_buckets, &mut counts),
            State::Hashed(groups) => hashed_counts(&groups, n_buckets, &mut counts),
        }
        counts
    }
}

fn popcount(words: &[u64]) -> u64 {
    words.iter().map(|w| u64::from(w.count_ones())).sum()
}

fn or_into(into: &mut [u64], from: &[u64]) {
    into.iter_mut().zip(from).for_each(|(a, b)| *a |= b);
}

fn blocked_counts(groups: &[GroupBlocks], n_buckets: usize, counts: &mut Counts) {
    let block_words = n_buckets * BLOCK_WORDS;
    let mut any = [0u64; BLOCK_WORDS];
    // Within a group: cells, and the group's total over buckets.
    for (g, blocks) in groups.iter().enumerate() {
        for block in blocks.bits.chunks_exact(block_words) {
            any.fill(0);
            for (b, row) in block.chunks_exact(BLOCK_WORDS).enumerate() {
                counts.cells[g][b] += popcount(row);
                or_into(&mut any, row);
            }
            counts.totals[g] += popcount(&any);
        }
    }
    // Across groups: the same block of every group, ORed.
    let mut placed: Vec<(i64, usize, usize)> = groups
        .iter()
        .enumerate()
        .flat_map(|(g, blocks)| blocks.offsets.iter().map(move |(block, offset)| (*block, g, *offset)))
        .collect();
    placed.sort_unstable();
    let mut union = vec![0u64; block_words];
    for same_block in placed.chunk_by(|a, b| a.0 == b.0) {
        union.fill(0);
        for &(_, g, offset) in same_block {
            or_into(&mut union, &groups[g].bits[offset..offset + block_words]);
        }
        any.fill(0);
        for (b, row) in union.chunks_exact(BLOCK_WORDS).enumerate() {
            counts.bucket_all[b] += popcount(row);
            or_into(&mut any, row);
        }
        counts.grand += popcount(&any);
    }
}

fn hashed_counts(groups: &[HashMap<usize, IdSet>], n_buckets: usize, counts: &mut Counts) {
    let mut by_bucket: Vec<IdSet> = vec![IdSet::default(); n_buckets];
    let mut grand = IdSet::default();
    for (g, sets) in groups.iter().enumerate() {
        let mut total = IdSet::default();
        for (&b, set) in sets {
            counts.cells[g][b] = set.len() as u64;
            total.extend(set);
            by_bucket[b].extend(set);
        }
        counts.totals[g] = total.len() as u64;
        grand.extend(total);
    }
    counts.bucket_all = by_bucket.iter().map(|s| s.len() as u64).collect();
    counts.grand = grand.len() as u64;
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;

    /// Counts by definition: a set per cell, unions for the totals.
    fn naive(inserts: &[(usize, usize, i64)], n_groups: usize, n_buckets: usize) -> Counts {
        let set = |f: &dyn Fn(usize, usize) -> bool| -> u64 {
            inserts
                .iter()
                .filter(|(g, b, _)| f(*g, *b))
                .map(|(_, _, e)| *e)
                .collect::<BTreeSet<_>>()
                .len() as u64
        };
        Counts {
            cells: (0..n_groups)
                .map(|g| (0..n_buckets).map(|b| set(&|g2, b2| (g2, b2) == (g, b))).collect())
                .collect(),
            bucket_all: (0..n_buckets).map(|b| set(&|_, b2| b2 == b)).collect(),
            totals: (0..n_groups).map(|g| set(&|g2, _| g2 == g)).collect(),
            grand: set(&|_, _| true),
        }
    }

    fn inserts() -> impl Strategy<Value = (usize, Vec<(usize, usize, i64)>)> {
        (1..6usize).prop_flat_map(|n_buckets| {
            let id = prop_oneof![
                -3000..5000i64,
                (0..40i64).prop_map(|i| i * 1_000_003),
                any::<i64>(),
                Just(i64::MIN),
                Just(i64::MAX),
            ];
            (Just(n_buckets), vec((0..4usize, 0..n_buckets, id), 0..300))
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

        /// Bitmaps, hash sets, and bitmaps that run out of budget half-way
        /// all count what the definition counts.
        #[test]
        fn every_layout_counts_by_definition((n_buckets, rows) in inserts()) {
            let (_, runs) = rows.split_at(rows.len() / 2);
            let with_runs: Vec<(usize, usize, i64)> = rows
                .iter()
                .copied()
                .chain(runs.iter().map(|(g, b, e)| (*g, *b, e.wrapping_add(1))))
                .collect();
            let expected = naive(&with_runs, 5, n_buckets);
            for budget in [BUDGET_WORDS, n_buckets * BLOCK_WORDS * 3, 0] {
                let mut cells = DistinctCells::with_budget(n_buckets, budget);
                let (one_by_one, runs) = rows.split_at(rows.len() / 2);
                for (g, b, e) in one_by_one {
                    cells.insert(*g, *b, *e);
                }
                for (g, b, e) in runs {
                    cells.insert_all(*g, *b, &[*e, e.wrapping_add(1), *e]);
                }
                prop_assert_eq!(&cells.finish(5), &expected, "budget {}", budget);
            }
        }
    }

    #[test]
    fn a_small_budget_moves_to_hash_sets() {
        let mut cells = DistinctCells::with_budget(2, 2 * BLOCK_WORDS);
        cells.insert(0, 1, 5);
        assert!(matches!(cells.state, State::Blocked(..)));
        cells.insert(0, 0, 5_000);
        assert!(matches!(cells.state, State::Hashed(..)));
        assert_eq!(cells.finish(1).grand, 2);
    }
}

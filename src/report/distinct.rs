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
    /// The same, for a window of block numbers around those seen: a
    /// group's ids mostly sit in one span of serial ids, and rows sorted by
    /// id still move to another block every few ids, where a hash lookup
    /// was most of an insert's cost.
    window: Window,
    bits: Vec<u64>,
    last: Option<(i64, usize)>,
}

/// Offsets of the blocks `base..base + slots.len()`: every block of
/// `offsets` in that span has its slot, so an empty slot means no block.
#[derive(Debug, Default)]
struct Window {
    base: i64,
    /// Offset in `bits` plus one; zero for none.
    slots: Vec<usize>,
}

impl GroupBlocks {
    /// Sets `entity`'s bit in `bucket` when its block exists.
    #[inline]
    fn set_if_allocated(&mut self, bucket: usize, entity: i64) -> bool {
        let block = entity.div_euclid(BLOCK_IDS);
        let offset = match self.last {
            Some((b, offset)) if b == block => offset,
            _ => match self
                .window
                .get(block)
                .unwrap_or_else(|| self.offsets.get(&block).copied())
            {
                Some(offset) => offset,
                None => return false,
            },
        };
        self.last = Some((block, offset));
        self.set(offset, bucket, entity);
        true
    }

    #[inline]
    fn set(&mut self, offset: usize, bucket: usize, entity: i64) {
        let bit = entity.rem_euclid(BLOCK_IDS) as usize;
        self.bits[offset + bucket * BLOCK_WORDS + bit / 64] |= 1 << (bit % 64);
    }
}

impl Window {
    /// The first window; a wider one takes at most `SLOTS_PER_BLOCK` slots
    /// per block allocated, so a window costs at most half the memory of
    /// its group's blocks (each at least 16 words), and a group of a few
    /// ids (a query by channel has many) keeps a small one.
    const MIN_SLOTS: i64 = 64;
    const SLOTS_PER_BLOCK: i64 = 8;

    /// `Some(offset)` or `Some(None)` when `block` is inside the window;
    /// `None` when only `offsets` can tell.
    #[inline]
    fn get(&self, block: i64) -> Option<Option<usize>> {
        let i = usize::try_from(block.wrapping_sub(self.base)).ok()?;
        self.slots.get(i).map(|slot| slot.checked_sub(1))
    }

    /// Records the new block at `offset`, moving or widening the window to
    /// take it in when that keeps within its bound (`offsets` has every
    /// block, this one included).
    fn allocated(&mut self, block: i64, offset: usize, offsets: &HashMap<i64, usize, IdBuildHasher>) {
        if self.slots.is_empty() {
            // Serial ids grow: most of the window lies above the first block.
            self.base = block - Self::MIN_SLOTS / 8;
            self.slots = vec![0; Self::MIN_SLOTS as usize];
        }
        if let Some(i) = usize::try_from(block - self.base)
            .ok()
            .filter(|i| *i < self.slots.len())
        {
            self.slots[i] = offset + 1;
            return;
        }
        let (lo, hi) = (self.base, self.base + self.slots.len() as i64);
        let span = hi - lo;
        // Half the span again on the side it grows, so widening is rare.
        let (lo, hi) = if block < lo {
            (block - span / 2, hi)
        } else {
            (lo, block + 1 + span / 2)
        };
        if hi - lo > Self::MIN_SLOTS.max(Self::SLOTS_PER_BLOCK * offsets.len() as i64) {
            return;
        }
        self.base = lo;
        self.slots = vec![0; (hi - lo) as usize];
        for (b, o) in offsets {
            if let Some(slot) = usize::try_from(b - lo).ok().and_then(|i| self.slots.get_mut(i)) {
                *slot = o + 1;
            }
        }
    }
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
        if blocks.set_if_allocated(bucket, entity) {
            return;
        }
        if *words + block_words > self.budget_words {
            self.move_to_hash_sets();
            return self.insert_hashed(group, bucket, entity);
        }
        let block = entity.div_euclid(BLOCK_IDS);
        let offset = blocks.bits.len();
        blocks.bits.resize(offset + block_words, 0);
        blocks.offsets.insert(block, offset);
        blocks.window.allocated(block, offset, &blocks.offsets);
        *words += block_words;
        blocks.last = Some((block, offset));
        blocks.set(offset, bucket, entity);
    }

    /// Counts each of `entities` in bucket `bucket` of group `group`.
    pub fn insert_all(&mut self, group: usize, bucket: usize, entities: &[i64]) {
        let mut rest = entities;
        while let Some((&first, tail)) = rest.split_first() {
            // Ids whose block exists need neither the state nor the budget.
            if let State::Blocked(groups, _) = &mut self.state
                && let Some(blocks) = groups.get_mut(group)
            {
                let set = rest.iter().take_while(|e| blocks.set_if_allocated(bucket, **e)).count();
                if set > 0 {
                    rest = &rest[set..];
                    continue;
                }
            }
            self.insert(group, bucket, first);
            rest = tail;
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

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Ids over a span wider than the first window, in any order: the
        /// window moves and widens (or gives way to the hash map) without
        /// losing a block.
        #[test]
        fn a_moving_window_counts_by_definition(
            rows in vec((0..3usize, 0..2usize, -4_000_000..4_000_000i64), 0..4000),
            sorted in any::<bool>(),
        ) {
            let mut rows = rows;
            if sorted {
                rows.sort_by_key(|(_, _, e)| *e);
            }
            let mut cells = DistinctCells::new(2);
            for (g, b, e) in &rows {
                cells.insert(*g, *b, *e);
            }
            prop_assert_eq!(cells.finish(3), naive(&rows, 3, 2));
        }
    }

    #[test]
    fn the_window_widens_over_serial_ids_and_not_over_sparse_ones() {
        let mut cells = DistinctCells::new(1);
        cells.insert_all(0, 0, &(0..10_000_000).step_by(97).collect::<Vec<i64>>());
        cells.insert_all(1, 0, &(0..200).map(|i| i * 1_000_003).collect::<Vec<i64>>());
        let State::Blocked(groups, _) = &cells.state else {
            panic!("within budget")
        };
        assert!(groups[0].window.slots.len() as i64 > Window::MIN_SLOTS);
        assert_eq!(groups[1].window.slots.len() as i64, Window::MIN_SLOTS);
        let counts = cells.finish(2);
        assert_eq!(counts.totals, [10_000_000_u64.div_ceil(97), 200]);
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

//! Coarser grains folded from the day's sorted entry streams (pure), for
//! readers that need less than the exact grain gives:
//!
//! - [`ContactDays`]: one entry per (account, channel, contact) of a UTC day
//!   with the 15-minute UTC slots of its first and last message in the day,
//!   folded from the contact hours. Every zone's bucket edges fall on a UTC
//!   quarter hour, so the slots decide membership exactly for any bucket
//!   whose edges cut the UTC day at most once: a month of any zone (unique
//!   monthly contacts), and a local date of any zone in use today.
//! - [`SlotCounts`]: resolved conversations counted per (account, channel,
//!   15-minute UTC slot), folded from the per-conversation entries. Every
//!   zone's bucket edges fall on a UTC quarter hour, so slot counts are exact
//!   for every bucket, as proactive messages already are.
//!
//! Both take entries sorted by key (as [`super::merge_sorted_runs`] gives
//! them), one at a time as a table is written, and emit entries sorted by
//! key; each holds one group of its input at a time, so memory does not
//! grow with the day.

use std::collections::BTreeMap;

use super::{Entry, SLOT_MICROS};

/// A coarser grain folded from a sorted entry stream.
pub trait Fold: Send {
    /// Takes the next entry (in key order); completed output goes to `out`.
    fn push(&mut self, entry: Entry, out: &mut Vec<Entry>);
    /// Flushes what is held after the last entry.
    fn finish(&mut self, out: &mut Vec<Entry>);
}

/// Every output of `fold` over `entries`.
pub fn fold_all(mut fold: impl Fold, entries: impl IntoIterator<Item = Entry>) -> Vec<Entry> {
    let mut out = Vec::new();
    for e in entries {
        fold.push(e, &mut out);
    }
    fold.finish(&mut out);
    out
}

/// Folds `[account, channel, contact, hour] -> [first, last]` entries into
/// `[account, channel, contact, 0] -> [first_slot, last_slot]` of the whole
/// day (the slots of the first and last instant).
#[derive(Debug, Default)]
pub struct ContactDays {
    current: Option<Entry>,
}

impl Fold for ContactDays {
    fn push(&mut self, (key, value): Entry, out: &mut Vec<Entry>) {
        match &mut self.current {
            Some((k, v)) if k[..3] == key[..3] => {
                v[0] = v[0].min(value[0]);
                v[1] = v[1].max(value[1]);
            }
            current => {
                out.extend(current.take().map(to_slots));
                *current = Some(([key[0], key[1], key[2], 0], value));
            }
        }
    }

    fn finish(&mut self, out: &mut Vec<Entry>) {
        out.extend(self.current.take().map(to_slots));
    }
}

fn slot_of(t: i64) -> i64 {
    t.div_euclid(SLOT_MICROS) * SLOT_MICROS
}

fn to_slots((key, [first, last]): Entry) -> Entry {
    (key, [slot_of(first), slot_of(last)])
}

/// Folds `[account, channel, conversation, 0] -> [resolved_at, event_id]`
/// entries into `[account, channel, slot_start, 0] -> [conversations, 0]`.
#[derive(Debug, Default)]
pub struct SlotCounts {
    /// The current (account, channel) and its counts by slot.
    current: Option<((i64, i64), BTreeMap<i64, i64>)>,
}

impl SlotCounts {
    fn flush(&mut self, out: &mut Vec<Entry>) {
        if let Some(((account, channel), slots)) = self.current.take() {
            out.extend(slots.into_iter().map(|(slot, n)| ([account, channel, slot, 0], [n, 0])));
        }
    }
}

impl Fold for SlotCounts {
    fn push(&mut self, (key, value): Entry, out: &mut Vec<Entry>) {
        let group = (key[0], key[1]);
        if self.current.as_ref().is_none_or(|(g, _)| *g != group) {
            self.flush(out);
            self.current = Some((group, BTreeMap::new()));
        }
        let (_, slots) = self.current.as_mut().expect("set above");
        *slots.entry(slot_of(value[0])).or_insert(0) += 1;
    }

    fn finish(&mut self, out: &mut Vec<Entry>) {
        self.flush(out);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;
    use crate::model::{MICROS_PER_DAY, MICROS_PER_HOUR};

    /// Hour entries as the aggregator makes them: sorted, one per key.
    fn hours() -> impl Strategy<Value = Vec<Entry>> {
        vec(
            (1..3i64, 1..4i64, 1..6i64, 0..MICROS_PER_DAY, 0..MICROS_PER_HOUR),
            0..60,
        )
        .prop_map(|rows| {
            let mut by_key: BTreeMap<[i64; 4], [i64; 2]> = BTreeMap::new();
            for (account, channel, contact, at, later) in rows {
                let hour = at / MICROS_PER_HOUR * MICROS_PER_HOUR;
                let last = (at + later).min(hour + MICROS_PER_HOUR - 1);
                let v = by_key.entry([account, channel, contact, hour]).or_insert([at, last]);
                v[0] = v[0].min(at);
                v[1] = v[1].max(last);
            }
            by_key.into_iter().collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

        /// Against a naive fold: a map keyed by (account, channel, contact).
        #[test]
        fn contact_days_are_the_slots_of_the_first_and_last_instant_of_the_day(entries in hours()) {
            let mut naive: BTreeMap<[i64; 4], [i64; 2]> = BTreeMap::new();
            for (k, v) in &entries {
                let day = naive.entry([k[0], k[1], k[2], 0]).or_insert(*v);
                day[0] = day[0].min(v[0]);
                day[1] = day[1].max(v[1]);
            }
            for v in naive.values_mut() {
                *v = [v[0] / SLOT_MICROS * SLOT_MICROS, v[1] / SLOT_MICROS * SLOT_MICROS];
            }
            let folded = fold_all(ContactDays::default(), entries);
            prop_assert_eq!(folded, naive.into_iter().collect::<Vec<_>>());
        }

        /// Against a naive count per (account, channel, slot); sorted output.
        #[test]
        fn slot_counts_count_each_resolve_in_its_slot(
            rows in vec((1..3i64, 1..4i64, 0..50i64, 0..MICROS_PER_DAY), 0..80)
        ) {
            let mut by_conversation: BTreeMap<[i64; 4], [i64; 2]> = BTreeMap::new();
            for (account, channel, conversation, at) in rows {
                by_conversation.entry([account, channel, conversation, 0]).or_insert([at, conversation]);
            }
            let mut naive: BTreeMap<[i64; 4], [i64; 2]> = BTreeMap::new();
            for (k, v) in &by_conversation {
                naive.entry([k[0], k[1], v[0] / SLOT_MICROS * SLOT_MICROS, 0]).or_insert([0, 0])[0] += 1;
            }
            let folded = fold_all(SlotCounts::default(), by_conversation);
            prop_assert_eq!(folded, naive.into_iter().collect::<Vec<_>>());
        }
    }
}

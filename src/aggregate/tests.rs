use super::*;

fn dims() -> Dimensions {
    let mut d = Dimensions::default();
    for id in [1, 2] {
        d.accounts.insert(
            id,
            AccountDim {
                id,
                name: Some(format!("A{id}")),
                time_zone: Some("UTC".into()),
                created_at: Some(0),
            },
        );
    }
    for (id, account) in [(10, 1), (20, 2)] {
        d.channels.insert(id, ChannelDim::connected(id, account, "sms"));
    }
    d
}

fn msg(id: i64) -> RawMessage {
    RawMessage {
        id: Some(id),
        account_id: Some(1),
        conversation_id: Some(100),
        channel_id: Some(10),
        contact_id: Some(1000),
        direction: Text::Known(Direction::Inbound),
        sender_type: Text::Known(SenderType::Contact),
        agent_id: None,
        sent_at: 3 * MICROS_PER_HOUR + 5,
        created_at: Some(3 * MICROS_PER_HOUR + 6),
        bad_value: false,
    }
}

fn event(id: i64) -> RawEvent {
    RawEvent {
        id: Some(id),
        conversation_id: Some(100),
        kind: Text::Known(EventKind::Resolved),
        occurred_at: 5 * MICROS_PER_HOUR,
        created_at: Some(5 * MICROS_PER_HOUR),
        account_id: Some(1),
        channel_id: Some(10),
        bad_value: false,
    }
}

#[test]
fn every_bad_message_is_counted_with_its_reason() {
    let d = dims();
    let mut agg = DayAggregator::new(&d, 0);
    let cases: Vec<(RejectReason, RawMessage)> = vec![
        (
            RejectReason::NullField,
            RawMessage {
                account_id: None,
                ..msg(1)
            },
        ),
        (
            RejectReason::NullField,
            RawMessage {
                created_at: None,
                ..msg(2)
            },
        ),
        (
            RejectReason::NullContact,
            RawMessage {
                contact_id: None,
                ..msg(3)
            },
        ),
        (
            RejectReason::UnknownDirection,
            RawMessage {
                direction: Text::Unknown,
                ..msg(4)
            },
        ),
        (
            RejectReason::UnknownSenderType,
            RawMessage {
                sender_type: Text::Unknown,
                ..msg(5)
            },
        ),
        (
            RejectReason::UnknownAccount,
            RawMessage {
                account_id: Some(9),
                ..msg(6)
            },
        ),
        (
            RejectReason::UnknownChannel,
            RawMessage {
                channel_id: Some(99),
                ..msg(7)
            },
        ),
        (
            RejectReason::ChannelAccountMismatch,
            RawMessage {
                channel_id: Some(20),
                ..msg(8)
            },
        ),
        (
            RejectReason::FutureTimestamp,
            RawMessage {
                created_at: Some(3 * MICROS_PER_HOUR + 5 - MICROS_PER_DAY - 1),
                ..msg(9)
            },
        ),
        (
            RejectReason::BadValue,
            RawMessage {
                bad_value: true,
                ..msg(10)
            },
        ),
    ];
    for (_, m) in &cases {
        agg.push_message(m);
    }
    agg.push_message(&msg(11));
    agg.push_message(&msg(11));
    let by_reason = agg.rejects.by_reason();
    for (reason, _) in &cases {
        assert!(by_reason.contains_key(reason.as_str()), "{reason:?} not counted");
    }
    assert_eq!(by_reason["duplicate_id"], 1);
    assert_eq!(by_reason["null_field"], 2);
    assert_eq!(agg.rejects.total(), cases.len() as u64 + 1);
    // Only the one good message (11) reached the aggregates.
    assert_eq!(agg.keyed_mut(Aggregate::ContactActivity).len(), 1);
    assert_eq!(agg.messages_read, cases.len() as u64 + 2);
}

#[test]
fn messages_feed_the_right_aggregates() {
    let d = dims();
    let mut agg = DayAggregator::new(&d, 0);
    let out = |id, sender, agent| RawMessage {
        direction: Text::Known(Direction::Outbound),
        sender_type: Text::Known(sender),
        agent_id: agent,
        ..msg(id)
    };
    agg.push_message(&msg(1));
    agg.push_message(&RawMessage {
        sent_at: 3 * MICROS_PER_HOUR + 50,
        ..msg(2)
    });
    agg.push_message(&out(3, SenderType::Agent, Some(7)));
    agg.push_message(&out(4, SenderType::Agent, None));
    agg.push_message(&out(5, SenderType::ProactiveApi, None));
    agg.push_message(&out(6, SenderType::ProactiveApi, None));
    agg.push_message(&out(7, SenderType::Automation, None));
    agg.push_message(&RawMessage {
        direction: Text::Known(Direction::Inbound),
        sender_type: Text::Known(SenderType::Agent),
        agent_id: Some(8),
        ..msg(8)
    });
    let contacts = agg.keyed_mut(Aggregate::ContactActivity).drain_sorted();
    assert_eq!(
        contacts,
        vec![(
            [1, 10, 1000, 3 * MICROS_PER_HOUR],
            [3 * MICROS_PER_HOUR + 5, 3 * MICROS_PER_HOUR + 50]
        )]
    );
    // Only outbound agent messages with an agent id make an active agent.
    assert_eq!(
        agg.keyed_mut(Aggregate::AgentActivity).drain_sorted(),
        vec![([1, 10, 7, 3 * MICROS_PER_HOUR], [3 * MICROS_PER_HOUR + 5; 2])]
    );
    assert_eq!(
        agg.keyed_mut(Aggregate::ProactiveMessages).drain_sorted(),
        vec![([1, 10, 3 * MICROS_PER_HOUR, 0], [2, 0])]
    );
    assert!(agg.rejects.counts.is_empty());
}

#[test]
fn bad_events_are_counted_and_valid_resolves_become_candidates() {
    let d = dims();
    let mut agg = DayAggregator::new(&d, 0);
    agg.push_event(&event(1));
    agg.push_event(&RawEvent {
        kind: Text::Known(EventKind::Reopened),
        ..event(5)
    });
    agg.push_event(&RawEvent {
        kind: Text::Unknown,
        ..event(6)
    });
    agg.push_event(&RawEvent {
        account_id: None,
        channel_id: None,
        ..event(7)
    });
    agg.push_event(&event(1));
    assert_eq!(
        agg.keyed_mut(Aggregate::ResolveCandidates).drain_sorted(),
        vec![([100, 5 * MICROS_PER_HOUR, 1, 0], [1, 10])]
    );
    let by_reason = agg.rejects.by_reason();
    assert_eq!(by_reason["unknown_event_kind"], 1);
    assert_eq!(by_reason["orphan_event"], 1);
    assert_eq!(by_reason["duplicate_id"], 1);
}

/// `future_timestamp` is "placed more than a day after it reached the
/// database": a row placed exactly a day after its arrival is accepted, one
/// a microsecond later is not; messages and events alike.
#[test]
fn a_row_placed_a_day_after_its_arrival_is_accepted_and_a_microsecond_more_is_future() {
    let d = dims();
    let mut agg = DayAggregator::new(&d, 0);
    let arrived = 2 * MICROS_PER_HOUR;
    let placed = |micros_after_a_day: i64| arrived + MICROS_PER_DAY + micros_after_a_day;
    for (id, extra) in [(1, 0), (2, 1)] {
        agg.push_message(&RawMessage {
            sent_at: placed(extra),
            created_at: Some(arrived),
            ..msg(id)
        });
        agg.push_event(&RawEvent {
            occurred_at: placed(extra),
            created_at: Some(arrived),
            ..event(id)
        });
    }
    assert_eq!((agg.messages_accepted, agg.events_accepted), (1, 1));
    let by_reason = agg.rejects.by_reason();
    assert_eq!(by_reason["future_timestamp"], 2);
    assert_eq!(agg.rejects.total(), 2);
    assert_eq!(
        agg.keyed_mut(Aggregate::ResolveCandidates).drain_sorted(),
        vec![([100, placed(0), 1, 0], [1, 10])]
    );
}

/// A conversation's rows for the property test: messages (id, at, inbound)
/// and resolves (id, at), anywhere in three days; the middle day is "today".
struct Convo {
    id: i64,
    messages: Vec<(i64, i64, bool)>,
    resolves: Vec<(i64, i64)>,
}

/// DESIGN.md §2 straight from all rows: the counting resolve, if any.
fn naive_counting_resolve(c: &Convo) -> Option<(i64, i64)> {
    let first = c.messages.iter().min_by_key(|(id, at, _)| (*at, *id))?;
    if !first.2 {
        return None;
    }
    let outbound = c.messages.iter().filter(|m| !m.2).map(|m| m.1).min()?;
    c.resolves
        .iter()
        .filter(|(_, at)| *at >= outbound)
        .min_by_key(|(id, at)| (*at, *id))
        .map(|(id, at)| (*at, *id))
}

/// Property: feeding the day's messages and resolves, plus the history that
/// resolve_history.sql returns, through the aggregator and decide_resolved
/// counts exactly the conversations whose counting resolve is in the day.
#[test]
fn decide_resolved_matches_the_definition_on_random_conversations() {
    let d = dims();
    let (day_start, day_end) = (MICROS_PER_DAY, 2 * MICROS_PER_DAY);
    for seed in 0..200 {
        let mut rng = crate::seed::rng::Rng::new(seed);
        let mut next_id = 1;
        let convos: Vec<Convo> = (0..rng.range(1, 30))
            .map(|i| {
                let mut msgs = Vec::new();
                for _ in 0..rng.range(0, 6) {
                    // Coarse instants make ties of sent_at (and of resolves) common.
                    msgs.push((next_id, rng.range(0, 3 * 24) * MICROS_PER_HOUR, rng.chance(0.6)));
                    next_id += 1;
                }
                let mut resolves = Vec::new();
                for _ in 0..rng.range(0, 4) {
                    resolves.push((next_id, rng.range(0, 3 * 24) * MICROS_PER_HOUR));
                    next_id += 1;
                }
                Convo {
                    id: 1000 + i,
                    messages: msgs,
                    resolves,
                }
            })
            .collect();

        let mut agg = DayAggregator::new(&d, day_start);
        for c in &convos {
            let today = |at: i64| (day_start..day_end).contains(&at);
            for (id, at, inbound) in c.messages.iter().filter(|m| today(m.1)) {
                agg.push_message(&RawMessage {
                    id: Some(*id),
                    conversation_id: Some(c.id),
                    direction: Text::Known(if *inbound {
                        Direction::Inbound
                    } else {
                        Direction::Outbound
                    }),
                    sent_at: *at,
                    created_at: Some(*at),
                    ..msg(*id)
                });
            }
            for (id, at) in c.resolves.iter().filter(|r| today(r.1)) {
                agg.push_event(&RawEvent {
                    id: Some(*id),
                    conversation_id: Some(c.id),
                    occurred_at: *at,
                    created_at: Some(*at),
                    ..event(*id)
                });
            }
            // What resolve_history.sql returns for this conversation.
            let resolved_today = c.resolves.iter().any(|r| today(r.1));
            let before: Vec<_> = c.messages.iter().filter(|m| m.1 < day_start).collect();
            if resolved_today && let Some(first) = before.iter().min_by_key(|m| (m.1, m.0)) {
                let first_outbound = before.iter().filter(|m| !m.2).map(|m| m.1).min();
                agg.push_history(&RawHistory {
                    conversation_id: c.id,
                    first_at: first.1,
                    first_id: first.0,
                    first_direction: Text::Known(if first.2 {
                        Direction::Inbound
                    } else {
                        Direction::Outbound
                    }),
                    first_outbound,
                    settled: first_outbound.is_some_and(|o| c.resolves.iter().any(|r| r.1 >= o && r.1 < day_start)),
                });
            }
        }
        let mut take = |a| agg.keyed_mut(a).drain_sorted().into_iter();
        let (candidates, first, outbound, settled) = (
            take(Aggregate::ResolveCandidates),
            take(Aggregate::FirstMessage),
            take(Aggregate::FirstOutbound),
            take(Aggregate::Settled),
        );
        let mut got = Vec::new();
        decide_resolved(candidates, first, outbound, settled, |e| got.push(e));
        let expected: Vec<Entry> = convos
            .iter()
            .filter_map(|c| {
                let (at, id) = naive_counting_resolve(c)?;
                (day_start..day_end)
                    .contains(&at)
                    .then_some(([1, 10, c.id, 0], [at, id]))
            })
            .collect();
        assert_eq!(got, expected, "seed {seed}");
    }
}

#[test]
fn shards_are_stable_and_cover_every_account() {
    let counts = (1..=1000).fold([0u32; 3], |mut acc, a| {
        acc[shard_of(a, 3) as usize] += 1;
        acc
    });
    assert!(counts.iter().all(|c| *c > 250), "{counts:?}");
    assert_eq!(shard_of(42, 3), shard_of(42, 3));
    assert_eq!(shard_of(42, 1), 0);
}

/// Arbitrary source rows, as hostile as real data gets: any bytes in the
/// enum columns, NULL anywhere, instants at year 1, 9999 and the i64
/// extremes, ids that repeat, events of conversations that do not exist or
/// sit on another account, history that contradicts the day. Nothing
/// panics, and every row read either reaches the aggregates or is counted
/// as a reject with a reason.
mod hostile_rows {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;

    /// 0001-01-01 and 9999-12-31 in Unix microseconds.
    const YEAR_1: i64 = -62_135_596_800_000_000;
    const YEAR_9999: i64 = 253_402_214_400_000_000;

    fn text() -> impl Strategy<Value = Option<Vec<u8>>> {
        let known = [
            "inbound",
            "outbound",
            "contact",
            "agent",
            "proactive_api",
            "automation",
            "resolved",
            "reopened",
            "",
            "INBOUND",
        ];
        prop_oneof![
            Just(None),
            proptest::sample::select(known.to_vec()).prop_map(|s| Some(s.as_bytes().to_vec())),
            vec(any::<u8>(), 0..12).prop_map(Some),
        ]
    }

    fn instant() -> impl Strategy<Value = i64> {
        prop_oneof![
            Just(i64::MIN),
            Just(i64::MAX),
            Just(YEAR_1),
            Just(YEAR_9999),
            -MICROS_PER_DAY..2 * MICROS_PER_DAY,
            any::<i64>(),
        ]
    }

    /// Within the day: the extract selects rows by this instant.
    fn in_day() -> impl Strategy<Value = i64> {
        prop_oneof![Just(0), Just(MICROS_PER_DAY - 1), 0..MICROS_PER_DAY]
    }

    /// Few distinct values, so that ids repeat within a day.
    fn id() -> impl Strategy<Value = Option<i64>> {
        prop_oneof![Just(None), (0i64..8).prop_map(Some), any::<i64>().prop_map(Some)]
    }

    /// Accounts 1 and 2 exist; 3 does not.
    fn account() -> impl Strategy<Value = Option<i64>> {
        prop_oneof![Just(None), (1i64..=3).prop_map(Some), any::<i64>().prop_map(Some)]
    }

    /// Channel 10 is account 1's, 20 account 2's, 30 does not exist.
    fn channel() -> impl Strategy<Value = Option<i64>> {
        prop_oneof![
            Just(None),
            proptest::sample::select(vec![10i64, 20, 30]).prop_map(Some),
            any::<i64>().prop_map(Some),
        ]
    }

    fn message() -> impl Strategy<Value = RawMessage> {
        (
            (id(), account(), id(), channel(), id()),
            (text(), text(), id()),
            (in_day(), proptest::option::of(instant()), any::<bool>()),
        )
            .prop_map(
                |(
                    (id, account_id, conversation_id, channel_id, contact_id),
                    (direction, sender, agent_id),
                    (sent_at, created_at, bad_value),
                )| {
                    RawMessage {
                        id,
                        account_id,
                        conversation_id,
                        channel_id,
                        contact_id,
                        direction: Text::<Direction>::parse(direction.as_deref()),
                        sender_type: Text::<SenderType>::parse(sender.as_deref()),
                        agent_id,
                        sent_at,
                        created_at,
                        bad_value,
                    }
                },
            )
    }

    fn event() -> impl Strategy<Value = RawEvent> {
        (
            (id(), id(), text()),
            (in_day(), proptest::option::of(instant())),
            (account(), channel(), any::<bool>()),
        )
            .prop_map(
                |((id, conversation_id, kind), (occurred_at, created_at), (account_id, channel_id, bad_value))| {
                    RawEvent {
                        id,
                        conversation_id,
                        kind: Text::<EventKind>::parse(kind.as_deref()),
                        occurred_at,
                        created_at,
                        account_id,
                        channel_id,
                        bad_value,
                    }
                },
            )
    }

    fn history() -> impl Strategy<Value = RawHistory> {
        (
            0i64..8,
            instant(),
            any::<i64>(),
            text(),
            proptest::option::of(instant()),
            any::<bool>(),
        )
            .prop_map(
                |(conversation_id, first_at, first_id, direction, first_outbound, settled)| RawHistory {
                    conversation_id,
                    first_at,
                    first_id,
                    first_direction: Text::<Direction>::parse(direction.as_deref()),
                    first_outbound,
                    settled,
                },
            )
    }

    fn rejected(rejects: &Rejects, table: SourceTable) -> u64 {
        rejects
            .counts
            .iter()
            .filter(|((t, _, _), _)| *t == table)
            .map(|(_, (n, _))| n)
            .sum()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 10_000, ..ProptestConfig::default() })]

        #[test]
        fn hostile_rows_never_panic_and_every_row_is_accounted_for(
            messages in vec(message(), 0..24),
            events in vec(event(), 0..12),
            history in vec(history(), 0..4),
        ) {
            let d = dims();
            let mut agg = DayAggregator::new(&d, 0);
            for m in &messages {
                agg.push_message(m);
            }
            for e in &events {
                agg.push_event(e);
            }
            for h in &history {
                agg.push_history(h);
            }
            prop_assert_eq!(agg.messages_read, messages.len() as u64);
            prop_assert_eq!(agg.events_read, events.len() as u64);
            prop_assert_eq!(agg.messages_read, agg.messages_accepted + rejected(&agg.rejects, SourceTable::Messages));
            prop_assert_eq!(agg.events_read, agg.events_accepted + rejected(&agg.rejects, SourceTable::ConversationEvents));
            // A reason for every reject: the counts by reason add up to the total.
            prop_assert_eq!(agg.rejects.by_reason().values().sum::<u64>(), agg.rejects.total());

            // Deciding the resolves from whatever the day holds never panics,
            // and counts each conversation at most once.
            let mut take = |w: Aggregate| agg.keyed_mut(w).drain_sorted().into_iter();
            let (candidates, first_message, first_outbound, settled) = (
                take(Aggregate::ResolveCandidates),
                take(Aggregate::FirstMessage),
                take(Aggregate::FirstOutbound),
                take(Aggregate::Settled),
            );
            let mut counted = std::collections::BTreeSet::new();
            decide_resolved(candidates, first_message, first_outbound, settled, |(key, _)| {
                assert!(counted.insert(key[2]), "a conversation counted twice: {key:?}");
            });
        }
    }
}

/// Property: the dense fast path of `Known::check` gives exactly the reason
/// of the full check, for channel ids dense (the table is built) and sparse
/// (it is not), channels of accounts that do not exist, and ids at the ends
/// of the range.
#[test]
fn the_fast_dimension_check_agrees_with_the_full_one() {
    use crate::seed::rng::Rng;
    for seed in 0..200u64 {
        let mut rng = Rng::new(seed);
        let sparse = seed % 2 == 1;
        let mut d = Dimensions::default();
        for id in 0..rng.range(0, 6) {
            d.accounts.insert(
                id,
                AccountDim {
                    id,
                    name: None,
                    time_zone: None,
                    created_at: None,
                },
            );
        }
        let base = [0, -5, i64::MIN, i64::MAX - 100, 1 << 40][seed as usize % 5];
        let mut channels = Vec::new();
        for _ in 0..rng.range(0, 40) {
            let offset = if sparse {
                rng.range(0, 1 << 30)
            } else {
                rng.range(0, 80)
            };
            let id = base.saturating_add(offset);
            let account = rng.range(-1, 8);
            channels.push(id);
            d.channels.insert(
                id,
                ChannelDim {
                    id,
                    account_id: account,
                    platform: None,
                    name: None,
                    environment: None,
                    connected_at: None,
                    disconnected_at: None,
                },
            );
        }
        let known = Known::of(&d);
        // Both paths are taken: near the ends of the range ids saturate into one.
        if channels.len() > 1 && [0, -5, 1 << 40].contains(&base) {
            assert_eq!(known.valid_owner.is_empty(), sparse, "seed {seed}");
        }
        let mut probes: Vec<i64> = channels.clone();
        probes.extend([i64::MIN, i64::MAX, 0, -1, base.wrapping_sub(1), base.wrapping_add(81)]);
        for channel in probes {
            for account in [i64::MIN, -1, 0, 1, 2, 3, 4, 5, 6, 7, i64::MAX] {
                assert_eq!(
                    known.check(account, channel),
                    known.why_rejected(account, channel),
                    "seed {seed}: account {account}, channel {channel}"
                );
            }
        }
    }
}

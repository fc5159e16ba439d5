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
        d.channels.insert(
            id,
            ChannelDim {
                id,
                account_id: account,
                platform: Some("sms".into()),
                name: None,
                environment: Some("production".into()),
                connected_at: Some(0),
                disconnected_at: None,
            },
        );
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
        first_direction: Some(Text::Known(Direction::Inbound)),
        counting_event_id: Some(id),
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
    assert_eq!(agg.contacts.len(), 1);
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
    let contacts = agg.contacts.drain_sorted();
    assert_eq!(
        contacts,
        vec![(
            [1, 10, 1000, 3 * MICROS_PER_HOUR],
            [3 * MICROS_PER_HOUR + 5, 3 * MICROS_PER_HOUR + 50]
        )]
    );
    // Only outbound agent messages with an agent id make an active agent.
    assert_eq!(
        agg.agents.drain_sorted(),
        vec![([1, 10, 7, 3 * MICROS_PER_HOUR], [3 * MICROS_PER_HOUR + 5; 2])]
    );
    assert_eq!(
        agg.proactive.drain_sorted(),
        vec![([1, 10, 3 * MICROS_PER_HOUR, 0], [2, 0])]
    );
    assert!(agg.rejects.counts.is_empty());
}

#[test]
fn only_the_counting_resolve_of_an_inbound_first_conversation_counts() {
    let d = dims();
    let mut agg = DayAggregator::new(&d, 0);
    agg.push_event(&event(1));
    // Not the counting resolve (an earlier one at or after the first outbound is).
    agg.push_event(&RawEvent {
        counting_event_id: Some(1),
        conversation_id: Some(101),
        ..event(2)
    });
    // First message outbound: never counts.
    agg.push_event(&RawEvent {
        first_direction: Some(Text::Known(Direction::Outbound)),
        conversation_id: Some(102),
        ..event(3)
    });
    // Never answered: no counting resolve.
    agg.push_event(&RawEvent {
        counting_event_id: None,
        conversation_id: Some(103),
        ..event(4)
    });
    agg.push_event(&RawEvent {
        kind: Text::Known(EventKind::Reopened),
        conversation_id: Some(104),
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
        agg.resolved.drain_sorted(),
        vec![([1, 10, 100, 0], [5 * MICROS_PER_HOUR, 1])]
    );
    let by_reason = agg.rejects.by_reason();
    assert_eq!(by_reason["unknown_event_kind"], 1);
    assert_eq!(by_reason["orphan_event"], 1);
    assert_eq!(by_reason["duplicate_id"], 1);
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

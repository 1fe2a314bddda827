use super::*;
use crate::deadline::Deadlines;

const TTL: Duration = Duration::from_secs(60);

fn hub(buffer: usize) -> Hub {
    Hub::new(
        0xe,
        Limits {
            buffer,
            ttl: TTL,
            max_channels: usize::MAX,
            max_history_bytes: usize::MAX,
        },
    )
}

/// The server's part in expiry: sets the timers the hub asks for and hands
/// back those due at `now`.
fn run_timers(hub: &mut Hub, queue: &mut Deadlines, now: Instant) {
    queue.arm(&mut hub.to_arm);
    while let Some((_, timer)) = queue.pop_due(now) {
        let Timer::Channel(name) = timer else {
            panic!("the hub sets only channel timers: {timer:?}")
        };
        hub.on_expiry_timer(&name, now);
        queue.arm(&mut hub.to_arm);
    }
}

fn publish_n(hub: &mut Hub, name: &str, n: usize, now: Instant) -> Vec<String> {
    (0..n)
        .map(|i| {
            hub.publish(name, format!("m{i}").into(), false, None, now)
                .unwrap()
                .id
                .to_string()
        })
        .collect()
}

fn ids(replay: &Replay) -> Vec<String> {
    replay.messages.iter().map(|m| m.id.to_string()).collect()
}

fn at(hub: &Hub, seq: u64) -> Cursor {
    cursor::parse(&hub.id_of(seq)).unwrap()
}

#[test]
fn validates_channel_names() {
    let long = "a".repeat(MAX_CHANNEL_NAME);
    let too_long = "a".repeat(MAX_CHANNEL_NAME + 1);
    for ok in ["a", "chat/room1", "/chat/room1", "A-z_0.9:x", long.as_str()] {
        assert!(validate_channel(ok).is_ok(), "{ok:?}");
    }
    for bad in ["", "sp ace", "é", "a?b", "a%2F", "a\nb", too_long.as_str()] {
        assert_eq!(validate_channel(bad).unwrap_err().status, 400, "{bad:?}");
    }
}

#[test]
fn replays_from_each_kind_of_cursor() {
    let now = Instant::now();
    let mut hub = hub(10);
    let sent = publish_n(&mut hub, "c", 3, now);
    assert_eq!(sent, ["00000000000e-1", "00000000000e-2", "00000000000e-3"]);

    let from_now = hub.replay("c", Cursor::Now, 100).unwrap();
    assert!(from_now.messages.is_empty() && from_now.gap.is_none());
    assert_eq!(from_now.next, sent[2]);

    assert_eq!(ids(&hub.replay("c", Cursor::Earliest, 100).unwrap()), sent);
    assert_eq!(ids(&hub.replay("c", at(&hub, 1), 100).unwrap()), sent[1..]);
    assert_eq!(ids(&hub.replay("c", at(&hub, 0), 100).unwrap()), sent);
    assert!(ids(&hub.replay("c", at(&hub, 3), 100).unwrap()).is_empty());
    assert_eq!(hub.replay("c", at(&hub, 4), 100).err().unwrap().status, 400);
}

#[test]
fn caps_a_batch_and_continues() {
    let now = Instant::now();
    let mut hub = hub(10);
    let sent = publish_n(&mut hub, "c", 5, now);
    let first = hub.replay("c", Cursor::Earliest, 2).unwrap();
    assert_eq!((ids(&first), first.more), (sent[..2].to_vec(), true));
    let second = hub
        .replay("c", cursor::parse(&first.next).unwrap(), 10)
        .unwrap();
    assert_eq!((ids(&second), second.more), (sent[2..].to_vec(), false));
}

#[test]
fn reports_an_exact_gap_when_the_buffer_overflowed() {
    let now = Instant::now();
    let mut hub = hub(3);
    let sent = publish_n(&mut hub, "c", 7, now);
    let replay = hub.replay("c", at(&hub, 1), 100).unwrap();
    let gap = replay.gap.clone().unwrap();
    assert_eq!((gap.reason, gap.missed), ("expired", Some(3)));
    assert_eq!(gap.cursor, sent[0]);
    assert_eq!(gap.next, sent[3]);
    assert_eq!(ids(&replay), sent[4..]);
}

#[test]
fn reports_a_restart_for_another_epoch() {
    let now = Instant::now();
    let mut hub = hub(3);
    let sent = publish_n(&mut hub, "c", 2, now);
    let replay = hub
        .replay(
            "c",
            Cursor::After {
                epoch: 0xdead,
                seq: 9,
            },
            100,
        )
        .unwrap();
    let gap = replay.gap.unwrap();
    assert_eq!(
        (gap.reason, gap.missed, gap.cursor.as_str()),
        ("restarted", None, "00000000dead-9")
    );
    assert_eq!(
        ids(&Replay {
            gap: None,
            ..replay
        }),
        sent
    );
}

#[test]
fn expires_messages_and_frees_the_channel() {
    let t0 = Instant::now();
    let mut hub = hub(10);
    let mut queue = Deadlines::new(t0);
    publish_n(&mut hub, "c", 2, t0);
    hub.publish("c", "late".into(), false, None, t0 + TTL / 2)
        .unwrap();
    run_timers(&mut hub, &mut queue, t0 + TTL / 2);
    assert_eq!((queue.len(), queue.next()), (1, Some(t0 + TTL)));

    run_timers(&mut hub, &mut queue, t0 + TTL);
    assert_eq!(hub.channel("c").unwrap().n_messages(), 1);
    assert_eq!((queue.len(), queue.next()), (1, Some(t0 + TTL + TTL / 2)));

    run_timers(&mut hub, &mut queue, t0 + 2 * TTL);
    assert!(hub.channel("c").is_none(), "an unused channel is freed");
    assert!(queue.is_empty());

    // Its position survives: the old cursor learns exactly what it missed.
    let gap = hub.replay("c", at(&hub, 1), 100).unwrap().gap.unwrap();
    assert_eq!(gap.missed, Some(2));
    assert_eq!(
        hub.publish("c", "again".into(), false, None, t0 + 2 * TTL)
            .unwrap()
            .seq,
        4
    );
}

#[test]
fn an_old_cursor_of_a_forgotten_channel_gets_a_gap_of_unknown_size() {
    let t0 = Instant::now();
    let mut hub = hub(10);
    let mut queue = Deadlines::new(t0);
    publish_n(&mut hub, "c", 5, t0);
    run_timers(&mut hub, &mut queue, t0 + TTL);
    assert!(hub.channel("c").is_none());
    // The tombstone is forgotten the next time the hub buries a channel.
    publish_n(&mut hub, "d", 1, t0 + 3 * TTL);
    hub.delete("d", t0 + 3 * TTL);
    assert_eq!(hub.tombstones.floor, 6);
    let gap = hub.replay("c", at(&hub, 2), 100).unwrap().gap.unwrap();
    assert_eq!(gap.missed, None);
    assert!(hub.replay("c", at(&hub, 5), 100).unwrap().gap.is_none());
    assert_eq!(
        hub.publish("c", "new".into(), false, None, t0 + 3 * TTL)
            .unwrap()
            .seq,
        6
    );
}

#[test]
fn subscribers_keep_a_channel_open() {
    let now = Instant::now();
    let mut hub = hub(10);
    let conn = ConnId { slot: 1, gen: 1 };
    let (name, stream_key) = hub.subscribe("c", Kind::Stream, conn);
    let (_, poll_key) = hub.subscribe("c", Kind::Poll, conn);
    assert_eq!(&*name, "c");
    assert_eq!(hub.channel("c").unwrap().n_subscribers(), 2);
    hub.unsubscribe("c", Kind::Stream, stream_key, conn, now);
    assert!(hub.channel("c").is_some());
    hub.unsubscribe("c", Kind::Poll, poll_key, conn, now);
    assert!(hub.channel("c").is_none());
}

#[test]
fn a_stale_key_does_not_unsubscribe_its_new_owner() {
    let now = Instant::now();
    let mut hub = hub(10);
    let (old, new) = (ConnId { slot: 1, gen: 1 }, ConnId { slot: 2, gen: 2 });
    let (_, key) = hub.subscribe("c", Kind::Poll, old);
    hub.channel_mut("c").unwrap().polls.clear();
    let (_, reused) = hub.subscribe("c", Kind::Poll, new);
    assert_eq!(key, reused);
    hub.unsubscribe("c", Kind::Poll, key, old, now);
    assert_eq!(
        hub.channel("c").unwrap().polls.get(reused as usize),
        Some(&new)
    );
}

#[test]
fn deleting_keeps_the_position() {
    let now = Instant::now();
    let mut hub = hub(10);
    publish_n(&mut hub, "c", 2, now);
    let deleted = hub.delete("c", now).unwrap();
    assert_eq!(deleted.n_messages(), 2);
    assert!(hub.channel("c").is_none());
    assert_eq!(hub.head_cursor("c"), hub.id_of(2));
    assert_eq!(
        hub.publish("c", "x".into(), false, None, now).unwrap().seq,
        3
    );
}

/// Deleting a channel and creating it again, many times: the name keeps one
/// expiry entry, which each new channel adopts; it comes up early, drops what
/// expired and asks again for the next message's expiry.
#[test]
fn a_recreated_channel_keeps_one_expiry_timer() {
    let t0 = Instant::now();
    let mut hub = hub(10);
    let mut queue = Deadlines::new(t0);
    for i in 0..50 {
        let now = t0 + i * TTL / 100;
        hub.publish("c", "x".into(), false, None, now).unwrap();
        run_timers(&mut hub, &mut queue, now);
        assert_eq!(queue.len(), 1, "cycle {i}");
        hub.delete("c", now);
    }
    let last = t0 + TTL / 2;
    hub.publish("c", "last".into(), false, None, last).unwrap();
    run_timers(&mut hub, &mut queue, last);
    assert_eq!((queue.len(), queue.next()), (1, Some(t0 + TTL)));
    // The first life's entry comes up early and moves to the last message's expiry.
    run_timers(&mut hub, &mut queue, t0 + TTL);
    assert_eq!((queue.len(), queue.next()), (1, Some(last + TTL)));
    assert_eq!(hub.channel("c").unwrap().n_messages(), 1);
    run_timers(&mut hub, &mut queue, last + TTL);
    assert!(queue.is_empty() && hub.channel("c").is_none());
    // A deleted channel's entry ends when it comes up.
    hub.publish("c", "x".into(), false, None, last + TTL)
        .unwrap();
    hub.delete("c", last + TTL);
    run_timers(&mut hub, &mut queue, last + 2 * TTL);
    assert!(queue.is_empty() && hub.channel("c").is_none());
}

fn bounded_hub(buffer: usize, max_channels: usize, max_history_bytes: usize) -> Hub {
    Hub::new(
        0xe,
        Limits {
            buffer,
            ttl: TTL,
            max_channels,
            max_history_bytes,
        },
    )
}

/// The budget's count is the sum over what the buffers hold, whatever
/// came and went.
fn assert_history_counted(hub: &Hub) {
    let held: usize = hub
        .channels
        .values()
        .flat_map(|c| c.buffer.iter())
        .map(|m| cost(m))
        .sum();
    assert_eq!(hub.history_bytes(), held);
}

#[test]
fn channel_limit_refuses_new_channels_until_one_is_deleted_or_freed() {
    let t0 = Instant::now();
    let mut hub = bounded_hub(10, 2, usize::MAX);
    let mut queue = Deadlines::new(t0);
    let refused = Err(Full::Channels { limit: 2 });
    // (step, channel, outcome): Ok(()) published, else the refusal.
    let steps: [(&str, Result<(), Full>); 5] = [
        ("a", Ok(())),
        ("b", Ok(())),
        ("c", refused),
        // An existing channel still takes publishes at the limit.
        ("a", Ok(())),
        ("b", Ok(())),
    ];
    for (name, want) in steps {
        let got = hub.publish(name, "x".into(), false, None, t0).map(|_| ());
        assert_eq!(got, want, "publish to {name}");
    }
    assert_eq!(hub.n_channels_refused, 1);
    assert!(
        hub.channel("c").is_none(),
        "a refused publish opens nothing"
    );
    // Deleting one makes room.
    hub.delete("a", t0).unwrap();
    hub.publish("c", "x".into(), false, None, t0).unwrap();
    assert_eq!(
        hub.publish("d", "x".into(), false, None, t0).map(|_| ()),
        refused
    );
    // So does expiry: a channel whose messages are gone and that nobody
    // holds is freed.
    run_timers(&mut hub, &mut queue, t0 + TTL);
    assert_eq!(hub.n_channels(), 0);
    for name in ["d", "e"] {
        hub.publish(name, "x".into(), false, None, t0 + TTL)
            .unwrap();
    }
    assert_history_counted(&hub);
}

#[test]
fn history_budget_lets_a_full_buffer_make_room_and_refuses_growth() {
    let t0 = Instant::now();
    let unit = {
        let mut probe = hub(1);
        cost(
            &probe
                .publish("a", "0123456789".into(), false, None, t0)
                .unwrap(),
        )
    };
    // Room for three ten-byte messages (and not a fourth), two per channel.
    let mut hub = bounded_hub(2, 100, 3 * unit + unit / 2);
    let mut queue = Deadlines::new(t0);
    let refused = Err(Full::History {
        limit: 3 * unit + unit / 2,
    });
    // (channel, data, outcome, history after, in units)
    let steps: [(&str, &str, Result<(), Full>, usize); 7] = [
        ("a", "0123456789", Ok(()), 1),
        ("a", "0123456789", Ok(()), 2),
        ("b", "0123456789", Ok(()), 3),
        // Growth past the budget: refused, nothing stored.
        ("b", "0123456789", refused, 3),
        ("c", "0123456789", refused, 3),
        // A's buffer is full: its oldest goes, as the buffer promises only
        // its last two, so the publish adds nothing.
        ("a", "0123456789", Ok(()), 3),
        // A larger message than the one it replaces needs the difference.
        ("a", &"x".repeat(unit), refused, 3),
    ];
    for (name, data, want, units) in steps {
        let got = hub.publish(name, data.into(), false, None, t0).map(|_| ());
        assert_eq!(got, want, "publish {} bytes to {name}", data.len());
        assert_eq!(
            hub.history_bytes(),
            units * unit,
            "after publishing to {name}"
        );
        assert_history_counted(&hub);
    }
    assert_eq!(hub.n_history_refused, 3);
    assert_eq!(
        hub.channel("a").unwrap().n_messages(),
        2,
        "nothing younger was trimmed"
    );
    // Deleting gives its bytes back.
    hub.delete("b", t0).unwrap();
    assert_eq!(hub.history_bytes(), 2 * unit);
    hub.publish("c", "0123456789".into(), false, None, t0)
        .unwrap();
    // Expiry gives back the rest.
    run_timers(&mut hub, &mut queue, t0 + TTL);
    assert_eq!(hub.history_bytes(), 0);
    assert_history_counted(&hub);
}

#[test]
fn refusals_answer_503_with_retry_after_and_say_which_limit() {
    for (full, says) in [
        (Full::Channels { limit: 7 }, "limit of 7 channels"),
        (
            Full::History { limit: 9 },
            "limit of 9 bytes of message history",
        ),
    ] {
        let reject = full.reject();
        assert_eq!(reject.status, 503);
        assert!(reject.message.contains(says), "{}", reject.message);
        assert_eq!(
            reject.header.as_deref(),
            Some(format!("Retry-After: {FULL_RETRY_AFTER_SECS}").as_str())
        );
    }
}

#[test]
fn publishes_admitted_ahead_count_against_the_limits_before_they_are_made() {
    let t0 = Instant::now();
    let unit = cost(&hub(1).publish("a", "x".into(), false, None, t0).unwrap());
    let mut hub = bounded_hub(10, 2, 4 * unit + unit / 2);
    hub.publish("a", "x".into(), false, None, t0).unwrap();
    let mut ahead = Ahead::default();
    // (channel, outcome): one new channel fits, and a second publish to it
    // opens nothing more; a third channel does not; then the history fills.
    let steps: [(&str, Result<(), &str>); 5] = [
        ("b", Ok(())),
        ("b", Ok(())),
        ("c", Err("channels_full")),
        ("a", Ok(())),
        ("a", Err("history_full")),
    ];
    for (name, want) in steps {
        let got = hub
            .admit_ahead(name, "x", None, &mut ahead)
            .map_err(Full::reason);
        assert_eq!(got, want, "{name}");
    }
    // Deciding changed nothing in the hub.
    assert_eq!((hub.n_channels(), hub.history_bytes()), (1, unit));
}

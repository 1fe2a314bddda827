//! A model test of the hub: random sequences of publishes, subscribes,
//! unsubscribes, deletes, replays and the passing of time, run against the
//! hub (with its expiry timers fired as the server fires them) and against a
//! plain model, a list of every message each name was ever sent. After every
//! step, the channels, their buffers and sequence numbers must agree; every
//! replay must return exactly the model's messages, continuation cursor and
//! gap decision.
//!
//! The model's rules, in plain words:
//! - a channel keeps the last `buffer` messages of its life that are younger
//!   than the TTL; it lives while it has messages or subscribers;
//! - a channel freed or deleted is remembered for one TTL: opened again in
//!   that time, it goes on from its sequence number; forgotten, its numbers
//!   raise the floor where every new channel starts;
//! - a cursor sees the buffered messages after it; if messages after it were
//!   published and are no longer held, that is a gap with their count, and a
//!   cursor older than what the hub remembers of the channel (or of another
//!   server run) gets a gap of unknown size.
//!
//! Run long with `PROPTEST_CASES=100000 cargo test --release --lib prop`.

use std::collections::HashMap;

use proptest::collection::vec;
use proptest::prelude::*;

use super::*;
use crate::deadline::Deadlines;

const TTL_MS: u64 = 100;
const EPOCH: u64 = 0xe;
const STALE_EPOCH: u64 = 0xdead;
const NAMES: [&str; 3] = ["a", "b/c", "d"];

#[derive(Clone, Debug)]
enum Op {
    Publish(usize),
    Subscribe(usize, Kind),
    /// Ends the subscription at this index (modulo) of the live ones.
    Unsubscribe(usize),
    Delete(usize),
    /// Moves `now` on by this many milliseconds and fires due timers.
    Advance(u64),
    Replay(usize, Pick, usize),
}

/// Which cursor a replay is given.
#[derive(Clone, Debug)]
enum Pick {
    Now,
    Earliest,
    /// A sequence number this far below the channel's next one (so 0 and 1
    /// are ahead of it, 2 is its last message).
    Behind(u64),
    /// The id of a message ever published on the name (index modulo).
    Published(usize),
    /// An id from another server run.
    Stale(u64),
    Max,
}

fn op() -> impl Strategy<Value = Op> {
    let name = 0..NAMES.len();
    let pick = prop_oneof![
        Just(Pick::Now),
        Just(Pick::Earliest),
        (0u64..12).prop_map(Pick::Behind),
        any::<usize>().prop_map(Pick::Published),
        any::<u64>().prop_map(Pick::Stale),
        Just(Pick::Max),
    ];
    let kind = prop_oneof![Just(Kind::Stream), Just(Kind::Poll)];
    let ms = prop_oneof![
        Just(0),
        Just(1),
        Just(TTL_MS - 1),
        Just(TTL_MS),
        0..TTL_MS * 2
    ];
    prop_oneof![
        5 => name.clone().prop_map(Op::Publish),
        2 => (name.clone(), kind).prop_map(|(n, k)| Op::Subscribe(n, k)),
        2 => any::<usize>().prop_map(Op::Unsubscribe),
        1 => name.clone().prop_map(Op::Delete),
        3 => ms.prop_map(Op::Advance),
        5 => (name, pick, 1usize..6).prop_map(|(n, p, max)| Op::Replay(n, p, max)),
    ]
}

#[derive(Clone, Debug)]
struct Sent {
    seq: u64,
    at: u64,
}

/// An open channel in the model.
struct Life {
    base: u64,
    next_seq: u64,
    /// What was published in this life, oldest first.
    sent: Vec<Sent>,
}

struct Sub {
    name: usize,
    kind: Kind,
    key: u32,
    conn: ConnId,
}

struct Model {
    now: u64,
    buffer: usize,
    floor: u64,
    open: HashMap<usize, Life>,
    /// Freed or deleted channels still remembered: `(base, next_seq, until)`.
    remembered: HashMap<usize, (u64, u64, u64)>,
    subs: Vec<Sub>,
    /// Every message each name was ever sent, across lives.
    history: HashMap<usize, Vec<Sent>>,
}

impl Model {
    fn new(buffer: usize) -> Model {
        Model {
            now: 0,
            buffer,
            floor: 1,
            open: HashMap::new(),
            remembered: HashMap::new(),
            subs: Vec::new(),
            history: HashMap::new(),
        }
    }

    /// The messages channel `name` holds: the last `buffer` of its life
    /// that are younger than the TTL.
    fn held(&self, name: usize) -> Vec<Sent> {
        let Some(life) = self.open.get(&name) else {
            return Vec::new();
        };
        let last = &life.sent[life.sent.len().saturating_sub(self.buffer)..];
        last.iter()
            .filter(|m| m.at + TTL_MS > self.now)
            .cloned()
            .collect()
    }

    fn n_subs(&self, name: usize) -> usize {
        self.subs.iter().filter(|s| s.name == name).count()
    }

    /// `(base, next_seq)`: the open channel's, the remembered one's, or a
    /// new channel's.
    fn position(&self, name: usize) -> (u64, u64) {
        if let Some(life) = self.open.get(&name) {
            return (life.base, life.next_seq);
        }
        match self.remembered.get(&name) {
            Some(&(base, next, _)) => (base, next),
            None => (self.floor, self.floor),
        }
    }

    fn open(&mut self, name: usize) -> &mut Life {
        if !self.open.contains_key(&name) {
            let (base, next_seq) = self.position(name);
            self.remembered.remove(&name);
            let life = Life {
                base,
                next_seq,
                sent: Vec::new(),
            };
            self.open.insert(name, life);
        }
        self.open.get_mut(&name).expect("opened")
    }

    fn close(&mut self, name: usize) {
        if let Some(life) = self.open.remove(&name) {
            let until = self.now + TTL_MS;
            self.remembered
                .insert(name, (life.base, life.next_seq, until));
        }
        self.subs.retain(|s| s.name != name);
    }

    fn free_if_unused(&mut self, name: usize) {
        if self.open.contains_key(&name) && self.held(name).is_empty() && self.n_subs(name) == 0 {
            self.close(name);
        }
    }

    fn publish(&mut self, name: usize) -> u64 {
        let now = self.now;
        let life = self.open(name);
        let seq = life.next_seq;
        life.next_seq += 1;
        life.sent.push(Sent { seq, at: now });
        self.history
            .entry(name)
            .or_default()
            .push(Sent { seq, at: now });
        seq
    }

    fn advance(&mut self, ms: u64) {
        self.now += ms;
        let now = self.now;
        let forgotten: Vec<usize> = self
            .remembered
            .iter()
            .filter(|(_, &(_, _, until))| until <= now)
            .map(|(&name, _)| name)
            .collect();
        for name in forgotten {
            let (_, next, _) = self.remembered.remove(&name).expect("listed");
            self.floor = self.floor.max(next);
        }
        for name in 0..NAMES.len() {
            self.free_if_unused(name);
        }
    }
}

/// Timers one step may fire: a few per channel. More means a timer that
/// keeps setting itself again at a time already due, which would spin the
/// server's loop; the test fails instead of hanging.
const MAX_TIMERS_PER_STEP: usize = 100;

/// The server's part in expiry, as in `hub::tests`: sets the timers the hub
/// asks for and fires those due at `now`.
fn run_timers(hub: &mut Hub, queue: &mut Deadlines, now: Instant) {
    queue.arm(&mut hub.to_arm);
    let mut fired = 0;
    while let Some((_, timer)) = queue.pop_due(now) {
        fired += 1;
        assert!(
            fired <= MAX_TIMERS_PER_STEP,
            "expiry timers keep coming due"
        );
        let Timer::Channel(name) = timer else {
            panic!("the hub sets only channel timers: {timer:?}")
        };
        hub.on_expiry_timer(&name, now);
        queue.arm(&mut hub.to_arm);
    }
}

fn id(seq: u64) -> String {
    cursor::format(EPOCH, seq)
}

/// What a replay should return, by the model.
#[derive(Debug, PartialEq, Eq)]
struct Expected {
    gap: Option<(&'static str, Option<u64>, String, String)>,
    messages: Vec<(String, String)>,
    next: String,
    more: bool,
}

fn data_of(name: usize, seq: u64) -> String {
    format!("{}#{seq}", NAMES[name])
}

fn expect_replay(model: &Model, name: usize, cursor: Cursor, max: usize) -> Option<Expected> {
    let (base, next_seq) = model.position(name);
    let held = model.held(name);
    let oldest = held.first().map_or(next_seq, |m| m.seq);
    // `after`: the last sequence number the subscriber is taken to have.
    let (after, gap) = match cursor {
        Cursor::Now => (next_seq - 1, None),
        Cursor::Earliest => (oldest - 1, None),
        Cursor::After { epoch, seq } if epoch != EPOCH => (
            oldest - 1,
            Some((
                "restarted",
                None,
                cursor::format(epoch, seq),
                id(oldest - 1),
            )),
        ),
        Cursor::After { seq, .. } if seq >= next_seq => return None,
        Cursor::After { seq, .. } => {
            let history = model.history.get(&name).map_or(&[][..], |h| &h[..]);
            let lost = history
                .iter()
                .filter(|m| m.seq > seq && m.seq < oldest)
                .count() as u64;
            let known = seq + 1 >= base;
            match (known, lost) {
                (true, 0) => (seq, None),
                (true, n) => (
                    oldest - 1,
                    Some(("expired", Some(n), id(seq), id(oldest - 1))),
                ),
                (false, _) => (oldest - 1, Some(("expired", None, id(seq), id(oldest - 1)))),
            }
        }
    };
    let after_cursor: Vec<&Sent> = held.iter().filter(|m| m.seq > after).collect();
    let messages: Vec<(String, String)> = after_cursor
        .iter()
        .take(max)
        .map(|m| (id(m.seq), data_of(name, m.seq)))
        .collect();
    let next = messages
        .last()
        .map_or_else(|| id(after), |(id, _)| id.clone());
    Some(Expected {
        gap,
        more: after_cursor.len() > messages.len(),
        messages,
        next,
    })
}

fn actual(replay: &Replay) -> Expected {
    Expected {
        gap: replay
            .gap
            .as_ref()
            .map(|g| (g.reason, g.missed, g.cursor.clone(), g.next.clone())),
        messages: replay
            .messages
            .iter()
            .map(|m| (m.id.to_string(), m.data.to_string()))
            .collect(),
        next: replay.next.clone(),
        more: replay.more,
    }
}

fn cursor_for(model: &Model, name: usize, pick: &Pick) -> Cursor {
    let (_, next_seq) = model.position(name);
    match *pick {
        Pick::Now => Cursor::Now,
        Pick::Earliest => Cursor::Earliest,
        Pick::Behind(n) => Cursor::After {
            epoch: EPOCH,
            seq: (next_seq + 1).saturating_sub(n),
        },
        Pick::Published(i) => match model.history.get(&name) {
            Some(sent) if !sent.is_empty() => Cursor::After {
                epoch: EPOCH,
                seq: sent[i % sent.len()].seq,
            },
            _ => Cursor::Earliest,
        },
        Pick::Stale(seq) => Cursor::After {
            epoch: STALE_EPOCH,
            seq,
        },
        Pick::Max => Cursor::After {
            epoch: EPOCH,
            seq: u64::MAX,
        },
    }
}

/// Every name's channel, buffer and position agree with the model.
fn check_state(hub: &Hub, model: &Model) -> Result<(), TestCaseError> {
    for (name, text) in NAMES.iter().enumerate() {
        let channel = hub.channel(text);
        prop_assert_eq!(
            channel.is_some(),
            model.open.contains_key(&name),
            "{} open",
            text
        );
        if let Some(channel) = channel {
            prop_assert_eq!(
                channel.n_messages(),
                model.held(name).len(),
                "{} held",
                text
            );
            prop_assert_eq!(channel.n_subscribers(), model.n_subs(name), "{} subs", text);
        }
        prop_assert_eq!(
            hub.head_cursor(text),
            id(model.position(name).1 - 1),
            "{} head",
            text
        );
    }
    prop_assert_eq!(hub.n_channels(), model.open.len());
    Ok(())
}

fn run(buffer: usize, ops: &[Op]) -> Result<(), TestCaseError> {
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let mut hub = Hub::new(
        EPOCH,
        Limits {
            buffer,
            ttl: Duration::from_millis(TTL_MS),
            // The model has no memory bounds; hub/tests.rs tests those.
            max_channels: usize::MAX,
            max_history_bytes: usize::MAX,
        },
    );
    let mut queue = Deadlines::new(t0);
    let mut model = Model::new(buffer);
    let mut n_conns = 0;
    for op in ops {
        let now = at(model.now);
        match *op {
            Op::Publish(name) => {
                let seq = model.publish(name);
                let data = data_of(name, seq);
                let message = hub
                    .publish(NAMES[name], data.into(), false, None, now)
                    .expect("the model's hub has no limits to reach");
                prop_assert_eq!(message.seq, seq);
                prop_assert_eq!(message.id.to_string(), id(seq));
            }
            Op::Subscribe(name, kind) => {
                n_conns += 1;
                let conn = ConnId {
                    slot: n_conns,
                    gen: 1,
                };
                model.open(name);
                let (_, key) = hub.subscribe(NAMES[name], kind, conn);
                model.subs.push(Sub {
                    name,
                    kind,
                    key,
                    conn,
                });
            }
            Op::Unsubscribe(i) if !model.subs.is_empty() => {
                let sub = model.subs.remove(i % model.subs.len());
                hub.unsubscribe(NAMES[sub.name], sub.kind, sub.key, sub.conn, now);
                model.free_if_unused(sub.name);
            }
            Op::Unsubscribe(_) => {}
            Op::Delete(name) => {
                let (held, subs) = (model.held(name).len(), model.n_subs(name));
                let was_open = model.open.contains_key(&name);
                let deleted = hub.delete(NAMES[name], now);
                prop_assert_eq!(deleted.is_some(), was_open);
                if let Some(channel) = deleted {
                    prop_assert_eq!(
                        (channel.n_messages(), channel.n_subscribers()),
                        (held, subs)
                    );
                }
                model.close(name);
            }
            Op::Advance(ms) => {
                model.advance(ms);
                let now = at(model.now);
                run_timers(&mut hub, &mut queue, now);
                // The hub forgets freed channels lazily, when it next buries
                // one or a timer comes up; the model forgets them on time.
                // Forgetting sooner is what the server may do at any moment,
                // so the harness makes it happen here.
                hub.tombstones.expire(now);
            }
            Op::Replay(name, ref pick, max) => {
                let cursor = cursor_for(&model, name, pick);
                let want = expect_replay(&model, name, cursor, max);
                let got = hub.replay(NAMES[name], cursor, max);
                match (got, want) {
                    (Ok(got), Some(want)) => {
                        let got_view = actual(&got);
                        prop_assert_eq!(&got_view, &want, "{:?} on {}", cursor, NAMES[name]);
                        // A capped batch goes on from its `next` with no gap.
                        if got.more {
                            let next = cursor::parse(&got.next).unwrap();
                            let rest = hub.replay(NAMES[name], next, max).unwrap();
                            prop_assert_eq!(
                                actual(&rest),
                                expect_replay(&model, name, next, max).unwrap()
                            );
                            prop_assert!(rest.gap.is_none());
                        }
                    }
                    (Err(reject), None) => prop_assert_eq!(reject.status, 400),
                    (got, want) => prop_assert!(
                        false,
                        "{:?} on {}: hub {:?}, model {:?}",
                        cursor,
                        NAMES[name],
                        got.map(|r| actual(&r)),
                        want
                    ),
                }
            }
        }
        check_state(&hub, &model)?;
    }
    Ok(())
}

proptest! {
    #[test]
    fn the_hub_replays_as_the_model_says(buffer in 1usize..5, ops in vec(op(), 1..80)) {
        run(buffer, &ops)?;
    }
}

/// A sequence the model test once needed to get right by hand: a channel
/// freed by expiry, forgotten, and opened again above the floor.
#[test]
fn a_forgotten_channel_starts_above_every_old_cursor() {
    let ops = [
        Op::Publish(0),
        Op::Publish(0),
        Op::Advance(TTL_MS),
        Op::Publish(1),
        Op::Advance(TTL_MS),
        Op::Publish(0),
        Op::Replay(0, Pick::Published(0), 5),
        Op::Replay(0, Pick::Published(1), 5),
        Op::Replay(0, Pick::Behind(2), 5),
    ];
    run(2, &ops).unwrap();
}

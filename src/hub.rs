//! The hub: channels by name, each with its buffer of recent messages and its
//! subscribers (as connection ids, never connections). It resolves cursors into
//! what a subscriber must be sent, including the gap when history is gone. It
//! is pure: it takes `now` and returns values, and the server does all the IO.
//! Message expiry runs on the server's deadline queue: the hub asks, in
//! `to_arm`, for at most one `Timer::Channel` per channel name, and the server
//! calls `on_expiry_timer` when it comes up.
//!
//! Its memory is bounded (`Limits`): at most `max_channels` channels, and
//! messages whose bytes (`hub::cost`) sum to at most
//! `max_history_bytes`. A publish that would pass either is refused (`Full`)
//! rather than stored. What is stored is what the buffer promises: each
//! channel's last `buffer` messages younger than `ttl`. So a publish into a
//! full buffer first lets the channel's oldest message go, as it always does,
//! and only the growth left counts; messages past their TTL are gone by
//! their channel's expiry timer, within one loop iteration. Nothing younger
//! is dropped to make room: another channel's history stays as promised, and
//! the publisher, told `503`, can retry.

use std::collections::{HashMap, HashSet, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

use slab::Slab;

use crate::conn_id::ConnId;
use crate::cursor::{self, Cursor};
use crate::deadline::{Timer, ToArm};
use crate::encode::Gap;
use crate::http::Reject;
use crate::message::Message;

/// Channel names: 1 to 128 bytes of `[A-Za-z0-9_.:/-]`.
pub const MAX_CHANNEL_NAME: usize = 128;
/// How many freed channels the hub remembers the position of (see `Tombstones`).
const MAX_TOMBSTONES: usize = 100_000;

/// The bytes a channel name is made of: `[A-Za-z0-9_.:/-]`. Bayeux names and
/// `--open-publish` prefixes use the same set, so every name maps onto a hub
/// channel.
pub fn is_channel_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"_.:/-".contains(&b)
}

pub fn validate_channel(name: &str) -> Result<(), Reject> {
    if name.is_empty() || name.len() > MAX_CHANNEL_NAME || !name.bytes().all(is_channel_byte) {
        return Err(Reject::new(
            400,
            format!("channel names are 1 to {MAX_CHANNEL_NAME} bytes of [A-Za-z0-9_.:/-]"),
        ));
    }
    Ok(())
}

/// The seconds a publisher refused for a full hub is told to wait: room comes
/// back as messages expire and channels are deleted or freed, which no
/// publisher can hurry, so a retry every second would only add load.
pub const FULL_RETRY_AFTER_SECS: u64 = 5;

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Messages kept per channel.
    pub buffer: usize,
    /// How long a message is kept.
    pub ttl: Duration,
    /// Channels at once, past which a publish to a new channel is refused.
    /// A subscriber may still open one: subscribers are bounded by
    /// connections, each of which holds at most one channel.
    pub max_channels: usize,
    /// The most bytes of messages (`hub::cost`) kept in all buffers.
    pub max_history_bytes: usize,
}

/// Publishes admitted but not made yet (`Hub::admit_ahead`).
#[derive(Default, Debug)]
pub struct Ahead {
    bytes: usize,
    new_channels: Vec<String>,
}

/// Why a publish was refused: the hub is at one of its `Limits`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Full {
    Channels { limit: usize },
    History { limit: usize },
}

impl Full {
    /// The reason a Bayeux publish is refused with (`503:/chat:history_full`).
    pub fn reason(self) -> &'static str {
        match self {
            Full::Channels { .. } => "channels_full",
            Full::History { .. } => "history_full",
        }
    }

    /// The publisher's answer: `503`, since the server, not the request, is
    /// at fault, and room comes back by itself.
    pub fn reject(self) -> Reject {
        let why = match self {
            Full::Channels { limit } => format!(
                "server is at its limit of {limit} channels; publish to an existing channel or retry later"
            ),
            Full::History { limit } => {
                format!("server is at its limit of {limit} bytes of message history; retry later")
            }
        };
        Reject::new(503, why).with_retry_after(FULL_RETRY_AFTER_SECS)
    }
}

/// How a subscriber is parked: streams stay subscribed across messages, polls
/// are answered by the first message and leave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Stream,
    Poll,
}

pub struct Channel {
    pub name: Rc<str>,
    /// The first sequence number of this channel's life: a cursor below
    /// `base - 1` predates it, and what it missed is no longer known.
    base: u64,
    next_seq: u64,
    buffer: VecDeque<Rc<Message>>,
    pub streams: Slab<ConnId>,
    pub polls: Slab<ConnId>,
}

impl Channel {
    pub fn n_subscribers(&self) -> usize {
        self.streams.len() + self.polls.len()
    }

    pub fn n_messages(&self) -> usize {
        self.buffer.len()
    }

    pub fn last_seq(&self) -> Option<u64> {
        (self.next_seq > self.base).then(|| self.next_seq - 1)
    }

    fn is_unused(&self) -> bool {
        self.buffer.is_empty() && self.streams.is_empty() && self.polls.is_empty()
    }
}

/// A channel's `(base, next_seq)`.
type Position = (u64, u64);

/// What a subscriber with a given cursor must be sent first.
pub struct Replay {
    pub gap: Option<Gap>,
    pub messages: Vec<Rc<Message>>,
    /// The cursor after `messages` (and after the gap): where to continue.
    pub next: String,
    /// More buffered messages follow `messages` (the batch hit its cap).
    pub more: bool,
}

pub struct Hub {
    epoch: u64,
    limits: Limits,
    channels: HashMap<Rc<str>, Channel>,
    /// The names that have an expiry timer in the server's queue, one each.
    /// A name keeps its timer when its channel is deleted or freed: a channel
    /// opened again under it adopts the timer, which can only come up early
    /// for the new channel's messages and then asks again for their expiry.
    timed: HashSet<Rc<str>>,
    /// Expiry timers for the server to set: one when a channel's buffer gets
    /// a message and its name has no timer, and one each time a timer comes up
    /// on messages not yet expired.
    pub to_arm: ToArm,
    tombstones: Tombstones,
    pub n_published: u64,
    /// Messages dropped from a full buffer (`--buffer`) to make room.
    pub n_evicted: u64,
    /// Messages dropped for being older than `--message-ttl`.
    pub n_expired: u64,
    /// The sum of `hub::cost` over every buffer.
    history_bytes: usize,
    /// Publishes refused at `max_channels` and at `max_history_bytes`.
    pub n_channels_refused: u64,
    pub n_history_refused: u64,
}

impl Hub {
    pub fn new(epoch: u64, limits: Limits) -> Hub {
        Hub {
            epoch,
            limits,
            channels: HashMap::new(),
            timed: HashSet::new(),
            to_arm: ToArm::default(),
            tombstones: Tombstones::default(),
            n_published: 0,
            n_evicted: 0,
            n_expired: 0,
            history_bytes: 0,
            n_channels_refused: 0,
            n_history_refused: 0,
        }
    }

    pub fn n_channels(&self) -> usize {
        self.channels.len()
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Bytes of messages held in all buffers (`hub::cost` summed).
    pub fn history_bytes(&self) -> usize {
        self.history_bytes
    }

    pub fn channel(&self, name: &str) -> Option<&Channel> {
        self.channels.get(name)
    }

    pub fn channel_mut(&mut self, name: &str) -> Option<&mut Channel> {
        self.channels.get_mut(name)
    }

    pub fn id_of(&self, seq: u64) -> String {
        cursor::format(self.epoch, seq)
    }

    /// Adds a subscriber, creating the channel if needed. Returns the channel's
    /// shared name and the key to unsubscribe with.
    pub fn subscribe(&mut self, name: &str, kind: Kind, conn: ConnId) -> (Rc<str>, u32) {
        let channel = self.open(name);
        let key = match kind {
            Kind::Stream => channel.streams.insert(conn),
            Kind::Poll => channel.polls.insert(conn),
        };
        (channel.name.clone(), key as u32)
    }

    /// Removes `conn`'s subscription; the channel is freed if nothing else
    /// holds it. The key is only removed while it still names `conn`: a key
    /// freed early (pollers leave all at once on a message) may already
    /// belong to another subscriber by the time a closed connection is reaped.
    pub fn unsubscribe(&mut self, name: &str, kind: Kind, key: u32, conn: ConnId, now: Instant) {
        let Some(channel) = self.channels.get_mut(name) else {
            return;
        };
        let subscribers = match kind {
            Kind::Stream => &mut channel.streams,
            Kind::Poll => &mut channel.polls,
        };
        if subscribers.get(key as usize) == Some(&conn) {
            subscribers.remove(key as usize);
        }
        self.free_if_unused(name, now);
    }

    /// Appends a message to a channel (creating it) and returns it; the caller
    /// delivers it to the channel's subscribers. `data_is_json` says `data` is
    /// JSON text. Refused, with nothing changed, past the hub's limits.
    pub fn publish(
        &mut self,
        name: &str,
        data: Box<str>,
        data_is_json: bool,
        event: Option<Box<str>>,
        now: Instant,
    ) -> Result<Rc<Message>, Full> {
        let needed = cost_at_most(&data, event.as_deref());
        if let Err(full) = self.admit(name, needed, &Ahead::default()) {
            match full {
                Full::Channels { .. } => self.n_channels_refused += 1,
                Full::History { .. } => self.n_history_refused += 1,
            }
            return Err(full);
        }
        let (epoch, limits) = (self.epoch, self.limits);
        let channel = self.open(name);
        let seq = channel.next_seq;
        channel.next_seq += 1;
        let message = Rc::new(Message::new(
            epoch,
            seq,
            cursor::format(epoch, seq),
            channel.name.clone(),
            event,
            data,
            data_is_json,
            now,
        ));
        let evicted = match channel.buffer.len() >= limits.buffer {
            true => channel.buffer.pop_front(),
            false => None,
        };
        // A non-empty buffer's name always has its timer: look only when
        // the buffer was empty.
        let first_buffered = channel.buffer.is_empty();
        channel.buffer.push_back(message.clone());
        if first_buffered {
            let name = channel.name.clone();
            if self.timed.insert(name.clone()) {
                self.to_arm.push(now + limits.ttl, Timer::Channel(name));
            }
        }
        self.history_bytes += cost(&message);
        self.history_bytes -= evicted.as_deref().map_or(0, cost);
        self.n_published += 1;
        self.n_evicted += u64::from(evicted.is_some());
        Ok(message)
    }

    /// Whether a publish will fit once those `ahead` of it are made, and if
    /// so counts it among them: for a batch of publishes decided before any
    /// is made (a Bayeux request's). It errs on the side of refusing: a full
    /// buffer's oldest message is counted as freed only for the first.
    pub fn admit_ahead(
        &self,
        name: &str,
        data: &str,
        event: Option<&str>,
        ahead: &mut Ahead,
    ) -> Result<(), Full> {
        let needed = cost_at_most(data, event);
        self.admit(name, needed, ahead)?;
        if !self.channels.contains_key(name) && !ahead.new_channels.iter().any(|c| c == name) {
            ahead.new_channels.push(name.to_owned());
        }
        ahead.bytes += needed;
        Ok(())
    }

    /// Whether a message of at most `needed` bytes fits on channel `name`
    /// after the publishes `ahead` of it: a new channel needs room for one
    /// more channel, and the history room for what the message adds beyond
    /// the oldest one a full buffer lets go.
    fn admit(&self, name: &str, needed: usize, ahead: &Ahead) -> Result<(), Full> {
        let limits = self.limits;
        let opened_ahead = ahead.new_channels.iter().any(|c| c == name);
        let freed = match self.channels.get(name) {
            None if opened_ahead => 0,
            None if self.channels.len() + ahead.new_channels.len() >= limits.max_channels => {
                return Err(Full::Channels {
                    limit: limits.max_channels,
                })
            }
            None => 0,
            Some(c) if c.buffer.len() >= limits.buffer && ahead.bytes == 0 => {
                c.buffer.front().map_or(0, |m| cost(m))
            }
            Some(_) => 0,
        };
        let after = (self.history_bytes - freed).saturating_add(ahead.bytes);
        if after.saturating_add(needed) > limits.max_history_bytes {
            return Err(Full::History {
                limit: limits.max_history_bytes,
            });
        }
        Ok(())
    }

    /// Resolves `cursor` on channel `name` into what must be sent first: a gap
    /// if history the cursor needs is gone, then at most `max` buffered
    /// messages after it. A cursor ahead of the channel is refused.
    pub fn replay(&self, name: &str, cursor: Cursor, max: usize) -> Result<Replay, Reject> {
        let (base, next_seq) = self.position(name);
        let buffer = self.channels.get(name).map(|c| &c.buffer);
        let oldest = buffer.and_then(|b| b.front()).map_or(next_seq, |m| m.seq);
        let (after, gap) = match cursor {
            Cursor::Now => (next_seq - 1, None),
            Cursor::Earliest => (oldest - 1, None),
            Cursor::After { epoch, seq } if epoch != self.epoch => {
                let gap = Gap {
                    reason: "restarted",
                    missed: None,
                    cursor: cursor::format(epoch, seq),
                    next: self.id_of(oldest - 1),
                };
                (oldest - 1, Some(gap))
            }
            Cursor::After { seq, .. } if seq >= next_seq => {
                return Err(Reject::new(400, "cursor is ahead of this channel"));
            }
            Cursor::After { seq, .. } if seq + 1 >= oldest => (seq, None),
            Cursor::After { seq, .. } => {
                let missed = (seq + 1 >= base).then(|| oldest - seq - 1);
                let gap = Gap {
                    reason: "expired",
                    missed,
                    cursor: self.id_of(seq),
                    next: self.id_of(oldest - 1),
                };
                (oldest - 1, Some(gap))
            }
        };
        let held = buffer.map_or(0, |b| b.len());
        let skip = (after + 1 - oldest) as usize;
        let messages: Vec<_> = buffer
            .into_iter()
            .flatten()
            .skip(skip)
            .take(max)
            .cloned()
            .collect();
        let more = skip + messages.len() < held;
        let next = match messages.last() {
            Some(m) => m.id.to_string(),
            None => self.id_of(after),
        };
        Ok(Replay {
            gap,
            messages,
            next,
            more,
        })
    }

    /// The cursor meaning "everything so far" on channel `name`.
    pub fn head_cursor(&self, name: &str) -> String {
        self.id_of(self.position(name).1 - 1)
    }

    /// Removes a channel with its messages and returns it, so the caller can
    /// end each of its subscriptions.
    pub fn delete(&mut self, name: &str, now: Instant) -> Option<Channel> {
        let channel = self.channels.remove(name)?;
        self.history_bytes -= channel.buffer.iter().map(|m| cost(m)).sum::<usize>();
        self.tombstones.bury(
            channel.name.clone(),
            (channel.base, channel.next_seq),
            now,
            self.limits.ttl,
        );
        Some(channel)
    }

    /// The expiry timer of channel `name` came up: drops its messages older
    /// than the TTL, then asks for the timer again at the next one's expiry,
    /// or frees the channel if nothing holds it. The timer of a name with no
    /// channel (deleted or freed, and not opened again) ends here.
    pub fn on_expiry_timer(&mut self, name: &str, now: Instant) {
        self.tombstones.expire(now);
        self.timed.remove(name);
        let ttl = self.limits.ttl;
        let Some(channel) = self.channels.get_mut(name) else {
            return;
        };
        while channel
            .buffer
            .front()
            .is_some_and(|m| m.published + ttl <= now)
        {
            let expired = channel.buffer.pop_front().expect("checked");
            self.history_bytes -= cost(&expired);
            self.n_expired += 1;
        }
        match channel.buffer.front() {
            Some(oldest) => {
                let (at, name) = (oldest.published + ttl, channel.name.clone());
                self.timed.insert(name.clone());
                self.to_arm.push(at, Timer::Channel(name));
            }
            None => self.free_if_unused(name, now),
        }
    }

    fn open(&mut self, name: &str) -> &mut Channel {
        if !self.channels.contains_key(name) {
            let name: Rc<str> = name.into();
            let (base, next_seq) = self.tombstones.raise(&name);
            let channel = Channel {
                name: name.clone(),
                base,
                next_seq,
                buffer: VecDeque::new(),
                streams: Slab::new(),
                polls: Slab::new(),
            };
            self.channels.insert(name, channel);
        }
        self.channels.get_mut(name).expect("just inserted")
    }

    /// A channel's position, or where it would start if opened now.
    fn position(&self, name: &str) -> Position {
        match self.channels.get(name) {
            Some(c) => (c.base, c.next_seq),
            None => self.tombstones.peek(name),
        }
    }

    fn free_if_unused(&mut self, name: &str, now: Instant) {
        if self.channels.get(name).is_some_and(Channel::is_unused) {
            let channel = self.channels.remove(name).expect("checked");
            self.tombstones.bury(
                channel.name,
                (channel.base, channel.next_seq),
                now,
                self.limits.ttl,
            );
        }
    }
}

/// The most bytes a message id takes (`cursor::format`: the epoch in hex, a
/// dash and the sequence number in decimal, with room to spare).
const MAX_ID_LEN: usize = 40;

/// The bytes a message holds for as long as it is buffered, as the history
/// budget counts them: the message with its reference counts, its id, event
/// name and data, and its slot in the buffer. Encodings made for subscribers
/// (at most one per transport, built on first use) are not counted: with
/// subscribers on every transport they can add roughly the data's size again
/// for each (docs/operations.md).
pub fn cost(message: &Message) -> usize {
    fixed_cost()
        + message.id.len()
        + message.event.as_deref().map_or(0, str::len)
        + message.data.len()
}

/// `cost` before the message has its id, never below it: what decides
/// whether a publish fits.
fn cost_at_most(data: &str, event: Option<&str>) -> usize {
    fixed_cost() + MAX_ID_LEN + event.map_or(0, str::len) + data.len()
}

fn fixed_cost() -> usize {
    // The `Rc` allocation's two counts, and the buffer's pointer to it.
    std::mem::size_of::<Message>()
        + 2 * std::mem::size_of::<usize>()
        + std::mem::size_of::<Rc<Message>>()
}

/// Freed channels' positions. A channel that is freed and opened again goes on
/// from its old sequence number, so cursors stay exact across its lives. The
/// memory is bounded: a forgotten channel's sequence raises `floor`, where
/// every new channel starts, so an old cursor is always *below* a new channel's
/// base and is answered with a gap (of unknown size), never misread.
/// Tombstones are forgotten after the TTL whenever a channel is buried or an
/// expiry timer comes up; they need no timer of their own, since
/// `MAX_TOMBSTONES` bounds them anyway.
struct Tombstones {
    /// Each buried channel's `(base, next_seq)` and when it is forgotten.
    buried: HashMap<Rc<str>, (Position, Instant)>,
    /// Burials in time order. An entry whose channel was opened (or buried
    /// again) since no longer matches `buried` and is skipped.
    order: VecDeque<(Instant, Rc<str>)>,
    floor: u64,
}

impl Default for Tombstones {
    fn default() -> Tombstones {
        Tombstones {
            buried: HashMap::new(),
            order: VecDeque::new(),
            floor: 1,
        }
    }
}

impl Tombstones {
    fn bury(&mut self, name: Rc<str>, position: Position, now: Instant, ttl: Duration) {
        self.expire(now);
        if self.order.len() >= MAX_TOMBSTONES {
            self.forget_oldest();
        }
        self.order.push_back((now + ttl, name.clone()));
        self.buried.insert(name, (position, now + ttl));
    }

    fn peek(&self, name: &str) -> Position {
        self.buried
            .get(name)
            .map_or((self.floor, self.floor), |&(position, _)| position)
    }

    /// Where a reopened channel starts; its tombstone is dug up.
    fn raise(&mut self, name: &str) -> Position {
        self.buried
            .remove(name)
            .map_or((self.floor, self.floor), |(position, _)| position)
    }

    fn expire(&mut self, now: Instant) {
        while self.order.front().is_some_and(|(at, _)| *at <= now) {
            self.forget_oldest();
        }
    }

    fn forget_oldest(&mut self) {
        let Some((at, name)) = self.order.pop_front() else {
            return;
        };
        if self
            .buried
            .get(&name)
            .is_some_and(|&(_, until)| until == at)
        {
            let ((_, next_seq), _) = self.buried.remove(&name).expect("checked");
            self.floor = self.floor.max(next_seq);
        }
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod model_tests;

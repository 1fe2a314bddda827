//! One Bayeux session (a clientId): its subscriptions, its bounded queue of
//! encoded messages, CometD's ack batches, the connect it may be holding, and
//! when it expires.
//!
//! The queue holds `Rc<str>`: a published message is encoded once and shared
//! by every session it goes to. The bound is on bytes, like every other output
//! in halley: when a message would take the queue past it, the session is
//! ended (see `Push::Overflow`) rather than silently dropping messages. A
//! client that stops connecting cannot grow memory, and a client that comes
//! back learns it lost messages from the `402` that makes it handshake again,
//! where a dropped message would have been lost without a trace.

use std::collections::{HashSet, VecDeque};
use std::net::IpAddr;
use std::rc::Rc;
use std::time::Instant;

use super::channel::Pattern;
use super::wire::Framing;
use crate::token::Claims;
use serde_json::Value;

/// The server's opaque id for a connection (slot and generation packed as it likes).
pub type ConnId = u64;

/// What a queued message costs beyond its bytes: the `Rc` pointer, the batch
/// number and the share of the `VecDeque` slot. Counting it keeps a flood of
/// tiny messages bounded too.
pub const ENTRY_OVERHEAD: usize = 32;

/// A `/meta/connect` the engine is holding on the server's behalf.
#[derive(Debug)]
pub struct Held {
    pub conn: ConnId,
    /// The connect's own `id`, echoed in its reply.
    pub reply_id: Option<Value>,
    pub framing: Framing,
    /// Replies to the other messages of the same request, sent with the connect's.
    pub prefix: Vec<String>,
    pub deadline: Instant,
}

#[derive(Debug)]
struct Queued {
    /// The ack batch this message belongs to (0 when the ack extension is off).
    batch: u64,
    msg: Rc<str>,
}

/// The outcome of queueing one message.
#[derive(Debug, PartialEq, Eq)]
pub enum Push {
    Queued,
    /// The queue would pass its bound: the caller ends the session.
    Overflow,
}

#[derive(Debug)]
pub struct Session {
    pub id: Rc<str>,
    /// The address that handshook, whose per-address session count this
    /// session takes up until it ends.
    pub addr: IpAddr,
    /// A set, so a (un)subscribe costs one lookup per channel however many
    /// the session holds; at most `MAX_SUBSCRIPTIONS_PER_SESSION`.
    pub subscriptions: HashSet<Pattern>,
    queue: VecDeque<Queued>,
    /// Sum of `len + ENTRY_OVERHEAD` over `queue`.
    queued_bytes: usize,
    /// `Some(next batch number)` once the client asked for CometD's ack extension.
    ack_batch: Option<u64>,
    /// At most one connect is held per session; a second one releases the first.
    pub held: Option<Held>,
    /// Set by the first connect, which is answered at once.
    pub connected: bool,
    /// When the session expires if no connect is held. Meaningless while one is.
    pub expires_at: Instant,
    /// Handshake presented the publish token (or none is configured).
    pub may_publish: bool,
    /// With `--token-secret`: the claims of the signed token the handshake
    /// presented, which its subscribes and publishes are held to (a message
    /// may present its own token instead).
    pub claims: Option<Rc<Claims>>,
    /// With `--token-secret`: when the earliest-ending token that let this
    /// session subscribe ends; then the session ends, and its client is told
    /// `403::token_expired` and to handshake again (with a fresh token).
    pub token_ends: Option<Instant>,
    /// The engine's fan-out sequence number that last reached this session,
    /// so a message matching two of its patterns is queued once.
    pub last_fanout: u64,
    /// With Redis: subscriptions resumed with `ext.halley.since` whose
    /// history is still being read. Usually empty.
    pub resuming: Vec<Resuming>,
}

/// A resumed subscription waiting for its history (`Settings::clustered`):
/// live messages of its channel are held here, so the session gets the
/// history first, then only what followed it.
#[derive(Debug)]
pub struct Resuming {
    /// The hub channel.
    pub channel: String,
    /// Each live message's id and encoding, in arrival order.
    pub held: Vec<(Box<str>, Rc<str>)>,
    pub held_bytes: usize,
}

impl Session {
    pub fn new(
        id: Rc<str>,
        addr: IpAddr,
        expires_at: Instant,
        may_publish: bool,
        ack: bool,
    ) -> Session {
        Session {
            id,
            addr,
            subscriptions: HashSet::new(),
            queue: VecDeque::new(),
            queued_bytes: 0,
            ack_batch: ack.then_some(1),
            held: None,
            connected: false,
            expires_at,
            may_publish,
            claims: None,
            token_ends: None,
            last_fanout: 0,
            resuming: Vec::new(),
        }
    }

    pub fn acks(&self) -> bool {
        self.ack_batch.is_some()
    }

    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    pub fn n_queued(&self) -> usize {
        self.queue.len()
    }

    /// Are there messages to send (new ones, or unacknowledged ones to send again)?
    pub fn has_pending(&self) -> bool {
        !self.queue.is_empty()
    }

    pub fn push(&mut self, msg: Rc<str>, max_bytes: usize) -> Push {
        let cost = msg.len() + ENTRY_OVERHEAD;
        if self.queued_bytes + cost > max_bytes {
            return Push::Overflow;
        }
        self.queued_bytes += cost;
        let batch = self.ack_batch.unwrap_or(0);
        self.queue.push_back(Queued { batch, msg });
        Push::Queued
    }

    /// The client acknowledged every batch up to `batch`: forget those messages.
    /// A batch the server has not sent yet cannot be acknowledged, so a forged
    /// or stale number never drops unsent messages.
    pub fn ack(&mut self, batch: u64) {
        let Some(next) = self.ack_batch else { return };
        let upto = batch.min(next.saturating_sub(1));
        while self.queue.front().is_some_and(|q| q.batch <= upto) {
            let q = self.queue.pop_front().expect("front checked");
            self.queued_bytes -= q.msg.len() + ENTRY_OVERHEAD;
        }
    }

    /// The messages for a connect reply, and the batch number to put in its
    /// `ext.ack` when acks are on. Without acks the queue is emptied; with acks
    /// the messages stay until the client acknowledges their batch, so a reply
    /// lost with a dropped connection is sent again on the next connect.
    pub fn take_for_reply(&mut self) -> (Vec<Rc<str>>, Option<u64>) {
        match &mut self.ack_batch {
            None => {
                self.queued_bytes = 0;
                (self.queue.drain(..).map(|q| q.msg).collect(), None)
            }
            Some(next) => {
                let batch = *next;
                *next += 1;
                (
                    self.queue.iter().map(|q| q.msg.clone()).collect(),
                    Some(batch),
                )
            }
        }
    }

    pub fn is_subscribed(&self, p: &Pattern) -> bool {
        self.subscriptions.contains(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(ack: bool) -> Session {
        let addr = IpAddr::from([192, 0, 2, 1]);
        Session::new("s".into(), addr, Instant::now(), true, ack)
    }

    fn texts(msgs: &[Rc<str>]) -> Vec<&str> {
        msgs.iter().map(|m| &**m).collect()
    }

    #[test]
    fn queue_is_bounded_in_bytes() {
        let max = 3 * (1 + ENTRY_OVERHEAD);
        let mut s = session(false);
        // (message, outcome, queued bytes after)
        let steps = [
            ("a", Push::Queued, 1 + ENTRY_OVERHEAD),
            ("b", Push::Queued, 2 * (1 + ENTRY_OVERHEAD)),
            ("cc", Push::Overflow, 2 * (1 + ENTRY_OVERHEAD)),
            ("c", Push::Queued, max),
            ("d", Push::Overflow, max),
        ];
        for (msg, want, bytes) in steps {
            assert_eq!(s.push(msg.into(), max), want, "{msg}");
            assert_eq!(s.queued_bytes(), bytes, "{msg}");
        }
        let (msgs, batch) = s.take_for_reply();
        assert_eq!((texts(&msgs), batch), (vec!["a", "b", "c"], None));
        assert_eq!(s.queued_bytes(), 0);
        assert!(!s.has_pending());
    }

    /// Each step: messages pushed, then the client's ack (if any), then a connect
    /// reply; what the reply carries and which batch number it names.
    #[test]
    fn ack_batches_redeliver_until_acknowledged() {
        struct Step {
            push: &'static [&'static str],
            client_ack: Option<u64>,
            reply: &'static [&'static str],
            batch: u64,
        }
        let steps = [
            // First connect: nothing yet; batch 1 is closed empty.
            Step {
                push: &[],
                client_ack: Some(0),
                reply: &[],
                batch: 1,
            },
            Step {
                push: &["m1", "m2"],
                client_ack: Some(1),
                reply: &["m1", "m2"],
                batch: 2,
            },
            // The reply for batch 2 was lost: the client still says 1, so m1 and m2 come again.
            Step {
                push: &["m3"],
                client_ack: Some(1),
                reply: &["m1", "m2", "m3"],
                batch: 3,
            },
            // Batch 3 arrived: everything is acknowledged.
            Step {
                push: &["m4"],
                client_ack: Some(3),
                reply: &["m4"],
                batch: 4,
            },
            // A forged ack beyond what was sent cannot drop m5, queued in batch 5.
            Step {
                push: &["m5"],
                client_ack: Some(99),
                reply: &["m5"],
                batch: 5,
            },
        ];
        let mut s = session(true);
        for (i, step) in steps.iter().enumerate() {
            for m in step.push {
                assert_eq!(s.push((*m).into(), 1 << 20), Push::Queued);
            }
            if let Some(a) = step.client_ack {
                s.ack(a);
            }
            let (msgs, batch) = s.take_for_reply();
            assert_eq!(texts(&msgs), step.reply, "step {i}");
            assert_eq!(batch, Some(step.batch), "step {i}");
        }
        s.ack(5);
        assert!(!s.has_pending());
        assert_eq!(s.queued_bytes(), 0);
    }

    #[test]
    fn unacknowledged_messages_count_toward_the_bound() {
        let max = 2 * (2 + ENTRY_OVERHEAD);
        let mut s = session(true);
        assert_eq!(s.push("m1".into(), max), Push::Queued);
        let _ = s.take_for_reply();
        assert_eq!(s.push("m2".into(), max), Push::Queued);
        // m1 was sent but never acknowledged, so it still takes room.
        assert_eq!(s.push("m3".into(), max), Push::Overflow);
        s.ack(1);
        assert_eq!(s.push("m3".into(), max), Push::Queued);
    }
}

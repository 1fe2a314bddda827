//! The merge of a channel's history with its live messages, for a node that
//! reads both from Redis: the history from the channel's stream (`XRANGE`),
//! the live messages from pub/sub, which is at-most-once and arrives on
//! another connection in its own time.
//!
//! A `Merge` is one position in one channel (`epoch`, the last sequence
//! number passed on) and the live messages that arrived while a read of the
//! stream was in flight. Whatever arrives, from either side, it passes on
//! each message once and in order, and says so with a gap when the stream no
//! longer has what a hole needs:
//! - a live message at the next sequence number goes straight through;
//! - one already passed on is dropped;
//! - one that skips ahead (pub/sub lost something, or the channel's epoch
//!   changed) is kept, and the merge asks for a read of the stream after its
//!   position; the read's answer fills the hole, or becomes a gap (`expired`
//!   when the stream was trimmed, `restarted` when Redis lost the channel).
//!
//! The same merge serves a node's feed of a channel (the one pub/sub
//! subscription its local subscribers share) and each subscriber that joins
//! with a cursor and must catch up from the stream first. It is pure: it
//! takes messages and read answers and returns `Step`s for the caller to
//! carry out.

use std::collections::VecDeque;
use std::rc::Rc;

use crate::message::Message;

/// A read of a channel's stream, as Redis answered it in one atomic script.
pub struct History {
    /// The channel's epoch when the read ran.
    pub epoch: u64,
    /// The channel's last sequence number when the read ran.
    pub last: u64,
    /// The stream's messages after the read's start, oldest first (those
    /// past the message TTL already left out).
    pub entries: Vec<Rc<Message>>,
    /// The read stopped at its count: the stream may hold more.
    pub truncated: bool,
}

/// What the caller must do, in order.
#[derive(Debug)]
pub enum Step {
    /// Pass this message on.
    Deliver(Rc<Message>),
    /// Messages are lost between two positions `(epoch, seq)`; delivery goes
    /// on after `to`.
    Gap {
        reason: &'static str,
        missed: Option<u64>,
        from: (u64, u64),
        to: (u64, u64),
    },
    /// Read the stream after sequence number `after` (0: from its start).
    Read { after: u64 },
    /// The cursor names a message the channel has not had yet.
    Ahead,
}

/// Where a merge starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// At the channel's position when the first read runs, with no history:
    /// a node's feed, which exists for subscribers who want what comes next.
    Head,
    /// At the oldest message the stream still has.
    Earliest,
    /// After message `seq` of epoch `epoch`.
    After { epoch: u64, seq: u64 },
}

pub struct Merge {
    start: Option<Start>,
    epoch: u64,
    after: u64,
    /// Live messages that arrived while a read was in flight, or after a hole.
    pending: VecDeque<Rc<Message>>,
    reading: bool,
    /// A `restarted` gap found by the last read, to be told once the read
    /// from the new epoch's start says where it continues.
    restarted_from: Option<(u64, u64)>,
}

impl Merge {
    /// A merge that starts with a read; the caller sends the returned one.
    pub fn new(start: Start) -> (Merge, Step) {
        let (epoch, after) = match start {
            Start::After { epoch, seq } => (epoch, seq),
            Start::Head | Start::Earliest => (0, 0),
        };
        let merge = Merge {
            start: Some(start),
            epoch,
            after,
            pending: VecDeque::new(),
            reading: true,
            restarted_from: None,
        };
        (merge, Step::Read { after })
    }

    /// A merge already at `(epoch, after)`, with nothing to read.
    pub fn at(epoch: u64, after: u64) -> Merge {
        Merge {
            start: None,
            epoch,
            after,
            pending: VecDeque::new(),
            reading: false,
            restarted_from: None,
        }
    }

    /// The last position passed on; meaningful once the first read answered.
    pub fn position(&self) -> (u64, u64) {
        (self.epoch, self.after)
    }

    /// The first read has answered, so `position` is the channel's.
    pub fn is_placed(&self) -> bool {
        self.start.is_none()
    }

    pub fn is_reading(&self) -> bool {
        self.reading
    }

    /// Nothing is in flight or held back: the position is all there is.
    pub fn is_settled(&self) -> bool {
        !self.reading && self.pending.is_empty()
    }

    pub fn n_pending(&self) -> usize {
        self.pending.len()
    }

    /// The bytes of data held back, for the caller's bound on a slow merge.
    pub fn pending_bytes(&self) -> usize {
        self.pending.iter().map(|m| m.data.len()).sum()
    }

    /// The caller reads again from the position: the read in flight was
    /// lost with its connection, or pub/sub was down and may have dropped
    /// messages. Returns where to read after.
    pub fn reread(&mut self) -> u64 {
        self.reading = true;
        self.after
    }

    /// A live message, in the order pub/sub delivered it.
    pub fn on_live(&mut self, message: Rc<Message>, out: &mut Vec<Step>) {
        if self.reading {
            self.pending.push_back(message);
            return;
        }
        if message.epoch == self.epoch && message.seq <= self.after {
            return;
        }
        if message.epoch == self.epoch && message.seq == self.after + 1 {
            self.after = message.seq;
            out.push(Step::Deliver(message));
            return;
        }
        // A hole, or another epoch: the stream says which.
        self.pending.push_back(message);
        self.reading = true;
        out.push(Step::Read { after: self.after });
    }

    /// The answer to the read this merge asked for.
    pub fn on_history(&mut self, history: History, out: &mut Vec<Step>) {
        self.reading = false;
        match self.start.take() {
            Some(Start::Head) => {
                // Not the entries: only what follows the channel's last message.
                self.epoch = history.epoch;
                self.after = history.last;
                return self.drain_pending(out);
            }
            Some(Start::Earliest) => {
                self.epoch = history.epoch;
                self.after = first_seq(&history) - 1;
                if let Some(from) = self.restarted_from.take() {
                    out.push(Step::Gap {
                        reason: "restarted",
                        missed: None,
                        from,
                        to: (self.epoch, self.after),
                    });
                }
            }
            Some(Start::After { .. }) | None => {
                if history.epoch != self.epoch {
                    // Redis lost the channel: read the new epoch from its
                    // start, and tell the gap once it is known where that is.
                    self.restarted_from = Some((self.epoch, self.after));
                    self.start = Some(Start::Earliest);
                    self.reading = true;
                    return out.push(Step::Read { after: 0 });
                }
                if history.last < self.after {
                    return out.push(Step::Ahead);
                }
                let first = first_seq(&history);
                if first > self.after + 1 {
                    let missed = first - self.after - 1;
                    self.gap("expired", Some(missed), first - 1, out);
                }
            }
        }
        self.take_entries(history.entries, out);
        if history.truncated {
            self.reading = true;
            return out.push(Step::Read { after: self.after });
        }
        self.drain_pending(out);
    }

    fn take_entries(&mut self, entries: Vec<Rc<Message>>, out: &mut Vec<Step>) {
        for message in entries {
            if message.seq == self.after + 1 {
                self.after = message.seq;
                out.push(Step::Deliver(message));
            } else if message.seq > self.after + 1 {
                // A hole inside the stream: entries past the TTL were left out.
                let missed = message.seq - self.after - 1;
                self.gap("expired", Some(missed), message.seq - 1, out);
                self.after = message.seq;
                out.push(Step::Deliver(message));
            }
        }
    }

    /// Passes on the live messages held back, up to the first hole; a hole
    /// means another read. Messages of another epoch than the one the read
    /// found are from before a restart, already answered by its gap.
    fn drain_pending(&mut self, out: &mut Vec<Step>) {
        while let Some(message) = self.pending.front() {
            if message.epoch != self.epoch || message.seq <= self.after {
                self.pending.pop_front();
            } else if message.seq == self.after + 1 {
                let message = self.pending.pop_front().expect("checked");
                self.after = message.seq;
                out.push(Step::Deliver(message));
            } else {
                self.reading = true;
                out.push(Step::Read { after: self.after });
                return;
            }
        }
    }

    fn gap(&mut self, reason: &'static str, missed: Option<u64>, to: u64, out: &mut Vec<Step>) {
        out.push(Step::Gap {
            reason,
            missed,
            from: (self.epoch, self.after),
            to: (self.epoch, to),
        });
        self.after = to;
    }
}

/// The first sequence number the stream still has, or the one after its
/// last when it has none.
fn first_seq(history: &History) -> u64 {
    history.entries.first().map_or(history.last + 1, |m| m.seq)
}

#[cfg(test)]
mod tests;

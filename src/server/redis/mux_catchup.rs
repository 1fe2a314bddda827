//! `/ws` subscribes with Redis. A `/sub` subscriber catches up as a whole
//! connection (`catchup.rs`: the connection waits); a `/ws` socket has many
//! channels and keeps serving the others, so here one channel of it catches
//! up. Its `MuxCatchUp`, keyed by (connection, channel), waits for the
//! channel's feed to know its position, then its own `Merge` reads the
//! stream after the cursor while the feed's live messages go into the same
//! merge, so nothing is lost or doubled in between. The socket is told
//! `subscribed` with the first messages or gap (or once there is nothing to
//! read), is sent each later step, and joins the hub's stream entries, as in
//! memory, once its merge has reached the feed's position: from then on the
//! fan-out writes to it like to any other channel of the socket.
//!
//! Until then the channel is not in the socket's `Mux::subs`, so the fan-out
//! never sees it and nothing needs skipping. A channel that waits longer
//! than `--redis-timeout` for a reply is answered with an error (checked on
//! the Redis tick), and the socket stays; closing the socket drops its
//! catch-ups.

use std::rc::Rc;
use std::time::Instant;

use super::catchup::{gap_of, merge_from};
use super::{Cluster, Reader, Server};
use crate::conn_id::ConnId;
use crate::cursor::{self, Cursor};
use crate::mux;
use crate::outq::Chunk;
use crate::redis::merge::{History, Merge, Step};
use crate::server::conn::SendError;
use crate::server::respond::note_send_error;
use crate::ws::frame::{self, Opcode};

/// One channel of a `/ws` socket catching up.
pub(in crate::server) struct MuxCatchUp {
    cursor: Cursor,
    /// `None` while the feed has no position yet.
    merge: Option<Merge>,
    /// `subscribed` has gone out: the rest of the catch-up follows it.
    opened: bool,
    /// When waiting for Redis ends in an error; pushed back by each reply.
    deadline: Instant,
    /// Told apart from an earlier catch-up of the same socket and channel
    /// (unsubscribed, then subscribed again), whose read may still be
    /// answered: a reply is only its own catch-up's.
    serial: u32,
}

/// The key of a channel catching up: the socket and the channel's shared
/// name (the feed's).
pub(super) type Key = (ConnId, Rc<str>);

impl MuxCatchUp {
    /// Where to read again after the read in flight was lost, if that
    /// read was this catch-up's (`serial`).
    pub(super) fn reread_from(&self, serial: u32) -> Option<u64> {
        let merge = self.merge.as_ref().filter(|_| self.serial == serial)?;
        Some(merge.position().1)
    }

    pub(super) fn on_live(&mut self, message: Rc<crate::message::Message>, out: &mut Vec<Step>) {
        if let Some(merge) = self.merge.as_mut() {
            merge.on_live(message, out);
        }
    }

    /// Does the cursor ask for exactly what follows `position`?
    fn cursor_is(&self, position: (u64, u64)) -> bool {
        match self.cursor {
            Cursor::Now => true,
            Cursor::After { epoch, seq } => (epoch, seq) == position,
            Cursor::Earliest => false,
        }
    }
}

impl Cluster {
    /// Is `channel` of socket `id` catching up?
    pub(in crate::server) fn mux_is_catching_up(&self, id: ConnId, channel: &str) -> bool {
        if self.mux_catchups.is_empty() {
            return false;
        }
        let Some((name, _)) = self.feeds.get_key_value(channel) else {
            return false;
        };
        self.mux_catchups.contains_key(&(id, name.clone()))
    }

    /// How many channels socket `id` has catching up: a walk of every
    /// channel catching up on the node, which only a subscribe pays, and
    /// which holds few entries once their catch-ups are done.
    pub(in crate::server) fn mux_n_catching_up(&self, id: ConnId) -> usize {
        self.mux_catchups.keys().filter(|(i, _)| *i == id).count()
    }

    /// Socket `id` is gone or leaves everything: its catch-ups go, and their
    /// channels may have lost their last local interest.
    pub(in crate::server) fn drop_mux_catchups(&mut self, id: ConnId, now: Instant) {
        if self.mux_catchups.is_empty() {
            return;
        }
        let mut gone = Vec::new();
        self.mux_catchups.retain(|(i, channel), _| {
            let keep = *i != id;
            if !keep {
                gone.push(channel.clone());
            }
            keep
        });
        for channel in gone {
            self.note_maybe_idle(&channel, now);
        }
    }

    /// Removes one channel's catch-up; returns whether there was one.
    fn drop_mux_catchup(&mut self, key: &Key, now: Instant) -> bool {
        let found = self.mux_catchups.remove(key).is_some();
        if found {
            self.note_maybe_idle(&key.1, now);
        }
        found
    }
}

impl Server {
    /// `{"subscribe":CH}` on a `/ws` socket with Redis: the channel's feed
    /// is made if need be; a cursor at the feed's position joins the hub at
    /// once, any other catches up first. Checks and admission are done.
    pub(in crate::server) fn mux_subscribe_via_redis(
        &mut self,
        id: ConnId,
        channel: &str,
        cursor: Cursor,
    ) {
        let now = self.now;
        let cluster = self.cluster.as_mut().expect("subscribing via Redis");
        let channel = cluster.ensure_feed(channel);
        cluster.mux_serial = cluster.mux_serial.wrapping_add(1);
        let catchup = MuxCatchUp {
            cursor,
            merge: None,
            opened: false,
            deadline: now + cluster.timeout,
            serial: cluster.mux_serial,
        };
        let feed = cluster.feeds.get_mut(&channel).expect("just made");
        match feed.position() {
            // The common case: what comes next, from a live feed.
            Some(position) if catchup.cursor_is(position) => {
                return self.mux_join(id, &channel, Some(position));
            }
            Some(_) => {}
            None if feed.mux_waiting.contains(&id) => {}
            None => feed.mux_waiting.push(id),
        }
        let placed = feed.position().is_some();
        cluster.mux_catchups.insert((id, channel.clone()), catchup);
        if placed {
            self.start_mux_catchup(id, &channel);
        }
    }

    /// The channel's feed has its position: the socket's channel joins at
    /// it, or starts reading what it missed.
    pub(super) fn start_mux_catchup(&mut self, id: ConnId, channel: &Rc<str>) {
        let now = self.now;
        let cluster = self.cluster.as_mut().expect("catching up via Redis");
        let key = (id, channel.clone());
        let Some(catchup) = cluster.mux_catchups.get_mut(&key) else {
            return;
        };
        let Some(position) = cluster.feeds.get(channel).and_then(|f| f.position()) else {
            return;
        };
        if catchup.cursor_is(position) {
            cluster.mux_catchups.remove(&key);
            return self.mux_join(id, channel, Some(position));
        }
        let (merge, after) = merge_from(catchup.cursor);
        catchup.merge = Some(merge);
        let reader = Reader::Mux(id, catchup.serial);
        let page = cluster.page;
        if let Some(feed) = cluster.feeds.get_mut(channel) {
            // Once each: a socket may catch up here again before an earlier
            // catch-up's entry was swept.
            if !feed.mux_catching.contains(&id) {
                feed.mux_catching.push(id);
            }
        }
        cluster.send_read(channel, reader, after, page, now);
    }

    /// The answer to a read of a channel catching up.
    pub(super) fn on_mux_history(
        &mut self,
        (id, serial): (ConnId, u32),
        channel: &Rc<str>,
        history: History,
    ) {
        let cluster = self.cluster.as_mut().expect("a Redis reply");
        let key = (id, channel.clone());
        let Some(merge) = cluster
            .mux_catchups
            .get_mut(&key)
            .filter(|c| c.serial == serial)
            .and_then(|c| c.merge.as_mut())
        else {
            return;
        };
        let mut steps = Vec::new();
        merge.on_history(history, &mut steps);
        self.apply_mux_steps(id, channel, steps);
    }

    /// Carries out the steps of a channel catching up: `subscribed` with
    /// the first output, then each message or gap as it comes, reads sent,
    /// and the hub joined once the merge is at the feed's position.
    pub(super) fn apply_mux_steps(&mut self, id: ConnId, channel: &Rc<str>, steps: Vec<Step>) {
        let now = self.now;
        let timeout = self.cluster.as_ref().expect("checked").timeout;
        let key = (id, channel.clone());
        if self.conns.get(id).and_then(|c| c.mux()).is_none() {
            let cluster = self.cluster.as_mut().expect("checked");
            cluster.drop_mux_catchup(&key, now);
            return;
        }
        if steps.iter().any(|s| matches!(s, Step::Ahead)) {
            let cluster = self.cluster.as_mut().expect("checked");
            cluster.drop_mux_catchup(&key, now);
            let text = mux::error("cursor is ahead of this channel", Some(channel));
            self.ws_send(id, Opcode::Text, &text);
            return;
        }
        let cluster = self.cluster.as_mut().expect("checked");
        let page = cluster.page;
        let Some(catchup) = cluster.mux_catchups.get_mut(&key) else {
            return;
        };
        // A reply came: Redis answers, so the wait starts again.
        catchup.deadline = now + timeout;
        let merge = catchup
            .merge
            .as_ref()
            .expect("a catching-up channel has a merge");
        let has_output = steps
            .iter()
            .any(|s| matches!(s, Step::Deliver(_) | Step::Gap { .. }));
        let mut out = Vec::new();
        if !catchup.opened && (has_output || !merge.is_reading()) {
            catchup.opened = true;
            // Where the subscription starts: just before its first message,
            // as in memory, so a client that drops mid-catch-up and
            // resumes from here is sent it again rather than never.
            let start = steps
                .iter()
                .find_map(|s| match s {
                    Step::Deliver(m) => Some(cursor::format(m.epoch, m.seq - 1)),
                    Step::Gap { to, .. } => Some(cursor::format(to.0, to.1)),
                    _ => None,
                })
                .unwrap_or_else(|| cursor::format(merge.position().0, merge.position().1));
            out.push(Chunk::Owned(frame::frame(
                Opcode::Text,
                &mux::subscribed(channel, &start),
            )));
        }
        let (opened, serial) = (catchup.opened, catchup.serial);
        let mut delivered = 0;
        for step in steps {
            match step {
                Step::Deliver(message) if opened => {
                    let frame = message.ws();
                    out.push(Chunk::Shared(frame.clone(), 0..frame.len()));
                    delivered += 1;
                }
                step @ Step::Gap { .. } if opened => {
                    let text = mux::gap(channel, &gap_of(step));
                    out.push(Chunk::Owned(frame::frame(Opcode::Text, &text)));
                }
                Step::Read { after } => {
                    cluster.send_read(channel, Reader::Mux(id, serial), after, page, now)
                }
                _ => {}
            }
        }
        self.counters.delivered += delivered;
        if !out.is_empty() {
            // Catching up is the channel's replay, owed like the in-memory
            // one (`server::mux`), bounded by the history's length.
            let conn = self.conns.get(id).expect("checked above");
            for chunk in out {
                conn.queue_owed(chunk);
            }
            if let Err(e) = conn.flush() {
                note_send_error(&mut self.counters, id, &SendError::Io(e));
                self.close(id);
                let cluster = self.cluster.as_mut().expect("checked");
                cluster.drop_mux_catchup(&key, now);
                return;
            }
        }
        self.mux_finish_if_caught_up(id, channel);
    }

    /// A channel whose merge is at its feed's position joins the hub.
    fn mux_finish_if_caught_up(&mut self, id: ConnId, channel: &Rc<str>) {
        let cluster = self.cluster.as_mut().expect("catching up via Redis");
        let key = (id, channel.clone());
        let Some(catchup) = cluster.mux_catchups.get(&key) else {
            return;
        };
        let feed_position = cluster.feeds.get(channel).and_then(|f| f.position());
        let caught_up = catchup.opened
            && catchup
                .merge
                .as_ref()
                .is_some_and(|m| m.is_settled() && Some(m.position()) == feed_position);
        if caught_up {
            cluster.mux_catchups.remove(&key);
            self.mux_join(id, channel, None);
        }
    }

    /// The channel joins the hub's stream entries, as in memory; `at` is
    /// its position when `subscribed` is still to be told.
    fn mux_join(&mut self, id: ConnId, channel: &Rc<str>, at: Option<(u64, u64)>) {
        if !self.mux_follow(id, channel) {
            return;
        }
        if let Some((epoch, seq)) = at {
            let text = mux::subscribed(channel, &cursor::format(epoch, seq));
            self.ws_send(id, Opcode::Text, &text);
        }
    }

    /// `{"unsubscribe":CH}` for a channel still catching up: it stops.
    /// Returns whether it was catching up.
    pub(in crate::server) fn mux_cancel_catchup(&mut self, id: ConnId, channel: &str) -> bool {
        let now = self.now;
        let Some(cluster) = self.cluster.as_mut() else {
            return false;
        };
        let Some((name, _)) = cluster.feed_mut(channel) else {
            return false;
        };
        cluster.drop_mux_catchup(&(id, name), now)
    }

    /// The Redis tick: channels that waited past `--redis-timeout` for a
    /// reply are answered with an error; their sockets stay.
    pub(super) fn mux_catchup_timeouts(&mut self) {
        let now = self.now;
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        if cluster.mux_catchups.is_empty() {
            return;
        }
        let overdue: Vec<Key> = cluster
            .mux_catchups
            .iter()
            .filter(|(_, c)| c.deadline <= now)
            .map(|(k, _)| k.clone())
            .collect();
        cluster.figures.timeouts += overdue.len() as u64;
        for key in overdue {
            let cluster = self.cluster.as_mut().expect("checked");
            cluster.drop_mux_catchup(&key, now);
            let text = mux::error("redis did not answer within --redis-timeout", Some(&key.1));
            self.ws_send(key.0, Opcode::Text, &text);
        }
    }

    /// A channel deleted while a socket's catch-up of it was under way: the
    /// socket is told, as when it follows the channel.
    pub(super) fn end_mux_catchup_deleted(&mut self, id: ConnId, channel: &Rc<str>) {
        let now = self.now;
        let cluster = self.cluster.as_mut().expect("a feed");
        if cluster.drop_mux_catchup(&(id, channel.clone()), now) {
            self.mux_channel_deleted(id, channel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_at_the_feeds_position_needs_no_read() {
        let at = (7, 3);
        let cases = [
            (Cursor::Now, true),
            (Cursor::After { epoch: 7, seq: 3 }, true),
            (Cursor::After { epoch: 7, seq: 2 }, false),
            (Cursor::After { epoch: 7, seq: 4 }, false),
            (Cursor::After { epoch: 8, seq: 3 }, false),
            (Cursor::Earliest, false),
        ];
        for (cursor, want) in cases {
            let catchup = MuxCatchUp {
                cursor,
                merge: None,
                opened: false,
                deadline: Instant::now(),
                serial: 1,
            };
            assert_eq!(catchup.cursor_is(at), want, "{cursor:?}");
        }
    }

    #[test]
    fn a_read_of_an_earlier_catch_up_is_not_sent_again() {
        let catchup = MuxCatchUp {
            cursor: Cursor::Earliest,
            merge: Some(Merge::at(7, 3)),
            opened: false,
            deadline: Instant::now(),
            serial: 2,
        };
        assert_eq!(catchup.reread_from(2), Some(3));
        assert_eq!(catchup.reread_from(1), None);
    }
}

//! Delivery: fanning a hub message out to the sessions whose patterns match
//! it, replaying a resumed channel's history, and answering held connects
//! that have messages. A message is encoded once here and the same `Rc<str>`
//! is queued in every session it reaches.

use std::rc::Rc;
use std::time::Instant;

use serde_json::{json, Value};

use super::channel;
use super::engine::{Data, Engine, HubMessage, Response, Resume};
use super::message::{error_reply, BayeuxError, Incoming};
use super::session::{Push, ENTRY_OVERHEAD};
use crate::cursor;

impl Engine {
    /// Fans a hub message out to every session whose subscriptions match its
    /// channel. The server calls this for every hub publish, from `/pub` and
    /// from Bayeux alike. Returns how many sessions it reached. Held connects
    /// are answered by the next `flush`, so a burst of publishes in one loop
    /// iteration goes out in one reply.
    pub fn on_publish(&mut self, msg: &HubMessage) -> usize {
        // Every hub publish comes here; with no Bayeux subscriber at all it
        // costs nothing, not even the channel name's allocation.
        if self.routes.is_empty() {
            return 0;
        }
        let Some(name) = channel::from_hub(msg.channel) else {
            return 0;
        };
        if channel::is_meta(&name) || channel::is_service(&name) {
            return 0;
        }
        let mut targets = self.targets_of(&name);
        let reached = targets.len();
        if reached > 0 {
            let encoded = encode_delivery(&name, msg);
            for id in targets.drain(..) {
                if self.hold_for_resume(&id, msg, &encoded) {
                    continue;
                }
                // An overflow ends that session alone; the others still get it.
                let _ = self.queue_one(&id, encoded.clone());
            }
        }
        self.scratch = targets;
        reached
    }

    /// Tells every session whose subscriptions match hub channel `channel`
    /// that its messages skipped a gap (with Redis, when the stream no
    /// longer has what pub/sub lost, or Redis lost the channel): a message
    /// with `data: null` and `ext.halley.gap`, as a resume's gap is told.
    pub fn on_gap(&mut self, channel: &str, gap: Value) -> usize {
        if self.routes.is_empty() {
            return 0;
        }
        let Some(name) = channel::from_hub(channel) else {
            return 0;
        };
        let mut targets = self.targets_of(&name);
        let reached = targets.len();
        if reached > 0 {
            let gap_msg = json!({"channel": name, "data": null, "ext": {"halley": {"gap": gap}}});
            let encoded: Rc<str> = gap_msg.to_string().into();
            for id in targets.drain(..) {
                let _ = self.queue_one(&id, encoded.clone());
            }
        }
        self.scratch = targets;
        reached
    }

    /// The sessions whose subscriptions match channel `name`, each once, in
    /// the engine's reused list (hand it back to `self.scratch`).
    fn targets_of(&mut self, name: &str) -> Vec<Rc<str>> {
        self.fanout_seq += 1;
        let seq = self.fanout_seq;
        let mut targets = std::mem::take(&mut self.scratch);
        channel::for_each_matching_pattern(name, |key| {
            for id in self.routes.get(key).into_iter().flatten() {
                let session = self
                    .sessions
                    .get_mut(id)
                    .expect("routes name live sessions");
                if session.last_fanout != seq {
                    session.last_fanout = seq;
                    targets.push(id.clone());
                }
            }
        });
        targets
    }

    /// How many history messages the server should read for a resume of
    /// session `client_id`: `None` when the session is gone (ended earlier in
    /// the same request, by an overflow or a disconnect), so no history is
    /// read at all. Otherwise one more than the queue's free bytes could hold
    /// at the smallest cost a message can have: a history that long cannot
    /// fit, so its last message still ends the session as an overflow should,
    /// and nothing beyond it is read.
    pub fn replay_room(&self, client_id: &str) -> Option<usize> {
        let session = self.sessions.get(client_id)?;
        let free = self
            .config
            .max_queued_bytes
            .saturating_sub(session.queued_bytes());
        Some(free / (ENTRY_OVERHEAD + 1) + 1)
    }

    /// Delivers a resumed subscription's history (what the hub's buffer holds
    /// after the cursor), with `gap` set when the cursor was too old or from
    /// another epoch: the client then gets a message with `data: null` and
    /// `ext.halley.gap` (the server's description of what was lost) first.
    /// Stops at the message that overflows the session's queue (which ends
    /// the session): nothing after it is encoded. Returns how many history
    /// messages were queued.
    pub fn on_replay<'a>(
        &mut self,
        replay: &Resume,
        gap: Option<Value>,
        history: impl IntoIterator<Item = HubMessage<'a>>,
    ) -> usize {
        let Some(id) = self
            .sessions
            .get_key_value(replay.client_id.as_str())
            .map(|(k, _)| k.clone())
        else {
            return 0;
        };
        let Some(name) = channel::from_hub(&replay.channel) else {
            return 0;
        };
        if let Some(gap) = gap {
            let gap_msg = json!({"channel": name, "data": null, "ext": {"halley": {"gap": gap}}});
            if !self.queue_one(&id, Rc::from(gap_msg.to_string())) {
                return 0;
            }
        }
        let mut queued = 0;
        let mut last = None;
        for msg in history {
            if !self.queue_one(&id, encode_delivery(&name, &msg)) {
                // The session ended with its queue full; nothing is held for it.
                self.stats.replayed += queued as u64;
                return queued;
            }
            last = cursor::parse(msg.id).ok();
            queued += 1;
        }
        self.stats.replayed += queued as u64;
        self.release_resume(&id, &replay.channel, last);
        queued
    }

    /// Queues one message for session `id`; false when it was not queued
    /// (the session is gone, or this message overflowed it and ended it).
    /// Holds a live message for a session whose subscription to its
    /// channel is still resuming (with Redis); true if held. Past the
    /// session's queue bound the session ends, as a full queue does.
    fn hold_for_resume(&mut self, id: &Rc<str>, msg: &HubMessage, encoded: &Rc<str>) -> bool {
        let max = self.config.max_queued_bytes;
        let Some(session) = self.sessions.get_mut(id) else {
            return false;
        };
        if session.resuming.is_empty() {
            return false;
        }
        let Some(resuming) = session
            .resuming
            .iter_mut()
            .find(|r| r.channel == msg.channel)
        else {
            return false;
        };
        resuming.held_bytes += encoded.len() + ENTRY_OVERHEAD;
        resuming.held.push((msg.id.into(), encoded.clone()));
        if resuming.held_bytes > max {
            // Queued past the bound: the same end as a full queue.
            let held = std::mem::take(&mut resuming.held);
            session.resuming.retain(|r| r.channel != msg.channel);
            for (_, encoded) in held {
                if !self.queue_one(id, encoded) {
                    break;
                }
            }
        }
        true
    }

    /// A resumed subscription's history is queued: the live messages held
    /// meanwhile follow it, those the history already had left out.
    fn release_resume(&mut self, id: &Rc<str>, channel: &str, last: Option<cursor::Cursor>) {
        let Some(session) = self.sessions.get_mut(id) else {
            return;
        };
        let Some(at) = session.resuming.iter().position(|r| r.channel == channel) else {
            return;
        };
        let resuming = session.resuming.swap_remove(at);
        for (msg_id, encoded) in resuming.held {
            let repeated = match (last, cursor::parse(&msg_id)) {
                (
                    Some(cursor::Cursor::After { epoch, seq }),
                    Ok(cursor::Cursor::After { epoch: e, seq: s }),
                ) => e == epoch && s <= seq,
                _ => false,
            };
            if !repeated && !self.queue_one(id, encoded) {
                return;
            }
        }
    }

    fn queue_one(&mut self, id: &Rc<str>, encoded: Rc<str>) -> bool {
        let max = self.config.max_queued_bytes;
        let Some(session) = self.sessions.get_mut(id) else {
            return false;
        };
        match session.push(encoded, max) {
            Push::Queued => {
                self.stats.delivered += 1;
                // A held connect's queue was empty when it was parked, so the
                // first message is the one that makes the session ready.
                if session.held.is_some() && session.n_queued() == 1 {
                    self.ready.push(id.clone());
                }
                true
            }
            Push::Overflow => {
                self.stats.slow_sessions += 1;
                log::info!("bayeux session {id} ended: its queue passed {max} bytes");
                let resp = self.end_session(id, |held| {
                    let m = Incoming {
                        channel: "/meta/connect".into(),
                        id: held.reply_id.clone(),
                        ..Incoming::default()
                    };
                    error_reply(&m, &BayeuxError::SessionUnknown)
                });
                self.out.extend(resp);
                false
            }
        }
    }

    /// Answers every held connect that has messages waiting, and any session
    /// ended since the last call. The server calls this once per loop
    /// iteration, in its "flush pending writes" phase.
    pub fn flush(&mut self, now: Instant) -> Vec<Response> {
        let mut out = std::mem::take(&mut self.out);
        let ready = std::mem::take(&mut self.ready);
        for id in &ready {
            if self.sessions.get(id).is_some_and(|s| s.has_pending()) {
                out.extend(self.release(id, now, true, 0));
            }
        }
        self.ready = ready;
        self.ready.clear();
        out
    }
}

/// Appends `s` as a JSON string literal.
fn push_json_str(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *out, s).expect("writing to a Vec cannot fail");
}

/// The Bayeux form of a hub message, encoded once and shared by every session.
fn encode_delivery(name: &str, msg: &HubMessage) -> Rc<str> {
    let mut out = Vec::with_capacity(name.len() + msg.id.len() + 48);
    out.extend_from_slice(b"{\"channel\":");
    push_json_str(&mut out, name);
    out.extend_from_slice(b",\"id\":");
    push_json_str(&mut out, msg.id);
    out.extend_from_slice(b",\"data\":");
    match msg.data {
        Data::Text(t) => push_json_str(&mut out, t),
        Data::Json(j) => out.extend_from_slice(j.as_bytes()),
    }
    if let Some(event) = msg.event {
        out.extend_from_slice(b",\"ext\":{\"halley\":{\"event\":");
        push_json_str(&mut out, event);
        out.extend_from_slice(b"}}");
    }
    out.push(b'}');
    Rc::from(String::from_utf8(out).expect("built from str pieces"))
}

//! Bayeux on a Redis node. The engine's routing index is followed in
//! Redis: an exact subscription holds its channel's feed, a wildcard one a
//! `PSUBSCRIBE` pattern on every shard. A `/meta/subscribe` reply waits until
//! Redis has confirmed what it subscribed (the feed placed, the pattern
//! confirmed by every shard), so a message published anywhere after the
//! client heard "subscribed" reaches it. A subscription resumed with
//! `ext.halley.since` reads its history once its feed is placed, while the
//! engine holds the channel's live messages for the session
//! (`Session::resuming`), so the history comes first and nothing twice.

use std::collections::HashMap;
use std::rc::Rc;

use log::{debug, info};
use serde_json::Value as Json;

use super::catchup::gap_of;
use super::{Cluster, Reader, Server};
use crate::bayeux::channel::Pattern;
use crate::bayeux::{self, Since};
use crate::conn_id::ConnId;
use crate::cursor::{self, Cursor};
use crate::encode::Gap;
use crate::redis::merge::{History, Merge, Start, Step};
use crate::redis::scripts::{self, Decode, Notice};
use crate::redis::shard::shard_of;
use crate::server::respond::Ask;

/// Channels whose position a node keeps because messages reach it through a
/// Bayeux wildcard pattern only; past it, more such channels are passed on
/// without one (no repair of what pub/sub drops for them).
const MAX_PATTERN_CHANNELS: usize = 10_000;

/// A Redis pattern for Bayeux wildcard subscriptions.
#[derive(Default)]
pub(super) struct PatternSub {
    /// Subscription patterns of the engine (`/a/*`, `/a/**`) that need it.
    routes: u32,
    /// The shards that have confirmed it, one bit each.
    confirmed: u64,
    /// Bayeux replies waiting for every shard's confirmation.
    waiters: Vec<ConnId>,
}

/// A `/meta/subscribe` reply waiting for Redis to confirm its subscriptions.
pub(super) struct HeldReply {
    ask: Ask,
    content_type: &'static str,
    body: Vec<u8>,
    /// Feeds and patterns not yet confirmed.
    waits: usize,
}

impl Cluster {
    fn all_shards(&self) -> u64 {
        match self.shards.len() {
            64 => u64::MAX,
            n => (1 << n) - 1,
        }
    }

    /// A pattern gained its first subscription pattern or lost its last:
    /// `PSUBSCRIBE` or `PUNSUBSCRIBE` on every shard. Returns replies that
    /// waited for a pattern now gone (answered as they are).
    fn route_pattern(&mut self, pattern: String, added: bool) -> Vec<ConnId> {
        let sub = self.patterns.entry(pattern.clone()).or_default();
        let command: &[u8] = match added {
            true => {
                sub.routes += 1;
                if sub.routes > 1 {
                    return Vec::new();
                }
                b"PSUBSCRIBE"
            }
            false => {
                sub.routes = sub.routes.saturating_sub(1);
                if sub.routes > 0 {
                    return Vec::new();
                }
                let gone = self.patterns.remove(&pattern).expect("just found");
                if self.patterns.is_empty() {
                    // No wildcard left: no channel reaches the node through one.
                    self.pattern_channels.clear();
                }
                for shard in &mut self.shards {
                    if shard.sub.is_up() {
                        shard.sub.send_push(&[b"PUNSUBSCRIBE", pattern.as_bytes()]);
                    }
                }
                return gone.waiters;
            }
        };
        for shard in &mut self.shards {
            if shard.sub.is_up() {
                shard.sub.send_push(&[command, pattern.as_bytes()]);
            }
        }
        Vec::new()
    }

    /// A shard confirmed a pattern; returns the replies now confirmed everywhere.
    pub(super) fn on_pattern_confirmed(&mut self, shard: usize, pattern: &str) -> Vec<ConnId> {
        let all = self.all_shards();
        let Some(sub) = self.patterns.get_mut(pattern) else {
            return Vec::new();
        };
        sub.confirmed |= 1 << shard;
        match sub.confirmed == all {
            true => std::mem::take(&mut sub.waiters),
            false => Vec::new(),
        }
    }

    /// A shard's pub/sub link went down: its patterns must be confirmed again.
    pub(super) fn on_patterns_lost(&mut self, shard: usize) {
        for sub in self.patterns.values_mut() {
            sub.confirmed &= !(1 << shard);
        }
    }
}

impl Server {
    /// A message that arrived through a Bayeux wildcard pattern. A channel
    /// with a feed gets its messages through the feed; of several patterns
    /// matching one channel, only the first passes it on; either way each
    /// message reaches the engine once.
    pub(super) fn on_pattern_message(&mut self, pattern: &str, channel: &str, payload: &[u8]) {
        let cluster = self.cluster.as_mut().expect("a Redis push");
        if cluster
            .feeds
            .get(channel)
            .is_some_and(|f| f.is_subscribed())
        {
            return;
        }
        let first = cluster
            .patterns
            .keys()
            .find(|p| scripts::pattern_matches(p, channel));
        if first.map(String::as_str) != Some(pattern) {
            return;
        }
        let name = match cluster.pattern_channels.get_key_value(channel) {
            Some((name, _)) => name.clone(),
            None => channel.into(),
        };
        let decode = Decode::live(&name, self.now);
        let Some(Notice::Message(message)) = decode.notice(payload) else {
            return;
        };
        // The channel's position, so that what pub/sub drops (a broken
        // link, a reconnect) is read from the stream or told as a gap, as a
        // feed does for exact subscriptions.
        let tracked = cluster.pattern_channels.len();
        let merge = match cluster.pattern_channels.get_mut(&name) {
            Some(merge) => merge,
            None if tracked < MAX_PATTERN_CHANNELS => {
                let at = Merge::at(message.epoch, message.seq - 1);
                cluster.pattern_channels.entry(name.clone()).or_insert(at)
            }
            None => {
                self.bayeux
                    .on_publish(&crate::server::bayeux::hub_message(&message));
                return;
            }
        };
        let mut steps = Vec::new();
        merge.on_live(message, &mut steps);
        self.apply_pattern_steps(&name, steps);
    }

    /// Carries out the steps of a channel followed through a pattern: its
    /// messages and gaps go to the Bayeux engine, reads to Redis.
    fn apply_pattern_steps(&mut self, channel: &Rc<str>, steps: Vec<Step>) {
        for step in steps {
            match step {
                Step::Deliver(message) => {
                    self.bayeux
                        .on_publish(&crate::server::bayeux::hub_message(&message));
                }
                Step::Gap { .. } => {
                    let gap = crate::server::bayeux::gap_value(&gap_of(step));
                    self.bayeux.on_gap(channel, gap);
                }
                Step::Read { after } => {
                    let now = self.now;
                    let cluster = self.cluster.as_mut().expect("a Redis node");
                    let page = cluster.page;
                    cluster.send_read(channel, Reader::Pattern, after, page, now);
                }
                Step::Ahead => {}
            }
        }
    }

    /// The answer to a read for a channel followed through a pattern.
    pub(super) fn on_pattern_history(&mut self, channel: &Rc<str>, history: History) {
        let cluster = self.cluster.as_mut().expect("a Redis reply");
        let Some(merge) = cluster.pattern_channels.get_mut(channel) else {
            return;
        };
        let mut steps = Vec::new();
        merge.on_history(history, &mut steps);
        self.apply_pattern_steps(channel, steps);
    }

    /// A shard's pub/sub link is back: every channel followed through a
    /// pattern on it reads what it may have missed meanwhile.
    pub(super) fn reread_pattern_channels(&mut self, shard: usize) {
        let now = self.now;
        let cluster = self.cluster.as_mut().expect("a Redis node");
        let n = cluster.shards.len();
        let page = cluster.page;
        let mut reads = Vec::new();
        for (name, merge) in cluster.pattern_channels.iter_mut() {
            if shard_of(name, n) == shard && !merge.is_reading() {
                reads.push((name.clone(), merge.reread()));
            }
        }
        for (name, after) in reads {
            cluster.send_read(&name, Reader::Pattern, after, page, now);
        }
    }

    /// Follows the Bayeux engine's routing index in Redis.
    pub(in crate::server) fn sync_bayeux_routes(&mut self) {
        if self.cluster.is_none() || self.bayeux.route_events.is_empty() {
            return;
        }
        let events = std::mem::take(&mut self.bayeux.route_events);
        for (text, added) in events {
            let Ok(pattern) = Pattern::parse(&text) else {
                continue;
            };
            match pattern {
                Pattern::Exact(name) => self.route_exact(&name[1..], added),
                Pattern::OneLevel(prefix) | Pattern::AnyDepth(prefix) => {
                    let cluster = self.cluster.as_mut().expect("checked");
                    let pattern = scripts::pubsub_pattern(&prefix[1..]);
                    for id in cluster.route_pattern(pattern, added) {
                        self.release_bayeux_reply(id);
                    }
                }
            }
        }
    }

    fn route_exact(&mut self, channel: &str, added: bool) {
        let cluster = self.cluster.as_mut().expect("checked");
        if added {
            let name = cluster.ensure_feed(channel);
            cluster
                .feeds
                .get_mut(&name)
                .expect("just made")
                .exact_routes += 1;
            return;
        }
        let Some((name, feed)) = cluster.feed_mut(channel) else {
            return;
        };
        feed.exact_routes = feed.exact_routes.saturating_sub(1);
        self.note_maybe_idle(&name);
    }

    /// A Bayeux reply to send now, unless it subscribed to something Redis
    /// has not confirmed yet: then it waits (`State::Waiting`), and the
    /// body is `None`.
    pub(in crate::server) fn hold_bayeux_reply(
        &mut self,
        id: ConnId,
        ask: Ask,
        content_type: &'static str,
        body: Vec<u8>,
        subscribed: &[String],
    ) -> Option<Vec<u8>> {
        if self.cluster.is_none() || subscribed.is_empty() {
            return Some(body);
        }
        self.sync_bayeux_routes();
        let cluster = self.cluster.as_mut().expect("checked");
        let all = cluster.all_shards();
        let mut waits = 0;
        for text in subscribed {
            match Pattern::parse(text) {
                Ok(Pattern::Exact(name)) => {
                    if let Some(feed) = cluster.feeds.get_mut(&name[1..]) {
                        if feed.position().is_none() {
                            feed.replies.push(id);
                            waits += 1;
                        }
                    }
                }
                Ok(Pattern::OneLevel(prefix) | Pattern::AnyDepth(prefix)) => {
                    let pattern = scripts::pubsub_pattern(&prefix[1..]);
                    if let Some(sub) = cluster.patterns.get_mut(&pattern) {
                        if sub.confirmed != all {
                            sub.waiters.push(id);
                            waits += 1;
                        }
                    }
                }
                Err(_) => {}
            }
        }
        if waits == 0 {
            return Some(body);
        }
        let timeout = cluster.timeout;
        let reply = HeldReply {
            ask,
            content_type,
            body,
            waits,
        };
        cluster.held_replies.insert(id, reply);
        if let Some(conn) = self.conns.get(id) {
            conn.wait_for_redis(ask.keep_alive);
        }
        self.set_deadline(id, self.now + timeout);
        None
    }

    /// One of a held reply's subscriptions is confirmed; the last sends it.
    pub(super) fn release_bayeux_reply(&mut self, id: ConnId) {
        let cluster = self.cluster.as_mut().expect("a held reply");
        let Some(reply) = cluster.held_replies.get_mut(&id) else {
            return;
        };
        reply.waits -= 1;
        if reply.waits == 0 {
            let reply = cluster.held_replies.remove(&id).expect("checked");
            self.send_held_reply(id, reply);
        }
    }

    /// A held reply whose wait passed `--redis-timeout`: the subscription
    /// exists here and Redis may yet confirm it, so the reply goes as it is.
    /// Returns false if `id` held no reply.
    pub(super) fn on_held_reply_timeout(&mut self, id: ConnId) -> bool {
        let cluster = self.cluster.as_mut().expect("a Redis node");
        let Some(reply) = cluster.held_replies.remove(&id) else {
            return false;
        };
        info!("{id:?}: Redis did not confirm a Bayeux subscription in time; answered anyway");
        self.send_held_reply(id, reply);
        true
    }

    fn send_held_reply(&mut self, id: ConnId, reply: HeldReply) {
        if !self.is_waiting(id) {
            return;
        }
        let extra = ["Cache-Control: no-cache"];
        self.respond(id, reply.ask, 200, reply.content_type, &reply.body, &extra);
        self.conns.resume_later(id);
    }

    /// A Bayeux subscription resumed with `ext.halley.since`: once its
    /// channel's feed is placed, its history is read from the stream, at
    /// most what the session's queue can take.
    pub(in crate::server) fn resume_via_redis(&mut self, resume: &bayeux::Resume) {
        let Some(room) = self.bayeux.replay_room(&resume.client_id) else {
            return;
        };
        let now = self.now;
        let cluster = self.cluster.as_mut().expect("resuming via Redis");
        let channel = cluster.ensure_feed(&resume.channel);
        let feed = cluster.feeds.get_mut(&channel).expect("just made");
        if feed.position().is_none() {
            return feed.resumes.push(resume.clone());
        }
        let after = resume_after(resume);
        let reader = Reader::Session(resume.clone());
        cluster.send_read(&channel, reader, after, room.max(1), now);
    }

    pub(super) fn on_resume_history(
        &mut self,
        channel: &Rc<str>,
        resume: bayeux::Resume,
        history: History,
    ) {
        let start = match &resume.since {
            Since::Earliest => Some(Start::Earliest),
            Since::Id(text) => match cursor::parse(text) {
                Ok(Cursor::After { epoch, seq }) => Some(Start::After { epoch, seq }),
                _ => None,
            },
        };
        let mut steps = Vec::new();
        if let Some(start) = start {
            let (mut merge, _) = Merge::new(start);
            merge.on_history(history, &mut steps);
        }
        let ahead = steps.iter().any(|s| matches!(s, Step::Ahead));
        let mut gap: Option<Json> = None;
        let mut messages = Vec::new();
        for step in steps {
            match step {
                Step::Gap { .. } if gap.is_none() && messages.is_empty() => {
                    gap = Some(crate::server::bayeux::gap_value(&gap_of(step)))
                }
                Step::Deliver(m) => messages.push(m),
                Step::Ahead | Step::Gap { .. } | Step::Read { .. } => {}
            }
        }
        // A cursor that cannot be placed is never skipped silently: the
        // session is told, and delivery goes on from now.
        if start.is_none() || ahead {
            let unknown = Gap {
                reason: "unknown",
                missed: None,
                cursor: match &resume.since {
                    Since::Id(text) => text.clone(),
                    Since::Earliest => "earliest".into(),
                },
                next: self.head_cursor(channel),
            };
            gap = Some(crate::server::bayeux::gap_value(&unknown));
        }
        debug!("Bayeux resume of {channel}: {} messages", messages.len());
        let history = messages
            .iter()
            .map(|m| crate::server::bayeux::hub_message(m));
        self.bayeux.on_replay(&resume, gap, history);
    }
}

/// Where a Bayeux resume reads from.
pub(super) fn resume_after(resume: &bayeux::Resume) -> u64 {
    match &resume.since {
        Since::Earliest => 0,
        Since::Id(text) => match cursor::parse(text) {
            Ok(Cursor::After { seq, .. }) => seq,
            _ => 0,
        },
    }
}

/// Held replies by connection.
pub(super) type HeldReplies = HashMap<ConnId, HeldReply>;

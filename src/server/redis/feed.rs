//! Feeds: a node's one pub/sub subscription per channel it has local
//! interest in (hub subscribers, subscribers catching up, Bayeux exact
//! subscriptions), and the Redis patterns for Bayeux wildcard subscriptions.
//!
//! A feed's `Merge` starts at the channel's position when Redis confirms the
//! subscription (a `READ` with no entries), then passes on each pub/sub
//! message once and in order; a skipped sequence number makes it read the
//! stream, and what the stream no longer has becomes a gap every local
//! subscriber is told. After a reconnect the feed reads what it missed from
//! its position. Passing a message on is `Server::deliver`, the same fan-out
//! as in memory, plus a copy into the merge of each subscriber catching up.

use std::rc::Rc;
use std::time::{Duration, SystemTime};

use log::{debug, warn};

use super::catchup::CatchUp;
use super::{Cluster, Op, Reader, Server};
use crate::conn_id::ConnId;
use crate::cursor;
use crate::encode::{self, Gap, Transport};
use crate::redis::merge::{History, Merge, Start, Step};
use crate::redis::resp::Value;
use crate::redis::scripts::{self, Decode, Notice};

/// How long a feed outlives its last local subscriber: long-polls leave and
/// come back with every message, and should not make the node unsubscribe
/// and subscribe again each time.
const LINGER: Duration = Duration::from_secs(5);

pub(super) struct Feed {
    /// `None` until Redis first confirms the subscription.
    merge: Option<Merge>,
    /// Redis has confirmed the subscription on the current connection.
    subscribed: bool,
    /// Subscribers waiting for the feed's first position.
    pub waiting: Vec<ConnId>,
    /// Subscribers whose own merges take this feed's messages.
    pub catching: Vec<ConnId>,
    /// `/ws` sockets waiting for the feed's first position to catch this
    /// channel up (`mux_catchup.rs`).
    pub mux_waiting: Vec<ConnId>,
    /// `/ws` sockets whose merges for this channel take its messages.
    pub mux_catching: Vec<ConnId>,
    /// Bayeux subscribe replies waiting for the feed's first position.
    pub replies: Vec<ConnId>,
    /// Bayeux resumes waiting for the feed's first position: their history
    /// is read once the feed is subscribed, so nothing falls between.
    pub resumes: Vec<crate::bayeux::Resume>,
    /// Bayeux sessions' exact subscriptions to this channel.
    pub exact_routes: u32,
    /// The channel is in `Cluster::maybe_idle`.
    pub idle_noted: bool,
}

impl Feed {
    fn new() -> Feed {
        Feed {
            merge: None,
            subscribed: false,
            waiting: Vec::new(),
            catching: Vec::new(),
            mux_waiting: Vec::new(),
            mux_catching: Vec::new(),
            replies: Vec::new(),
            resumes: Vec::new(),
            exact_routes: 0,
            idle_noted: false,
        }
    }

    /// The last position passed on to local subscribers, once known.
    pub fn position(&self) -> Option<(u64, u64)> {
        self.merge
            .as_ref()
            .filter(|m| m.is_placed())
            .map(Merge::position)
    }

    /// Where to read from again: the read in flight was lost, or the
    /// subscription was made anew and pub/sub may have dropped messages.
    pub fn reread_from(&mut self) -> u64 {
        self.merge.as_mut().map_or(0, Merge::reread)
    }

    pub fn on_unsubscribed(&mut self) {
        self.subscribed = false;
    }

    /// Redis has confirmed the subscription on the current connection.
    pub fn is_subscribed(&self) -> bool {
        self.subscribed
    }
}

impl Cluster {
    /// A channel's feed, with the feed's shared name.
    pub(super) fn feed_mut(&mut self, channel: &str) -> Option<(Rc<str>, &mut Feed)> {
        let name = self.feeds.get_key_value(channel)?.0.clone();
        let feed = self.feeds.get_mut(channel)?;
        Some((name, feed))
    }

    /// The feed of `channel`, made (and subscribed in Redis, if its link is
    /// up; else when it comes up) if there was none. Returns its shared name.
    pub(super) fn ensure_feed(&mut self, channel: &str) -> Rc<str> {
        if let Some((name, _)) = self.feeds.get_key_value(channel) {
            return name.clone();
        }
        let name: Rc<str> = channel.into();
        self.feeds.insert(name.clone(), Feed::new());
        let shard = self.shard_of(channel);
        if self.shards[shard].sub.is_up() {
            let pubsub = scripts::pubsub_channel(channel);
            self.shards[shard]
                .sub
                .send_push(&[b"SUBSCRIBE", pubsub.as_bytes()]);
        }
        name
    }

    /// Subscriptions on a link that just came up: every feed of its shard,
    /// and every pattern.
    fn resubscribe(&mut self, shard: usize) {
        let n = self.shards.len();
        let names: Vec<String> = self
            .feeds
            .keys()
            .filter(|name| crate::redis::shard::shard_of(name, n) == shard)
            .map(|name| scripts::pubsub_channel(name))
            .collect();
        let link = &mut self.shards[shard].sub;
        for chunk in names.chunks(1000) {
            let mut args: Vec<&[u8]> = vec![b"SUBSCRIBE"];
            args.extend(chunk.iter().map(|n| n.as_bytes()));
            link.send_push(&args);
        }
        if !self.patterns.is_empty() {
            let mut args: Vec<&[u8]> = vec![b"PSUBSCRIBE"];
            args.extend(self.patterns.keys().map(|p| p.as_bytes()));
            link.send_push(&args);
        }
    }
}

impl Server {
    pub(super) fn on_sub_link_up(&mut self, shard: usize) {
        if let Some(cluster) = self.cluster.as_mut() {
            cluster.resubscribe(shard);
        }
        self.reread_pattern_channels(shard);
    }

    /// A push on a `sub` link: a confirmation, a message, or a pong.
    pub(super) fn on_redis_push(&mut self, shard: usize, value: Value) {
        // Outside subscribed mode (no subscriptions yet) a PING is answered
        // like any command.
        if matches!(&value, Value::Status(s) if s.eq_ignore_ascii_case("pong")) {
            if let Some(cluster) = self.cluster.as_mut() {
                cluster.shards[shard].sub_ping = None;
            }
            return;
        }
        let Value::Array(parts) = value else {
            return debug!("redis: a push that is not an array: {value:?}");
        };
        let bulk = |i: usize| match parts.get(i) {
            Some(Value::Bulk(b)) => Some(&b[..]),
            _ => None,
        };
        match bulk(0) {
            Some(b"subscribe") => {
                if let Some(channel) = bulk(1).and_then(scripts::channel_of) {
                    let channel: Rc<str> = channel.into();
                    self.on_feed_subscribed(&channel);
                }
            }
            Some(b"psubscribe") => {
                let Some(pattern) = bulk(1) else {
                    return;
                };
                let pattern = String::from_utf8_lossy(pattern).into_owned();
                let cluster = self.cluster.as_mut().expect("a Redis push");
                for id in cluster.on_pattern_confirmed(shard, &pattern) {
                    self.release_bayeux_reply(id);
                }
            }
            Some(b"message") => {
                let (Some(pubsub), Some(payload)) = (bulk(1), bulk(2)) else {
                    return;
                };
                if let Some(channel) = scripts::channel_of(pubsub) {
                    self.on_feed_notice(channel, payload);
                }
            }
            Some(b"pmessage") => {
                let (Some(pattern), Some(pubsub), Some(payload)) = (bulk(1), bulk(2), bulk(3))
                else {
                    return;
                };
                let pattern = std::str::from_utf8(pattern).ok();
                if let (Some(pattern), Some(channel)) = (pattern, scripts::channel_of(pubsub)) {
                    self.on_pattern_message(pattern, channel, payload);
                }
            }
            Some(b"pong") => {
                if let Some(cluster) = self.cluster.as_mut() {
                    cluster.shards[shard].sub_ping = None;
                }
            }
            _ => {}
        }
    }

    /// Redis confirmed a feed's subscription: the feed reads its position
    /// (the first time) or what it may have missed (after a reconnect).
    fn on_feed_subscribed(&mut self, channel: &Rc<str>) {
        let now = self.now;
        let cluster = self.cluster.as_mut().expect("a Redis push");
        let Some((name, feed)) = cluster.feed_mut(channel) else {
            return;
        };
        feed.subscribed = true;
        let (after, count) = match &mut feed.merge {
            None => {
                let (merge, _) = Merge::new(Start::Head);
                feed.merge = Some(merge);
                (0, 0)
            }
            Some(merge) => (merge.reread(), cluster.page),
        };
        cluster.send_read(&name, Reader::Feed, after, count, now);
    }

    /// A pub/sub message on a feed's channel.
    fn on_feed_notice(&mut self, channel: &str, payload: &[u8]) {
        let cluster = self.cluster.as_mut().expect("a Redis push");
        let Some((name, feed)) = cluster.feed_mut(channel) else {
            return;
        };
        let decode = Decode::live(&name, self.now);
        match decode.notice(payload) {
            Some(Notice::Message(message)) => {
                let Some(merge) = feed.merge.as_mut() else {
                    return;
                };
                let mut steps = Vec::new();
                merge.on_live(message, &mut steps);
                self.apply_feed_steps(&name, steps);
            }
            Some(Notice::Deleted { .. }) => self.on_channel_deleted(&name),
            None => warn!("redis: a message on {channel} that is not halley's"),
        }
    }

    /// The answer to a feed's read.
    fn on_feed_history(&mut self, channel: &Rc<str>, history: History) {
        let cluster = self.cluster.as_mut().expect("a Redis reply");
        let Some(feed) = cluster.feeds.get_mut(channel) else {
            return;
        };
        let Some(merge) = feed.merge.as_mut() else {
            return;
        };
        let was_placed = merge.is_placed();
        let mut steps = Vec::new();
        merge.on_history(history, &mut steps);
        let placed_now = !was_placed && merge.is_placed();
        let (waiting, mux_waiting, replies, resumes) = match placed_now {
            true => (
                std::mem::take(&mut feed.waiting),
                std::mem::take(&mut feed.mux_waiting),
                std::mem::take(&mut feed.replies),
                std::mem::take(&mut feed.resumes),
            ),
            false => Default::default(),
        };
        self.apply_feed_steps(channel, steps);
        for id in waiting {
            self.start_catchup(id);
        }
        for id in mux_waiting {
            self.start_mux_catchup(id, channel);
        }
        for id in replies {
            self.release_bayeux_reply(id);
        }
        for resume in &resumes {
            self.resume_via_redis(resume);
        }
    }

    /// Carries out a feed's steps: messages go to every local subscriber,
    /// gaps are told to them, reads are sent.
    fn apply_feed_steps(&mut self, channel: &Rc<str>, steps: Vec<Step>) {
        for step in steps {
            match step {
                Step::Deliver(message) => {
                    self.deliver(&message);
                    self.feed_catchups(channel, &message);
                    self.feed_mux_catchups(channel, &message);
                }
                Step::Gap {
                    reason,
                    missed,
                    from,
                    to,
                } => {
                    let gap = Gap {
                        reason,
                        missed,
                        cursor: cursor::format(from.0, from.1),
                        next: cursor::format(to.0, to.1),
                    };
                    self.gap_to_subscribers(channel, &gap);
                }
                Step::Read { after } => {
                    let now = self.now;
                    let cluster = self.cluster.as_mut().expect("a feed");
                    let page = cluster.page;
                    cluster.send_read(channel, Reader::Feed, after, page, now);
                }
                Step::Ahead => warn!("redis: {channel} is behind this node's position"),
            }
        }
    }

    /// A live message for the subscribers of `channel` still catching up:
    /// into each one's merge.
    fn feed_catchups(&mut self, channel: &Rc<str>, message: &Rc<crate::message::Message>) {
        let cluster = self.cluster.as_mut().expect("a feed");
        let Some(feed) = cluster.feeds.get_mut(channel) else {
            return;
        };
        if feed.catching.is_empty() {
            return;
        }
        let mut catching = std::mem::take(&mut feed.catching);
        catching.retain(|id| cluster.catchups.contains_key(id));
        for &id in &catching {
            let cluster = self.cluster.as_mut().expect("a feed");
            let Some(catchup) = cluster.catchups.get_mut(&id) else {
                continue;
            };
            let mut steps = Vec::new();
            catchup.on_live(message.clone(), &mut steps);
            self.apply_conn_steps(id, steps);
        }
        let cluster = self.cluster.as_mut().expect("a feed");
        if let Some(feed) = cluster.feeds.get_mut(channel) {
            catching.retain(|id| cluster.catchups.contains_key(id));
            catching.append(&mut feed.catching);
            feed.catching = catching;
        }
    }

    /// A live message for the `/ws` channels of `channel` still catching
    /// up: into each one's merge.
    fn feed_mux_catchups(&mut self, channel: &Rc<str>, message: &Rc<crate::message::Message>) {
        let cluster = self.cluster.as_mut().expect("a feed");
        let Some(feed) = cluster.feeds.get_mut(channel) else {
            return;
        };
        if feed.mux_catching.is_empty() {
            return;
        }
        let mut catching = std::mem::take(&mut feed.mux_catching);
        for &id in &catching {
            let cluster = self.cluster.as_mut().expect("a feed");
            let Some(catchup) = cluster.mux_catchups.get_mut(&(id, channel.clone())) else {
                continue;
            };
            let mut steps = Vec::new();
            catchup.on_live(message.clone(), &mut steps);
            self.apply_mux_steps(id, channel, steps);
        }
        let cluster = self.cluster.as_mut().expect("a feed");
        if let Some(feed) = cluster.feeds.get_mut(channel) {
            let catchups = &cluster.mux_catchups;
            catching.retain(|&id| catchups.contains_key(&(id, channel.clone())));
            catching.append(&mut feed.mux_catching);
            feed.mux_catching = catching;
        }
    }

    /// A gap in a feed: every live subscriber of the channel is told, each
    /// stream with a gap event, each parked long-poll with a gap answer,
    /// each Bayeux session with a `data: null` message carrying the gap.
    fn gap_to_subscribers(&mut self, channel: &Rc<str>, gap: &Gap) {
        let cluster = self.cluster.as_mut().expect("a feed");
        cluster.figures.gaps += 1;
        self.bayeux
            .on_gap(channel, crate::server::bayeux::gap_value(gap));
        let Some(hub_channel) = self.hub.channel_mut(channel) else {
            return;
        };
        let sse: Rc<[u8]> = encode::sse_gap(gap).into();
        let ndjson: Rc<[u8]> = encode::stream_gap(gap).into();
        let ws: Rc<[u8]> = encode::ws_gap(gap).into();
        // A `/ws` socket follows many channels: its gap names the channel.
        let mux_ws: Rc<[u8]> = crate::ws::frame::frame(
            crate::ws::frame::Opcode::Text,
            &crate::mux::gap(channel, gap),
        )
        .into();
        let max_queued = self.config.max_queued_bytes;
        let streams: Vec<ConnId> = hub_channel.streams.iter().map(|(_, &id)| id).collect();
        let polls: Vec<ConnId> = hub_channel.polls.drain().collect();
        for id in streams {
            if self.is_catching_up(id) {
                continue;
            }
            let Some(conn) = self.conns.get(id) else {
                continue;
            };
            let Some((transport, http10)) = conn.stream_kind() else {
                continue;
            };
            let frame = match transport {
                Transport::Sse => &sse,
                Transport::Stream => &ndjson,
                Transport::WebSocket if conn.mux().is_some() => &mux_ws,
                Transport::WebSocket => &ws,
            };
            let range = match http10 {
                true => crate::http::response::chunk_payload(frame),
                false => 0..frame.len(),
            };
            if let Err(e) = conn.send_live(frame, range, max_queued) {
                super::super::respond::note_send_error(&mut self.counters, id, &e);
                self.conns.close(id);
            }
        }
        if !polls.is_empty() {
            let body: Rc<[u8]> = encode::poll_body(&[], Some(gap), &gap.next).into();
            for id in polls {
                self.answer_poll(id, &body);
            }
            self.note_maybe_idle(channel);
        }
    }

    /// Is connection `id` catching up (and so not yet fed by the fan-out)?
    pub(in crate::server) fn is_catching_up(&self, id: ConnId) -> bool {
        self.cluster
            .as_ref()
            .is_some_and(|c| !c.catchups.is_empty() && c.catchups.contains_key(&id))
    }

    /// A deletion announced through Redis: every local subscriber of the
    /// channel gets its end, as in memory.
    fn on_channel_deleted(&mut self, channel: &Rc<str>) {
        if let Some(deleted) = self.hub.delete(channel, self.now) {
            self.end_subscriptions(deleted);
        }
        let cluster = self.cluster.as_mut().expect("a feed");
        let Some(feed) = cluster.feeds.get_mut(channel) else {
            return;
        };
        let mut ids = std::mem::take(&mut feed.waiting);
        ids.append(&mut feed.catching);
        let mut mux_ids = std::mem::take(&mut feed.mux_waiting);
        mux_ids.append(&mut feed.mux_catching);
        for id in ids {
            self.end_catchup_deleted(id, channel);
        }
        for id in mux_ids {
            self.end_mux_catchup_deleted(id, channel);
        }
        self.note_maybe_idle(channel);
    }

    /// A channel may have lost its last local interest; its feed is
    /// released after `LINGER` if nothing came back (`release_idle_feeds`).
    pub(in crate::server) fn note_maybe_idle(&mut self, channel: &Rc<str>) {
        let now = self.now;
        if let Some(cluster) = self.cluster.as_mut() {
            cluster.note_maybe_idle(channel, now);
        }
    }

    /// Unsubscribes the feeds that have had no local interest for `LINGER`.
    pub(super) fn release_idle_feeds(&mut self) {
        let now = self.now;
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        // A burst of subscribers passes through `catchups`; the table must
        // not keep the burst's size for good (memory per parked subscriber).
        if cluster.catchups.is_empty() && cluster.catchups.capacity() > 64 {
            cluster.catchups.shrink_to_fit();
        }
        while let Some((at, _)) = cluster.maybe_idle.front() {
            if *at + LINGER > now {
                break;
            }
            let (_, name) = cluster.maybe_idle.pop_front().expect("checked");
            let Some(feed) = cluster.feeds.get_mut(&name) else {
                continue;
            };
            feed.idle_noted = false;
            let catchups = &cluster.catchups;
            feed.waiting.retain(|id| catchups.contains_key(id));
            feed.catching.retain(|id| catchups.contains_key(id));
            let mux_catchups = &cluster.mux_catchups;
            let pending = |id: &ConnId| mux_catchups.contains_key(&(*id, name.clone()));
            feed.mux_waiting.retain(pending);
            feed.mux_catching.retain(pending);
            let local = self.hub.channel(&name).map_or(0, |c| c.n_subscribers());
            let idle = local == 0
                && feed.waiting.is_empty()
                && feed.catching.is_empty()
                && feed.mux_waiting.is_empty()
                && feed.mux_catching.is_empty()
                && feed.resumes.is_empty()
                && feed.exact_routes == 0;
            if !idle {
                continue;
            }
            cluster.feeds.remove(&name);
            let shard = cluster.shard_of(&name);
            if cluster.shards[shard].sub.is_up() {
                let pubsub = scripts::pubsub_channel(&name);
                cluster.shards[shard]
                    .sub
                    .send_push(&[b"UNSUBSCRIBE", pubsub.as_bytes()]);
            }
        }
    }

    /// The cursor meaning "everything so far" on `channel`: the feed's
    /// position with Redis, the hub's in memory.
    pub(in crate::server) fn head_cursor(&self, channel: &str) -> String {
        let position = self
            .cluster
            .as_ref()
            .and_then(|c| c.feeds.get(channel))
            .and_then(Feed::position);
        match (position, &self.cluster) {
            (Some((epoch, seq)), _) => cursor::format(epoch, seq),
            (None, Some(_)) => "earliest".into(),
            (None, None) => self.hub.head_cursor(channel),
        }
    }

    /// The answer to any read: to the feed, a subscriber or a Bayeux
    /// session. A reply that is not what the script returns fails the link,
    /// and a feed's or a subscriber's read goes again after the reconnect
    /// (a Bayeux resume's is not worth it).
    pub(super) fn on_read_reply(
        &mut self,
        channel: Rc<str>,
        reader: Reader,
        count: usize,
        value: Value,
    ) {
        let cluster = self.cluster.as_mut().expect("a Redis reply");
        let decode = Decode {
            channel: &channel,
            now: self.now,
            unix_ms: scripts::unix_ms(SystemTime::now()),
            ttl: cluster.message_ttl,
        };
        let history = match decode.history(value, count) {
            Ok(history) => history,
            Err(why) => {
                warn!("redis: reading {channel} failed: {why}");
                let shard = cluster.shard_of(&channel);
                let retry = match reader {
                    Reader::Feed => Some(Reader::Feed),
                    Reader::Conn(id) => Some(Reader::Conn(id)),
                    Reader::Mux(id, serial) => Some(Reader::Mux(id, serial)),
                    Reader::Pattern => Some(Reader::Pattern),
                    Reader::Session(_) => None,
                };
                if let Some(reader) = retry {
                    let read = Op::Read {
                        channel,
                        reader,
                        count,
                    };
                    cluster.shards[shard].lost_reads.push(read);
                }
                return self.fail_link(
                    shard,
                    super::LinkKind::Cmd,
                    &format!("unexpected read reply: {why}"),
                );
            }
        };
        match reader {
            Reader::Feed => self.on_feed_history(&channel, history),
            Reader::Conn(id) => self.on_catchup_history(id, history),
            Reader::Mux(id, serial) => self.on_mux_history((id, serial), &channel, history),
            Reader::Session(resume) => self.on_resume_history(&channel, resume, history),
            Reader::Pattern => self.on_pattern_history(&channel, history),
        }
    }
}

impl CatchUp {
    /// Hands a live message of its feed to this subscriber's merge.
    pub(super) fn on_live(&mut self, message: Rc<crate::message::Message>, out: &mut Vec<Step>) {
        if let Some(merge) = self.merge.as_mut() {
            merge.on_live(message, out);
        }
    }
}

//! The Redis engine on the loop (`--redis`): Redis sequences and keeps every
//! channel's history, and nodes on the same Redis are one cluster. Each shard
//! (one `--redis` URL) has two links, event sources of the server's
//! `mio::Poll` like client connections: `cmd` for the Lua scripts
//! (`redis::scripts`), pipelined, and `sub` in pub/sub mode for live
//! messages.
//!
//! - A publish is sent to its channel's shard and its publisher waits
//!   (`State::Waiting`); the script's reply answers it (`publish.rs`). The
//!   message reaches subscribers, on this node as on every other, through
//!   pub/sub.
//! - A node subscribes in Redis to each channel it has local subscribers for:
//!   a `Feed`, whose `Merge` passes each message on once and in order, reads
//!   the stream to fill what pub/sub lost, and tells gaps (`feed.rs`).
//!   A subscriber with a cursor first catches up from the stream with its
//!   own merge, then joins the feed.
//! - A timer (`Timer::Redis`) reconnects links that are down, with back-off,
//!   and fails links whose oldest command has waited past `--redis-timeout`.
//!   After a reconnect every feed re-subscribes and reads what it missed.

mod bayeux;
mod catchup;
mod feed;
mod link;
mod publish;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

use mio::{Registry, Token};
use serde_json::{json, Value as Json};

use super::publish::Publisher;
use super::respond::Ask;
use super::Server;
use crate::config::{Config, MAX_SHARDS};
use crate::conn_id::ConnId;
use crate::deadline::{Deadlines, Timer, ToArm};
use crate::redis::resp::Value;
use crate::redis::scripts;
use crate::redis::shard::shard_of;
use catchup::CatchUp;
use feed::Feed;
use link::Link;

/// The first token of the links: below the listener's and the signal pipe's.
const FIRST_TOKEN: usize = usize::MAX - 2;
/// What one read of a stream may bring back at most, in message bytes: its
/// entries are held in memory together, and their frames queued together.
const READ_BYTES: usize = 8 << 20;
/// The most entries one read of a stream asks for.
const MAX_PAGE: usize = 256;
/// How often links are checked: reconnects due, commands overdue, pings.
const TICK: Duration = Duration::from_millis(250);

/// What a command on a `cmd` link was for, to act on its reply.
pub(super) enum Op {
    Publish {
        publisher: Publisher,
        channel: Rc<str>,
        sent: Instant,
    },
    Delete {
        id: ConnId,
        ask: Ask,
        channel: Rc<str>,
    },
    Read {
        channel: Rc<str>,
        reader: Reader,
        count: usize,
    },
    Ping,
}

/// Who reads a channel's stream.
pub(super) enum Reader {
    /// The node's feed of the channel.
    Feed,
    /// A subscriber catching up.
    Conn(ConnId),
    /// A Bayeux subscription resumed with `ext.halley.since`.
    Session(crate::bayeux::Resume),
}

struct Shard {
    cmd: Link<Op>,
    sub: Link<()>,
    /// Reads a failed `cmd` connection left unanswered, sent again once it
    /// is back.
    lost_reads: Vec<Op>,
    /// A `PING` on `sub` not yet answered, and when it went.
    sub_ping: Option<Instant>,
}

#[derive(Default)]
struct Figures {
    reconnects: u64,
    publishes: u64,
    publish_failures: u64,
    timeouts: u64,
    rtt_last_us: u64,
    rtt_sum_us: u64,
    rtt_max_us: u64,
    gaps: u64,
}

pub(super) struct Cluster {
    shards: Vec<Shard>,
    /// Feeds by channel: one per channel with local interest.
    feeds: HashMap<Rc<str>, Feed>,
    /// Subscribers not yet caught up with their channel's feed.
    catchups: HashMap<ConnId, CatchUp>,
    /// Redis patterns for Bayeux wildcard subscriptions, with how many
    /// subscription patterns need each; ordered, so that of several patterns
    /// matching a channel one is always the first (`feed::on_pattern_message`).
    patterns: BTreeMap<String, bayeux::PatternSub>,
    /// Bayeux replies waiting for Redis to confirm their subscriptions.
    held_replies: bayeux::HeldReplies,
    /// Channels that may have lost their last local interest, and since when.
    maybe_idle: VecDeque<(Instant, Rc<str>)>,
    shas: [String; 3],
    /// Candidate epochs for channels Redis does not know.
    rng: u64,
    timeout: Duration,
    /// Entries per read of a stream (a feed filling a hole, a stream
    /// subscriber catching up): at most `MAX_PAGE`, and at most `READ_BYTES`
    /// of the largest messages `--max-body` allows; a longer history is read
    /// page by page.
    page: usize,
    buffer: usize,
    message_ttl: Duration,
    meta_ttl: Duration,
    figures: Figures,
    pub to_arm: ToArm,
    /// Reused for each batch of replies.
    replies: Vec<(Option<Op>, Value)>,
    sub_replies: Vec<(Option<()>, Value)>,
}

impl Cluster {
    /// The links to every shard; they connect on the first tick.
    pub fn new(
        config: &Config,
        now: Instant,
        deadlines: &mut Deadlines,
    ) -> std::io::Result<Cluster> {
        assert!(config.redis.len() <= MAX_SHARDS);
        let shas = scripts::ALL.map(sha1_hex);
        let mut seed = crate::cursor::new_epoch() | 1;
        let mut shards = Vec::new();
        for (i, url) in config.redis.iter().enumerate() {
            let addr = url.resolve()?;
            let mut setup = Vec::new();
            if let Some(password) = &url.password {
                let mut auth = vec![b"AUTH".to_vec()];
                auth.extend(url.username.iter().map(|u| u.as_bytes().to_vec()));
                auth.push(password.as_bytes().to_vec());
                setup.push(auth);
            }
            if url.db != 0 {
                setup.push(vec![b"SELECT".to_vec(), url.db.to_string().into_bytes()]);
            }
            let mut cmd_setup = setup.clone();
            for script in scripts::ALL {
                cmd_setup.push(vec![
                    b"SCRIPT".to_vec(),
                    b"LOAD".to_vec(),
                    script.as_bytes().to_vec(),
                ]);
            }
            seed = xorshift(seed);
            let name = url.to_string();
            shards.push(Shard {
                cmd: Link::new(name.clone(), addr, token(i, 0), cmd_setup, seed, now),
                sub: Link::new(name, addr, token(i, 1), setup, seed ^ 0x5555, now),
                lost_reads: Vec::new(),
                sub_ping: None,
            });
        }
        // The first check connects every link.
        deadlines.set(now, Timer::Redis);
        Ok(Cluster {
            shards,
            feeds: HashMap::new(),
            catchups: HashMap::new(),
            patterns: BTreeMap::new(),
            held_replies: HashMap::new(),
            maybe_idle: VecDeque::new(),
            shas,
            rng: seed,
            timeout: config.redis_timeout,
            page: (READ_BYTES / config.max_body.max(1)).clamp(1, MAX_PAGE),
            buffer: config.buffer,
            message_ttl: config.message_ttl,
            meta_ttl: config.redis_meta_ttl,
            figures: Figures::default(),
            to_arm: ToArm::default(),
            replies: Vec::new(),
            sub_replies: Vec::new(),
        })
    }

    /// The subscribers catching up, when there are any: the fan-out skips
    /// them, and looks only when there is something to look for.
    pub(in crate::server) fn catchups_if_any(&self) -> Option<&HashMap<ConnId, CatchUp>> {
        (!self.catchups.is_empty()).then_some(&self.catchups)
    }

    /// Is this token one of the links'?
    pub fn owns(&self, token: Token) -> bool {
        token.0 <= FIRST_TOKEN && token.0 > FIRST_TOKEN - 2 * self.shards.len()
    }

    /// Every link connected and answering: what `/healthz` reports.
    pub fn is_healthy(&self) -> bool {
        self.shards.iter().all(|s| s.cmd.is_up() && s.sub.is_up())
    }

    fn shard_of(&self, channel: &str) -> usize {
        shard_of(channel, self.shards.len())
    }

    /// A fresh epoch in hex, offered to Redis for a channel it does not know.
    fn new_epoch(&mut self) -> String {
        self.rng = xorshift(self.rng);
        format!("{:x}", self.rng & 0xffff_ffff_ffff)
    }

    /// Writes every link's queued commands: the loop's last phase, so the
    /// commands of a whole iteration go out in one write per link.
    /// Returns, per shard whose `cmd` link failed, the commands it left.
    pub fn flush(&mut self, registry: &Registry, now: Instant) -> Vec<(usize, Vec<Op>)> {
        let mut failed = Vec::new();
        for (i, shard) in self.shards.iter_mut().enumerate() {
            if let Err(e) = shard.cmd.flush() {
                failed.push((i, shard.cmd.fail(registry, now, &e.to_string())));
            }
            if let Err(e) = shard.sub.flush() {
                shard.sub.fail(registry, now, &e.to_string());
            }
        }
        failed
    }

    /// Sends the `READ` script for `channel`: its position, and up to
    /// `count` messages after `after`.
    fn send_read(
        &mut self,
        channel: &Rc<str>,
        reader: Reader,
        after: u64,
        count: usize,
        now: Instant,
    ) {
        let shard = self.shard_of(channel);
        let op = Op::Read {
            channel: channel.clone(),
            reader,
            count,
        };
        if !self.shards[shard].cmd.is_open() {
            self.shards[shard].lost_reads.push(op);
            return;
        }
        let keys = scripts::Keys::of(channel);
        let epoch = self.new_epoch();
        let (after, count_text) = (after.to_string(), count.to_string());
        let meta_ttl = self.meta_ttl.as_millis().to_string();
        let args: [&[u8]; 8] = [
            b"EVALSHA",
            self.shas[scripts::READ_INDEX].as_bytes(),
            b"2",
            keys.meta.as_bytes(),
            keys.stream.as_bytes(),
            epoch.as_bytes(),
            after.as_bytes(),
            count_text.as_bytes(),
        ];
        let mut all = args.to_vec();
        all.push(meta_ttl.as_bytes());
        self.shards[shard].cmd.send(&all, op, now);
    }

    /// Sends the op of a read again (after its connection failed).
    fn resend(&mut self, op: Op, now: Instant) {
        match op {
            Op::Read {
                channel,
                reader: Reader::Feed,
                ..
            } => {
                if let Some(feed) = self.feeds.get_mut(&channel) {
                    let after = feed.reread_from();
                    self.send_read(&channel, Reader::Feed, after, self.page, now);
                }
            }
            Op::Read {
                channel,
                reader: Reader::Conn(id),
                count,
            } => {
                if let Some(after) = self.catchups.get(&id).and_then(CatchUp::reread_from) {
                    self.send_read(&channel, Reader::Conn(id), after, count, now);
                }
            }
            Op::Read {
                channel,
                reader: Reader::Session(resume),
                count,
            } => {
                let after = bayeux::resume_after(&resume);
                self.send_read(&channel, Reader::Session(resume), after, count, now);
            }
            _ => {}
        }
    }

    /// `/stats`'s `redis` object.
    pub fn stats_json(&self) -> Json {
        let f = &self.figures;
        let replied = f.publishes.saturating_sub(f.publish_failures);
        json!({
            "connected": self.is_healthy(),
            "shards": self.shards.len(),
            "reconnects": f.reconnects,
            "in_flight": self.shards.iter().map(|s| s.cmd.in_flight()).sum::<usize>(),
            "publishes": f.publishes,
            "publish_failures": f.publish_failures,
            "timeouts": f.timeouts,
            "publish_rtt_us": {
                "last": f.rtt_last_us,
                "mean": f.rtt_sum_us.checked_div(replied).unwrap_or(0),
                "max": f.rtt_max_us,
            },
            "feeds": self.feeds.len(),
            "patterns": self.patterns.len(),
            "catching_up": self.catchups.len(),
            "gaps": f.gaps,
        })
    }
}

impl Server {
    /// Readiness on a link: its replies and pushes, each acted on.
    pub(super) fn on_redis_ready(&mut self, token: Token) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        let (shard, which) = link_of(token);
        let mut replies = std::mem::take(&mut cluster.replies);
        let mut pushes = std::mem::take(&mut cluster.sub_replies);
        let link = &mut cluster.shards[shard];
        let was_up = (link.cmd.is_up(), link.sub.is_up());
        let result = match which {
            0 => link.cmd.on_ready(&mut replies),
            _ => link.sub.on_ready(&mut pushes),
        };
        let now_up = (link.cmd.is_up(), link.sub.is_up());
        for (op, value) in replies.drain(..) {
            if let Some(op) = op {
                self.on_redis_reply(op, value);
            }
        }
        for (_, value) in pushes.drain(..) {
            self.on_redis_push(shard, value);
        }
        let cluster = self.cluster.as_mut().expect("checked");
        cluster.replies = replies;
        cluster.sub_replies = pushes;
        if let Err(why) = result {
            return self.fail_link(shard, which, &why);
        }
        if !was_up.1 && now_up.1 {
            self.on_sub_link_up(shard);
        }
        if !was_up.0 && now_up.0 {
            let cluster = self.cluster.as_mut().expect("checked");
            for op in std::mem::take(&mut cluster.shards[shard].lost_reads) {
                cluster.resend(op, self.now);
            }
        }
    }

    /// A link failed: what waited on it fails or waits for the reconnect.
    fn fail_link(&mut self, shard: usize, which: usize, why: &str) {
        let registry = self.poll.registry();
        let cluster = self.cluster.as_mut().expect("a link failed");
        let now = self.now;
        if which == 1 {
            cluster.shards[shard].sub.fail(registry, now, why);
            cluster.shards[shard].sub_ping = None;
            cluster.on_patterns_lost(shard);
            for (name, feed) in cluster.feeds.iter_mut() {
                if shard_of(name, cluster.shards.len()) == shard {
                    feed.on_unsubscribed();
                }
            }
            return;
        }
        let lost = cluster.shards[shard].cmd.fail(registry, now, why);
        self.on_lost_ops(shard, lost);
    }

    /// Commands whose connection failed: publishers and deleters get 503,
    /// reads wait to be sent again.
    fn on_lost_ops(&mut self, shard: usize, lost: Vec<Op>) {
        for op in lost {
            match op {
                Op::Publish { publisher, .. } => {
                    self.publish_failed(publisher, "redis unavailable")
                }
                Op::Delete { id, ask, .. } => self.redis_unavailable(id, ask, "redis unavailable"),
                Op::Ping => {}
                read @ Op::Read { .. } => {
                    let cluster = self.cluster.as_mut().expect("ops are the cluster's");
                    cluster.shards[shard].lost_reads.push(read);
                }
            }
        }
    }

    fn on_redis_reply(&mut self, op: Op, value: Value) {
        match op {
            Op::Publish {
                publisher,
                channel,
                sent,
            } => self.on_publish_reply(publisher, &channel, sent, value),
            Op::Delete { id, ask, channel } => self.on_delete_reply(id, ask, &channel, value),
            Op::Read {
                channel,
                reader,
                count,
            } => self.on_read_reply(channel, reader, count, value),
            Op::Ping => {}
        }
    }

    /// The periodic check: links due to reconnect connect, links with a
    /// command overdue fail, idle links are pinged so a Redis that stopped
    /// answering is noticed even when nothing is published.
    pub(super) fn on_redis_tick(&mut self) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        let now = self.now;
        let timeout = cluster.timeout;
        let mut overdue = Vec::new();
        for (i, shard) in cluster.shards.iter_mut().enumerate() {
            let registry = self.poll.registry();
            if shard.cmd.retry_at().is_some_and(|at| at <= now) {
                if shard.cmd.n_failures > 0 {
                    cluster.figures.reconnects += 1;
                }
                shard.cmd.connect(registry, now);
            }
            if shard.sub.retry_at().is_some_and(|at| at <= now) {
                if shard.sub.n_failures > 0 {
                    cluster.figures.reconnects += 1;
                }
                shard.sub.connect(registry, now);
            }
            if shard
                .cmd
                .oldest_wait()
                .is_some_and(|at| at + timeout <= now)
            {
                overdue.push((i, 0));
            } else if shard.cmd.is_up() && shard.cmd.in_flight() == 0 {
                shard.cmd.send(&[b"PING"], Op::Ping, now);
            }
            match shard.sub_ping {
                Some(at) if at + timeout <= now => overdue.push((i, 1)),
                None if shard.sub.is_up() => {
                    shard.sub.send_push(&[b"PING"]);
                    shard.sub_ping = Some(now);
                }
                _ => {}
            }
        }
        cluster.figures.timeouts += overdue.len() as u64;
        cluster.to_arm.push(now + TICK, Timer::Redis);
        for (shard, which) in overdue {
            let why = format!(
                "no answer within --redis-timeout ({} ms)",
                timeout.as_millis()
            );
            self.fail_link(shard, which, &why);
        }
        self.release_idle_feeds();
    }

    /// The loop's last phase with Redis: every command queued in this
    /// iteration goes out.
    pub(super) fn flush_redis(&mut self) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        for (shard, lost) in cluster.flush(self.poll.registry(), self.now) {
            self.on_lost_ops(shard, lost);
        }
    }

    /// A publisher or deleter waited past `--redis-timeout`.
    pub(super) fn on_redis_wait_timeout(&mut self, id: ConnId) {
        let Some(cluster) = self.cluster.as_mut() else {
            return self.close(id);
        };
        cluster.figures.timeouts += 1;
        if self.on_held_reply_timeout(id) {
            return;
        }
        let cluster = self.cluster.as_mut().expect("checked");
        let keep_alive = match self.conns.get(id).map(|c| c.state()) {
            Some(super::conn::State::Waiting { keep_alive }) => *keep_alive,
            _ => return,
        };
        if let Some(catchup) = cluster.catchups.remove(&id) {
            cluster.note_maybe_idle(catchup.channel(), self.now);
        }
        let ask = Ask {
            keep_alive,
            head_only: false,
        };
        self.redis_unavailable(id, ask, "redis did not answer within --redis-timeout");
        self.conns.resume_later(id);
    }

    /// 503 with `Retry-After`, for a request Redis could not serve.
    fn redis_unavailable(&mut self, id: ConnId, ask: Ask, why: &str) {
        let reject = crate::http::Reject::new(503, why).with_retry_after(1);
        self.reject(id, reject, ask);
    }

    /// Does connection `id` still wait for Redis?
    fn is_waiting(&mut self, id: ConnId) -> bool {
        matches!(
            self.conns.get(id).map(|c| c.state()),
            Some(super::conn::State::Waiting { .. })
        )
    }

    pub(super) fn redis_stats(&self) -> Option<Json> {
        self.cluster.as_ref().map(Cluster::stats_json)
    }

    pub(super) fn redis_healthy(&self) -> bool {
        self.cluster.as_ref().is_none_or(Cluster::is_healthy)
    }
}

impl Cluster {
    /// A connection is gone: it no longer catches up, and its channel may
    /// have lost its last local subscriber.
    pub(in crate::server) fn on_conn_reaped(
        &mut self,
        id: ConnId,
        channel: Option<&Rc<str>>,
        now: Instant,
    ) {
        if let Some(catchup) = self.catchups.remove(&id) {
            self.note_maybe_idle(catchup.channel(), now);
        }
        if let Some(channel) = channel {
            self.note_maybe_idle(channel, now);
        }
    }

    pub(in crate::server) fn note_maybe_idle(&mut self, channel: &Rc<str>, now: Instant) {
        if let Some(feed) = self.feeds.get_mut(channel) {
            if !feed.idle_noted {
                feed.idle_noted = true;
                self.maybe_idle.push_back((now, channel.clone()));
            }
        }
    }
}

fn token(shard: usize, which: usize) -> Token {
    Token(FIRST_TOKEN - 2 * shard - which)
}

/// The shard and link (0: cmd, 1: sub) of a token.
fn link_of(token: Token) -> (usize, usize) {
    let n = FIRST_TOKEN - token.0;
    (n / 2, n % 2)
}

fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

/// A script's SHA-1, as `EVALSHA` names it: known before any reply, so a
/// publish can be pipelined right behind the `SCRIPT LOAD` of a new
/// connection.
fn sha1_hex(script: &str) -> String {
    sha1_smol::Sha1::from(script).digest().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_name_their_link() {
        for shard in 0..MAX_SHARDS {
            for which in 0..2 {
                assert_eq!(link_of(token(shard, which)), (shard, which));
            }
        }
    }

    #[test]
    fn script_digests_are_what_redis_computes() {
        // SHA-1 of the empty string, as `SCRIPT LOAD ""` answers.
        assert_eq!(sha1_hex(""), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    }
}

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
//!   own merge, then joins the feed; a `/ws` socket does so per channel
//!   (`mux_catchup.rs`), its other channels flowing meanwhile.
//! - A timer (`Timer::Redis`) reconnects links that are down, with back-off,
//!   and fails links whose oldest command has waited past `--redis-timeout`.
//!   After a reconnect every feed re-subscribes and reads what it missed.

mod bayeux;
mod catchup;
mod events;
mod feed;
mod link;
mod mux_catchup;
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
use crate::redis::merge::Merge;
use crate::redis::resp::Value;
use crate::redis::scripts;
use crate::redis::shard::shard_of;
use catchup::CatchUp;
use feed::Feed;
use link::Link;
use mux_catchup::MuxCatchUp;

/// The first token of the links: below the listener's and the signal pipe's.
const FIRST_TOKEN: usize = usize::MAX - 2;
/// What one read of a stream may bring back at most, in message bytes: its
/// entries are held in memory together, and their frames queued together.
const READ_BYTES: usize = 8 << 20;
/// The most entries one read of a stream asks for.
const MAX_PAGE: usize = 256;
/// How often links are checked: reconnects due, commands overdue, pings.
const TICK: Duration = Duration::from_millis(250);

/// A shard's two links.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum LinkKind {
    /// Scripts and pings, pipelined, replies matched in order.
    Cmd,
    /// Pub/sub: confirmations and messages pushed to the node.
    Sub,
}

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
    /// A channel of a `/ws` socket catching up (`mux_catchup.rs`).
    Mux(ConnId, u32),
    /// A Bayeux subscription resumed with `ext.halley.since`.
    Session(crate::bayeux::Resume),
    /// A channel followed through a Bayeux wildcard pattern.
    Pattern,
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
    /// Channels of `/ws` sockets not yet caught up with their feed.
    mux_catchups: HashMap<mux_catchup::Key, MuxCatchUp>,
    /// The last `MuxCatchUp::serial` given.
    mux_serial: u32,
    /// Redis patterns for Bayeux wildcard subscriptions, with how many
    /// subscription patterns need each; ordered, so that of several patterns
    /// matching a channel one is always the first (`feed::on_pattern_message`).
    patterns: BTreeMap<String, bayeux::PatternSub>,
    /// Channels that reach this node through Bayeux wildcard patterns only,
    /// each with its position (`bayeux::MAX_PATTERN_CHANNELS` at most).
    pattern_channels: HashMap<Rc<str>, Merge>,
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
                cmd: Link::new(
                    name.clone(),
                    addr,
                    token(i, LinkKind::Cmd),
                    cmd_setup,
                    seed,
                    now,
                ),
                sub: Link::new(
                    name,
                    addr,
                    token(i, LinkKind::Sub),
                    setup,
                    seed ^ 0x5555,
                    now,
                ),
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
            mux_catchups: HashMap::new(),
            mux_serial: 0,
            patterns: BTreeMap::new(),
            held_replies: HashMap::new(),
            pattern_channels: HashMap::new(),
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
                reader: Reader::Mux(id, serial),
                count,
            } => {
                let key = (id, channel.clone());
                if let Some(after) = self
                    .mux_catchups
                    .get(&key)
                    .and_then(|c| c.reread_from(serial))
                {
                    self.send_read(&channel, Reader::Mux(id, serial), after, count, now);
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
            Op::Read {
                channel,
                reader: Reader::Pattern,
                count,
            } => {
                if let Some(merge) = self.pattern_channels.get_mut(&channel) {
                    let after = merge.reread();
                    self.send_read(&channel, Reader::Pattern, after, count, now);
                }
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
            "pattern_channels": self.pattern_channels.len(),
            "catching_up": self.catchups.len(),
            "ws_catching_up": self.mux_catchups.len(),
            "gaps": f.gaps,
        })
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
        self.drop_mux_catchups(id, now);
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

fn token(shard: usize, which: LinkKind) -> Token {
    Token(FIRST_TOKEN - 2 * shard - which as usize)
}

/// The shard and link of a token.
fn link_of(token: Token) -> (usize, LinkKind) {
    let n = FIRST_TOKEN - token.0;
    let which = match n % 2 {
        0 => LinkKind::Cmd,
        _ => LinkKind::Sub,
    };
    (n / 2, which)
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
            for which in [LinkKind::Cmd, LinkKind::Sub] {
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

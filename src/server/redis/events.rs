//! The Redis links' events on the loop: readiness (replies and pushes,
//! each handed to what it answers), a link that fails (what waited on it
//! fails or waits for the reconnect), the periodic check (`Timer::Redis`:
//! reconnects, overdue commands, pings, idle feeds), the last phase's
//! write of queued commands, and a request that waited past
//! `--redis-timeout`.

use mio::Token;
use serde_json::Value as Json;

use super::{link_of, Cluster, LinkKind, Op, Server, TICK};
use crate::conn_id::ConnId;
use crate::deadline::Timer;
use crate::redis::resp::Value;
use crate::redis::shard::shard_of;
use crate::server::conn::State;
use crate::server::respond::Ask;

impl Server {
    /// Readiness on a link: its replies and pushes, each acted on.
    pub(in crate::server) fn on_redis_ready(&mut self, token: Token) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        let (shard, which) = link_of(token);
        let mut replies = std::mem::take(&mut cluster.replies);
        let mut pushes = std::mem::take(&mut cluster.sub_replies);
        let link = &mut cluster.shards[shard];
        let was_up = (link.cmd.is_up(), link.sub.is_up());
        let result = match which {
            LinkKind::Cmd => link.cmd.on_ready(&mut replies),
            LinkKind::Sub => link.sub.on_ready(&mut pushes),
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
    pub(super) fn fail_link(&mut self, shard: usize, which: LinkKind, why: &str) {
        let registry = self.poll.registry();
        let cluster = self.cluster.as_mut().expect("a link failed");
        let now = self.now;
        if which == LinkKind::Sub {
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
    pub(super) fn on_lost_ops(&mut self, shard: usize, lost: Vec<Op>) {
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

    pub(super) fn on_redis_reply(&mut self, op: Op, value: Value) {
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
    pub(in crate::server) fn on_redis_tick(&mut self) {
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
                overdue.push((i, LinkKind::Cmd));
            } else if shard.cmd.is_up() && shard.cmd.in_flight() == 0 {
                shard.cmd.send(&[b"PING"], Op::Ping, now);
            }
            match shard.sub_ping {
                Some(at) if at + timeout <= now => overdue.push((i, LinkKind::Sub)),
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
        self.mux_catchup_timeouts();
        self.release_idle_feeds();
    }

    /// The loop's last phase with Redis: every command queued in this
    /// iteration goes out.
    pub(in crate::server) fn flush_redis(&mut self) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        for (shard, lost) in cluster.flush(self.poll.registry(), self.now) {
            self.on_lost_ops(shard, lost);
        }
    }

    /// A publisher or deleter waited past `--redis-timeout`.
    pub(in crate::server) fn on_redis_wait_timeout(&mut self, id: ConnId) {
        let Some(cluster) = self.cluster.as_mut() else {
            return self.close(id);
        };
        cluster.figures.timeouts += 1;
        if self.on_held_reply_timeout(id) {
            return;
        }
        let cluster = self.cluster.as_mut().expect("checked");
        let keep_alive = match self.conns.get(id).map(|c| c.state()) {
            Some(State::Waiting { keep_alive }) => *keep_alive,
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
    pub(super) fn redis_unavailable(&mut self, id: ConnId, ask: Ask, why: &str) {
        let reject = crate::http::Reject::new(503, why).with_retry_after(1);
        self.reject(id, reject, ask);
    }

    /// Does connection `id` still wait for Redis?
    pub(super) fn is_waiting(&mut self, id: ConnId) -> bool {
        matches!(
            self.conns.get(id).map(|c| c.state()),
            Some(State::Waiting { .. })
        )
    }

    pub(in crate::server) fn redis_stats(&self) -> Option<Json> {
        self.cluster.as_ref().map(Cluster::stats_json)
    }

    pub(in crate::server) fn redis_healthy(&self) -> bool {
        self.cluster.as_ref().is_none_or(Cluster::is_healthy)
    }
}

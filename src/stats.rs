//! Counters for every outcome the server has (deliveries, closes, rejections
//! by status, accept errors) and the `/stats` JSON built from them.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::metrics::Histogram;

#[derive(Default, Debug)]
pub struct Counters {
    pub accepted: u64,
    pub delivered: u64,
    pub slow_consumer_closes: u64,
    pub accept_errors: u64,
    /// Connections accepted on the spare descriptor while out of them, and
    /// refused (`503`).
    pub refused_out_of_fds: u64,
    /// Connections refused (`429`) for `--max-connections-per-ip`.
    pub per_ip_refused: u64,
    pub timeouts: u64,
    /// Connections closed because a queued response took no progress for
    /// `--send-timeout`.
    pub send_timeouts: u64,
    /// Readiness turns that spent their budget and handed the connection
    /// back to the loop, to be driven again after the others.
    pub budget_yields: u64,
    /// Kept-alive connections closed after `--idle-timeout` without a request.
    pub idle_closes: u64,
    /// Long-polls answered `204` after `--longpoll-timeout` with nothing new.
    pub poll_timeouts: u64,
    /// Held Bayeux connects answered empty at their deadline.
    pub connect_timeouts: u64,
    /// Closing connections whose client had not closed by the end of the linger.
    pub linger_closes: u64,
    /// Error responses by status code.
    pub rejections: BTreeMap<u16, u64>,
    /// Connections upgraded to WebSocket (`101` sent).
    pub ws_upgrades: u64,
    /// WebSockets closed for breaking the protocol: 1002, 1007, and 1009
    /// for a message over `--ws-max-message`.
    pub ws_protocol_closes: u64,
    /// WebSockets closed for leaving two heartbeat pings unanswered.
    pub ws_pong_timeouts: u64,
    /// `/ws` commands received, and those refused with an error.
    pub mux_commands: u64,
    pub mux_errors: u64,
    /// `/ws` subscribes refused for `mux::MAX_CHANNELS` (also in `mux_errors`).
    pub mux_channels_refused: u64,
    /// Publishes answered from an earlier publish with the same
    /// `Idempotency-Key`, publishing nothing.
    pub idempotent_replays: u64,
    /// Held subscriptions (SSE, stream, long-poll) ended because their
    /// signed token ended (`--token-secret`).
    pub token_expired: u64,
    /// From a message handed to `deliver` to the last write of its fan-out.
    pub fanout: Histogram,
    /// From a `POST /pub` read to its `201`, any Redis round trip included.
    pub publish: Histogram,
}

impl Counters {
    pub fn reject(&mut self, status: u16) {
        *self.rejections.entry(status).or_default() += 1;
    }
}

/// Open connections by what they are doing.
#[derive(Default, Debug, Clone, Copy)]
pub struct ConnCounts {
    pub sse: u64,
    pub stream: u64,
    pub longpoll: u64,
    /// WebSockets, whatever their role.
    pub websocket: u64,
    /// Held Bayeux connects.
    pub bayeux: u64,
    /// Reading requests, idle keep-alive, or closing.
    pub other: u64,
}

/// Entries in the deadline queue by what they are for: stale ones included,
/// since they cost memory until they come up.
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeadlineCounts {
    pub conn: u64,
    /// Channel message expiry.
    pub channel: u64,
    /// Bayeux session expiry.
    pub session: u64,
    /// Accept back-off and the shutdown limit.
    pub other: u64,
}

/// Everything `/stats` reports, gathered by the server.
pub struct Snapshot<'a> {
    pub conns: ConnCounts,
    pub deadlines: DeadlineCounts,
    pub channels: usize,
    pub published: u64,
    /// Messages dropped from a full buffer, and past their TTL.
    pub evicted: u64,
    pub expired: u64,
    pub bytes_queued: u64,
    pub rss_bytes: u64,
    pub uptime_secs: u64,
    pub counters: &'a Counters,
    pub limits: LimitFigures,
    pub bayeux: BayeuxFigures<'a>,
    /// With `--redis`: the links and what waits on them.
    pub redis: Option<Value>,
    /// Which worker answers (1 to `workers`), so a client can tell which of
    /// the processes on one port served it; 1 of 1 without `--workers`.
    pub worker: usize,
    pub workers: usize,
    /// Times the supervisor has restarted this worker after it died.
    pub worker_restarts: u64,
}

/// The memory and fairness bounds: each figure now, its limit, and how
/// often it refused.
#[derive(Default, Debug, Clone, Copy)]
pub struct LimitFigures {
    pub channels: usize,
    /// `None` with Redis, which keeps channels and history (bounded there
    /// by `maxmemory`); the node's hub then holds only its subscribers.
    pub max_channels: Option<usize>,
    pub channels_refused: u64,
    /// Bytes of buffered messages, as the budget counts them (`hub::cost`).
    pub history_bytes: usize,
    pub max_history_bytes: Option<usize>,
    pub history_refused: u64,
    /// `None` when connections are not bounded per client.
    pub max_connections_per_ip: Option<u32>,
    /// Clients with a connection open, when they are bounded.
    pub clients: Option<usize>,
    pub per_ip_refused: u64,
    /// Connections refused on the spare descriptor while out of them.
    pub refused_out_of_fds: u64,
}

/// What the Bayeux engine reports: live sessions, connects held now, and its
/// counters.
pub struct BayeuxFigures<'a> {
    pub sessions: usize,
    pub held_connects: usize,
    pub stats: &'a crate::bayeux::Stats,
}

impl Snapshot<'_> {
    /// The `/stats` body. serde_json writes it: it is read on request only,
    /// and keeps the keys in the order written here (`preserve_order`).
    pub fn to_json(&self) -> Vec<u8> {
        let (c, d, b, n) = (self.conns, self.deadlines, &self.bayeux, self.counters);
        let rejections: serde_json::Map<String, Value> = n
            .rejections
            .iter()
            .map(|(status, count)| (status.to_string(), (*count).into()))
            .collect();
        let stats = json!({
            "connections": {
                "total": c.sse + c.stream + c.longpoll + c.websocket + c.bayeux + c.other,
                "sse": c.sse,
                "stream": c.stream,
                "longpoll": c.longpoll,
                "websocket": c.websocket,
                "bayeux": c.bayeux,
                "other": c.other,
            },
            "channels": self.channels,
            "messages_published": self.published,
            "messages_delivered": n.delivered,
            "messages_evicted": self.evicted,
            "messages_expired": self.expired,
            "bytes_queued": self.bytes_queued,
            "slow_consumer_closes": n.slow_consumer_closes,
            "connections_accepted": n.accepted,
            "accept_errors": n.accept_errors,
            "timeouts": n.timeouts,
            "send_timeouts": n.send_timeouts,
            "budget_yields": n.budget_yields,
            "idle_closes": n.idle_closes,
            "poll_timeouts": n.poll_timeouts,
            "connect_timeouts": n.connect_timeouts,
            "linger_closes": n.linger_closes,
            "idempotent_replays": n.idempotent_replays,
            "websocket": {
                "upgrades": n.ws_upgrades,
                "protocol_closes": n.ws_protocol_closes,
                "pong_timeouts": n.ws_pong_timeouts,
                "mux_commands": n.mux_commands,
                "mux_errors": n.mux_errors,
                "mux_channels_refused": n.mux_channels_refused,
            },
            "limits": {
                "channels": self.limits.channels,
                "max_channels": self.limits.max_channels,
                "channels_refused": self.limits.channels_refused,
                "history_bytes": self.limits.history_bytes,
                "max_history_bytes": self.limits.max_history_bytes,
                "history_refused": self.limits.history_refused,
                "max_connections_per_ip": self.limits.max_connections_per_ip,
                "clients": self.limits.clients,
                "per_ip_refused": self.limits.per_ip_refused,
                "refused_out_of_fds": self.limits.refused_out_of_fds,
            },
            "token_expired": n.token_expired,
            "deadlines": {
                "total": d.conn + d.channel + d.session + d.other,
                "conn": d.conn,
                "channel": d.channel,
                "session": d.session,
                "other": d.other,
            },
            "redis": self.redis,
            "bayeux": {
                "sessions": b.sessions,
                "held_connects": b.held_connects,
                "handshakes": b.stats.handshakes,
                "disconnects": b.stats.disconnects,
                "expired": b.stats.expired,
                "slow_sessions": b.stats.slow_sessions,
                "unknown_session": b.stats.unknown_session,
                "delivered": b.stats.delivered,
                "sessions_refused": b.stats.sessions_refused,
                "handshakes_refused": b.stats.handshakes_refused,
                "subscriptions_refused": b.stats.subscriptions_refused,
                "resumes_refused": b.stats.resumes_refused,
                "replayed": b.stats.replayed,
                "token_refused": b.stats.token_refused,
                "token_expired": b.stats.token_expired,
            },
            "worker": self.worker,
            "workers": self.workers,
            "worker_restarts": self.worker_restarts,
            "rss_bytes": self.rss_bytes,
            "uptime_secs": self.uptime_secs,
            "rejections": rejections,
        });
        serde_json::to_vec(&stats).expect("a JSON value always serializes")
    }
}

/// This process's resident set size, from `/proc/self/statm`.
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf only reads a system constant.
    let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(0) as u64;
    pages * page_size
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_json() {
        let mut counters = Counters {
            delivered: 5,
            ..Counters::default()
        };
        counters.reject(404);
        counters.reject(404);
        counters.reject(413);
        let snap = Snapshot {
            conns: ConnCounts {
                sse: 1,
                stream: 2,
                longpoll: 3,
                websocket: 6,
                bayeux: 5,
                other: 4,
            },
            deadlines: DeadlineCounts {
                conn: 4,
                channel: 2,
                session: 1,
                other: 0,
            },
            channels: 2,
            published: 3,
            evicted: 1,
            expired: 2,
            bytes_queued: 0,
            rss_bytes: 100,
            uptime_secs: 7,
            counters: &counters,
            limits: LimitFigures {
                history_bytes: 300,
                channels_refused: 4,
                ..LimitFigures::default()
            },
            bayeux: BayeuxFigures {
                sessions: 2,
                held_connects: 1,
                stats: &crate::bayeux::Stats {
                    handshakes: 3,
                    ..Default::default()
                },
            },
            redis: None,
            worker: 2,
            workers: 3,
            worker_restarts: 1,
        };
        let text = String::from_utf8(snap.to_json()).unwrap();
        assert!(text.starts_with(
            r#"{"connections":{"total":21,"sse":1,"stream":2,"longpoll":3,"websocket":6,"bayeux":5,"other":4},"channels":2,"#
        ));
        assert!(
            text.contains(r#""messages_evicted":1,"messages_expired":2,"#),
            "{text}"
        );
        assert!(
            text.contains(r#""limits":{"channels":0,"max_channels":null,"channels_refused":4,"history_bytes":300,"#),
            "{text}"
        );
        assert!(
            text.contains(r#""max_connections_per_ip":null,"clients":null,"#),
            "{text}"
        );
        assert!(
            text.contains(r#""deadlines":{"total":7,"conn":4,"channel":2,"session":1,"other":0},"#),
            "{text}"
        );
        assert!(
            text.contains(r#""bayeux":{"sessions":2,"held_connects":1,"handshakes":3,"#),
            "{text}"
        );
        assert!(
            text.contains(r#""worker":2,"workers":3,"worker_restarts":1,"rss_bytes":100,"#),
            "{text}"
        );
        assert!(
            text.ends_with(r#""uptime_secs":7,"rejections":{"404":2,"413":1}}"#),
            "{text}"
        );
        assert!(rss_bytes() > 0);
    }
}

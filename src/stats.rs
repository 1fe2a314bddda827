//! Counters for every outcome the server has (deliveries, closes, rejections
//! by status, accept errors) and the `/stats` JSON built from them.

use std::collections::BTreeMap;

use crate::json;

#[derive(Default, Debug)]
pub struct Counters {
    pub accepted: u64,
    pub delivered: u64,
    pub slow_consumer_closes: u64,
    pub accept_errors: u64,
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
    pub bayeux: BayeuxFigures<'a>,
}

/// What the Bayeux engine reports: live sessions, connects held now, and its
/// counters.
pub struct BayeuxFigures<'a> {
    pub sessions: usize,
    pub held_connects: usize,
    pub stats: &'a crate::bayeux::Stats,
}

impl Snapshot<'_> {
    pub fn to_json(&self) -> Vec<u8> {
        let c = self.conns;
        let mut out = Vec::with_capacity(512);
        let field = |out: &mut Vec<u8>, name: &str, n: u64| {
            json::push_str(out, name);
            out.push(b':');
            json::push_u64(out, n);
            out.push(b',');
        };
        out.extend_from_slice(b"{\"connections\":{");
        field(
            &mut out,
            "total",
            c.sse + c.stream + c.longpoll + c.bayeux + c.other,
        );
        field(&mut out, "sse", c.sse);
        field(&mut out, "stream", c.stream);
        field(&mut out, "longpoll", c.longpoll);
        field(&mut out, "bayeux", c.bayeux);
        field(&mut out, "other", c.other);
        out.pop();
        out.extend_from_slice(b"},");
        field(&mut out, "channels", self.channels as u64);
        field(&mut out, "messages_published", self.published);
        field(&mut out, "messages_delivered", self.counters.delivered);
        field(&mut out, "messages_evicted", self.evicted);
        field(&mut out, "messages_expired", self.expired);
        field(&mut out, "bytes_queued", self.bytes_queued);
        field(
            &mut out,
            "slow_consumer_closes",
            self.counters.slow_consumer_closes,
        );
        field(&mut out, "connections_accepted", self.counters.accepted);
        field(&mut out, "accept_errors", self.counters.accept_errors);
        field(&mut out, "timeouts", self.counters.timeouts);
        field(&mut out, "send_timeouts", self.counters.send_timeouts);
        field(&mut out, "budget_yields", self.counters.budget_yields);
        field(&mut out, "idle_closes", self.counters.idle_closes);
        field(&mut out, "poll_timeouts", self.counters.poll_timeouts);
        field(&mut out, "connect_timeouts", self.counters.connect_timeouts);
        field(&mut out, "linger_closes", self.counters.linger_closes);
        let d = self.deadlines;
        out.extend_from_slice(b"\"deadlines\":{");
        field(&mut out, "total", d.conn + d.channel + d.session + d.other);
        field(&mut out, "conn", d.conn);
        field(&mut out, "channel", d.channel);
        field(&mut out, "session", d.session);
        field(&mut out, "other", d.other);
        out.pop();
        out.extend_from_slice(b"},");
        let b = &self.bayeux;
        out.extend_from_slice(b"\"bayeux\":{");
        field(&mut out, "sessions", b.sessions as u64);
        field(&mut out, "held_connects", b.held_connects as u64);
        field(&mut out, "handshakes", b.stats.handshakes);
        field(&mut out, "disconnects", b.stats.disconnects);
        field(&mut out, "expired", b.stats.expired);
        field(&mut out, "slow_sessions", b.stats.slow_sessions);
        field(&mut out, "unknown_session", b.stats.unknown_session);
        field(&mut out, "delivered", b.stats.delivered);
        field(&mut out, "sessions_refused", b.stats.sessions_refused);
        field(&mut out, "handshakes_refused", b.stats.handshakes_refused);
        field(
            &mut out,
            "subscriptions_refused",
            b.stats.subscriptions_refused,
        );
        field(&mut out, "resumes_refused", b.stats.resumes_refused);
        field(&mut out, "replayed", b.stats.replayed);
        out.pop();
        out.extend_from_slice(b"},");
        field(&mut out, "rss_bytes", self.rss_bytes);
        field(&mut out, "uptime_secs", self.uptime_secs);
        out.extend_from_slice(b"\"rejections\":{");
        for (status, n) in &self.counters.rejections {
            field(&mut out, &status.to_string(), *n);
        }
        if !self.counters.rejections.is_empty() {
            out.pop();
        }
        out.extend_from_slice(b"}}");
        out
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
            bayeux: BayeuxFigures {
                sessions: 2,
                held_connects: 1,
                stats: &crate::bayeux::Stats {
                    handshakes: 3,
                    ..Default::default()
                },
            },
        };
        let text = String::from_utf8(snap.to_json()).unwrap();
        assert!(text.starts_with(
            r#"{"connections":{"total":15,"sse":1,"stream":2,"longpoll":3,"bayeux":5,"other":4},"channels":2,"#
        ));
        assert!(
            text.contains(r#""messages_evicted":1,"messages_expired":2,"#),
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
            text.ends_with(r#""uptime_secs":7,"rejections":{"404":2,"413":1}}"#),
            "{text}"
        );
        assert!(rss_bytes() > 0);
    }
}

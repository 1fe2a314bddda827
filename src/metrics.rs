//! `GET /metrics`: the Prometheus text exposition format (0.0.4) written from
//! the figures `/stats` reports, and the fixed-bucket latency histograms the
//! server records into. Pure: a `Histogram` is an array of counters, and
//! `exposition` turns a `stats::Snapshot` into the response body.
//!
//! Label values come from closed sets (a transport, a status code, a kind of
//! timeout), never from a request: a channel name as a label would let
//! clients grow every scraper's series without bound.

use std::fmt::Write;
use std::time::Duration;

use serde_json::Value;

use crate::stats::Snapshot;

/// The response's `Content-Type`, as Prometheus asks for this version.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Bucket upper bounds, in nanoseconds and as written in the `le` label:
/// from 50 us, a fan-out to a few subscribers, to 5 s, a publish stuck
/// behind a slow Redis. One table, so a bound and its label cannot drift.
const BUCKETS: [(u64, &str); 16] = [
    (50_000, "0.00005"),
    (100_000, "0.0001"),
    (250_000, "0.00025"),
    (500_000, "0.0005"),
    (1_000_000, "0.001"),
    (2_500_000, "0.0025"),
    (5_000_000, "0.005"),
    (10_000_000, "0.01"),
    (25_000_000, "0.025"),
    (50_000_000, "0.05"),
    (100_000_000, "0.1"),
    (250_000_000, "0.25"),
    (500_000_000, "0.5"),
    (1_000_000_000, "1"),
    (2_500_000_000, "2.5"),
    (5_000_000_000, "5"),
];

/// A latency histogram with fixed buckets. `observe` is a search of a
/// 16-entry table and two additions: no allocation, no syscall, so it can sit
/// on the fan-out path.
#[derive(Default, Debug, Clone)]
pub struct Histogram {
    /// Samples per bucket, not cumulative; the last is `+Inf`. The writer
    /// sums them into Prometheus's cumulative `le` buckets.
    counts: [u64; BUCKETS.len() + 1],
    sum_ns: u64,
}

impl Histogram {
    pub fn observe(&mut self, elapsed: Duration) {
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        // The first bound at or above the sample (`le` is inclusive), or +Inf.
        let bucket = BUCKETS.partition_point(|&(bound, _)| bound < ns);
        self.counts[bucket] += 1;
        self.sum_ns = self.sum_ns.saturating_add(ns);
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// The whole `/metrics` body.
pub fn exposition(s: &Snapshot) -> Vec<u8> {
    let (c, n, b) = (s.conns, s.counters, &s.bayeux);
    let mut w = Writer::default();

    w.family(
        "halley_connections",
        "gauge",
        "Open connections by what they are doing.",
    );
    for (transport, count) in [
        ("sse", c.sse),
        ("stream", c.stream),
        ("longpoll", c.longpoll),
        ("websocket", c.websocket),
        ("bayeux", c.bayeux),
        ("other", c.other),
    ] {
        w.sample("halley_connections", &[("transport", transport)], count);
    }
    w.counter(
        "halley_connections_accepted_total",
        "Connections accepted.",
        n.accepted,
    );
    w.counter(
        "halley_accept_errors_total",
        "Failed accepts.",
        n.accept_errors,
    );
    w.family(
        "halley_rejections_total",
        "counter",
        "Error responses by status.",
    );
    for (status, count) in &n.rejections {
        let status = status.to_string();
        w.sample("halley_rejections_total", &[("status", &status)], *count);
    }
    w.family(
        "halley_timeouts_total",
        "counter",
        "Connections ended or answered by a timeout, by which one.",
    );
    for (kind, count) in [
        ("request", n.timeouts),
        ("send", n.send_timeouts),
        ("idle", n.idle_closes),
        ("longpoll", n.poll_timeouts),
        ("connect", n.connect_timeouts),
        ("linger", n.linger_closes),
    ] {
        w.sample("halley_timeouts_total", &[("kind", kind)], count);
    }
    w.counter(
        "halley_slow_consumer_closes_total",
        "Streams closed for passing --max-queued-bytes.",
        n.slow_consumer_closes,
    );
    w.counter(
        "halley_websocket_upgrades_total",
        "Connections upgraded to WebSocket (/sub, /ws, /bayeux).",
        n.ws_upgrades,
    );
    w.counter(
        "halley_websocket_protocol_closes_total",
        "WebSockets closed for breaking RFC 6455 or their endpoint's protocol (1002, 1007, 1009).",
        n.ws_protocol_closes,
    );
    w.counter(
        "halley_websocket_pong_timeouts_total",
        "WebSockets closed for leaving two pings unanswered (1008).",
        n.ws_pong_timeouts,
    );
    w.counter(
        "halley_budget_yields_total",
        "Readiness turns that spent their budget.",
        n.budget_yields,
    );
    w.counter(
        "halley_messages_published_total",
        "Messages published.",
        s.published,
    );
    w.counter(
        "halley_messages_delivered_total",
        "Messages written to subscribers.",
        n.delivered,
    );
    w.counter(
        "halley_messages_evicted_total",
        "Messages dropped from a full buffer.",
        s.evicted,
    );
    w.counter(
        "halley_messages_expired_total",
        "Messages past their TTL.",
        s.expired,
    );
    w.counter(
        "halley_idempotent_replays_total",
        "Publishes answered from an earlier one with the same Idempotency-Key.",
        n.idempotent_replays,
    );
    w.gauge("halley_channels", "Channels in the hub.", s.channels as u64);
    let l = s.limits;
    w.gauge(
        "halley_history_bytes",
        "Bytes of buffered messages, as the history budget counts them.",
        l.history_bytes as u64,
    );
    // Without a bound (with Redis, which keeps the history), no series.
    if let Some(max) = l.max_channels {
        w.gauge(
            "halley_max_channels",
            "Channels past which a publish to a new one is refused (--max-channels).",
            max as u64,
        );
    }
    if let Some(max) = l.max_history_bytes {
        w.gauge(
            "halley_max_history_bytes",
            "Bytes of buffered messages past which a publish is refused (--max-history-bytes).",
            max as u64,
        );
    }
    w.family(
        "halley_limit_refusals_total",
        "counter",
        "Publishes and connections refused at a limit, by which one.",
    );
    for (limit, count) in [
        ("channels", l.channels_refused),
        ("history_bytes", l.history_refused),
        ("connections_per_ip", l.per_ip_refused),
        ("file_descriptors", l.refused_out_of_fds),
    ] {
        w.sample("halley_limit_refusals_total", &[("limit", limit)], count);
    }
    w.gauge(
        "halley_bytes_queued",
        "Output waiting in connections' queues.",
        s.bytes_queued,
    );
    w.gauge(
        "halley_resident_memory_bytes",
        "Resident set size.",
        s.rss_bytes,
    );
    w.gauge(
        "halley_uptime_seconds",
        "Seconds since start.",
        s.uptime_secs,
    );

    w.gauge(
        "halley_bayeux_sessions",
        "Live Bayeux sessions.",
        b.sessions as u64,
    );
    w.gauge(
        "halley_bayeux_held_connects",
        "Bayeux connects held now.",
        b.held_connects as u64,
    );
    w.counter(
        "halley_bayeux_handshakes_total",
        "Bayeux handshakes.",
        b.stats.handshakes,
    );
    w.counter(
        "halley_bayeux_delivered_total",
        "Messages queued into Bayeux sessions.",
        b.stats.delivered,
    );
    w.counter(
        "halley_bayeux_slow_sessions_total",
        "Bayeux sessions ended for a full queue.",
        b.stats.slow_sessions,
    );
    w.counter(
        "halley_bayeux_sessions_refused_total",
        "Bayeux handshakes refused for too many sessions.",
        b.stats.sessions_refused,
    );

    if let Some(r) = &s.redis {
        let get = |key: &str| r.get(key).and_then(Value::as_u64).unwrap_or(0);
        let connected = r.get("connected").and_then(Value::as_bool) == Some(true);
        w.gauge(
            "halley_redis_connected",
            "1 when every Redis link is up.",
            u64::from(connected),
        );
        w.gauge(
            "halley_redis_in_flight",
            "Redis commands awaiting a reply.",
            get("in_flight"),
        );
        w.counter(
            "halley_redis_reconnects_total",
            "Redis reconnections.",
            get("reconnects"),
        );
        w.counter(
            "halley_redis_publishes_total",
            "Publishes sent to Redis.",
            get("publishes"),
        );
        w.counter(
            "halley_redis_publish_failures_total",
            "Publishes Redis refused or never received.",
            get("publish_failures"),
        );
        w.counter(
            "halley_redis_timeouts_total",
            "Requests that waited past --redis-timeout.",
            get("timeouts"),
        );
        w.counter(
            "halley_redis_gaps_total",
            "Gaps in channel feeds.",
            get("gaps"),
        );
    }

    w.histogram(
        "halley_fanout_seconds",
        "From a message handed to deliver to the last write of its fan-out.",
        &n.fanout,
    );
    w.histogram(
        "halley_publish_seconds",
        "From a publish request read to its 201, including any Redis round trip.",
        &n.publish,
    );
    w.out.into_bytes()
}

/// Text in the exposition format, one family at a time.
#[derive(Default)]
struct Writer {
    out: String,
}

impl Writer {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        // Help texts are ours, with no backslash or newline to escape.
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.out.push_str(name);
        self.labels(labels);
        let _ = writeln!(self.out, " {value}");
    }

    fn labels(&mut self, labels: &[(&str, &str)]) {
        if labels.is_empty() {
            return;
        }
        self.out.push('{');
        for (i, (key, value)) in labels.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            // Values come from closed sets of plain words and numbers.
            let _ = write!(self.out, "{key}=\"{value}\"");
        }
        self.out.push('}');
    }

    fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, "counter", help);
        self.sample(name, &[], value);
    }

    fn gauge(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, "gauge", help);
        self.sample(name, &[], value);
    }

    fn histogram(&mut self, name: &str, help: &str, h: &Histogram) {
        self.family(name, "histogram", help);
        let bucket = format!("{name}_bucket");
        let mut cumulative = 0;
        for (i, (_, le)) in BUCKETS.iter().enumerate() {
            cumulative += h.counts[i];
            self.sample(&bucket, &[("le", le)], cumulative);
        }
        self.sample(&bucket, &[("le", "+Inf")], h.count());
        let sum = h.sum_ns as f64 / 1e9;
        let _ = writeln!(self.out, "{name}_sum {sum}");
        self.sample(&format!("{name}_count"), &[], h.count());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{BayeuxFigures, ConnCounts, Counters, DeadlineCounts, LimitFigures};

    #[test]
    fn observes_into_inclusive_buckets() {
        let us = Duration::from_micros;
        // (sample, index of its bucket; 16 is +Inf)
        let cases = [
            (Duration::ZERO, 0),
            (us(50), 0),
            (us(51), 1),
            (us(100), 1),
            (us(999), 4),
            (us(1000), 4),
            (Duration::from_millis(30), 9),
            (Duration::from_secs(1), 13),
            (Duration::from_secs(5), 15),
            (Duration::from_secs(6), 16),
            (Duration::MAX, 16),
        ];
        for (sample, bucket) in cases {
            let mut h = Histogram::default();
            h.observe(sample);
            assert_eq!(h.counts[bucket], 1, "{sample:?}");
            assert_eq!(h.count(), 1);
        }
    }

    #[test]
    fn bounds_rise_and_labels_match_them() {
        for pair in BUCKETS.windows(2) {
            assert!(pair[0].0 < pair[1].0);
        }
        for (ns, le) in BUCKETS {
            let secs: f64 = le.parse().unwrap();
            assert_eq!((secs * 1e9).round() as u64, ns, "{le}");
        }
    }

    fn snapshot<'a>(counters: &'a Counters, bayeux: &'a crate::bayeux::Stats) -> Snapshot<'a> {
        Snapshot {
            conns: ConnCounts {
                sse: 2,
                stream: 1,
                ..ConnCounts::default()
            },
            deadlines: DeadlineCounts::default(),
            channels: 3,
            published: 7,
            evicted: 0,
            expired: 0,
            bytes_queued: 10,
            rss_bytes: 4096,
            uptime_secs: 1,
            counters,
            limits: LimitFigures {
                history_bytes: 2048,
                max_history_bytes: Some(1 << 30),
                per_ip_refused: 3,
                ..LimitFigures::default()
            },
            bayeux: BayeuxFigures {
                sessions: 1,
                held_connects: 0,
                stats: bayeux,
            },
            redis: None,
            worker: 1,
            workers: 1,
            worker_restarts: 0,
        }
    }

    #[test]
    fn writes_the_exposition() {
        let mut counters = Counters::default();
        counters.reject(503);
        counters.reject(503);
        counters.delivered = 5;
        let bayeux = crate::bayeux::Stats::default();
        counters.fanout.observe(Duration::from_micros(40));
        counters.fanout.observe(Duration::from_micros(300));
        let text = exposition(&snapshot(&counters, &bayeux));
        let text = String::from_utf8(text).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for want in [
            "# TYPE halley_connections gauge",
            "halley_connections{transport=\"sse\"} 2",
            "halley_connections{transport=\"stream\"} 1",
            "halley_rejections_total{status=\"503\"} 2",
            "halley_messages_published_total 7",
            "halley_messages_delivered_total 5",
            "halley_channels 3",
            "halley_bytes_queued 10",
            "halley_bayeux_sessions 1",
            "halley_history_bytes 2048",
            "halley_max_history_bytes 1073741824",
            "halley_limit_refusals_total{limit=\"connections_per_ip\"} 3",
            "halley_limit_refusals_total{limit=\"channels\"} 0",
            "# TYPE halley_fanout_seconds histogram",
            "halley_fanout_seconds_bucket{le=\"0.00005\"} 1",
            "halley_fanout_seconds_bucket{le=\"0.00025\"} 1",
            "halley_fanout_seconds_bucket{le=\"0.0005\"} 2",
            "halley_fanout_seconds_bucket{le=\"+Inf\"} 2",
            "halley_fanout_seconds_sum 0.00034",
            "halley_fanout_seconds_count 2",
            "halley_publish_seconds_count 0",
        ] {
            assert!(lines.contains(&want), "missing {want:?} in\n{text}");
        }
        assert!(!text.contains("halley_redis_"), "no Redis without --redis");
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn writes_redis_figures_when_present() {
        let counters = Counters::default();
        let bayeux = crate::bayeux::Stats::default();
        let mut snap = snapshot(&counters, &bayeux);
        snap.redis = Some(serde_json::json!({
            "connected": true, "reconnects": 2, "in_flight": 1, "publishes": 9,
        }));
        let text = String::from_utf8(exposition(&snap)).unwrap();
        for want in [
            "halley_redis_connected 1",
            "halley_redis_reconnects_total 2",
            "halley_redis_in_flight 1",
            "halley_redis_publishes_total 9",
            "halley_redis_gaps_total 0",
        ] {
            assert!(text.lines().any(|l| l == want), "missing {want:?}");
        }
    }
}

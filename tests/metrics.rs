//! `GET /metrics` read by a real Prometheus parser (Python's
//! `prometheus_client`, which `scripts/test` installs): the body must parse,
//! and after a known sequence of requests the counters say what happened.
//! Without the parser the test fails: a skipped check would pass silently.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};

use common::redis::{next_event, node, RedisServer};
use common::*;

/// Parses an exposition with `prometheus_client` and prints every sample
/// as `[name, {labels}, value]`, and every family as `[name, type]`.
const PARSE: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
families, samples = [], []
for f in text_string_to_metric_families(sys.stdin.read()):
    families.append([f.name, f.type])
    for s in f.samples:
        samples.append([s.name, s.labels, s.value])
print(json.dumps({"families": families, "samples": samples}))
"#;

/// Samples by name and labels (`name{k="v",...}`, keys sorted), and family
/// types by name.
struct Parsed {
    samples: HashMap<String, f64>,
    types: HashMap<String, String>,
}

impl Parsed {
    #[track_caller]
    fn value(&self, key: &str) -> f64 {
        *self
            .samples
            .get(key)
            .unwrap_or_else(|| panic!("no sample {key}; have {:?}", self.samples.keys()))
    }
}

fn scrape(addr: SocketAddr) -> Parsed {
    let resp = get(addr, "/metrics");
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let mut python = Command::new("python3")
        .args(["-c", PARSE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    python.stdin.take().unwrap().write_all(&resp.body).unwrap();
    let out = python.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client could not parse /metrics (is it installed? scripts/test installs it):\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        resp.text()
    );
    let parsed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut samples = HashMap::new();
    for s in parsed["samples"].as_array().unwrap() {
        let mut labels: Vec<(String, String)> = s[1]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect();
        labels.sort();
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        let name = s[0].as_str().unwrap();
        let key = match labels.is_empty() {
            true => name.to_owned(),
            false => format!("{name}{{{}}}", labels.join(",")),
        };
        assert!(
            samples
                .insert(key.clone(), s[2].as_f64().unwrap())
                .is_none(),
            "duplicate sample {key}"
        );
    }
    let types = parsed["families"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f[0].as_str().unwrap().into(), f[1].as_str().unwrap().into()))
        .collect();
    Parsed { samples, types }
}

#[test]
fn websocket_upgrades_and_protocol_closes_are_counted() {
    use common::ws::Ws;
    let addr = start_default();
    let sub = Ws::connect(addr, &format!("/sub/{}", channel("metrics-ws")));
    let mut bayeux = Ws::connect(addr, "/bayeux");
    bayeux.send_text("not json");
    bayeux.expect_close(1007);
    let m = scrape(addr);
    assert_eq!(m.types["halley_websocket_upgrades"], "counter");
    assert_eq!(m.value("halley_websocket_upgrades_total"), 2.0);
    assert_eq!(m.value("halley_websocket_protocol_closes_total"), 1.0);
    assert_eq!(m.value("halley_websocket_pong_timeouts_total"), 0.0);
    assert_eq!(m.value("halley_connections{transport=\"websocket\"}"), 1.0);
    // The /sub socket was held open through the scrape, and is counted as open.
    drop(sub);
}

#[test]
fn counters_move_after_a_known_sequence_of_requests() {
    let addr = start_default();
    let before = scrape(addr);
    assert_eq!(before.value("halley_messages_published_total"), 0.0);
    assert_eq!(before.value("halley_fanout_seconds_count"), 0.0);

    let ch = channel("metrics");
    let mut subs = [Sub::sse(addr, &ch, "", &[]), Sub::sse(addr, &ch, "", &[])];
    for text in ["one", "two", "three"] {
        publish(addr, &ch, text);
    }
    for sub in &mut subs {
        for text in ["one", "two", "three"] {
            assert_eq!(sub.next_event().data(), text);
        }
    }
    get(addr, "/pub/no-such-channel").assert_error(404);

    let m = scrape(addr);
    assert_eq!(m.types["halley_connections"], "gauge");
    assert_eq!(m.types["halley_messages_published"], "counter");
    assert_eq!(m.types["halley_fanout_seconds"], "histogram");
    assert_eq!(m.value("halley_connections{transport=\"sse\"}"), 2.0);
    assert_eq!(m.value("halley_messages_published_total"), 3.0);
    assert_eq!(m.value("halley_messages_delivered_total"), 6.0);
    assert_eq!(m.value("halley_rejections_total{status=\"404\"}"), 1.0);
    // Two subscribers, three publishers, one rejected request, two scrapes.
    assert_eq!(m.value("halley_connections_accepted_total"), 8.0);
    assert_eq!(m.value("halley_channels"), 1.0);
    for histogram in ["halley_fanout_seconds", "halley_publish_seconds"] {
        assert_eq!(m.value(&format!("{histogram}_count")), 3.0, "{histogram}");
        assert_eq!(
            m.value(&format!("{histogram}_bucket{{le=\"+Inf\"}}")),
            3.0,
            "{histogram}"
        );
        let sum = m.value(&format!("{histogram}_sum"));
        assert!(sum > 0.0 && sum < 15.0, "{histogram}_sum {sum}");
    }
    assert!(
        !m.samples.keys().any(|k| k.contains(&ch)),
        "a channel name must never be a label"
    );
    assert!(
        !m.samples.keys().any(|k| k.starts_with("halley_redis_")),
        "no Redis figures without --redis"
    );
}

#[test]
fn with_redis_the_links_are_figures_too() {
    let redis = RedisServer::start();
    let a = node(std::slice::from_ref(&redis), &[]);
    let ch = channel("metrics-redis");
    let mut sub = Sub::sse(a.addr, &ch, "", &[]);
    wait_subscribers(a.addr, &ch, 1);
    publish(a.addr, &ch, "one");
    publish(a.addr, &ch, "two");
    // Each message comes back by pub/sub and is fanned out here; once the
    // subscriber has both, the loop has recorded both fan-outs.
    assert_eq!(next_event(&mut sub).data(), "one");
    assert_eq!(next_event(&mut sub).data(), "two");
    let m = scrape(a.addr);
    assert_eq!(m.value("halley_redis_connected"), 1.0);
    assert_eq!(m.value("halley_redis_publishes_total"), 2.0);
    assert_eq!(m.value("halley_redis_publish_failures_total"), 0.0);
    // Nothing waits but, at most, an idle link's health-check PING.
    assert!(m.value("halley_redis_in_flight") <= 1.0);
    // The publish latency includes the round trip to Redis; both were answered.
    assert_eq!(m.value("halley_publish_seconds_count"), 2.0);
    assert_eq!(m.value("halley_fanout_seconds_count"), 2.0);
    assert_eq!(m.value("halley_connections{transport=\"sse\"}"), 1.0);
}

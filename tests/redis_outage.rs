//! halley nodes when their Redis goes away, each test with its own
//! `redis-server` on a free port: a frozen or stopped Redis makes publishes
//! answer 503 within `--redis-timeout` and `/healthz` say 503, while held
//! subscribers stay connected on their heartbeats; Redis back with its data
//! catches every subscriber up with nothing lost and no gap; Redis back empty
//! gives every subscriber the `restarted` gap; and a node whose Redis is not
//! there yet starts anyway and recovers once it is.

mod common;

use std::time::{Duration, Instant};

use common::redis::{
    next_event, next_json, node, node_unready, redis_stats, wait_connected, RedisServer,
};
use common::*;
use serde_json::json;

/// Short timers, so an outage is noticed and heartbeats flow within a test.
const FAST: [&str; 4] = ["--redis-timeout", "0.5", "--heartbeat", "0.2"];
/// `--redis-timeout` above, plus a margin for a loaded machine: a publish
/// Redis does not answer is answered 503 by then (and not after the default
/// timeout of 2 s).
const UNANSWERED_BOUND: Duration = Duration::from_millis(1500);

/// Asserts the answer to a publish that Redis could not take: 503 with
/// `Retry-After` and a JSON error that names Redis.
#[track_caller]
fn assert_unavailable(resp: &Response) {
    resp.assert_error(503);
    let retry = resp.header("retry-after").expect("a Retry-After header");
    let retry: u64 = retry.parse().expect("Retry-After in seconds");
    assert!(retry >= 1, "Retry-After: {retry}");
    let message = resp.json()["error"].as_str().unwrap().to_lowercase();
    assert!(
        message.contains("redis"),
        "the error names redis: {message}"
    );
}

/// Publishes `data` on `channel` expecting Redis to be unavailable, and
/// returns how long the answer took.
#[track_caller]
fn publish_unavailable(node: &Proc, channel: &str, data: &str) -> Duration {
    let started = Instant::now();
    let resp = call(
        node.addr,
        "POST",
        &format!("/pub/{channel}"),
        &[],
        data.as_bytes(),
    );
    let took = started.elapsed();
    assert_unavailable(&resp);
    took
}

/// Waits until `/healthz` answers 503 `{"error":"redis unavailable"}`.
#[track_caller]
fn wait_unhealthy(node: &Proc) {
    wait_until("/healthz answers 503", || {
        get(node.addr, "/healthz").status == 503
    });
    let resp = get(node.addr, "/healthz");
    resp.assert_error(503);
    assert_eq!(resp.json(), json!({"error": "redis unavailable"}));
}

#[track_caller]
fn wait_healthy(node: &Proc) {
    wait_until("/healthz answers 200", || {
        get(node.addr, "/healthz").status == 200
    });
}

/// Asserts that the next SSE blocks and NDJSON lines are heartbeats: the
/// subscribers are held, and nothing else reaches them.
#[track_caller]
fn assert_heartbeats(sse: &mut Sub, stream: &mut Sub) {
    for _ in 0..2 {
        let block = sse.next_block();
        assert!(block.is_comment(), "a heartbeat, got {block:?}");
        assert_eq!(stream.next_line(), "", "a heartbeat line");
    }
}

/// Asserts that `ids` are one channel's consecutive ids.
#[track_caller]
fn assert_consecutive(ids: &[String]) {
    for pair in ids.windows(2) {
        assert_eq!(epoch_of(&pair[1]), epoch_of(&pair[0]), "{pair:?}");
        assert_eq!(seq_of(&pair[1]), seq_of(&pair[0]) + 1, "{pair:?}");
    }
}

/// The messages of one long-poll answer as (id, data) pairs, and its `next`.
#[track_caller]
fn poll_messages(body: &Value) -> (Vec<(String, String)>, String) {
    let messages = body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["id"].as_str().unwrap().to_owned(),
                m["data"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    (messages, body["next"].as_str().unwrap().to_owned())
}

#[test]
fn a_frozen_redis_is_answered_503_in_time_while_subscribers_keep_their_heartbeats() {
    let redis = RedisServer::start();
    let node = node(std::slice::from_ref(&redis), &FAST);
    let ch = channel("frozen");
    let mut sse = Sub::sse(node.addr, &ch, "", &[]);
    let mut stream = Sub::stream(node.addr, &ch, "");
    let before = publish(node.addr, &ch, "before");
    assert_eq!(next_event(&mut sse).id.as_deref(), Some(before.as_str()));
    assert_eq!(next_json(&mut stream)["id"], before.as_str());

    redis.pause();
    let took = publish_unavailable(&node, &ch, "unanswered");
    assert!(took < UNANSWERED_BOUND, "503 after {took:?}");
    wait_unhealthy(&node);
    assert_heartbeats(&mut sse, &mut stream);

    redis.resume();
    wait_healthy(&node);
    let after = publish(node.addr, &ch, "after");
    // The publish that timed out has an unknown outcome, as any timeout:
    // Redis may still run it once thawed. If it did, it comes first, in
    // order; either way nothing else does, and no gap.
    let mut seen = vec![before.clone()];
    loop {
        let ev = next_event(&mut sse);
        assert_eq!(ev.event, None, "no gap: {ev:?}");
        seen.push(ev.id.clone().unwrap());
        if ev.data() == "after" {
            break;
        }
        assert_eq!(ev.data(), "unanswered");
    }
    assert_eq!(seen.last(), Some(&after));
    assert_consecutive(&seen);
    loop {
        let line = next_json(&mut stream);
        if line["data"] == "after" {
            assert_eq!(line["id"], after.as_str());
            break;
        }
        assert_eq!(line["data"], "unanswered", "{line}");
    }
}

#[test]
fn redis_back_with_its_data_catches_every_subscriber_up_without_a_gap() {
    let mut redis = RedisServer::start();
    let a = node(std::slice::from_ref(&redis), &FAST);
    let b = node(std::slice::from_ref(&redis), &FAST);
    let ch = channel("back");
    let mut sse = Sub::sse(b.addr, &ch, "", &[]);
    let mut stream = Sub::stream(b.addr, &ch, "");
    let mut ids = vec![publish(a.addr, &ch, "m0")];
    assert_eq!(next_event(&mut sse).data(), "m0");
    assert_eq!(next_json(&mut stream)["data"], "m0");
    let mut poll = Client::connect(b.addr);
    poll.request("GET", &format!("/sub/{ch}?since={}", ids[0]), &[], b"");
    wait_subscribers(b.addr, &ch, 3);

    // B hears nothing live of m1..m5: it is frozen while Redis drops its
    // subscriber connection and A publishes, and Redis then stops. Only the
    // channel's history in Redis can bring them to B's subscribers.
    b.signal(libc::SIGSTOP);
    let dropped = redis.cmd(&["CLIENT", "KILL", "TYPE", "pubsub"]).int();
    assert!(dropped >= 1, "B's subscriber connection was dropped");
    ids.extend((1..=5).map(|i| publish(a.addr, &ch, &format!("m{i}"))));
    redis.stop_keep_data();
    b.signal(libc::SIGCONT);

    let took = publish_unavailable(&a, &ch, "refused");
    assert!(took < UNANSWERED_BOUND, "503 after {took:?}");
    wait_unhealthy(&a);
    wait_unhealthy(&b);
    wait_connected(&b, false);
    assert_heartbeats(&mut sse, &mut stream);

    redis.start_again();
    wait_connected(&a, true);
    wait_connected(&b, true);
    wait_healthy(&b);
    for (i, id) in ids.iter().enumerate().skip(1) {
        let ev = next_event(&mut sse);
        assert_eq!(ev.event, None, "no gap: {ev:?}");
        assert_eq!(ev.data(), format!("m{i}"));
        assert_eq!(ev.id.as_deref(), Some(id.as_str()));
        let line = next_json(&mut stream);
        assert_eq!(
            line,
            json!({"id": id, "channel": ch, "data": format!("m{i}")})
        );
    }
    // The held poll is answered from the history, then chained polls follow.
    let mut polled = Vec::new();
    let resp = poll.read_response();
    assert_eq!(resp.status, 200, "{resp:?}");
    let (mut got, mut next) = poll_messages(&resp.json());
    while polled.len() + got.len() < 5 {
        polled.append(&mut got);
        let body = get(b.addr, &format!("/sub/{ch}?since={next}")).json();
        assert!(body["gap"].is_null(), "no gap: {body}");
        (got, next) = poll_messages(&body);
    }
    polled.append(&mut got);
    let want: Vec<(String, String)> = (1..=5).map(|i| (ids[i].clone(), format!("m{i}"))).collect();
    assert_eq!(polled, want);

    // New publishes flow, on the same epoch.
    ids.push(publish(a.addr, &ch, "m6"));
    assert_consecutive(&ids);
    assert_eq!(next_event(&mut sse).id.as_deref(), Some(ids[6].as_str()));
    assert_eq!(next_json(&mut stream)["id"], ids[6].as_str());
    assert!(redis_stats(&b)["reconnects"].as_u64().unwrap() >= 1);
}

#[test]
fn redis_back_empty_gives_every_subscriber_a_restarted_gap() {
    let mut redis = RedisServer::start();
    let node = node(std::slice::from_ref(&redis), &FAST);
    let ch = channel("empty");
    let mut sse = Sub::sse(node.addr, &ch, "", &[]);
    let mut stream = Sub::stream(node.addr, &ch, "");
    let old: Vec<String> = (1..=3)
        .map(|i| publish(node.addr, &ch, &format!("m{i}")))
        .collect();
    for id in &old {
        assert_eq!(next_event(&mut sse).id.as_deref(), Some(id.as_str()));
        assert_eq!(next_json(&mut stream)["id"], id.as_str());
    }
    let cursor = old[2].clone();
    let mut poll = Client::connect(node.addr);
    poll.request("GET", &format!("/sub/{ch}?since={cursor}"), &[], b"");
    wait_subscribers(node.addr, &ch, 3);

    redis.stop_lose_data();
    wait_unhealthy(&node);
    redis.start_again();
    wait_connected(&node, true);
    let new = publish(node.addr, &ch, "m4");
    assert_ne!(epoch_of(&new), epoch_of(&cursor), "Redis lost the channel");

    // Each subscriber hears of the loss, from its own cursor, then goes on.
    let gap = next_event(&mut sse);
    assert_eq!(gap.event.as_deref(), Some("gap"), "{gap:?}");
    let info = parse_json(&gap.data());
    assert_eq!(keys(&info), vec!["reason", "missed", "cursor", "next"]);
    assert_eq!(info["reason"], "restarted");
    assert_eq!(info["cursor"], cursor.as_str());
    let next = info["next"].as_str().unwrap();
    assert_eq!(
        epoch_of(next),
        epoch_of(&new),
        "the gap resumes on the new epoch"
    );
    assert_eq!(gap.id.as_deref(), Some(next));
    let ev = next_event(&mut sse);
    assert_eq!((ev.data(), ev.id), ("m4".to_owned(), Some(new.clone())));

    let line = next_json(&mut stream);
    assert_eq!(keys(&line), vec!["gap"], "{line}");
    assert_eq!(line["gap"]["reason"], "restarted");
    assert_eq!(line["gap"]["cursor"], cursor.as_str());
    assert_eq!(next_json(&mut stream)["id"], new.as_str());

    let resp = poll.read_response();
    assert_eq!(resp.status, 200, "{resp:?}");
    let body = resp.json();
    assert_eq!(body["gap"]["reason"], "restarted", "{body}");
    assert_eq!(body["gap"]["cursor"], cursor.as_str());
    let (mut got, next) = poll_messages(&body);
    if got.is_empty() {
        // The gap was answered alone, before m4: its `next` resumes.
        let body = get(node.addr, &format!("/sub/{ch}?since={next}")).json();
        assert!(body["gap"].is_null(), "one gap only: {body}");
        got = poll_messages(&body).0;
    }
    assert_eq!(got, vec![(new.clone(), "m4".to_owned())]);

    // A client that comes back later with an old cursor is told too.
    let body = get(node.addr, &format!("/sub/{ch}?since={}", old[0])).json();
    assert_eq!(body["gap"]["reason"], "restarted", "{body}");
    assert_eq!(poll_messages(&body).0, vec![(new, "m4".to_owned())]);
}

#[test]
fn a_node_started_before_its_redis_listens_and_recovers_when_redis_comes() {
    let mut redis = RedisServer::unstarted();
    let node = node_unready(std::slice::from_ref(&redis), &FAST);
    let health = get(node.addr, "/healthz");
    health.assert_error(503);
    assert_eq!(health.json(), json!({"error": "redis unavailable"}));
    let stats = redis_stats(&node);
    assert_eq!(stats["connected"], false, "{stats}");
    assert_eq!(stats["shards"], 1, "{stats}");
    let ch = channel("late");
    publish_unavailable(&node, &ch, "too early");

    redis.start_again();
    wait_connected(&node, true);
    wait_healthy(&node);
    let mut sse = Sub::sse(node.addr, &ch, "", &[]);
    let id = publish(node.addr, &ch, "on time");
    let ev = next_event(&mut sse);
    assert_eq!((ev.data(), ev.id), ("on time".to_owned(), Some(id)));
}

/// A node with nothing to do still pings Redis every check; the pings must
/// be answered, not taken for a Redis that stopped answering. (An idle
/// pub/sub link is answered `+PONG`, not the `pong` push of subscribed mode:
/// once, that made every idle node drop and remake its link each timeout.)
#[test]
fn an_idle_node_keeps_its_links() {
    let redis = RedisServer::start();
    let node = node(std::slice::from_ref(&redis), &["--redis-timeout", "0.2"]);
    // Five timeouts' worth of pings with nothing else happening: the failure
    // this test is about shows only as time passes, so it lets time pass.
    std::thread::sleep(Duration::from_millis(1000));
    let stats = redis_stats(&node);
    assert_eq!(stats["connected"], true, "{stats}");
    assert_eq!(stats["reconnects"], 0, "{stats}");
    assert_eq!(stats["timeouts"], 0, "{stats}");
}

//! `POST /pub/{channel}` with `Idempotency-Key`: a retry within
//! `--idempotency-ttl` gets the first publish's `201` again and publishes
//! nothing; the same key with another body is `409`; a key is forgotten
//! after its TTL; with `--redis` the key lives in Redis, so a retry landing
//! on another node is caught as well.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::redis::{next_event, node, RedisServer};
use common::*;

fn post(addr: SocketAddr, channel: &str, key: &str, body: &str) -> Response {
    let header = format!("Idempotency-Key: {key}");
    call(
        addr,
        "POST",
        &format!("/pub/{channel}"),
        &[&header],
        body.as_bytes(),
    )
}

#[track_caller]
fn published(resp: &Response) -> Value {
    assert_eq!(resp.status, 201, "{resp:?}");
    resp.json()
}

#[test]
fn a_retry_with_the_same_key_gets_the_same_answer_and_publishes_nothing() {
    let addr = start_default();
    let ch = channel("idem");
    let mut sub = Sub::sse(addr, &ch, "", &[]);
    let first = post(addr, &ch, "order-1", "a");
    let retry = post(addr, &ch, "order-1", "a");
    assert_eq!(published(&first), published(&retry));
    assert_eq!(retry.body, first.body, "the first 201 body, byte for byte");
    publish(addr, &ch, "b");
    // One "a" only: the next event after it is the unkeyed publish.
    assert_eq!(sub.next_event().data(), "a");
    assert_eq!(sub.next_event().data(), "b");
    let s = stats(addr);
    assert_eq!(s["messages_published"], 2);
    assert_eq!(s["idempotent_replays"], 1);
}

#[test]
fn the_same_key_with_another_body_is_a_conflict() {
    let addr = start_default();
    let ch = channel("idem");
    let first = published(&post(addr, &ch, "k", "a"));
    post(addr, &ch, "k", "b").assert_error(409);
    // Keys are per channel: the same key elsewhere is a new publish.
    let other = published(&post(addr, &channel("idem-other"), "k", "b"));
    assert_ne!(other["channel"], first["channel"]);
    // The conflict changed nothing: a retry of the first still matches it.
    assert_eq!(published(&post(addr, &ch, "k", "a")), first);
    let s = stats(addr);
    assert_eq!(s["messages_published"], 2);
    assert_eq!(s["rejections"]["409"], 1);
}

#[test]
fn malformed_keys_are_refused() {
    let addr = start_default();
    let ch = channel("idem");
    let too_long = "k".repeat(129);
    for key in ["two words", too_long.as_str(), "caf\u{e9}"] {
        post(addr, &ch, key, "a").assert_error(400);
    }
    published(&post(addr, &ch, &"k".repeat(128), "a"));
    assert_eq!(stats(addr)["messages_published"], 1);
}

#[test]
fn a_key_is_forgotten_after_its_ttl() {
    let addr = start(Config {
        idempotency_ttl: Duration::from_millis(200),
        ..config()
    });
    let ch = channel("idem");
    let first = published(&post(addr, &ch, "k", "a"));
    // Retries within the TTL are answered from the first; once it has
    // passed, the same request publishes again, with a new id.
    let mut latest = first.clone();
    wait_until("the key expires and the retry publishes", || {
        latest = published(&post(addr, &ch, "k", "a"));
        latest["id"] != first["id"]
    });
    assert_eq!(next_seq(&first), seq_of(latest["id"].as_str().unwrap()));
    assert_eq!(stats(addr)["messages_published"], 2);
    // Expired, a key may be used for another body too.
    let again = Config {
        idempotency_ttl: Duration::from_millis(200),
        ..config()
    };
    let addr = start(again);
    published(&post(addr, &ch, "k2", "a"));
    wait_until("the key expires and another body is taken", || {
        post(addr, &ch, "k2", "b").status == 201
    });
}

#[test]
fn with_redis_a_retry_on_another_node_is_caught() {
    let redis = RedisServer::start();
    let (a, b) = (
        node(std::slice::from_ref(&redis), &["--idempotency-ttl", "60"]),
        node(std::slice::from_ref(&redis), &["--idempotency-ttl", "60"]),
    );
    let ch = channel("idem-redis");
    let mut sub = Sub::sse(b.addr, &ch, "", &[]);
    wait_subscribers(b.addr, &ch, 1);
    let first = post(a.addr, &ch, "order-7", "a");
    let retry = post(b.addr, &ch, "order-7", "a");
    assert_eq!(published(&first), published(&retry));
    assert_eq!(retry.body, first.body, "the first 201 body, byte for byte");
    post(b.addr, &ch, "order-7", "b").assert_error(409);
    post(a.addr, &ch, "order-7", "b").assert_error(409);
    publish(a.addr, &ch, "c");
    assert_eq!(next_event(&mut sub).data(), "a");
    assert_eq!(next_event(&mut sub).data(), "c");
    assert_eq!(stats(b.addr)["idempotent_replays"], 1);

    // What Redis keeps: the key, in the channel's slot, for the TTL.
    let key = format!("halley:{{{ch}}}:idem:order-7");
    let pttl = redis.cmd(&["PTTL", &key]).int();
    assert!(pttl > 0 && pttl <= 60_000, "PTTL {pttl}");
    let stored = redis.cmd(&["GET", &key]).text();
    let id = published(&first)["id"].as_str().unwrap().to_owned();
    let (epoch, seq) = id.split_once('-').unwrap();
    let epoch = epoch.trim_start_matches('0');
    assert!(
        stored.ends_with(&format!(" {epoch} {seq} 0")),
        "{stored:?} for {id}"
    );
}

#[test]
fn with_redis_a_key_expires_in_redis() {
    let redis = RedisServer::start();
    let a = node(std::slice::from_ref(&redis), &["--idempotency-ttl", "0.2"]);
    let ch = channel("idem-redis");
    let first = published(&post(a.addr, &ch, "k", "a"));
    // Set with an expiry (-1 would be none), or already gone (-2).
    let pttl = redis
        .cmd(&["PTTL", &format!("halley:{{{ch}}}:idem:k")])
        .int();
    assert!(pttl == -2 || (0..=200).contains(&pttl), "PTTL {pttl}");
    let mut latest = first.clone();
    wait_until("the key expires in Redis and the retry publishes", || {
        latest = published(&post(a.addr, &ch, "k", "a"));
        latest["id"] != first["id"]
    });
    // Every retry before that published nothing: the channel moved by one.
    assert_eq!(next_seq(&first), seq_of(latest["id"].as_str().unwrap()));
}

/// The sequence number after a `201`'s message id.
fn next_seq(reply: &Value) -> u64 {
    seq_of(reply["id"].as_str().unwrap()) + 1
}

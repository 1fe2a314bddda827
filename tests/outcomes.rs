//! Every way a message or a connection ends is counted in `/stats`: a
//! message evicted from a full buffer or expired past its TTL, a kept-alive
//! connection closed idle, a long-poll answered empty at its timeout, a
//! closing connection whose client never closed.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;

fn counter(addr: SocketAddr, name: &str) -> u64 {
    let resp = get(addr, "/stats");
    assert_eq!(resp.status, 200);
    let stats: serde_json::Value = serde_json::from_str(resp.text()).expect("stats JSON");
    stats[name]
        .as_u64()
        .unwrap_or_else(|| panic!("no {name} in {stats}"))
}

#[test]
fn evicted_and_expired_messages_are_counted() {
    let addr = start(Config {
        buffer: 2,
        message_ttl: Duration::from_millis(200),
        ..config()
    });
    let ch = channel("outcomes");
    for text in ["a", "b", "c"] {
        publish(addr, &ch, text);
    }
    assert_eq!(counter(addr, "messages_evicted"), 1);
    // The two left expire when the channel's timer comes up.
    wait_until("both buffered messages expire", || {
        counter(addr, "messages_expired") == 2
    });
}

#[test]
fn idle_closes_poll_timeouts_and_linger_closes_are_counted() {
    let addr = start(Config {
        idle_timeout: Duration::from_millis(100),
        longpoll_timeout: Duration::from_millis(100),
        ..config()
    });
    // Idle: a kept-alive connection that sends nothing more.
    let mut idle = Client::connect(addr);
    idle.request("GET", "/healthz", &[], b"");
    assert_eq!(idle.read_response().status, 200);
    idle.expect_closed();
    assert_eq!(counter(addr, "idle_closes"), 1);

    // A long-poll that nothing arrives for.
    let mut poll = Client::connect(addr);
    let path = format!("/sub/{}?transport=longpoll", channel("quiet"));
    poll.request("GET", &path, &[], b"");
    assert_eq!(poll.read_response().status, 204);
    assert_eq!(counter(addr, "poll_timeouts"), 1);

    // A client that asks to close but never does: the linger ends it.
    let mut lingering = Client::connect(addr);
    lingering.request("GET", "/healthz", &["Connection: close"], b"");
    assert_eq!(lingering.read_response().status, 200);
    wait_until("the linger ends the connection", || {
        counter(addr, "linger_closes") == 1
    });
}

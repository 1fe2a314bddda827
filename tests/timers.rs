//! The deadline queue stays small: a kept-alive connection, a channel deleted
//! and created again, and a Bayeux session each keep at most a couple of
//! entries however much traffic they see. Sizes are read from `/stats`
//! (`deadlines`), on a real server at `127.0.0.1:0`. And the timers still
//! fire when they should: a deadline moved later is kept, and a re-created
//! channel's messages expire.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{call, channel, config, get, start, wait_until, Client, Config};
use serde_json::{json, Value};

/// `/stats` `deadlines` as JSON, read on the test's own connection when one
/// is given, so no other connection adds an entry.
fn deadlines(client: &mut Client) -> Value {
    client.request("GET", "/stats", &[], b"");
    let resp = client.read_response();
    assert_eq!(resp.status, 200);
    let stats: Value = serde_json::from_str(resp.text()).expect("/stats is JSON");
    stats["deadlines"].clone()
}

fn count(d: &Value, kind: &str) -> u64 {
    d[kind]
        .as_u64()
        .unwrap_or_else(|| panic!("deadlines.{kind} in {d}"))
}

fn publish(addr: SocketAddr, channel: &str) {
    let resp = call(addr, "POST", &format!("/pub/{channel}"), &[], b"x");
    assert_eq!(resp.status, 201, "publish: {}", resp.text());
}

fn bayeux(client: &mut Client, messages: Value) -> Value {
    let body = messages.to_string();
    client.request(
        "POST",
        "/bayeux",
        &["Content-Type: application/json"],
        body.as_bytes(),
    );
    let resp = client.read_response();
    assert_eq!(resp.status, 200, "{}", resp.text());
    serde_json::from_str(resp.text()).expect("Bayeux reply is JSON")
}

#[test]
fn a_thousand_keep_alive_requests_leave_one_or_two_entries() {
    let addr = start(config());
    let mut client = Client::connect(addr);
    for _ in 0..1000 {
        client.request("GET", "/healthz", &[], b"");
        assert_eq!(client.read_response().status, 200);
    }
    let d = deadlines(&mut client);
    assert!(
        count(&d, "conn") <= 2,
        "one connection, {} entries: {d}",
        count(&d, "conn")
    );
    assert_eq!(count(&d, "total"), count(&d, "conn"), "{d}");
}

#[test]
fn deleting_and_recreating_a_channel_leaves_one_expiry_entry() {
    let addr = start(config());
    let name = channel("cycle");
    for _ in 0..50 {
        publish(addr, &name);
        let resp = call(addr, "DELETE", &format!("/pub/{name}"), &[], b"");
        assert!(resp.status < 300, "delete: {} {}", resp.status, resp.text());
    }
    publish(addr, &name);
    let mut client = Client::connect(addr);
    let d = deadlines(&mut client);
    assert!(
        count(&d, "channel") <= 2,
        "one channel, {} expiry entries: {d}",
        count(&d, "channel")
    );
}

#[test]
fn a_bayeux_session_keeps_one_expiry_entry_however_often_it_connects() {
    let addr = start(config());
    let mut client = Client::connect(addr);
    let mut sessions = Vec::new();
    for id in 0..3 {
        let reply = bayeux(
            &mut client,
            json!([{"channel": "/meta/handshake", "version": "1.0",
                    "supportedConnectionTypes": ["long-polling"], "id": id.to_string()}]),
        );
        let client_id = reply[0]["clientId"]
            .as_str()
            .expect("a clientId")
            .to_owned();
        sessions.push(client_id);
    }
    for round in 0..50 {
        for client_id in &sessions {
            // `timeout: 0` asks for an immediate answer, as CometD's first connect does.
            let reply = bayeux(
                &mut client,
                json!([{"channel": "/meta/connect", "clientId": client_id,
                        "connectionType": "long-polling", "advice": {"timeout": 0},
                        "id": format!("c{round}")}]),
            );
            assert_eq!(reply[0]["successful"], true, "{reply}");
        }
    }
    let d = deadlines(&mut client);
    assert_eq!(count(&d, "session"), 3, "one entry per session: {d}");
}

/// The header timeout armed at accept comes up early, after the response
/// moved the deadline to the (later) idle timeout: the entry must queue
/// itself again rather than close the connection then.
#[test]
fn a_deadline_moved_later_fires_at_its_new_time() {
    let idle = Duration::from_millis(600);
    let addr = start(Config {
        header_timeout: Duration::from_millis(200),
        idle_timeout: idle,
        ..config()
    });
    let mut client = Client::connect(addr);
    let sent = Instant::now();
    client.request("GET", "/healthz", &[], b"");
    assert_eq!(client.read_response().status, 200);
    client.expect_closed();
    assert!(
        sent.elapsed() >= idle,
        "closed after {:?}, before the idle timeout",
        sent.elapsed()
    );
}

/// A channel deleted and created again adopts the expiry entry its name
/// already has: the new channel's message still expires, the channel is
/// freed, and its entry ends rather than re-arming.
#[test]
fn a_recreated_channels_messages_still_expire() {
    let addr = start(Config {
        message_ttl: Duration::from_millis(300),
        ..config()
    });
    let name = channel("again");
    publish(addr, &name);
    let resp = call(addr, "DELETE", &format!("/pub/{name}"), &[], b"");
    assert!(resp.status < 300, "delete: {}", resp.status);
    publish(addr, &name);
    wait_until("the channel's message expires and frees it", || {
        get(addr, &format!("/pub/{name}")).status == 404
    });
    let mut client = Client::connect(addr);
    wait_until("its expiry entry ends", || {
        count(&deadlines(&mut client), "channel") == 0
    });
}

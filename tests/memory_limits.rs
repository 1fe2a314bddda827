//! The hub's memory bounds and the per-client connection bound, from outside:
//! `--max-channels` and `--max-history-bytes` (a publish past them gets 503,
//! `Retry-After` and a JSON error, and room comes back as channels are
//! deleted, expire or lose their last subscriber), and
//! `--max-connections-per-ip` (429, given back when connections close).
//! Every refusal is counted in `/stats` under `limits`.

mod common;

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::FromRawFd;
use std::time::Duration;

use common::*;
use serde_json::json;

/// A refused publish: 503, the wait, and which limit in the JSON error.
#[track_caller]
fn assert_full(r: &Response, says: &str) {
    r.assert_error(503);
    assert_eq!(r.header("retry-after"), Some("5"), "{r:?}");
    let error = r.json()["error"].as_str().unwrap().to_owned();
    assert!(error.contains(says), "{error}");
}

fn post(addr: SocketAddr, channel: &str, data: &str) -> Response {
    call(
        addr,
        "POST",
        &format!("/pub/{channel}"),
        &[],
        data.as_bytes(),
    )
}

#[test]
fn past_max_channels_a_new_channel_gets_503_until_one_is_deleted() {
    let addr = start(Config {
        max_channels: 2,
        ..config()
    });
    let (a, b, c) = (channel("a"), channel("b"), channel("c"));
    publish(addr, &a, "1");
    publish(addr, &b, "1");
    assert_full(&post(addr, &c, "1"), "limit of 2 channels");
    // Nothing was opened for it, and existing channels still take publishes.
    assert_eq!(get(addr, &format!("/pub/{c}")).status, 404);
    publish(addr, &a, "2");
    let s = stats(addr)["limits"].clone();
    assert_eq!(
        (
            s["channels"].clone(),
            s["max_channels"].clone(),
            s["channels_refused"].clone()
        ),
        (json!(2), json!(2), json!(1)),
        "{s}"
    );
    // Deleting a channel gives its place back at once.
    assert_eq!(
        call(addr, "DELETE", &format!("/pub/{a}"), &[], b"").status,
        204
    );
    publish(addr, &c, "1");
    assert_full(&post(addr, &a, "1"), "channels");
    assert_eq!(stats(addr)["limits"]["channels_refused"], 2);
}

#[test]
fn channels_freed_by_expiry_or_by_their_last_subscriber_leaving_make_room() {
    let addr = start(Config {
        max_channels: 1,
        message_ttl: Duration::from_millis(300),
        ..config()
    });
    let (a, b) = (channel("a"), channel("b"));
    publish(addr, &a, "1");
    assert_full(&post(addr, &b, "1"), "limit of 1 channels");
    // Its message expires and nobody holds it: the channel is freed.
    wait_until("the expired channel is freed", || {
        stats(addr)["limits"]["channels"] == 0
    });
    publish(addr, &b, "1");
    wait_until("b is freed too", || stats(addr)["limits"]["channels"] == 0);
    // A subscriber holds a channel open (subscribers are bounded by
    // connections, so subscribing is never refused), and its leaving frees it.
    let sub = Sub::sse(addr, &a, "", &[]);
    wait_subscribers(addr, &a, 1);
    assert_full(&post(addr, &b, "1"), "channels");
    drop(sub);
    wait_until("the unsubscribed channel is freed", || {
        stats(addr)["limits"]["channels"] == 0
    });
    publish(addr, &b, "2");
}

#[test]
fn past_max_history_bytes_a_full_buffer_makes_room_and_growth_gets_503() {
    // A message of 1000 bytes costs a little more as counted (its id, the
    // message itself): three fit in 4400 bytes and a fourth does not.
    let data = "x".repeat(1000);
    let addr = start(Config {
        buffer: 2,
        max_history_bytes: 4400,
        ..config()
    });
    let (a, b) = (channel("a"), channel("b"));
    publish(addr, &a, &data);
    publish(addr, &a, &data);
    publish(addr, &b, &data);
    let held = stats(addr)["limits"]["history_bytes"].as_u64().unwrap();
    assert!(
        (3000..=4400).contains(&held),
        "{held} bytes for three messages"
    );
    // Growth past the budget: refused on an existing channel and a new one.
    assert_full(
        &post(addr, &b, &data),
        "limit of 4400 bytes of message history",
    );
    assert_full(&post(addr, &channel("c"), &data), "message history");
    // A's buffer is full: its oldest message goes first (the buffer promises
    // only its last two), so the publish fits.
    let kept = publish(addr, &a, &data);
    let info = get(addr, &format!("/pub/{a}")).json();
    assert_eq!(
        (info["messages"].clone(), info["last_id"].clone()),
        (json!(2), json!(kept))
    );
    // B's one message was not trimmed for A's sake.
    assert_eq!(get(addr, &format!("/pub/{b}")).json()["messages"], 1);
    let s = stats(addr);
    assert_eq!(s["limits"]["history_refused"], 2, "{s}");
    assert_eq!(s["limits"]["history_bytes"], held, "{s}");
    assert_eq!(s["messages_evicted"], 1, "{s}");
    // Deleting a channel gives its bytes back.
    assert_eq!(
        call(addr, "DELETE", &format!("/pub/{b}"), &[], b"").status,
        204
    );
    publish(addr, &b, &data);
    // /metrics shows the same figures.
    let metrics = get(addr, "/metrics");
    for want in [
        "halley_max_history_bytes 4400".to_string(),
        format!("halley_history_bytes {held}"),
        "halley_limit_refusals_total{limit=\"history_bytes\"} 2".to_string(),
    ] {
        assert!(metrics.text().lines().any(|l| l == want), "no {want:?}");
    }
}

/// Bayeux's own error form: `successful: false` and `503:CHANNEL:REASON`.
#[track_caller]
fn assert_bayeux_full(reply: &Value, channel: &str, reason: &str) {
    assert_eq!(reply["successful"], false, "{reply}");
    assert_eq!(
        reply["error"],
        format!("503:/{channel}:{reason}"),
        "{reply}"
    );
}

#[test]
fn a_bayeux_publish_past_the_limits_is_refused_in_bayeux_form_and_stores_nothing() {
    let data = "x".repeat(1000);
    let addr = start(Config {
        max_channels: 2,
        max_history_bytes: 3600,
        ..config()
    });
    let a = channel("a");
    publish(addr, &a, "1");
    let mut c = Client::connect(addr);
    let replies = post_bayeux(
        &mut c,
        json!([{"channel": "/meta/handshake", "version": "1.0",
                "supportedConnectionTypes": ["long-polling"]}]),
    );
    let client_id = replies[0]["clientId"].as_str().unwrap().to_owned();
    let (b, d) = (channel("b"), channel("d"));
    let message = |ch: &str, id: &str| json!({"channel": format!("/{ch}"), "clientId": client_id, "id": id, "data": data});
    // One request: the first publish opens the last channel there is room
    // for, the second may go to it, the third would open another; then the
    // history fills (about 1200 bytes a message, 3600 in all).
    let replies = post_bayeux(
        &mut c,
        json!([
            message(&b, "1"),
            message(&b, "2"),
            message(&d, "3"),
            message(&a, "4")
        ]),
    );
    let by_id = |id: &str| {
        replies
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(by_id("1")["successful"], true, "{replies}");
    assert_eq!(by_id("2")["successful"], true, "{replies}");
    assert_bayeux_full(&by_id("3"), &d, "channels_full");
    assert_bayeux_full(&by_id("4"), &a, "history_full");
    // What was refused was not stored; what was admitted was.
    assert_eq!(get(addr, &format!("/pub/{d}")).status, 404);
    assert_eq!(get(addr, &format!("/pub/{b}")).json()["messages"], 2);
    assert_eq!(get(addr, &format!("/pub/{a}")).json()["messages"], 1);
}

/// A connection to `addr` from `source`, another loopback address: another
/// client, as far as per-client bounds go.
fn connect_from(source: Ipv4Addr, addr: SocketAddr) -> Client {
    let sockaddr = |ip: Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let SocketAddr::V4(to) = addr else {
        panic!("the test server listens on IPv4")
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: a new socket, and pointers to sockaddrs that outlive the calls.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let stream = TcpStream::from_raw_fd(fd);
        let from = sockaddr(source, 0);
        let bound = libc::bind(fd, (&from as *const libc::sockaddr_in).cast(), len);
        assert_eq!(
            bound,
            0,
            "bind {source}: {}",
            std::io::Error::last_os_error()
        );
        let to = sockaddr(*to.ip(), to.port());
        let connected = libc::connect(fd, (&to as *const libc::sockaddr_in).cast(), len);
        assert_eq!(connected, 0, "connect: {}", std::io::Error::last_os_error());
        Client::from_stream(stream)
    }
}

fn healthz(c: &mut Client) -> Response {
    c.request("GET", "/healthz", &[], b"");
    c.read_response()
}

#[test]
fn past_max_connections_per_ip_a_client_gets_429_and_its_places_come_back() {
    let addr = start(Config {
        max_connections_per_ip: Some(2),
        ..config()
    });
    let (one, two) = (Ipv4Addr::new(127, 0, 0, 1), Ipv4Addr::new(127, 0, 0, 2));
    let mut held: Vec<Client> = (0..2).map(|_| connect_from(one, addr)).collect();
    for c in &mut held {
        assert_eq!(healthz(c).status, 200);
    }
    let mut third = connect_from(one, addr);
    let r = healthz(&mut third);
    r.assert_error(429);
    assert!(r.closes(), "{r:?}");
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(r.text().contains("2 connections open"), "{}", r.text());
    third.expect_closed();
    // Another address is another client.
    let mut other = connect_from(two, addr);
    assert_eq!(healthz(&mut other).status, 200);
    other.request("GET", "/stats", &[], b"");
    let s = other.read_response().json()["limits"].clone();
    assert_eq!(
        (
            s["max_connections_per_ip"].clone(),
            s["clients"].clone(),
            s["per_ip_refused"].clone()
        ),
        (json!(2), json!(2), json!(1)),
        "{s}"
    );
    // A closed connection gives its place back.
    drop(held.pop());
    wait_until("a place comes back", || {
        healthz(&mut connect_from(one, addr)).status == 200
    });
}

#[test]
fn without_max_connections_per_ip_one_address_may_hold_many() {
    let addr = start_default();
    let mut held: Vec<Client> = (0..50).map(|_| Client::connect(addr)).collect();
    for c in &mut held {
        assert_eq!(healthz(c).status, 200);
    }
    let s = stats(addr)["limits"].clone();
    assert_eq!(
        (
            s["max_connections_per_ip"].clone(),
            s["per_ip_refused"].clone()
        ),
        (json!(null), json!(0))
    );
}

/// With Redis the history lives there, and so does its bound: Redis's
/// `maxmemory` with `noeviction`. A publish past it is refused by Redis and
/// answered 503 by the node; deleting a channel makes room again.
#[test]
fn with_redis_a_publish_past_maxmemory_gets_503_and_recovers() {
    let redis = common::redis::RedisServer::start();
    let used: u64 = redis
        .cmd(&["INFO", "memory"])
        .text()
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let max = (used + 2 * 1024 * 1024).to_string();
    redis.cmd(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
    redis.cmd(&["CONFIG", "SET", "maxmemory", &max]);
    let node = common::redis::node(std::slice::from_ref(&redis), &["--buffer", "1000"]);
    let ch = channel("big");
    let data = "x".repeat(100 * 1024);
    // 2 MiB of room: full well before 100 messages of 100 KiB.
    let refused = (0..100)
        .map(|_| post(node.addr, &ch, &data))
        .find(|r| r.status != 201)
        .expect("a publish refused past maxmemory");
    refused.assert_error(503);
    assert!(refused.has_header("retry-after"), "{refused:?}");
    assert_eq!(
        call(node.addr, "DELETE", &format!("/pub/{ch}"), &[], b"").status,
        204
    );
    publish(node.addr, &ch, &data);
    // The node's own bounds do not apply: it holds no history.
    let s = stats(node.addr)["limits"].clone();
    assert_eq!(
        (s["max_history_bytes"].clone(), s["history_bytes"].clone()),
        (json!(null), json!(0)),
        "{s}"
    );
}

//! The drain a SIGTERM starts: every client is told to come back at its own
//! random moment within `--drain-secs` (SSE by a last `retry:` line, a held
//! Bayeux connect by its advice's `interval`), the server exits 0 once they
//! are gone and within the window, and a second signal ends it at once.
//!
//! The spread is asserted loosely (many distinct values, reaching both ends
//! of the window), so a correct uniform draw cannot fail it in practice.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// Enough subscribers that the spread of their delays is a real sample.
const SSE_SUBSCRIBERS: usize = 300;
const BAYEUX_SESSIONS: usize = 60;
/// The window the tests drain over, in milliseconds.
const WINDOW_MS: u64 = 4000;

/// Asserts `delays` are spread over the window: at least 10 distinct values,
/// the least in its first quarter, the greatest in its last.
#[track_caller]
fn assert_spread(delays: &[u64]) {
    let distinct: BTreeSet<u64> = delays.iter().copied().collect();
    let (lo, hi) = (*distinct.first().unwrap(), *distinct.last().unwrap());
    assert!(
        distinct.len() >= 10,
        "only {} distinct delays",
        distinct.len()
    );
    assert!(hi <= WINDOW_MS, "a delay of {hi} ms is past the window");
    assert!(lo < WINDOW_MS / 4, "the least delay is {lo} ms");
    assert!(hi > WINDOW_MS * 3 / 4, "the greatest delay is {hi} ms");
}

fn start_draining_server(extra: &[&str]) -> Proc {
    let window = format!("{}", WINDOW_MS as f64 / 1000.0);
    let mut args = vec!["--drain-secs", window.as_str()];
    args.extend_from_slice(extra);
    Proc::start(&args)
}

#[test]
fn sse_subscribers_are_told_to_return_at_spread_moments_and_the_server_exits_0() {
    let mut proc = start_draining_server(&[]);
    let addr = proc.addr;
    let ch = channel("drain");
    let mut subs: Vec<Sub> = (0..SSE_SUBSCRIBERS)
        .map(|_| Sub::sse(addr, &ch, "", &[]))
        .collect();
    wait_subscribers(addr, &ch, SSE_SUBSCRIBERS as u64);

    proc.signal(libc::SIGTERM);
    let signalled = Instant::now();
    let mut delays = Vec::with_capacity(SSE_SUBSCRIBERS);
    for sub in &mut subs {
        delays.push(sub.expect_drain());
    }
    drop(subs);
    assert_spread(&delays);

    let window = Duration::from_millis(WINDOW_MS);
    let (status, _) = proc
        .wait_exit(window.saturating_sub(signalled.elapsed()))
        .expect("halley exits within the drain window");
    assert_eq!(status.code(), Some(0));
}

/// A minimal Bayeux long-polling client over the shared raw `Client`.
fn bayeux(c: &mut Client, messages: Value) -> Value {
    let body = messages.to_string();
    c.request(
        "POST",
        "/bayeux",
        &["Content-Type: application/json"],
        body.as_bytes(),
    );
    let r = c.read_response();
    assert_eq!(r.status, 200, "{r:?}");
    r.json()
}

/// A session whose first connect (answered at once) is done, and a second
/// connect sent on `c`, which the server holds.
fn held_session(addr: std::net::SocketAddr) -> Client {
    let mut c = Client::connect(addr);
    let hs = bayeux(
        &mut c,
        json!([{"channel": "/meta/handshake", "version": "1.0",
                "supportedConnectionTypes": ["long-polling"]}]),
    );
    let cid = hs[0]["clientId"].as_str().expect("a clientId").to_owned();
    let connect =
        json!([{"channel": "/meta/connect", "clientId": cid, "connectionType": "long-polling"}]);
    let first = bayeux(&mut c, connect.clone());
    assert_eq!(first[0]["successful"], true, "{first}");
    let body = connect.to_string();
    c.request(
        "POST",
        "/bayeux",
        &["Content-Type: application/json"],
        body.as_bytes(),
    );
    c
}

#[test]
fn held_bayeux_connects_are_advised_spread_intervals() {
    let mut proc = start_draining_server(&[]);
    let addr = proc.addr;
    let mut held: Vec<Client> = (0..BAYEUX_SESSIONS).map(|_| held_session(addr)).collect();
    wait_until("every connect is held", || {
        stats(addr)["bayeux"]["held_connects"].as_u64() == Some(BAYEUX_SESSIONS as u64)
    });

    proc.signal(libc::SIGTERM);
    let mut intervals = Vec::with_capacity(BAYEUX_SESSIONS);
    for c in &mut held {
        let r = c.read_response();
        assert_eq!(r.status, 200, "{r:?}");
        assert!(r.closes(), "a draining server keeps no connection: {r:?}");
        let reply = r.json();
        let advice = &reply[0]["advice"];
        assert_eq!(reply[0]["channel"], "/meta/connect", "{reply}");
        assert_eq!(advice["reconnect"], "retry", "{reply}");
        intervals.push(advice["interval"].as_u64().expect("an interval"));
    }
    drop(held);
    assert_spread(&intervals);
    let (status, _) = proc
        .wait_exit(Duration::from_millis(WINDOW_MS))
        .expect("halley exits within the drain window");
    assert_eq!(status.code(), Some(0));
}

/// A server draining over a minute, and a client it holds a 32 MB response
/// for that it does not read: the drain would wait for it until the send
/// timeout (30 s).
fn server_with_a_stuck_reader() -> (Proc, Client) {
    const MESSAGE_BYTES: usize = 4 * 1024 * 1024;
    let size = MESSAGE_BYTES.to_string();
    let proc = Proc::start(&["--drain-secs", "60", "--max-body", &size]);
    let addr = proc.addr;
    let ch = channel("second");
    let data = vec![b'x'; MESSAGE_BYTES];
    for _ in 0..8 {
        let r = call(addr, "POST", &format!("/pub/{ch}"), &[], &data);
        assert_eq!(r.status, 201, "{r:?}");
    }
    let mut stuck = Client::connect(addr);
    let path = format!("/sub/{ch}?transport=longpoll&since=earliest");
    stuck.request("GET", &path, &[], b"");
    assert_eq!(stuck.read_head().status, 200);
    (proc, stuck)
}

#[test]
fn a_second_sigterm_ends_the_drain_at_once() {
    let (mut proc, stuck) = server_with_a_stuck_reader();
    proc.signal(libc::SIGTERM);
    // Far shorter than the 30 s the queued answer holds the drain for.
    assert!(
        proc.wait_exit(Duration::from_millis(300)).is_none(),
        "the drain ended with a response still queued"
    );
    proc.signal(libc::SIGTERM);
    let (status, _) = proc
        .wait_exit(Duration::from_secs(2))
        .expect("a second SIGTERM ends the drain at once");
    assert_eq!(status.code(), Some(0));
    drop(stuck);
}

#[test]
fn sigterm_then_sigint_back_to_back_end_at_once() {
    // Both may reach the loop in one wake-up: they still count as two.
    let (mut proc, stuck) = server_with_a_stuck_reader();
    proc.signal(libc::SIGTERM);
    proc.signal(libc::SIGINT);
    let (status, _) = proc
        .wait_exit(Duration::from_secs(2))
        .expect("SIGINT during a drain ends it");
    assert_eq!(status.code(), Some(0));
    drop(stuck);
}

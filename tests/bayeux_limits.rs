//! The bounds `/bayeux` puts on what one client can make the server hold or
//! do, over raw sockets against a real server on `127.0.0.1:0`: channels per
//! subscribe and per session, handshakes per request and sessions per
//! address, each refused in Bayeux form inside HTTP 200 and counted in
//! `/stats`, and the replay work one request can ask for with resumed
//! subscriptions. Also the HTTP edges of the endpoint (`HEAD`, a `GET` without
//! `jsonp=`), published data keeping its key order, and the `Bearer` scheme
//! matched case-insensitively. Nothing sleeps to synchronise.

mod common;

use std::net::SocketAddr;

use common::{call, config, get, start, Client, Response};
use serde_json::{json, Value};

/// The engine's bounds, as the README documents them.
const MAX_SUBSCRIPTIONS_PER_SESSION: usize = 1_000;
const MAX_HANDSHAKES_PER_REQUEST: usize = 4;
const MAX_SESSIONS_PER_ADDR: usize = 1_000;
const MAX_RESUMES_PER_REQUEST: usize = 32;

fn body_json(r: &Response) -> Value {
    serde_json::from_str(r.text()).unwrap_or_else(|e| panic!("{e}: {}", r.text()))
}

/// One request's messages, on a keep-alive connection; the replies.
fn bayeux(c: &mut Client, messages: &Value) -> Vec<Value> {
    let body = messages.to_string();
    c.request(
        "POST",
        "/bayeux",
        &["Content-Type: application/json"],
        body.as_bytes(),
    );
    let r = c.read_response();
    assert_eq!(r.status, 200, "{}", r.text());
    match body_json(&r) {
        Value::Array(replies) => replies,
        other => panic!("not an array: {other}"),
    }
}

fn handshake_message() -> Value {
    json!({"channel": "/meta/handshake", "version": "1.0",
           "supportedConnectionTypes": ["long-polling"]})
}

fn handshake(c: &mut Client) -> String {
    let replies = bayeux(c, &json!([handshake_message()]));
    assert_eq!(replies[0]["successful"], true, "{}", replies[0]);
    replies[0]["clientId"].as_str().unwrap().to_string()
}

fn bayeux_stats(addr: SocketAddr) -> Value {
    let r = get(addr, "/stats");
    assert_eq!(r.status, 200);
    body_json(&r)["bayeux"].clone()
}

fn channels(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("/{prefix}/{i}")).collect()
}

#[test]
fn subscriptions_are_bounded_per_message_and_per_session() {
    let addr = start(config());
    let mut c = Client::connect(addr);
    let cid = handshake(&mut c);
    let subscribe = |subs: Vec<String>| json!([{"channel": "/meta/subscribe", "clientId": cid, "subscription": subs, "id": "s"}]);
    // One message naming more channels than a session may hold: refused whole.
    let r = bayeux(
        &mut c,
        &subscribe(channels("a", MAX_SUBSCRIPTIONS_PER_SESSION + 1)),
    );
    assert_eq!(r[0]["successful"], false, "{}", r[0]["error"]);
    assert_eq!(r[0]["error"], "403::too_many_subscriptions");
    assert_eq!(r[0]["id"], "s");
    // Up to the bound is fine, in one message (as Faye resubscribes).
    let r = bayeux(
        &mut c,
        &subscribe(channels("a", MAX_SUBSCRIPTIONS_PER_SESSION)),
    );
    assert_eq!(r[0]["successful"], true, "{}", r[0]["error"]);
    // One more channel is one too many for the session.
    let r = bayeux(&mut c, &subscribe(channels("b", 1)));
    assert_eq!(r[0]["successful"], false);
    assert_eq!(r[0]["error"], "403:/b/0:too_many_subscriptions");
    // Unsubscribing is bounded per message too.
    let unsub = json!([{"channel": "/meta/unsubscribe", "clientId": cid,
                        "subscription": channels("a", MAX_SUBSCRIPTIONS_PER_SESSION + 1)}]);
    let r = bayeux(&mut c, &unsub);
    assert_eq!(r[0]["error"], "403::too_many_subscriptions");
    assert_eq!(bayeux_stats(addr)["subscriptions_refused"], 3);
}

#[test]
fn handshakes_are_bounded_per_request_and_sessions_per_address() {
    let addr = start(config());
    let mut c = Client::connect(addr);
    let extra = 3;
    let batch = Value::Array(vec![
        handshake_message();
        MAX_HANDSHAKES_PER_REQUEST + extra
    ]);
    let r = bayeux(&mut c, &batch);
    assert_eq!(r.len(), MAX_HANDSHAKES_PER_REQUEST + extra);
    for ok in &r[..MAX_HANDSHAKES_PER_REQUEST] {
        assert_eq!(ok["successful"], true, "{ok}");
    }
    for refused in &r[MAX_HANDSHAKES_PER_REQUEST..] {
        assert_eq!(refused["successful"], false, "{refused}");
        assert_eq!(refused["error"], "403::too_many_handshakes");
        assert_eq!(refused["advice"]["reconnect"], "none");
        assert!(refused.get("clientId").is_none(), "{refused}");
    }
    let s = bayeux_stats(addr);
    assert_eq!(
        (&s["sessions"], &s["handshakes_refused"]),
        (&json!(MAX_HANDSHAKES_PER_REQUEST), &json!(extra))
    );

    // Fill this address's share, a request's worth of handshakes at a time.
    let full = Value::Array(vec![handshake_message(); MAX_HANDSHAKES_PER_REQUEST]);
    let mut sessions = MAX_HANDSHAKES_PER_REQUEST;
    while sessions < MAX_SESSIONS_PER_ADDR {
        let r = bayeux(&mut c, &full);
        assert!(r.iter().all(|m| m["successful"] == true), "at {sessions}");
        sessions += r.len();
    }
    assert_eq!(sessions, MAX_SESSIONS_PER_ADDR);
    // The next one is refused with advice to handshake again later.
    let r = bayeux(&mut c, &json!([handshake_message()]));
    assert_eq!(r[0]["successful"], false, "{}", r[0]);
    assert_eq!(r[0]["error"], "403::too_many_sessions");
    assert_eq!(r[0]["advice"]["reconnect"], "handshake");
    assert!(r[0]["advice"]["interval"].as_u64().unwrap() > 0);
    let s = bayeux_stats(addr);
    assert_eq!(s["sessions"], MAX_SESSIONS_PER_ADDR);
    assert_eq!(s["sessions_refused"], 1);
}

#[test]
fn head_does_not_act() {
    let addr = start(config());
    let handshake = "message=%5B%7B%22channel%22%3A%22%2Fmeta%2Fhandshake%22%7D%5D";
    let r = call(
        addr,
        "HEAD",
        &format!("/bayeux?jsonp=cb&{handshake}"),
        &[],
        b"",
    );
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, POST, OPTIONS"));
    assert_eq!(bayeux_stats(addr)["handshakes"], 0, "HEAD acted");
}

#[test]
fn get_is_only_the_jsonp_transport() {
    let addr = start(config());
    let handshake = "message=%5B%7B%22channel%22%3A%22%2Fmeta%2Fhandshake%22%7D%5D";
    let r = call(addr, "GET", &format!("/bayeux?{handshake}"), &[], b"");
    assert_eq!(r.status, 400);
    let error = body_json(&r)["error"].as_str().unwrap().to_string();
    assert!(error.contains("jsonp="), "{error}");
    assert_eq!(
        bayeux_stats(addr)["handshakes"],
        0,
        "a GET without jsonp= acted"
    );
    // With jsonp= the same GET is callback-polling and is served.
    let r = call(
        addr,
        "GET",
        &format!("/bayeux?jsonp=cb&{handshake}"),
        &[],
        b"",
    );
    assert_eq!(r.status, 200);
    assert!(r.text().starts_with("cb(["), "{}", r.text());
    assert_eq!(bayeux_stats(addr)["handshakes"], 1);
}

#[test]
fn published_data_keeps_its_key_order() {
    let addr = start(config());
    let mut c = Client::connect(addr);
    let cid = handshake(&mut c);
    let connect = json!({"channel": "/meta/connect", "clientId": cid,
                         "connectionType": "long-polling", "advice": {"timeout": 0}});
    bayeux(&mut c, &json!([connect]));
    // Written by hand: `json!` would build the map in whichever order its
    // build of serde_json keeps.
    let data = r#"{"zebra":1,"apple":{"y":2,"b":3},"mango":[{"k":1,"c":2}]}"#;
    let body = format!(
        r#"[{{"channel":"/meta/subscribe","clientId":"{cid}","subscription":"/fruit"}},
            {{"channel":"/fruit","clientId":"{cid}","data":{data}}}]"#
    );
    c.request(
        "POST",
        "/bayeux",
        &["Content-Type: application/json"],
        body.as_bytes(),
    );
    assert_eq!(c.read_response().status, 200);
    c.request(
        "POST",
        "/bayeux",
        &["Content-Type: application/json"],
        connect.to_string().as_bytes(),
    );
    let r = c.read_response();
    let text = r.text();
    assert!(
        text.contains(&format!(r#""data":{data}"#)),
        "keys reordered: {text}"
    );
}

#[test]
fn the_bearer_scheme_is_case_insensitive() {
    let addr = start(common::Config {
        publish_token: Some("s3cret".into()),
        ..config()
    });
    // (Authorization value, status)
    let cases = [
        ("Bearer s3cret", 201),
        ("bearer s3cret", 201),
        ("BEARER s3cret", 201),
        ("bEaReR s3cret", 201),
        ("bearer S3CRET", 401),
        ("Basic s3cret", 401),
    ];
    for (value, want) in cases {
        let auth = format!("Authorization: {value}");
        let r = call(addr, "POST", "/pub/news", &[&auth], b"x");
        assert_eq!(r.status, want, "{value}: {}", r.text());
    }
}

/// Publishes `n` messages on each of `channels` (Bayeux names) over one
/// keep-alive connection, so each channel has `n` of history.
fn fill_history(addr: SocketAddr, channels: &[String], n: usize) {
    let mut c = Client::connect(addr);
    for ch in channels {
        for i in 0..n {
            c.request(
                "POST",
                &format!("/pub{ch}"),
                &[],
                format!("{ch}#{i}").as_bytes(),
            );
            assert_eq!(c.read_response().status, 201);
        }
    }
}

fn resume_all(cid: &str, subs: &[String]) -> Value {
    json!({"channel": "/meta/subscribe", "clientId": cid, "subscription": subs,
           "ext": {"halley": {"since": "earliest"}}})
}

/// The reviewer's attack: one request of many subscribes, each resuming the
/// same channels from the earliest message. Each channel's history is
/// replayed once, so the session stays within its queue (before, every
/// message replayed it again, the queue overflowed and the session ended,
/// so the attack could be repeated for ever); what goes past
/// `MAX_RESUMES_PER_REQUEST` distinct channels is refused and counted.
#[test]
fn one_request_replays_each_channel_once_and_a_bounded_number_of_channels() {
    let addr = start(config());
    let history = 20;
    let resumed = channels("h", MAX_RESUMES_PER_REQUEST);
    fill_history(addr, &resumed, history);
    let mut c = Client::connect(addr);
    let cid = handshake(&mut c);

    // 200 messages x 32 channels x 20 messages would be 128,000 replayed.
    let repeats = 200;
    let attack = Value::Array(vec![resume_all(&cid, &resumed); repeats]);
    let r = bayeux(&mut c, &attack);
    assert_eq!(r.len(), repeats);
    assert!(r.iter().all(|m| m["successful"] == true), "{}", r[0]);
    let s = bayeux_stats(addr);
    assert_eq!(s["slow_sessions"], 0, "the session overflowed: {s}");
    assert_eq!(s["replayed"], MAX_RESUMES_PER_REQUEST * history, "{s}");

    // The session holds each channel's history once, in order.
    let connect = json!([{"channel": "/meta/connect", "clientId": cid,
                          "connectionType": "long-polling", "advice": {"timeout": 0}}]);
    let r = bayeux(&mut c, &connect);
    let got: Vec<&str> = r.iter().filter_map(|m| m["data"].as_str()).collect();
    let want: Vec<String> = resumed
        .iter()
        .flat_map(|ch| (0..history).map(move |i| format!("{ch}#{i}")))
        .collect();
    assert_eq!(got, want);

    // One channel more than the bound, in a later message of one request:
    // that message is refused whole, naming the channel past the bound.
    let mut more = channels("m", MAX_RESUMES_PER_REQUEST + 1);
    fill_history(addr, &more[MAX_RESUMES_PER_REQUEST..], history);
    let last = more.split_off(MAX_RESUMES_PER_REQUEST / 2);
    let batch = json!([
        resume_all(&cid, &more),
        resume_all(&cid, &last),
        resume_all(&cid, &more)
    ]);
    let r = bayeux(&mut c, &batch);
    assert_eq!(r[0]["successful"], true, "{}", r[0]);
    assert_eq!(r[1]["successful"], false, "{}", r[1]);
    assert_eq!(
        r[1]["error"],
        format!("403:/m/{MAX_RESUMES_PER_REQUEST}:too_many_resumes")
    );
    // Already resumed in this request: no room taken, accepted.
    assert_eq!(r[2]["successful"], true, "{}", r[2]);
    let s = bayeux_stats(addr);
    assert_eq!(s["resumes_refused"], 1, "{s}");
    assert_eq!(s["slow_sessions"], 0, "{s}");
    // The /m channels had no history but the last, which was refused.
    assert_eq!(s["replayed"], MAX_RESUMES_PER_REQUEST * history, "{s}");
    assert_eq!(get(addr, "/healthz").status, 200);
}

/// A history larger than the session's queue still ends the session (the
/// client learns it lost messages from the `402`), now that the server reads
/// only as much history as the queue could take: the resumes after the
/// overflow queue nothing and `replayed` counts only what fitted. (That they
/// also read and encode nothing is shown by the engine's unit test
/// `replay_stops_at_the_overflow_and_does_nothing_for_a_gone_session`.)
#[test]
fn resumes_after_the_session_overflowed_replay_nothing() {
    let addr = start(common::Config {
        max_queued_bytes: 4096,
        ..config()
    });
    let history = 100;
    let resumed = channels("o", 4);
    fill_history(addr, &resumed, history);
    let mut c = Client::connect(addr);
    let cid = handshake(&mut c);
    let r = bayeux(&mut c, &json!([resume_all(&cid, &resumed)]));
    assert_eq!(r[0]["successful"], true, "{}", r[0]);
    let s = bayeux_stats(addr);
    assert_eq!(s["slow_sessions"], 1, "{s}");
    assert_eq!(s["sessions"], 0, "{s}");
    // Fewer than one channel's history fits in 4 KB.
    let replayed = s["replayed"].as_u64().unwrap();
    assert!(replayed < history as u64, "{s}");
    assert_eq!(s["delivered"], replayed, "{s}");
}

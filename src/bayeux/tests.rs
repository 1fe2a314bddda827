//! Engine scenarios: whole requests through `Engine::handle` and the other
//! entry points, with `now` passed in so nothing sleeps.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::engine::{
    MAX_HANDSHAKES_PER_REQUEST, MAX_RESUMES_PER_REQUEST, MAX_SUBSCRIPTIONS_PER_MESSAGE,
    MAX_SUBSCRIPTIONS_PER_SESSION,
};
use super::*;
use crate::deadline::{Deadlines, Timer};

const SEC: Duration = Duration::from_secs(1);

/// The client address of every request unless a test says otherwise.
const PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

fn engine(config: Settings) -> Engine {
    let mut n = 0u128;
    Engine::new(
        config,
        Box::new(move || {
            n += 1;
            n
        }),
    )
}

fn handle(e: &mut Engine, conn: ConnId, msgs: Value, now: Instant) -> Outcome {
    let (msgs, framing) =
        wire::parse_post(Some("application/json"), msgs.to_string().as_bytes()).unwrap();
    e.handle(conn, Some(PEER), msgs, framing, now)
}

fn json_body(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap()
}

/// The replies of a request answered at once.
fn now_replies(o: &Outcome) -> Value {
    match &o.reply {
        Reply::Now { body, content_type } => {
            assert_eq!(*content_type, "application/json");
            json_body(body)
        }
        Reply::Hold { .. } => panic!("held, expected an answer"),
        Reply::Socket { .. } => panic!("framed for a socket, expected an HTTP answer"),
    }
}

fn handshake(e: &mut Engine, now: Instant) -> String {
    handshake_with(e, json!({}), now)
}

fn handshake_with(e: &mut Engine, ext: Value, now: Instant) -> String {
    let o = handle(
        e,
        1,
        json!([{"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": ["long-polling"], "id": "1", "ext": ext}]),
        now,
    );
    now_replies(&o)[0]["clientId"].as_str().unwrap().to_string()
}

fn connect(e: &mut Engine, conn: ConnId, cid: &str, now: Instant) -> Outcome {
    handle(
        e,
        conn,
        json!([{"channel": "/meta/connect", "clientId": cid, "connectionType": "long-polling", "id": "c"}]),
        now,
    )
}

fn subscribe(e: &mut Engine, cid: &str, sub: &str, now: Instant) -> Value {
    now_replies(&handle(
        e,
        9,
        json!([{"channel": "/meta/subscribe", "clientId": cid, "subscription": sub, "id": "s"}]),
        now,
    ))
}

/// A session whose first connect is done, so the next connect is held.
fn connected(e: &mut Engine, now: Instant) -> String {
    let cid = handshake(e, now);
    now_replies(&connect(e, 2, &cid, now));
    cid
}

fn hub_publish(e: &mut Engine, id: &str, channel: &str, data: Data) -> usize {
    e.on_publish(&HubMessage {
        id,
        channel,
        data,
        event: None,
    })
}

/// The `data` of every delivered message in a reply body, in order.
fn delivered(replies: &Value) -> Vec<Value> {
    replies
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| !m["channel"].as_str().unwrap().starts_with("/meta/"))
        .map(|m| m["data"].clone())
        .collect()
}

#[test]
fn handshake_reply_has_what_clients_need() {
    let mut e = engine(Settings::default());
    let t0 = Instant::now();
    let o = handle(
        &mut e,
        1,
        json!([{"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": ["long-polling"], "id": "1"}]),
        t0,
    );
    let r = &now_replies(&o)[0];
    assert_eq!(r["successful"], true);
    assert_eq!(r["id"], "1");
    assert_eq!(r["version"], "1.0");
    assert_eq!(
        r["supportedConnectionTypes"],
        json!(["long-polling", "callback-polling"])
    );
    assert_eq!(
        r["advice"],
        json!({"reconnect": "retry", "interval": 0, "timeout": 30000, "maxInterval": 10000})
    );
    let cid = r["clientId"].as_str().unwrap();
    assert_eq!(cid.len(), 32, "128 bits as hex");
    assert!(cid.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(e.n_sessions(), 1);
}

/// Per-message validation: each row is one message and the error it gets.
#[test]
fn message_validation() {
    let mut e = engine(Settings::default());
    let t0 = Instant::now();
    let cid = handshake(&mut e, t0);
    let cases = [
        (json!({"id": "1"}), "400::channel_missing"),
        (
            json!({"channel": "/meta/connect", "clientId": "forged"}),
            "402::session_unknown",
        ),
        (json!({"channel": "/meta/connect"}), "402::session_unknown"),
        (
            json!({"channel": "/meta/subscribe", "clientId": "forged", "subscription": "/a"}),
            "402::session_unknown",
        ),
        (
            json!({"channel": "/chat/x", "clientId": "forged", "data": 1}),
            "402::session_unknown",
        ),
        (
            json!({"channel": "/meta/disconnect", "clientId": "forged"}),
            "402::session_unknown",
        ),
        (
            json!({"channel": "/meta/subscribe", "clientId": cid}),
            "400::subscription_missing",
        ),
        (
            json!({"channel": "/meta/subscribe", "clientId": cid, "subscription": "/a b"}),
            "405:/a b:channel_invalid",
        ),
        (
            json!({"channel": "/meta/subscribe", "clientId": cid, "subscription": "/meta/**"}),
            "403:/meta/**:channel_forbidden",
        ),
        (
            json!({"channel": "/meta/subscribe", "clientId": cid, "subscription": "/service/x"}),
            "403:/service/x:channel_forbidden",
        ),
        (
            json!({"channel": "/meta/subscribe", "clientId": cid, "subscription": "/a/*", "ext": {"halley": {"since": "earliest"}}}),
            "400:/a/*:since_needs_a_channel",
        ),
        (
            json!({"channel": "/meta/unsubscribe", "clientId": cid, "subscription": "/a/*/b"}),
            "405:/a/*/b:channel_invalid",
        ),
        (
            json!({"channel": "/meta/bogus", "clientId": cid}),
            "405:/meta/bogus:channel_invalid",
        ),
        (
            json!({"channel": "/chat/*", "clientId": cid, "data": 1}),
            "405:/chat/*:channel_invalid",
        ),
        (
            json!({"channel": "/chat/x", "clientId": cid}),
            "400::data_missing",
        ),
        (
            json!({"channel": "/chat/x", "clientId": cid, "data": 1, "ext": {"halley": {"event": "a\nb"}}}),
            "400:/chat/x:event_invalid",
        ),
        (
            json!({"channel": "/chat/x", "clientId": cid, "data": 1, "ext": {"halley": {"event": "gap"}}}),
            "400:/chat/x:event_invalid",
        ),
        (
            json!({"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": ["websocket"]}),
            "400:websocket:connection_type_mismatch",
        ),
    ];
    for (msg, want) in cases {
        let o = handle(&mut e, 1, json!([msg.clone()]), t0);
        let r = &now_replies(&o)[0];
        assert_eq!(r["successful"], false, "{msg}");
        assert_eq!(r["error"], want, "{msg}");
        assert_eq!(
            r["channel"],
            msg.get("channel")
                .cloned()
                .unwrap_or(Value::String(String::new())),
            "{msg}"
        );
        if want.starts_with("402") {
            assert_eq!(r["advice"]["reconnect"], "handshake", "{msg}");
        }
        assert!(o.publishes.is_empty() && o.resumes.is_empty(), "{msg}");
    }
    assert_eq!(e.stats.unknown_session, 5);
}

#[test]
fn connects_are_answered_at_once_then_held() {
    let mut e = engine(Settings::default());
    let t0 = Instant::now();
    let cid = handshake(&mut e, t0);
    // The first connect is answered at once.
    let r = now_replies(&connect(&mut e, 2, &cid, t0));
    assert_eq!(r[0]["successful"], true);
    assert_eq!(r[0]["advice"]["reconnect"], "retry");
    // The next one is held for the advised timeout.
    let o = connect(&mut e, 3, &cid, t0);
    assert_eq!(
        o.reply,
        Reply::Hold {
            deadline: t0 + 30 * SEC
        }
    );
    assert_eq!(e.n_held(), 1);
    // A connect whose own advice says timeout 0 (CometD after a failure) is not held.
    let o = handle(
        &mut e,
        4,
        json!([{"channel": "/meta/connect", "clientId": cid, "advice": {"timeout": 0}, "id": "z"}]),
        t0,
    );
    assert_eq!(now_replies(&o)[0]["id"], "z");
    // ...and it released the held one: one outstanding connect per session.
    assert_eq!(o.released.len(), 1);
    assert_eq!(o.released[0].conn, 3);
    assert_eq!(json_body(&o.released[0].body)[0]["successful"], true);
    assert_eq!(e.n_held(), 0);
    // A client asking for a shorter hold gets it.
    let o = handle(
        &mut e,
        5,
        json!([{"channel": "/meta/connect", "clientId": cid, "advice": {"timeout": 5000}}]),
        t0,
    );
    assert_eq!(
        o.reply,
        Reply::Hold {
            deadline: t0 + 5 * SEC
        }
    );
}

#[test]
fn held_connect_times_out_with_an_empty_reply() {
    let mut e = engine(Settings::default());
    let t0 = Instant::now();
    let cid = connected(&mut e, t0);
    assert!(matches!(
        connect(&mut e, 3, &cid, t0).reply,
        Reply::Hold { .. }
    ));
    assert_eq!(e.on_connect_timeout(3, t0 + 29 * SEC), None, "not due yet");
    let resp = e.on_connect_timeout(3, t0 + 30 * SEC).unwrap();
    assert_eq!(resp.conn, 3);
    let r = json_body(&resp.body);
    assert_eq!(r.as_array().unwrap().len(), 1);
    assert_eq!(r[0]["channel"], "/meta/connect");
    assert_eq!(r[0]["id"], "c");
    assert_eq!(
        e.on_connect_timeout(3, t0 + 31 * SEC),
        None,
        "stale deadline"
    );
}

#[test]
fn publish_reaches_a_held_connect_on_flush() {
    let mut e = engine(Settings::default());
    let t0 = Instant::now();
    let cid = connected(&mut e, t0);
    subscribe(&mut e, &cid, "/chat/room1", t0);
    assert!(matches!(
        connect(&mut e, 3, &cid, t0).reply,
        Reply::Hold { .. }
    ));
    // Text from POST /pub arrives as a JSON string, JSON as its value.
    assert_eq!(
        hub_publish(&mut e, "e1-1", "chat/room1", Data::Text("hello")),
        1
    );
    assert_eq!(
        hub_publish(&mut e, "e1-2", "chat/room1", Data::Json(r#"{"n":2}"#)),
        1
    );
    assert_eq!(
        hub_publish(&mut e, "e1-3", "chat/other", Data::Text("x")),
        0
    );
    let out = e.flush(t0);
    assert_eq!(out.len(), 1, "both messages in one reply");
    let r = json_body(&out[0].body);
    assert_eq!(
        r[0],
        json!({"channel": "/chat/room1", "id": "e1-1", "data": "hello"})
    );
    assert_eq!(
        r[1],
        json!({"channel": "/chat/room1", "id": "e1-2", "data": {"n": 2}})
    );
    assert_eq!(r[2]["channel"], "/meta/connect");
    assert!(e.flush(t0).is_empty());
    // Queued while no connect is held: the next connect is answered at once.
    hub_publish(&mut e, "e1-4", "chat/room1", Data::Text("later"));
    assert!(e.flush(t0).is_empty());
    assert_eq!(
        delivered(&now_replies(&connect(&mut e, 4, &cid, t0))),
        [json!("later")]
    );
}

#[test]
fn bayeux_publish_goes_to_the_hub() {
    let mut e = engine(Settings::default());
    let t0 = Instant::now();
    let cid = handshake(&mut e, t0);
    let o = handle(
        &mut e,
        1,
        json!([
            {"channel": "/chat/room1", "clientId": cid, "data": {"text": "hi"}, "id": "p1", "ext": {"halley": {"event": "note"}}},
            {"channel": "/service/echo", "clientId": cid, "data": 1, "id": "p2"},
        ]),
        t0,
    );
    let r = now_replies(&o);
    assert_eq!(
        r[0],
        json!({"channel": "/chat/room1", "id": "p1", "successful": true})
    );
    assert_eq!(
        r[1],
        json!({"channel": "/service/echo", "id": "p2", "successful": true})
    );
    assert_eq!(
        o.publishes,
        [Publish {
            channel: "chat/room1".into(),
            json: r#"{"text":"hi"}"#.into(),
            event: Some("note".into())
        }],
        "service messages stay on the server"
    );
}

#[test]
fn wildcards_unsubscribe_and_dedup() {
    let mut e = engine(Settings::default());
    let t0 = Instant::now();
    let one = connected(&mut e, t0);
    let deep = connected(&mut e, t0);
    let both = connected(&mut e, t0);
    subscribe(&mut e, &one, "/a/*", t0);
    subscribe(&mut e, &deep, "/a/**", t0);
    let r = now_replies(&handle(
        &mut e,
        9,
        json!([{"channel": "/meta/subscribe", "clientId": both, "subscription": ["/a/*", "/a/**", "/a/b"]}]),
        t0,
    ));
    assert_eq!(
        r[0]["subscription"],
        json!(["/a/*", "/a/**", "/a/b"]),
        "Faye's array form echoed"
    );
    // (hub channel, sessions reached)
    let cases = [
        ("a/b", 3),
        ("a/b/c", 2),
        ("a", 0),
        ("ab/c", 0),
        ("meta/x", 0),
    ];
    for (i, (channel, want)) in cases.into_iter().enumerate() {
        assert_eq!(
            hub_publish(&mut e, &format!("id{i}"), channel, Data::Text("x")),
            want,
            "{channel}"
        );
    }
    // `both` got a/b once although three of its patterns match.
    assert_eq!(
        delivered(&now_replies(&connect(&mut e, 5, &both, t0))).len(),
        2
    );
    let r = now_replies(&handle(
        &mut e,
        9,
        json!([{"channel": "/meta/unsubscribe", "clientId": deep, "subscription": "/a/**", "id": "u"}]),
        t0,
    ));
    assert_eq!(r[0]["successful"], true);
    assert_eq!(
        hub_publish(&mut e, "z", "a/b/c", Data::Text("x")),
        1,
        "only `both` still matches a/b/c"
    );
}

#[test]
fn sessions_expire_after_max_interval_without_a_connect() {
    let config = Settings {
        max_interval: 10 * SEC,
        ..Settings::default()
    };
    let mut e = engine(config);
    let t0 = Instant::now();
    let idle = handshake(&mut e, t0);
    let held = connected(&mut e, t0);
    subscribe(&mut e, &idle, "/a", t0);
    assert!(matches!(
        connect(&mut e, 7, &held, t0 + 5 * SEC).reply,
        Reply::Hold { .. }
    ));
    let mut queue = Deadlines::new(t0);
    // (time, sessions ended by their timers)
    let steps = [(9, 0), (10, 1), (20, 0)];
    for (secs, want) in steps {
        let ended = run_timers(&mut e, &mut queue, t0 + secs * SEC);
        assert_eq!(ended, want, "at {secs}s");
        assert_eq!(queue.len(), e.n_sessions(), "one timer per session");
    }
    assert_eq!(
        e.n_sessions(),
        1,
        "a session holding a connect never expires"
    );
    assert_eq!(
        hub_publish(&mut e, "x", "a", Data::Text("x")),
        0,
        "the expired session's routes are gone"
    );
    let r = now_replies(&connect(&mut e, 8, &idle, t0 + 20 * SEC));
    assert_eq!(r[0]["error"], "402::session_unknown");
    // The held connect's client goes away: the clock starts when the connection closes.
    e.on_conn_closed(7, t0 + 21 * SEC);
    assert_eq!(e.n_held(), 0);
    assert_eq!(run_timers(&mut e, &mut queue, t0 + 30 * SEC), 0);
    assert_eq!(run_timers(&mut e, &mut queue, t0 + 31 * SEC), 1);
    assert_eq!(e.n_sessions(), 0);
    assert!(queue.is_empty());
    assert_eq!(e.stats.expired, 2);
}

/// The server's part in session expiry: sets the timers the engine asks for
/// and hands back those due at `now`. Returns how many sessions ended.
fn run_timers(e: &mut Engine, queue: &mut Deadlines, now: Instant) -> usize {
    queue.arm(&mut e.to_arm);
    let mut ended = 0;
    while let Some((_, timer)) = queue.pop_due(now) {
        let Timer::Session(id) = timer else {
            panic!("the engine sets only session timers: {timer:?}")
        };
        ended += usize::from(e.on_expiry_timer(&id, now));
        queue.arm(&mut e.to_arm);
    }
    ended
}

#[test]
fn a_session_keeps_one_expiry_timer_however_often_it_connects() {
    let mut e = engine(Settings {
        max_interval: 10 * SEC,
        ..Settings::default()
    });
    let t0 = Instant::now();
    let mut queue = Deadlines::new(t0);
    let cid = connected(&mut e, t0);
    for i in 1..=100 {
        let now = t0 + i * SEC / 10;
        let msgs = json!([{"channel": "/meta/connect", "clientId": cid,
                           "connectionType": "long-polling", "advice": {"timeout": 0}}]);
        let reply = now_replies(&handle(&mut e, 1, msgs, now));
        assert_eq!(reply[0]["successful"], true);
        assert_eq!(run_timers(&mut e, &mut queue, now), 0);
        assert_eq!(queue.len(), 1, "after connect {i}");
    }
    // The last connect, at 10 s, keeps the session until 20 s.
    assert_eq!(run_timers(&mut e, &mut queue, t0 + 20 * SEC - SEC / 10), 0);
    assert_eq!(run_timers(&mut e, &mut queue, t0 + 20 * SEC), 1);
    assert!(queue.is_empty());
}

#[test]
fn a_drain_releases_a_held_connect_with_the_interval_it_names() {
    let mut e = engine(Settings::default());
    let t0 = Instant::now();
    let cid = connected(&mut e, t0);
    assert!(matches!(
        connect(&mut e, 3, &cid, t0).reply,
        Reply::Hold { .. }
    ));
    let resp = e.release_conn(3, t0, 4321).unwrap();
    let advice = &json_body(&resp.body)[0]["advice"];
    assert_eq!(advice["reconnect"], "retry");
    assert_eq!(advice["interval"], 4321);
    assert_eq!(e.n_held(), 0);
    assert!(e.release_conn(3, t0, 1).is_none(), "released once");
}

#[test]
fn disconnect_ends_the_session_and_its_held_connect() {
    let mut e = engine(Settings::default());
    let t0 = Instant::now();
    let cid = connected(&mut e, t0);
    subscribe(&mut e, &cid, "/a", t0);
    assert!(matches!(
        connect(&mut e, 3, &cid, t0).reply,
        Reply::Hold { .. }
    ));
    let o = handle(
        &mut e,
        4,
        json!([{"channel": "/meta/disconnect", "clientId": cid, "id": "d"}]),
        t0,
    );
    assert_eq!(now_replies(&o)[0]["successful"], true);
    assert_eq!(o.released.len(), 1);
    assert_eq!(
        json_body(&o.released[0].body)[0]["advice"]["reconnect"],
        "none"
    );
    assert_eq!((e.n_sessions(), e.n_held()), (0, 0));
    assert_eq!(hub_publish(&mut e, "x", "a", Data::Text("x")), 0);
}

#[test]
fn publish_token_from_the_handshake_ext() {
    let config = Settings {
        publish_token: Some("s3cret".into()),
        ..Settings::default()
    };
    let mut e = engine(config);
    let t0 = Instant::now();
    let publish = |e: &mut Engine, cid: &str| {
        now_replies(&handle(
            e,
            1,
            json!([{"channel": "/a", "clientId": cid, "data": 1}]),
            t0,
        ))[0]
            .clone()
    };
    let with = handshake_with(&mut e, json!({"halley": {"token": "s3cret"}}), t0);
    assert_eq!(publish(&mut e, &with)["successful"], true);
    let without = handshake(&mut e, t0);
    assert_eq!(
        publish(&mut e, &without)["error"],
        "403:/a:publish_forbidden"
    );
    assert_eq!(
        subscribe(&mut e, &without, "/a", t0)[0]["successful"],
        true,
        "reading needs no token"
    );
    let o = handle(
        &mut e,
        1,
        json!([{"channel": "/meta/handshake", "ext": {"halley": {"token": "wrong"}}}]),
        t0,
    );
    let r = &now_replies(&o)[0];
    assert_eq!(
        (
            r["successful"].clone(),
            r["error"].clone(),
            r["advice"]["reconnect"].clone()
        ),
        (json!(false), json!("403::handshake_denied"), json!("none"))
    );
    assert_eq!(e.n_sessions(), 2);
}

/// CometD's AckExtension: a connect reply lost with its connection is sent again.
#[test]
fn ack_extension_redelivers_after_a_dropped_connect() {
    let mut e = engine(Settings::default());
    let t0 = Instant::now();
    let o = handle(
        &mut e,
        1,
        json!([{"channel": "/meta/handshake", "version": "1.0", "ext": {"ack": true}}]),
        t0,
    );
    let r = &now_replies(&o)[0];
    assert_eq!(r["ext"]["ack"], true);
    let cid = r["clientId"].as_str().unwrap().to_string();
    subscribe(&mut e, &cid, "/a", t0);
    let ack_connect = |e: &mut Engine, conn: ConnId, ack: u64| {
        handle(
            e,
            conn,
            json!([{"channel": "/meta/connect", "clientId": cid, "ext": {"ack": ack}}]),
            t0,
        )
    };
    let r = now_replies(&ack_connect(&mut e, 2, 0));
    assert_eq!(r[0]["ext"]["ack"], 1);
    assert!(matches!(
        ack_connect(&mut e, 3, 1).reply,
        Reply::Hold { .. }
    ));
    hub_publish(&mut e, "m1", "a", Data::Text("m1"));
    let out = e.flush(t0);
    let r = json_body(&out[0].body);
    assert_eq!(delivered(&r), [json!("m1")]);
    assert_eq!(r[1]["ext"]["ack"], 2);
    // That reply never reached the client: it connects again acknowledging batch 1 only,
    // and is answered at once with m1 again.
    let r = now_replies(&ack_connect(&mut e, 4, 1));
    assert_eq!(delivered(&r), [json!("m1")]);
    assert_eq!(r[1]["ext"]["ack"], 3);
    // Acknowledged now: the next connect is held with nothing to send.
    assert!(matches!(
        ack_connect(&mut e, 5, 3).reply,
        Reply::Hold { .. }
    ));
}

#[test]
fn a_full_queue_ends_the_session() {
    let config = Settings {
        max_queued_bytes: 400,
        ..Settings::default()
    };
    let mut e = engine(config);
    let t0 = Instant::now();
    let slow = handshake(&mut e, t0);
    let held = connected(&mut e, t0);
    subscribe(&mut e, &slow, "/a", t0);
    subscribe(&mut e, &held, "/a", t0);
    assert!(matches!(
        connect(&mut e, 3, &held, t0).reply,
        Reply::Hold { .. }
    ));
    let big = "x".repeat(150);
    for i in 0..3 {
        hub_publish(&mut e, &format!("m{i}"), "a", Data::Text(&big));
    }
    assert_eq!(e.stats.slow_sessions, 2);
    assert_eq!(e.n_sessions(), 0);
    // The held connect learns at once, with the 402 that makes its client handshake again.
    let out = e.flush(t0);
    assert_eq!(out.len(), 1);
    assert_eq!(json_body(&out[0].body)[0]["error"], "402::session_unknown");
    assert_eq!(
        now_replies(&connect(&mut e, 4, &slow, t0))[0]["error"],
        "402::session_unknown"
    );
}

#[test]
fn jsonp_held_connect_keeps_its_framing() {
    let mut e = engine(Settings::default());
    let t0 = Instant::now();
    let cid = connected(&mut e, t0);
    subscribe(&mut e, &cid, "/a", t0);
    let query = format!(
        "jsonp=cb_1&message={}",
        json!([{"channel": "/meta/connect", "clientId": cid}])
            .to_string()
            .replace('/', "%2F")
    );
    let (msgs, framing) = wire::parse_get(&query).unwrap();
    assert!(matches!(
        e.handle(3, Some(PEER), msgs, framing, t0).reply,
        Reply::Hold { .. }
    ));
    hub_publish(&mut e, "m", "a", Data::Text("x"));
    let out = e.flush(t0);
    assert_eq!(out[0].content_type, "text/javascript; charset=utf-8");
    let body = String::from_utf8(out[0].body.clone()).unwrap();
    assert!(
        body.starts_with("cb_1([{\"channel\":\"/a\"") && body.ends_with("]);"),
        "{body}"
    );
}

/// Faye batches a publish with its connect; the publish reply waits with the held connect.
#[test]
fn replies_batched_with_a_held_connect_wait_for_it() {
    let mut e = engine(Settings::default());
    let t0 = Instant::now();
    let cid = connected(&mut e, t0);
    let o = handle(
        &mut e,
        3,
        json!([
            {"channel": "/chat/x", "clientId": cid, "data": "d", "id": "p"},
            {"channel": "/meta/connect", "clientId": cid, "id": "c"},
        ]),
        t0,
    );
    assert!(matches!(o.reply, Reply::Hold { .. }));
    assert_eq!(o.publishes.len(), 1);
    let r = json_body(&e.on_connect_timeout(3, t0 + 30 * SEC).unwrap().body);
    assert_eq!(
        (r[0]["id"].clone(), r[1]["id"].clone()),
        (json!("p"), json!("c"))
    );
}

#[test]
fn resume_asks_the_hub_and_delivers_history_first() {
    let mut e = engine(Settings::default());
    let t0 = Instant::now();
    let cid = connected(&mut e, t0);
    let o = handle(
        &mut e,
        9,
        json!([{"channel": "/meta/subscribe", "clientId": cid, "subscription": "/chat/room1", "ext": {"halley": {"since": "e1-5"}}}]),
        t0,
    );
    let replay = Resume {
        client_id: cid.clone(),
        channel: "chat/room1".into(),
        since: Since::Id("e1-5".into()),
    };
    assert_eq!(o.resumes, std::slice::from_ref(&replay));
    let history = [
        HubMessage {
            id: "e1-6",
            channel: "chat/room1",
            data: Data::Text("six"),
            event: None,
        },
        HubMessage {
            id: "e1-7",
            channel: "chat/room1",
            data: Data::Text("seven"),
            event: Some("ev"),
        },
    ];
    e.on_replay(
        &replay,
        Some(json!({"lost_after": "e1-5", "resumed_from": "e1-6"})),
        history,
    );
    hub_publish(&mut e, "e1-8", "chat/room1", Data::Text("live"));
    let r = now_replies(&connect(&mut e, 4, &cid, t0));
    assert_eq!(
        r[0],
        json!({"channel": "/chat/room1", "data": null, "ext": {"halley": {"gap": {"lost_after": "e1-5", "resumed_from": "e1-6"}}}})
    );
    assert_eq!(r[2]["ext"]["halley"]["event"], "ev");
    assert_eq!(
        delivered(&r)[1..],
        [json!("six"), json!("seven"), json!("live")]
    );
}

/// With Redis (`clustered`) the history arrives after live messages may
/// have: those of the resuming channel wait, and follow the history without
/// the ones it already had; other channels are not held.
#[test]
fn a_clustered_resume_holds_live_messages_until_its_history() {
    let mut e = engine(Settings {
        clustered: true,
        ..Settings::default()
    });
    let t0 = Instant::now();
    let cid = connected(&mut e, t0);
    subscribe(&mut e, &cid, "/other", t0);
    let o = handle(
        &mut e,
        9,
        json!([{"channel": "/meta/subscribe", "clientId": cid, "subscription": "/chat/room1", "ext": {"halley": {"since": "e1-5"}}}]),
        t0,
    );
    let events: Vec<_> = e.route_events.drain(..).collect();
    assert!(
        events.contains(&("/chat/room1".to_string(), true)),
        "{events:?}"
    );
    let replay = o.resumes[0].clone();
    // Live while the history is read: 7 is also in the history, 8 is not.
    hub_publish(&mut e, "e1-7", "chat/room1", Data::Text("seven"));
    hub_publish(&mut e, "e1-8", "chat/room1", Data::Text("eight"));
    hub_publish(&mut e, "e9-1", "other", Data::Text("elsewhere"));
    let history = ["e1-6", "e1-7"].map(|id| HubMessage {
        id,
        channel: "chat/room1",
        data: Data::Text(if id == "e1-6" { "six" } else { "seven" }),
        event: None,
    });
    e.on_replay(&replay, None, history);
    hub_publish(&mut e, "e1-9", "chat/room1", Data::Text("nine"));
    let r = now_replies(&connect(&mut e, 4, &cid, t0));
    assert_eq!(
        delivered(&r),
        ["elsewhere", "six", "seven", "eight", "nine"].map(|d| json!(d))
    );
}

/// What the server does in the iteration a held connect's connection closes:
/// it tells the engine at once (`on_conn_closed`), before the flush phase.
/// Whether the publish comes before or after the close, the flush answers
/// nothing and the next connect gets the message.
#[test]
fn a_closed_held_connect_gets_no_reply_and_its_messages_wait() {
    for publish_first in [false, true] {
        let mut e = engine(Settings::default());
        let t0 = Instant::now();
        let cid = connected(&mut e, t0);
        subscribe(&mut e, &cid, "/chat/room1", t0);
        assert!(matches!(
            connect(&mut e, 3, &cid, t0).reply,
            Reply::Hold { .. }
        ));
        if publish_first {
            hub_publish(&mut e, "m1", "chat/room1", Data::Text("hello"));
            e.on_conn_closed(3, t0);
        } else {
            e.on_conn_closed(3, t0);
            hub_publish(&mut e, "m1", "chat/room1", Data::Text("hello"));
        }
        assert_eq!(e.n_held(), 0);
        assert!(e.flush(t0).is_empty(), "publish_first: {publish_first}");
        assert!(!e.needs_flush());
        assert_eq!(
            delivered(&now_replies(&connect(&mut e, 4, &cid, t0))),
            [json!("hello")],
            "publish_first: {publish_first}"
        );
    }
}

fn subscribe_many(e: &mut Engine, cid: &str, channels: &[String], now: Instant) -> Value {
    now_replies(&handle(
        e,
        9,
        json!([{"channel": "/meta/subscribe", "clientId": cid, "subscription": channels, "id": "s"}]),
        now,
    ))
}

fn channels(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("/{prefix}/{i}")).collect()
}

/// Subscriptions are bounded per message and per session; a refused
/// (un)subscribe changes nothing and is counted.
#[test]
fn subscriptions_are_bounded() {
    let mut e = engine(Settings::default());
    let t0 = Instant::now();
    let cid = handshake(&mut e, t0);
    let max = MAX_SUBSCRIPTIONS_PER_SESSION;
    // (channels in the message, error or success, subscriptions held after)
    let steps: &[(Vec<String>, Option<&str>, usize)] = &[
        (
            channels("a", MAX_SUBSCRIPTIONS_PER_MESSAGE + 1),
            Some("403::too_many_subscriptions"),
            0,
        ),
        (channels("a", max - 1), None, max - 1),
        // Already held channels cost nothing again.
        (channels("a", max - 1), None, max - 1),
        (
            channels("b", 2),
            Some("403:/b/0:too_many_subscriptions"),
            max - 1,
        ),
        (channels("b", 1), None, max),
        (
            channels("c", 1),
            Some("403:/c/0:too_many_subscriptions"),
            max,
        ),
    ];
    for (i, (subs, error, held)) in steps.iter().enumerate() {
        let r = &subscribe_many(&mut e, &cid, subs, t0)[0];
        match error {
            None => assert_eq!(r["successful"], true, "step {i}: {r}"),
            Some(err) => {
                assert_eq!(r["successful"], false, "step {i}");
                assert_eq!(r["error"], *err, "step {i}");
            }
        }
        assert_eq!(
            e.sessions[cid.as_str()].subscriptions.len(),
            *held,
            "step {i}"
        );
    }
    assert_eq!(e.stats.subscriptions_refused, 3);
    // Unsubscribing is bounded per message too; then it frees room.
    let unsub = |subs: &[String]| json!([{"channel": "/meta/unsubscribe", "clientId": cid, "subscription": subs}]);
    let too_many = channels("a", MAX_SUBSCRIPTIONS_PER_MESSAGE + 1);
    let r = now_replies(&handle(&mut e, 9, unsub(&too_many), t0));
    assert_eq!(r[0]["error"], "403::too_many_subscriptions");
    assert_eq!(e.stats.subscriptions_refused, 4);
    let r = now_replies(&handle(&mut e, 9, unsub(&channels("a", 1)), t0));
    assert_eq!(r[0]["successful"], true);
    assert_eq!(
        subscribe_many(&mut e, &cid, &channels("c", 1), t0)[0]["successful"],
        true
    );
    // The routing index follows: /a/0 is gone, /c/0 is there.
    assert_eq!(hub_publish(&mut e, "x1", "a/0", Data::Text("x")), 0);
    assert_eq!(hub_publish(&mut e, "x2", "c/0", Data::Text("x")), 1);
    assert_eq!(hub_publish(&mut e, "x3", "a/1", Data::Text("x")), 1);
}

fn handshake_from(e: &mut Engine, peer: IpAddr, n: usize, now: Instant) -> Vec<Value> {
    let one = json!({"channel": "/meta/handshake", "version": "1.0",
                     "supportedConnectionTypes": ["long-polling"]});
    let msgs = Value::Array(vec![one; n]);
    let (msgs, framing) =
        wire::parse_post(Some("application/json"), msgs.to_string().as_bytes()).unwrap();
    let o = e.handle(1, Some(peer), msgs, framing, now);
    now_replies(&o).as_array().unwrap().clone()
}

/// Handshakes are bounded per request, sessions in total and per client
/// address; ending a session gives its address's room back.
#[test]
fn sessions_are_bounded() {
    let mut e = engine(Settings {
        max_sessions: 5,
        max_sessions_per_addr: 3,
        ..Settings::default()
    });
    let t0 = Instant::now();
    let a = IpAddr::from([192, 0, 2, 1]);
    let b = IpAddr::from([192, 0, 2, 2]);
    let c = IpAddr::from([192, 0, 2, 3]);
    let ok = |r: &Value| r["successful"] == true;
    let refused = |r: &Value, error: &str| r["successful"] == false && r["error"] == error;

    let r = handshake_from(&mut e, a, MAX_HANDSHAKES_PER_REQUEST + 2, t0);
    assert_eq!(r.len(), MAX_HANDSHAKES_PER_REQUEST + 2);
    // Three fit a's bound; the fourth is one too many for the address, and
    // the ones past the request's bound are refused for that.
    assert!(r[..3].iter().all(ok), "{r:?}");
    assert!(refused(&r[3], "403::too_many_sessions"), "{}", r[3]);
    assert_eq!(
        r[3]["advice"],
        json!({"reconnect": "handshake", "interval": 10_000})
    );
    for extra in &r[MAX_HANDSHAKES_PER_REQUEST..] {
        assert!(refused(extra, "403::too_many_handshakes"), "{extra}");
        assert_eq!(extra["advice"], json!({"reconnect": "none"}));
    }
    assert_eq!(e.n_sessions(), 3);
    // b takes the last two of the five; then even a new address is refused.
    assert!(handshake_from(&mut e, b, 2, t0).iter().all(ok));
    assert!(refused(
        &handshake_from(&mut e, c, 1, t0)[0],
        "403::too_many_sessions"
    ));
    assert_eq!(e.n_sessions(), 5);
    assert_eq!(e.stats.sessions_refused, 2);
    assert_eq!(e.stats.handshakes_refused, 2);
    assert_eq!(e.stats.handshakes, 5);
    // a's sessions never connect and expire: a may handshake again.
    let later = t0 + 11 * SEC;
    assert_eq!(run_timers(&mut e, &mut Deadlines::new(t0), later), 5);
    assert!(e.per_addr.is_empty());
    assert!(handshake_from(&mut e, a, 3, later).iter().all(ok));
    assert!(refused(
        &handshake_from(&mut e, a, 1, later)[0],
        "403::too_many_sessions"
    ));
    assert!(ok(&handshake_from(&mut e, c, 1, later)[0]));
}

fn resume_msg(cid: &str, subs: &[String], since: &str) -> Value {
    json!({"channel": "/meta/subscribe", "clientId": cid, "subscription": subs,
           "ext": {"halley": {"since": since}}})
}

/// The resumes of one request are bounded in distinct (session, channel)
/// pairs. Each row is one request: its subscribes (channel sets, each
/// resuming from "earliest"), the error each gets (if refused), and the
/// request's resumes after.
#[test]
fn resumes_are_bounded_per_request() {
    let max = MAX_RESUMES_PER_REQUEST;
    let half = max / 2;
    let a = channels("a", max);
    let past = format!("403:/b/{max}:too_many_resumes");
    type Row = (Vec<Vec<String>>, Vec<Option<String>>, usize);
    let rows: Vec<Row> = vec![
        // The bound, in one message.
        (vec![a.clone()], vec![None], max),
        // The same channels in every message: one resume each.
        (vec![a.clone(); 50], vec![None; 50], max),
        // One message past the bound is refused whole.
        (vec![channels("b", max + 1)], vec![Some(past.clone())], 0),
        // Past the bound in a later message: that one is refused, and a
        // later one that only repeats accepted channels is not.
        (
            vec![
                a[..half].to_vec(),
                channels("b", max + 1)[half..].to_vec(),
                a[..half].to_vec(),
            ],
            vec![None, Some(past.clone()), None],
            half,
        ),
        // A channel named twice in one message takes one place.
        (vec![[a.clone(), a.clone()].concat()], vec![None], max),
    ];
    let mut refused = 0;
    for (i, (msgs, errors, n_resumes)) in rows.iter().enumerate() {
        let mut e = engine(Settings::default());
        let t0 = Instant::now();
        let cid = handshake(&mut e, t0);
        let batch: Vec<Value> = msgs
            .iter()
            .map(|m| resume_msg(&cid, m, "earliest"))
            .collect();
        let o = handle(&mut e, 9, Value::Array(batch), t0);
        let r = now_replies(&o);
        for (j, error) in errors.iter().enumerate() {
            match error {
                None => assert_eq!(r[j]["successful"], true, "row {i} msg {j}: {}", r[j]),
                Some(err) => {
                    assert_eq!(r[j]["successful"], false, "row {i} msg {j}");
                    assert_eq!(r[j]["error"], *err, "row {i} msg {j}");
                    refused += 1;
                }
            }
        }
        assert_eq!(o.resumes.len(), *n_resumes, "row {i}");
        assert_eq!(
            e.stats.resumes_refused,
            errors.iter().flatten().count() as u64,
            "row {i}"
        );
    }
    assert_eq!(refused, 2);
}

/// Two sessions in one request each have their own resume of a channel; a
/// second resume of a session's channel moves its cursor, in place.
#[test]
fn a_later_resume_of_the_same_channel_replaces_the_earlier() {
    let mut e = engine(Settings::default());
    let t0 = Instant::now();
    let (x, y) = (handshake(&mut e, t0), handshake(&mut e, t0));
    let one = |c: &str| vec![format!("/{c}")];
    let batch = json!([
        resume_msg(&x, &one("a"), "e1-1"),
        resume_msg(&x, &one("b"), "e1-2"),
        resume_msg(&y, &one("a"), "e1-3"),
        resume_msg(&x, &one("a"), "e1-4"),
    ]);
    let o = handle(&mut e, 9, batch, t0);
    let got: Vec<(&str, &str, &Since)> = o
        .resumes
        .iter()
        .map(|r| (r.client_id.as_str(), r.channel.as_str(), &r.since))
        .collect();
    let id = |s: &str| Since::Id(s.into());
    assert_eq!(
        got,
        [
            (x.as_str(), "a", &id("e1-4")),
            (x.as_str(), "b", &id("e1-2")),
            (y.as_str(), "a", &id("e1-3")),
        ]
    );
}

/// A replay reads nothing for a session that is gone, and stops encoding at
/// the message that overflows the queue (which ends the session).
#[test]
fn replay_stops_at_the_overflow_and_does_nothing_for_a_gone_session() {
    let msg_len = r#"{"channel":"/a","id":"m","data":"0123456789"}"#.len();
    let fits = 5;
    let max = fits * (msg_len + session::ENTRY_OVERHEAD);
    let mut e = engine(Settings {
        max_queued_bytes: max,
        ..Settings::default()
    });
    let t0 = Instant::now();
    let cid = handshake(&mut e, t0);
    let room = e.replay_room(&cid).expect("live session");
    assert!(room > fits && room <= max, "{room}");
    let resume = Resume {
        client_id: cid.clone(),
        channel: "a".into(),
        since: Since::Earliest,
    };
    let msg = HubMessage {
        id: "m",
        channel: "a",
        data: Data::Text("0123456789"),
        event: None,
    };
    let pulled = std::cell::Cell::new(0);
    let history = std::iter::repeat_n(msg, 1_000).inspect(|_| pulled.set(pulled.get() + 1));
    assert_eq!(e.on_replay(&resume, None, history), fits);
    // The one that overflowed was encoded; nothing after it.
    assert_eq!(pulled.get(), fits + 1);
    assert_eq!((e.stats.slow_sessions, e.stats.replayed), (1, fits as u64));
    assert_eq!(e.replay_room(&cid), None);
    pulled.set(0);
    let history = std::iter::repeat_n(msg, 10).inspect(|_| pulled.set(pulled.get() + 1));
    assert_eq!(e.on_replay(&resume, None, history), 0);
    assert_eq!(pulled.get(), 0);
}

/// The server looks the client's address up only for a request with a
/// handshake (`wire::has_handshake`); a handshake that came without one
/// cannot be bounded per address and is refused, while other messages need
/// no address at all.
#[test]
fn only_a_handshake_needs_the_clients_address() {
    let one = |channel: &str| vec![json!({"channel": channel})];
    assert!(wire::has_handshake(&one("/meta/handshake")));
    assert!(!wire::has_handshake(&one("/meta/connect")));
    assert!(!wire::has_handshake(&[json!({"channel": 5})]));

    let mut e = engine(Settings::default());
    let t0 = Instant::now();
    let hs = json!([{"channel": "/meta/handshake", "version": "1.0",
                     "supportedConnectionTypes": ["long-polling"]}]);
    let (msgs, framing) = wire::parse_post(None, hs.to_string().as_bytes()).unwrap();
    let refused = now_replies(&e.handle(1, None, msgs, framing, t0));
    assert_eq!(refused[0]["error"], "403::handshake_denied", "{refused}");
    assert_eq!(e.n_sessions(), 0);

    let cid = now_replies(&handle(&mut e, 1, hs, t0))[0]["clientId"]
        .as_str()
        .unwrap()
        .to_string();
    let sub = json!([{"channel": "/meta/subscribe", "clientId": cid, "subscription": "/a"}]);
    let (msgs, framing) = wire::parse_post(None, sub.to_string().as_bytes()).unwrap();
    let reply = now_replies(&e.handle(1, None, msgs, framing, t0));
    assert_eq!(reply[0]["successful"], true, "{reply}");
}

//! Bayeux over a WebSocket (`Framing::WebSocket`): the engine holds a
//! session's connect and still answers every other message on the same
//! socket at once; a held connect's answer is one more frame.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::*;

const SEC: Duration = Duration::from_secs(1);
const PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
/// The socket every test talks on.
const WS: ConnId = 7;

fn engine(websocket: bool) -> Engine {
    let mut n = 0u128;
    let settings = Settings {
        websocket,
        ..Settings::default()
    };
    Engine::new(
        settings,
        Box::new(move || {
            n += 1;
            n
        }),
    )
}

/// One text frame of messages on socket `conn`: what the server answers at
/// once (parsed), and the held connect's deadline, if one was held.
fn frame(e: &mut Engine, conn: ConnId, msgs: Value, now: Instant) -> (Value, Option<Instant>) {
    let o = frame_outcome(e, conn, msgs, now);
    match o.reply {
        Reply::Socket { body, hold } => (
            body.map_or(Value::Null, |b| serde_json::from_slice(&b).unwrap()),
            hold,
        ),
        other => panic!("a frame got an HTTP reply: {other:?}"),
    }
}

fn frame_outcome(e: &mut Engine, conn: ConnId, msgs: Value, now: Instant) -> Outcome {
    let msgs = wire::parse_frame(msgs.to_string().as_bytes()).unwrap();
    e.handle(conn, Some(PEER), msgs, Framing::WebSocket, now)
}

/// A session handshaken, subscribed to `/chat/room1` and connected once over
/// the socket, so its next connect is held.
fn session(e: &mut Engine, now: Instant) -> String {
    let types = json!(["websocket", "long-polling"]);
    let (r, _) = frame(
        e,
        WS,
        json!([{"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": types, "id": "1"}]),
        now,
    );
    let cid = r[0]["clientId"].as_str().unwrap().to_string();
    let sub = json!([{"channel": "/meta/subscribe", "clientId": cid, "subscription": "/chat/room1", "id": "2"}]);
    assert_eq!(frame(e, WS, sub, now).0[0]["successful"], true);
    let (r, hold) = frame(e, WS, connect(&cid, "3"), now);
    assert_eq!((r[0]["successful"].clone(), hold), (json!(true), None));
    cid
}

fn connect(cid: &str, id: &str) -> Value {
    json!([{"channel": "/meta/connect", "clientId": cid, "connectionType": "websocket", "id": id}])
}

fn publish(e: &mut Engine, id: &str, text: &str) {
    e.on_publish(&HubMessage {
        id,
        channel: "chat/room1",
        data: Data::Text(text),
        event: None,
    });
}

#[test]
fn a_handshake_offers_websocket_first_only_when_the_server_upgrades() {
    for (websocket, want) in [
        (
            true,
            json!(["websocket", "long-polling", "callback-polling"]),
        ),
        (false, json!(["long-polling", "callback-polling"])),
    ] {
        let mut e = engine(websocket);
        let hs = json!([{"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": ["websocket", "long-polling"]}]);
        let (r, _) = frame(&mut e, WS, hs, Instant::now());
        assert_eq!(
            r[0]["supportedConnectionTypes"], want,
            "websocket: {websocket}"
        );
        // A client that speaks only websocket is refused by a server that does not.
        let hs = json!([{"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": ["websocket"]}]);
        let (r, _) = frame(&mut e, WS, hs, Instant::now());
        assert_eq!(r[0]["successful"], websocket, "{r}");
    }
}

#[test]
fn messages_on_the_socket_are_answered_while_its_connect_is_held() {
    let mut e = engine(true);
    let t0 = Instant::now();
    let cid = session(&mut e, t0);
    let (r, hold) = frame(&mut e, WS, connect(&cid, "4"), t0);
    assert_eq!(
        (r, hold),
        (Value::Null, Some(t0 + 30 * SEC)),
        "held, nothing sent"
    );
    assert_eq!(e.n_held(), 1);

    // A subscribe and a publish on the same socket are answered at once.
    let msgs = json!([
        {"channel": "/meta/subscribe", "clientId": cid, "subscription": "/chat/room2", "id": "5"},
        {"channel": "/chat/room2", "clientId": cid, "data": {"n": 1}, "id": "6"},
    ]);
    let o = frame_outcome(&mut e, WS, msgs, t0);
    assert_eq!(o.publishes.len(), 1);
    let Reply::Socket {
        body: Some(body),
        hold: None,
    } = o.reply
    else {
        panic!("not answered at once: {:?}", o.reply);
    };
    let r: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (r[0]["id"].clone(), r[1]["id"].clone()),
        (json!("5"), json!("6"))
    );
    assert!(o.released.is_empty(), "the held connect stays held");
    assert_eq!(e.n_held(), 1);

    // A message for the session answers the held connect as one frame.
    publish(&mut e, "e-1", "hello");
    let out = e.flush(t0);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].conn, WS);
    let r: Value = serde_json::from_slice(&out[0].body).unwrap();
    assert_eq!(
        r[0],
        json!({"channel": "/chat/room1", "id": "e-1", "data": "hello"})
    );
    assert_eq!(
        (r[1]["channel"].clone(), r[1]["id"].clone()),
        (json!("/meta/connect"), json!("4"))
    );
    assert_eq!(e.n_held(), 0);
}

#[test]
fn a_connect_batched_with_other_messages_does_not_hold_their_replies() {
    let mut e = engine(true);
    let t0 = Instant::now();
    let cid = session(&mut e, t0);
    let mut msgs = connect(&cid, "4");
    msgs.as_array_mut().unwrap().push(json!(
        {"channel": "/chat/room1", "clientId": cid, "data": "x", "id": "5"}
    ));
    let (r, hold) = frame(&mut e, WS, msgs, t0);
    assert_eq!(r.as_array().unwrap().len(), 1, "{r}");
    assert_eq!(
        (r[0]["id"].clone(), r[0]["successful"].clone()),
        (json!("5"), json!(true))
    );
    assert_eq!(hold, Some(t0 + 30 * SEC));
}

#[test]
fn an_empty_frame_asks_nothing_and_gets_nothing() {
    let mut e = engine(true);
    let (r, hold) = frame(&mut e, WS, json!([]), Instant::now());
    assert_eq!((r, hold), (Value::Null, None));
    // Over HTTP an empty body is still not Bayeux.
    assert!(wire::parse_post(Some("application/json"), b"[]").is_err());
    for bad in [&b"x"[..], b"[1]", b"\"a\"", b""] {
        assert!(wire::parse_frame(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn a_held_connect_on_a_socket_times_out_into_a_frame_and_a_close_keeps_its_messages() {
    let mut e = engine(true);
    let t0 = Instant::now();
    let cid = session(&mut e, t0);
    assert!(frame(&mut e, WS, connect(&cid, "4"), t0).1.is_some());
    let resp = e.on_connect_timeout(WS, t0 + 30 * SEC).expect("due");
    let r: Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!((resp.conn, r[0]["id"].clone()), (WS, json!("4")));

    // Held again, then the socket closes before a message comes.
    assert!(frame(&mut e, WS, connect(&cid, "5"), t0).1.is_some());
    e.on_conn_closed(WS, t0);
    publish(&mut e, "e-1", "while away");
    assert!(e.flush(t0).is_empty(), "nothing is sent to a closed socket");
    // The client's next socket gets it on its first connect.
    let (r, hold) = frame(&mut e, WS + 1, connect(&cid, "6"), t0);
    assert_eq!((r[0]["data"].clone(), hold), (json!("while away"), None));
}

#[test]
fn two_sessions_on_one_socket_hold_one_connect_at_a_time() {
    let mut e = engine(true);
    let t0 = Instant::now();
    let a = session(&mut e, t0);
    let b = session(&mut e, t0);
    assert!(frame(&mut e, WS, connect(&a, "a"), t0).1.is_some());
    // b's connect on the same socket answers a's now: the socket names one
    // held connect, and a's must not be left without a deadline.
    let o = frame_outcome(&mut e, WS, connect(&b, "b"), t0);
    assert_eq!(o.released.len(), 1);
    let r: Value = serde_json::from_slice(&o.released[0].body).unwrap();
    assert_eq!(r[0]["id"], "a");
    assert_eq!(e.n_held(), 1);
    let resp = e
        .on_connect_timeout(WS, t0 + 30 * SEC)
        .expect("b's deadline");
    let r: Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(r[0]["id"], "b");
    assert_eq!(e.n_held(), 0);
    // With no connect held, a's session can expire as any other.
    assert!(e.on_expiry_timer(&std::rc::Rc::from(a.as_str()), t0 + 60 * SEC));
}

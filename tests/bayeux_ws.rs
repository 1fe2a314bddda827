//! Bayeux over a WebSocket at `/bayeux`, over raw sockets: a held connect
//! does not hold the replies to the other messages on the socket, a
//! publish answers it as one more frame, its deadline answers it empty, and
//! a socket that closes while holding leaves its messages for the next
//! connect, on whatever transport.

mod common;

use std::time::Duration;

use common::ws::*;
use common::*;
use serde_json::json;

fn server() -> std::net::SocketAddr {
    start(Config {
        longpoll_timeout: Duration::from_millis(500),
        ..config()
    })
}

/// Sends one frame of Bayeux messages and reads the next frame's array.
#[track_caller]
fn exchange(ws: &mut Ws, messages: Value) -> Value {
    ws.send_text(&messages.to_string());
    next_array(ws)
}

#[track_caller]
fn next_array(ws: &mut Ws) -> Value {
    loop {
        let frame = ws.read_frame();
        if frame.opcode == PING {
            continue;
        }
        let value = frame.json();
        assert!(value.is_array(), "{value}");
        return value;
    }
}

/// Handshakes, subscribes to `channel` and makes the first connect, which
/// is answered at once; the next is held.
fn session(ws: &mut Ws, channel: &str) -> String {
    let hs = exchange(
        ws,
        json!([{"channel": "/meta/handshake", "version": "1.0",
                "supportedConnectionTypes": ["websocket"], "id": "1"}]),
    );
    assert_eq!(hs[0]["successful"], true, "{hs}");
    let cid = hs[0]["clientId"].as_str().unwrap().to_owned();
    let sub = exchange(
        ws,
        json!([{"channel": "/meta/subscribe", "clientId": cid, "subscription": channel, "id": "2"}]),
    );
    assert_eq!(sub[0]["successful"], true, "{sub}");
    let first = exchange(ws, connect(&cid, "3"));
    assert_eq!(first[0]["successful"], true, "{first}");
    cid
}

fn connect(cid: &str, id: &str) -> Value {
    json!([{"channel": "/meta/connect", "clientId": cid, "connectionType": "websocket", "id": id}])
}

#[test]
fn a_held_connect_leaves_the_socket_free_and_is_answered_by_a_publish() {
    let addr = server();
    let mut ws = Ws::connect(addr, "/bayeux");
    let cid = session(&mut ws, "/wsraw/a");
    ws.send_text(&connect(&cid, "4").to_string());
    wait_until("the connect is held", || {
        stats(addr)["bayeux"]["held_connects"] == 1
    });
    // Another message on the same socket is answered at once.
    let publish = exchange(
        &mut ws,
        json!([{"channel": "/wsraw/b", "clientId": cid, "data": "x", "id": "5"}]),
    );
    assert_eq!(
        (publish[0]["id"].clone(), publish[0]["successful"].clone()),
        (json!("5"), json!(true))
    );
    // A publish to the session's channel answers the held connect.
    let id = common::publish(addr, "wsraw/a", "hello");
    let reply = next_array(&mut ws);
    assert_eq!(
        reply[0],
        json!({"channel": "/wsraw/a", "id": id, "data": "hello"})
    );
    assert_eq!(
        (reply[1]["channel"].clone(), reply[1]["id"].clone()),
        (json!("/meta/connect"), json!("4"))
    );
}

#[test]
fn a_held_connect_times_out_into_a_frame() {
    let addr = server();
    let mut ws = Ws::connect(addr, "/bayeux");
    let cid = session(&mut ws, "/wsraw/t");
    // Held for --longpoll-timeout (500 ms), then answered empty.
    let reply = exchange(&mut ws, connect(&cid, "4"));
    assert_eq!(reply.as_array().unwrap().len(), 1, "{reply}");
    assert_eq!(
        (reply[0]["id"].clone(), reply[0]["successful"].clone()),
        (json!("4"), json!(true))
    );
    assert_eq!(stats(addr)["connect_timeouts"], 1);
}

#[test]
fn a_socket_closed_while_holding_leaves_its_messages_for_the_next_connect() {
    let addr = server();
    let mut ws = Ws::connect(addr, "/bayeux");
    let cid = session(&mut ws, "/wsraw/c");
    ws.send_text(&connect(&cid, "4").to_string());
    wait_until("the connect is held", || {
        stats(addr)["bayeux"]["held_connects"] == 1
    });
    drop(ws);
    wait_until("the engine heard of the close", || {
        stats(addr)["bayeux"]["held_connects"] == 0
    });
    common::publish(addr, "wsraw/c", "while away");
    // The client comes back on long-polling; the message waited for it.
    let mut http = Client::connect(addr);
    let reply = post_bayeux(
        &mut http,
        json!([{"channel": "/meta/connect", "clientId": cid, "connectionType": "long-polling",
                "advice": {"timeout": 0}}]),
    );
    assert_eq!(reply[0]["data"], "while away", "{reply}");
}

#[test]
fn what_is_not_bayeux_closes_the_socket_with_1007() {
    let addr = server();
    let mut ws = Ws::connect(addr, "/bayeux");
    ws.send_text("not json");
    let reason = ws.expect_close(1007);
    assert_eq!(reason, "body is not JSON");
    assert_eq!(stats(addr)["websocket"]["protocol_closes"], 1, "counted");
    // An empty array asks nothing and gets nothing; the socket stays.
    let mut ws = Ws::connect(addr, "/bayeux");
    ws.send_text("[]");
    let hs = exchange(
        &mut ws,
        json!([{"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": ["websocket"]}]),
    );
    assert_eq!(
        hs[0]["channel"], "/meta/handshake",
        "the first reply is the handshake's"
    );
}

#[test]
fn sigterm_answers_a_held_socket_connect_with_retry_advice_then_closes_1001() {
    let mut proc = Proc::start(&["--drain-secs", "5", "--longpoll-timeout", "30"]);
    let mut ws = Ws::connect(proc.addr, "/bayeux");
    let cid = session(&mut ws, "/drain/socket");
    // The next connect is held: nothing answers it for 30 s but the drain.
    ws.send_text(&connect(&cid, "4").to_string());
    wait_until("the connect is held", || {
        stats(proc.addr)["bayeux"]["held_connects"].as_u64() == Some(1)
    });
    proc.signal(libc::SIGTERM);
    let reply = next_array(&mut ws);
    assert_eq!(reply[0]["channel"], "/meta/connect", "{reply}");
    assert_eq!(reply[0]["successful"], true, "{reply}");
    assert_eq!(reply[0]["advice"]["reconnect"], "retry", "{reply}");
    let interval = reply[0]["advice"]["interval"]
        .as_u64()
        .expect("an interval");
    assert!(interval <= 5000, "within the drain window: {reply}");
    let reason = ws.expect_close(1001);
    assert!(!reason.is_empty(), "the close says why");
    drop(ws);
    let (status, _) = proc
        .wait_exit(Duration::from_secs(5))
        .expect("exits once its sockets are gone");
    assert!(status.success(), "{status:?}");
}

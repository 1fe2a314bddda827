//! `/bayeux` over raw sockets against a real server on `127.0.0.1:0`: the
//! handshake, subscribing, a connect held on the loop and released by an HTTP
//! publish (or its timeout, or a Bayeux publish), 402 for an unknown clientId,
//! JSONP and form-encoded requests, and what is not Bayeux at all. Every read
//! has a timeout; nothing sleeps to synchronise.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Long enough for a loaded machine, short enough to fail fast.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a connect must stay unanswered to count as held.
const STILL_HELD: Duration = Duration::from_millis(300);

fn server(longpoll_timeout: Duration) -> SocketAddr {
    halley::spawn(halley::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        longpoll_timeout,
        ..halley::Config::default()
    })
    .expect("server starts")
}

struct Response {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Response {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!("{e}: {}", String::from_utf8_lossy(&self.body));
        })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.head.split("\r\n").find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// One keep-alive connection, reading `Content-Length` framed responses.
struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    fn post(&mut self, path: &str, content_type: &str, body: &str) {
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.send(req.as_bytes());
    }

    fn bayeux(&mut self, messages: Value) -> Response {
        self.post("/bayeux", "application/json", &messages.to_string());
        self.response()
    }

    fn read_more(&mut self) -> std::io::Result<()> {
        let mut chunk = [0u8; 16 * 1024];
        match self.stream.read(&mut chunk)? {
            0 => Err(ErrorKind::UnexpectedEof.into()),
            n => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
        }
    }

    fn response(&mut self) -> Response {
        let head_end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            self.read_more().expect("a response head");
        };
        let head = String::from_utf8(self.buf[..head_end].to_vec()).unwrap();
        let status = head[9..12].parse().unwrap();
        let mut response = Response {
            status,
            head,
            body: Vec::new(),
        };
        let len: usize = response
            .header("Content-Length")
            .map_or(0, |v| v.parse().unwrap());
        while self.buf.len() < head_end + len {
            self.read_more().expect("a response body");
        }
        response.body = self.buf[head_end..head_end + len].to_vec();
        self.buf.drain(..head_end + len);
        response
    }

    /// Asserts that nothing arrives for `STILL_HELD`.
    fn assert_no_response(&mut self) {
        self.stream.set_read_timeout(Some(STILL_HELD)).unwrap();
        let mut byte = [0u8; 1];
        match self.stream.read(&mut byte) {
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            other => panic!("expected a held request, read {other:?}"),
        }
        self.stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    }
}

fn handshake(c: &mut Client) -> String {
    let r = c.bayeux(json!([{
        "channel": "/meta/handshake", "version": "1.0",
        "supportedConnectionTypes": ["long-polling"], "id": "1",
    }]));
    r.json()[0]["clientId"].as_str().unwrap().to_string()
}

fn subscribe(c: &mut Client, client_id: &str, channel: &str) {
    let r = c.bayeux(json!([{
        "channel": "/meta/subscribe", "clientId": client_id, "subscription": channel, "id": "2",
    }]));
    assert_eq!(r.json()[0]["successful"], true, "{:?}", r.json());
}

fn connect_message(client_id: &str, id: &str) -> Value {
    json!([{"channel": "/meta/connect", "clientId": client_id, "connectionType": "long-polling", "id": id}])
}

/// A session subscribed to `channel` whose first connect (answered at once)
/// is done, so its next connect is held.
fn ready_session(addr: SocketAddr, channel: &str) -> String {
    let mut c = Client::connect(addr);
    let client_id = handshake(&mut c);
    subscribe(&mut c, &client_id, channel);
    let first = c.bayeux(connect_message(&client_id, "3"));
    assert_eq!(first.json()[0]["successful"], true);
    client_id
}

fn publish_http(addr: SocketAddr, channel: &str, content_type: &str, body: &str) -> Value {
    let mut c = Client::connect(addr);
    c.post(&format!("/pub/{channel}"), content_type, body);
    let r = c.response();
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

#[test]
fn handshake_answers_with_a_session_and_advice() {
    let addr = server(Duration::from_secs(7));
    let mut c = Client::connect(addr);
    c.post(
        "/bayeux/handshake",
        "application/json;charset=UTF-8",
        r#"[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["long-polling"],"id":"1"}]"#,
    );
    let r = c.response();
    let len = r.body.len();
    // Every response carries the time it was sent; tests/http_head.rs checks its form.
    let date = r.header("Date").expect("a Date header");
    assert_eq!(
        r.head,
        format!(
            "HTTP/1.1 200 OK\r\nDate: {date}\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\
             Connection: keep-alive\r\nAccess-Control-Allow-Origin: *\r\n\
             Access-Control-Expose-Headers: Halley-Cursor, Retry-After\r\n\
             Cache-Control: no-cache\r\n\r\n"
        )
    );
    let reply = &r.json()[0];
    let client_id = reply["clientId"].as_str().unwrap();
    assert_eq!(client_id.len(), 32);
    assert!(client_id.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(
        reply,
        &json!({
            "channel": "/meta/handshake", "id": "1", "version": "1.0", "successful": true,
            "clientId": client_id,
            "supportedConnectionTypes": ["websocket", "long-polling", "callback-polling"],
            "advice": {"reconnect": "retry", "interval": 0, "timeout": 7000, "maxInterval": 10000},
        })
    );
    // The same connection serves the next request.
    let stats = {
        c.send(b"GET /stats HTTP/1.1\r\nHost: t\r\n\r\n");
        c.response().json()
    };
    assert_eq!(stats["bayeux"]["sessions"], 1);
    assert_eq!(stats["bayeux"]["handshakes"], 1);
}

#[test]
fn subscribe_echoes_the_subscription() {
    let addr = server(Duration::from_secs(30));
    let mut c = Client::connect(addr);
    let client_id = handshake(&mut c);
    let r = c.bayeux(json!([{
        "channel": "/meta/subscribe", "clientId": client_id, "subscription": "/chat/*", "id": "2",
    }]));
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        json!([{
            "channel": "/meta/subscribe", "clientId": client_id, "subscription": "/chat/*",
            "successful": true, "id": "2",
        }])
    );
}

#[test]
fn a_held_connect_is_released_by_an_http_publish() {
    let addr = server(Duration::from_secs(30));
    let client_id = ready_session(addr, "/chat/held");
    let mut held = Client::connect(addr);
    // Chunked, as CometD's Node client sends it.
    let body = connect_message(&client_id, "4").to_string();
    held.send(
        format!(
            "POST /bayeux/connect HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
             Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    held.assert_no_response();

    let mut probe = Client::connect(addr);
    probe.send(b"GET /stats HTTP/1.1\r\nHost: t\r\n\r\n");
    let stats = probe.response().json();
    assert_eq!(stats["bayeux"]["held_connects"], 1);
    assert_eq!(stats["connections"]["bayeux"], 1);

    let text = publish_http(addr, "chat/held", "text/plain", "hello");
    let r = held.response();
    assert_eq!(r.status, 200);
    let body = r.json();
    assert_eq!(
        body[0],
        json!({"channel": "/chat/held", "id": text["id"], "data": "hello"})
    );
    assert_eq!(body[1]["channel"], "/meta/connect");
    assert_eq!(body[1]["id"], "4");
    assert_eq!(body[1]["successful"], true);
    assert_eq!(body.as_array().unwrap().len(), 2);

    // JSON published as application/json arrives as the value itself.
    held.post(
        "/bayeux",
        "application/json",
        &connect_message(&client_id, "5").to_string(),
    );
    held.assert_no_response();
    let value = publish_http(addr, "chat/held", "application/json", r#"{"a":[1,2]}"#);
    let body = held.response().json();
    assert_eq!(
        body[0],
        json!({"channel": "/chat/held", "id": value["id"], "data": {"a": [1, 2]}})
    );
}

#[test]
fn a_held_connect_times_out_with_an_empty_reply() {
    let addr = server(Duration::from_millis(400));
    let client_id = ready_session(addr, "/chat/quiet");
    let mut c = Client::connect(addr);
    let start = Instant::now();
    let r = c.bayeux(connect_message(&client_id, "4"));
    assert!(start.elapsed() >= Duration::from_millis(400));
    let body = r.json();
    assert_eq!(body.as_array().unwrap().len(), 1);
    assert_eq!(body[0]["channel"], "/meta/connect");
    assert_eq!(body[0]["successful"], true);
    assert_eq!(body[0]["advice"]["timeout"], 400);
}

#[test]
fn a_closed_held_connect_leaves_its_messages_for_the_next_connect() {
    let addr = server(Duration::from_secs(30));
    let client_id = ready_session(addr, "/chat/dropped");
    let mut gone = Client::connect(addr);
    gone.post(
        "/bayeux",
        "application/json",
        &connect_message(&client_id, "4").to_string(),
    );
    gone.assert_no_response();
    drop(gone);
    // Once the server has seen the close, the publish has no held connect to
    // answer; /stats tells when that is, without sleeping.
    let mut probe = Client::connect(addr);
    let deadline = Instant::now() + READ_TIMEOUT;
    loop {
        probe.send(b"GET /stats HTTP/1.1\r\nHost: t\r\n\r\n");
        if probe.response().json()["bayeux"]["held_connects"] == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the closed connect is still held"
        );
    }
    let sent = publish_http(addr, "chat/dropped", "text/plain", "kept");
    let mut c = Client::connect(addr);
    let body = c.bayeux(connect_message(&client_id, "5")).json();
    assert_eq!(
        body[0],
        json!({"channel": "/chat/dropped", "id": sent["id"], "data": "kept"})
    );
}

#[test]
fn a_request_pipelined_behind_a_held_connect_runs_after_its_answer() {
    let addr = server(Duration::from_secs(30));
    let client_id = ready_session(addr, "/chat/piped");
    let mut c = Client::connect(addr);
    let body = connect_message(&client_id, "4").to_string();
    c.send(
        format!(
            "POST /bayeux HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    c.assert_no_response();
    publish_http(addr, "chat/piped", "text/plain", "wake");
    assert_eq!(c.response().json()[0]["data"], "wake");
    let health = c.response();
    assert_eq!((health.status, &health.body[..]), (200, &b"ok"[..]));
}

#[test]
fn a_bayeux_publish_run_after_a_long_poll_answer_is_flushed_at_once() {
    let addr = server(Duration::from_secs(30));
    let client_id = ready_session(addr, "/chat/late");
    let mut held = Client::connect(addr);
    held.post(
        "/bayeux",
        "application/json",
        &connect_message(&client_id, "4").to_string(),
    );
    held.assert_no_response();
    // A long-poll with a Bayeux publish pipelined behind it: the publish runs
    // only once the long-poll is answered, late in a loop iteration, and the
    // held connect must still be answered without waiting for a deadline.
    let mut other = Client::connect(addr);
    let publisher = handshake(&mut other);
    let publish =
        json!([{"channel": "/chat/late", "clientId": publisher, "data": "late", "id": "6"}])
            .to_string();
    let mut poll = Client::connect(addr);
    poll.send(
        format!(
            "GET /sub/chat/wake HTTP/1.1\r\nHost: t\r\n\r\n\
             POST /bayeux HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{publish}",
            publish.len()
        )
        .as_bytes(),
    );
    poll.assert_no_response();
    // Kept open: its close would wake the loop and hide a missed flush.
    let mut waker = Client::connect(addr);
    waker.post("/pub/chat/wake", "text/plain", "wake");
    assert_eq!(waker.response().status, 201);
    assert_eq!(poll.response().json()["messages"][0]["data"], "wake");
    assert_eq!(poll.response().json()[0]["successful"], true);
    assert_eq!(held.response().json()[0]["data"], "late");
}

#[test]
fn a_bayeux_publish_reaches_http_subscribers_as_json_text() {
    let addr = server(Duration::from_secs(30));
    let mut poll = Client::connect(addr);
    poll.send(b"GET /sub/chat/mixed HTTP/1.1\r\nHost: t\r\n\r\n");
    poll.assert_no_response();
    let mut c = Client::connect(addr);
    let client_id = handshake(&mut c);
    let r = c.bayeux(json!([{
        "channel": "/chat/mixed", "clientId": client_id, "data": {"x": 1}, "id": "5",
    }]));
    assert_eq!(
        r.json(),
        json!([{"channel": "/chat/mixed", "successful": true, "id": "5"}])
    );
    let got = poll.response().json();
    assert_eq!(got["messages"][0]["channel"], "chat/mixed");
    assert_eq!(got["messages"][0]["data"], r#"{"x":1}"#);
}

#[test]
fn an_unknown_client_id_gets_402_inside_http_200() {
    let addr = server(Duration::from_secs(30));
    let mut c = Client::connect(addr);
    let r = c.bayeux(connect_message("forged0123456789", "9"));
    assert_eq!(r.status, 200);
    let reply = &r.json()[0];
    assert_eq!(reply["channel"], "/meta/connect");
    assert_eq!(reply["id"], "9");
    assert_eq!(reply["successful"], false);
    assert_eq!(reply["error"], "402::session_unknown");
    assert_eq!(reply["advice"]["reconnect"], "handshake");
}

#[test]
fn jsonp_callback_polling_is_served() {
    let addr = server(Duration::from_secs(30));
    let mut c = Client::connect(addr);
    c.send(
        b"GET /bayeux?jsonp=_cometd_jsonp_0&message=%5B%7B%22channel%22%3A%22%2Fmeta%2Fhandshake%22%2C\
          %22version%22%3A%221.0%22%2C%22supportedConnectionTypes%22%3A%5B%22callback-polling%22%5D%2C\
          %22id%22%3A%221%22%7D%5D HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    let r = c.response();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("Content-Type"),
        Some("text/javascript; charset=utf-8")
    );
    let text = String::from_utf8(r.body).unwrap();
    let inner = text
        .strip_prefix("_cometd_jsonp_0(")
        .and_then(|t| t.strip_suffix(");"))
        .unwrap_or_else(|| panic!("not JSONP: {text}"));
    let reply: Value = serde_json::from_str(inner).unwrap();
    assert_eq!(reply[0]["successful"], true);
}

#[test]
fn form_encoded_message_is_served() {
    let addr = server(Duration::from_secs(30));
    let mut c = Client::connect(addr);
    c.post(
        "/bayeux",
        "application/x-www-form-urlencoded",
        "message=%5B%7B%22channel%22%3A%22%2Fmeta%2Fhandshake%22%2C%22id%22%3A%227%22%7D%5D",
    );
    let r = c.response();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()[0]["id"], "7");
    assert_eq!(r.json()[0]["successful"], true);
}

#[test]
fn what_is_not_bayeux_gets_http_400() {
    let addr = server(Duration::from_secs(30));
    let mut c = Client::connect(addr);
    c.post("/bayeux", "application/json", "[{");
    let r = c.response();
    assert_eq!(r.status, 400);
    assert_eq!(r.body, br#"{"error":"body is not JSON"}"#);
    // A GET that is neither JSONP nor an upgrade.
    c.send(b"GET /bayeux HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 400);
    assert_eq!(r.body, br#"{"error":"missing message= parameter"}"#);
    // An upgrade of another version gets 426 at once (the client then
    // falls back to long-polling); the socket itself is tests/websocket.rs's
    // and the Bayeux on it tests/bayeux/websocket.test.mjs's.
    c.send(
        b"GET /bayeux HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    );
    let r = c.response();
    assert_eq!(r.status, 426);
}

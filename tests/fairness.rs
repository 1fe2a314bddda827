//! What one peer can make the server do for it at the others' expense: a
//! publish it may not make is refused from its head, before any body is read,
//! and a peer that streams bytes without pause is served in turns, so
//! everyone else is answered while it goes on.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;

/// How long a client here waits for an answer that should come at once. The
/// failures this guards against never answer at all (or only after the
/// 30 s timeouts below), so this is no performance bound.
const PROMPT: Duration = Duration::from_secs(3);

/// Timeouts long enough that none of them is what answers a request here.
fn patient_config() -> Config {
    Config {
        header_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(30),
        ..config()
    }
}

#[test]
fn a_publish_with_a_wrong_token_is_refused_before_its_body() {
    let addr = start(Config {
        publish_token: Some("right".into()),
        ..patient_config()
    });
    let ch = channel("guarded");
    for framing in ["Content-Length: 1000000", "Transfer-Encoding: chunked"] {
        let mut client = Client::connect(addr);
        client.set_read_timeout(PROMPT);
        // The head alone: the body would follow only if the server asked.
        client.send(format!(
            "POST /pub/{ch} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer wrong\r\n{framing}\r\n\r\n"
        ));
        let resp = client.read_response();
        assert_eq!(resp.status, 401, "{framing}: {resp:?}");
        assert_eq!(resp.header("connection"), Some("close"), "{framing}");
        client.expect_closed();
    }
    // A body-less refusal keeps the connection, as before.
    let mut client = Client::connect(addr);
    client.request(
        "POST",
        &format!("/pub/{ch}"),
        &["Authorization: Bearer wrong"],
        b"",
    );
    assert_eq!(client.read_response().status, 401);
    client.request("GET", "/healthz", &[], b"");
    assert_eq!(client.read_response().status, 200);
}

/// A body past `--max-body` is refused by its `Content-Length` on every
/// route, before a byte of it is read: a Bayeux body too, which the engine
/// would otherwise get whole.
#[test]
fn a_declared_body_past_max_body_is_refused_on_every_route() {
    let addr = start(Config {
        max_body: 1000,
        ..patient_config()
    });
    for path in [
        "/bayeux",
        "/bayeux/handshake",
        &format!("/pub/{}", channel("big")),
    ] {
        let mut client = Client::connect(addr);
        client.set_read_timeout(PROMPT);
        client.send(format!(
            "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 1001\r\n\r\n"
        ));
        let resp = client.read_response();
        assert_eq!(resp.status, 413, "{path}: {resp:?}");
        client.expect_closed();
    }
}

/// Writes `payload` to `stream` over and over as fast as it goes until
/// `stop`, counting what it wrote in `written`. Returns whether it was still
/// writing when stopped.
fn flood(
    mut stream: TcpStream,
    payload: Vec<u8>,
    stop: Arc<AtomicBool>,
    written: Arc<AtomicU64>,
) -> bool {
    while !stop.load(Ordering::Relaxed) {
        match stream.write(&payload) {
            Ok(n) => {
                written.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {}
            Err(_) => return false,
        }
    }
    true
}

/// Reads and throws away what `stream` receives until `stop`.
fn drain(mut stream: TcpStream, stop: Arc<AtomicBool>) {
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut buf = vec![0u8; 256 * 1024];
    while !stop.load(Ordering::Relaxed) {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {}
            Err(_) => return,
        }
    }
}

/// Floods the server over `flooder` with `payload` (reading and discarding
/// whatever comes back), and asks `/healthz` on another connection while the
/// flood goes on: it must be answered, and the flood must still be going
/// after the answer.
fn health_answered_during_flood(addr: SocketAddr, flooder: &Client, payload: Vec<u8>) {
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stream, stop, written) = (
            flooder.stream.try_clone().unwrap(),
            stop.clone(),
            written.clone(),
        );
        std::thread::spawn(move || flood(stream, payload, stop, written))
    };
    let reader = {
        let (stream, stop) = (flooder.stream.try_clone().unwrap(), stop.clone());
        std::thread::spawn(move || drain(stream, stop))
    };
    wait_until("the flood is under way", || {
        written.load(Ordering::Relaxed) > 1024 * 1024
    });

    let mut health = Client::connect(addr);
    health.set_read_timeout(PROMPT);
    health.request("GET", "/healthz", &[], b"");
    let resp = health.read_response();
    assert_eq!(resp.status, 200);
    let answered_at = written.load(Ordering::Relaxed);
    wait_until("the flood goes on after the answer", || {
        written.load(Ordering::Relaxed) > answered_at
    });

    stop.store(true, Ordering::Relaxed);
    let _ = flooder.stream.shutdown(Shutdown::Both);
    assert!(writer.join().unwrap(), "the flood kept going until stopped");
    reader.join().unwrap();

    let stats = get(addr, "/stats");
    let stats: serde_json::Value = serde_json::from_str(stats.text()).unwrap();
    assert!(stats["budget_yields"].as_u64().unwrap() >= 1, "{stats}");
}

#[test]
fn a_peer_pipelining_without_pause_does_not_starve_the_others() {
    let addr = start(patient_config());
    // Each request costs the server far more than it costs the client to
    // send, so the server never finds this socket empty.
    let one = request_bytes("GET", "/healthz", &[], b"");
    let payload: Vec<u8> = one.iter().copied().cycle().take(one.len() * 1000).collect();
    let flooder = Client::connect(addr);
    health_answered_during_flood(addr, &flooder, payload);
}

#[test]
fn a_peer_streaming_bytes_to_a_stream_does_not_starve_the_others() {
    let addr = start(patient_config());
    // An SSE subscriber has nothing more to say, so the server throws away
    // whatever it sends: the flood costs the server reads, not memory.
    let mut flooder = Client::connect(addr);
    let ch = channel("flooded");
    flooder.request("GET", &format!("/sub/{ch}?transport=sse"), &[], b"");
    assert_eq!(flooder.read_head().status, 200);
    health_answered_during_flood(addr, &flooder, vec![b'z'; 64 * 1024]);
}

//! Slow readers get every byte of a large response: the idle timeout, the
//! linger after `Connection: close`, a client's half-close, SIGTERM and a
//! `--static` file read slowly must not cut output that is still queued. Only
//! the send timeout closes such a connection, and only when the client stops
//! taking bytes altogether.
//!
//! The responses are tens of megabytes, far more than the kernel's socket
//! buffers hold on loopback, so most of each one waits in the server's queue
//! while the client is not reading. A "slow" client here pauses once, longer
//! than the timeout that used to cut it, and then reads everything: the pause
//! is the client's behaviour under test, not synchronisation.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;

/// Each published message's size; with `MESSAGES` of them the long-poll
/// answer is about 32 MB.
const MESSAGE_BYTES: usize = 4 * 1024 * 1024;
const MESSAGES: usize = 8;

/// A config whose idle timeout is short, so a pause longer than it shows
/// whether it cuts a response still going out.
fn big_config() -> Config {
    Config {
        max_body: MESSAGE_BYTES,
        idle_timeout: Duration::from_millis(300),
        ..config()
    }
}

/// Publishes `MESSAGES` large messages on `ch`.
fn publish_big(addr: SocketAddr, ch: &str) {
    let data = vec![b'x'; MESSAGE_BYTES];
    for _ in 0..MESSAGES {
        let resp = call(addr, "POST", &format!("/pub/{ch}"), &[], &data);
        assert_eq!(resp.status, 201, "publish: {resp:?}");
    }
}

/// Asks for every message on `ch` as one long-poll answer and reads its head.
fn ask_big_poll(addr: SocketAddr, ch: &str, extra: &[&str]) -> (Client, usize) {
    let mut client = Client::connect(addr);
    let path = format!("/sub/{ch}?transport=longpoll&since=earliest");
    client.request("GET", &path, extra, b"");
    let head = client.read_head();
    assert_eq!(head.status, 200, "{head:?}");
    let len: usize = head.header("content-length").unwrap().parse().unwrap();
    assert!(len > MESSAGES * MESSAGE_BYTES, "answer of {len} bytes");
    (client, len)
}

/// Reads `len` body bytes and checks they are the whole long-poll answer.
#[track_caller]
fn read_poll_body(client: &mut Client, len: usize) {
    let body = client.read_bytes(len);
    let text = std::str::from_utf8(&body).expect("UTF-8 body");
    let value: serde_json::Value = serde_json::from_str(text).expect("the answer is whole JSON");
    let messages = value["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), MESSAGES);
    for m in messages {
        assert_eq!(m["data"].as_str().map(str::len), Some(MESSAGE_BYTES));
    }
}

/// `/stats` as a serde_json value.
fn stats_value(addr: SocketAddr) -> serde_json::Value {
    let resp = get(addr, "/stats");
    assert_eq!(resp.status, 200);
    serde_json::from_str(resp.text()).expect("stats JSON")
}

#[test]
fn a_slow_reader_gets_a_whole_long_poll_answer_past_the_idle_timeout() {
    let addr = start(big_config());
    let ch = channel("slow-poll");
    publish_big(addr, &ch);
    let (mut client, len) = ask_big_poll(addr, &ch, &[]);
    std::thread::sleep(Duration::from_millis(900));
    read_poll_body(&mut client, len);
    // The connection is still good for another request.
    client.request("GET", "/healthz", &[], b"");
    assert_eq!(client.read_response().status, 200);
}

#[test]
fn a_slow_reader_gets_a_whole_response_with_connection_close_past_the_linger() {
    let addr = start(big_config());
    let ch = channel("slow-close");
    publish_big(addr, &ch);
    let (mut client, len) = ask_big_poll(addr, &ch, &["Connection: close"]);
    // Longer than the 2 s linger a closing connection gets.
    std::thread::sleep(Duration::from_millis(2500));
    read_poll_body(&mut client, len);
    client.expect_closed();
}

#[test]
fn a_client_that_half_closes_after_its_request_gets_the_whole_answer() {
    // A queue past --max-queued-bytes stops the server reading (pipelining
    // back-pressure), so it would not see the EOF; keep the answer under it.
    let addr = start(Config {
        max_queued_bytes: 4 * MESSAGES * MESSAGE_BYTES,
        ..big_config()
    });
    let ch = channel("half-close");
    publish_big(addr, &ch);
    let mut client = Client::connect(addr);
    let path = format!("/sub/{ch}?transport=longpoll&since=earliest");
    client.request("GET", &path, &[], b"");
    client.shutdown_write();
    let head = client.read_head();
    assert_eq!(head.status, 200, "{head:?}");
    let len: usize = head.header("content-length").unwrap().parse().unwrap();
    read_poll_body(&mut client, len);
    client.expect_closed();
}

#[test]
fn sigterm_lets_a_slow_reader_finish_its_response() {
    let size = MESSAGE_BYTES.to_string();
    let mut proc = Proc::start(&["--max-body", &size]);
    let addr = proc.addr;
    let ch = channel("sigterm");
    publish_big(addr, &ch);
    let (mut client, len) = ask_big_poll(addr, &ch, &[]);
    proc.signal(libc::SIGTERM);
    // Longer than the shutdown grace, so it cannot be what lets it through.
    std::thread::sleep(Duration::from_millis(2000));
    read_poll_body(&mut client, len);
    client.expect_closed();
    let (status, _) = proc
        .wait_exit(Duration::from_secs(10))
        .expect("the server exits once the response is out");
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_slow_reader_gets_a_whole_static_file() {
    let dir = std::env::temp_dir().join(format!("halley-slow-static-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file: Vec<u8> = (0..24 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(dir.join("big.bin"), &file).unwrap();
    let addr = start(Config {
        static_dir: Some(dir.clone()),
        ..big_config()
    });
    let mut client = Client::connect(addr);
    client.request("GET", "/big.bin", &[], b"");
    let head = client.read_head();
    assert_eq!(head.status, 200, "{head:?}");
    assert_eq!(
        head.header("content-length"),
        Some(&*file.len().to_string())
    );
    std::thread::sleep(Duration::from_millis(900));
    let body = client.read_bytes(file.len());
    assert!(body == file, "the file arrived changed");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_reader_that_stops_reading_is_closed_after_the_send_timeout() {
    let size = MESSAGE_BYTES.to_string();
    let proc = Proc::start(&["--max-body", &size, "--send-timeout", "0.3"]);
    let addr = proc.addr;
    let ch = channel("stalled");
    publish_big(addr, &ch);
    let (mut client, len) = ask_big_poll(addr, &ch, &[]);
    wait_until("the send timeout closes the stalled reader", || {
        stats_value(addr)["send_timeouts"].as_u64() == Some(1)
    });
    let rest = client.read_to_end();
    assert!(
        rest.len() < len,
        "got all {len} bytes from a reader that was closed"
    );
}

/// A reader slower than the kernel's socket buffer drains: between two of
/// the server's writes the client spends longer than the send timeout
/// reading what the kernel already holds (megabytes, once autotuned), and
/// that reading is progress too. It gets every byte.
#[test]
fn a_reader_that_keeps_reading_is_not_cut_while_the_kernel_buffer_drains() {
    let addr = start(Config {
        send_timeout: Duration::from_millis(500),
        ..big_config()
    });
    let ch = channel("trickle");
    let data = vec![b'x'; MESSAGE_BYTES];
    for _ in 0..2 {
        assert_eq!(
            call(addr, "POST", &format!("/pub/{ch}"), &[], &data).status,
            201
        );
    }
    let mut client = Client::connect(addr);
    let path = format!("/sub/{ch}?transport=longpoll&since=earliest");
    client.request("GET", &path, &[], b"");
    let head = client.read_head();
    assert_eq!(head.status, 200, "{head:?}");
    let len: usize = head.header("content-length").unwrap().parse().unwrap();
    // About 1.3 MB/s: the client's behaviour under test, not synchronisation.
    let mut body = Vec::with_capacity(len);
    while body.len() < len {
        let step = (len - body.len()).min(64 * 1024);
        body.extend(client.read_bytes(step));
        std::thread::sleep(Duration::from_millis(50));
    }
    let value: serde_json::Value = serde_json::from_slice(&body).expect("the answer is whole JSON");
    assert_eq!(value["messages"].as_array().map(Vec::len), Some(2));
    assert_eq!(stats_value(addr)["send_timeouts"].as_u64(), Some(0));
}

/// A stream subscriber that stops reading while it is still under
/// `--max-queued-bytes` is closed by the send timeout, checked at its
/// heartbeat: its heartbeats alone would never bring it to the limit.
#[test]
fn a_stream_subscriber_that_stops_reading_is_closed_after_the_send_timeout() {
    let addr = start(Config {
        max_queued_bytes: 256 * 1024 * 1024,
        send_timeout: Duration::from_millis(300),
        heartbeat: Duration::from_millis(100),
        ..big_config()
    });
    let ch = channel("stalled-sse");
    let sub = Sub::sse(addr, &ch, "", &[]);
    wait_subscribers(addr, &ch, 1);
    // Far more than the kernel's buffers hold on loopback, so output queues.
    publish_big(addr, &ch);
    wait_until("the send timeout closes the stalled stream", || {
        stats_value(addr)["send_timeouts"].as_u64() == Some(1)
    });
    assert_eq!(stats_value(addr)["slow_consumer_closes"].as_u64(), Some(0));
    drop(sub);
}

//! Limits and timeouts: slowloris heads closed by the header timeout counted
//! from the first byte, slow bodies (408), idle keep-alive connections, a
//! reader that stops reading (closed and counted while a fast subscriber
//! keeps receiving), `max_connections` (503), and message TTL expiry.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn slowloris_is_closed_by_the_header_timeout_counted_from_the_first_byte() {
    let timeout = Duration::from_millis(300);
    let addr = start(Config {
        header_timeout: timeout,
        ..config()
    });
    let mut c = Client::connect(addr);
    let mut writer = c.stream.try_clone().unwrap();
    let started = Instant::now();
    // One byte every 20 ms for up to 5 s: every read sees progress, so a
    // per-read timeout would never fire.
    let trickle = std::thread::spawn(move || {
        let head = format!(
            "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: {}",
            "a".repeat(500)
        );
        for b in head.bytes() {
            if writer.write_all(&[b]).is_err() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    });
    c.expect_closed();
    let elapsed = started.elapsed();
    assert!(
        elapsed >= timeout - Duration::from_millis(20),
        "closed after {elapsed:?}, before the timeout"
    );
    assert!(
        elapsed < Duration::from_secs(2),
        "closed only after {elapsed:?}: the timeout is not counted from the first byte"
    );
    assert!(
        trickle.join().unwrap(),
        "the trickle ran to its end unclosed"
    );
    assert!(stats(addr)["timeouts"].as_u64().unwrap() >= 1);
}

#[test]
fn a_connection_that_never_sends_is_closed() {
    let addr = start(Config {
        header_timeout: Duration::from_millis(200),
        idle_timeout: Duration::from_millis(200),
        ..config()
    });
    let mut c = Client::connect(addr);
    c.expect_closed();
}

#[test]
fn a_slow_body_gets_408_and_a_close() {
    let addr = start(Config {
        header_timeout: Duration::from_millis(300),
        ..config()
    });
    let mut c = Client::connect(addr);
    c.send("POST /pub/slow HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc");
    let r = c.read_response();
    r.assert_error(408);
    assert!(r.closes());
    c.expect_closed();
    assert_eq!(get(addr, "/pub/slow").status, 404, "nothing was published");
}

#[test]
fn idle_keep_alive_connections_close_after_the_idle_timeout() {
    let idle = Duration::from_millis(300);
    let addr = start(Config {
        idle_timeout: idle,
        header_timeout: Duration::from_secs(5),
        ..config()
    });
    let mut c = Client::connect(addr);
    // Requests spaced under the idle timeout keep the connection open past it.
    let started = Instant::now();
    for _ in 0..4 {
        c.request("GET", "/healthz", &[], b"");
        assert_eq!(c.read_response().body, b"ok");
        std::thread::sleep(Duration::from_millis(150));
    }
    assert!(started.elapsed() > idle);
    c.request("GET", "/healthz", &[], b"");
    assert_eq!(c.read_response().body, b"ok");
    let last = Instant::now();
    c.expect_closed();
    let elapsed = last.elapsed();
    assert!(
        elapsed >= idle - Duration::from_millis(20),
        "closed {elapsed:?} after the last response"
    );
    assert!(
        elapsed < Duration::from_secs(3),
        "closed only after {elapsed:?}"
    );
}

#[test]
fn a_reader_that_stops_reading_is_closed_while_a_fast_one_gets_everything() {
    const SIZE: usize = 128 * 1024;
    let addr = start(Config {
        max_queued_bytes: 256 * 1024,
        ..config()
    });
    let ch = channel("slow");
    // Never read from: its kernel buffers fill, then its queue passes the limit.
    let slow = Sub::sse(addr, &ch, "", &[]);
    let mut fast = Sub::sse(addr, &ch, "", &[]);
    let fast_reader = std::thread::spawn(move || {
        let mut n = 0usize;
        loop {
            let ev = fast.next_event();
            let data = ev.data();
            if data == "end" {
                return (n, fast);
            }
            assert_eq!(data.len(), SIZE);
            assert_eq!(&data[..6], format!("{n:06}"), "in order, none lost");
            n += 1;
        }
    });

    let mut publisher = Client::connect(addr);
    let mut published = 0;
    let mut closed = false;
    // Loopback buffers absorb a few MB before the server must queue.
    while published < 400 {
        let mut data = format!("{published:06}");
        data.push_str(&"x".repeat(SIZE - 6));
        publisher.request("POST", &format!("/pub/{ch}"), &[], data.as_bytes());
        let r = publisher.read_response();
        assert_eq!(r.status, 201);
        published += 1;
        if published % 10 == 0 && stats(addr)["slow_consumer_closes"].as_u64().unwrap() == 1 {
            closed = true;
            break;
        }
    }
    assert!(
        closed,
        "the slow reader was never closed after {published} messages"
    );
    // The fast subscriber keeps receiving after the slow one is gone.
    for _ in 0..5 {
        let mut data = format!("{published:06}");
        data.push_str(&"x".repeat(SIZE - 6));
        publisher.request("POST", &format!("/pub/{ch}"), &[], data.as_bytes());
        assert_eq!(
            publisher.read_response().json()["subscribers"]
                .as_u64()
                .unwrap(),
            1
        );
        published += 1;
    }
    publisher.request("POST", &format!("/pub/{ch}"), &[], b"end");
    assert_eq!(publisher.read_response().status, 201);
    let (received, _fast) = fast_reader.join().unwrap();
    assert_eq!(received, published);

    let s = stats(addr);
    assert_eq!(s["slow_consumer_closes"].as_u64().unwrap(), 1);
    assert_eq!(
        s["connections"]["sse"].as_u64().unwrap(),
        1,
        "only the fast one is left"
    );
    // The slow reader finds its stream cut short: no terminating chunk, and
    // far less than everything.
    let mut slow = slow;
    let rest = slow.client.read_to_end();
    assert!(
        rest.len() < published * SIZE,
        "{} bytes reached the slow reader",
        rest.len()
    );
    assert!(
        !rest.ends_with(b"\r\n0\r\n\r\n"),
        "the stream was not ended properly, it was cut"
    );
}

#[test]
fn over_max_connections_gets_503_with_json_and_recovers() {
    let addr = start(Config {
        max_connections: 4,
        ..config()
    });
    let ch = channel("full");
    // Idle keep-alive connections count, as do parked subscribers.
    let mut idle = Client::connect(addr);
    idle.request("GET", "/healthz", &[], b"");
    assert_eq!(idle.read_response().status, 200);
    let _sse = Sub::sse(addr, &ch, "", &[]);
    let _stream = Sub::stream(addr, &ch, "");
    let mut poll = Client::connect(addr);
    poll.request("GET", &format!("/sub/{ch}"), &[], b"");
    wait_subscribers_from(&mut idle, &ch, 3);

    let mut extra = Client::connect(addr);
    extra.request("GET", "/healthz", &[], b"");
    let r = extra.read_response();
    r.assert_error(503);
    assert!(r.closes());
    extra.expect_closed();
    // (Until the refused client closes too, the server lingers on it.)
    drop(extra);

    // A freed slot is usable again.
    drop(poll);
    wait_until("a slot is free again", || {
        get(addr, "/healthz").status == 200
    });
    idle.request("GET", "/stats", &[], b"");
    let s = idle.read_response().json();
    assert!(s["rejections"]["503"].as_u64().unwrap() >= 1, "{s:?}");
}

/// Like `wait_subscribers`, over an already open connection (a new one
/// would count against `max_connections`).
fn wait_subscribers_from(c: &mut Client, ch: &str, n: u64) {
    wait_until("subscribers arrive", || {
        c.request("GET", &format!("/pub/{ch}"), &[], b"");
        let r = c.read_response();
        r.status == 200 && r.json()["subscribers"].as_u64().unwrap() == n
    });
}

#[test]
fn messages_expire_after_their_ttl_and_the_cursor_sees_a_gap() {
    let ttl = Duration::from_millis(500);
    let addr = start(Config {
        message_ttl: ttl,
        ..config()
    });
    let ch = channel("ttl");
    // A subscriber keeps the channel alive after its messages go.
    let mut sub = Sub::sse(addr, &ch, "", &[]);
    let m1 = publish(addr, &ch, "m1");
    let m2 = publish(addr, &ch, "m2");
    let published = Instant::now();
    assert_eq!(sub.next_event().data(), "m1");
    assert_eq!(sub.next_event().data(), "m2");
    let info = get(addr, &format!("/pub/{ch}")).json();
    if published.elapsed() < ttl {
        assert_eq!(info["messages"].as_u64().unwrap(), 2);
    }
    wait_until("the messages expire", || {
        get(addr, &format!("/pub/{ch}")).json()["messages"]
            .as_u64()
            .unwrap()
            == 0
    });
    assert!(published.elapsed() >= ttl - Duration::from_millis(20));
    let info = get(addr, &format!("/pub/{ch}")).json();
    assert_eq!(info["subscribers"].as_u64().unwrap(), 1);
    assert_eq!(
        info["last_id"].as_str().unwrap(),
        m2,
        "ids go on after expiry"
    );
    // A client that had m1 has lost m2 to the TTL: told so, exactly.
    let body = get(addr, &format!("/sub/{ch}?since={m1}")).json();
    let gap = &body["gap"];
    assert_eq!(gap["reason"].as_str().unwrap(), "expired");
    assert_eq!(gap["missed"].as_u64().unwrap(), 1);
    assert_eq!(gap["cursor"].as_str().unwrap(), m1);
    assert_eq!(gap["next"].as_str().unwrap(), m2);
    assert!(body["messages"].as_array().unwrap().is_empty());
    // Once the subscriber leaves too, the channel is freed.
    drop(sub);
    wait_until("the channel is freed", || {
        get(addr, &format!("/pub/{ch}")).status == 404
    });
}

/// Publishes a backlog of 100 messages of 100 KiB on a fresh channel. With
/// the default limits (100 buffered messages, 1 MiB of queued output, 1 MiB
/// bodies) this is well within what a publisher may leave behind, and a
/// client that connects and reads at once must receive all of it: closing it
/// as too slow would make every reconnect fail the same way.
fn large_backlog(addr: std::net::SocketAddr) -> String {
    let ch = channel("backlog");
    let mut publisher = Client::connect(addr);
    for i in 0..BACKLOG {
        let mut data = format!("{i:03}");
        data.push_str(&"y".repeat(BACKLOG_SIZE - 3));
        publisher.request("POST", &format!("/pub/{ch}"), &[], data.as_bytes());
        assert_eq!(publisher.read_response().status, 201);
    }
    ch
}

const BACKLOG: usize = 100;
const BACKLOG_SIZE: usize = 100 * 1024;

#[track_caller]
fn check_backlog_message(i: usize, data: &str) {
    assert_eq!(data.len(), BACKLOG_SIZE, "message {i}");
    assert_eq!(&data[..3], format!("{i:03}"), "message {i}");
}

#[test]
fn a_new_sse_subscriber_catching_up_on_a_large_backlog_is_not_a_slow_consumer() {
    let addr = start(config());
    let ch = large_backlog(addr);
    let mut sse = Sub::sse(addr, &ch, "&since=earliest", &[]);
    for i in 0..BACKLOG {
        check_backlog_message(i, &sse.next_event().data());
    }
    assert_eq!(stats(addr)["slow_consumer_closes"].as_u64().unwrap(), 0);
}

#[test]
fn a_new_stream_subscriber_catching_up_on_a_large_backlog_is_not_a_slow_consumer() {
    let addr = start(config());
    let ch = large_backlog(addr);
    let mut stream = Sub::stream(addr, &ch, "&since=earliest");
    for i in 0..BACKLOG {
        check_backlog_message(i, stream.next_json()["data"].as_str().unwrap());
    }
    assert_eq!(stats(addr)["slow_consumer_closes"].as_u64().unwrap(), 0);
}

#[test]
fn a_long_poll_answer_larger_than_max_queued_bytes_is_not_cut_off() {
    let addr = start(config());
    let ch = large_backlog(addr);
    let mut poll = Client::connect(addr);
    poll.request("GET", &format!("/sub/{ch}?since=earliest"), &[], b"");
    let r = poll.read_response();
    assert_eq!(r.status, 200);
    let body = r.json();
    let messages = body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), BACKLOG);
    for (i, m) in messages.iter().enumerate() {
        check_backlog_message(i, m["data"].as_str().unwrap());
    }
    assert_eq!(stats(addr)["slow_consumer_closes"].as_u64().unwrap(), 0);
}

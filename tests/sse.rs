//! Server-Sent Events: the head and preamble, the exact bytes of events
//! (multi-line data split on CR, LF and CRLF), heartbeats, transport choice,
//! reconnecting with `Last-Event-ID` without loss or duplicates, the gap
//! event for both reasons, channel deletion, and SSE over HTTP/1.0.

mod common;

use std::time::Duration;

use common::*;

/// `payload` framed as one HTTP chunk.
fn chunk(payload: &str) -> Vec<u8> {
    format!("{:x}\r\n{payload}\r\n", payload.len()).into_bytes()
}

#[track_caller]
fn assert_chunk(got: Vec<u8>, payload: &str) {
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&chunk(payload))
    );
}

#[test]
fn sse_head_and_preamble_are_sent_at_once() {
    let addr = start(Config {
        sse_retry: Duration::from_millis(1234),
        ..config()
    });
    let ch = channel("head");
    let epoch = epoch_of(&publish(addr, &channel("epoch"), "x")).to_owned();
    let mut c = Client::connect(addr);
    c.request("GET", &format!("/sub/{ch}?transport=sse"), &[], b"");
    let head = c.read_head();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some("text/event-stream"));
    assert_eq!(head.header("cache-control"), Some("no-cache"));
    assert_eq!(head.header("x-accel-buffering"), Some("no"));
    assert_eq!(head.header("transfer-encoding"), Some("chunked"));
    assert!(!head.has_header("content-length"));
    // The retry line first, then a comment, before any message exists; with
    // nothing to replay, an id-only block tells the client where it starts,
    // so a reconnect before the first message loses nothing.
    assert_chunk(
        c.read_raw_chunk(),
        &format!("retry: 1234\n: halley\n\nid: {epoch}-0\n\n"),
    );
    assert!(c.pending().is_empty());

    // With something to replay, the preamble is just the retry line and
    // comment, and the messages carry the ids.
    let id = publish(addr, &ch, "m");
    let mut c = Client::connect(addr);
    c.request(
        "GET",
        &format!("/sub/{ch}?transport=sse&since=earliest"),
        &[],
        b"",
    );
    c.read_head();
    assert_chunk(c.read_raw_chunk(), "retry: 1234\n: halley\n\n");
    assert_chunk(c.read_raw_chunk(), &format!("id: {id}\ndata: m\n\n"));
}

#[test]
fn a_subscriber_dropped_before_any_message_resumes_from_its_starting_cursor() {
    let addr = start_default();
    let ch = channel("start");
    publish(addr, &ch, "old");
    let sub = Sub::sse(addr, &ch, "", &[]);
    let start = sub
        .last_id
        .clone()
        .expect("an id-only block with the start");
    drop(sub);
    // Published while the browser is reconnecting.
    publish(addr, &ch, "while away");
    let header = format!("Last-Event-ID: {start}");
    let mut sub = Sub::sse(addr, &ch, "", &[&header]);
    assert_eq!(sub.next_event().data(), "while away");
}

#[test]
fn accept_header_selects_sse_and_an_explicit_transport_wins() {
    let addr = start_default();
    let ch = channel("accept");
    let mut sub = Sub::open(addr, &format!("/sub/{ch}"), &["Accept: text/event-stream"]);
    assert_eq!(sub.head.header("content-type"), Some("text/event-stream"));
    assert!(sub.next_block().raw.starts_with("retry: 2000\n"));

    publish(addr, &ch, "x");
    let r = call(
        addr,
        "GET",
        &format!("/sub/{ch}?transport=longpoll&since=earliest"),
        &["Accept: text/event-stream"],
        b"",
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.json()["messages"][0]["data"].as_str().unwrap(), "x");
}

#[test]
fn events_are_framed_exactly() {
    let addr = start_default();
    let ch = channel("frame");
    let mut sub = Sub::sse(addr, &ch, "", &[]);
    let cases: &[(&str, &str, &str)] = &[
        ("", "hello", "data: hello\n"),
        ("?event=note", "hi", "event: note\ndata: hi\n"),
        ("", "", "data: \n"),
        ("", "a\nb", "data: a\ndata: b\n"),
        ("", "a\r\nb", "data: a\ndata: b\n"),
        ("", "a\rb", "data: a\ndata: b\n"),
        (
            "",
            "a\r\r\nb\n\nc",
            "data: a\ndata: \ndata: b\ndata: \ndata: c\n",
        ),
        ("", "end\n", "data: end\ndata: \n"),
        (
            "",
            "id: forged\n\nevent: x",
            "data: id: forged\ndata: \ndata: event: x\n",
        ),
        ("", "héllo ✓ 🚀", "data: héllo ✓ 🚀\n"),
    ];
    for (query, data, lines) in cases {
        let r = call(
            addr,
            "POST",
            &format!("/pub/{ch}{query}"),
            &[],
            data.as_bytes(),
        );
        let id = r.json()["id"].as_str().unwrap().to_owned();
        let got = sub.client.read_raw_chunk();
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&chunk(&format!("id: {id}\n{lines}\n"))),
            "data {data:?}"
        );
    }
}

#[test]
fn heartbeats_are_comments_at_the_configured_period() {
    let addr = start(Config {
        heartbeat: Duration::from_millis(150),
        ..config()
    });
    let ch = channel("beat");
    let mut sub = Sub::sse(addr, &ch, "", &[]);
    let started = std::time::Instant::now();
    assert_chunk(sub.client.read_raw_chunk(), ":\n\n");
    assert_chunk(sub.client.read_raw_chunk(), ":\n\n");
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "two heartbeats came too fast: {:?}",
        started.elapsed()
    );
    // Events still arrive between heartbeats.
    let id = publish(addr, &ch, "between");
    let ev = sub.next_event();
    assert_eq!(
        (ev.id.as_deref(), ev.data().as_str()),
        (Some(id.as_str()), "between")
    );
    assert_chunk(sub.client.read_raw_chunk(), ":\n\n");
}

#[test]
fn without_a_cursor_only_new_messages_arrive_and_earliest_replays_the_buffer() {
    let addr = start_default();
    let ch = channel("cursor");
    publish(addr, &ch, "old 1");
    publish(addr, &ch, "old 2");
    let mut fresh = Sub::sse(addr, &ch, "", &[]);
    let mut all = Sub::sse(addr, &ch, "&since=earliest", &[]);
    assert_eq!(all.next_event().data(), "old 1");
    assert_eq!(all.next_event().data(), "old 2");
    publish(addr, &ch, "new");
    assert_eq!(fresh.next_event().data(), "new");
    assert_eq!(all.next_event().data(), "new");
}

#[test]
fn reconnecting_with_last_event_id_gets_exactly_what_was_missed() {
    let addr = start_default();
    let ch = channel("reconnect");
    let mut sub = Sub::sse(addr, &ch, "&since=earliest", &[]);
    let mut ids = Vec::new();
    for i in 1..=5 {
        ids.push(publish(addr, &ch, &format!("m{i}")));
    }
    let mut last = String::new();
    for i in 1..=5 {
        let ev = sub.next_event();
        assert_eq!(ev.data(), format!("m{i}"));
        assert_eq!(ev.id.as_deref(), Some(ids[i - 1].as_str()));
        last = ev.id.unwrap();
    }
    drop(sub);
    // Published while the client is away.
    for i in 6..=10 {
        ids.push(publish(addr, &ch, &format!("m{i}")));
    }
    // The browser reconnects to the same URL, whose query cursor is stale;
    // the header says where it really got to and wins.
    let header = format!("Last-Event-ID: {last}");
    let mut sub = Sub::sse(
        addr,
        &ch,
        &format!("&since=earliest&last_event_id={}", ids[0]),
        &[&header],
    );
    for i in 6..=10 {
        assert_eq!(sub.next_event().data(), format!("m{i}"));
    }
    // Nothing replayed twice: the next event is the next message.
    publish(addr, &ch, "m11");
    let ev = sub.next_event();
    assert_eq!(ev.data(), "m11");
    assert!(sub.client.pending().is_empty());

    // The query cursor works without the header, and wins over `since`.
    let mut sub = Sub::sse(
        addr,
        &ch,
        &format!("&since=earliest&last_event_id={}", ids[8]),
        &[],
    );
    assert_eq!(sub.next_event().data(), "m10");
    assert_eq!(sub.next_event().data(), "m11");
}

#[test]
fn a_cursor_older_than_the_buffer_gets_a_gap_event_then_the_oldest_held() {
    let addr = start(Config {
        buffer: 5,
        ..config()
    });
    let ch = channel("overflow");
    let ids: Vec<String> = (1..=10)
        .map(|i| publish(addr, &ch, &format!("m{i}")))
        .collect();
    let header = format!("Last-Event-ID: {}", ids[1]);
    let mut sub = Sub::sse(addr, &ch, "", &[&header]);
    let gap = sub.next_event();
    assert_eq!(gap.event.as_deref(), Some("gap"));
    // Its id acknowledges the gap: a reconnect from it does not hear of it again.
    assert_eq!(gap.id.as_deref(), Some(ids[4].as_str()));
    let info = parse_json(&gap.data());
    assert_eq!(keys(&info), vec!["reason", "missed", "cursor", "next"]);
    assert_eq!(info["reason"].as_str().unwrap(), "expired");
    assert_eq!(
        info["missed"].as_u64().unwrap(),
        3,
        "m3, m4 and m5 were evicted"
    );
    assert_eq!(info["cursor"].as_str().unwrap(), ids[1]);
    assert_eq!(info["next"].as_str().unwrap(), ids[4]);
    for i in 6..=10 {
        let ev = sub.next_event();
        assert_eq!(ev.data(), format!("m{i}"));
        assert_eq!(ev.id.as_deref(), Some(ids[i - 1].as_str()));
    }
    drop(sub);
    let header = format!("Last-Event-ID: {}", gap.id.unwrap());
    let mut sub = Sub::sse(addr, &ch, "", &[&header]);
    let ev = sub.next_event();
    assert_eq!(ev.event, None, "no second gap: {ev:?}");
    assert_eq!(ev.data(), "m6");
}

#[test]
fn a_cursor_from_another_server_run_gets_a_restarted_gap() {
    let before = start_default();
    let after = start_default();
    let ch = channel("restart");
    let old = publish(before, &ch, "lost");
    let held: Vec<String> = (1..=3)
        .map(|i| publish(after, &ch, &format!("h{i}")))
        .collect();
    assert_ne!(
        epoch_of(&old),
        epoch_of(&held[0]),
        "each start has its own epoch"
    );

    let header = format!("Last-Event-ID: {old}");
    let mut sub = Sub::sse(after, &ch, "", &[&header]);
    let gap = sub.next_event();
    assert_eq!(gap.event.as_deref(), Some("gap"));
    let info = parse_json(&gap.data());
    assert_eq!(info["reason"].as_str().unwrap(), "restarted");
    assert!(
        info["missed"].is_null(),
        "how much was lost is unknown: {info:?}"
    );
    assert_eq!(info["cursor"].as_str().unwrap(), old);
    let next = format!("{}-0", epoch_of(&held[0]));
    assert_eq!(info["next"].as_str().unwrap(), next);
    assert_eq!(gap.id.as_deref(), Some(next.as_str()));
    for (i, id) in held.iter().enumerate() {
        let ev = sub.next_event();
        assert_eq!(ev.data(), format!("h{}", i + 1));
        assert_eq!(ev.id.as_deref(), Some(id.as_str()));
    }
    // Reconnecting from the gap's id: no gap again, the whole buffer.
    let header = format!("Last-Event-ID: {next}");
    let mut sub = Sub::sse(after, &ch, "", &[&header]);
    assert_eq!(sub.next_event().data(), "h1");
}

#[test]
fn deleting_the_channel_sends_deleted_and_ends_the_stream() {
    let addr = start_default();
    let ch = channel("del");
    let mut sub = Sub::sse(addr, &ch, "", &[]);
    publish(addr, &ch, "before");
    assert_eq!(sub.next_event().data(), "before");
    let r = call(addr, "DELETE", &format!("/pub/{ch}"), &[], b"");
    assert_eq!(r.status, 204);
    let ev = sub.next_event();
    assert_eq!(ev.event.as_deref(), Some("deleted"));
    assert_eq!(parse_json(&ev.data())["channel"].as_str().unwrap(), ch);
    sub.expect_end();
    assert_eq!(get(addr, &format!("/pub/{ch}")).status, 404);
}

#[test]
fn sse_over_http10_is_unchunked_and_ends_with_the_connection() {
    let addr = start(Config {
        heartbeat: Duration::from_millis(150),
        ..config()
    });
    let ch = channel("h10");
    let mut c = Client::connect(addr);
    c.send(format!("GET /sub/{ch}?transport=sse HTTP/1.0\r\n\r\n"));
    let head = c.read_head();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some("text/event-stream"));
    assert!(!head.has_header("transfer-encoding"), "{head:?}");
    assert!(!head.has_header("content-length"), "{head:?}");
    assert!(head.closes(), "{head:?}");
    let epoch = epoch_of(&publish(addr, &channel("epoch"), "x")).to_owned();
    let mut preamble = c.read_until(b"\n\n");
    preamble.extend(c.read_until(b"\n\n"));
    assert_eq!(
        String::from_utf8(preamble).unwrap(),
        format!("retry: 2000\n: halley\n\nid: {epoch}-0\n\n")
    );
    // A heartbeat, unframed.
    assert_eq!(c.read_bytes(3), b":\n\n");
    let id = publish(addr, &ch, "one\ntwo");
    let want = format!("id: {id}\ndata: one\ndata: two\n\n");
    let mut got = c.read_until(b"\n\n");
    while got == b":\n\n" {
        got = c.read_until(b"\n\n");
    }
    assert_eq!(String::from_utf8(got).unwrap(), want);
    assert_eq!(
        call(addr, "DELETE", &format!("/pub/{ch}"), &[], b"").status,
        204
    );
    let rest = String::from_utf8(c.read_to_end()).unwrap();
    let rest = rest.trim_start_matches(":\n\n");
    assert_eq!(
        rest,
        format!("event: deleted\ndata: {{\"channel\":\"{ch}\"}}\n\n")
    );
}

#[test]
fn every_subscriber_gets_every_message_in_order() {
    let addr = start_default();
    let ch = channel("fanout");
    let mut subs: Vec<Sub> = (0..40).map(|_| Sub::sse(addr, &ch, "", &[])).collect();
    let mut publisher = Client::connect(addr);
    for i in 0..50 {
        publisher.request(
            "POST",
            &format!("/pub/{ch}"),
            &[],
            format!("m{i}").as_bytes(),
        );
        let r = publisher.read_response();
        assert_eq!(r.json()["subscribers"].as_u64().unwrap(), 40);
    }
    for sub in &mut subs {
        for i in 0..50 {
            assert_eq!(sub.next_event().data(), format!("m{i}"));
        }
    }
}

//! The NDJSON stream transport: head, exact lines, heartbeats as empty lines,
//! cursors, the `{"gap":...}` line for both reasons, deletion, HTTP/1.0.

mod common;

use std::time::Duration;

use common::*;

fn chunk(payload: &str) -> String {
    format!("{:x}\r\n{payload}\r\n", payload.len())
}

#[test]
fn stream_head_and_exact_lines() {
    let addr = start_default();
    let ch = channel("nd");
    let mut sub = Sub::stream(addr, &ch, "");
    assert_eq!(sub.head.header("transfer-encoding"), Some("chunked"));
    assert_eq!(sub.head.header("cache-control"), Some("no-cache"));
    assert!(
        sub.client.pending().is_empty(),
        "nothing before the first message"
    );

    let id = publish(addr, &ch, "plain");
    assert_eq!(
        String::from_utf8(sub.client.read_raw_chunk()).unwrap(),
        chunk(&format!(
            "{{\"id\":\"{id}\",\"channel\":\"{ch}\",\"data\":\"plain\"}}\n"
        ))
    );
    let r = call(
        addr,
        "POST",
        &format!("/pub/{ch}?event=note"),
        &[],
        "say \"hi\"\n\ttab\\ ✓\u{1}".as_bytes(),
    );
    let id = r.json()["id"].as_str().unwrap().to_owned();
    let line = sub.next_line();
    let v = parse_json(&line);
    assert_eq!(keys(&v), vec!["id", "channel", "data", "event"]);
    assert_eq!(v["id"].as_str().unwrap(), id);
    assert_eq!(v["channel"].as_str().unwrap(), ch);
    assert_eq!(v["data"].as_str().unwrap(), "say \"hi\"\n\ttab\\ ✓\u{1}");
    assert_eq!(v["event"].as_str().unwrap(), "note");
}

#[test]
fn stream_heartbeat_is_an_empty_line() {
    let addr = start(Config {
        heartbeat: Duration::from_millis(150),
        ..config()
    });
    let ch = channel("beat");
    let mut sub = Sub::stream(addr, &ch, "");
    assert_eq!(sub.client.read_raw_chunk(), b"1\r\n\n\r\n");
    assert_eq!(sub.client.read_raw_chunk(), b"1\r\n\n\r\n");
    publish(addr, &ch, "x");
    assert_eq!(sub.next_json()["data"].as_str().unwrap(), "x");
}

#[test]
fn stream_cursors_replay_from_where_the_client_was() {
    let addr = start_default();
    let ch = channel("replay");
    let ids: Vec<String> = (1..=4)
        .map(|i| publish(addr, &ch, &format!("m{i}")))
        .collect();
    let mut all = Sub::stream(addr, &ch, "&since=earliest");
    let mut after2 = Sub::stream(addr, &ch, &format!("&since={}", ids[1]));
    let mut fresh = Sub::stream(addr, &ch, "");
    for i in 1..=4 {
        assert_eq!(all.next_json()["data"].as_str().unwrap(), format!("m{i}"));
    }
    for i in 3..=4 {
        assert_eq!(
            after2.next_json()["data"].as_str().unwrap(),
            format!("m{i}")
        );
    }
    publish(addr, &ch, "m5");
    for sub in [&mut all, &mut after2, &mut fresh] {
        assert_eq!(sub.next_json()["data"].as_str().unwrap(), "m5");
    }
}

#[test]
fn stream_gap_line_for_an_evicted_cursor() {
    let addr = start(Config {
        buffer: 3,
        ..config()
    });
    let ch = channel("gap");
    let ids: Vec<String> = (1..=8)
        .map(|i| publish(addr, &ch, &format!("m{i}")))
        .collect();
    let mut sub = Sub::stream(addr, &ch, &format!("&since={}", ids[0]));
    let gap = sub.next_json();
    assert_eq!(keys(&gap), vec!["gap"]);
    let g = &gap["gap"];
    assert_eq!(g["reason"].as_str().unwrap(), "expired");
    assert_eq!(g["missed"].as_u64().unwrap(), 4, "m2..m5 were evicted");
    assert_eq!(g["cursor"].as_str().unwrap(), ids[0]);
    assert_eq!(g["next"].as_str().unwrap(), ids[4]);
    for i in 6..=8 {
        assert_eq!(sub.next_json()["data"].as_str().unwrap(), format!("m{i}"));
    }
}

#[test]
fn stream_gap_line_for_a_cursor_from_another_run() {
    let before = start_default();
    let after = start_default();
    let ch = channel("restart");
    let old = publish(before, &ch, "lost");
    publish(after, &ch, "kept");
    let mut sub = Sub::stream(after, &ch, &format!("&since={old}"));
    let g = &sub.next_json()["gap"];
    assert_eq!(g["reason"].as_str().unwrap(), "restarted");
    assert!(g["missed"].is_null());
    assert_eq!(g["cursor"].as_str().unwrap(), old);
    assert_eq!(sub.next_json()["data"].as_str().unwrap(), "kept");
}

#[test]
fn deleting_the_channel_ends_the_stream_with_a_deleted_line() {
    let addr = start_default();
    let ch = channel("del");
    let mut sub = Sub::stream(addr, &ch, "");
    publish(addr, &ch, "x");
    assert_eq!(sub.next_json()["data"].as_str().unwrap(), "x");
    assert_eq!(
        call(addr, "DELETE", &format!("/pub/{ch}"), &[], b"").status,
        204
    );
    let last = sub.next_json();
    assert_eq!(last["deleted"], Value::Bool(true));
    assert_eq!(last["channel"].as_str().unwrap(), ch);
    sub.expect_end();
}

#[test]
fn stream_over_http10_is_raw_lines() {
    let addr = start_default();
    let ch = channel("h10");
    let mut c = Client::connect(addr);
    c.send(format!("GET /sub/{ch}?transport=stream HTTP/1.0\r\n\r\n"));
    let head = c.read_head();
    assert_eq!(head.header("content-type"), Some("application/x-ndjson"));
    assert!(!head.has_header("transfer-encoding"));
    assert!(head.closes());
    let id = publish(addr, &ch, "raw");
    let line = c.read_until(b"\n");
    assert_eq!(
        String::from_utf8(line).unwrap(),
        format!("{{\"id\":\"{id}\",\"channel\":\"{ch}\",\"data\":\"raw\"}}\n")
    );
    assert_eq!(
        call(addr, "DELETE", &format!("/pub/{ch}"), &[], b"").status,
        204
    );
    assert_eq!(
        String::from_utf8(c.read_to_end()).unwrap(),
        format!("{{\"deleted\":true,\"channel\":\"{ch}\"}}\n")
    );
}

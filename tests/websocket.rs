//! WebSocket over raw sockets: the handshake (good, malformed, the wrong
//! version, the echo endpoint off by default), frames split at every byte,
//! protocol violations and the close code each earns, the close handshake,
//! ping and pong, the heartbeat that closes a silent peer, and `/sub`
//! WebSockets: live messages, resume and gaps, deletion, slow consumers.

mod common;

use std::time::Duration;

use common::ws::*;
use common::*;

fn echo_config() -> Config {
    Config {
        ws_echo: true,
        ws_max_message: 1 << 20,
        ..config()
    }
}

#[test]
fn the_handshake_switches_protocols_and_declines_compression() {
    let addr = start(echo_config());
    let mut c = Client::connect(addr);
    c.send(upgrade_request(
        "/ws-echo",
        &["Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"],
    ));
    let ws = Ws::after_upgrade(c);
    assert!(
        !ws.head.has_header("sec-websocket-extensions"),
        "{:?}",
        ws.head
    );
    let stats = stats(addr);
    assert_eq!(stats["connections"]["websocket"], 1, "{stats}");
    assert_eq!(stats["websocket"]["upgrades"], 1, "{stats}");
}

#[test]
fn malformed_handshakes_get_plain_http_errors() {
    let addr = start(echo_config());
    let good = String::from_utf8(upgrade_request("/ws-echo", &[])).unwrap();
    let cases: Vec<(&str, String, u16)> = vec![
        (
            "no key",
            good.replace(&format!("Sec-WebSocket-Key: {KEY}\r\n"), ""),
            400,
        ),
        ("short key", good.replace(KEY, "c2hvcnQ="), 400),
        (
            "key not base64",
            good.replace(KEY, "!!!!!!!!!!!!!!!!!!!!!!=="),
            400,
        ),
        ("version 8", good.replace("Version: 13", "Version: 8"), 426),
        (
            "no version",
            good.replace("Sec-WebSocket-Version: 13\r\n", ""),
            426,
        ),
        (
            "no upgrade token",
            good.replace("Connection: Upgrade", "Connection: keep-alive"),
            400,
        ),
        (
            "no Upgrade header",
            good.replace("Upgrade: websocket\r\n", ""),
            426,
        ),
        ("POST", good.replacen("GET", "POST", 1), 405),
        ("HTTP/1.0", good.replace("HTTP/1.1", "HTTP/1.0"), 400),
    ];
    for (what, request, status) in cases {
        let mut c = Client::connect(addr);
        c.send(&request);
        let resp = c.read_response();
        assert_eq!(resp.status, status, "{what}: {resp:?}");
        resp.assert_error(status);
        if status == 426 {
            assert_eq!(resp.header("sec-websocket-version"), Some("13"), "{what}");
        }
    }
    // The same on /sub: an upgrade is checked before anything subscribes.
    let mut c = Client::connect(addr);
    c.send(
        good.replace("/ws-echo", "/sub/hs")
            .replace("Version: 13", "Version: 7"),
    );
    c.read_response().assert_error(426);
    assert_eq!(stats(addr)["connections"]["websocket"], 0);
}

#[test]
fn the_echo_endpoint_is_off_unless_asked_for() {
    let addr = start_default();
    let mut c = Client::connect(addr);
    c.send(upgrade_request("/ws-echo", &[]));
    c.read_response().assert_error(404);
}

#[test]
fn echoes_text_and_binary_messages() {
    let addr = start(echo_config());
    let mut ws = Ws::connect(addr, "/ws-echo");
    let long = "x".repeat(70_000);
    let cases: Vec<(u8, Vec<u8>)> = vec![
        (TEXT, b"hello".to_vec()),
        (TEXT, Vec::new()),
        (TEXT, "κόσμε".as_bytes().to_vec()),
        (BINARY, vec![0, 255, 1, 254]),
        (TEXT, vec![b'y'; 200]),
        (BINARY, long.into_bytes()),
    ];
    for (opcode, payload) in cases {
        ws.send_frame(FIN | opcode, &payload);
        let frame = ws.read_frame();
        assert_eq!((frame.fin, frame.opcode), (true, opcode));
        assert_eq!(frame.payload, payload);
    }
}

#[test]
fn fragments_with_a_ping_between_and_a_code_point_split_across_them() {
    let addr = start(echo_config());
    let mut ws = Ws::connect(addr, "/ws-echo");
    // "café!" with the é (C3 A9) cut between two fragments.
    ws.send_frame(TEXT, b"caf\xC3");
    ws.send_frame(FIN | PING, b"mid");
    ws.send_frame(0, b"");
    ws.send_frame(FIN, b"\xA9!");
    let pong = ws.read_frame();
    assert_eq!((pong.opcode, pong.payload.as_slice()), (PONG, &b"mid"[..]));
    let text = ws.read_frame();
    assert_eq!(
        (text.opcode, text.payload),
        (TEXT, "café!".as_bytes().to_vec())
    );
}

#[test]
fn frames_split_at_every_byte_arrive_whole() {
    let addr = start(echo_config());
    let mut ws = Ws::connect(addr, "/ws-echo");
    let payloads = [
        "héllo wörld".as_bytes().to_vec(),
        vec![b'z'; 300],
        vec![b'q'; 66_000],
    ];
    for payload in payloads {
        let frame = client_frame(FIN | TEXT, &payload);
        // The header and the first bytes one write at a time, so the
        // server sees the frame cut at each of them; then the rest.
        let head = 20.min(frame.len() - 1);
        for byte in &frame[..head] {
            ws.client.send([*byte]);
        }
        ws.client.send(&frame[head..frame.len() - 1]);
        // All but the last byte: nothing may come back yet.
        ws.client.expect_silence(Duration::from_millis(50));
        ws.client.send(&frame[frame.len() - 1..]);
        let echo = ws.read_frame();
        assert_eq!(echo.payload, payload);
    }
}

#[test]
fn protocol_violations_close_with_their_codes() {
    let addr = start(Config {
        ws_max_message: 1000,
        ..echo_config()
    });
    let mut unmasked = client_frame(FIN | TEXT, b"hi");
    unmasked[1] &= 0x7F;
    unmasked.drain(2..6);
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("unmasked", unmasked, 1002),
        ("reserved bit", client_frame(0xC0 | TEXT, b"x"), 1002),
        ("opcode 3", client_frame(FIN | 3, b""), 1002),
        ("fragmented ping", client_frame(PING, b""), 1002),
        (
            "ping over 125 bytes",
            client_frame(FIN | PING, &[0; 126]),
            1002,
        ),
        ("continuation first", client_frame(FIN, b"x"), 1002),
        (
            "text inside text",
            [client_frame(TEXT, b"a"), client_frame(FIN | TEXT, b"b")].concat(),
            1002,
        ),
        ("bad UTF-8", client_frame(FIN | TEXT, b"a\xFFb"), 1007),
        (
            "truncated UTF-8",
            client_frame(FIN | TEXT, b"a\xE2\x82"),
            1007,
        ),
        ("surrogate", client_frame(FIN | TEXT, b"\xED\xA0\x80"), 1007),
        (
            "over --ws-max-message",
            client_frame(FIN | BINARY, &[0; 1001]),
            1009,
        ),
        (
            "fragments over --ws-max-message",
            [
                client_frame(BINARY, &[0; 600]),
                client_frame(FIN, &[0; 600]),
            ]
            .concat(),
            1009,
        ),
    ];
    for (what, bytes, code) in cases {
        let mut ws = Ws::connect(addr, "/ws-echo");
        ws.client.send(&bytes);
        let reason = ws.expect_close(code);
        assert!(!reason.is_empty(), "{what}: the close says why");
    }
    let stats = stats(addr);
    assert_eq!(stats["websocket"]["protocol_closes"], 12, "{stats}");
}

#[test]
fn bad_utf8_fails_before_the_message_ends() {
    let addr = start(echo_config());
    let mut ws = Ws::connect(addr, "/ws-echo");
    // A first fragment whose bytes can never become UTF-8; the rest of the
    // message is never sent, and the close comes anyway.
    ws.send_frame(TEXT, b"ok \xF8 never");
    ws.expect_close(1007);
}

#[test]
fn the_close_handshake_echoes_the_code() {
    let addr = start(echo_config());
    let mut ws = Ws::connect(addr, "/ws-echo");
    ws.send_frame(FIN | CLOSE, &close_payload(4321, "done here"));
    ws.expect_close(4321);

    // A close without a code is answered with a close without one.
    let mut ws = Ws::connect(addr, "/ws-echo");
    ws.send_frame(FIN | CLOSE, b"");
    let frame = ws.read_frame();
    assert_eq!((frame.opcode, frame.payload.len()), (CLOSE, 0));
    ws.client.expect_closed();

    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("one byte", vec![0x03], 1002),
        ("code 1005", close_payload(1005, ""), 1002),
        ("code 999", close_payload(999, ""), 1002),
        ("code 2999", close_payload(2999, ""), 1002),
        (
            "reason not UTF-8",
            [close_payload(1000, ""), vec![0xFF]].concat(),
            1007,
        ),
    ];
    for (what, payload, code) in cases {
        let mut ws = Ws::connect(addr, "/ws-echo");
        ws.send_frame(FIN | CLOSE, &payload);
        let got = ws.read_frame().close_code().0;
        assert_eq!(got, code, "{what}");
        ws.client.expect_closed();
    }
}

#[test]
fn a_peer_that_stays_silent_after_our_close_is_dropped_after_the_linger() {
    let addr = start(echo_config());
    let mut ws = Ws::connect(addr, "/ws-echo");
    ws.client.send(client_frame(FIN | TEXT, b"\xFF"));
    let frame = ws.read_frame();
    assert_eq!(frame.close_code().0, 1007);
    // The client never answers with its own close; the server has shut its
    // side, and drops the connection once the linger is over.
    ws.client.expect_closed();
    wait_until("the connection is gone", || {
        stats(addr)["connections"]["websocket"] == 0
    });
}

#[test]
fn pings_are_answered_with_their_payload() {
    let addr = start(echo_config());
    let mut ws = Ws::connect(addr, "/ws-echo");
    for payload in [&b""[..], b"1", &[7u8; 125]] {
        ws.send_frame(FIN | PING, payload);
        let pong = ws.read_frame();
        assert_eq!((pong.opcode, pong.payload.as_slice()), (PONG, payload));
    }
    // An unsolicited pong is allowed and answered with nothing.
    ws.send_frame(FIN | PONG, b"x");
    ws.send_text("after");
    assert_eq!(ws.read_frame().payload, b"after");
}

#[test]
fn a_peer_that_leaves_pings_unanswered_is_closed() {
    let config = Config {
        heartbeat: Duration::from_millis(100),
        ..echo_config()
    };
    // One that never answers gets two pings, then a close it can read.
    let addr = start(config.clone());
    let mut silent = Ws::connect(addr, "/ws-echo");
    assert_eq!(silent.read_frame().opcode, PING);
    assert_eq!(silent.read_frame().opcode, PING);
    let reason = silent.expect_close(1008);
    assert!(reason.contains("pong"), "{reason}");
    assert_eq!(stats(addr)["websocket"]["pong_timeouts"], 1);

    // One that answers stays, past many periods.
    let addr = start(config);
    let mut live = Ws::connect(addr, "/ws-echo");
    for _ in 0..5 {
        let ping = live.read_frame();
        assert_eq!(ping.opcode, PING);
        live.send_frame(FIN | PONG, &ping.payload);
    }
    live.send_text("still here");
    loop {
        let frame = live.read_frame();
        if frame.opcode == PING {
            live.send_frame(FIN | PONG, &frame.payload);
            continue;
        }
        assert_eq!(frame.payload, b"still here");
        break;
    }
}

#[test]
fn a_peer_that_sends_faster_than_it_reads_is_not_read() {
    // Echoes pile up while the client does not read; past
    // --max-queued-bytes the server stops reading it (backpressure), so
    // what it holds for the client stays near the limit however much the
    // client sends; once the client reads, everything comes back in order.
    const LIMIT: usize = 256 * 1024;
    const MESSAGES: usize = 200;
    let addr = start(Config {
        max_queued_bytes: LIMIT,
        ..echo_config()
    });
    let mut ws = Ws::connect(addr, "/ws-echo");
    let payload = vec![b'p'; 100_000];
    let writer = {
        let mut stream = ws.client.stream.try_clone().unwrap();
        let payload = payload.clone();
        std::thread::spawn(move || {
            use std::io::Write;
            for i in 0..MESSAGES {
                let mut p = payload.clone();
                p[..4].copy_from_slice(&(i as u32).to_be_bytes());
                stream.write_all(&client_frame(FIN | BINARY, &p)).unwrap();
            }
        })
    };
    wait_until("output queues past the limit", || {
        stats(addr)["bytes_queued"].as_u64().unwrap() > LIMIT as u64
    });
    // 20 MB are on their way; the server holds at most one echo past the limit.
    for _ in 0..20 {
        let queued = stats(addr)["bytes_queued"].as_u64().unwrap();
        assert!(
            queued <= (LIMIT + 2 * payload.len()) as u64,
            "{queued} bytes queued"
        );
    }
    for i in 0..MESSAGES {
        let frame = ws.read_frame();
        assert_eq!(frame.payload.len(), payload.len());
        assert_eq!(frame.payload[..4], (i as u32).to_be_bytes(), "in order");
    }
    writer.join().unwrap();
}

// ---------------------------------------------------------------------------
// GET /sub/{channel} as a WebSocket.

/// A WebSocket subscriber of `channel` with the query `query` (`""`, or
/// starting with `?`), once the server lists it as a subscriber.
#[track_caller]
fn ws_sub(addr: std::net::SocketAddr, ch: &str, query: &str) -> Ws {
    let before = subscribers(addr, ch);
    let ws = Ws::connect(addr, &format!("/sub/{ch}{query}"));
    wait_subscribers(addr, ch, before + 1);
    ws
}

#[test]
fn a_sub_websocket_gets_each_message_as_the_streams_json_object() {
    let addr = start_default();
    let ch = channel("ws-live");
    let mut a = ws_sub(addr, &ch, "");
    let mut b = ws_sub(addr, &ch, "");
    let id = publish(addr, &ch, "hello \"world\"\nline two");
    let resp = call(addr, "POST", &format!("/pub/{ch}?event=note"), &[], b"x");
    let noted = resp.json()["id"].as_str().unwrap().to_owned();
    for ws in [&mut a, &mut b] {
        let first = ws.read_frame();
        assert!(first.fin);
        let value = first.json();
        assert_eq!(keys(&value), vec!["id", "channel", "data"]);
        assert_eq!(value["id"], id.as_str());
        assert_eq!(value["channel"], ch.as_str());
        assert_eq!(value["data"], "hello \"world\"\nline two");
        let second = ws.read_frame().json();
        assert_eq!(second["id"], noted.as_str());
        assert_eq!(second["event"], "note");
    }
    let stats = stats(addr);
    assert_eq!(stats["connections"]["websocket"], 2, "{stats}");
    assert_eq!(stats["messages_delivered"], 4, "{stats}");
}

#[test]
fn a_sub_websocket_resumes_from_its_cursor() {
    let addr = start_default();
    let ch = channel("ws-resume");
    let ids: Vec<String> = (0..4)
        .map(|i| publish(addr, &ch, &format!("m{i}")))
        .collect();
    let queries = [
        format!("?since={}", ids[1]),
        format!("?last_event_id={}", ids[1]),
        format!("?last_event_id={}&since={}", ids[1], ids[0]),
    ];
    for query in queries {
        let mut ws = ws_sub(addr, &ch, &query);
        assert_eq!(ws.read_frame().json()["id"], ids[2].as_str(), "{query}");
        assert_eq!(ws.read_frame().json()["id"], ids[3].as_str(), "{query}");
    }
    let mut ws = ws_sub(addr, &ch, "?since=earliest");
    for id in &ids {
        assert_eq!(ws.read_frame().json()["id"], id.as_str());
    }
    // Then live, with nothing lost or repeated between replay and fan-out.
    let live = publish(addr, &ch, "live");
    assert_eq!(ws.read_frame().json()["id"], live.as_str());
    // A bad cursor is a plain 400 before any upgrade.
    let mut c = Client::connect(addr);
    c.send(upgrade_request(&format!("/sub/{ch}?since=bogus"), &[]));
    c.read_response().assert_error(400);
}

#[test]
fn a_sub_websocket_whose_cursor_is_gone_gets_a_gap_frame_first() {
    let addr = start(Config {
        buffer: 2,
        ..config()
    });
    let ch = channel("ws-gap");
    let ids: Vec<String> = (0..5)
        .map(|i| publish(addr, &ch, &format!("m{i}")))
        .collect();
    let mut ws = ws_sub(addr, &ch, &format!("?since={}", ids[0]));
    let gap = ws.read_frame().json();
    assert_eq!(keys(&gap), vec!["gap"]);
    assert_eq!(gap["gap"]["reason"], "expired");
    assert_eq!(gap["gap"]["missed"], 2);
    assert_eq!(gap["gap"]["cursor"], ids[0].as_str());
    assert_eq!(gap["gap"]["next"], ids[2].as_str());
    assert_eq!(ws.read_frame().json()["id"], ids[3].as_str());
    assert_eq!(ws.read_frame().json()["id"], ids[4].as_str());
}

#[test]
fn deleting_the_channel_sends_deleted_then_close_1000() {
    let addr = start_default();
    let ch = channel("ws-delete");
    let mut ws = ws_sub(addr, &ch, "");
    let resp = call(addr, "DELETE", &format!("/pub/{ch}"), &[], b"");
    assert!(resp.status / 100 == 2, "{resp:?}");
    let deleted = ws.read_frame().json();
    assert_eq!(deleted, serde_json::json!({"deleted": true, "channel": ch}));
    ws.expect_close(1000);
    assert_eq!(stats(addr)["connections"]["websocket"], 0);
}

#[test]
fn a_sub_websocket_answers_pings_and_ignores_messages() {
    let addr = start_default();
    let ch = channel("ws-quiet");
    let mut ws = ws_sub(addr, &ch, "");
    ws.send_text("anyone?");
    ws.send_frame(FIN | BINARY, &[1, 2, 3]);
    ws.send_frame(FIN | PING, b"p");
    let pong = ws.read_frame();
    assert_eq!((pong.opcode, pong.payload.as_slice()), (PONG, &b"p"[..]));
    let id = publish(addr, &ch, "still subscribed");
    assert_eq!(ws.read_frame().json()["id"], id.as_str());
    // Its frames are checked all the same.
    ws.send_frame(FIN | TEXT, b"\xC0\xAF");
    ws.expect_close(1007);
    wait_subscribers(addr, &ch, 0);
}

#[test]
fn frames_sent_right_behind_the_handshake_are_read() {
    let addr = start_default();
    let ch = channel("ws-eager");
    let mut c = Client::connect(addr);
    c.send(
        [
            upgrade_request(&format!("/sub/{ch}"), &[]),
            client_frame(FIN | PING, b"early"),
        ]
        .concat(),
    );
    let mut ws = Ws::after_upgrade(c);
    let pong = ws.read_frame();
    assert_eq!(
        (pong.opcode, pong.payload.as_slice()),
        (PONG, &b"early"[..])
    );
}

#[test]
fn a_sub_websocket_gets_pings_and_visible_heartbeats_and_a_silent_one_is_closed() {
    let addr = start(Config {
        heartbeat: Duration::from_millis(100),
        ..config()
    });
    let ch = channel("ws-beat");
    let mut silent = ws_sub(addr, &ch, "");
    for _ in 0..2 {
        let ping = silent.read_frame();
        assert_eq!((ping.opcode, ping.payload.len()), (PING, 0));
        let beat = silent.read_frame().json();
        assert_eq!(beat, serde_json::json!({"heartbeat": true}));
    }
    let reason = silent.expect_close(1008);
    assert!(reason.contains("pong"), "{reason}");
    wait_subscribers(addr, &ch, 0);

    // One that answers keeps its subscription.
    let mut live = ws_sub(addr, &ch, "");
    for _ in 0..4 {
        assert_eq!(live.read_frame().opcode, PING);
        live.send_frame(FIN | PONG, b"");
        assert!(live.read_frame().json()["heartbeat"].as_bool().unwrap());
    }
    let id = publish(addr, &ch, "after the beats");
    assert_eq!(live.next_json()["id"], id.as_str());
}

#[test]
fn a_slow_sub_websocket_is_closed_with_a_reason_it_can_read() {
    const SIZE: usize = 64 * 1024;
    let addr = start(Config {
        max_queued_bytes: 256 * 1024,
        ..config()
    });
    let ch = channel("ws-slow");
    // Never read from until it is closed: its kernel buffers fill, then its
    // queue passes the limit.
    let mut slow = ws_sub(addr, &ch, "");
    let mut fast = ws_sub(addr, &ch, "");
    let fast_reader = std::thread::spawn(move || {
        let mut n = 0;
        loop {
            let data = fast.next_json()["data"].as_str().unwrap().to_owned();
            if data == "end" {
                return n;
            }
            assert_eq!(&data[..6], format!("{n:06}"), "in order, none lost");
            n += 1;
        }
    });
    let mut publisher = Client::connect(addr);
    let mut published = 0;
    while stats(addr)["slow_consumer_closes"] == 0 {
        assert!(published < 1000, "the slow reader was never closed");
        for _ in 0..10 {
            let mut data = format!("{published:06}");
            data.push_str(&"x".repeat(SIZE - 6));
            publisher.request("POST", &format!("/pub/{ch}"), &[], data.as_bytes());
            assert_eq!(publisher.read_response().status, 201);
            published += 1;
        }
    }
    publisher.request("POST", &format!("/pub/{ch}"), &[], b"end");
    assert_eq!(publisher.read_response().status, 201);
    assert_eq!(fast_reader.join().unwrap(), published);
    // The slow one finds, after what was queued for it, why it was closed.
    let mut received = 0;
    let reason = loop {
        let frame = slow.read_frame();
        match frame.opcode {
            TEXT => received += 1,
            CLOSE => break frame.close_code(),
            other => panic!("unexpected opcode {other}"),
        }
    };
    assert!(received < published, "it fell behind");
    assert_eq!(reason.0, 1008);
    assert!(reason.1.contains("slow consumer"), "{reason:?}");
    slow.client.expect_closed();
}

#[test]
fn sigterm_closes_sub_websockets_with_1001() {
    let mut proc = Proc::start(&["--drain-secs", "5"]);
    let ch = channel("ws-drain");
    let mut ws = ws_sub(proc.addr, &ch, "");
    proc.signal(libc::SIGTERM);
    let reason = ws.expect_close(1001);
    assert!(!reason.is_empty());
    drop(ws);
    let (status, _) = proc.wait_exit(Duration::from_secs(5)).expect("exits");
    assert!(status.success(), "{status:?}");
}

#[test]
fn with_redis_a_sub_websocket_catches_up_then_follows_and_ends_on_delete() {
    use common::redis::{node, RedisServer};
    let redis = RedisServer::start();
    let shards = std::slice::from_ref(&redis);
    let (a, b) = (node(shards, &[]), node(shards, &[]));
    let ch = channel("ws-redis");
    let ids: Vec<String> = (0..3)
        .map(|i| publish(a.addr, &ch, &format!("m{i}")))
        .collect();

    // Node b holds no history: the replay comes from Redis, the 101 only
    // once it has (a Redis failure before it would still be plain HTTP).
    let mut ws = ws_sub(b.addr, &ch, &format!("?since={}", ids[0]));
    assert_eq!(ws.read_frame().json()["id"], ids[1].as_str());
    assert_eq!(ws.read_frame().json()["id"], ids[2].as_str());
    // One with no cursor starts at the feed's position; a frame sent right
    // behind its handshake is read once Redis has answered.
    let mut c = Client::connect(b.addr);
    c.send(
        [
            upgrade_request(&format!("/sub/{ch}"), &[]),
            client_frame(FIN | PING, b"hi"),
        ]
        .concat(),
    );
    let mut now = Ws::after_upgrade(c);
    assert_eq!(now.read_frame().opcode, PONG);
    let live = publish(a.addr, &ch, "live");
    assert_eq!(ws.read_frame().json()["id"], live.as_str());
    assert_eq!(now.read_frame().json()["id"], live.as_str());

    // The first subscriber of a channel on a node waits for Redis to tell
    // the channel's position; a frame sent behind its handshake is read
    // once that answer has come, outside any read event of its own.
    let quiet = channel("ws-redis-first");
    let mut c = Client::connect(b.addr);
    c.send(
        [
            upgrade_request(&format!("/sub/{quiet}"), &[]),
            client_frame(FIN | PING, b"1st"),
        ]
        .concat(),
    );
    let mut first = Ws::after_upgrade(c);
    assert_eq!(first.read_frame().payload, b"1st");

    let resp = call(a.addr, "DELETE", &format!("/pub/{ch}"), &[], b"");
    assert!(resp.status / 100 == 2, "{resp:?}");
    for ws in [&mut ws, &mut now] {
        let deleted = ws.read_frame().json();
        assert_eq!(deleted["deleted"], true);
        ws.expect_close(1000);
    }
}

#[test]
fn hostile_peers_past_the_message_cap_are_closed_while_a_subscriber_is_served() {
    let addr = start(Config {
        ws_echo: true,
        ws_max_message: 1000,
        ..config()
    });
    let ch = channel("ws-witness");
    let mut witness = ws_sub(addr, &ch, "");
    // One announces a 2^62-byte frame; one dribbles a fragmented message
    // past --ws-max-message a byte at a time; one on /sub sends small
    // fragments without end. None may make the server buffer past the cap.
    let mut huge = Ws::connect(addr, "/ws-echo");
    let mut header = vec![BINARY | FIN, 0x80 | 127];
    header.extend_from_slice(&(1u64 << 62).to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    huge.client.send(&header);
    let mut dribble = Ws::connect(addr, "/ws-echo");
    let fragment = client_frame(BINARY, &[7; 600]);
    for byte in &fragment {
        dribble.client.send(std::slice::from_ref(byte));
    }
    let mut endless = Ws::connect(addr, &format!("/sub/{}", channel("ws-endless")));
    endless.send_frame(BINARY, &[9; 100]);
    for _ in 0..40 {
        endless.send_frame(0, &[9; 100]);
    }
    let id = publish(addr, &ch, "still served");
    assert_eq!(witness.next_json()["id"], id.as_str());
    dribble.client.send(client_frame(FIN, &[7; 600]));
    assert!(!huge.expect_close(1009).is_empty(), "the close says why");
    assert!(!dribble.expect_close(1009).is_empty(), "the close says why");
    let reason = loop {
        let frame = endless.read_frame();
        if frame.opcode == CLOSE {
            let (code, reason) = frame.close_code();
            assert_eq!(code, 1009, "{reason}");
            break reason;
        }
    };
    assert!(!reason.is_empty());
    let id = publish(addr, &ch, "and after");
    assert_eq!(witness.next_json()["id"], id.as_str());
}

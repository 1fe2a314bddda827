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
    // --max-queued-bytes the server stops reading it (backpressure), and
    // once the client reads everything comes back, in order.
    let addr = start(Config {
        max_queued_bytes: 64 * 1024,
        ws_max_message: 1 << 20,
        ..echo_config()
    });
    let mut ws = Ws::connect(addr, "/ws-echo");
    let payload = vec![b'p'; 100_000];
    let writer = {
        let mut stream = ws.client.stream.try_clone().unwrap();
        let frame = client_frame(FIN | BINARY, &payload);
        std::thread::spawn(move || {
            use std::io::Write;
            for _ in 0..40 {
                stream.write_all(&frame).unwrap();
            }
        })
    };
    for _ in 0..40 {
        let frame = ws.read_frame();
        assert_eq!(frame.payload.len(), payload.len());
    }
    writer.join().unwrap();
}

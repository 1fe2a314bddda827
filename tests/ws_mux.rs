//! `GET /ws` over raw sockets: one WebSocket carrying many channels. Many
//! messages on three channels arrive in order and once each; every bad
//! command is answered with an error naming its channel while the socket
//! stays open; the limits on channels and command size; resume and gaps
//! after a reconnect; publishing under the rules of `POST /pub`; leaving one
//! channel, a deleted channel, and a closed socket leaving all of them.

mod common;

use std::collections::HashMap;

use common::ws::*;
use common::*;
use halley::mux::{MAX_CHANNELS, MAX_COMMAND};

/// Opens `/ws` with `extra` header lines on the upgrade.
fn open(addr: std::net::SocketAddr, extra: &[&str]) -> Ws {
    let mut client = Client::connect(addr);
    client.send(upgrade_request("/ws", extra));
    Ws::after_upgrade(client)
}

/// Sends a command and reads the next JSON frame.
#[track_caller]
fn ask(ws: &mut Ws, command: &str) -> Value {
    ws.send_text(command);
    ws.next_json()
}

/// Subscribes and returns the cursor the server starts from.
#[track_caller]
fn subscribe(ws: &mut Ws, channel: &str, since: Option<&str>) -> String {
    let mut command = serde_json::json!({ "subscribe": channel });
    if let Some(since) = since {
        command["since"] = since.into();
    }
    let reply = ask(ws, &command.to_string());
    assert_eq!(reply["subscribed"], channel, "{reply}");
    reply["cursor"].as_str().expect("a cursor").to_owned()
}

#[test]
fn a_thousand_messages_on_three_channels_arrive_in_order_and_once() {
    let addr = start_default();
    let channels = [channel("mux-a"), channel("mux-b"), channel("mux-c")];
    let mut ws = open(addr, &[]);
    for ch in &channels {
        subscribe(&mut ws, ch, None);
    }
    let mut sent: HashMap<&str, Vec<(String, String)>> = HashMap::new();
    for i in 0..1000 {
        let ch = &channels[i % 3];
        let data = format!("message {i}");
        let id = publish(addr, ch, &data);
        sent.entry(ch.as_str()).or_default().push((id, data));
    }
    let mut got: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for _ in 0..1000 {
        let m = ws.next_json();
        let ch = m["channel"].as_str().expect("a message names its channel");
        let pair = (
            m["id"].as_str().unwrap().to_owned(),
            m["data"].as_str().unwrap().to_owned(),
        );
        got.entry(ch.to_owned()).or_default().push(pair);
    }
    for ch in &channels {
        assert_eq!(got[ch.as_str()], sent[ch.as_str()], "channel {ch}");
    }
    // Nothing more: each message came once.
    let marker = publish(addr, &channels[0], "marker");
    assert_eq!(ws.next_json()["id"], marker.as_str());
}

#[test]
fn bad_commands_are_answered_and_the_connection_stays_open() {
    let addr = start_default();
    let ch = channel("mux-bad");
    let mut ws = open(addr, &[]);
    subscribe(&mut ws, &ch, None);
    let ahead = format!("{}-999", epoch_of(&publish(addr, &ch, "x")));
    assert_eq!(ws.next_json()["data"], "x");
    // (command, a phrase of the error, the channel it names)
    let cases: Vec<(String, &str, Option<&str>)> = vec![
        ("not json".into(), "a command is a JSON object", None),
        ("[1,2]".into(), "a command is a JSON object", None),
        (r#"{"hello":"x"}"#.into(), "exactly one of", None),
        (
            r#"{"subscribe":"a b"}"#.into(),
            "channel names are",
            Some("a b"),
        ),
        (
            format!(r#"{{"subscribe":"{ch}"}}"#),
            "already subscribed",
            Some(&ch),
        ),
        (
            r#"{"subscribe":"x","since":"soon"}"#.into(),
            "since",
            Some("x"),
        ),
        (
            format!(r#"{{"subscribe":"{ch}-2","since":"{ahead}"}}"#),
            "ahead",
            None,
        ),
        (
            r#"{"unsubscribe":"never"}"#.into(),
            "not subscribed",
            Some("never"),
        ),
        (r#"{"publish":"x"}"#.into(), "needs \"data\"", Some("x")),
        (
            r#"{"publish":"x","data":"d","event":"gap"}"#.into(),
            "reserved",
            Some("x"),
        ),
    ];
    for (command, phrase, channel) in &cases {
        let reply = ask(&mut ws, command);
        let error = reply["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{command}: {reply}"));
        assert!(
            error.contains(phrase),
            "{command}: {error:?} lacks {phrase:?}"
        );
        if let Some(channel) = channel {
            assert_eq!(reply["channel"], *channel, "{command}");
        }
    }
    // A binary message is not a command either.
    ws.send_frame(FIN | BINARY, b"{\"subscribe\":\"y\"}");
    assert!(ws.next_json()["error"].as_str().unwrap().contains("text"));
    // Still open, still subscribed.
    let id = publish(addr, &ch, "still here");
    assert_eq!(ws.next_json()["id"], id.as_str());
    assert!(stats(addr)["websocket"]["mux_errors"].as_u64().unwrap() >= cases.len() as u64);
}

#[test]
fn channels_per_connection_and_command_size_are_bounded() {
    let addr = start(Config {
        ws_max_message: 4 * MAX_COMMAND,
        ..config()
    });
    let prefix = channel("mux-many");
    let mut ws = open(addr, &[]);
    for i in 0..MAX_CHANNELS {
        subscribe(&mut ws, &format!("{prefix}-{i}"), None);
    }
    let one_more = format!("{prefix}-x");
    let reply = ask(&mut ws, &format!(r#"{{"subscribe":"{one_more}"}}"#));
    assert_eq!(reply["channel"], one_more.as_str());
    assert!(reply["error"]
        .as_str()
        .unwrap()
        .contains(&format!("at most {MAX_CHANNELS}")));
    assert_eq!(subscribers(addr, &one_more), 0);
    // Leaving one makes room for another.
    let reply = ask(&mut ws, &format!(r#"{{"unsubscribe":"{prefix}-0"}}"#));
    assert_eq!(reply["unsubscribed"], format!("{prefix}-0"));
    subscribe(&mut ws, &one_more, None);

    // A command over the cap (but within the socket's message limit).
    let big = format!(
        r#"{{"publish":"{prefix}-1","data":"{}"}}"#,
        "x".repeat(MAX_COMMAND)
    );
    let reply = ask(&mut ws, &big);
    assert!(reply["error"]
        .as_str()
        .unwrap()
        .contains(&format!("at most {MAX_COMMAND} bytes")));
    let id = publish(addr, &one_more, "after the big one");
    assert_eq!(ws.next_json()["id"], id.as_str());
}

#[test]
fn every_channel_resumes_after_a_reconnect_and_a_stale_cursor_is_a_gap() {
    let addr = start_default();
    let (a, b) = (channel("mux-ra"), channel("mux-rb"));
    let a1 = publish(addr, &a, "a1");
    let mut ws = open(addr, &[]);
    let start = subscribe(&mut ws, &a, Some("earliest"));
    assert_eq!(seq_of(&start), seq_of(&a1) - 1, "starts before the replay");
    assert_eq!(ws.next_json()["id"], a1.as_str());
    let b_start = subscribe(&mut ws, &b, None);
    drop(ws);
    wait_subscribers(addr, &a, 0);
    wait_subscribers(addr, &b, 0);
    let a2 = publish(addr, &a, "a2");
    let b1 = publish(addr, &b, "b1");

    let mut ws = open(addr, &[]);
    assert_eq!(subscribe(&mut ws, &a, Some(&a1)), a1, "resumes after a1");
    assert_eq!(ws.next_json()["id"], a2.as_str());
    subscribe(&mut ws, &b, Some(&b_start));
    assert_eq!(ws.next_json()["id"], b1.as_str());

    // A cursor from another server run: the gap, naming its channel, then
    // everything held.
    let c = channel("mux-rc");
    let c1 = publish(addr, &c, "c1");
    subscribe(&mut ws, &c, Some("0000000000ff-3"));
    let gap = ws.next_json();
    assert_eq!(gap["channel"], c.as_str(), "{gap}");
    assert_eq!(gap["gap"]["reason"], "restarted", "{gap}");
    assert_eq!(ws.next_json()["id"], c1.as_str());
}

#[test]
fn publishing_follows_the_rules_of_post_pub() {
    let addr = start(Config {
        publish_token: Some("secret".into()),
        ..config()
    });
    let closed = channel("mux-closed");
    let open_ch = format!("demo/{}", channel("mux"));

    // Without the token: only open channels, small messages, a burst at a time.
    let mut ws = open(addr, &[]);
    subscribe(&mut ws, &open_ch, None);
    let reply = ask(&mut ws, &format!(r#"{{"publish":"{closed}","data":"x"}}"#));
    assert!(
        reply["error"].as_str().unwrap().contains("token"),
        "{reply}"
    );
    assert_eq!(reply["channel"], closed.as_str());
    let big = "x".repeat(5000);
    let reply = ask(
        &mut ws,
        &format!(r#"{{"publish":"{open_ch}","data":"{big}"}}"#),
    );
    assert!(reply["error"].as_str().unwrap().contains("4096"), "{reply}");
    let mut published = 0;
    let limited = loop {
        ws.send_text(&format!(
            r#"{{"publish":"{open_ch}","data":"n{published}","event":"note"}}"#
        ));
        let m = ws.next_json();
        if m.get("error").is_some() {
            break m;
        }
        // The subscriber on the same socket sees the message, then the answer.
        assert_eq!(
            (m["data"].clone(), m["event"].clone()),
            (format!("n{published}").into(), "note".into())
        );
        let answer = ws.next_json();
        assert_eq!(answer["published"]["id"], m["id"], "{answer}");
        assert_eq!(answer["published"]["channel"], open_ch.as_str());
        published += 1;
        assert!(published <= 10, "no rate limit");
    };
    assert_eq!(published, 10, "the burst");
    assert!(
        limited["error"].as_str().unwrap().contains("retry in"),
        "{limited}"
    );

    // With the token on the upgrade request: any channel.
    let mut ws = open(addr, &["Authorization: Bearer secret"]);
    let reply = ask(&mut ws, &format!(r#"{{"publish":"{closed}","data":"ok"}}"#));
    assert_eq!(reply["published"]["channel"], closed.as_str(), "{reply}");
    let info = get(addr, &format!("/pub/{closed}")).json();
    assert_eq!(info["last_id"], reply["published"]["id"]);
}

#[test]
fn leaving_a_channel_a_deleted_channel_and_a_closed_socket() {
    let addr = start_default();
    let chs = [channel("mux-la"), channel("mux-lb"), channel("mux-lc")];
    let mut ws = open(addr, &[]);
    for ch in &chs {
        subscribe(&mut ws, ch, None);
        assert_eq!(subscribers(addr, ch), 1);
    }
    // Unsubscribed: nothing more from that channel.
    let reply = ask(&mut ws, &format!(r#"{{"unsubscribe":"{}"}}"#, chs[0]));
    assert_eq!(reply["unsubscribed"], chs[0].as_str());
    assert_eq!(subscribers(addr, &chs[0]), 0);
    publish(addr, &chs[0], "not for us");
    let id = publish(addr, &chs[1], "for us");
    assert_eq!(ws.next_json()["id"], id.as_str());

    // Deleted: told, and the other channels go on.
    let resp = call(addr, "DELETE", &format!("/pub/{}", chs[1]), &[], b"");
    assert_eq!(resp.status, 204);
    let deleted = ws.next_json();
    assert_eq!(
        (deleted["deleted"].clone(), deleted["channel"].clone()),
        (true.into(), chs[1].as_str().into())
    );
    let id = publish(addr, &chs[2], "still");
    assert_eq!(ws.next_json()["id"], id.as_str());
    // The deleted channel can be followed again.
    subscribe(&mut ws, &chs[1], None);

    // Closed without a close frame: every channel is left.
    drop(ws);
    for ch in &chs {
        wait_subscribers(addr, ch, 0);
    }
}

#[test]
fn a_close_frame_leaves_every_channel() {
    let addr = start_default();
    let chs = [channel("mux-ca"), channel("mux-cb")];
    let mut ws = open(addr, &[]);
    for ch in &chs {
        subscribe(&mut ws, ch, None);
    }
    ws.send_frame(FIN | CLOSE, &close_payload(1000, "bye"));
    let frame = ws.read_frame();
    assert_eq!(frame.close_code().0, 1000);
    for ch in &chs {
        wait_subscribers(addr, ch, 0);
    }
}

#[test]
fn ws_needs_an_upgrade() {
    let addr = start_default();
    let resp = get(addr, "/ws");
    assert_eq!(resp.status, 426, "{resp:?}");
    assert!(resp.json()["error"].is_string());
}

#[test]
fn a_slow_socket_is_closed_and_leaves_every_channel() {
    let addr = start(Config {
        max_queued_bytes: 16 * 1024,
        ..config()
    });
    let (a, b) = (channel("mux-slow-a"), channel("mux-slow-b"));
    let mut ws = open(addr, &[]);
    subscribe(&mut ws, &a, None);
    subscribe(&mut ws, &b, None);
    // The client reads nothing more; the kernel's buffers fill, then the
    // server's queue passes its bound.
    let big = "x".repeat(64 * 1024);
    let mut n = 0;
    while subscribers(addr, &a) == 1 {
        publish(addr, &a, &big);
        n += 1;
        assert!(n < 2_000, "never closed as a slow consumer");
    }
    assert_eq!(subscribers(addr, &b), 0, "the other channel is left too");
    assert!(stats(addr)["slow_consumer_closes"].as_u64().unwrap() >= 1);
}

const SECRET: &str = "a-test-secret-of-at-least-32-bytes!";

/// A token for `subscribe` and `publish` patterns ending `exp_in` seconds
/// from now (negative: already past, but maybe inside the leeway).
fn signed(subscribe: &[&str], publish: &[&str], exp_in: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims = serde_json::json!({
        "exp": now + exp_in,
        "halley": {"subscribe": subscribe, "publish": publish},
    });
    halley::token::sign(SECRET.as_bytes(), &claims.to_string())
}

#[test]
fn with_signed_tokens_each_channel_is_judged_by_the_upgrades_token() {
    let addr = start(Config {
        token_secret: Some(halley::token::Verifier::new(SECRET.as_bytes())),
        ..config()
    });
    // No token: the socket opens, but no channel may be followed.
    let mut ws = open(addr, &[]);
    let reply = ask(&mut ws, r#"{"subscribe":"team/a"}"#);
    assert_eq!(reply["channel"], "team/a", "{reply}");
    assert!(reply["error"].is_string(), "{reply}");
    assert_eq!(subscribers(addr, "team/a"), 0);

    // A token for team/* that may publish on team/a only.
    let token = signed(&["team/*"], &["team/a"], 3600);
    let mut ws = open(addr, &[&format!("Authorization: Bearer {token}")]);
    subscribe(&mut ws, "team/a", None);
    subscribe(&mut ws, "team/b", None);
    let reply = ask(&mut ws, r#"{"subscribe":"other/c"}"#);
    assert!(reply["error"].is_string(), "outside the claim: {reply}");
    let reply = ask(&mut ws, r#"{"publish":"team/b","data":"no"}"#);
    assert!(reply["error"].is_string(), "no publish claim: {reply}");
    assert_eq!(reply["channel"], "team/b");
    ws.send_text(r#"{"publish":"team/a","data":"yes"}"#);
    assert_eq!(ws.next_json()["data"], "yes");
    assert_eq!(ws.next_json()["published"]["channel"], "team/a");
}

#[test]
fn a_socket_whose_token_ends_is_told_and_leaves_every_channel() {
    let addr = start(Config {
        token_secret: Some(halley::token::Verifier::new(SECRET.as_bytes())),
        ..config()
    });
    // Past its exp, but inside the leeway: taken now, ending within 2 s.
    let leeway = halley::token::LEEWAY_SECS as i64;
    let token = signed(&["team/*"], &[], 2 - leeway);
    let mut ws = open(addr, &[&format!("Authorization: Bearer {token}")]);
    ws.client
        .set_read_timeout(std::time::Duration::from_secs(10));
    subscribe(&mut ws, "team/x", None);
    subscribe(&mut ws, "team/y", None);
    assert_eq!(ws.next_json()["error"], "token expired");
    assert_eq!(ws.read_frame().close_code().0, 1008);
    wait_subscribers(addr, "team/x", 0);
    wait_subscribers(addr, "team/y", 0);
}

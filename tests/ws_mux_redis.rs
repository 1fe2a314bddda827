//! `GET /ws` on a Redis cluster: one history for every transport and node.
//! Two nodes share a real `redis-server` (one per test); what is published
//! on one is caught up, then followed live, by a `/ws` socket on the other,
//! per channel, in order and once each, with its gap when the cursor is
//! older than the stream. A `/ws` publish reaches an SSE subscriber of the
//! other node. While one channel waits for its (frozen) shard the socket's
//! other channels flow; a catch-up raced by publishes is whole and once; a
//! live gap names its channel; a cursor ahead is an error naming it. Redis
//! frozen: the channel is answered with an error after `--redis-timeout`
//! and the socket stays; a socket closed, or a channel unsubscribed (and
//! subscribed again), mid-catch-up leaves nothing behind.

mod common;

use common::redis::{node, redis_stats, RedisServer};
use common::ws::*;
use common::*;

/// Longer than any test freezes Redis: a catch-up it holds ends only by
/// what the test does.
const LONG_TIMEOUT: [&str; 2] = ["--redis-timeout", "30"];

/// Opens `/ws` on `addr`.
fn open(addr: std::net::SocketAddr) -> Ws {
    let mut client = Client::connect(addr);
    client.send(upgrade_request("/ws", &[]));
    Ws::after_upgrade(client)
}

/// Sends a `subscribe` and returns the cursor of its `subscribed` answer.
#[track_caller]
fn subscribe(ws: &mut Ws, channel: &str, since: Option<&str>) -> String {
    ws.send_text(&subscribe_command(channel, since));
    let reply = ws.next_json();
    assert_eq!(reply["subscribed"], channel, "{reply}");
    reply["cursor"].as_str().expect("a cursor").to_owned()
}

fn subscribe_command(channel: &str, since: Option<&str>) -> String {
    let mut command = serde_json::json!({ "subscribe": channel });
    if let Some(since) = since {
        command["since"] = since.into();
    }
    command.to_string()
}

/// Reads the next message and checks it is `id` on `channel`.
#[track_caller]
fn expect_message(ws: &mut Ws, channel: &str, id: &str) {
    let m = ws.next_json();
    assert_eq!(
        (&m["channel"], &m["id"]),
        (&channel.into(), &id.into()),
        "{m}"
    );
}

/// The channels of `/ws` sockets catching up on `node`.
fn ws_catching_up(node: &Proc) -> u64 {
    redis_stats(node)["ws_catching_up"]
        .as_u64()
        .expect("a count")
}

#[test]
fn each_channel_catches_up_from_another_node_then_goes_live_once_each() {
    let redis = RedisServer::start();
    let shards = std::slice::from_ref(&redis);
    let (a, b) = (node(shards, &[]), node(shards, &[]));
    let (c1, c2, c3) = (channel("mr-a"), channel("mr-b"), channel("mr-c"));
    let ids1: Vec<String> = (0..3)
        .map(|i| publish(a.addr, &c1, &format!("a{i}")))
        .collect();
    let ids2: Vec<String> = (0..3)
        .map(|i| publish(a.addr, &c2, &format!("b{i}")))
        .collect();

    let mut ws = open(b.addr);
    // since=earliest: everything, starting just before the first message.
    let start = subscribe(&mut ws, &c1, Some("earliest"));
    assert_eq!(seq_of(&start), seq_of(&ids1[0]) - 1, "{start}");
    for id in &ids1 {
        expect_message(&mut ws, &c1, id);
    }
    // since=an id: what follows it.
    let start = subscribe(&mut ws, &c2, Some(&ids2[0]));
    assert_eq!(seq_of(&start), seq_of(&ids2[1]) - 1, "{start}");
    for id in &ids2[1..] {
        expect_message(&mut ws, &c2, id);
    }
    // No cursor: from now on, at the channel's position.
    let start = subscribe(&mut ws, &c3, None);
    assert_eq!(seq_of(&start), 0, "nothing published on {c3} yet: {start}");
    assert_eq!(ws_catching_up(&b), 0);

    // Live, from node A, on all three, each once and in order.
    let live: Vec<(String, String)> = (0..30)
        .map(|i| {
            let ch = [&c1, &c2, &c3][i % 3];
            (ch.clone(), publish(a.addr, ch, &format!("live {i}")))
        })
        .collect();
    let mut got: Vec<(String, String)> = Vec::new();
    for _ in 0..live.len() {
        let m = ws.next_json();
        got.push((
            m["channel"].as_str().unwrap().into(),
            m["id"].as_str().unwrap().into(),
        ));
    }
    for ch in [&c1, &c2, &c3] {
        let sent: Vec<_> = live.iter().filter(|(c, _)| c == ch).collect();
        let came: Vec<_> = got.iter().filter(|(c, _)| c == ch).collect();
        assert_eq!(came, sent, "channel {ch}");
    }
    // Nothing doubled: the next frame is the marker.
    let marker = publish(a.addr, &c1, "marker");
    expect_message(&mut ws, &c1, &marker);
}

#[test]
fn a_cursor_older_than_the_stream_is_a_gap_naming_its_channel() {
    let redis = RedisServer::start();
    let shards = std::slice::from_ref(&redis);
    // The stream keeps the last two messages.
    let (a, b) = (
        node(shards, &["--buffer", "2"]),
        node(shards, &["--buffer", "2"]),
    );
    let ch = channel("mr-gap");
    let ids: Vec<String> = (0..5)
        .map(|i| publish(a.addr, &ch, &format!("m{i}")))
        .collect();

    let mut ws = open(b.addr);
    subscribe(&mut ws, &ch, Some(&ids[0]));
    let gap = ws.next_json();
    assert_eq!(gap["channel"], ch.as_str(), "{gap}");
    assert_eq!(gap["gap"]["cursor"], ids[0].as_str(), "{gap}");
    assert_eq!(gap["gap"]["missed"], 2, "{gap}");
    assert_eq!(gap["gap"]["next"], ids[2].as_str(), "{gap}");
    for id in &ids[3..] {
        expect_message(&mut ws, &ch, id);
    }
    let live = publish(a.addr, &ch, "live");
    expect_message(&mut ws, &ch, &live);
}

#[test]
fn a_ws_publish_on_one_node_reaches_an_sse_subscriber_on_the_other() {
    let redis = RedisServer::start();
    let shards = std::slice::from_ref(&redis);
    let (a, b) = (node(shards, &[]), node(shards, &[]));
    let ch = channel("mr-pub");
    let mut sse = Sub::sse(a.addr, &ch, "", &[]);
    wait_subscribers(a.addr, &ch, 1);

    let mut ws = open(b.addr);
    ws.send_text(&serde_json::json!({"publish": ch, "data": "over ws"}).to_string());
    let answer = ws.next_json();
    let id = answer["published"]["id"]
        .as_str()
        .expect("an id")
        .to_owned();
    assert_eq!(answer["published"]["channel"], ch.as_str(), "{answer}");
    let ev = sse.next_event();
    assert_eq!(
        (ev.id.as_deref(), ev.data()),
        (Some(id.as_str()), "over ws".into())
    );
}

#[test]
fn redis_frozen_answers_the_channel_with_an_error_and_the_socket_stays() {
    let redis = RedisServer::start();
    let a = node(std::slice::from_ref(&redis), &["--redis-timeout", "0.5"]);
    let (ch, other) = (channel("mr-frozen"), channel("mr-after"));
    publish(a.addr, &ch, "before");

    let mut ws = open(a.addr);
    redis.pause();
    ws.send_text(&subscribe_command(&ch, Some("earliest")));
    let error = ws.next_json();
    assert_eq!(error["channel"], ch.as_str(), "{error}");
    let why = error["error"].as_str().expect("an error");
    assert!(why.contains("--redis-timeout"), "{why}");
    assert_eq!(ws_catching_up(&a), 0);

    // The socket stays, and works once Redis is back.
    redis.resume();
    common::redis::wait_connected(&a, true);
    subscribe(&mut ws, &other, None);
    let live = publish(a.addr, &other, "after");
    expect_message(&mut ws, &other, &live);
}

#[test]
fn a_socket_closed_mid_catch_up_leaves_nothing_behind() {
    let redis = RedisServer::start();
    // Redis is frozen for less than this: only the close can end the
    // catch-ups, not the timeout.
    let a = node(std::slice::from_ref(&redis), &LONG_TIMEOUT);
    let ch = channel("mr-close");
    publish(a.addr, &ch, "before");

    let mut ws = open(a.addr);
    redis.pause();
    for ch in [&ch, &channel("mr-close2")] {
        ws.send_text(&subscribe_command(ch, Some("earliest")));
    }
    wait_until("two channels catching up", || ws_catching_up(&a) == 2);
    drop(ws);
    wait_until("no channel catching up", || ws_catching_up(&a) == 0);
    redis.resume();
    // Nothing was left to be answered: the node serves on.
    common::redis::wait_connected(&a, true);
    let mut ws = open(a.addr);
    subscribe(&mut ws, &ch, None);
    assert_eq!(ws_catching_up(&a), 0);
}

#[test]
fn unsubscribing_a_channel_mid_catch_up_stops_it() {
    let redis = RedisServer::start();
    let a = node(std::slice::from_ref(&redis), &LONG_TIMEOUT);
    let ch = channel("mr-leave");
    publish(a.addr, &ch, "before");

    let mut ws = open(a.addr);
    redis.pause();
    ws.send_text(&subscribe_command(&ch, Some("earliest")));
    wait_until("catching up", || ws_catching_up(&a) == 1);
    // A second subscribe of the same channel is refused meanwhile.
    ws.send_text(&subscribe_command(&ch, None));
    let refused = ws.next_json();
    assert_eq!(refused["channel"], ch.as_str(), "{refused}");
    assert!(
        refused["error"].as_str().unwrap().contains("already"),
        "{refused}"
    );
    ws.send_text(&serde_json::json!({ "unsubscribe": ch }).to_string());
    assert_eq!(ws.next_json()["unsubscribed"], ch.as_str());
    assert_eq!(ws_catching_up(&a), 0);
    redis.resume();
    // Nothing of the cancelled catch-up comes: the next frame is the
    // answer to the next command.
    ws.send_text(r#"{"unsubscribe":"never-followed"}"#);
    let next = ws.next_json();
    assert_eq!(next["channel"], "never-followed", "{next}");
    assert!(next.get("error").is_some(), "{next}");
}

/// A channel named from `prefix` that lives on shard `want` of `n`.
fn channel_on_shard(prefix: &str, want: usize, n: usize) -> String {
    loop {
        let ch = channel(prefix);
        if halley::redis::shard::shard_of(&ch, n) == want {
            return ch;
        }
    }
}

#[test]
fn the_other_channels_flow_while_one_waits_for_its_shard() {
    let shards = common::redis::shards(2);
    let a = node(&shards, &LONG_TIMEOUT);
    let live_ch = channel_on_shard("mr-flowing", 0, 2);
    let slow_ch = channel_on_shard("mr-waiting", 1, 2);
    let old = publish(a.addr, &slow_ch, "old");

    let mut ws = open(a.addr);
    subscribe(&mut ws, &live_ch, None);
    shards[1].pause();
    ws.send_text(&subscribe_command(&slow_ch, Some("earliest")));
    wait_until("one channel catching up", || ws_catching_up(&a) == 1);
    // The socket is not parked: its other channel is delivered meanwhile.
    let live = publish(a.addr, &live_ch, "meanwhile");
    expect_message(&mut ws, &live_ch, &live);
    assert_eq!(ws_catching_up(&a), 1);

    // The shard answers: that channel's `subscribed`, its catch-up, live.
    shards[1].resume();
    let start = subscribe_answer(&mut ws, &slow_ch);
    assert_eq!(seq_of(&start), seq_of(&old) - 1, "{start}");
    expect_message(&mut ws, &slow_ch, &old);
    let new = publish(a.addr, &slow_ch, "new");
    expect_message(&mut ws, &slow_ch, &new);
}

/// Reads a `subscribed` answer for `channel` and returns its cursor.
#[track_caller]
fn subscribe_answer(ws: &mut Ws, channel: &str) -> String {
    let reply = ws.next_json();
    assert_eq!(reply["subscribed"], channel, "{reply}");
    reply["cursor"].as_str().expect("a cursor").to_owned()
}

#[test]
fn a_long_catch_up_with_publishes_racing_it_arrives_whole_in_order_once() {
    let redis = RedisServer::start();
    let shards = std::slice::from_ref(&redis);
    // Large messages make small pages: 8 MiB / --max-body 1 MiB = 8 per read,
    // so the catch-up takes many reads, with live messages between them.
    let flags = ["--max-body", "1048576", "--buffer", "1000"];
    let (a, b) = (node(shards, &flags), node(shards, &flags));
    let ch = channel("mr-race");
    let mut ids: Vec<String> = (0..200)
        .map(|i| publish(a.addr, &ch, &format!("old {i}")))
        .collect();

    let mut ws = open(b.addr);
    let (addr, racing_ch) = (a.addr, ch.clone());
    let racer = std::thread::spawn(move || {
        (0..100)
            .map(|i| publish(addr, &racing_ch, &format!("new {i}")))
            .collect::<Vec<_>>()
    });
    subscribe(&mut ws, &ch, Some("earliest"));
    ids.extend(racer.join().unwrap());
    for (i, id) in ids.iter().enumerate() {
        let m = ws.next_json();
        assert_eq!(m["id"], id.as_str(), "message {i}: {m}");
    }
    let marker = publish(a.addr, &ch, "marker");
    expect_message(&mut ws, &ch, &marker);
    assert_eq!(ws_catching_up(&b), 0);
}

/// Publishes `data` on `channel` straight into Redis, announced to nobody
/// (as `tests/redis_gaps.rs` does): a message every node's pub/sub missed.
fn publish_unannounced(redis: &RedisServer, channel: &str, data: &str, buffer: &str) {
    let keys = halley::redis::scripts::Keys::of(channel);
    let now = halley::redis::scripts::unix_ms(std::time::SystemTime::now()).to_string();
    redis.cmd(&[
        "EVAL",
        halley::redis::scripts::PUBLISH,
        "3",
        &keys.meta,
        &keys.stream,
        "halley:nobody-listens",
        "abc",
        buffer,
        "60000",
        "600000",
        &now,
        "t",
        "",
        data,
    ]);
}

#[test]
fn a_live_gap_on_a_followed_channel_names_it() {
    let redis = RedisServer::start();
    // The stream keeps one message: the lost one is trimmed by the next.
    let a = node(std::slice::from_ref(&redis), &["--buffer", "1"]);
    let ch = channel("mr-live-gap");
    let mut ws = open(a.addr);
    subscribe(&mut ws, &ch, None);
    let first = publish(a.addr, &ch, "one");
    expect_message(&mut ws, &ch, &first);

    publish_unannounced(&redis, &ch, "lost", "1");
    let third = publish(a.addr, &ch, "three");
    let gap = ws.next_json();
    assert_eq!(gap["channel"], ch.as_str(), "{gap}");
    assert_eq!(gap["gap"]["reason"], "expired", "{gap}");
    assert_eq!(gap["gap"]["cursor"], first.as_str(), "{gap}");
    expect_message(&mut ws, &ch, &third);
}

#[test]
fn a_channel_subscribed_again_mid_catch_up_ignores_the_first_reads_reply() {
    let redis = RedisServer::start();
    let a = node(std::slice::from_ref(&redis), &LONG_TIMEOUT);
    let ch = channel("mr-again");
    // An SSE subscriber keeps the channel's feed live, so each catch-up
    // sends its read at once.
    let mut sse = Sub::sse(a.addr, &ch, "", &[]);
    let ids: Vec<String> = (0..4)
        .map(|i| publish(a.addr, &ch, &format!("m{i}")))
        .collect();
    assert_eq!(sse.next_event().id.as_deref(), Some(ids[0].as_str()));

    let mut ws = open(a.addr);
    redis.pause();
    // The first read asks for what follows ids[2], the second for all:
    // the first's reply taken for the second's would skip ids[0..3].
    ws.send_text(&subscribe_command(&ch, Some(&ids[2])));
    wait_until("catching up", || ws_catching_up(&a) == 1);
    ws.send_text(&serde_json::json!({ "unsubscribe": ch }).to_string());
    assert_eq!(ws.next_json()["unsubscribed"], ch.as_str());
    ws.send_text(&subscribe_command(&ch, Some("earliest")));
    wait_until("catching up again", || ws_catching_up(&a) == 1);
    redis.resume();

    // Only the second catch-up's answer: everything, once each.
    let start = subscribe_answer(&mut ws, &ch);
    assert_eq!(seq_of(&start), seq_of(&ids[0]) - 1, "{start}");
    for id in &ids {
        expect_message(&mut ws, &ch, id);
    }
    let marker = publish(a.addr, &ch, "marker");
    expect_message(&mut ws, &ch, &marker);
}

#[test]
fn a_cursor_ahead_of_the_channel_is_an_error_naming_it_and_the_socket_stays() {
    let redis = RedisServer::start();
    let shards = std::slice::from_ref(&redis);
    let (a, b) = (node(shards, &[]), node(shards, &[]));
    let ch = channel("mr-ahead");
    let id = publish(a.addr, &ch, "one");
    let ahead = format!("{}-{}", epoch_of(&id), seq_of(&id) + 5);

    let mut ws = open(b.addr);
    ws.send_text(&subscribe_command(&ch, Some(&ahead)));
    let error = ws.next_json();
    assert_eq!(error["channel"], ch.as_str(), "{error}");
    assert!(
        error["error"].as_str().unwrap().contains("ahead"),
        "{error}"
    );
    assert_eq!(ws_catching_up(&b), 0);
    // The channel can be followed after all, from where it is.
    subscribe(&mut ws, &ch, Some(&id));
    let live = publish(a.addr, &ch, "two");
    expect_message(&mut ws, &ch, &live);
}

//! Several halley processes on one history (`--redis`), each test with its
//! own `redis-server`s on free ports: a publish on one node reaching every
//! transport on the others with the same id (Bayeux wildcards included), a
//! DELETE ending the subscribers of every node, SSE and long-poll clients moving
//! between nodes without loss, duplicates or reordering while publishing goes
//! on, clients of a SIGKILLed node resuming elsewhere, the `expired` gap, and
//! epochs that outlive the nodes. Every cluster scenario runs on one Redis and
//! on two shards; the harness itself is checked first.

mod common;

use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread;

use common::redis::{encode_command, node, read_reply, redis_stats, shards, RedisServer, Reply};
use common::*;
use serde_json::json;

/// Runs a scenario `fn(shards: usize)` as two tests, on one Redis and on two
/// shards, so each stays fast and both run in parallel.
macro_rules! on_one_and_two_shards {
    ($scenario:ident) => {
        mod $scenario {
            #[test]
            fn one_redis() {
                super::$scenario(1);
            }

            #[test]
            fn two_shards() {
                super::$scenario(2);
            }
        }
    };
}

// ---------------------------------------------------------------------------
// The harness and memory mode, which run without the Redis engine.

#[test]
fn harness_reads_every_reply_kind() {
    let cases: &[(&[u8], Reply)] = &[
        (b"+OK\r\n", Reply::Status("OK".into())),
        (b"-ERR no\r\n", Reply::Error("ERR no".into())),
        (b":-12\r\n", Reply::Int(-12)),
        (b"$3\r\na\r\n\r\n", Reply::Bulk(b"a\r\n".to_vec())),
        (b"$-1\r\n", Reply::Nil),
        (b"*-1\r\n", Reply::Nil),
        (
            b"*2\r\n*1\r\n:1\r\n$0\r\n\r\n",
            Reply::Array(vec![Reply::Array(vec![Reply::Int(1)]), Reply::Bulk(vec![])]),
        ),
    ];
    for (wire, want) in cases {
        assert_eq!(&read_reply(&mut &wire[..]).unwrap(), want, "{wire:?}");
    }
    for bad in [&b"?x\r\n"[..], b"$5\r\nab", b":1", b""] {
        assert!(read_reply(&mut &bad[..]).is_err(), "{bad:?}");
    }
    assert_eq!(
        encode_command(&["SET", "k", ""]),
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n"
    );
}

#[test]
fn harness_redis_keeps_or_loses_its_data_and_can_be_frozen() {
    let mut redis = RedisServer::start();
    assert_ne!(redis.port, 6379);
    assert_eq!(redis.url(), format!("redis://127.0.0.1:{}", redis.port));
    assert_eq!(redis.cmd(&["SET", "k", "v"]), Reply::Status("OK".into()));

    redis.stop_keep_data();
    assert!(!redis.is_running());
    redis.start_again();
    assert_eq!(redis.cmd(&["GET", "k"]).text(), "v");

    redis.stop_lose_data();
    redis.start_again();
    assert_eq!(redis.cmd(&["GET", "k"]), Reply::Nil);
    assert_eq!(redis.keys("*"), Vec::<String>::new());

    // Frozen, Redis accepts a connection but answers nothing until thawed.
    use std::io::{BufReader, Write};
    redis.pause();
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", redis.port)).unwrap();
    conn.write_all(&encode_command(&["PING"])).unwrap();
    conn.set_read_timeout(Some(std::time::Duration::from_millis(300)))
        .unwrap();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    assert!(read_reply(&mut reader).is_err(), "a paused Redis answered");
    redis.resume();
    conn.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    assert_eq!(
        read_reply(&mut reader).unwrap(),
        Reply::Status("PONG".into())
    );
}

#[test]
fn without_redis_a_node_is_in_memory_and_says_so() {
    let node = Proc::start(&[]);
    assert_eq!(get(node.addr, "/healthz").status, 200);
    let stats = stats(node.addr);
    assert!(
        stats.as_object().unwrap().contains_key("redis"),
        "/stats has a redis field: {stats}"
    );
    assert!(stats["redis"].is_null(), "{}", stats["redis"]);
    let ch = channel("mem");
    let id = publish(node.addr, &ch, "x");
    assert_eq!(seq_of(&id), 1);
}

// ---------------------------------------------------------------------------
// A tiny Bayeux client over the raw one.

/// One Bayeux session on its own keep-alive connection.
struct Bayeux {
    conn: Client,
    client_id: String,
    /// The next message `id`, so replies can be told apart.
    next: u64,
}

impl Bayeux {
    /// Handshakes, subscribes to `/{channel}` and makes the first connect
    /// (answered at once), so the next connect is held.
    #[track_caller]
    fn subscribed(addr: SocketAddr, channel: &str) -> Bayeux {
        let mut conn = Client::connect(addr);
        let reply = post_bayeux(
            &mut conn,
            json!([{
                "channel": "/meta/handshake", "version": "1.0",
                "supportedConnectionTypes": ["long-polling"], "id": "1",
            }]),
        );
        assert_eq!(reply[0]["successful"], true, "{reply}");
        let client_id = reply[0]["clientId"].as_str().unwrap().to_owned();
        let mut session = Bayeux {
            conn,
            client_id,
            next: 2,
        };
        let sub = json!([{
            "channel": "/meta/subscribe", "clientId": session.client_id,
            "subscription": format!("/{channel}"), "id": session.id(),
        }]);
        let reply = post_bayeux(&mut session.conn, sub);
        assert_eq!(reply[0]["successful"], true, "{reply}");
        session.send_connect();
        let reply = session.conn.read_response().json();
        assert_eq!(reply[0]["successful"], true, "{reply}");
        session
    }

    fn id(&mut self) -> String {
        self.next += 1;
        self.next.to_string()
    }

    /// Sends a connect without reading its answer: it is held until a message.
    fn send_connect(&mut self) {
        let msg = json!([{
            "channel": "/meta/connect", "clientId": self.client_id,
            "connectionType": "long-polling", "id": self.id(),
        }]);
        let body = msg.to_string();
        self.conn.request(
            "POST",
            "/bayeux",
            &["Content-Type: application/json"],
            body.as_bytes(),
        );
    }

    /// Reads the held connect's answer and returns the messages it carried
    /// for `/{channel}`.
    #[track_caller]
    fn messages(&mut self, channel: &str) -> Vec<Value> {
        let resp = self.conn.read_response();
        assert_eq!(resp.status, 200, "{resp:?}");
        let reply = resp.json();
        let name = format!("/{channel}");
        reply
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["channel"] == name.as_str())
            .cloned()
            .collect()
    }
}

/// A one-off Bayeux publish of `data` to `/{channel}` from a new session.
#[track_caller]
fn bayeux_publish(addr: SocketAddr, channel: &str, data: Value) {
    let mut conn = Client::connect(addr);
    let reply = post_bayeux(
        &mut conn,
        json!([{
            "channel": "/meta/handshake", "version": "1.0",
            "supportedConnectionTypes": ["long-polling"], "id": "1",
        }]),
    );
    let client_id = reply[0]["clientId"].as_str().unwrap().to_owned();
    let reply = post_bayeux(
        &mut conn,
        json!([{"channel": format!("/{channel}"), "clientId": client_id, "data": data, "id": "2"}]),
    );
    assert_eq!(reply[0]["successful"], true, "{reply}");
}

// ---------------------------------------------------------------------------
// The cluster.

/// The data of messages `from..=to`, as the scenarios publish them.
fn numbered(from: usize, to: usize) -> Vec<String> {
    (from..=to).map(|i| format!("m{i}")).collect()
}

/// Asserts that `ids` are one channel's consecutive ids: one epoch, each
/// sequence number one more than the last.
#[track_caller]
fn assert_consecutive(ids: &[String]) {
    let epoch = epoch_of(&ids[0]);
    let first = seq_of(&ids[0]);
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(epoch_of(id), epoch, "{id} keeps the epoch of {}", ids[0]);
        assert_eq!(seq_of(id), first + i as u64, "{id} follows {}", ids[0]);
    }
}

on_one_and_two_shards!(a_publish_on_one_node_reaches_every_transport_on_the_others);
fn a_publish_on_one_node_reaches_every_transport_on_the_others(n: usize) {
    let redis = shards(n);
    let (a, b, c) = (node(&redis, &[]), node(&redis, &[]), node(&redis, &[]));
    let ch = channel("fanout");

    let mut sse = Sub::sse(b.addr, &ch, "", &[]);
    let mut stream = Sub::stream(c.addr, &ch, "");
    let mut poll = Client::connect(c.addr);
    poll.request("GET", &format!("/sub/{ch}?transport=longpoll"), &[], b"");
    // No byte says a poll is parked; C already follows the channel for its
    // stream subscriber, so once the poll is counted it hears the publish.
    wait_subscribers(c.addr, &ch, 2);
    // Likewise B follows the channel for its SSE subscriber before the
    // Bayeux session subscribes there.
    let mut bayeux = Bayeux::subscribed(b.addr, &ch);
    bayeux.send_connect();

    let id = publish(a.addr, &ch, "hello");

    let ev = sse.next_event();
    assert_eq!(ev.id.as_deref(), Some(id.as_str()));
    assert_eq!(ev.data(), "hello");
    let line = stream.next_json();
    assert_eq!(line, json!({"id": id, "channel": ch, "data": "hello"}));
    let answer = poll.read_response();
    assert_eq!(answer.status, 200, "{answer:?}");
    let body = answer.json();
    assert_eq!(
        body["messages"],
        json!([{"id": id, "channel": ch, "data": "hello"}])
    );
    assert_eq!(body["next"].as_str(), Some(id.as_str()));
    let got = bayeux.messages(&ch);
    assert_eq!(
        got,
        vec![json!({"channel": format!("/{ch}"), "id": id, "data": "hello"})]
    );

    // The other way round: a Bayeux publish on C reaches B's SSE subscriber
    // as JSON text, next in the channel's sequence.
    bayeux_publish(c.addr, &ch, json!({"k": 1}));
    let ev = sse.next_event();
    assert_eq!(ev.data(), r#"{"k":1}"#);
    assert_consecutive(&[id, ev.id.unwrap()]);
    assert_eq!(subscribers(a.addr, &ch), 0, "A counts its own subscribers");
    assert_eq!(subscribers(b.addr, &ch), 1);
}

on_one_and_two_shards!(a_bayeux_subscribe_once_answered_hears_the_next_publish_anywhere);
/// The subscribe reply waits for Redis to have the subscription: a publish
/// on another node right after it is never missed, on a channel new to the
/// node or under a new wildcard. (Before the wait, the first message was lost
/// in about a quarter of tries.)
fn a_bayeux_subscribe_once_answered_hears_the_next_publish_anywhere(n: usize) {
    let redis = shards(n);
    let (a, b) = (node(&redis, &[]), node(&redis, &[]));
    for round in 0..10 {
        let exact = channel("first");
        let mut bayeux = Bayeux::subscribed(b.addr, &exact);
        bayeux.send_connect();
        let id = publish(a.addr, &exact, "now");
        let got = bayeux.messages(&exact);
        assert_eq!(got.len(), 1, "round {round}: {got:?}");
        assert_eq!(got[0]["id"], json!(id));

        let root = channel("firstwild");
        let mut bayeux = Bayeux::subscribed(b.addr, &format!("{root}/**"));
        bayeux.send_connect();
        let id = publish(a.addr, &format!("{root}/x/y"), "now");
        let got = bayeux.messages(&format!("{root}/x/y"));
        assert_eq!(got.len(), 1, "round {round}: {got:?}");
        assert_eq!(got[0]["id"], json!(id));
    }
}

on_one_and_two_shards!(a_bayeux_wildcard_on_one_node_matches_publishes_on_another);
fn a_bayeux_wildcard_on_one_node_matches_publishes_on_another(n: usize) {
    let redis = shards(n);
    let (a, b) = (node(&redis, &[]), node(&redis, &[]));
    let root = channel("wild");
    // B answers the subscribe once every shard has confirmed its pattern,
    // so a publish right after it reaches the session.
    let mut bayeux = Bayeux::subscribed(b.addr, &format!("{root}/*"));
    bayeux.send_connect();
    let id = publish(a.addr, &format!("{root}/x"), "one");
    let got = bayeux.messages(&format!("{root}/x"));
    assert_eq!(
        got,
        vec![json!({"channel": format!("/{root}/x"), "id": id, "data": "one"})]
    );
    // Another channel under the pattern, possibly on the other shard.
    bayeux.send_connect();
    let id = publish(a.addr, &format!("{root}/y"), "two");
    let got = bayeux.messages(&format!("{root}/y"));
    assert_eq!(
        got,
        vec![json!({"channel": format!("/{root}/y"), "id": id, "data": "two"})]
    );
}

on_one_and_two_shards!(a_delete_on_one_node_ends_the_subscribers_of_every_node);
fn a_delete_on_one_node_ends_the_subscribers_of_every_node(n: usize) {
    let redis = shards(n);
    let (a, b, c) = (node(&redis, &[]), node(&redis, &[]), node(&redis, &[]));
    let ch = channel("delete");
    let mut sse = Sub::sse(b.addr, &ch, "", &[]);
    let mut stream = Sub::stream(c.addr, &ch, "");
    let id = publish(a.addr, &ch, "before");
    assert_eq!(sse.next_event().id.as_deref(), Some(id.as_str()));
    assert_eq!(stream.next_json()["id"], id.as_str());
    let mut poll = Client::connect(c.addr);
    poll.request("GET", &format!("/sub/{ch}?since={id}"), &[], b"");
    wait_subscribers(c.addr, &ch, 2);

    let resp = call(a.addr, "DELETE", &format!("/pub/{ch}"), &[], b"");
    assert_eq!(resp.status, 204, "{resp:?}");
    let ev = sse.next_event();
    assert_eq!(ev.event.as_deref(), Some("deleted"), "{ev:?}");
    assert_eq!(parse_json(&ev.data())["channel"], ch.as_str());
    sse.expect_end();
    let last = stream.next_json();
    assert_eq!(last["deleted"], true, "{last}");
    assert_eq!(last["channel"], ch.as_str());
    stream.expect_end();
    let resp = poll.read_response();
    resp.assert_error(410);
}

/// How many messages the moving-client scenarios publish.
const TOTAL: usize = 1000;

on_one_and_two_shards!(an_sse_client_resumes_on_another_node_while_publishing_goes_on);
fn an_sse_client_resumes_on_another_node_while_publishing_goes_on(n: usize) {
    // The client reads this many on A, while the publisher is held after
    // `AHEAD`: the difference is replayed from Redis on B, and the rest is
    // published while B subscribes and reads that history.
    const READ_ON_A: usize = 300;
    const AHEAD: usize = 400;
    let redis = shards(n);
    let buffer = (2 * TOTAL).to_string();
    let a = node(&redis, &["--buffer", &buffer]);
    let b = node(&redis, &["--buffer", &buffer]);
    let ch = channel("move");
    let mut sub = Sub::sse(a.addr, &ch, "", &[]);

    let (left_a, wait_left_a) = mpsc::channel::<()>();
    let publisher = {
        let (a, b, ch) = (a.addr, b.addr, ch.clone());
        thread::spawn(move || {
            (1..=TOTAL)
                .map(|i| {
                    if i == AHEAD + 1 {
                        wait_left_a
                            .recv_timeout(READ_TIMEOUT)
                            .expect("the client left A");
                    }
                    let node = if i % 2 == 0 { a } else { b };
                    publish(node, &ch, &format!("m{i}"))
                })
                .collect::<Vec<String>>()
        })
    };

    let mut got: Vec<(String, String)> = Vec::new();
    while got.len() < READ_ON_A {
        let ev = sub.next_event();
        got.push((ev.data(), ev.id.unwrap()));
    }
    let last = sub.last_id.clone().unwrap();
    drop(sub);
    left_a.send(()).unwrap();
    let header = format!("Last-Event-ID: {last}");
    let mut sub = Sub::sse(b.addr, &ch, "", &[&header]);
    while got.len() < TOTAL {
        let ev = sub.next_event();
        assert_eq!(ev.event, None, "no gap or other event: {ev:?}");
        got.push((ev.data(), ev.id.unwrap()));
    }
    let ids = publisher.join().unwrap();

    let (got_data, got_ids): (Vec<String>, Vec<String>) = got.into_iter().unzip();
    assert_eq!(got_data, numbered(1, TOTAL));
    assert_eq!(got_ids, ids);
    assert_consecutive(&ids);
}

on_one_and_two_shards!(a_long_poll_client_alternating_between_nodes_gets_every_message_once);
fn a_long_poll_client_alternating_between_nodes_gets_every_message_once(n: usize) {
    let redis = shards(n);
    let buffer = (2 * TOTAL).to_string();
    let nodes: Vec<Proc> = (0..3)
        .map(|_| node(&redis, &["--buffer", &buffer]))
        .collect();
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.addr).collect();
    let ch = channel("poll");

    let publisher = {
        let (addrs, ch) = (addrs.clone(), ch.clone());
        thread::spawn(move || {
            (1..=TOTAL)
                .map(|i| publish(addrs[i % addrs.len()], &ch, &format!("m{i}")))
                .collect::<Vec<String>>()
        })
    };

    let mut got: Vec<(String, String)> = Vec::new();
    let mut cursor = "earliest".to_owned();
    let mut polls = 0;
    while got.len() < TOTAL {
        // Each poll goes to the next node; the publisher publishes on them too.
        let addr = addrs[polls % addrs.len()];
        polls += 1;
        assert!(polls < 10 * TOTAL, "no progress after {polls} polls");
        let resp = get(
            addr,
            &format!("/sub/{ch}?transport=longpoll&since={cursor}"),
        );
        match resp.status {
            200 => {
                let body = resp.json();
                assert!(body["gap"].is_null(), "no gap: {body}");
                for m in body["messages"].as_array().unwrap() {
                    got.push((
                        m["id"].as_str().unwrap().to_owned(),
                        m["data"].as_str().unwrap().to_owned(),
                    ));
                }
                cursor = body["next"].as_str().unwrap().to_owned();
            }
            204 => cursor = resp.header("halley-cursor").unwrap().to_owned(),
            s => panic!("poll answered {s}: {resp:?}"),
        }
    }
    let ids = publisher.join().unwrap();

    let (got_ids, got_data): (Vec<String>, Vec<String>) = got.into_iter().unzip();
    assert_eq!(got_data, numbered(1, TOTAL));
    assert_eq!(got_ids, ids);
    assert_consecutive(&ids);
}

on_one_and_two_shards!(clients_of_a_killed_node_resume_on_another_with_no_loss);
fn clients_of_a_killed_node_resume_on_another_with_no_loss(n: usize) {
    let redis = shards(n);
    let mut a = node(&redis, &[]);
    let b = node(&redis, &[]);
    let ch = channel("kill");
    let mut subs: Vec<Sub> = (0..3).map(|_| Sub::sse(a.addr, &ch, "", &[])).collect();

    let mut ids: Vec<String> = (1..=20)
        .map(|i| publish(b.addr, &ch, &format!("m{i}")))
        .collect();
    // Each client has read a different part when its node dies.
    let mut cursors = Vec::new();
    for (k, sub) in subs.iter_mut().enumerate() {
        let read = 5 + 5 * k;
        for i in 1..=read {
            let ev = sub.next_event();
            assert_eq!(ev.data(), format!("m{i}"));
        }
        cursors.push((read, sub.last_id.clone().unwrap()));
    }
    a.signal(libc::SIGKILL);
    a.wait_exit(READ_TIMEOUT).expect("the node died");
    drop(subs);

    ids.extend((21..=40).map(|i| publish(b.addr, &ch, &format!("m{i}"))));
    for (read, cursor) in &cursors {
        let header = format!("Last-Event-ID: {cursor}");
        let mut sub = Sub::sse(b.addr, &ch, "", &[&header]);
        for i in read + 1..=40 {
            let ev = sub.next_event();
            assert_eq!(ev.event, None, "no gap: {ev:?}");
            assert_eq!(ev.data(), format!("m{i}"));
            assert_eq!(ev.id.as_deref(), Some(ids[i - 1].as_str()));
        }
    }

    // Started again, the node carries on the same history with the same ids.
    let a = node(&redis, &[]);
    ids.push(publish(a.addr, &ch, "m41"));
    assert_consecutive(&ids);
    let header = format!("Last-Event-ID: {}", ids[34]);
    let mut sub = Sub::sse(a.addr, &ch, "", &[&header]);
    for i in 36..=41 {
        let ev = sub.next_event();
        assert_eq!(ev.data(), format!("m{i}"));
        assert_eq!(ev.id.as_deref(), Some(ids[i - 1].as_str()));
    }
}

on_one_and_two_shards!(resuming_past_the_buffer_is_an_expired_gap_and_epochs_outlive_nodes);
fn resuming_past_the_buffer_is_an_expired_gap_and_epochs_outlive_nodes(n: usize) {
    let redis = shards(n);
    let a = node(&redis, &["--buffer", "5"]);
    let b = node(&redis, &["--buffer", "5"]);
    let ch = channel("expire");
    let ids: Vec<String> = (1..=10)
        .map(|i| publish(a.addr, &ch, &format!("m{i}")))
        .collect();
    assert_consecutive(&ids);
    assert_eq!(seq_of(&ids[0]), 1, "a new channel starts at 1");

    // SSE on the other node, from m2: m3..m5 are gone.
    let header = format!("Last-Event-ID: {}", ids[1]);
    let mut sse = Sub::sse(b.addr, &ch, "", &[&header]);
    let gap = sse.next_event();
    assert_eq!(gap.event.as_deref(), Some("gap"));
    assert_eq!(gap.id.as_deref(), Some(ids[4].as_str()));
    let info = parse_json(&gap.data());
    assert_eq!(
        info,
        json!({"reason": "expired", "missed": 3, "cursor": ids[1], "next": ids[4]})
    );
    for i in 6..=10 {
        let ev = sse.next_event();
        assert_eq!(ev.data(), format!("m{i}"));
        assert_eq!(ev.id.as_deref(), Some(ids[i - 1].as_str()));
    }

    // A stream on the publishing node and a long-poll on the other, from m1.
    let mut stream = Sub::stream(a.addr, &ch, &format!("&since={}", ids[0]));
    let expired = json!({"reason": "expired", "missed": 4, "cursor": ids[0], "next": ids[4]});
    assert_eq!(stream.next_json(), json!({"gap": expired}));
    for i in 6..=10 {
        assert_eq!(stream.next_json()["data"], format!("m{i}"));
    }
    let body = get(b.addr, &format!("/sub/{ch}?since={}", ids[0])).json();
    assert_eq!(body["gap"], expired);
    let data: Vec<&str> = body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["data"].as_str().unwrap())
        .collect();
    assert_eq!(data, numbered(6, 10));
    assert_eq!(body["next"].as_str(), Some(ids[9].as_str()));

    // Every node gone, then a new one: the channel's epoch and sequence go on.
    drop((a, b, sse, stream));
    let c = node(&redis, &["--buffer", "5"]);
    let id = publish(c.addr, &ch, "m11");
    assert_consecutive(&[ids[9].clone(), id.clone()]);
    let body = get(c.addr, &format!("/sub/{ch}?since={}", ids[9])).json();
    assert!(body["gap"].is_null(), "{body}");
    assert_eq!(
        body["messages"],
        json!([{"id": id, "channel": ch, "data": "m11"}])
    );
}

#[test]
fn channels_spread_over_both_shards_and_every_node_agrees_where() {
    const CHANNELS: usize = 32;
    let redis = shards(2);
    let (a, b) = (node(&redis, &[]), node(&redis, &[]));
    let names: Vec<String> = (0..CHANNELS).map(|_| channel("spread")).collect();
    for ch in &names {
        publish(a.addr, ch, "one");
    }
    let ids: Vec<String> = names.iter().map(|ch| publish(b.addr, ch, "two")).collect();

    let keys: Vec<Vec<String>> = redis.iter().map(|r| r.keys("halley:*")).collect();
    let mut per_shard = [0; 2];
    for (ch, id) in names.iter().zip(&ids) {
        let meta = format!("halley:{{{ch}}}:meta");
        let stream = format!("halley:{{{ch}}}:stream");
        let homes: Vec<usize> = (0..2)
            .filter(|&s| keys[s].contains(&meta) || keys[s].contains(&stream))
            .collect();
        assert_eq!(homes.len(), 1, "{ch} lives in one shard: {keys:?}");
        let home = &redis[homes[0]];
        per_shard[homes[0]] += 1;
        assert!(keys[homes[0]].contains(&meta) && keys[homes[0]].contains(&stream));
        // The same number as the id's epoch, in hex (not necessarily padded).
        let epoch = home.cmd(&["HGET", &meta, "epoch"]).text();
        assert_eq!(
            u64::from_str_radix(&epoch, 16),
            u64::from_str_radix(epoch_of(id), 16),
            "{meta} epoch {epoch}, id {id}"
        );
        assert_eq!(home.cmd(&["HGET", &meta, "seq"]).text(), "2");
        assert_eq!(home.cmd(&["XLEN", &stream]).int(), 2);
    }
    assert!(
        per_shard.iter().all(|&n| n > 0),
        "{CHANNELS} channels spread over both shards: {per_shard:?}"
    );
    // Each node counts its own publishes, over both shards.
    for node in [&a, &b] {
        let stats = redis_stats(node);
        assert_eq!(stats["connected"], true, "{stats}");
        assert_eq!(stats["shards"], 2, "{stats}");
        assert_eq!(stats["publishes"], CHANNELS, "{stats}");
        assert!(stats["in_flight"].is_u64(), "{stats}");
        assert!(stats["publish_rtt_us"].is_object(), "{stats}");
    }
}

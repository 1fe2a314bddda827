//! Redis pub/sub is at-most-once: a node must notice a sequence number that
//! skips ahead and fill the hole from the channel's stream, or tell its
//! subscribers the gap when the stream no longer has it. Pub/sub losing a
//! message is made exact here by running the publish script with its
//! announcement sent to a channel nobody follows.

mod common;

use common::redis::{node, RedisServer};
use common::*;
use serde_json::json;

/// Publishes `data` on `channel` straight into Redis, announced to nobody:
/// a message every node's pub/sub missed. Returns its sequence number.
fn publish_unannounced(redis: &RedisServer, channel: &str, data: &str, buffer: &str) -> i64 {
    let keys = halley::redis::scripts::Keys::of(channel);
    let now = halley::redis::scripts::unix_ms(std::time::SystemTime::now()).to_string();
    let reply = redis.cmd(&[
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
    reply.array()[1].int()
}

#[test]
fn a_message_pubsub_lost_is_read_from_the_stream_in_its_place() {
    let redis = RedisServer::start();
    let b = node(std::slice::from_ref(&redis), &[]);
    let ch = channel("hole");
    let mut sse = Sub::sse(b.addr, &ch, "", &[]);
    let mut poll = Client::connect(b.addr);
    let first = publish(b.addr, &ch, "one");
    assert_eq!(sse.next_event().data(), "one");

    let lost = publish_unannounced(&redis, &ch, "two", "100");
    assert_eq!(lost as u64, seq_of(&first) + 1);
    // The poll waits at the position after "one"; nothing has told B of "two".
    poll.request("GET", &format!("/sub/{ch}?since={first}"), &[], b"");
    wait_subscribers(b.addr, &ch, 2);
    let third = publish(b.addr, &ch, "three");

    // "three" skips a number: B reads "two" from the stream first.
    let two = sse.next_event();
    assert_eq!((two.data(), two.event.as_deref()), ("two".into(), None));
    assert_eq!(seq_of(two.id.as_deref().unwrap()), lost as u64);
    let three = sse.next_event();
    assert_eq!(three.id.as_deref(), Some(third.as_str()));
    let answer = poll.read_response().json();
    assert_eq!(answer["messages"][0]["data"], json!("two"));
    assert_eq!(answer["gap"], serde_json::Value::Null);
    assert_eq!(redis_gaps(&b), 0);
}

#[test]
fn a_message_pubsub_lost_that_the_stream_no_longer_has_is_a_gap() {
    let redis = RedisServer::start();
    // The stream keeps one message: the lost one is trimmed by the next.
    let b = node(std::slice::from_ref(&redis), &["--buffer", "1"]);
    let ch = channel("trimmed");
    let mut sse = Sub::sse(b.addr, &ch, "", &[]);
    let mut stream = Sub::stream(b.addr, &ch, "");
    let mut bayeux = Client::connect(b.addr);
    let client_id = bayeux_session(&mut bayeux, &ch);
    let first = publish(b.addr, &ch, "one");
    assert_eq!(sse.next_event().data(), "one");
    assert_eq!(stream.next_json()["data"], json!("one"));

    publish_unannounced(&redis, &ch, "lost", "1");
    let third = publish(b.addr, &ch, "three");

    let gap = sse.next_event();
    assert_eq!(gap.event.as_deref(), Some("gap"));
    let gap: serde_json::Value = serde_json::from_str(&gap.data()).unwrap();
    assert_eq!(gap["reason"], json!("expired"));
    assert_eq!(gap["missed"], json!(1));
    assert_eq!(gap["cursor"], json!(first));
    assert_eq!(seq_of(gap["next"].as_str().unwrap()), seq_of(&first) + 1);
    assert_eq!(sse.next_event().id.as_deref(), Some(third.as_str()));
    let line = stream.next_json();
    assert_eq!(line["gap"]["reason"], json!("expired"));
    assert_eq!(stream.next_json()["id"], json!(third));
    // The Bayeux session hears it as a resume's gap is told: data null and
    // ext.halley.gap, between the messages.
    let connect = json!([{"channel": "/meta/connect", "clientId": client_id, "connectionType": "long-polling"}]);
    let got = post_bayeux(&mut bayeux, connect.clone());
    let on_channel: Vec<_> = got
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["channel"] == json!(format!("/{ch}")))
        .collect();
    assert_eq!(on_channel.len(), 3, "{got}");
    assert_eq!(on_channel[0]["data"], json!("one"));
    assert_eq!(on_channel[1]["data"], serde_json::Value::Null);
    assert_eq!(
        on_channel[1]["ext"]["halley"]["gap"]["reason"],
        json!("expired")
    );
    assert_eq!(on_channel[2]["id"], json!(third));
    assert_eq!(redis_gaps(&b), 1);
}

/// A Bayeux session on `channel`, its first connect answered: the next one
/// carries what arrived since.
fn bayeux_session(conn: &mut Client, channel: &str) -> String {
    let hs = json!([{"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": ["long-polling"]}]);
    let client_id = post_bayeux(conn, hs)[0]["clientId"]
        .as_str()
        .unwrap()
        .to_owned();
    let sub = json!([{"channel": "/meta/subscribe", "clientId": client_id, "subscription": format!("/{channel}")}]);
    assert_eq!(post_bayeux(conn, sub)[0]["successful"], json!(true));
    let connect = json!([{"channel": "/meta/connect", "clientId": client_id, "connectionType": "long-polling"}]);
    assert_eq!(
        post_bayeux(conn, connect.clone())[0]["successful"],
        json!(true)
    );
    client_id
}

/// A channel reached through a Bayeux wildcard has no feed of its own, but
/// the node keeps its position all the same: what pub/sub dropped while the
/// node's link was down is read from the stream once it is back.
#[test]
fn a_bayeux_wildcard_gets_what_pubsub_dropped_during_a_reconnect() {
    let redis = RedisServer::start();
    let shards = std::slice::from_ref(&redis);
    let (a, b) = (node(shards, &[]), node(shards, &[]));
    let root = channel("wildgap");
    let mut bayeux = Client::connect(b.addr);
    let client_id = bayeux_session(&mut bayeux, &format!("{root}/*"));
    let connect = json!([{"channel": "/meta/connect", "clientId": client_id, "connectionType": "long-polling"}]);
    let ch = format!("{root}/x");
    let first = publish(a.addr, &ch, "one");
    let got = post_bayeux(&mut bayeux, connect.clone());
    assert_eq!(data_on(&got, &ch), [json!("one")], "{got}");

    // B's pub/sub connection drops while B is frozen; A publishes meanwhile.
    b.signal(libc::SIGSTOP);
    assert!(redis.cmd(&["CLIENT", "KILL", "TYPE", "pubsub"]).int() >= 1);
    let missed = publish(a.addr, &ch, "two");
    b.signal(libc::SIGCONT);
    wait_until("B reconnected", || {
        common::redis::redis_stats(&b)["reconnects"].as_u64() >= Some(1)
            && common::redis::redis_stats(&b)["connected"] == json!(true)
    });
    let got = post_bayeux(&mut bayeux, connect.clone());
    let on_channel = data_on(&got, &ch);
    assert_eq!(on_channel, [json!("two")], "{got}");
    assert_eq!(seq_of(&missed), seq_of(&first) + 1);
    // And live again after it, once.
    publish(a.addr, &ch, "three");
    let got = post_bayeux(&mut bayeux, connect.clone());
    assert_eq!(data_on(&got, &ch), [json!("three")], "{got}");
}

/// The `data` of the messages on hub channel `channel` in a Bayeux reply.
fn data_on(reply: &serde_json::Value, channel: &str) -> Vec<serde_json::Value> {
    let name = format!("/{channel}");
    reply
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["channel"] == json!(name))
        .map(|m| m["data"].clone())
        .collect()
}

fn redis_gaps(node: &Proc) -> u64 {
    common::redis::redis_stats(node)["gaps"].as_u64().unwrap()
}

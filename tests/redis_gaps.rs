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
    assert_eq!(redis_gaps(&b), 1);
}

fn redis_gaps(node: &Proc) -> u64 {
    common::redis::redis_stats(node)["gaps"].as_u64().unwrap()
}

//! The Lua scripts of `halley::redis::scripts` run in a real Redis, with
//! their replies read by halley's own RESP parser and decoders: what a
//! publish stores and announces, how the stream is trimmed, what happens when
//! Redis lost a channel's meta, what a read returns, and what a delete keeps.
//! Each test starts its own `redis-server` on a free port.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use common::redis::RedisServer;
use halley::redis::resp::{self, Value};
use halley::redis::scripts::{self, Decode, Keys, Notice};

/// A raw connection speaking RESP with halley's codec.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    fn open(redis: &RedisServer) -> Conn {
        let stream = TcpStream::connect(("127.0.0.1", redis.port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        Conn {
            stream,
            buf: Vec::new(),
        }
    }

    fn send(&mut self, args: &[&[u8]]) {
        let mut out = Vec::new();
        resp::write_command(&mut out, args);
        self.stream.write_all(&out).unwrap();
    }

    fn reply(&mut self) -> Value {
        loop {
            if let Some((value, used)) = resp::parse(&self.buf).unwrap() {
                self.buf.drain(..used);
                return value;
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).expect("Redis answers in time");
            assert!(n > 0, "Redis closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn call(&mut self, args: &[&[u8]]) -> Value {
        self.send(args);
        self.reply()
    }

    fn int(&mut self, args: &[&[u8]]) -> i64 {
        match self.call(args) {
            Value::Int(n) => n,
            other => panic!("expected an integer, got {other:?}"),
        }
    }
}

const BUFFER: &str = "3";
const TTL_MS: &str = "60000";
const META_TTL_MS: &str = "600000";

/// Runs the publish script; returns its reply read as `(epoch, seq)`.
fn publish(
    c: &mut Conn,
    channel: &str,
    epoch: &str,
    flag: &str,
    event: &str,
    data: &str,
) -> (u64, u64) {
    let keys = Keys::of(channel);
    let now = scripts::unix_ms(SystemTime::now()).to_string();
    let reply = c.call(&[
        b"EVAL",
        scripts::PUBLISH.as_bytes(),
        b"3",
        keys.meta.as_bytes(),
        keys.stream.as_bytes(),
        keys.pubsub.as_bytes(),
        epoch.as_bytes(),
        BUFFER.as_bytes(),
        TTL_MS.as_bytes(),
        META_TTL_MS.as_bytes(),
        now.as_bytes(),
        flag.as_bytes(),
        event.as_bytes(),
        data.as_bytes(),
    ]);
    scripts::sequenced(&reply).expect("the publish script's reply")
}

fn read(c: &mut Conn, channel: &str, epoch: &str, after: u64, count: usize) -> Value {
    let keys = Keys::of(channel);
    let (after, count) = (after.to_string(), count.to_string());
    c.call(&[
        b"EVAL",
        scripts::READ.as_bytes(),
        b"2",
        keys.meta.as_bytes(),
        keys.stream.as_bytes(),
        epoch.as_bytes(),
        after.as_bytes(),
        count.as_bytes(),
        META_TTL_MS.as_bytes(),
    ])
}

fn decode(channel: &Rc<str>) -> Decode<'_> {
    Decode {
        channel,
        now: Instant::now(),
        unix_ms: scripts::unix_ms(SystemTime::now()),
        ttl: Duration::from_secs(60),
    }
}

#[test]
fn a_publish_sequences_appends_trims_expires_and_announces() {
    let redis = RedisServer::start();
    let mut c = Conn::open(&redis);
    let mut sub = Conn::open(&redis);
    let channel: Rc<str> = "chat/room1".into();
    let keys = Keys::of(&channel);
    sub.send(&[b"SUBSCRIBE", keys.pubsub.as_bytes()]);
    let Value::Array(confirm) = sub.reply() else {
        panic!("a subscribe confirmation");
    };
    assert_eq!(confirm[0], Value::Bulk(b"subscribe".to_vec()));

    // The first publish adopts the offered epoch; later ones keep it.
    assert_eq!(publish(&mut c, &channel, "abc", "t", "", "one"), (0xabc, 1));
    assert_eq!(
        publish(&mut c, &channel, "def", "j", "note", "{\"n\":2}"),
        (0xabc, 2)
    );
    for n in 3..=5 {
        assert_eq!(
            publish(&mut c, &channel, "def", "t", "", &format!("line\n{n}")),
            (0xabc, n)
        );
    }
    // Trimmed to --buffer, oldest first, ids SEQ-0.
    assert_eq!(c.int(&[b"XLEN", keys.stream.as_bytes()]), 3);
    let ttl = c.int(&[b"PTTL", keys.stream.as_bytes()]);
    assert!((50_000..=60_000).contains(&ttl), "stream TTL {ttl}");
    let meta_ttl = c.int(&[b"PTTL", keys.meta.as_bytes()]);
    assert!(
        (500_000..=600_000).contains(&meta_ttl),
        "meta TTL {meta_ttl}"
    );

    // Every publish was announced, decodable into the same message.
    let mut announced = Vec::new();
    for _ in 0..5 {
        let Value::Array(push) = sub.reply() else {
            panic!("a pub/sub message");
        };
        let Value::Bulk(payload) = &push[2] else {
            panic!("a payload");
        };
        let Some(Notice::Message(m)) = decode(&channel).notice(payload) else {
            panic!("a message notice");
        };
        announced.push((m.seq, m.event.clone(), m.data.to_string(), m.data_is_json));
    }
    assert_eq!(
        announced[1],
        (2, Some("note".into()), "{\"n\":2}".into(), true)
    );
    assert_eq!(announced[4], (5, None, "line\n5".into(), false));
}

#[test]
fn a_read_returns_the_position_and_what_follows_a_cursor() {
    let redis = RedisServer::start();
    let mut c = Conn::open(&redis);
    let channel: Rc<str> = "feed".into();
    // A channel Redis does not know gets the offered epoch, at 0.
    let h = decode(&channel)
        .history(read(&mut c, &channel, "e1", 0, 10), 10)
        .unwrap();
    assert_eq!((h.epoch, h.last, h.entries.len()), (0xe1, 0, 0));
    for n in 1..=3 {
        publish(&mut c, &channel, "ffff", "t", "", &format!("m{n}"));
    }
    // After 1: exactly 2 and 3; the read that asked for 1 entry is cut short.
    let h = decode(&channel)
        .history(read(&mut c, &channel, "ffff", 1, 10), 10)
        .unwrap();
    let got: Vec<_> = h
        .entries
        .iter()
        .map(|m| (m.seq, m.data.to_string(), m.id.to_string()))
        .collect();
    assert_eq!(
        got,
        [
            (2, "m2".into(), "0000000000e1-2".into()),
            (3, "m3".into(), "0000000000e1-3".into())
        ]
    );
    assert!(!h.truncated);
    let h = decode(&channel)
        .history(read(&mut c, &channel, "ffff", 0, 1), 1)
        .unwrap();
    assert_eq!((h.last, h.entries.len(), h.truncated), (3, 1, true));
    // Count 0: the position only.
    let h = decode(&channel)
        .history(read(&mut c, &channel, "ffff", 0, 0), 0)
        .unwrap();
    assert_eq!((h.epoch, h.last, h.entries.len()), (0xe1, 3, 0));
}

#[test]
fn a_channel_whose_meta_redis_lost_starts_a_new_epoch_without_the_old_stream() {
    let redis = RedisServer::start();
    let mut c = Conn::open(&redis);
    let keys = Keys::of("lost");
    publish(&mut c, "lost", "aaa", "t", "", "old");
    publish(&mut c, "lost", "aaa", "t", "", "old");
    c.int(&[b"DEL", keys.meta.as_bytes()]);
    assert_eq!(publish(&mut c, "lost", "bbb", "t", "", "new"), (0xbbb, 1));
    // The old epoch's entries are gone with it: the stream has the new one only.
    assert_eq!(c.int(&[b"XLEN", keys.stream.as_bytes()]), 1);
}

#[test]
fn a_delete_drops_the_messages_keeps_the_numbers_and_tells_the_nodes() {
    let redis = RedisServer::start();
    let mut c = Conn::open(&redis);
    let mut sub = Conn::open(&redis);
    let keys = Keys::of("gone");
    let delete = |c: &mut Conn| {
        c.int(&[
            b"EVAL",
            scripts::DELETE.as_bytes(),
            b"3",
            keys.meta.as_bytes(),
            keys.stream.as_bytes(),
            keys.pubsub.as_bytes(),
        ])
    };
    assert_eq!(delete(&mut c), 0, "a channel Redis does not know");
    publish(&mut c, "gone", "123", "t", "", "x");
    sub.send(&[b"SUBSCRIBE", keys.pubsub.as_bytes()]);
    sub.reply();
    assert_eq!(delete(&mut c), 1);
    assert_eq!(c.int(&[b"EXISTS", keys.stream.as_bytes()]), 0);
    let Value::Array(push) = sub.reply() else {
        panic!("the deletion notice");
    };
    assert_eq!(push[2], Value::Bulk(b"d 123 1\n".to_vec()));
    // Numbers go on after a delete: no cursor is ever reused.
    assert_eq!(publish(&mut c, "gone", "999", "t", "", "y"), (0x123, 2));
}

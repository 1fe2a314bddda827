use super::*;

fn bulk(s: &str) -> Value {
    Value::Bulk(s.as_bytes().to_vec())
}

fn entry(seq: u64, time: u64, flag: &str, event: &str, data: &str) -> Value {
    Value::Array(vec![
        bulk(&format!("{seq}-0")),
        Value::Array(vec![
            bulk("t"),
            bulk(&time.to_string()),
            bulk("f"),
            bulk(flag),
            bulk("e"),
            bulk(event),
            bulk("d"),
            bulk(data),
        ]),
    ])
}

fn decode(channel: &Rc<str>, unix_ms: u64) -> Decode<'_> {
    Decode {
        channel,
        now: Instant::now(),
        unix_ms,
        ttl: Duration::from_secs(60),
    }
}

#[test]
fn keys_share_a_hash_tag_and_name_their_channel() {
    let keys = Keys::of("chat/room1");
    assert_eq!(keys.meta, "halley:{chat/room1}:meta");
    assert_eq!(keys.stream, "halley:{chat/room1}:stream");
    assert_eq!(keys.pubsub, "halley:{chat/room1}");
    assert_eq!(
        idempotency_key("chat/room1", "k-1"),
        "halley:{chat/room1}:idem:k-1"
    );
    assert_eq!(channel_of(b"halley:{chat/room1}"), Some("chat/room1"));
    for foreign in [
        &b"other:{a}"[..],
        b"halley:{a",
        b"halley:{}",
        b"halley:{a b}",
    ] {
        assert_eq!(channel_of(foreign), None, "{foreign:?}");
    }
}

#[test]
fn patterns_match_by_prefix() {
    let all = pubsub_pattern("");
    let chat = pubsub_pattern("chat/");
    assert_eq!(chat, "halley:{chat/*");
    assert!(pattern_matches(&chat, "chat/a"));
    assert!(pattern_matches(&chat, "chat/a/b"));
    assert!(!pattern_matches(&chat, "chats/a"));
    assert!(pattern_matches(&all, "anything"));
}

#[test]
fn reads_published_notices() {
    let channel: Rc<str> = "room".into();
    let d = decode(&channel, 1_000_000);
    let Some(Notice::Message(m)) = d.notice(b"m 1a2b 7 999000 j 4\nnote{\"a\":1}") else {
        panic!("a message");
    };
    assert_eq!((m.epoch, m.seq, &*m.id), (0x1a2b, 7, "000000001a2b-7"));
    assert_eq!(m.event.as_deref(), Some("note"));
    assert_eq!(&*m.data, "{\"a\":1}");
    assert!(m.data_is_json);
    let Some(Notice::Message(m)) = d.notice(b"m ff 1 5 t 0\nline one\nline two") else {
        panic!("a message");
    };
    assert_eq!(
        (m.event.as_deref(), &*m.data, m.data_is_json),
        (None, "line one\nline two", false)
    );
    assert!(matches!(
        d.notice(b"d ff 12\n"),
        Some(Notice::Deleted {
            epoch: 0xff,
            seq: 12
        })
    ));
    for bad in [
        &b"m ff 1 5 t 9\nshort"[..],
        b"x ff 1\n",
        b"m zz 1 5 t 0\n",
        b"m ff one 5 t 0\n",
        b"no newline",
        b"m ff 1 5 t 0\n\xff\xfe",
    ] {
        assert!(d.notice(bad).is_none(), "{bad:?}");
    }
}

#[test]
fn reads_history_and_leaves_out_expired_entries() {
    let channel: Rc<str> = "room".into();
    let now_ms = 1_000_000;
    let d = decode(&channel, now_ms);
    let reply = Value::Array(vec![
        bulk("e1"),
        Value::Int(9),
        Value::Array(vec![
            entry(7, now_ms - 61_000, "t", "", "too old"),
            entry(8, now_ms - 1_000, "t", "", "eight"),
            entry(9, now_ms, "j", "ev", "[9]"),
        ]),
    ]);
    let h = d.history(reply, 3).unwrap();
    assert_eq!((h.epoch, h.last, h.truncated), (0xe1, 9, true));
    let got: Vec<_> = h.entries.iter().map(|m| (m.seq, &*m.data)).collect();
    assert_eq!(got, [(8, "eight"), (9, "[9]")]);
    assert!(h.entries[1].data_is_json);

    let short = Value::Array(vec![bulk("e1"), Value::Int(9), Value::Array(vec![])]);
    assert!(!d.history(short, 3).unwrap().truncated);
    for bad in [
        Value::Nil,
        Value::Array(vec![bulk("e1"), Value::Int(9)]),
        Value::Array(vec![bulk("xyz"), Value::Int(9), Value::Array(vec![])]),
        Value::Array(vec![bulk("e1"), bulk("9"), Value::Array(vec![])]),
        Value::Array(vec![
            bulk("e1"),
            Value::Int(9),
            Value::Array(vec![bulk("x")]),
        ]),
    ] {
        assert!(d.history(bad.clone(), 3).is_err(), "{bad:?}");
    }
}

#[test]
fn reads_the_publish_reply() {
    let ok = Value::Array(vec![bulk("abc"), Value::Int(5)]);
    assert_eq!(sequenced(&ok), Ok((0xabc, 5)));
    assert!(sequenced(&Value::Error("NOSCRIPT".into())).is_err());
    assert!(sequenced(&Value::Array(vec![bulk("abc"), Value::Int(0)])).is_err());
    assert!(
        sequenced(&Value::Int(0)).is_err(),
        "a conflict is no sequence"
    );
}

#[test]
fn reads_the_publish_reply_with_an_idempotency_key() {
    let arr = |parts: Vec<Value>| Value::Array(parts);
    let cases = [
        (
            arr(vec![bulk("abc"), Value::Int(5)]),
            Ok(Published::New {
                epoch: 0xabc,
                seq: 5,
            }),
        ),
        (
            arr(vec![bulk("abc"), Value::Int(5), Value::Int(2)]),
            Ok(Published::Repeat {
                epoch: 0xabc,
                seq: 5,
                subscribers: 2,
            }),
        ),
        (Value::Int(0), Ok(Published::Conflict)),
        (arr(vec![bulk("abc"), Value::Int(5), bulk("2")]), Err(())),
        (
            arr(vec![bulk("abc"), Value::Int(0), Value::Int(2)]),
            Err(()),
        ),
        (
            arr(vec![bulk("xyz"), Value::Int(5), Value::Int(2)]),
            Err(()),
        ),
        (Value::Int(1), Err(())),
    ];
    for (reply, want) in cases {
        assert_eq!(published(&reply).map_err(|_| ()), want, "{reply:?}");
    }
}

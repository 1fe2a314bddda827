use proptest::collection::vec;
use proptest::prelude::*;

use super::*;

fn bulk(bytes: &[u8]) -> Value {
    Value::Bulk(bytes.to_vec())
}

fn array(items: Vec<Value>) -> Value {
    Value::Array(items)
}

/// Replies of every kind halley will read, with what they parse to.
fn samples() -> Vec<(&'static [u8], Value)> {
    vec![
        (b"+OK\r\n", Value::Status("OK".into())),
        (b"+\r\n", Value::Status("".into())),
        (
            b"-NOSCRIPT No matching script. Please use EVAL.\r\n",
            Value::Error("NOSCRIPT No matching script. Please use EVAL.".into()),
        ),
        (b":1000\r\n", Value::Int(1000)),
        (b":-42\r\n", Value::Int(-42)),
        (b":0\r\n", Value::Int(0)),
        (b"$5\r\nhello\r\n", bulk(b"hello")),
        (b"$0\r\n\r\n", bulk(b"")),
        // A payload holding CRLF is read by its length, not up to its first line end.
        (b"$6\r\na\r\nb\r\n\r\n", bulk(b"a\r\nb\r\n")),
        (b"$-1\r\n", Value::Nil),
        (b"*-1\r\n", Value::Nil),
        (b"*0\r\n", array(vec![])),
        // The publish script's answer: epoch and sequence.
        (
            b"*2\r\n$8\r\nk3j9x0aa\r\n:17\r\n",
            array(vec![bulk(b"k3j9x0aa"), Value::Int(17)]),
        ),
        (
            b"*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n",
            array(vec![bulk(b"subscribe"), bulk(b"news"), Value::Int(1)]),
        ),
        (
            b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$10\r\n{\"a\":\"b\"}\n\r\n",
            array(vec![
                bulk(b"message"),
                bulk(b"news"),
                bulk(b"{\"a\":\"b\"}\n"),
            ]),
        ),
        (
            b"*4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$4\r\nnews\r\n$2\r\nhi\r\n",
            array(vec![
                bulk(b"pmessage"),
                bulk(b"n*"),
                bulk(b"news"),
                bulk(b"hi"),
            ]),
        ),
        // XRANGE: entries of [id, [field, value, ...]], the second with an
        // empty field list.
        (
            b"*2\r\n*2\r\n$3\r\n1-0\r\n*4\r\n$1\r\nd\r\n$5\r\nhello\r\n$1\r\ns\r\n$1\r\n1\r\n\
              *2\r\n$3\r\n2-0\r\n*0\r\n",
            array(vec![
                array(vec![
                    bulk(b"1-0"),
                    array(vec![bulk(b"d"), bulk(b"hello"), bulk(b"s"), bulk(b"1")]),
                ]),
                array(vec![bulk(b"2-0"), array(vec![])]),
            ]),
        ),
        (
            b"*3\r\n:1\r\n$-1\r\n-ERR inside\r\n",
            array(vec![
                Value::Int(1),
                Value::Nil,
                Value::Error("ERR inside".into()),
            ]),
        ),
    ]
}

#[test]
fn parses_every_kind_of_value() {
    for (bytes, expected) in samples() {
        assert_eq!(
            parse(bytes),
            Ok(Some((expected, bytes.len()))),
            "{:?}",
            String::from_utf8_lossy(bytes)
        );
    }
}

#[test]
fn every_truncated_prefix_needs_more_bytes() {
    for (bytes, _) in samples() {
        for cut in 0..bytes.len() {
            assert_eq!(
                parse(&bytes[..cut]),
                Ok(None),
                "{:?} cut at {cut}",
                String::from_utf8_lossy(bytes)
            );
        }
    }
}

#[test]
fn parses_values_back_to_back() {
    let all = samples();
    for pair in all.windows(2) {
        let (first, first_value) = &pair[0];
        let (second, second_value) = &pair[1];
        let buf = [*first, *second].concat();
        assert_eq!(parse(&buf), Ok(Some((first_value.clone(), first.len()))));
        assert_eq!(
            parse(&buf[first.len()..]),
            Ok(Some((second_value.clone(), second.len())))
        );
    }
}

#[test]
fn integers_span_i64() {
    let cases: &[(&[u8], Option<i64>)] = &[
        (b":9223372036854775807\r\n", Some(i64::MAX)),
        (b":-9223372036854775808\r\n", Some(i64::MIN)),
        (b":007\r\n", Some(7)),
        (b":9223372036854775808\r\n", None),
        (b":-9223372036854775809\r\n", None),
    ];
    for (bytes, expected) in cases {
        let expected = match expected {
            Some(n) => Ok(Some((Value::Int(*n), bytes.len()))),
            None => Err(ProtocolError::NotANumber),
        };
        assert_eq!(
            parse(bytes),
            expected,
            "{:?}",
            String::from_utf8_lossy(bytes)
        );
    }
}

#[test]
fn status_and_error_text_that_is_not_utf8_is_kept_lossily() {
    assert_eq!(
        parse(b"-ERR \xff\r\n"),
        Ok(Some((Value::Error("ERR \u{fffd}".into()), 8)))
    );
}

#[test]
fn refuses_garbage() {
    let cases: &[(&[u8], ProtocolError)] = &[
        (b"?x\r\n", ProtocolError::BadType(b'?')),
        (b"\r\n", ProtocolError::BadType(b'\r')),
        (b"*1\r\nhello\r\n", ProtocolError::BadType(b'h')),
        (b":12a\r\n", ProtocolError::NotANumber),
        (b":\r\n", ProtocolError::NotANumber),
        (b":-\r\n", ProtocolError::NotANumber),
        (b":+5\r\n", ProtocolError::NotANumber),
        (b": 5\r\n", ProtocolError::NotANumber),
        (b"$abc\r\n", ProtocolError::NotANumber),
        (b"*x\r\n", ProtocolError::NotANumber),
        // A number line with no end in sight is refused without waiting for one.
        (b":1234567890123456789012", ProtocolError::NotANumber),
        (b"$-2\r\n", ProtocolError::NegativeLength(-2)),
        (b"*-5\r\n", ProtocolError::NegativeLength(-5)),
        (b"$536870913\r\n", ProtocolError::BulkTooLong(536_870_913)),
        (
            b"$9223372036854775807\r\n",
            ProtocolError::BulkTooLong(i64::MAX),
        ),
        (b"*16777217\r\n", ProtocolError::ArrayTooLong(16_777_217)),
        (b"$3\r\nabcX", ProtocolError::MissingCrlf),
        (b"$3\r\nabc\rX", ProtocolError::MissingCrlf),
        (b"$3\r\nabcd\r\n", ProtocolError::MissingCrlf),
        (b"*2\r\n$1\r\nab\r\n", ProtocolError::MissingCrlf),
    ];
    for (bytes, expected) in cases {
        assert_eq!(
            parse(bytes),
            Err(*expected),
            "{:?}",
            String::from_utf8_lossy(bytes)
        );
    }
}

#[test]
fn lengths_at_their_limits_wait_for_bytes_without_allocating() {
    // Announced but not sent: nothing is allocated for them, so these cost
    // nothing however large they claim to be.
    assert_eq!(parse(b"$536870912\r\n"), Ok(None));
    assert_eq!(parse(b"$536870912\r\nabc"), Ok(None));
    assert_eq!(parse(b"*16777216\r\n"), Ok(None));
    assert_eq!(parse(b"*16777216\r\n:1\r\n:2\r\n"), Ok(None));
}

#[test]
fn nesting_is_bounded() {
    let open = b"*1\r\n".repeat(MAX_DEPTH);
    let mut deepest = Value::Int(1);
    for _ in 0..MAX_DEPTH {
        deepest = array(vec![deepest]);
    }
    let ok = [open.as_slice(), b":1\r\n"].concat();
    assert_eq!(parse(&ok), Ok(Some((deepest, ok.len()))));

    // One level more is refused as soon as its header arrives, before any
    // element does; nil and empty arrays at the limit are arrays too.
    let too_deep = [open.as_slice(), b"*1\r\n"].concat();
    assert_eq!(parse(&too_deep), Err(ProtocolError::TooDeep));
    let empty_too_deep = [open.as_slice(), b"*0\r\n"].concat();
    assert_eq!(parse(&empty_too_deep), Err(ProtocolError::TooDeep));
    // `*-1` is a nil, not an array, so it nests nothing.
    let nil_at_limit = [open.as_slice(), b"*-1\r\n"].concat();
    assert!(matches!(parse(&nil_at_limit), Ok(Some(_))));
}

#[test]
fn status_lines_are_bounded() {
    let longest = [b"+".as_slice(), &b"a".repeat(MAX_LINE), b"\r\n"].concat();
    let status = Value::Status("a".repeat(MAX_LINE).into());
    assert_eq!(parse(&longest), Ok(Some((status, longest.len()))));
    // The CR of the CRLF has arrived, the LF not yet.
    assert_eq!(parse(&longest[..longest.len() - 1]), Ok(None));

    let too_long = [b"-".as_slice(), &b"a".repeat(MAX_LINE + 1)].concat();
    assert_eq!(parse(&too_long), Err(ProtocolError::LineTooLong));
    let too_long_then_cr = [too_long.as_slice(), b"\r"].concat();
    assert_eq!(parse(&too_long_then_cr), Err(ProtocolError::LineTooLong));
}

#[test]
fn errors_say_what_was_wrong() {
    let cases: &[(ProtocolError, &str)] = &[
        (ProtocolError::BadType(b'?'), "0x3f"),
        (ProtocolError::NotANumber, "not a decimal number"),
        (ProtocolError::NegativeLength(-2), "-2"),
        (ProtocolError::BulkTooLong(600_000_000), "600000000 bytes"),
        (ProtocolError::ArrayTooLong(20_000_000), "20000000 elements"),
        (ProtocolError::TooDeep, "nested more than 8"),
        (ProtocolError::LineTooLong, "65536"),
        (ProtocolError::MissingCrlf, "not followed by CRLF"),
    ];
    for (error, needle) in cases {
        let text = error.to_string();
        assert!(text.contains(needle), "{text:?} lacks {needle:?}");
    }
}

#[test]
fn writes_commands_as_arrays_of_bulk_strings() {
    let cases: &[(&[&[u8]], &[u8])] = &[
        (&[], b"*0\r\n"),
        (&[b"PING"], b"*1\r\n$4\r\nPING\r\n"),
        (
            &[b"SET", b"k", b""],
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n",
        ),
        // Binary-safe: CRLF and non-UTF-8 bytes in an argument go through as they are.
        (
            &[b"PUBLISH", b"a\r\nb", b"\xff"],
            b"*3\r\n$7\r\nPUBLISH\r\n$4\r\na\r\nb\r\n$1\r\n\xff\r\n",
        ),
    ];
    for (args, expected) in cases {
        let mut out = b"previous".to_vec();
        write_command(&mut out, args);
        assert_eq!(&out[..8], b"previous", "appends, never clears");
        assert_eq!(&out[8..], *expected);
    }
    let long_arg = vec![b'x'; 1234];
    let mut out = Vec::new();
    write_command(&mut out, &[&long_arg]);
    assert_eq!(&out[..12], b"*1\r\n$1234\r\nx");
    assert_eq!(
        parse(&out),
        Ok(Some((array(vec![bulk(&long_arg)]), out.len())))
    );
}

/// The encoder the parser is checked against; halley itself only ever sends
/// commands (`write_command`), never arbitrary values.
fn encode(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Status(text) => {
            out.push(b'+');
            out.extend_from_slice(text.as_bytes());
        }
        Value::Error(text) => {
            out.push(b'-');
            out.extend_from_slice(text.as_bytes());
        }
        Value::Int(n) => out.extend_from_slice(format!(":{n}").as_bytes()),
        Value::Bulk(bytes) => {
            out.extend_from_slice(format!("${}\r\n", bytes.len()).as_bytes());
            out.extend_from_slice(bytes);
        }
        Value::Nil => out.extend_from_slice(b"$-1"),
        Value::Array(items) => {
            out.extend_from_slice(format!("*{}\r\n", items.len()).as_bytes());
            for item in items {
                encode(item, out);
            }
            return;
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// Text a status or error line can carry: anything but CR and LF.
fn line_text() -> impl Strategy<Value = Box<str>> {
    vec(any::<char>(), 0..12).prop_map(|chars| {
        chars
            .into_iter()
            .filter(|c| *c != '\r' && *c != '\n')
            .collect::<String>()
            .into()
    })
}

fn any_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        line_text().prop_map(Value::Status),
        line_text().prop_map(Value::Error),
        any::<i64>().prop_map(Value::Int),
        // Bulk payloads drawn from bytes that look like RESP, to tempt a
        // parser that reads by line instead of by length.
        vec(
            prop_oneof![
                Just(b'\r'),
                Just(b'\n'),
                Just(b'*'),
                Just(b'$'),
                any::<u8>()
            ],
            0..16
        )
        .prop_map(Value::Bulk),
        Just(Value::Nil),
    ];
    leaf.prop_recursive(4, 64, 6, |inner| vec(inner, 0..6).prop_map(Value::Array))
}

/// Byte soup made of RESP's own tokens, which reaches deeper into the parser
/// than uniformly random bytes do.
fn resp_like_bytes() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        Just(&b"*"[..]),
        Just(&b"$"[..]),
        Just(&b"+"[..]),
        Just(&b"-"[..]),
        Just(&b":"[..]),
        Just(&b"\r\n"[..]),
        Just(&b"\r"[..]),
        Just(&b"-1"[..]),
        Just(&b"0"[..]),
        Just(&b"1"[..]),
        Just(&b"3"[..]),
        Just(&b"99999999999"[..]),
        Just(&b"abc"[..]),
    ];
    vec(token, 0..40).prop_map(|tokens| tokens.concat())
}

/// What must hold of any parse of any bytes: a whole value is a non-empty
/// prefix, and parsing exactly that prefix gives the same value.
fn check_any_parse(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(Some((value, used))) = parse(bytes) {
        prop_assert!(used > 0 && used <= bytes.len());
        prop_assert_eq!(parse(&bytes[..used]), Ok(Some((value, used))));
    }
    Ok(())
}

proptest! {
    #[test]
    fn encoded_values_need_every_byte_and_round_trip(value in any_value(), next in any_value()) {
        let mut bytes = Vec::new();
        encode(&value, &mut bytes);
        for cut in 0..bytes.len() {
            prop_assert_eq!(parse(&bytes[..cut]), Ok(None), "cut at {}", cut);
        }
        prop_assert_eq!(parse(&bytes), Ok(Some((value.clone(), bytes.len()))));
        // Followed by another value, it still ends where it ends.
        let end = bytes.len();
        encode(&next, &mut bytes);
        prop_assert_eq!(parse(&bytes), Ok(Some((value, end))));
        prop_assert_eq!(parse(&bytes[end..]), Ok(Some((next, bytes.len() - end))));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..64)) {
        check_any_parse(&bytes)?;
    }

    #[test]
    fn resp_like_bytes_never_panic(bytes in resp_like_bytes()) {
        check_any_parse(&bytes)?;
    }
}

//! Property tests of the HTTP parsers that see network bytes: request heads
//! (split anywhere, pipelined, mutated), chunked bodies and percent-decoding.
//! Each is checked against a plain model or an invariant rather than a table.
//!
//! The default case count keeps the whole set to seconds in CI; run long with
//! `PROPTEST_CASES=100000 cargo test --release --lib prop` (docs/testing.md).

use proptest::collection::vec;
use proptest::prelude::*;

use super::chunked::{self, Decoder};
use super::query;
use super::request::{self, BodyKind, Parsed, RequestHead, MAX_HEAD_BYTES};

// ---------------------------------------------------------------------------
// Request heads, fed the way a connection feeds them.

/// What a connection makes of its input, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seen {
    Head(RequestHead),
    Body(Vec<u8>),
    /// The answer to framing that cannot be trusted; the connection ends.
    Refused(u16, String),
}

/// Where the reader stands between two arrivals of bytes.
enum Reading {
    Head,
    Length { left: usize, body: Vec<u8> },
    Chunked { decoder: Decoder, body: Vec<u8> },
    Closed,
}

/// The framing steps of `server::conn::input` (`step_head`, `step_body`) as
/// pure code: bytes arrive in `pieces`, each arrival is appended to the read
/// buffer, and heads and bodies are taken off its front while they are
/// whole. A request without keep-alive, or refused, ends the reading. What
/// waits in the buffer at the end is part of the result while the reading
/// goes on, so two feeds agree only if they also agree on what is pending;
/// once it has ended the rest is never read, however much of it there is.
fn feed(pieces: &[&[u8]], max_body: usize) -> (Vec<Seen>, usize) {
    let mut seen = Vec::new();
    let mut inbuf: Vec<u8> = Vec::new();
    let mut reading = Reading::Head;
    for piece in pieces {
        inbuf.extend_from_slice(piece);
        loop {
            reading = match reading {
                Reading::Closed => break,
                Reading::Head => match request::parse(&inbuf) {
                    Ok(Parsed::Partial) => {
                        reading = Reading::Head;
                        break;
                    }
                    Ok(Parsed::Complete { head, len }) => {
                        inbuf.drain(..len);
                        let next = match head.body {
                            BodyKind::None if head.keep_alive => Reading::Head,
                            BodyKind::None => Reading::Closed,
                            BodyKind::Length(n) => Reading::Length {
                                left: n as usize,
                                body: Vec::new(),
                            },
                            BodyKind::Chunked => Reading::Chunked {
                                decoder: Decoder::default(),
                                body: Vec::new(),
                            },
                        };
                        seen.push(Seen::Head(head));
                        next
                    }
                    Err(reject) => {
                        seen.push(Seen::Refused(reject.status, reject.message));
                        Reading::Closed
                    }
                },
                Reading::Length { left, mut body } => {
                    let take = left.min(inbuf.len());
                    body.extend(inbuf.drain(..take));
                    if take < left {
                        reading = Reading::Length {
                            left: left - take,
                            body,
                        };
                        break;
                    }
                    seen.push(Seen::Body(body));
                    after_body(&seen)
                }
                Reading::Chunked {
                    mut decoder,
                    mut body,
                } => match decoder.decode(&inbuf, &mut body, max_body) {
                    Ok(used) => {
                        inbuf.drain(..used);
                        if !decoder.is_done() {
                            reading = Reading::Chunked { decoder, body };
                            break;
                        }
                        seen.push(Seen::Body(body));
                        after_body(&seen)
                    }
                    Err(chunked::Error::TooLarge) => {
                        seen.push(Seen::Refused(413, "too large".into()));
                        Reading::Closed
                    }
                    Err(chunked::Error::Malformed(what)) => {
                        seen.push(Seen::Refused(400, what.into()));
                        Reading::Closed
                    }
                },
            };
        }
    }
    let pending = match reading {
        Reading::Closed => 0,
        _ => inbuf.len(),
    };
    (seen, pending)
}

/// After a body: the next head, unless the request's head said to close.
fn after_body(seen: &[Seen]) -> Reading {
    let keep_alive = seen.iter().rev().find_map(|s| match s {
        Seen::Head(head) => Some(head.keep_alive),
        _ => None,
    });
    match keep_alive {
        Some(true) => Reading::Head,
        _ => Reading::Closed,
    }
}

/// Cuts `bytes` at the given positions (taken modulo its length).
fn split_at<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    cuts.sort_unstable();
    let mut pieces = Vec::new();
    let mut start = 0;
    for cut in cuts.into_iter().chain([bytes.len()]) {
        pieces.push(&bytes[start..cut]);
        start = cut;
    }
    pieces
}

fn line_end() -> impl Strategy<Value = &'static str> {
    prop_oneof![4 => Just("\r\n"), 1 => Just("\n")]
}

fn method() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just("GET"),
        Just("POST"),
        Just("HEAD"),
        Just("DELETE"),
        Just("OPTIONS"),
        Just("PUT"),
        Just("get"),
        Just("G T"),
    ]
}

/// Targets from the bytes halley's routes read, and some no route should see.
fn target() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("/sub/"),
        Just("/pub/"),
        Just("/bayeux"),
        Just("chat"),
        Just("?"),
        Just("&"),
        Just("="),
        Just("transport=sse"),
        Just("since=earliest"),
        Just("%2F"),
        Just("%zz"),
        Just("+"),
        Just("é"),
        Just(" "),
        Just("\u{7f}"),
    ];
    vec(piece, 0..6).prop_map(|p| format!("/{}", p.concat()))
}

fn version() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        6 => Just("HTTP/1.1"),
        2 => Just("HTTP/1.0"),
        1 => Just("HTTP/2.0"),
        1 => Just("HTTP/1.1 "),
        1 => Just("HTTX/1.1"),
    ]
}

/// Header lines, mostly ones that decide framing, with values that are
/// valid, conflicting or hostile.
fn header() -> impl Strategy<Value = String> {
    let value_bytes = vec(
        prop_oneof![
            Just('a'),
            Just(' '),
            Just('\t'),
            Just(','),
            Just('é'),
            Just('\0'),
            Just('\u{1}')
        ],
        0..6,
    )
    .prop_map(|c| c.into_iter().collect::<String>());
    prop_oneof![
        4 => Just("Host: h".to_owned()),
        2 => prop_oneof![
            Just("0"), Just("3"), Just("12"), Just(" 5 "), Just("-1"), Just("1,1"),
            Just("+4"), Just("99999999999999999999"), Just("0x10"), Just(""),
        ]
        .prop_map(|n| format!("Content-Length: {n}")),
        2 => prop_oneof![Just("chunked"), Just("Chunked"), Just("gzip"), Just("chunked, gzip")]
            .prop_map(|te| format!("Transfer-Encoding: {te}")),
        1 => prop_oneof![Just("close"), Just("keep-alive"), Just("Upgrade, Close"), Just("")]
            .prop_map(|c| format!("Connection: {c}")),
        1 => prop_oneof![Just("100-continue"), Just("nothing")]
            .prop_map(|e| format!("Expect: {e}")),
        1 => Just("Accept: text/event-stream".to_owned()),
        1 => Just("Last-Event-ID: 00000000000e-3".to_owned()),
        1 => Just("Authorization: Bearer t".to_owned()),
        1 => Just("Content-Type: application/json".to_owned()),
        1 => value_bytes.prop_map(|v| format!("X-Junk: {v}")),
        1 => Just("NoColonHere".to_owned()),
        1 => Just(" folded".to_owned()),
        1 => Just("Bad Name: x".to_owned()),
    ]
}

/// A body as it might follow a head: nothing, raw bytes, or chunked framing.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        2 => Just(Vec::new()),
        1 => vec(any::<u8>(), 0..16),
        1 => (vec(any::<u8>(), 0..24), vec(0usize..8, 0..4))
            .prop_map(|(data, sizes)| encode_chunked(&data, &sizes, &[], &[])),
    ]
}

/// One request: request line, headers, blank line, maybe a body.
fn request() -> impl Strategy<Value = Vec<u8>> {
    (
        method(),
        target(),
        version(),
        vec(header(), 0..6),
        line_end(),
        body(),
    )
        .prop_map(|(method, target, version, headers, eol, body)| {
            let mut text = format!("{method} {target} {version}{eol}");
            for h in headers {
                text.push_str(&h);
                text.push_str(eol);
            }
            text.push_str(eol);
            let mut bytes = text.into_bytes();
            bytes.extend(body);
            bytes
        })
}

/// A small edit of a byte string: a flipped bit, an inserted or deleted byte.
#[derive(Clone, Debug)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, u8),
    Delete(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip(at, bit)),
        (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Mutation::Insert(at, b)),
        any::<usize>().prop_map(Mutation::Delete),
    ]
}

fn mutate(bytes: &mut Vec<u8>, mutations: &[Mutation]) {
    for m in mutations {
        match *m {
            Mutation::Flip(at, bit) if !bytes.is_empty() => {
                let at = at % bytes.len();
                bytes[at] ^= 1 << bit;
            }
            Mutation::Insert(at, b) => bytes.insert(at % (bytes.len() + 1), b),
            Mutation::Delete(at) if !bytes.is_empty() => {
                bytes.remove(at % bytes.len());
            }
            _ => {}
        }
    }
}

/// Pipelined requests, possibly mutated.
fn requests() -> impl Strategy<Value = Vec<u8>> {
    (vec(request(), 1..4), vec(mutation(), 0..3)).prop_map(|(requests, mutations)| {
        let mut bytes = requests.concat();
        mutate(&mut bytes, &mutations);
        bytes
    })
}

/// Checks what must hold of one parse of any bytes: a whole head is a
/// non-empty prefix within the limit, and the bytes after it change nothing.
fn check_head_parse(bytes: &[u8]) -> Result<(), TestCaseError> {
    let parsed = request::parse(bytes);
    match &parsed {
        Ok(Parsed::Complete { len, .. }) => {
            prop_assert!(*len > 0 && *len <= bytes.len() && *len <= MAX_HEAD_BYTES);
            prop_assert_eq!(&request::parse(&bytes[..*len]), &parsed);
        }
        Ok(Parsed::Partial) => prop_assert!(bytes.len() < MAX_HEAD_BYTES),
        Err(reject) => {
            prop_assert!([400, 417, 431, 501].contains(&reject.status), "{reject:?}");
            prop_assert!(!reject.message.is_empty());
        }
    }
    // A head that is whole, or refused, stays so however many bytes follow:
    // this is what makes the result independent of how the bytes arrive.
    if !matches!(parsed, Ok(Parsed::Partial)) {
        let mut longer = bytes.to_vec();
        longer.extend_from_slice(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
        prop_assert_eq!(request::parse(&longer), parsed);
    }
    Ok(())
}

proptest! {
    #[test]
    fn request_bytes_split_anywhere_read_the_same(
        bytes in requests(),
        cuts in vec(any::<usize>(), 0..6),
    ) {
        let whole = feed(&[&bytes], 64);
        let pieces = split_at(&bytes, &cuts);
        prop_assert_eq!(feed(&pieces, 64), whole.clone(), "pieces {:?}", pieces);
        // One byte at a time, the slowest a client can be.
        let bytewise: Vec<&[u8]> = bytes.chunks(1).collect();
        prop_assert_eq!(feed(&bytewise, 64), whole);
    }

    #[test]
    fn request_heads_hold_their_invariants(bytes in requests()) {
        check_head_parse(&bytes)?;
    }

    #[test]
    fn arbitrary_bytes_never_panic_a_head_parse(bytes in vec(any::<u8>(), 0..128)) {
        check_head_parse(&bytes)?;
        let mut with_start = b"GET / HTTP/1.1\r\n".to_vec();
        with_start.extend(&bytes);
        check_head_parse(&with_start)?;
    }

    #[test]
    fn every_prefix_of_a_whole_head_waits_for_more(bytes in request()) {
        if let Ok(Parsed::Complete { len, .. }) = request::parse(&bytes) {
            for end in 0..len {
                prop_assert_eq!(request::parse(&bytes[..end]), Ok(Parsed::Partial), "prefix {}", end);
            }
        }
    }

    #[test]
    fn a_head_past_the_limit_is_refused_however_it_arrives(
        pad in (MAX_HEAD_BYTES - 64)..(MAX_HEAD_BYTES + 64),
        cuts in vec(any::<usize>(), 0..4),
    ) {
        let head = format!("GET / HTTP/1.1\r\nHost: h\r\nX: {}\r\n\r\n", "a".repeat(pad));
        let (seen, _) = feed(&split_at(head.as_bytes(), &cuts), 64);
        match head.len() <= MAX_HEAD_BYTES {
            true => prop_assert!(matches!(seen[..], [Seen::Head(_)]), "{seen:?}"),
            false => prop_assert!(matches!(seen[..], [Seen::Refused(431, _)]), "{seen:?}"),
        }
    }
}

// ---------------------------------------------------------------------------
// Chunked bodies.

/// Chunked framing of `data`, cut into chunks of the given sizes (the rest
/// in one), each size line carrying the next extension, then the trailers.
fn encode_chunked(
    data: &[u8],
    sizes: &[usize],
    extensions: &[String],
    trailers: &[String],
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = data;
    let mut sizes = sizes.iter().copied().filter(|&n| n > 0);
    let mut extensions = extensions.iter().cycle();
    while !rest.is_empty() {
        let n = sizes.next().unwrap_or(rest.len()).min(rest.len());
        let ext = extensions.next().map_or("", String::as_str);
        // Upper or lower case hex, sometimes with leading zeros.
        let size = match n % 3 {
            0 => format!("{n:x}"),
            1 => format!("{n:X}"),
            _ => format!("00{n:x}"),
        };
        out.extend_from_slice(format!("{size}{ext}\r\n").as_bytes());
        out.extend_from_slice(&rest[..n]);
        out.extend_from_slice(b"\r\n");
        rest = &rest[n..];
    }
    out.extend_from_slice(b"0\r\n");
    for t in trailers {
        out.extend_from_slice(t.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Extension text: `;` then anything but CR and LF.
fn extension() -> impl Strategy<Value = String> {
    (
        prop_oneof![Just(";"), Just(" ;"), Just("\t;")],
        "[^\r\n]{0,8}",
    )
        .prop_map(|(start, text)| format!("{start}{text}"))
}

/// A trailer line: not empty, no CR or LF.
fn trailer() -> impl Strategy<Value = String> {
    "[^\r\n]{1,12}"
}

/// Feeds `pieces` to one decoder: the body, what it consumed, and whether it
/// ended, or the error.
fn decode_pieces(pieces: &[&[u8]], max: usize) -> Result<(Vec<u8>, usize, bool), chunked::Error> {
    let mut decoder = Decoder::default();
    let mut out = Vec::new();
    let mut used = 0;
    for piece in pieces {
        let n = decoder.decode(piece, &mut out, max)?;
        assert!(n <= piece.len(), "consumed more than it was given");
        assert!(out.len() <= max, "decoded past the limit");
        used += n;
        if n < piece.len() {
            // The rest belongs to the next request; so would every later piece.
            assert!(decoder.is_done(), "stopped early without being done");
            break;
        }
    }
    Ok((out, used, decoder.is_done()))
}

/// Bytes made of chunked framing's own tokens.
fn chunked_like_bytes() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        Just(&b"\r\n"[..]),
        Just(&b"\r"[..]),
        Just(&b"\n"[..]),
        Just(&b"0"[..]),
        Just(&b"1"[..]),
        Just(&b"a"[..]),
        Just(&b"F"[..]),
        Just(&b"fffffffffffffff"[..]),
        Just(&b";"[..]),
        Just(&b" "[..]),
        Just(&b"x"[..]),
        Just(&b"T: 1"[..]),
    ];
    vec(token, 0..24).prop_map(|tokens| tokens.concat())
}

proptest! {
    #[test]
    fn chunked_bodies_decode_to_the_original_however_split(
        data in vec(any::<u8>(), 0..200),
        sizes in vec(0usize..64, 0..8),
        extensions in vec(extension(), 0..3),
        trailers in vec(trailer(), 0..3),
        cuts in vec(any::<usize>(), 0..6),
        next in vec(any::<u8>(), 0..8),
    ) {
        let framed = encode_chunked(&data, &sizes, &extensions, &trailers);
        let mut bytes = framed.clone();
        bytes.extend(&next);
        let pieces = split_at(&bytes, &cuts);
        prop_assert_eq!(
            decode_pieces(&pieces, data.len()),
            Ok((data.clone(), framed.len(), true))
        );
        // One byte short of the body is refused, however the bytes come.
        if !data.is_empty() {
            prop_assert_eq!(decode_pieces(&pieces, data.len() - 1), Err(chunked::Error::TooLarge));
        }
        // Every strict prefix of the framing waits for more.
        for end in 0..framed.len() {
            let (_, used, done) = decode_pieces(&[&framed[..end]], usize::MAX).unwrap();
            prop_assert!(!done && used == end, "prefix {}", end);
        }
    }

    #[test]
    fn chunked_garbage_never_panics_and_splits_agree(
        bytes in prop_oneof![chunked_like_bytes(), vec(any::<u8>(), 0..64)],
        cuts in vec(any::<usize>(), 0..4),
        max in 0usize..32,
    ) {
        let whole = decode_pieces(&[&bytes], max);
        let split = decode_pieces(&split_at(&bytes, &cuts), max);
        match (&whole, &split) {
            // A failure may come after some body bytes either way; what
            // matters is that it is the same failure.
            (Err(a), Err(b)) => prop_assert_eq!(a, b),
            _ => prop_assert_eq!(whole, split),
        }
    }
}

// ---------------------------------------------------------------------------
// Percent-decoding and query parameters.

/// Percent-encodes `s`: every byte outside the unreserved set, and some
/// inside it, as `%XX` in either case; spaces as `+` in form style.
fn percent_encode(s: &str, choices: &[u8], plus_is_space: bool) -> String {
    let mut out = String::new();
    for (i, b) in s.bytes().enumerate() {
        let choice = choices.get(i % choices.len().max(1)).copied().unwrap_or(0);
        let unreserved = b.is_ascii_alphanumeric() || b"-._~".contains(&b);
        if b == b' ' && plus_is_space && choice % 2 == 0 {
            out.push('+');
        } else if unreserved && choice % 3 != 0 {
            out.push(b as char);
        } else if choice % 2 == 0 {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push_str(&format!("%{b:02x}"));
        }
    }
    out
}

proptest! {
    #[test]
    fn percent_encoding_round_trips(s in any::<String>(), choices in vec(any::<u8>(), 1..8), plus in any::<bool>()) {
        let encoded = percent_encode(&s, &choices, plus);
        prop_assert_eq!(query::decode(&encoded, plus), Ok(s));
    }

    #[test]
    fn arbitrary_text_decodes_or_fails_without_a_panic(s in "[%+a-fA-F0-9zé ]{0,16}|.{0,16}", plus in any::<bool>()) {
        match query::decode(&s, plus) {
            // What decodes was made only of what the escapes and `+` allow:
            // nothing is longer than its encoding.
            Ok(decoded) => prop_assert!(decoded.len() <= s.len()),
            Err(why) => prop_assert!(s.contains('%'), "{why} for {s:?}"),
        }
        let _ = query::param(&s, "a");
    }

    #[test]
    fn the_first_param_of_a_key_is_found(
        pairs in vec(("[a-c]{1,2}", any::<String>()), 0..6),
        choices in vec(any::<u8>(), 1..8),
        key in "[a-c]{1,2}",
    ) {
        let query_string = pairs
            .iter()
            .map(|(k, v)| format!("{}={}", percent_encode(k, &choices, true), percent_encode(v, &choices, true)))
            .collect::<Vec<_>>()
            .join("&");
        let want = pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone());
        prop_assert_eq!(query::param(&query_string, &key), Ok(want));
        let target = format!("/sub/c?{query_string}");
        prop_assert_eq!(query::split_target(&target), ("/sub/c", query_string.as_str()));
    }
}

//! The frame decoder's cases, one table per concern, and the properties
//! that hold for any input: any split decodes the same, every truncated
//! prefix waits, and no bytes make it panic.

use proptest::collection::vec;
use proptest::prelude::*;

use super::*;

const MASK: [u8; 4] = [0x37, 0xFA, 0x21, 0x3D];
const CAP: usize = 1 << 17;

const FIN_TEXT: u8 = 0x81;
const FIN_BINARY: u8 = 0x82;
const TEXT: u8 = 0x01;
const CONT: u8 = 0x00;
const FIN_CONT: u8 = 0x80;
const CLOSE: u8 = 0x88;
const PING: u8 = 0x89;
const PONG: u8 = 0x8A;

fn frame_of(b0: u8, payload: &[u8]) -> Vec<u8> {
    client_frame(b0, payload, MASK)
}

/// The payload of a whole message; a control frame leaves a message in
/// progress where it is.
/// Each event of a decoding, with the payload of each message.
type Events = Vec<(Event, Vec<u8>)>;

fn take_message(event: Event, out: &mut Vec<u8>) -> Vec<u8> {
    match event {
        Event::Message(_) => std::mem::take(out),
        _ => Vec::new(),
    }
}

/// Every event in `input` and the payload of each message, or the failure.
fn decode_all(input: &[u8]) -> Result<Events, Fail> {
    let mut decoder = Decoder::default();
    let (mut events, mut out, mut at) = (Vec::new(), Vec::new(), 0);
    loop {
        let (used, event) = decoder.decode(&input[at..], &mut out, CAP)?;
        at += used;
        match event {
            Some(e) => events.push((e, take_message(e, &mut out))),
            None => {
                assert_eq!(at, input.len(), "stopped with input left");
                return Ok(events);
            }
        }
    }
}

/// Feeds `input` in the pieces `cuts` makes, as reads would deliver it:
/// unconsumed bytes stay at the front of the buffer, as in a connection's.
fn decode_split(input: &[u8], cuts: &[usize]) -> Result<Events, Fail> {
    let mut decoder = Decoder::default();
    let (mut events, mut out, mut buf) = (Vec::new(), Vec::new(), Vec::new());
    let mut bounds: Vec<usize> = cuts.iter().map(|&c| c.min(input.len())).collect();
    bounds.sort_unstable();
    bounds.push(input.len());
    let mut from = 0;
    for to in bounds {
        buf.extend_from_slice(&input[from..to]);
        from = to;
        loop {
            let (used, event) = decoder.decode(&buf, &mut out, CAP)?;
            buf.drain(..used);
            match event {
                Some(e) => events.push((e, take_message(e, &mut out))),
                None => break,
            }
        }
    }
    Ok(events)
}

fn message(kind: MessageKind, payload: &[u8]) -> (Event, Vec<u8>) {
    (Event::Message(kind), payload.to_vec())
}

#[test]
fn decodes_whole_frames() {
    let text = MessageKind::Text;
    let binary = MessageKind::Binary;
    let long = vec![b'x'; 300];
    let longer = vec![7u8; 70_000];
    let cases: Vec<(Vec<u8>, Events)> = vec![
        (frame_of(FIN_TEXT, b"Hello"), vec![message(text, b"Hello")]),
        (frame_of(FIN_TEXT, b""), vec![message(text, b"")]),
        (
            frame_of(FIN_BINARY, &[0, 255]),
            vec![message(binary, &[0, 255])],
        ),
        (frame_of(FIN_TEXT, &long), vec![message(text, &long)]),
        (
            frame_of(FIN_BINARY, &longer),
            vec![message(binary, &longer)],
        ),
        (
            frame_of(PING, b"hi"),
            vec![(Event::Ping(Control::new(b"hi")), vec![])],
        ),
        (frame_of(PONG, b"x"), vec![(Event::Pong, vec![])]),
        (frame_of(CLOSE, b""), vec![(Event::Close(None), vec![])]),
        (
            frame_of(CLOSE, b"\x03\xE8bye"),
            vec![(Event::Close(Some(1000)), vec![])],
        ),
        (
            frame_of(CLOSE, b"\x0F\xA0"),
            vec![(Event::Close(Some(4000)), vec![])],
        ),
        // Fragments, with a ping between them, and a code point split
        // across the fragment boundary.
        (
            [
                frame_of(TEXT, b"caf\xC3"),
                frame_of(PING, b""),
                frame_of(CONT, b""),
                frame_of(FIN_CONT, b"\xA9!"),
            ]
            .concat(),
            vec![
                (Event::Ping(Control::new(b"")), vec![]),
                message(text, "café!".as_bytes()),
            ],
        ),
        (
            [frame_of(0x02, b"ab"), frame_of(FIN_CONT, b"cd")].concat(),
            vec![message(binary, b"abcd")],
        ),
    ];
    for (input, want) in cases {
        assert_eq!(
            decode_all(&input),
            Ok(want),
            "{:x?}",
            &input[..input.len().min(20)]
        );
    }
}

#[test]
fn refuses_what_the_protocol_forbids() {
    let mut unmasked = frame_of(FIN_TEXT, b"hi");
    unmasked[1] &= 0x7F;
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("unmasked", unmasked, 1002),
        ("rsv1", frame_of(0xC1, b"x"), 1002),
        ("rsv2", frame_of(0xA1, b"x"), 1002),
        ("rsv3", frame_of(0x91, b"x"), 1002),
        ("opcode 3", frame_of(0x83, b""), 1002),
        ("opcode 0xB", frame_of(0x8B, b""), 1002),
        ("fragmented ping", frame_of(0x09, b""), 1002),
        ("long ping", frame_of(PING, &[0; 126]), 1002),
        ("stray continuation", frame_of(FIN_CONT, b"x"), 1002),
        (
            "text inside text",
            [frame_of(TEXT, b"a"), frame_of(FIN_TEXT, b"b")].concat(),
            1002,
        ),
        ("close of one byte", frame_of(CLOSE, b"\x03"), 1002),
        ("close code 1005", frame_of(CLOSE, b"\x03\xED"), 1002),
        ("close code 999", frame_of(CLOSE, b"\x03\xE7"), 1002),
        (
            "close reason not UTF-8",
            frame_of(CLOSE, b"\x03\xE8\xFF"),
            1007,
        ),
        ("text not UTF-8", frame_of(FIN_TEXT, b"a\xFFb"), 1007),
        (
            "text ends in a code point",
            frame_of(FIN_TEXT, b"\xC3"),
            1007,
        ),
        (
            "over the cap",
            frame_of(FIN_BINARY, &vec![0; CAP + 1]),
            1009,
        ),
        (
            "fragments over the cap",
            [
                frame_of(0x02, &vec![0; CAP / 2 + 1]),
                frame_of(FIN_CONT, &vec![0; CAP / 2]),
            ]
            .concat(),
            1009,
        ),
        (
            "length with the top bit",
            [0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4].to_vec(),
            1002,
        ),
    ];
    for (what, input, code) in cases {
        let got = decode_all(&input).map(|_| ()).unwrap_err();
        assert_eq!(got.code, code, "{what}: {got:?}");
    }
}

#[test]
fn bad_utf8_fails_before_the_message_ends() {
    // The first fragment is bad; the message's end has not arrived.
    let input = frame_of(TEXT, b"ok\xED\xA0\x80");
    assert_eq!(decode_all(&input).unwrap_err().code, 1007);
    // Within one frame, as soon as the bad byte is in.
    let whole = frame_of(FIN_TEXT, b"abc\xFFdefghij");
    let mut decoder = Decoder::default();
    let mut out = Vec::new();
    let head = 6; // two bytes, then the mask
    let got = decoder.decode(&whole[..head + 4], &mut out, CAP);
    assert_eq!(got.unwrap_err().code, 1007);
}

#[test]
fn the_cap_is_checked_before_any_payload_is_read() {
    let input = frame_of(FIN_BINARY, &vec![0; CAP + 1]);
    let mut out = Vec::new();
    let got = Decoder::default().decode(&input[..14], &mut out, CAP);
    assert_eq!(got.unwrap_err().code, 1009);
    assert!(out.capacity() <= CAP, "nothing reserved past the cap");
}

#[test]
fn every_truncated_prefix_waits_for_more() {
    let frames = [
        frame_of(FIN_TEXT, "héllo".as_bytes()),
        frame_of(FIN_BINARY, &[1; 200]),
        frame_of(FIN_BINARY, &[2; 70_000]),
        frame_of(PING, b"ping"),
        frame_of(CLOSE, b"\x03\xE8done"),
    ];
    for frame in frames {
        for end in 0..frame.len() {
            let mut decoder = Decoder::default();
            let mut out = Vec::new();
            let (_, event) = decoder.decode(&frame[..end], &mut out, CAP).unwrap();
            assert_eq!(event, None, "prefix {end} of {}", frame.len());
        }
    }
}

#[test]
fn encodes_every_length_form() {
    let cases = [(0, 2), (125, 2), (126, 4), (0xFFFF, 4), (0x10000, 10)];
    for (len, header) in cases {
        let f = frame(Opcode::Binary, &vec![9; len]);
        assert_eq!(f.len(), header + len);
        assert_eq!(f[0], 0x82);
        assert_eq!(f[1] & 0x80, 0, "server frames are unmasked");
        // The client form of the same frame decodes to the same payload.
        let back = decode_all(&frame_of(FIN_BINARY, &f[header..])).unwrap();
        assert_eq!(back, vec![message(MessageKind::Binary, &vec![9; len])]);
    }
    assert_eq!(frame(Opcode::Text, b"hi"), b"\x81\x02hi");
}

/// A valid client frame sequence: messages of one or more fragments, with
/// control frames among them.
fn frames() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        (vec(any::<u8>(), 0..300), 1..4usize).prop_map(|(data, parts)| {
            let mut out = Vec::new();
            let step = data.len() / parts + 1;
            let chunks: Vec<&[u8]> = data.chunks(step).collect();
            let n = chunks.len().max(1);
            for i in 0..n {
                let chunk = chunks.get(i).copied().unwrap_or(&[]);
                let op = if i == 0 { 0x02 } else { 0x00 };
                let fin = if i + 1 == n { 0x80 } else { 0 };
                out.extend(frame_of(op | fin, chunk));
                if i + 1 < n {
                    out.extend(frame_of(PING, &[i as u8]));
                }
            }
            out
        }),
        "\\PC{0,40}".prop_map(|s| frame_of(FIN_TEXT, s.as_bytes())),
        vec(any::<u8>(), 0..125).prop_map(|p| frame_of(PING, &p)),
        Just(frame_of(PONG, b"")),
    ];
    vec(piece, 1..6).prop_map(|pieces| pieces.concat())
}

proptest! {
    #[test]
    fn any_split_decodes_the_same(input in frames(), cuts in vec(any::<usize>(), 0..8)) {
        let whole = decode_all(&input);
        prop_assert!(whole.is_ok());
        let cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
        prop_assert_eq!(decode_split(&input, &cuts), whole);
    }

    #[test]
    fn arbitrary_bytes_never_panic(input in vec(any::<u8>(), 0..400), cut in any::<usize>()) {
        let cut = cut % (input.len() + 1);
        let _ = decode_split(&input, &[cut]);
    }
}

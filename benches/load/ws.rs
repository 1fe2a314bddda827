//! The client side of WebSocket (RFC 6455) a subscriber needs: the upgrade request and its
//! `Sec-WebSocket-Accept` check, an incremental reader of the server's unmasked frames, the masked
//! frames a subscriber may send back (pong, close), and finding the benchmark's `SEQ SENT_NS` in a
//! message, whether the server sends it raw (Nchan, the floor) or inside halley's JSON object.
//! Pure functions over byte slices, so every truncation point is testable; sockets are in `sub`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use crate::sse::{parse_payload, Delivery};

/// A frame claiming more than this is garbage, not a benchmark message: refusing it keeps a
/// broken server from making a subscriber buffer without bound.
pub const MAX_FRAME: u64 = 1 << 24;

/// A small xorshift generator: keys and mask keys must be unpredictable to intermediaries, not
/// cryptographically strong, and one per worker process is enough.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// A fresh `Sec-WebSocket-Key`: 16 random bytes, base64.
pub fn new_key(rng: &mut Rng) -> String {
    let mut raw = [0u8; 16];
    raw[..8].copy_from_slice(&rng.next_u64().to_le_bytes());
    raw[8..].copy_from_slice(&rng.next_u64().to_le_bytes());
    STANDARD.encode(raw)
}

/// The `Sec-WebSocket-Accept` a server must answer `key` with: the
/// server's own derivation, which its unit test pins to RFC 6455's example.
pub fn accept_for(key: &str) -> String {
    halley::ws::handshake::accept(key).as_str().to_owned()
}

/// The upgrade request for `path` on `host` with `key`.
pub fn upgrade_request(path: &str, host: &str, key: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// Checks a `101` head: the upgrade is to websocket and the accept value is the one `key` asks.
pub fn check_upgrade(head: &[u8], key: &str) -> Result<(), String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    resp.parse(head).map_err(|e| e.to_string())?;
    let find = |name: &str| {
        resp.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    if !find("upgrade").is_some_and(|v| v.eq_ignore_ascii_case(b"websocket")) {
        return Err("101 without `Upgrade: websocket`".into());
    }
    match find("sec-websocket-accept") {
        Some(v) if v == accept_for(key).as_bytes() => Ok(()),
        Some(v) => Err(format!(
            "wrong Sec-WebSocket-Accept {:?}",
            String::from_utf8_lossy(v)
        )),
        None => Err("101 without Sec-WebSocket-Accept".into()),
    }
}

/// What a complete frame (or, for data, a complete message) means to a subscriber.
#[derive(Debug, PartialEq)]
pub enum Frame<'a> {
    /// A whole text or binary message, its fragments joined.
    Message(&'a [u8]),
    Ping(&'a [u8]),
    Pong,
    /// The server closes, with its status code if it gave one.
    Close(Option<u16>),
}

/// A frame's first bytes, decoded.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Header {
    fin: bool,
    opcode: u8,
    /// Header bytes; the payload follows.
    len: usize,
    payload: u64,
}

/// Decodes a header from the front of `buf`; `Ok(None)` means more bytes are needed.
fn parse_header(buf: &[u8]) -> Result<Option<Header>, String> {
    let (Some(&b0), Some(&b1)) = (buf.first(), buf.get(1)) else {
        return Ok(None);
    };
    if b0 & 0x70 != 0 {
        return Err("reserved bits set: no extension was negotiated".into());
    }
    if b1 & 0x80 != 0 {
        return Err("a server frame was masked".into());
    }
    let (len, payload) = match b1 & 0x7f {
        126 if buf.len() >= 4 => (4, u16::from_be_bytes([buf[2], buf[3]]) as u64),
        127 if buf.len() >= 10 => (10, u64::from_be_bytes(buf[2..10].try_into().unwrap())),
        126 | 127 => return Ok(None),
        n => (2, n as u64),
    };
    let (fin, opcode) = (b0 & 0x80 != 0, b0 & 0x0f);
    if payload > MAX_FRAME {
        return Err(format!("a frame of {payload} bytes"));
    }
    if opcode >= 8 && (!fin || payload > 125) {
        return Err("a control frame fragmented or over 125 bytes".into());
    }
    Ok(Some(Header {
        fin,
        opcode,
        len,
        payload,
    }))
}

/// Bytes needed before a frame starting with `buf` can be decoded or is complete.
fn needed(buf: &[u8]) -> Result<usize, String> {
    Ok(match parse_header(buf)? {
        Some(h) => h.len + h.payload as usize,
        None if buf.len() < 2 => 2,
        None if buf[1] & 0x7f == 126 => 4,
        None => 10,
    })
}

/// An incremental frame reader. A frame wholly inside one read is handed on in place; only one
/// that spans reads is carried, and only a fragmented message is joined, so both buffers stay
/// empty (never allocated) for the usual one-frame-per-message stream.
#[derive(Debug, Default)]
pub struct WsReader {
    /// The start of a frame whose end has not arrived.
    carry: Vec<u8>,
    /// A fragmented message so far; `None` outside one.
    fragments: Option<Vec<u8>>,
}

impl WsReader {
    pub fn feed(&mut self, mut input: &[u8], on: &mut impl FnMut(Frame)) -> Result<(), String> {
        while !input.is_empty() {
            if self.carry.is_empty() {
                let need = needed(input)?;
                if input.len() >= need {
                    if let Some(h) = parse_header(input)? {
                        self.frame(h, &input[h.len..need], on)?;
                        input = &input[need..];
                        continue;
                    }
                }
            }
            // Carry just what completes the header, then the frame, so what follows it stays in
            // `input` and is read in place.
            let mut need = needed(&self.carry)?;
            while self.carry.len() < need && !input.is_empty() {
                let take = (need - self.carry.len()).min(input.len());
                self.carry.extend_from_slice(&input[..take]);
                input = &input[take..];
                need = needed(&self.carry)?;
            }
            if self.carry.len() >= need {
                let carry = std::mem::take(&mut self.carry);
                let h = parse_header(&carry)?.expect("a complete frame has a header");
                let result = self.frame(h, &carry[h.len..], on);
                self.carry = carry;
                self.carry.clear();
                result?;
            }
        }
        Ok(())
    }

    fn frame(
        &mut self,
        h: Header,
        payload: &[u8],
        on: &mut impl FnMut(Frame),
    ) -> Result<(), String> {
        match (h.opcode, &mut self.fragments) {
            (1 | 2, Some(_)) => return Err("a new message inside a fragmented one".into()),
            (1 | 2, None) if h.fin => on(Frame::Message(payload)),
            (1 | 2, None) => self.fragments = Some(payload.to_vec()),
            (0, None) => return Err("a continuation outside a message".into()),
            (0, Some(message)) => {
                message.extend_from_slice(payload);
                if h.fin {
                    let message = self.fragments.take().unwrap();
                    on(Frame::Message(&message));
                }
            }
            (8, _) => on(Frame::Close(
                (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]])),
            )),
            (9, _) => on(Frame::Ping(payload)),
            (10, _) => on(Frame::Pong),
            (op, _) => return Err(format!("reserved opcode {op}")),
        }
        Ok(())
    }
}

/// Appends one masked client frame (FIN set) with `opcode` and a control-sized `payload`.
pub fn write_masked(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: [u8; 4]) {
    debug_assert!(payload.len() <= 125, "only control frames are sent");
    out.push(0x80 | opcode);
    out.push(0x80 | payload.len() as u8);
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
}

/// Appends one unmasked server frame (FIN set) carrying `payload`: what a server writes (the
/// floor shares this file for it and for [`accept_for`]).
#[allow(dead_code)] // The generator itself only reads server frames.
pub fn write_server_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= 0xffff => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
}

/// The benchmark message in a WebSocket message: halley's per-channel WebSocket sends the
/// stream transport's JSON object, whose `data` holds the text; Nchan and the floor send the
/// text itself. Anything else (halley's `{"gap":...}`) is not ours.
pub fn parse_message(msg: &[u8]) -> Option<Delivery> {
    if msg.first() != Some(&b'{') {
        return parse_payload(msg);
    }
    const KEY: &[u8] = b"\"data\":";
    let at = msg.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let rest = msg[at..].trim_ascii_start().strip_prefix(b"\"")?;
    // The benchmark's text has no escapes, so its string ends at the next quote.
    let end = rest.iter().position(|&b| b == b'"')?;
    parse_payload(&rest[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_and_the_rfc_accept_example() {
        for (raw, enc) in [
            (&b""[..], ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg=="),
        ] {
            assert_eq!(STANDARD.encode(raw), enc);
        }
        // RFC 6455 section 1.3.
        assert_eq!(
            accept_for("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        let mut rng = Rng::new(7);
        let (a, b) = (new_key(&mut rng), new_key(&mut rng));
        assert_eq!(a.len(), 24);
        assert_ne!(a, b);
    }

    #[test]
    fn checks_the_upgrade_answer() {
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let good = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        assert_eq!(check_upgrade(good, key), Ok(()));
        let wrong = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: AAAA\r\n\r\n";
        let missing = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n";
        let not_ws = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        for bad in [&wrong[..], missing, not_ws] {
            assert!(check_upgrade(bad, key).is_err());
        }
    }

    /// A stream as servers send it: a short, a 16-bit-length and a 64-bit-length text frame, a
    /// ping, a message in three fragments with a ping between them, a binary frame, a close.
    fn wire() -> (Vec<u8>, Vec<u8>) {
        let big = vec![b'x'; 300];
        let mut w = Vec::new();
        write_server_frame(&mut w, 1, b"1 100");
        write_server_frame(&mut w, 1, &big);
        w.extend_from_slice(&[0x81, 127, 0, 0, 0, 0, 0, 0, 0, 3]);
        w.extend_from_slice(b"abc");
        write_server_frame(&mut w, 9, b"hi");
        w.extend_from_slice(&[0x01, 2, b'2', b' ']);
        w.extend_from_slice(&[0x89, 0]);
        w.extend_from_slice(&[0x00, 1, b'2']);
        w.extend_from_slice(&[0x80, 2, b'0', b'0']);
        write_server_frame(&mut w, 2, b"");
        write_server_frame(&mut w, 8, &[0x03, 0xe9, b'b', b'y', b'e']);
        (w, big)
    }

    fn collect(r: &mut WsReader, input: &[u8], got: &mut Vec<String>) -> Result<(), String> {
        r.feed(input, &mut |f| {
            got.push(match f {
                Frame::Message(m) => format!("msg {}", String::from_utf8_lossy(m)),
                Frame::Ping(p) => format!("ping {}", String::from_utf8_lossy(p)),
                Frame::Pong => "pong".into(),
                Frame::Close(c) => format!("close {c:?}"),
            })
        })
    }

    #[test]
    fn frames_survive_every_split_and_every_pair_of_splits() {
        let (w, big) = wire();
        let want = [
            "msg 1 100".to_string(),
            format!("msg {}", String::from_utf8_lossy(&big)),
            "msg abc".into(),
            "ping hi".into(),
            "ping ".into(),
            "msg 2 200".into(),
            "msg ".into(),
            "close Some(1001)".into(),
        ];
        for a in 0..=w.len() {
            let mut r = WsReader::default();
            let mut got = Vec::new();
            collect(&mut r, &w[..a], &mut got).unwrap();
            collect(&mut r, &w[a..], &mut got).unwrap();
            assert_eq!(got, want, "split at {a}");
            assert!(r.carry.is_empty() && r.fragments.is_none(), "split at {a}");
        }
        // Byte by byte: every truncated prefix of every frame.
        let mut r = WsReader::default();
        let mut got = Vec::new();
        for b in &w {
            collect(&mut r, std::slice::from_ref(b), &mut got).unwrap();
        }
        assert_eq!(got, want);
    }

    #[test]
    fn refuses_what_a_server_must_not_send() {
        let cases: [(&str, &[u8]); 8] = [
            ("masked", &[0x81, 0x81, 1, 2, 3, 4, b'x']),
            ("reserved bit", &[0xc1, 0]),
            ("reserved opcode", &[0x83, 0]),
            ("fragmented control", &[0x09, 0]),
            ("long control", &[0x89, 126, 0, 126]),
            ("continuation alone", &[0x80, 0]),
            ("message in a message", &[0x01, 0, 0x81, 0]),
            ("huge", &[0x81, 127, 0, 0, 0, 0, 0x10, 0, 0, 0]),
        ];
        for (what, bytes) in cases {
            let mut r = WsReader::default();
            assert!(r.feed(bytes, &mut |_| {}).is_err(), "{what}");
        }
    }

    #[test]
    fn masked_frames_unmask_to_their_payload() {
        let mut out = Vec::new();
        write_masked(&mut out, 10, b"ping!", [1, 2, 3, 4]);
        assert_eq!(&out[..6], &[0x8a, 0x85, 1, 2, 3, 4]);
        let unmasked: Vec<u8> = (out[6..].iter().enumerate())
            .map(|(i, b)| b ^ [1, 2, 3, 4][i % 4])
            .collect();
        assert_eq!(unmasked, b"ping!");
    }

    #[test]
    fn finds_the_message_raw_or_in_halleys_json() {
        let d = |seq, sent_ns| Some(Delivery { seq, sent_ns });
        let cases: [(&[u8], Option<Delivery>); 7] = [
            (b"7 123", d(7, 123)),
            (b"7 123 xxxx", d(7, 123)),
            (
                br#"{"id":"1-0","channel":"c","data":"8 456 xx","event":"e"}"#,
                d(8, 456),
            ),
            (br#"{"id":"1-0","channel":"c", "data": "9 1"}"#, d(9, 1)),
            (br#"{"gap":{"from":"1-0"},"channel":"c"}"#, None),
            (br#"{"id":"1-0","data":12}"#, None),
            (b"hello", None),
        ];
        for (msg, want) in cases {
            assert_eq!(parse_message(msg), want, "{}", String::from_utf8_lossy(msg));
        }
    }
}

//! The opening handshake (RFC 6455 4.2): whether a request asks for a
//! WebSocket, whether it asks correctly, and the `Sec-WebSocket-Accept`
//! that proves the server understood. Extensions are never agreed to: an
//! offer of `permessage-deflate` is declined by not echoing it, which every
//! client takes as "no compression".

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use crate::http::request::{Method, RequestHead};
use crate::http::Reject;

/// The only protocol version there is (RFC 6455 4.1).
pub const VERSION: &str = "13";

/// The GUID the accept key is derived with (RFC 6455 1.3).
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// A `Sec-WebSocket-Accept` value: base64 of a SHA-1, always 28 bytes, and
/// `Copy`, so a subscriber waiting for Redis keeps it without an allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Accept([u8; 28]);

impl Accept {
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("base64 is ASCII")
    }
}

/// Checks an upgrade request and returns the `Sec-WebSocket-Accept` value.
/// A wrong version is 426 with the version halley speaks, so a client can
/// retry with it; anything else malformed is 400.
pub fn check(head: &RequestHead) -> Result<Accept, Reject> {
    if head.method != Method::Get {
        return Err(Reject::new(400, "a WebSocket handshake must be a GET"));
    }
    if head.http10 {
        return Err(Reject::new(400, "a WebSocket handshake needs HTTP/1.1"));
    }
    if !head.upgrade_websocket {
        return Err(upgrade_required(
            "this endpoint needs Upgrade: websocket".into(),
        ));
    }
    if !head.connection_upgrade {
        return Err(Reject::new(
            400,
            "a WebSocket handshake needs Connection: Upgrade",
        ));
    }
    let (key, version) = match head.websocket.as_deref() {
        Some(ws) => (ws.key.as_deref(), ws.version.as_deref()),
        None => (None, None),
    };
    if version != Some(VERSION) {
        return Err(upgrade_required(format!(
            "unsupported Sec-WebSocket-Version; this server speaks {VERSION}"
        )));
    }
    let Some(key) = key else {
        return Err(Reject::new(400, "missing Sec-WebSocket-Key"));
    };
    if base64_decoded_len(key) != Some(16) {
        return Err(Reject::new(
            400,
            "Sec-WebSocket-Key must be 16 bytes in base64",
        ));
    }
    Ok(accept(key))
}

/// 426, naming the protocol and version to upgrade to (RFC 6455 4.4).
fn upgrade_required(why: String) -> Reject {
    Reject {
        header: Some(format!(
            "Sec-WebSocket-Version: {VERSION}\r\nUpgrade: websocket"
        )),
        ..Reject::new(426, why)
    }
}

/// `base64(SHA-1(key + GUID))`.
pub fn accept(key: &str) -> Accept {
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key.as_bytes());
    sha.update(GUID.as_bytes());
    let mut text = [0u8; 28];
    let written = STANDARD
        .encode_slice(sha.digest().bytes(), &mut text)
        .expect("20 bytes are 28 in base64");
    debug_assert_eq!(written, 28);
    Accept(text)
}

/// How many bytes `text` decodes to, if it is canonical padded base64 of at
/// most `KEY_ROOM` bytes: the key's only check is that it is 16 bytes (RFC
/// 6455 4.2.1), whose value the server never needs. Decoded on the stack.
fn base64_decoded_len(text: &str) -> Option<usize> {
    const KEY_ROOM: usize = 32;
    let mut room = [0u8; KEY_ROOM];
    if text.is_empty() {
        return None;
    }
    STANDARD.decode_slice(text, &mut room).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::{parse, Parsed};

    fn head(extra: &str) -> RequestHead {
        let raw = format!("GET /sub/a HTTP/1.1\r\nHost: h\r\n{extra}\r\n");
        match parse(raw.as_bytes()).unwrap() {
            Parsed::Complete { head, .. } => head,
            Parsed::Partial => panic!("partial"),
        }
    }

    const GOOD: &str = "Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
        Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

    #[test]
    fn the_rfc_example_is_accepted() {
        // RFC 6455 1.3's worked example.
        assert_eq!(
            check(&head(GOOD)).unwrap().as_str(),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn refuses_bad_handshakes_with_the_right_status() {
        let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
        let cases = [
            ("no upgrade", format!("Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n{key}"), 426),
            ("no connection", format!("Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n{key}"), 400),
            ("version 8", format!("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 8\r\n{key}"), 426),
            ("no version", format!("Upgrade: websocket\r\nConnection: Upgrade\r\n{key}"), 426),
            ("no key", "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n".into(), 400),
            ("short key", "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZQ==\r\n".into(), 400),
            ("not base64", "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25j!Q==\r\n".into(), 400),
        ];
        for (what, extra, status) in cases {
            let got = check(&head(&extra)).unwrap_err();
            assert_eq!(got.status, status, "{what}: {got:?}");
        }
        let wrong = check(&head(&GOOD.replace("13", "8"))).unwrap_err();
        assert!(wrong.header.unwrap().contains("Sec-WebSocket-Version: 13"));
    }

    #[test]
    fn base64_round_trips_lengths() {
        let cases = [
            ("", None),
            ("AA==", Some(1)),
            ("AAA=", Some(2)),
            ("AAAA", Some(3)),
            ("AB==", None),
            ("A===", None),
            ("AAA", None),
            ("dGhlIHNhbXBsZSBub25jZQ==", Some(16)),
        ];
        for (text, len) in cases {
            assert_eq!(base64_decoded_len(text), len, "{text:?}");
        }
        // What clients send: any 16 bytes, encoded; 15 or 17 bytes are not a key.
        assert_eq!(base64_decoded_len(&STANDARD.encode([0xAB; 16])), Some(16));
        assert_eq!(base64_decoded_len(&STANDARD.encode([0xAB; 15])), Some(15));
        assert_eq!(base64_decoded_len(&STANDARD.encode([0xAB; 17])), Some(17));
    }
}

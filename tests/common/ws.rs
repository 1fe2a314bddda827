//! A raw WebSocket client for the integration tests: the upgrade request,
//! masked client frames built by hand (so tests can also build wrong ones),
//! and server frames read and checked byte by byte.

use std::net::SocketAddr;

use super::{parse_json, Client, Response, Value};

/// RFC 6455's sample key, and the accept value it must get.
pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
pub const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;
pub const PONG: u8 = 0xA;
/// The FIN bit of a frame's first byte.
pub const FIN: u8 = 0x80;

const MASK: [u8; 4] = [0xA1, 0x05, 0x7E, 0x3C];

/// The upgrade request for `path`, with `extra` header lines.
pub fn upgrade_request(path: &str, extra: &[&str]) -> Vec<u8> {
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n"
    );
    for line in extra {
        req.push_str(line);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    req.into_bytes()
}

/// A masked client frame with first byte `b0` (FIN, opcode).
pub fn client_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![b0];
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&MASK);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    out
}

/// A close frame's payload: the code, then the reason.
pub fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason.as_bytes());
    p
}

/// A frame from the server.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl Frame {
    /// A close frame's code and reason.
    #[track_caller]
    pub fn close_code(&self) -> (u16, String) {
        assert_eq!(self.opcode, CLOSE, "expected a close frame: {self:?}");
        assert!(self.payload.len() >= 2, "close without a code");
        let code = u16::from_be_bytes([self.payload[0], self.payload[1]]);
        (code, String::from_utf8(self.payload[2..].to_vec()).unwrap())
    }

    #[track_caller]
    pub fn json(&self) -> Value {
        assert_eq!(self.opcode, TEXT, "expected a text frame: {self:?}");
        parse_json(std::str::from_utf8(&self.payload).expect("text is UTF-8"))
    }
}

pub struct Ws {
    pub client: Client,
    pub head: Response,
}

impl Ws {
    /// Connects and upgrades `path`, asserting the `101`.
    #[track_caller]
    pub fn connect(addr: SocketAddr, path: &str) -> Ws {
        let mut client = Client::connect(addr);
        client.send(upgrade_request(path, &[]));
        Ws::after_upgrade(client)
    }

    /// Reads and checks the `101` on a client that sent an upgrade.
    #[track_caller]
    pub fn after_upgrade(mut client: Client) -> Ws {
        let head = client.read_head();
        assert_eq!(head.status, 101, "{head:?}");
        assert_eq!(head.header("upgrade"), Some("websocket"));
        assert_eq!(head.header("connection"), Some("Upgrade"));
        assert_eq!(head.header("sec-websocket-accept"), Some(ACCEPT));
        assert!(!head.has_header("content-length"), "{head:?}");
        Ws { client, head }
    }

    pub fn send_frame(&mut self, b0: u8, payload: &[u8]) {
        self.client.send(client_frame(b0, payload));
    }

    pub fn send_text(&mut self, text: &str) {
        self.send_frame(FIN | TEXT, text.as_bytes());
    }

    /// Reads one server frame, checking it is unmasked.
    #[track_caller]
    pub fn read_frame(&mut self) -> Frame {
        let h = self.client.read_bytes(2);
        assert_eq!(h[0] & 0x70, 0, "reserved bits set: {h:x?}");
        assert_eq!(h[1] & 0x80, 0, "server frames are never masked");
        let len = match h[1] & 0x7F {
            126 => u16::from_be_bytes(self.client.read_bytes(2).try_into().unwrap()) as usize,
            127 => u64::from_be_bytes(self.client.read_bytes(8).try_into().unwrap()) as usize,
            n => n as usize,
        };
        Frame {
            fin: h[0] & FIN != 0,
            opcode: h[0] & 0x0F,
            payload: self.client.read_bytes(len),
        }
    }

    /// Reads a frame and asserts it is a close with `code`; then the
    /// server must close the connection.
    #[track_caller]
    pub fn expect_close(&mut self, code: u16) -> String {
        let frame = self.read_frame();
        let (got, reason) = frame.close_code();
        assert_eq!(got, code, "close reason {reason:?}");
        self.client.expect_closed();
        reason
    }

    /// Reads the next text frame as JSON, skipping heartbeats.
    #[track_caller]
    pub fn next_json(&mut self) -> Value {
        loop {
            let frame = self.read_frame();
            if frame.opcode == PING {
                continue;
            }
            let value = frame.json();
            if value.get("heartbeat").is_none() {
                return value;
            }
        }
    }
}

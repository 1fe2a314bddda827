//! What a connection holds once it is a WebSocket: its role (what its
//! messages are for), its liveness, and, only while a frame or message is
//! half-read, the decoder and the message so far. A parked subscriber that
//! is sent nothing keeps no decoder and no buffer, so it costs little more
//! than an SSE stream.

use std::rc::Rc;
use std::time::Instant;

use super::super::mux::Mux;
use crate::ws::frame::Decoder;

/// What a WebSocket connection is for. Other endpoints add their own
/// variant, and `server::websocket` routes each message by it.
pub enum Role {
    /// `--ws-echo`: every message comes back (Autobahn|Testsuite).
    Echo,
    /// `GET /sub/{channel}` with an upgrade: parked on `channel` with hub
    /// key `key`, like an SSE stream; client messages are read and dropped.
    Channel { channel: Rc<str>, key: u32 },
    /// `GET /ws`: commands in, the messages of every channel it follows
    /// out (`server::mux`). Boxed, so the other roles stay small.
    Mux(Box<Mux>),
    /// `GET /bayeux` with an upgrade: Bayeux requests in text frames
    /// (`server::bayeux_ws`). Its one deadline serves the heartbeat due at
    /// `beat_at` and the connect the engine may hold on it.
    Bayeux { beat_at: Instant },
}

impl Role {
    pub fn name(&self) -> &str {
        match self {
            Role::Echo => "echo",
            Role::Channel { channel, .. } => channel,
            Role::Mux(_) => "ws",
            Role::Bayeux { .. } => "bayeux",
        }
    }
}

pub struct Ws {
    pub role: Role,
    /// Heartbeat pings sent since the peer last sent a pong; at two, the
    /// next heartbeat closes it.
    pub unanswered_pings: u8,
    /// The frame decoder and the data message being assembled; `None`
    /// between messages, so an idle connection keeps neither.
    pub(super) reader: Option<Box<Reader>>,
}

#[derive(Default)]
pub(super) struct Reader {
    pub decoder: Decoder,
    pub message: Vec<u8>,
}

impl Ws {
    pub fn new(role: Role) -> Ws {
        Ws {
            role,
            unanswered_pings: 0,
            reader: None,
        }
    }
}

//! WebSocket connections on the loop: the `101` that makes a connection
//! one, what its peer's frames do (`on_frame`: echo, pong, close), the
//! heartbeat that tells a live peer from a dead one, and the two ways
//! anything else talks to it: `ws_send` queues one frame, `ws_close` sends
//! a close frame and lets the connection go. The frames themselves are
//! `crate::ws`'s; what a connection holds is `conn::Ws`.
//!
//! A WebSocket ends through `Closing`, like a response that closes: our
//! close frame goes out, the write side is shut, and the peer has the
//! linger to send its own close and leave, or is dropped.

use log::debug;

use super::conn::{Role, SendError};
use super::respond::note_send_error;
use super::Server;
use crate::conn_id::ConnId;
use crate::encode::{WS_HEARTBEAT, WS_PING};
use crate::http::response::{Framing, ResponseHead};
use crate::ws::close;
use crate::ws::frame::{self, Event, Fail, MessageKind, Opcode};
use crate::ws::handshake::Accept;

/// Heartbeats a peer may leave unanswered: the next one closes it.
const MAX_UNANSWERED_PINGS: u8 = 2;

impl Server {
    /// Writes the `101` for a checked handshake into `scratch`, for the
    /// caller to send with what follows it (a subscriber's replay).
    pub(super) fn write_switch(&mut self, accept: Accept) {
        let line = format!("Sec-WebSocket-Accept: {}", accept.as_str());
        ResponseHead {
            status: 101,
            content_type: None,
            framing: Framing::Upgrade,
            keep_alive: false,
            cors_origin: &self.config.cors_origin,
            date: Some(self.date.as_str()),
            extra: &[&line],
        }
        .write(&mut self.scratch);
    }

    /// Answers a checked handshake and makes the connection a WebSocket for
    /// `role` (one that needs no subscription: for `/sub`, `open_stream`
    /// does this with the replay).
    pub(super) fn upgrade(&mut self, id: ConnId, accept: Accept, role: Role) {
        self.scratch.clear();
        self.write_switch(accept);
        self.send_scratch(id);
        let Some(conn) = self.conns.get(id) else {
            return;
        };
        if conn.is_closed() {
            return;
        }
        conn.upgrade(role);
        self.counters.ws_upgrades += 1;
        let at = self.token_deadline(id, self.now + self.config.heartbeat);
        self.set_deadline(id, at);
    }

    /// What a peer's frames amount to.
    pub(super) fn on_frame(&mut self, id: ConnId, event: Event) {
        let Some(conn) = self.conns.get(id) else {
            return;
        };
        let ws = conn.ws().expect("frames come from a WebSocket");
        match event {
            Event::Message(kind) => match ws.role {
                Role::Echo => self.echo(id, kind),
                // A `/sub` WebSocket only listens; what its peer says is
                // read (and checked) but has no meaning.
                Role::Channel { .. } => conn.ws_message().clear(),
                Role::Mux(_) => self.on_mux_message(id, kind),
                Role::Bayeux { .. } => self.on_bayeux_frame(id, kind),
            },
            Event::Ping(payload) => {
                self.ws_send(id, Opcode::Pong, payload.as_bytes());
            }
            Event::Pong => ws.unanswered_pings = 0,
            Event::Close(code) => {
                // The close handshake: the peer's code echoed, then closed
                // once our close frame is out.
                let reply = match code {
                    Some(code) => close::frame(code, ""),
                    None => close::EMPTY_FRAME.to_vec(),
                };
                self.ws_end(id, &reply);
            }
        }
    }

    /// The peer broke the protocol: it is told why, and closed.
    pub(super) fn on_frame_fail(&mut self, id: ConnId, fail: Fail) {
        debug!(
            "{id:?}: WebSocket closed with {}: {}",
            fail.code, fail.reason
        );
        self.counters.ws_protocol_closes += 1;
        self.ws_close(id, fail.code, fail.reason);
    }

    /// `--ws-echo`: the message goes back whole, as one frame of its kind.
    fn echo(&mut self, id: ConnId, kind: MessageKind) {
        let opcode = match kind {
            MessageKind::Text => Opcode::Text,
            MessageKind::Binary => Opcode::Binary,
        };
        let Some(conn) = self.conns.get(id) else {
            return;
        };
        let mut message = std::mem::take(conn.ws_message());
        self.scratch.clear();
        frame::write_header(&mut self.scratch, opcode, message.len());
        if let Err(e) = conn.send_head_and_body(&self.scratch, &message) {
            note_send_error(&mut self.counters, id, &SendError::Io(e));
            return self.close(id);
        }
        message.clear();
        *conn.ws_message() = message;
    }

    /// Sends one frame to a WebSocket peer: written at once, and queued (as
    /// output owed, like a response) only as far as the socket did not take
    /// it. Returns false if the connection failed and is closing.
    pub(super) fn ws_send(&mut self, id: ConnId, opcode: Opcode, payload: &[u8]) -> bool {
        let Some(conn) = self.conns.get(id) else {
            return false;
        };
        self.scratch.clear();
        frame::write_header(&mut self.scratch, opcode, payload.len());
        match conn.send_head_and_body(&self.scratch, payload) {
            Ok(()) => true,
            Err(e) => {
                note_send_error(&mut self.counters, id, &SendError::Io(e));
                self.close(id);
                false
            }
        }
    }

    /// Sends a close frame with `code` and `reason`, and lets the
    /// connection go (see `ws_end`).
    pub(super) fn ws_close(&mut self, id: ConnId, code: u16, reason: &str) {
        self.ws_end(id, &close::frame(code, reason));
    }

    /// Ends a WebSocket with `last`, which ends with a close frame: it
    /// leaves its channel now, and the connection closes once the frame is
    /// out and the peer has answered or the linger is over.
    pub(super) fn ws_end(&mut self, id: ConnId, last: &[u8]) {
        self.mux_leave_all(id);
        let Some(conn) = self.conns.get(id) else {
            return;
        };
        if let Some((channel, kind, key)) = conn.unpark() {
            self.hub.unsubscribe(&channel, kind, key, id, self.now);
            self.note_maybe_idle(&channel);
        }
        self.ws_send_last(id, last);
    }

    /// Sends the last bytes of a WebSocket already out of its channel (or
    /// never in one), ending with a close frame, and moves it to `Closing`.
    pub(super) fn ws_send_last(&mut self, id: ConnId, last: &[u8]) {
        let Some(conn) = self.conns.get(id) else {
            return;
        };
        if let Err(e) = conn.send(last) {
            note_send_error(&mut self.counters, id, &SendError::Io(e));
            return self.close(id);
        }
        self.finish_response(id, false);
    }

    /// The heartbeat: a ping (and, for a subscriber, a text frame its page
    /// can see), or, for a peer that left the last two unanswered, the end.
    pub(super) fn on_ws_heartbeat(&mut self, id: ConnId) {
        let max_queued = self.config.max_queued_bytes;
        let Some(conn) = self.conns.get(id) else {
            return;
        };
        let ws = conn.ws().expect("a WebSocket's heartbeat");
        if ws.unanswered_pings >= MAX_UNANSWERED_PINGS {
            self.counters.ws_pong_timeouts += 1;
            debug!("{id:?}: WebSocket peer left {MAX_UNANSWERED_PINGS} pings unanswered");
            return self.ws_close(id, close::POLICY, "no pong to the last two pings");
        }
        ws.unanswered_pings += 1;
        // Bayeux clients would take a text frame for a Bayeux message.
        let beat = match ws.role {
            Role::Echo | Role::Bayeux { .. } => WS_PING,
            Role::Channel { .. } | Role::Mux(_) => WS_HEARTBEAT,
        };
        if let Err(e) = conn.send_live_static(beat, max_queued) {
            note_send_error(&mut self.counters, id, &e);
            return self.close(id);
        }
        let at = self.token_deadline(id, self.now + self.config.heartbeat);
        self.set_deadline(id, at);
    }
}

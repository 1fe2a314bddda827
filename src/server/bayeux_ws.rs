//! Bayeux over a WebSocket at `/bayeux`: the same engine as `server::bayeux`,
//! each text frame a JSON array of messages. A socket carries every request
//! of its session, so the engine answers each at once (`Reply::Socket`) and
//! holds only the connect, whose answer is one more frame: when messages
//! reach the session (the flush phase), at its deadline, or when the server
//! drains. The connection's one deadline is the earlier of its next
//! heartbeat ping and the held connect's.
//!
//! CometD and Faye negotiate `websocket` from the handshake's
//! `supportedConnectionTypes` and try it first; where the upgrade fails they
//! go on with long-polling on `POST /bayeux`.

use std::time::Instant;

use log::debug;

use super::bayeux::engine_conn;
use super::conn::Role;
use super::Server;
use crate::bayeux::{wire, BadRequest, Framing, Reply};
use crate::conn_id::ConnId;
use crate::ws::close;
use crate::ws::frame::{MessageKind, Opcode};
use crate::ws::handshake::Accept;

impl Server {
    /// Answers a checked upgrade of `/bayeux`.
    pub(super) fn on_bayeux_upgrade(&mut self, id: ConnId, accept: Accept) {
        let beat_at = self.now + self.config.heartbeat;
        self.upgrade(id, accept, Role::Bayeux { beat_at });
    }

    /// One whole message from a Bayeux WebSocket: a request, as a `POST`
    /// body is, whose replies go out at once.
    pub(super) fn on_bayeux_frame(&mut self, id: ConnId, kind: MessageKind) {
        let Some(conn) = self.conns.get(id) else {
            return;
        };
        let message = conn.ws_message();
        let parsed = match kind {
            MessageKind::Text => wire::parse_frame(message),
            MessageKind::Binary => Err(BadRequest("Bayeux messages are JSON in text frames")),
        };
        message.clear();
        let messages = match parsed {
            Ok(messages) => messages,
            // Not Bayeux: there is no message id to answer in Bayeux form,
            // so the socket is closed with the reason, as a `POST` gets 400.
            Err(BadRequest(why)) => {
                debug!("{id:?}: {why} in a Bayeux WebSocket message");
                self.counters.ws_protocol_closes += 1;
                return self.ws_close(id, close::INVALID_DATA, why);
            }
        };
        let outcome = self.run_bayeux(id, messages, Framing::WebSocket);
        let Reply::Socket { body, hold } = outcome.reply else {
            unreachable!("a frame is answered in frames");
        };
        if let Some(body) = body {
            self.ws_send(id, Opcode::Text, &body);
        }
        if let Some(deadline) = hold {
            self.arm_bayeux_ws(id, Some(deadline));
        }
    }

    /// The connection's one deadline: its next heartbeat, or the held
    /// connect's deadline when that comes first.
    fn arm_bayeux_ws(&mut self, id: ConnId, held: Option<Instant>) {
        let Some(Role::Bayeux { beat_at }) =
            self.conns.get(id).and_then(|c| c.ws()).map(|w| &w.role)
        else {
            return;
        };
        let at = held.map_or(*beat_at, |h| h.min(*beat_at));
        self.set_deadline(id, at);
    }

    /// The deadline of a Bayeux WebSocket came up: a held connect past its
    /// deadline is answered, and a heartbeat that is due is sent (by the
    /// common heartbeat, which also closes a peer that stopped answering).
    pub(super) fn on_bayeux_ws_deadline(&mut self, id: ConnId) {
        if let Some(response) = self.bayeux.on_connect_timeout(engine_conn(id), self.now) {
            self.counters.connect_timeouts += 1;
            self.answer_held(response);
        }
        let now = self.now;
        let heartbeat = self.config.heartbeat;
        let Some(ws) = self.conns.get(id).and_then(|c| c.ws()) else {
            return;
        };
        let Role::Bayeux { beat_at } = &mut ws.role else {
            return;
        };
        if *beat_at <= now {
            *beat_at = now + heartbeat;
            self.on_ws_heartbeat(id);
        }
        let held = self.bayeux.held_deadline(engine_conn(id));
        self.arm_bayeux_ws(id, held);
    }

    /// A drain: the held connect, if any, is answered with advice to come
    /// back at a random moment of the window, then the socket closes (1001).
    pub(super) fn end_bayeux_ws(&mut self, id: ConnId) {
        let interval = self.spread.delay_ms(self.config.drain);
        if let Some(response) = self
            .bayeux
            .release_conn(engine_conn(id), self.now, interval)
        {
            self.answer_held(response);
        }
        self.ws_close(id, close::GOING_AWAY, "server shutting down");
    }
}

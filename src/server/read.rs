//! The request side of a connection, as the server sees it: `drive` runs
//! the connection's steps (`conn/input.rs`: parse a head, take a body, read
//! once more, each given only the connection, the read buffers and the
//! turn's budget) and acts on what each found: admit a head and start its
//! body (`on_head`), answer a request, arm the header timeout, close.
//! Moving to the next state runs it at once, since the bytes it needs may
//! already be buffered (pipelining), and reading goes on until the socket
//! would block, as edge-triggered readiness requires, or until the
//! connection's turn is spent (`Turn`), when it waits on the ready list for
//! its next one. Writable events also land here, to flush queued output and
//! hand a drained connection its state's own deadline.

use log::debug;

use super::conn::{BodyReader, Progress, State, Turn};
use super::respond::Ask;
use super::Server;
use crate::conn_id::ConnId;
use crate::http::chunked;
use crate::http::request::{BodyKind, RequestHead};

/// Body bytes reserved up front at most, whatever `Content-Length` claims.
const BODY_RESERVE: usize = 16 * 1024;

/// The interim answer to `Expect: 100-continue`.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

impl Server {
    pub(super) fn on_readable(&mut self, id: ConnId) {
        self.drive(id);
    }

    pub(super) fn on_writable(&mut self, id: ConnId) {
        let max_queued = self.config.max_queued_bytes;
        let Some(conn) = self.conns.get(id) else {
            return;
        };
        if conn.out.is_empty() {
            return;
        }
        let was_over = conn.out.queued() > max_queued;
        match conn.flush() {
            Err(e) => {
                debug!("{id:?}: write failed while flushing: {e}");
                self.close(id)
            }
            Ok(0) => {}
            Ok(_) if conn.out.is_empty() => self.on_drained(id, was_over),
            Ok(_) => {
                // The send timeout counts from here again.
                conn.note_send_progress(self.now);
                // A pipelining client whose answers piled up past the limit
                // is read again once they are back under it.
                let under = was_over && conn.out.queued() <= max_queued;
                let reads = matches!(
                    conn.state(),
                    State::AwaitingHead { .. } | State::WebSocket(_)
                );
                if under && reads {
                    self.drive(id);
                }
            }
        }
    }

    /// A connection's queued output has all gone out: a closing connection
    /// shuts its write side (or closes, if the client already has), and one
    /// waiting for a request goes back to its header or idle timeout and reads
    /// any request that waited behind the output.
    fn on_drained(&mut self, id: ConnId, was_over: bool) {
        let conn = self.conns.get(id).expect("flushed connection is open");
        match *conn.state() {
            State::Closing { eof: true } => self.close(id),
            // A WebSocket peer that sent faster than it read is read again.
            State::WebSocket(_) if was_over => self.drive(id),
            State::Closing { eof: false } | State::AwaitingHead { .. } => {
                let at = super::respond::drained_deadline(conn, self.now, &self.config);
                let resume = was_over && matches!(conn.state(), State::AwaitingHead { .. });
                self.set_deadline(id, at);
                if resume {
                    self.drive(id);
                }
            }
            _ => {}
        }
    }

    /// Runs the connection's state machine as far as the available bytes go,
    /// or until its turn is spent; then it waits on the ready list. Each step
    /// is the connection's own (`conn/input.rs`); what it found is acted on
    /// here, in one place.
    pub(super) fn drive(&mut self, id: ConnId) {
        let mut turn = Turn::default();
        let max_queued = self.config.max_queued_bytes;
        let max_message = self.config.ws_max_message;
        loop {
            let Some(conn) = self.conns.get(id) else {
                return;
            };
            let bufs = &mut self.bufs;
            let progress = match *conn.state() {
                State::AwaitingHead { .. } => conn.step_head(bufs, &mut turn, max_queued),
                State::Body(_) => conn.step_body(bufs, &mut turn),
                State::WebSocket(_) => conn.step_ws(bufs, &mut turn, max_queued, max_message),
                State::Polling { .. } | State::Held { .. } | State::Waiting { .. } => {
                    conn.step_held(bufs)
                }
                // After the client's EOF there is nothing left to read.
                State::Closing { eof: true } | State::Closed { .. } => Progress::Wait,
                State::Streaming { .. } | State::Closing { .. } => conn.step_discard(&mut turn),
            };
            match progress {
                Progress::Again => {}
                Progress::Wait => return,
                Progress::HeadStarted => {
                    self.set_deadline(id, self.now + self.config.header_timeout)
                }
                Progress::Head(head) => self.on_head(id, head),
                Progress::Request(state) => self.on_request(id, state.head, state.body),
                Progress::Refuse(reject) => {
                    debug!("{id:?}: {} while reading a request", reject.message);
                    self.reject(id, reject, Ask::CLOSE);
                }
                Progress::Frame(event) => self.on_frame(id, event),
                Progress::FrameFail(fail) => return self.on_frame_fail(id, fail),
                Progress::Eof => return self.on_read_eof(id),
                Progress::Gone => return self.close(id),
                Progress::Failed(e) => {
                    debug!("{id:?}: read failed while reading a request: {e}");
                    return self.close(id);
                }
            }
            if turn.spent() {
                self.counters.budget_yields += 1;
                self.conns.yield_turn(id);
                return;
            }
        }
    }

    /// A head is complete: refuse it, answer it now, or start reading its
    /// body. A refused request is answered at once: a body that arrived with
    /// the head is skipped and the connection kept, but one still to come is
    /// never read, and the connection closes. A body too large always closes.
    fn on_head(&mut self, id: ConnId, head: RequestHead) {
        let limit = match self.admit(id, &head) {
            Ok(limit) => limit,
            Err(reject) => {
                let conn = self.conns.get(id).expect("driven connection is open");
                let skipped = match head.body {
                    _ if reject.status == 413 => false,
                    BodyKind::None => true,
                    BodyKind::Length(n) if n <= conn.inbuf.len() as u64 => {
                        conn.inbuf.drain(..n as usize);
                        true
                    }
                    BodyKind::Length(_) | BodyKind::Chunked => false,
                };
                let ask = Ask {
                    keep_alive: head.keep_alive && skipped,
                    head_only: false,
                };
                return self.reject(id, reject, ask);
            }
        };
        let reader = match head.body {
            BodyKind::None => return self.on_request(id, head, Vec::new()),
            BodyKind::Length(n) => BodyReader::Length { left: n as usize },
            BodyKind::Chunked => BodyReader::Chunked {
                decoder: chunked::Decoder::default(),
                limit,
            },
        };
        let conn = self.conns.get(id).expect("driven connection is open");
        let wants_continue = head.expect_continue && conn.inbuf.is_empty();
        // The buffer grows with what arrives; a Content-Length is only a
        // claim, and reserving it up front would let any head cost memory.
        let capacity = match reader {
            BodyReader::Length { left } => left.min(BODY_RESERVE),
            BodyReader::Chunked { .. } => 0,
        };
        conn.start_body(head, reader, capacity);
        if wants_continue && conn.send(CONTINUE).is_err() {
            return self.close(id);
        }
        self.set_deadline(id, self.now + self.config.header_timeout);
    }

    /// The client has half-closed. With nothing queued for it, the connection
    /// is done; with a response still queued, reading stops but writing goes
    /// on until the output is out (or the send timeout), then it closes. A
    /// client that sends its request and shuts its write side is legitimate.
    fn on_read_eof(&mut self, id: ConnId) {
        let conn = self.conns.get(id).expect("driven connection is open");
        // A WebSocket peer that leaves without a close frame has nothing
        // more coming; what was queued for it has no reader.
        let streams = matches!(conn.state(), State::Streaming { .. } | State::WebSocket(_));
        if conn.out.is_empty() || streams {
            return self.close(id);
        }
        if !matches!(conn.state(), State::Closing { .. }) {
            debug!("{id:?}: client half-closed with a response queued; finishing it");
        }
        // The deadline stays: it is already the send timeout's (set when the
        // response queued) or the request's own, which `on_deadline` reads
        // as the send timeout while output is queued.
        conn.read_closed();
    }
}

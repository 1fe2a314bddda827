//! The request side of a connection: `drive` runs its state machine, reading
//! bytes, parsing heads, reading bodies and handing complete requests to
//! `respond`. Moving to the next state runs it at once, since the bytes it
//! needs may already be buffered (pipelining), and reading goes on until the
//! socket would block, as edge-triggered readiness requires, or until the
//! connection's turn is spent (`Turn`), when it waits on the ready list for
//! its next one. The states themselves, and the moves between them, belong to
//! `conn`; this file asks for them by name (`start_body`, `finish_body`,
//! `start_head`, `read_closed`). Writable events also land here, to flush
//! queued output and hand a drained connection its state's own deadline.

use log::debug;

use super::conn::{BodyReader, BodyState, Input, State};
use super::respond::Ask;
use super::Server;
use crate::conn_id::ConnId;
use crate::http::chunked;
use crate::http::request::{self, BodyKind, Parsed, RequestHead, MAX_HEAD_BYTES};
use crate::http::Reject;

/// Whether the state machine can make more progress now.
#[derive(PartialEq, Eq)]
enum Step {
    Again,
    Wait,
}

/// Bytes one connection may read in one turn (a readiness event, or its
/// place on the ready list) before the others get theirs; see `Turn`.
const MAX_BYTES_PER_TURN: usize = 64 * 1024;
/// Requests one connection may have answered in one turn.
const MAX_REQUESTS_PER_TURN: usize = 32;

/// What the connection being driven has had of this turn. Edge-triggered
/// readiness would have one connection read until its socket would block,
/// which a peer that pipelines or streams without pause never lets happen;
/// like Redis and libuv, each connection gets a budget, and one that spends
/// it goes on the ready list to be driven again after the others (the
/// kernel will not report it again, so it must not be forgotten).
#[derive(Default)]
pub(super) struct Turn {
    bytes: usize,
    requests: usize,
}

impl Turn {
    fn spent(&self) -> bool {
        self.bytes >= MAX_BYTES_PER_TURN || self.requests >= MAX_REQUESTS_PER_TURN
    }

    fn bytes_left(&self) -> usize {
        MAX_BYTES_PER_TURN.saturating_sub(self.bytes)
    }
}

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
                let unsent = conn.kernel_unsent();
                conn.out.note_progress(self.now, unsent);
                // A pipelining client whose answers piled up past the limit
                // is read again once they are back under it.
                let under = was_over && conn.out.queued() <= max_queued;
                if under && matches!(conn.state(), State::AwaitingHead { .. }) {
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
    /// or until its turn is spent; then it waits on the ready list.
    pub(super) fn drive(&mut self, id: ConnId) {
        self.turn = Turn::default();
        loop {
            let Some(conn) = self.conns.get(id) else {
                return;
            };
            let step = match *conn.state() {
                State::AwaitingHead { .. } => self.read_head(id),
                State::Body(_) => self.read_body(id),
                State::Polling { .. } | State::Held { .. } => self.hold_input(id),
                // After the client's EOF there is nothing left to read.
                State::Closing { eof: true } => Step::Wait,
                State::Streaming { .. } | State::Closing { .. } => self.discard_input(id),
                State::Closed { .. } => Step::Wait,
            };
            if step == Step::Wait {
                return;
            }
            if self.turn.spent() {
                self.counters.budget_yields += 1;
                self.conns.yield_turn(id);
                return;
            }
        }
    }

    fn read_head(&mut self, id: ConnId) -> Step {
        let max_queued = self.config.max_queued_bytes;
        let conn = self.conns.get(id).expect("driven connection is open");
        // A client that pipelines requests without reading the answers waits
        // here, so it can queue at most one answer past the limit; the
        // writable edge that drains the queue resumes it (`on_writable`).
        if conn.out.queued() > max_queued {
            return Step::Wait;
        }
        match request::parse(&conn.inbuf) {
            Ok(Parsed::Partial) => self.read_more(id),
            Ok(Parsed::Complete { head, len }) => {
                conn.inbuf.drain(..len);
                self.turn.requests += 1;
                self.on_head(id, head);
                Step::Again
            }
            Err(reject) => {
                debug!("{id:?}: {} while reading request head", reject.message);
                self.reject(id, reject, Ask::CLOSE);
                Step::Again
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

    fn read_body(&mut self, id: ConnId) -> Step {
        let conn = self.conns.get(id).expect("driven connection is open");
        let (state, inbuf) = conn.body_and_input().expect("in Body state");
        let BodyState { body, reader, .. } = state;
        let done = match reader {
            BodyReader::Length { left } => {
                let take = (*left).min(inbuf.len());
                body.extend(inbuf.drain(..take));
                *left -= take;
                *left == 0
            }
            BodyReader::Chunked { decoder, limit } => match decoder.decode(inbuf, body, *limit) {
                Ok(used) => {
                    inbuf.drain(..used);
                    decoder.is_done()
                }
                Err(chunked::Error::TooLarge) => {
                    let reject = super::web::too_large(*limit);
                    self.reject(id, reject, Ask::CLOSE);
                    return Step::Again;
                }
                Err(chunked::Error::Malformed(what)) => {
                    self.reject(
                        id,
                        Reject::new(400, format!("malformed chunked body: {what}")),
                        Ask::CLOSE,
                    );
                    return Step::Again;
                }
            },
        };
        if !done {
            return self.read_more(id);
        }
        let state = conn.finish_body();
        self.on_request(id, state.head, state.body);
        Step::Again
    }

    /// Reads once more for a head or body in progress.
    fn read_more(&mut self, id: ConnId) -> Step {
        let conn = self.conns.get(id).expect("driven connection is open");
        let before = conn.inbuf.len();
        match conn.read_some(&mut self.bufs) {
            Ok(Input::Data) => {
                self.turn.bytes += conn.inbuf.len() - before;
                // The header timeout counts from the first byte, not per read.
                if conn.start_head() {
                    self.set_deadline(id, self.now + self.config.header_timeout);
                }
                Step::Again
            }
            Ok(Input::WouldBlock) => {
                conn.release_inbuf(&mut self.bufs);
                Step::Wait
            }
            Ok(Input::Eof) => {
                self.on_read_eof(id);
                Step::Wait
            }
            Err(e) => {
                debug!("{id:?}: read failed while reading a request: {e}");
                self.close(id);
                Step::Wait
            }
        }
    }

    /// A held long-poll or Bayeux connect keeps reading, to notice the client
    /// leaving, but keeps what arrives (a pipelined request) for after the
    /// answer, up to a limit; past it the bytes wait in the kernel.
    fn hold_input(&mut self, id: ConnId) -> Step {
        loop {
            let conn = self.conns.get(id).expect("driven connection is open");
            if conn.inbuf.len() >= MAX_HEAD_BYTES {
                return Step::Wait;
            }
            match conn.read_some(&mut self.bufs) {
                Ok(Input::Data) => continue,
                Ok(Input::WouldBlock) => {
                    conn.release_inbuf(&mut self.bufs);
                    return Step::Wait;
                }
                Ok(Input::Eof) | Err(_) => {
                    self.close(id);
                    return Step::Wait;
                }
            }
        }
    }

    /// Streams and closing connections expect nothing more from the client;
    /// only its leaving matters.
    fn discard_input(&mut self, id: ConnId) -> Step {
        let conn = self.conns.get(id).expect("driven connection is open");
        let budget = self.turn.bytes_left();
        match conn.discard_input(budget) {
            Ok(Input::Data) => {
                // More may be waiting; the drive loop sees the turn spent.
                self.turn.bytes += budget;
                return Step::Again;
            }
            Ok(Input::WouldBlock) => {}
            Ok(Input::Eof) => self.on_read_eof(id),
            Err(_) => self.close(id),
        }
        Step::Wait
    }

    /// The client has half-closed. With nothing queued for it, the connection
    /// is done; with a response still queued, reading stops but writing goes
    /// on until the output is out (or the send timeout), then it closes. A
    /// client that sends its request and shuts its write side is legitimate.
    fn on_read_eof(&mut self, id: ConnId) {
        let conn = self.conns.get(id).expect("driven connection is open");
        if conn.out.is_empty() || matches!(conn.state(), State::Streaming { .. }) {
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

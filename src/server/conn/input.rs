//! The request side of one connection, one step at a time: parse a head,
//! take a body's bytes, read once more, hold or throw away what a parked
//! connection is sent. Each step is given only the connection, the pool of
//! read buffers and the turn's budget, and says what happened (`Progress`);
//! `server::read::drive` turns that into what the server does (admit and
//! answer a request, arm a timeout, close). Like httparse's `Partial`, "need
//! more bytes" is not an error here: it is `Wait`.

use std::io;

use super::io::Input;
use super::{BodyReader, BodyState, BufPool, Conn, State};
use crate::http::chunked;
use crate::http::request::{self, Parsed, RequestHead, MAX_HEAD_BYTES};
use crate::http::Reject;
use crate::ws::frame::{Event, Fail};

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
pub struct Turn {
    bytes: usize,
    requests: usize,
}

impl Turn {
    pub fn spent(&self) -> bool {
        self.bytes >= MAX_BYTES_PER_TURN || self.requests >= MAX_REQUESTS_PER_TURN
    }

    fn bytes_left(&self) -> usize {
        MAX_BYTES_PER_TURN.saturating_sub(self.bytes)
    }
}

/// What one step found.
pub enum Progress {
    /// Something was done; step again.
    Again,
    /// Nothing more until the socket is readable again (or the queued
    /// output drains, for a pipelining client that does not read).
    Wait,
    /// The first byte of a kept-alive connection's next request: the header
    /// timeout counts from now. Step again.
    HeadStarted,
    /// A complete request head, taken off the input.
    Head(RequestHead),
    /// A complete request with its body.
    Request(Box<BodyState>),
    /// Framing that cannot be trusted: answer with this and close.
    Refuse(Reject),
    /// A WebSocket's peer sent a whole message (in `Conn::ws_message`),
    /// a control frame, or a close.
    Frame(Event),
    /// A WebSocket's peer broke the protocol: close with this code.
    FrameFail(Fail),
    /// The client half-closed.
    Eof,
    /// The client left, or the socket failed, where nothing is owed to it.
    Gone,
    /// Reading failed.
    Failed(io::Error),
}

impl Conn {
    /// `AwaitingHead`: parse what is buffered, or read more. A client that
    /// pipelines requests without reading the answers waits here, so it can
    /// queue at most one answer past `max_queued`; the writable edge that
    /// drains the queue drives it again.
    pub fn step_head(
        &mut self,
        bufs: &mut BufPool,
        turn: &mut Turn,
        max_queued: usize,
    ) -> Progress {
        if self.out.queued() > max_queued {
            return Progress::Wait;
        }
        match request::parse(&self.inbuf) {
            Ok(Parsed::Partial) => self.read_more(bufs, turn),
            Ok(Parsed::Complete { head, len }) => {
                self.inbuf.drain(..len);
                turn.requests += 1;
                Progress::Head(head)
            }
            Err(reject) => Progress::Refuse(reject),
        }
    }

    /// `Body`: move what is buffered into the body, or read more.
    pub fn step_body(&mut self, bufs: &mut BufPool, turn: &mut Turn) -> Progress {
        let (state, inbuf) = self.body_and_input().expect("in Body state");
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
                    return Progress::Refuse(super::super::web::too_large(*limit))
                }
                Err(chunked::Error::Malformed(what)) => {
                    let why = format!("malformed chunked body: {what}");
                    return Progress::Refuse(Reject::new(400, why));
                }
            },
        };
        match done {
            true => Progress::Request(self.finish_body()),
            false => self.read_more(bufs, turn),
        }
    }

    /// `WebSocket`: decode what is buffered up to the next whole message or
    /// control frame, or read more. Like a pipelining client, a peer that
    /// sends faster than it reads (an echo, pongs) is not read while more
    /// than `max_queued` bytes wait to go to it.
    pub fn step_ws(
        &mut self,
        bufs: &mut BufPool,
        turn: &mut Turn,
        max_queued: usize,
        max_message: usize,
    ) -> Progress {
        if self.out.queued() > max_queued {
            return Progress::Wait;
        }
        let State::WebSocket(ws) = &mut self.state else {
            unreachable!("step_ws outside a WebSocket");
        };
        if !self.inbuf.is_empty() {
            let reader = ws.reader.get_or_insert_with(Box::default);
            match reader
                .decoder
                .decode(&self.inbuf, &mut reader.message, max_message)
            {
                Ok((used, event)) => {
                    self.inbuf.drain(..used);
                    if let Some(event) = event {
                        return Progress::Frame(event);
                    }
                }
                Err(fail) => return Progress::FrameFail(fail),
            }
        }
        // Between messages the decoder and buffer are let go, so a parked
        // WebSocket costs what a parked stream does.
        if ws
            .reader
            .as_ref()
            .is_some_and(|r| r.decoder.is_idle() && r.message.is_empty())
        {
            ws.reader = None;
        }
        self.read_more(bufs, turn)
    }

    /// The last whole message a WebSocket peer sent, to be used before the
    /// next step; `clear_ws_message` makes room for the next.
    pub fn ws_message(&mut self) -> &mut Vec<u8> {
        let State::WebSocket(ws) = &mut self.state else {
            unreachable!("a message outside a WebSocket");
        };
        &mut ws.reader.as_mut().expect("a message was read").message
    }

    /// Reads once more for a head or body in progress.
    fn read_more(&mut self, bufs: &mut BufPool, turn: &mut Turn) -> Progress {
        let before = self.inbuf.len();
        match self.read_some(bufs) {
            Ok(Input::Data) => {
                turn.bytes += self.inbuf.len() - before;
                match self.start_head() {
                    true => Progress::HeadStarted,
                    false => Progress::Again,
                }
            }
            Ok(Input::WouldBlock) => {
                self.release_inbuf(bufs);
                Progress::Wait
            }
            Ok(Input::Eof) => Progress::Eof,
            Err(e) => Progress::Failed(e),
        }
    }

    /// `Polling`, `Held` or `Waiting`: keep reading, to notice the client leaving, but
    /// keep what arrives (a pipelined request) for after the answer, up to a
    /// limit; past it the bytes wait in the kernel.
    pub fn step_held(&mut self, bufs: &mut BufPool) -> Progress {
        loop {
            if self.inbuf.len() >= MAX_HEAD_BYTES {
                return Progress::Wait;
            }
            match self.read_some(bufs) {
                Ok(Input::Data) => continue,
                Ok(Input::WouldBlock) => {
                    self.release_inbuf(bufs);
                    return Progress::Wait;
                }
                Ok(Input::Eof) | Err(_) => return Progress::Gone,
            }
        }
    }

    /// `Streaming` or `Closing`: the client has nothing more to send that
    /// matters, only its leaving does; what it sends is thrown away, within
    /// the turn's budget.
    pub fn step_discard(&mut self, turn: &mut Turn) -> Progress {
        let budget = turn.bytes_left();
        match self.discard_input(budget) {
            Ok(Input::Data) => {
                // More may be waiting; the drive loop sees the turn spent.
                turn.bytes += budget;
                Progress::Again
            }
            Ok(Input::WouldBlock) => Progress::Wait,
            Ok(Input::Eof) => Progress::Eof,
            Err(_) => Progress::Gone,
        }
    }
}

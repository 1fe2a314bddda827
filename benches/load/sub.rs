//! One SSE subscriber's connection as a state machine: connecting, sending its request, reading
//! the response head, then streaming, where every event read is handed to the worker's tally.

use std::io::{self, Read, Write};

use crate::http::{self, Body};
use crate::net::now_ns;
use crate::sse::SseParser;
use crate::tally::{Seen, Tally};

/// One subscriber; its state owns what that state needs.
pub struct Sub {
    pub stream: mio::net::TcpStream,
    pub started_ns: u64,
    pub state: State,
}

pub enum State {
    Connecting,
    /// Request sent; the response head accumulates here until complete.
    Head(Vec<u8>),
    Streaming {
        body: Body,
        sse: SseParser,
        seen: Seen,
    },
}

/// What happened to a subscriber during one readiness event.
pub enum Outcome {
    Alive,
    Held,
    Failed,
    Dropped,
}

/// What a subscriber needs from its worker while reading: the shared read buffer, the tally,
/// how many subscribers are live, and the report lines being written.
pub struct Ctx<'a> {
    pub request: &'a [u8],
    pub buf: &'a mut [u8],
    pub tally: &'a mut Tally,
    pub live: u32,
    pub out: &'a mut Vec<u8>,
}

/// Advances one subscriber on a readiness event.
pub fn on_event(sub: &mut Sub, cx: &mut Ctx) -> Outcome {
    let Ctx {
        request,
        buf,
        tally,
        live,
        out,
    } = cx;
    let live = *live;
    if let State::Connecting = sub.state {
        match sub.stream.take_error() {
            Ok(None) => {}
            _ => return Outcome::Failed,
        }
        if sub.stream.peer_addr().is_err() {
            return Outcome::Alive; // Not connected yet; a later event will say.
        }
        // A fresh socket's send buffer always takes a request this small in one write.
        match sub.stream.write(request) {
            Ok(n) if n == request.len() => sub.state = State::Head(Vec::with_capacity(512)),
            _ => return Outcome::Failed,
        }
    }
    let mut outcome = Outcome::Alive;
    loop {
        let n = match sub.stream.read(buf) {
            Ok(0) => return gone(&sub.state, &outcome),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return outcome,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return gone(&sub.state, &outcome),
        };
        let now = now_ns();
        match &mut sub.state {
            State::Head(head) => {
                head.extend_from_slice(&buf[..n]);
                match http::parse_head(head) {
                    Ok(None) => {}
                    Ok(Some(h)) if h.status == 200 => {
                        // The body's first bytes may have come with the head.
                        let rest = head.split_off(h.len);
                        let (mut body, mut sse, mut seen) =
                            (Body::new(h.framing), SseParser::default(), tally.new_seen());
                        if feed(
                            &mut body,
                            &mut sse,
                            &mut seen,
                            &rest,
                            tally,
                            now,
                            live + 1,
                            out,
                        )
                        .is_err()
                        {
                            return Outcome::Failed;
                        }
                        sub.state = State::Streaming { body, sse, seen };
                        outcome = Outcome::Held;
                    }
                    Ok(Some(h)) => {
                        log::warn!(
                            "subscribe answered {} while reading the response head",
                            h.status
                        );
                        return Outcome::Failed;
                    }
                    Err(e) => {
                        log::warn!("{e} while reading the subscribe response head");
                        return Outcome::Failed;
                    }
                }
            }
            State::Streaming { body, sse, seen } => {
                if feed(body, sse, seen, &buf[..n], tally, now, live, out).is_err() {
                    return Outcome::Dropped;
                }
            }
            State::Connecting => unreachable!("the request is sent before reading"),
        }
        // A short read from a TCP socket means its receive queue is empty, and data arriving
        // later raises a new edge, so the usual read that returns EAGAIN is skipped: that halves
        // the generator's system calls per delivery.
        if n < buf.len() {
            return outcome;
        }
    }
}

/// A subscriber whose connection ended was dropped if it had been counted as held, else it failed.
fn gone(state: &State, outcome: &Outcome) -> Outcome {
    match (state, outcome) {
        (State::Streaming { .. }, Outcome::Alive) => Outcome::Dropped,
        _ => Outcome::Failed,
    }
}

/// Decodes body framing and events from one read, recording each delivery.
#[allow(clippy::too_many_arguments)]
fn feed(
    body: &mut Body,
    sse: &mut SseParser,
    seen: &mut Seen,
    input: &[u8],
    tally: &mut Tally,
    now: u64,
    live: u32,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    body.feed(input, &mut |payload| {
        sse.feed(payload, &mut |d| {
            if let Some(seq) = tally.record(seen, d, now, live) {
                writeln!(out, "done {seq} {}", tally.last_at(seq)).unwrap();
            }
        })
    })?;
    if body.is_done() {
        return Err("stream ended".into());
    }
    Ok(())
}

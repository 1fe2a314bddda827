//! One subscriber's connection as a state machine: connecting, sending its request, reading
//! the response head, then streaming (SSE) or reading frames (WebSocket), where every delivery
//! read is handed to the worker's tally.

use std::borrow::Cow;
use std::io::{self, Read, Write};

use crate::http::{self, Body};
use crate::net::now_ns;
use crate::sse::SseParser;
use crate::tally::{Seen, Tally};
use crate::ws::{self, Frame, Rng, WsReader};

/// One subscriber; its state owns what that state needs.
pub struct Sub {
    pub stream: mio::net::TcpStream,
    pub started_ns: u64,
    pub state: State,
}

pub enum State {
    Connecting,
    /// Request sent; the response head accumulates here until complete. A WebSocket subscriber
    /// keeps the key it sent, to check the server's accept value.
    Head(Vec<u8>, Option<String>),
    Streaming {
        body: Body,
        sse: SseParser,
        seen: Seen,
    },
    /// Upgraded: reading the server's frames.
    Frames {
        ws: WsReader,
        seen: Seen,
    },
}

impl State {
    pub fn is_held(&self) -> bool {
        matches!(self, State::Streaming { .. } | State::Frames { .. })
    }
}

/// How subscribers subscribe: an SSE GET (the same request for all), or a WebSocket upgrade of
/// the same URL (a fresh key for each).
pub enum Transport {
    Sse { request: Vec<u8> },
    Ws { path: String, host: String },
}

impl Transport {
    pub fn new(ws: bool, path: String, host: &str) -> Transport {
        if ws {
            return Transport::Ws {
                path,
                host: host.to_string(),
            };
        }
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
        );
        Transport::Sse {
            request: request.into_bytes(),
        }
    }
}

/// What happened to a subscriber during one readiness event.
pub enum Outcome {
    Alive,
    Held,
    Failed,
    Dropped,
}

/// What a subscriber needs from its worker while reading: how to subscribe, the shared read
/// buffer, the tally, how many subscribers are live, the report lines being written, and the
/// randomness for WebSocket keys and masks.
pub struct Ctx<'a> {
    pub transport: &'a Transport,
    pub buf: &'a mut [u8],
    pub tally: &'a mut Tally,
    pub live: u32,
    pub out: &'a mut Vec<u8>,
    pub rng: &'a mut Rng,
}

/// Advances one subscriber on a readiness event.
pub fn on_event(sub: &mut Sub, cx: &mut Ctx) -> Outcome {
    let Ctx {
        transport,
        buf,
        tally,
        live,
        out,
        rng,
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
        let (request, key) = match transport {
            Transport::Sse { request } => (Cow::Borrowed(&request[..]), None),
            Transport::Ws { path, host } => {
                let key = ws::new_key(rng);
                let request = ws::upgrade_request(path, host, &key).into_bytes();
                (Cow::Owned(request), Some(key))
            }
        };
        // A fresh socket's send buffer always takes a request this small in one write.
        match sub.stream.write(&request) {
            Ok(n) if n == request.len() => sub.state = State::Head(Vec::with_capacity(512), key),
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
        let mut to = Tallying {
            tally,
            out,
            now: now_ns(),
            live,
        };
        let input = &buf[..n];
        let result = match &mut sub.state {
            State::Head(head, key) => {
                head.extend_from_slice(input);
                match http::parse_head(head) {
                    Ok(None) => Ok(()),
                    Ok(Some(h)) => match start(h, head, key.as_deref(), to.tally) {
                        Ok((state, rest)) => {
                            sub.state = state;
                            outcome = Outcome::Held;
                            // The stream's first bytes may have come with the head.
                            to.live += 1;
                            to.stream(&mut sub.state, &mut sub.stream, rng, &rest)
                        }
                        Err(e) => Err(e),
                    },
                    Err(e) => Err(format!("{e} while reading the subscribe response head")),
                }
            }
            state => to.stream(state, &mut sub.stream, rng, input),
        };
        if let Err(e) = result {
            if !matches!(outcome, Outcome::Alive) || !sub.state.is_held() {
                log::warn!("{e}");
                return Outcome::Failed;
            }
            log::warn!("{e} while streaming");
            return Outcome::Dropped;
        }
        // A short read from a TCP socket means its receive queue is empty, and data arriving
        // later raises a new edge, so the usual read that returns EAGAIN is skipped: that halves
        // the generator's system calls per delivery.
        if n < buf.len() {
            return outcome;
        }
    }
}

/// The state a complete response head leads to, and the body bytes that came with it: `200`
/// starts an SSE stream, `101` with the right accept value a WebSocket.
fn start(
    h: http::Head,
    head: &mut Vec<u8>,
    key: Option<&str>,
    tally: &Tally,
) -> Result<(State, Vec<u8>), String> {
    let rest = head.split_off(h.len);
    let state = match (h.status, key) {
        (200, None) => State::Streaming {
            body: Body::new(h.framing),
            sse: SseParser::default(),
            seen: tally.new_seen(),
        },
        (101, Some(key)) => {
            ws::check_upgrade(head, key)?;
            State::Frames {
                ws: WsReader::default(),
                seen: tally.new_seen(),
            }
        }
        (status, _) => {
            return Err(format!(
                "subscribe answered {status} while reading the response head"
            ))
        }
    };
    Ok((state, rest))
}

/// A subscriber whose connection ended was dropped if it had been counted as held, else it failed.
fn gone(state: &State, outcome: &Outcome) -> Outcome {
    match outcome {
        Outcome::Alive if state.is_held() => Outcome::Dropped,
        _ => Outcome::Failed,
    }
}

/// Where one read's deliveries go: the worker's tally, and its report lines for messages that
/// every live subscriber now has.
struct Tallying<'a> {
    tally: &'a mut Tally,
    out: &'a mut Vec<u8>,
    now: u64,
    live: u32,
}

impl Tallying<'_> {
    fn record(&mut self, seen: &mut Seen, d: crate::sse::Delivery) {
        if let Some(seq) = self.tally.record(seen, d, self.now, self.live) {
            writeln!(self.out, "done {seq} {}", self.tally.last_at(seq)).unwrap();
        }
    }

    /// Decodes one read of a held subscriber's stream and records each delivery; an error means
    /// the stream is over.
    fn stream(
        &mut self,
        state: &mut State,
        stream: &mut mio::net::TcpStream,
        rng: &mut Rng,
        input: &[u8],
    ) -> Result<(), String> {
        match state {
            State::Streaming { body, sse, seen } => {
                body.feed(input, &mut |payload| {
                    sse.feed(payload, &mut |d| self.record(seen, d))
                })?;
                if body.is_done() {
                    return Err("stream ended".into());
                }
                Ok(())
            }
            State::Frames { ws, seen } => {
                // Control frames are answered after the read is decoded; a subscriber sends
                // nothing else.
                let mut reply: Option<(u8, Vec<u8>)> = None;
                ws.feed(input, &mut |f| match f {
                    Frame::Message(m) => {
                        if let Some(d) = ws::parse_message(m) {
                            self.record(seen, d)
                        }
                    }
                    Frame::Ping(p) => reply = Some((10, p.to_vec())),
                    Frame::Pong => {}
                    Frame::Close(code) => {
                        let echo = code.map(u16::to_be_bytes);
                        reply = Some((8, echo.map_or(Vec::new(), |c| c.to_vec())));
                    }
                })?;
                if let Some((opcode, payload)) = reply {
                    let mut frame = Vec::with_capacity(6 + payload.len());
                    let mask = rng.next_u64().to_le_bytes();
                    ws::write_masked(&mut frame, opcode, &payload, mask[..4].try_into().unwrap());
                    // A pong or close is a few bytes on a socket that has sent nothing else, so
                    // the send buffer takes it whole; if not, the server's timeout says so.
                    let _ = stream.write(&frame);
                    if opcode == 8 {
                        return Err("the server closed".into());
                    }
                }
                Ok(())
            }
            State::Connecting | State::Head(..) => unreachable!("only a held stream is fed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tally::Bounds;
    use std::net::{TcpListener, TcpStream};

    /// Reads one masked client frame from `peer` and returns its opcode and unmasked payload.
    fn read_client_frame(peer: &mut TcpStream) -> (u8, Vec<u8>) {
        let mut head = [0u8; 6];
        peer.read_exact(&mut head).unwrap();
        assert_eq!(head[0] & 0x80, 0x80, "FIN");
        assert_eq!(head[1] & 0x80, 0x80, "a client frame must be masked");
        let mut payload = vec![0; (head[1] & 0x7f) as usize];
        peer.read_exact(&mut payload).unwrap();
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= head[2 + i % 4];
        }
        (head[0] & 0x0f, payload)
    }

    #[test]
    fn a_websocket_subscriber_answers_ping_with_pong_and_close_with_close() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut peer, _) = listener.accept().unwrap();
        peer.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut stream = mio::net::TcpStream::from_std(client);
        let mut tally = Tally::new(Bounds {
            measured: 0,
            open: 1,
            total: 1,
            publishers: 1,
        });
        let mut state = State::Frames {
            ws: WsReader::default(),
            seen: tally.new_seen(),
        };
        let (mut out, mut rng) = (Vec::new(), Rng::new(1));
        let mut to = Tallying {
            tally: &mut tally,
            out: &mut out,
            now: 1_000,
            live: 1,
        };
        // A message and a ping in one read: the message counts, the ping gets its pong.
        let input = [&[0x81, 5][..], b"0 500", &[0x89, 2], b"hi"].concat();
        assert_eq!(to.stream(&mut state, &mut stream, &mut rng, &input), Ok(()));
        assert_eq!(read_client_frame(&mut peer), (10, b"hi".to_vec()));
        assert_eq!(to.tally.distinct, 1);
        assert_eq!(to.out, b"done 0 1000\n");
        // A close ends the stream after echoing its code.
        let close = [0x88, 2, 0x03, 0xe8];
        assert!(to
            .stream(&mut state, &mut stream, &mut rng, &close)
            .is_err());
        assert_eq!(read_client_frame(&mut peer), (8, vec![0x03, 0xe8]));
    }
}

//! `halley-floor`: the least a server can do for the benchmark's workloads, so every other
//! server's figures can be read as a ratio to what the kernel allows. It answers every GET
//! (`/sub/...` by convention) with fixed SSE headers and parks the socket; on `POST /pub/...` it
//! formats the event once and writes it to every parked socket with one `write()` each, then
//! answers 201. A GET with `Upgrade: websocket` is answered `101` and parked the same way: a
//! publish is framed once as one unmasked text frame holding the body, and that frame written to
//! every parked WebSocket; what a WebSocket subscriber sends (pongs, a close) is read and dropped. Long-poll has the same floor: `GET /lp/...` is answered at once with the last
//! message, `GET /lpw/...` waits for the next. Channels are ignored: a benchmark run uses one
//! channel on a fresh server.
//!
//! Usage: halley-floor [--listen 127.0.0.1:PORT]; prints `listening on ADDR` once bound.

use std::io::{self, Read, Write};
use std::net::SocketAddr;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

// The generator's pure WebSocket code, for the accept value and the server frame: one copy of
// each. The rest of it (the client side) is unused here.
#[allow(dead_code)]
#[path = "../load/sse.rs"]
mod sse;
#[allow(dead_code)]
#[path = "../load/ws.rs"]
mod ws;

const LISTENER: Token = Token(usize::MAX);
/// A request head or publish body larger than this is not one of the benchmark's.
const MAX_REQUEST: usize = 64 * 1024;
const SSE_HEAD: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n";
const CREATED: &[u8] = b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n";

enum State {
    /// Reading requests; `buf` holds what has arrived of the next one.
    Reading(Vec<u8>),
    ParkedSse,
    ParkedWs,
    ParkedPoll,
}

struct Conn {
    stream: TcpStream,
    state: State,
    /// Bytes a short write left over; sent on the next writable event, before anything newer.
    pending: Vec<u8>,
}

impl Conn {
    /// Writes `bytes` now if nothing is queued, and queues what the socket did not take.
    fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.pending.is_empty() {
            match self.stream.write(bytes) {
                Ok(n) if n == bytes.len() => return Ok(()),
                Ok(n) => self.pending.extend_from_slice(&bytes[n..]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.pending.extend_from_slice(bytes)
                }
                Err(e) => return Err(e),
            }
        } else {
            self.pending.extend_from_slice(bytes);
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        while !self.pending.is_empty() {
            match self.stream.write(&self.pending) {
                Ok(n) => drop(self.pending.drain(..n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// What one complete request asks for.
enum Action {
    Subscribe,
    /// A WebSocket upgrade, with its `Sec-WebSocket-Key`.
    Upgrade(String),
    PollReady,
    PollWait,
    Publish(Vec<u8>),
    NotFound,
}

/// Takes one complete request off the front of `buf`, if there is one.
fn next_request(buf: &mut Vec<u8>) -> io::Result<Option<Action>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() < MAX_REQUEST => return Ok(None),
        _ => return Err(io::Error::other("bad or oversized request")),
    };
    let body_len = req
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| {
            std::str::from_utf8(h.value)
                .ok()?
                .trim()
                .parse::<usize>()
                .ok()
        })
        .unwrap_or(0);
    if body_len > MAX_REQUEST {
        return Err(io::Error::other("oversized body"));
    }
    if buf.len() < head_len + body_len {
        return Ok(None);
    }
    let path = req.path.unwrap_or("");
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).into_owned())
    };
    let upgrade = header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let action = match (req.method.unwrap_or(""), path) {
        ("GET", p) if p.starts_with("/lp/") => Action::PollReady,
        ("GET", p) if p.starts_with("/lpw/") => Action::PollWait,
        ("GET", _) if upgrade => match header("sec-websocket-key") {
            Some(key) => Action::Upgrade(key),
            None => Action::NotFound,
        },
        ("GET", _) => Action::Subscribe,
        ("POST", p) if p.starts_with("/pub/") => {
            Action::Publish(buf[head_len..head_len + body_len].to_vec())
        }
        _ => Action::NotFound,
    };
    buf.drain(..head_len + body_len);
    Ok(Some(action))
}

/// A complete long-poll answer carrying `body`.
fn poll_response(body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

struct Floor {
    conns: Slab<Conn>,
    /// The last published message as a long-poll answer, for `/lp/`.
    last: Vec<u8>,
}

impl Floor {
    fn on_readable(&mut self, key: usize, scratch: &mut [u8]) -> io::Result<()> {
        loop {
            let conn = &mut self.conns[key];
            let n = match conn.stream.read(scratch) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            // Parked subscribers have nothing more to say; what they send is dropped.
            let State::Reading(buf) = &mut conn.state else {
                continue;
            };
            buf.extend_from_slice(&scratch[..n]);
            while let State::Reading(buf) = &mut self.conns[key].state {
                let Some(action) = next_request(buf)? else {
                    break;
                };
                self.on_request(key, action)?;
            }
        }
    }

    fn on_request(&mut self, key: usize, action: Action) -> io::Result<()> {
        match action {
            Action::Subscribe => {
                let conn = &mut self.conns[key];
                conn.state = State::ParkedSse;
                conn.send(SSE_HEAD)
            }
            Action::Upgrade(ws_key) => {
                let conn = &mut self.conns[key];
                conn.state = State::ParkedWs;
                let head = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                    ws::accept_for(ws_key.trim())
                );
                conn.send(head.as_bytes())
            }
            Action::PollReady => {
                let last = std::mem::take(&mut self.last);
                let r = self.conns[key].send(&last);
                self.last = last;
                r
            }
            Action::PollWait => {
                self.conns[key].state = State::ParkedPoll;
                Ok(())
            }
            Action::Publish(body) => {
                self.publish(&body);
                self.conns[key].send(CREATED)
            }
            Action::NotFound => {
                self.conns[key].send(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            }
        }
    }

    /// Formats the message once per transport and writes it to every parked socket.
    fn publish(&mut self, body: &[u8]) {
        let mut event = format!("{:x}\r\ndata: ", body.len() + "data: \n\n".len()).into_bytes();
        event.extend_from_slice(body);
        event.extend_from_slice(b"\n\n\r\n");
        let mut frame = Vec::with_capacity(body.len() + 10);
        ws::write_server_frame(&mut frame, 1, body);
        self.last = poll_response(body);
        let mut dead = Vec::new();
        for (key, conn) in self.conns.iter_mut() {
            let sent = match conn.state {
                State::ParkedSse => conn.send(&event),
                State::ParkedWs => conn.send(&frame),
                State::ParkedPoll => {
                    conn.state = State::Reading(Vec::new());
                    conn.send(&self.last)
                }
                State::Reading(_) => Ok(()),
            };
            if sent.is_err() {
                dead.push(key);
            }
        }
        for key in dead {
            self.conns.remove(key);
        }
    }
}

fn main() -> io::Result<()> {
    let argv: Vec<String> = std::env::args().collect();
    let listen = argv
        .iter()
        .position(|a| a == "--listen")
        .and_then(|i| argv.get(i + 1))
        .map_or("127.0.0.1:0", |s| s);
    let addr: SocketAddr = listen
        .parse()
        .map_err(|_| io::Error::other("--listen wants IP:PORT"))?;
    halley::fd_limit::raise();
    let mut listener = TcpListener::bind(addr)?;
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    println!("listening on {}", listener.local_addr()?);
    io::stdout().flush()?;

    let mut floor = Floor {
        conns: Slab::new(),
        last: poll_response(b""),
    };
    let mut events = Events::with_capacity(1024);
    let mut scratch = vec![0u8; 64 * 1024];
    loop {
        poll.poll(&mut events, None)?;
        for ev in events.iter() {
            if ev.token() == LISTENER {
                loop {
                    match listener.accept() {
                        Ok((mut stream, _)) => {
                            let entry = floor.conns.vacant_entry();
                            poll.registry().register(
                                &mut stream,
                                Token(entry.key()),
                                Interest::READABLE | Interest::WRITABLE,
                            )?;
                            let _ = stream.set_nodelay(true);
                            entry.insert(Conn {
                                stream,
                                state: State::Reading(Vec::new()),
                                pending: Vec::new(),
                            });
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        // Out of descriptors or similar: the rest wait in the backlog.
                        Err(_) => break,
                    }
                }
                continue;
            }
            let key = ev.token().0;
            if !floor.conns.contains(key) {
                continue;
            }
            let mut result = Ok(());
            if ev.is_writable() {
                result = floor.conns[key].flush();
            }
            if result.is_ok() && (ev.is_readable() || ev.is_read_closed()) {
                result = floor.on_readable(key, &mut scratch);
            }
            if result.is_err() && floor.conns.contains(key) {
                floor.conns.remove(key);
            }
        }
    }
}

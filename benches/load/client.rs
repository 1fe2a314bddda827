//! A keep-alive HTTP/1.1 client connection on mio, one request at a time: publishers POST on
//! it and long-poll drivers GET on it. It reports when a whole response has arrived.

use std::io::{self, Read, Write};
use std::net::SocketAddr;

use mio::{Interest, Registry, Token};

use crate::http::{self, Body};

enum State {
    Idle,
    /// The request, written from `sent` on.
    Sending {
        sent: usize,
    },
    Head,
    Body {
        status: u16,
        body: Body,
    },
}

pub struct Conn {
    stream: mio::net::TcpStream,
    request: Vec<u8>,
    head: Vec<u8>,
    state: State,
    /// When the current request was handed to the connection (CLOCK_MONOTONIC ns).
    pub started_ns: u64,
    /// A caller's tag for the request in flight, such as its sequence number.
    pub tag: u64,
}

impl Conn {
    pub fn connect(addr: SocketAddr, registry: &Registry, token: Token) -> io::Result<Conn> {
        let mut stream = mio::net::TcpStream::connect(addr)?;
        registry.register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)?;
        Ok(Conn {
            stream,
            request: Vec::new(),
            head: Vec::new(),
            state: State::Idle,
            started_ns: 0,
            tag: 0,
        })
    }

    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Idle)
    }

    /// Whether the whole request has been written (so the connection is established).
    pub fn is_sent(&self) -> bool {
        matches!(self.state, State::Head | State::Body { .. })
    }

    /// The buffer to write the next request into; it is reused from request to request.
    pub fn request_buf(&mut self) -> &mut Vec<u8> {
        self.request.clear();
        &mut self.request
    }

    /// Starts sending what was written into [`Conn::request_buf`].
    pub fn send(&mut self, tag: u64, now: u64) -> io::Result<()> {
        self.tag = tag;
        self.started_ns = now;
        self.state = State::Sending { sent: 0 };
        self.write_some()
    }

    fn write_some(&mut self) -> io::Result<()> {
        if let State::Sending { sent } = &mut self.state {
            while *sent < self.request.len() {
                match self.stream.write(&self.request[*sent..]) {
                    Ok(n) => *sent += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            self.head.clear();
            self.state = State::Head;
        }
        Ok(())
    }

    /// Handles readiness; returns the status once the whole response has arrived.
    pub fn on_ready(&mut self, buf: &mut [u8]) -> io::Result<Option<u16>> {
        self.write_some()?;
        if matches!(self.state, State::Idle | State::Sending { .. }) {
            // Drain anything unexpected so an edge-triggered readiness is not lost.
            return match self.stream.read(buf) {
                Ok(0) => Err(io::ErrorKind::UnexpectedEof.into()),
                _ => Ok(None),
            };
        }
        loop {
            let n = match self.stream.read(buf) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let mut input = &buf[..n];
            if let State::Head = self.state {
                self.head.extend_from_slice(input);
                let Some(h) = http::parse_head(&self.head).map_err(io::Error::other)? else {
                    continue;
                };
                let rest = self.head.split_off(h.len);
                let mut body = Body::new(h.framing);
                body.feed(&rest, &mut |_: &[u8]| {})
                    .map_err(io::Error::other)?;
                if body.is_done() {
                    self.state = State::Idle;
                    return Ok(Some(h.status));
                }
                self.state = State::Body {
                    status: h.status,
                    body,
                };
                input = &[];
            }
            if let State::Body { status, body } = &mut self.state {
                body.feed(input, &mut |_: &[u8]| {})
                    .map_err(io::Error::other)?;
                if body.is_done() {
                    let status = *status;
                    self.state = State::Idle;
                    return Ok(Some(status));
                }
            }
        }
    }
}

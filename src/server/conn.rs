//! One connection: its socket, its state, and its buffers. The state is an
//! enum whose variants own what that state needs, so a parked subscriber holds
//! its channel and hub key and nothing else: no read buffer, no request.

use std::io::{self, IoSlice, Read, Write};
use std::os::fd::AsRawFd;
use std::rc::Rc;

use mio::net::TcpStream;

use crate::deadline::ConnDeadline;
use crate::encode::Transport;
use crate::http::chunked;
use crate::http::request::RequestHead;
use crate::hub::Kind;
use crate::outq::{Chunk, Debt, OutQueue};

pub enum State {
    /// Waiting for a request head. `started` once its first byte has arrived
    /// (or, for a new connection, once it connected), which is when the
    /// header timeout starts counting; before that, a kept-alive connection
    /// is idle.
    AwaitingHead { started: bool },
    /// Reading a request body; boxed, so the states a connection spends
    /// most of its life in stay small.
    Body(Box<BodyState>),
    /// An SSE or NDJSON subscriber parked on `channel`. HTTP/1.0 clients get
    /// frames without chunk framing and the stream ends with the connection.
    Streaming {
        channel: Rc<str>,
        key: u32,
        transport: Transport,
        http10: bool,
    },
    /// A long-poll held until a message, its timeout, or shutdown.
    Polling {
        channel: Rc<str>,
        key: u32,
        keep_alive: bool,
    },
    /// A Bayeux `/meta/connect` the engine holds until its session has
    /// messages, its deadline, or shutdown; the engine keeps what the reply
    /// needs, keyed by this connection's id.
    Held { keep_alive: bool },
    /// Sending a last response. While output is queued, the send timeout
    /// governs; once it has drained, the write side is shut and input is
    /// drained until the client closes or the linger ends, so the client reads
    /// the response before any RST. `eof` once the client has half-closed:
    /// then there is nothing to drain and the connection closes as soon as
    /// its output is out.
    Closing { eof: bool },
    /// Finished, waiting to be reaped after this batch of events; `sub` is the
    /// hub subscription still to be removed then, and `held_connect` says it
    /// was holding a Bayeux connect (which `Server::close` tells the engine at once).
    Closed {
        sub: Option<Subscription>,
        held_connect: bool,
    },
}

/// A hub subscription: channel, kind and key.
pub type Subscription = (Rc<str>, Kind, u32);

pub struct BodyState {
    pub head: RequestHead,
    pub body: Vec<u8>,
    pub reader: BodyReader,
}

pub enum BodyReader {
    Length {
        left: usize,
    },
    /// A chunked body, refused once it decodes to more than `limit` bytes.
    Chunked {
        decoder: chunked::Decoder,
        limit: usize,
    },
}

pub struct Conn {
    pub socket: TcpStream,
    pub gen: u32,
    pub state: State,
    /// Bytes read but not yet parsed; empty (and unallocated) when idle.
    pub inbuf: Vec<u8>,
    pub out: OutQueue,
    /// The one deadline of this connection, and which of its entries in the
    /// deadline queue is live.
    pub deadline: ConnDeadline,
}

/// Why a send failed: either way the connection must close.
#[derive(Debug)]
pub enum SendError {
    Io(io::Error),
    /// Live output queued past `--max-queued-bytes`.
    TooSlow,
}

/// What a read attempt found.
pub enum Input {
    Data,
    WouldBlock,
    Eof,
}

impl Conn {
    /// A new connection's first request counts as started when it connects,
    /// so its header timeout is armed once, at accept.
    pub fn new(socket: TcpStream, gen: u32) -> Conn {
        Conn {
            socket,
            gen,
            state: State::AwaitingHead { started: true },
            inbuf: Vec::new(),
            out: OutQueue::default(),
            deadline: ConnDeadline::default(),
        }
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed { .. })
    }

    /// How a parked stream encodes messages, if this is one: its transport,
    /// and whether it is HTTP/1.0 (frames without chunk framing).
    pub fn stream_kind(&self) -> Option<(Transport, bool)> {
        match self.state {
            State::Streaming {
                transport, http10, ..
            } => Some((transport, http10)),
            _ => None,
        }
    }

    /// Moves to `Closed`, keeping the hub subscription to undo at reaping.
    /// Returns false if it was closed already.
    pub fn close(&mut self) -> bool {
        if self.is_closed() {
            return false;
        }
        let held_connect = matches!(self.state, State::Held { .. });
        let sub = self.unpark();
        self.state = State::Closed { sub, held_connect };
        true
    }

    /// Takes a parked connection out of its channel to answer it: the state
    /// becomes a request being answered, and the hub subscription it held is
    /// returned for the caller to undo (or drop, if the channel is gone).
    pub fn unpark(&mut self) -> Option<Subscription> {
        match std::mem::replace(&mut self.state, State::AwaitingHead { started: true }) {
            State::Streaming { channel, key, .. } => Some((channel, Kind::Stream, key)),
            State::Polling { channel, key, .. } => Some((channel, Kind::Poll, key)),
            other => {
                self.state = other;
                None
            }
        }
    }

    /// Sends a response (or part of one): written at once when nothing is
    /// queued, and only what the socket did not take is copied into the queue.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        let written = self.write_now(&[bytes])?;
        if written < bytes.len() {
            self.out
                .push(Chunk::Owned(bytes[written..].to_vec()), Debt::Owed);
        }
        Ok(())
    }

    /// Sends a response head and a borrowed body in one `writev`; only what
    /// the socket does not take is copied into the queue.
    pub fn send_head_and_body(&mut self, head: &[u8], body: &[u8]) -> io::Result<()> {
        let written = self.write_now(&[head, body])?;
        if written < head.len() {
            self.out
                .push(Chunk::Owned(head[written..].to_vec()), Debt::Owed);
        }
        let body_written = written.saturating_sub(head.len());
        if body_written < body.len() {
            self.out
                .push(Chunk::Owned(body[body_written..].to_vec()), Debt::Owed);
        }
        Ok(())
    }

    /// Sends an owned response head and a shared body in one `writev`.
    pub fn send_head_and_shared(&mut self, head: &[u8], body: &Rc<[u8]>) -> io::Result<()> {
        let written = self.write_now(&[head, body])?;
        if written < head.len() {
            self.out
                .push(Chunk::Owned(head[written..].to_vec()), Debt::Owed);
        }
        let body_written = written.saturating_sub(head.len());
        if body_written < body.len() {
            let rest = Chunk::Shared(body.clone(), body_written..body.len());
            self.out.push(rest, Debt::Owed);
        }
        Ok(())
    }

    /// Queues owed bytes without writing; `flush` sends a batch of them in
    /// as few `writev` calls as the socket allows.
    pub fn queue_owed(&mut self, chunk: Chunk) {
        self.out.push(chunk, Debt::Owed);
    }

    /// Sends a range of a shared frame to a subscriber; a short write queues
    /// the rest as a reference to the same buffer. Fails with `TooSlow` once
    /// live output queues past `max_queued`.
    pub fn send_live(
        &mut self,
        bytes: &Rc<[u8]>,
        range: std::ops::Range<usize>,
        max_queued: usize,
    ) -> Result<(), SendError> {
        let written = self
            .write_now(&[&bytes[range.clone()]])
            .map_err(SendError::Io)?;
        if written < range.len() {
            let rest = Chunk::Shared(bytes.clone(), range.start + written..range.end);
            self.out.push(rest, Debt::Live);
        }
        self.check_live(max_queued)
    }

    /// `send_live` for a static frame (a heartbeat).
    pub fn send_live_static(
        &mut self,
        bytes: &'static [u8],
        max_queued: usize,
    ) -> Result<(), SendError> {
        let written = self.write_now(&[bytes]).map_err(SendError::Io)?;
        if written < bytes.len() {
            self.out.push(Chunk::Static(&bytes[written..]), Debt::Live);
        }
        self.check_live(max_queued)
    }

    /// Writes queued output; called when the socket becomes writable.
    /// Returns how many bytes left the queue.
    pub fn flush(&mut self) -> io::Result<usize> {
        self.out.write_to(&self.socket)
    }

    /// Tries to write `parts` straight to the socket, unless output is already
    /// queued (then order demands they wait behind it). Returns bytes written.
    fn write_now(&mut self, parts: &[&[u8]]) -> io::Result<usize> {
        if !self.out.is_empty() {
            return Ok(0);
        }
        loop {
            // One part goes out with a plain `write` (send(2)): fan-out makes
            // one such call per subscriber, and writev(2) of a single buffer
            // costs measurably more kernel time per call.
            let result = match parts {
                [a] => (&self.socket).write(a),
                [a, b] => (&self.socket).write_vectored(&[IoSlice::new(a), IoSlice::new(b)]),
                _ => unreachable!("at most two parts"),
            };
            return match result {
                Ok(n) => Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            };
        }
    }

    fn check_live(&self, max_queued: usize) -> Result<(), SendError> {
        match self.out.live() > max_queued {
            true => Err(SendError::TooSlow),
            false => Ok(()),
        }
    }

    /// Reads once into the input buffer (taking a spare buffer from `pool` if
    /// it has none), at most `READ_CHUNK` bytes.
    pub fn read_some(&mut self, pool: &mut BufPool) -> io::Result<Input> {
        if self.inbuf.capacity() == 0 {
            self.inbuf = pool.take();
        }
        // recv(2) straight into the spare capacity: the safe `read` wants an
        // initialised slice, and zeroing READ_CHUNK bytes before every read
        // was the largest user-space cost of a small request.
        self.inbuf.reserve(READ_CHUNK);
        let spare = self.inbuf.spare_capacity_mut();
        // SAFETY: recv writes at most READ_CHUNK bytes into `spare`, which
        // `reserve` made at least that long, and returns how many it wrote.
        let n = unsafe {
            libc::recv(
                self.socket.as_raw_fd(),
                spare.as_mut_ptr().cast(),
                READ_CHUNK,
                0,
            )
        };
        let result = match n {
            -1 => Err(io::Error::last_os_error()),
            n => {
                // SAFETY: the `n` bytes after the old length were just written.
                unsafe { self.inbuf.set_len(self.inbuf.len() + n as usize) };
                Ok(n as usize)
            }
        };
        match result {
            Ok(0) => Ok(Input::Eof),
            Ok(_) => Ok(Input::Data),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Input::WouldBlock),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(Input::Data),
            Err(e) => Err(e),
        }
    }

    /// Reads and throws away whatever the client sends (a parked stream has
    /// nothing more to receive), until the socket would block or closes, or
    /// `budget` bytes are gone: then `Data`, as more may be waiting.
    pub fn discard_input(&mut self, budget: usize) -> io::Result<Input> {
        let mut scratch = [0u8; 1024];
        let mut read = 0;
        loop {
            if read >= budget {
                return Ok(Input::Data);
            }
            match (&self.socket).read(&mut scratch) {
                Ok(0) => return Ok(Input::Eof),
                Ok(n) => read += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Input::WouldBlock),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Gives the input buffer back to `pool` once it is empty, so an idle or
    /// parked connection holds no read buffer.
    pub fn release_inbuf(&mut self, pool: &mut BufPool) {
        if self.inbuf.is_empty() && self.inbuf.capacity() > 0 {
            pool.give(std::mem::take(&mut self.inbuf));
        }
    }
}

/// Bytes asked of the kernel per read.
pub const READ_CHUNK: usize = 16 * 1024;

/// Spare input buffers, so requests on busy connections reuse memory instead
/// of allocating, while idle connections keep none.
#[derive(Default)]
pub struct BufPool {
    spare: Vec<Vec<u8>>,
}

/// Spare buffers kept at most; beyond this they are freed.
const MAX_SPARE_BUFS: usize = 64;

impl BufPool {
    fn take(&mut self) -> Vec<u8> {
        self.spare
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(READ_CHUNK))
    }

    fn give(&mut self, mut buf: Vec<u8>) {
        // Buffers that grew for a large body are not worth keeping.
        if self.spare.len() < MAX_SPARE_BUFS && buf.capacity() <= 4 * READ_CHUNK {
            buf.clear();
            self.spare.push(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The slab holds one `Conn` per connection, parked or not; this is most
    /// of what a held subscriber costs in user space.
    #[test]
    fn a_connection_stays_small() {
        let size = std::mem::size_of::<Conn>();
        assert!(size <= 88, "Conn grew to {size} bytes");
    }
}

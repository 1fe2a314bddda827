//! A connection's IO: sending (at once when the socket takes it, queued
//! when it does not) and reading into a pooled buffer. What state the
//! connection is in, and every move between states, is `conn/mod.rs`'s.

use std::io::{self, IoSlice, Read, Write};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::Conn;
use crate::outq::{Chunk, Debt};

/// Why a send failed: either way the connection must close.
#[derive(Debug)]
pub enum SendError {
    Io(io::Error),
    /// Live output queued past `--max-queued-bytes`.
    TooSlow,
}

/// What `send_progress` found.
pub enum SendProgress {
    /// The output moves; look again at `check_at`.
    Moving { check_at: Instant },
    /// Nothing has moved for a whole send timeout.
    Stalled,
}

/// What a read attempt found.
pub enum Input {
    Data,
    WouldBlock,
    Eof,
}

impl Conn {
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
        let body_written = self.queue_head_rest(head, written);
        if body_written < body.len() {
            self.out
                .push(Chunk::Owned(body[body_written..].to_vec()), Debt::Owed);
        }
        Ok(())
    }

    /// Sends an owned response head and a shared body in one `writev`.
    pub fn send_head_and_shared(&mut self, head: &[u8], body: &Rc<[u8]>) -> io::Result<()> {
        let written = self.write_now(&[head, body])?;
        let body_written = self.queue_head_rest(head, written);
        if body_written < body.len() {
            let rest = Chunk::Shared(body.clone(), body_written..body.len());
            self.out.push(rest, Debt::Owed);
        }
        Ok(())
    }

    /// After a write of a head and a body that took `written` bytes: queues
    /// what is left of the head, and returns how much of the body went out.
    fn queue_head_rest(&mut self, head: &[u8], written: usize) -> usize {
        if written < head.len() {
            self.out
                .push(Chunk::Owned(head[written..].to_vec()), Debt::Owed);
        }
        written.saturating_sub(head.len())
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

    /// Bytes written to the socket that the kernel has not yet seen the
    /// client acknowledge (SIOCOUTQ); it shrinks as the client reads. One
    /// ioctl, made only for connections whose output is backed up.
    fn kernel_unsent(&self) -> usize {
        let mut n: libc::c_int = 0;
        // SAFETY: TIOCOUTQ (SIOCOUTQ) on a TCP socket we own writes one int
        // through the pointer, which points at `n`.
        let rc = unsafe { libc::ioctl(self.socket.as_raw_fd(), libc::TIOCOUTQ, &mut n) };
        match rc {
            0 => n.max(0) as usize,
            _ => 0,
        }
    }

    /// Starts the send timeout's clock again at `now`: queued output has
    /// just moved (a write took some), or has just been queued.
    pub fn note_send_progress(&mut self, now: Instant) {
        let unsent = self.kernel_unsent();
        self.out.note_progress(now, unsent);
    }

    /// Whether queued output has moved within `timeout` of `now`: a write
    /// took bytes from the queue, or the client read some of what the kernel
    /// holds for it. The first ask starts the clock.
    pub fn send_progress(&mut self, now: Instant, timeout: Duration) -> SendProgress {
        let Some((since, unsent_then)) = self.out.last_progress() else {
            self.note_send_progress(now);
            return SendProgress::Moving {
                check_at: now + timeout,
            };
        };
        if since + timeout > now {
            return SendProgress::Moving {
                check_at: since + timeout,
            };
        }
        // No write for a whole timeout, but the client may still be reading
        // what the kernel holds for it: that is progress too.
        let unsent = self.kernel_unsent();
        if unsent < unsent_then {
            self.out.note_progress(now, unsent);
            return SendProgress::Moving {
                check_at: now + timeout,
            };
        }
        SendProgress::Stalled
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

//! A connection's pending output. Most writes never come here: the server
//! writes at once and queues only what a short write left over, keeping
//! shared message bytes shared (an `Rc` and an offset, no copy).

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::ops::Range;
use std::rc::Rc;
use std::time::Instant;

/// Bytes waiting to be written.
pub enum Chunk {
    Static(&'static [u8]),
    /// A range of a buffer shared with other connections.
    Shared(Rc<[u8]>, Range<usize>),
    Owned(Vec<u8>),
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Static(b) => b,
            Chunk::Shared(b, range) => &b[range.clone()],
            Chunk::Owned(b) => b,
        }
    }
}

/// Whom queued bytes are for. A response, or the replay a new subscriber
/// asked for, is *owed*: the client has had no chance to read it yet, so it
/// never makes the client a slow consumer. *Live* output is what fan-out
/// pushes afterwards; only that counts against `--max-queued-bytes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Debt {
    Owed,
    Live,
}

/// A connection's pending output, allocated only while there is some: most
/// connections never have a short write, and a parked subscriber should not
/// carry an empty queue.
#[derive(Default)]
pub struct OutQueue {
    pending: Option<Box<Pending>>,
}

impl OutQueue {
    pub fn is_empty(&self) -> bool {
        self.pending.is_none()
    }

    /// Bytes queued in all.
    pub fn queued(&self) -> usize {
        self.pending.as_ref().map_or(0, |p| p.queued)
    }

    /// Live bytes queued: the figure checked against `--max-queued-bytes`.
    pub fn live(&self) -> usize {
        self.pending.as_ref().map_or(0, |p| p.queued - p.owed)
    }

    /// When the output last moved, and how many bytes the kernel then still
    /// held unsent in the socket: a write took bytes from the queue, the
    /// client read some of what the kernel held, or the server started the
    /// send timeout's clock (`note_progress`). `None` while nothing is
    /// queued or the clock was never started. The send timeout counts from
    /// here, so a slow reader that keeps reading is never cut, even while its
    /// kernel buffer (megabytes, once autotuned) takes longer than the
    /// timeout to drain between two writes.
    pub fn last_progress(&self) -> Option<(Instant, usize)> {
        self.pending
            .as_ref()
            .and_then(|p| p.progress_at.map(|at| (at, p.kernel_unsent)))
    }

    /// Records that the output moved at `now`, with `kernel_unsent` bytes
    /// still in the socket; nothing when the queue is empty.
    pub fn note_progress(&mut self, now: Instant, kernel_unsent: usize) {
        if let Some(p) = &mut self.pending {
            p.progress_at = Some(now);
            p.kernel_unsent = kernel_unsent;
        }
    }

    pub fn push(&mut self, chunk: Chunk, debt: Debt) {
        self.pending
            .get_or_insert_with(Box::default)
            .push(chunk, debt);
    }

    /// Writes as much as the socket takes. Returns how many bytes left the
    /// queue; `WouldBlock` is not an error here, it just leaves bytes queued.
    pub fn write_to(&mut self, w: impl Write) -> io::Result<usize> {
        let Some(pending) = &mut self.pending else {
            return Ok(0);
        };
        let written = pending.write_to(w);
        if pending.chunks.is_empty() {
            self.pending = None;
        }
        written
    }
}

#[derive(Default)]
struct Pending {
    chunks: VecDeque<Chunk>,
    /// Bytes of the front chunk already written.
    front_done: usize,
    queued: usize,
    /// Owed bytes among them. They are queued before any live output (a
    /// stream's replay precedes its messages; other connections have no live
    /// output), so writes pay them off first.
    owed: usize,
    /// See `OutQueue::last_progress`. It lives here, not in the connection,
    /// because only a connection with output queued needs it.
    progress_at: Option<Instant>,
    /// The socket's unsent bytes at `progress_at` (see `last_progress`).
    kernel_unsent: usize,
}

/// How many chunks one `writev` takes at most.
const MAX_IOVECS: usize = 64;

impl Pending {
    fn push(&mut self, chunk: Chunk, debt: Debt) {
        let len = chunk.bytes().len();
        self.queued += len;
        if debt == Debt::Owed {
            self.owed += len;
        }
        self.chunks.push_back(chunk);
    }

    /// Writes as much as the socket takes. Returns how many bytes left the
    /// queue; `WouldBlock` is not an error here, it just leaves bytes queued.
    fn write_to(&mut self, mut w: impl Write) -> io::Result<usize> {
        let mut written = 0;
        while !self.chunks.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let mut n_slices = 0;
            for (i, chunk) in self.chunks.iter().take(MAX_IOVECS).enumerate() {
                let skip = if i == 0 { self.front_done } else { 0 };
                slices[i] = IoSlice::new(&chunk.bytes()[skip..]);
                n_slices += 1;
            }
            let n = match w.write_vectored(&slices[..n_slices]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.consume(n);
            written += n;
        }
        Ok(written)
    }

    fn consume(&mut self, mut n: usize) {
        self.queued -= n;
        self.owed = self.owed.saturating_sub(n);
        while n > 0 {
            let left = self.chunks[0].bytes().len() - self.front_done;
            if n < left {
                self.front_done += n;
                return;
            }
            n -= left;
            self.chunks.pop_front();
            self.front_done = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes at most `limit` bytes per call, then blocks.
    struct Trickle {
        out: Vec<u8>,
        limit: usize,
        calls_left: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.calls_left == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.calls_left -= 1;
            let n = buf.len().min(self.limit);
            self.out.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn drains_across_short_writes() {
        let shared: Rc<[u8]> = Rc::from(&b"__shared__"[..]);
        let mut q = OutQueue::default();
        q.push(Chunk::Static(b"static,"), Debt::Owed);
        q.push(Chunk::Shared(shared.clone(), 2..8), Debt::Live);
        q.push(Chunk::Owned(b",owned".to_vec()), Debt::Live);
        assert_eq!((q.queued(), q.live()), (19, 12));

        // Three calls of at most 4 bytes, each within one chunk: 4 + 3 + 4.
        let mut w = Trickle {
            out: Vec::new(),
            limit: 4,
            calls_left: 3,
        };
        assert_eq!(q.write_to(&mut w).unwrap(), 11);
        assert_eq!((q.queued(), q.live()), (8, 8));
        assert!(!q.is_empty());

        w.calls_left = 10;
        assert_eq!(q.write_to(&mut w).unwrap(), 8);
        assert!(q.is_empty());
        assert_eq!(w.out, b"static,shared,owned");
    }

    /// The send timeout's clock lives with the queued bytes: it starts when
    /// noted and is gone once they are, so the next response starts afresh.
    #[test]
    fn progress_is_kept_only_while_bytes_are_queued() {
        let t0 = Instant::now();
        let mut q = OutQueue::default();
        q.note_progress(t0, 0);
        assert_eq!(q.last_progress(), None);
        q.push(Chunk::Static(b"abc"), Debt::Owed);
        assert_eq!(q.last_progress(), None);
        q.note_progress(t0, 0);
        assert_eq!(q.last_progress(), Some((t0, 0)));
        let mut w = Trickle {
            out: Vec::new(),
            limit: 8,
            calls_left: 1,
        };
        q.write_to(&mut w).unwrap();
        assert!(q.is_empty());
        assert_eq!(q.last_progress(), None);
    }
}

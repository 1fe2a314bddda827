//! Accepting connections, and refusing the ones the server cannot keep.
//!
//! A refused connection never enters the connection table: it is answered
//! (`503` past `--max-connections`, `429` past `--max-connections-per-ip`)
//! and closed at once, so a flood of refusals holds no descriptors. Out of
//! descriptors (EMFILE, ENFILE), the spare descriptor (`fd_limit::Spare`) is
//! given back to accept one waiting connection, refuse it and take the spare
//! again, until the listen backlog is empty: clients that connected and went
//! away cost one accept each, not a place in a queue that real clients wait
//! behind. Only when even the spare cannot be had does accepting pause, with
//! a short growing back-off instead of spinning on a listener that stays
//! readable.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown};
use std::time::Duration;

use log::{info, warn};
use mio::net::TcpStream;
use mio::Interest;

use super::conn::Conn;
use super::Server;
use crate::deadline::Timer;
use crate::http::Reject;

const FIRST_BACKOFF: Duration = Duration::from_millis(10);
/// The longest pause. Every pause is time the backlog is not drained, and a
/// backlog of clients that have gone is what kept real ones waiting 16 s
/// after a flood when it was a second (issue 12).
const MAX_BACKOFF: Duration = Duration::from_millis(100);
/// The most request bytes read (and dropped) from a refused connection
/// before its answer: closing a socket with unread input resets it, and a
/// reset can reach the client before it reads the answer.
const REFUSED_READ_MAX: usize = 8 * 1024;

impl Server {
    pub(super) fn on_acceptable(&mut self) {
        if self.accept_backoff.is_none() {
            self.accept_all(None);
        }
    }

    /// The back-off is over: try again. Connections wait in the kernel's
    /// backlog meanwhile, and no new readiness edge would announce them.
    pub(super) fn on_accept_backoff_over(&mut self) {
        let last = self.accept_backoff.take();
        self.accept_all(last);
    }

    /// Accepts until the listener would block. Out of descriptors, it
    /// refuses waiting connections on the spare descriptor; without one it
    /// pauses, for `FIRST_BACKOFF`, or twice as long as `last` when the
    /// pause that just ended did not help.
    fn accept_all(&mut self, last: Option<Duration>) {
        while let Some(listener) = &self.listener {
            match listener.accept() {
                Ok((socket, peer)) => self.on_accept(socket, peer.ip()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if last.is_some() {
                        info!("accepting again");
                    }
                    return;
                }
                Err(e) if is_transient(&e) => continue,
                Err(e) => {
                    self.counters.accept_errors += 1;
                    if is_out_of_descriptors(&e) && self.spare.give_back() {
                        let accepted = listener.accept();
                        let drained = self.refuse_on_spare(accepted);
                        // Taken again after the refused socket is closed,
                        // so the descriptor it used is the one taken.
                        self.spare.take();
                        match drained {
                            Ok(true) => continue,
                            Ok(false) => return,
                            Err(_) => {}
                        }
                    }
                    let backoff = last.map_or(FIRST_BACKOFF, |b| (b * 2).min(MAX_BACKOFF));
                    if last.is_none() {
                        warn!("accept failed: {e}; pausing accepts, retrying from {backoff:?}");
                    }
                    self.accept_backoff = Some(backoff);
                    self.deadlines.set(self.now + backoff, Timer::ResumeAccept);
                    return;
                }
            }
        }
    }

    /// Refuses the connection accepted on the spare descriptor. `Ok(true)`:
    /// one was refused and more may wait; `Ok(false)`: the backlog is empty.
    fn refuse_on_spare(
        &mut self,
        accepted: io::Result<(TcpStream, std::net::SocketAddr)>,
    ) -> io::Result<bool> {
        match accepted {
            Ok((socket, _)) => {
                self.counters.refused_out_of_fds += 1;
                self.refuse(
                    socket,
                    Reject::new(503, "server is out of file descriptors").with_retry_after(1),
                );
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) if is_transient(&e) => Ok(true),
            Err(e) => Err(e),
        }
    }

    fn on_accept(&mut self, mut socket: TcpStream, peer: IpAddr) {
        self.counters.accepted += 1;
        if self.conns.len() >= self.config.max_connections {
            let limit = self.config.max_connections;
            let why = format!("server is at its limit of {limit} connections");
            return self.refuse(socket, Reject::new(503, why).with_retry_after(1));
        }
        let id = self.conns.next_id();
        if let Err(limit) = self.conns.admit(id, peer) {
            self.counters.per_ip_refused += 1;
            let why = format!("this client has {limit} connections open, the most allowed");
            return self.refuse(socket, Reject::new(429, why).with_retry_after(1));
        }
        // Small writes (events, heartbeats) must leave at once, not wait for Nagle.
        let _ = socket.set_nodelay(true);
        // Edge-triggered, both directions, registered once: a writable edge only
        // comes after a short write, so asking for it up front costs nothing.
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut socket, id.token(), interest)
        {
            warn!("cannot register a new connection: {e}");
            self.conns.forget_admitted(id);
            return;
        }
        self.conns.insert(|id| Conn::new(socket, id));
        self.set_deadline(id, self.now + self.config.header_timeout);
    }

    /// Answers a connection the server will not keep, and closes it now: no
    /// slot, no deadline, no linger. The answer is a best effort in one
    /// write, which an empty socket buffer always takes whole; a client
    /// already gone costs nothing more.
    fn refuse(&mut self, mut socket: TcpStream, reject: Reject) {
        let mut sink = [0; 2048];
        let mut read = 0;
        while read < REFUSED_READ_MAX {
            match socket.read(&mut sink) {
                Ok(n) if n > 0 => read += n,
                _ => break,
            }
        }
        self.write_reject(&reject, super::respond::Ask::CLOSE);
        let _ = socket.write(&self.scratch);
        let _ = socket.shutdown(Shutdown::Write);
    }
}

/// Errors about one connection that never became one; the next may be fine.
fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::Interrupted
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// The process (EMFILE) or the system (ENFILE) has no descriptor to give.
fn is_out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

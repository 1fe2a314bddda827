//! Accepting connections. Running out of descriptors (EMFILE, ENFILE) pauses
//! accepting with a growing back-off instead of spinning on a listener that
//! stays readable; past `--max-connections` a connection is accepted only to
//! be told 503.

use std::io;
use std::time::Duration;

use log::{info, warn};
use mio::net::TcpStream;
use mio::Interest;

use super::conn::Conn;
use super::respond::Ask;
use super::Server;
use crate::deadline::Timer;
use crate::http::Reject;

const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

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

    /// Accepts until the listener would block. Out of descriptors, it pauses:
    /// for `FIRST_BACKOFF`, or twice as long as `last` when the pause that just
    /// ended did not help.
    fn accept_all(&mut self, last: Option<Duration>) {
        while let Some(listener) = &self.listener {
            match listener.accept() {
                Ok((socket, _)) => self.on_accept(socket),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if last.is_some() {
                        info!("accepting again");
                    }
                    return;
                }
                Err(e) if is_transient(&e) => continue,
                Err(e) => {
                    self.counters.accept_errors += 1;
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

    fn on_accept(&mut self, mut socket: TcpStream) {
        self.counters.accepted += 1;
        // Small writes (events, heartbeats) must leave at once, not wait for Nagle.
        let _ = socket.set_nodelay(true);
        let over_limit = self.conns.len() >= self.config.max_connections;
        let id = self.conns.next_id();
        // Edge-triggered, both directions, registered once: a writable edge only
        // comes after a short write, so asking for it up front costs nothing.
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut socket, id.token(), interest)
        {
            warn!("cannot register a new connection: {e}");
            return;
        }
        self.conns.insert(|id| Conn::new(socket, id));
        if over_limit {
            // Accepted only to be told why; it closes after the answer.
            let limit = self.config.max_connections;
            self.reject(
                id,
                Reject::new(
                    503,
                    format!("server is at its limit of {limit} connections"),
                ),
                Ask::CLOSE,
            );
            return;
        }
        self.set_deadline(id, self.now + self.config.header_timeout);
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

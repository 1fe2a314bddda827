//! Accepting connections. Running out of descriptors (EMFILE, ENFILE) pauses
//! accepting with a growing back-off instead of spinning on a listener that
//! stays readable; past `--max-connections` a connection is accepted only to
//! be told 503.

use std::io;
use std::time::Duration;

use log::{debug, warn};
use mio::net::TcpStream;
use mio::Interest;

use super::conn::{Conn, State};
use super::Server;
use crate::conn_id::ConnId;
use crate::deadline::Timer;
use crate::http::Reject;

const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

impl Server {
    pub(super) fn on_acceptable(&mut self) {
        if self.accept_backoff.is_some() {
            return;
        }
        while let Some(listener) = &self.listener {
            match listener.accept() {
                Ok((socket, _)) => self.on_accept(socket),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if is_transient(&e) => continue,
                Err(e) => {
                    self.counters.accept_errors += 1;
                    let backoff = FIRST_BACKOFF;
                    warn!("accept failed: {e}; pausing accepts for {backoff:?}");
                    self.pause_accepting(backoff);
                    return;
                }
            }
        }
    }

    /// Called when the back-off ends: try again, backing off further if the
    /// descriptors are still not there.
    pub(super) fn on_accept_backoff_over(&mut self) {
        let backoff = self.accept_backoff.take().unwrap_or(FIRST_BACKOFF);
        let errors_before = self.counters.accept_errors;
        self.on_acceptable();
        if self.counters.accept_errors > errors_before {
            self.pause_accepting((backoff * 2).min(MAX_BACKOFF));
        } else {
            debug!("accepting again");
        }
    }

    fn pause_accepting(&mut self, backoff: Duration) {
        self.accept_backoff = Some(backoff);
        self.deadlines.set(self.now + backoff, Timer::ResumeAccept);
    }

    fn on_accept(&mut self, mut socket: TcpStream) {
        self.counters.accepted += 1;
        // Small writes (events, heartbeats) must leave at once, not wait for Nagle.
        let _ = socket.set_nodelay(true);
        let over_limit = self.conns.len() >= self.config.max_connections;
        let slot = self.conns.vacant_entry().key();
        let id = ConnId {
            slot: slot as u32,
            gen: self.next_gen,
        };
        self.next_gen = self.next_gen.wrapping_add(1);
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
        self.conns.insert(Conn::new(socket, id.gen));
        if over_limit {
            // Accepted only to be told why; it closes after the answer.
            let limit = self.config.max_connections;
            self.conn(id).expect("just inserted").state = State::Head { started: true };
            self.reject(
                id,
                Reject::new(
                    503,
                    format!("server is at its limit of {limit} connections"),
                ),
                false,
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

//! Deadlines and shutdown: what each timer of the one queue does when it
//! comes up. Every connection has one deadline, whose meaning comes from its
//! state: a header or idle timeout while reading, a heartbeat while
//! streaming, the hold limit while long-polling or holding a Bayeux connect,
//! the linger limit while closing. Channel and session timers go to the hub
//! and the Bayeux engine, and what they ask to re-arm goes back in the queue.

use std::time::Duration;

use log::{debug, info};

use super::conn::{SendProgress, State};
use super::respond::{note_send_error, Ask};
use super::Server;
use crate::conn_id::ConnId;
use crate::deadline::{Tick, Timer};
use crate::encode::Transport;
use crate::encode::{SSE_HEARTBEAT, STREAM_HEARTBEAT};
use crate::http::response::chunk_payload;
use crate::http::Reject;

/// How long shutdown waits for requests in progress to complete; responses
/// already going out are bounded by the send timeout instead.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(1500);

impl Server {
    pub(super) fn fire_deadlines(&mut self) {
        while let Some((at, timer)) = self.deadlines.pop_due(self.now) {
            match timer {
                Timer::Conn(id) => self.on_deadline(id, at),
                Timer::Channel(name) => self.hub.on_expiry_timer(&name, self.now),
                Timer::Session(session) => self.on_session_expiry(&session),
                Timer::ResumeAccept => self.on_accept_backoff_over(),
                Timer::Redis => self.on_redis_tick(),
                Timer::ShutdownLimit => {
                    // A response still going out is left to finish, bounded
                    // by the send timeout; everything else closes now.
                    let open: Vec<ConnId> = self
                        .conns
                        .ids()
                        .into_iter()
                        .filter(|&id| self.conns.get(id).is_some_and(|c| c.out.is_empty()))
                        .collect();
                    info!("shutdown grace over; closing {} connections", open.len());
                    for id in open {
                        self.close(id);
                    }
                }
            }
        }
    }

    /// The last phase of every iteration: the timers the hub (channel
    /// expiry) and the Bayeux engine (session expiry) asked for go into the
    /// queue, whichever of their calls asked. None is due before the next
    /// poll, so one place after the others is enough, and no call site can
    /// forget it.
    pub(super) fn arm_timers(&mut self) {
        self.deadlines.arm(&mut self.hub.to_arm);
        self.deadlines.arm(&mut self.bayeux.to_arm);
        if let Some(cluster) = self.cluster.as_mut() {
            self.deadlines.arm(&mut cluster.to_arm);
        }
    }

    /// A connection's queue entry came up: its deadline is reached, or the
    /// entry was early (it re-queued itself) or stale.
    fn on_deadline(&mut self, id: ConnId, at: Tick) {
        let Some(conn) = self.conns.get(id) else {
            return;
        };
        if !self.deadlines.conn_due(&mut conn.deadline, id, at) {
            return;
        }
        let sending = matches!(
            conn.state(),
            State::AwaitingHead { .. } | State::Closing { .. }
        );
        if sending && !conn.out.is_empty() {
            return self.on_send_deadline(id);
        }
        match conn.state() {
            State::AwaitingHead { started: false } => {
                self.counters.idle_closes += 1;
                self.close(id);
            }
            State::AwaitingHead { started: true } => {
                self.counters.timeouts += 1;
                debug!("{id:?}: header timeout while reading request head");
                self.close(id);
            }
            State::Body(_) => {
                self.counters.timeouts += 1;
                debug!("{id:?}: timeout while reading request body");
                self.reject(
                    id,
                    Reject::new(408, "request body not received in time"),
                    Ask::CLOSE,
                );
            }
            &State::Streaming {
                transport, http10, ..
            } => {
                let beat = match transport {
                    Transport::Sse => SSE_HEARTBEAT,
                    Transport::Stream => STREAM_HEARTBEAT,
                };
                let beat = if http10 {
                    &beat[chunk_payload(beat)]
                } else {
                    beat
                };
                // A subscriber that stopped reading short of
                // --max-queued-bytes is caught here, at its heartbeat.
                if !conn.out.is_empty() {
                    let timeout = self.config.send_timeout;
                    if let SendProgress::Stalled = conn.send_progress(self.now, timeout) {
                        return self.on_send_timeout(id);
                    }
                }
                let max_queued = self.config.max_queued_bytes;
                if let Err(e) = conn.send_live_static(beat, max_queued) {
                    note_send_error(&mut self.counters, id, &e);
                    return self.close(id);
                }
                self.set_deadline(id, self.now + self.config.heartbeat);
            }
            State::Polling { .. } => {
                self.counters.poll_timeouts += 1;
                self.end_poll(id);
            }
            State::Held { .. } => {
                self.counters.connect_timeouts += 1;
                self.on_connect_timeout(id);
            }
            State::Waiting { .. } => self.on_redis_wait_timeout(id),
            State::Closing { .. } => {
                self.counters.linger_closes += 1;
                self.close(id);
            }
            State::Closed { .. } => {}
        }
    }

    /// The deadline of a connection with a response queued: the send
    /// timeout, counted from the last time the client took any of it. A
    /// client still reading gets another `--send-timeout` from then; one
    /// that has stopped is closed.
    fn on_send_deadline(&mut self, id: ConnId) {
        let send_timeout = self.config.send_timeout;
        let conn = self.conns.get(id).expect("sending connection is open");
        match conn.send_progress(self.now, send_timeout) {
            SendProgress::Moving { check_at } => self.set_deadline(id, check_at),
            SendProgress::Stalled => self.on_send_timeout(id),
        }
    }

    /// Queued output has not moved for `--send-timeout`: the client has
    /// stopped reading, and the connection closes.
    fn on_send_timeout(&mut self, id: ConnId) {
        self.counters.send_timeouts += 1;
        if let Some(conn) = self.conns.get(id) {
            info!(
                "{id:?}: send timeout: {} bytes queued and none taken for {:?}",
                conn.out.queued(),
                self.config.send_timeout
            );
        }
        self.close(id);
    }

    /// A long-poll that nothing arrived for: 204, with the cursor to poll from
    /// next so nothing published meanwhile is missed.
    fn end_poll(&mut self, id: ConnId) {
        let conn = self.conns.get(id).expect("polling connection is open");
        let State::Polling { keep_alive, .. } = *conn.state() else {
            unreachable!("called for a polling connection")
        };
        let (channel, kind, key) = conn.unpark().expect("a polling connection is subscribed");
        let cursor = format!("Halley-Cursor: {}", self.head_cursor(&channel));
        self.hub.unsubscribe(&channel, kind, key, id, self.now);
        self.note_maybe_idle(&channel);
        let ask = Ask {
            keep_alive,
            head_only: false,
        };
        let extra = [cursor.as_str(), "Cache-Control: no-cache"];
        self.respond(id, ask, 204, "application/json", b"", &extra);
        self.conns.resume_later(id);
    }

    pub(super) fn on_signal(&mut self) {
        if self.signals.as_ref().is_some_and(|s| s.drain()) && !self.shutting_down {
            self.begin_shutdown();
        }
    }

    /// Stops accepting, answers held long-polls and Bayeux connects, ends
    /// streams properly and lets in-flight requests finish with
    /// `Connection: close`; the loop exits when the last connection is gone or
    /// the grace period is over.
    pub fn begin_shutdown(&mut self) {
        info!("shutting down: {} connections open", self.conns.len());
        self.shutting_down = true;
        self.listener = None;
        for id in self.conns.ids() {
            let Some(conn) = self.conns.get(id) else {
                continue;
            };
            match *conn.state() {
                // Nothing of a request has arrived: nothing to finish, unless
                // the last response is still going out; then it closes once
                // that is out (the send timeout bounds it).
                State::AwaitingHead { .. } if conn.inbuf.is_empty() && conn.out.is_empty() => {
                    self.close(id)
                }
                State::AwaitingHead { .. } if conn.inbuf.is_empty() => conn.finish_then_close(),
                State::Streaming { http10, .. } => {
                    let (channel, kind, key) = conn.unpark().expect("a stream is subscribed");
                    self.hub.unsubscribe(&channel, kind, key, id, self.now);
                    self.end_stream(id, b"", http10);
                }
                State::Polling { .. } => self.end_poll(id),
                State::Held { .. } => self.end_held_connect(id),
                // Redis answers within its timeout, which is shorter than
                // the grace; the answer goes out with `Connection: close`.
                State::AwaitingHead { .. }
                | State::Waiting { .. }
                | State::Body(_)
                | State::Closing { .. }
                | State::Closed { .. } => {}
            }
        }
        self.deadlines
            .set(self.now + SHUTDOWN_GRACE, Timer::ShutdownLimit);
    }
}

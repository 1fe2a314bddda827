//! Deadlines and shutdown: what each timer of the one queue does when it
//! comes up. Every connection has one deadline, whose meaning comes from its
//! state: a header or idle timeout while reading, a heartbeat while
//! streaming, the hold limit while long-polling or holding a Bayeux connect,
//! the linger limit while closing. Channel and session timers go to the hub
//! and the Bayeux engine, and what they ask to re-arm goes back in the queue.

use std::time::Duration;

use log::{debug, info, trace};

use super::conn::{Role, SendProgress, State};
use super::respond::{note_send_error, Ask};
use super::Server;
use crate::conn_id::ConnId;
use crate::deadline::{Tick, Timer};
use crate::encode::Transport;
use crate::encode::{SSE_HEARTBEAT, STREAM_HEARTBEAT};
use crate::http::response::{chunk_payload, write_chunk};
use crate::http::Reject;

/// How long shutdown waits for requests in progress to complete; responses
/// already going out are bounded by the send timeout instead.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(1500);

impl Server {
    pub(super) fn fire_deadlines(&mut self) {
        while let Some((at, timer)) = self.deadlines.pop_due(self.now) {
            match timer {
                Timer::Conn(id) => self.on_deadline(id, at),
                Timer::Channel(name) => {
                    trace!("deadline: channel {name} may hold expired messages");
                    self.hub.on_expiry_timer(&name, self.now)
                }
                Timer::Session(session) => {
                    trace!("deadline: Bayeux session {session} may have expired");
                    self.on_session_expiry(&session)
                }
                Timer::ResumeAccept => {
                    trace!("deadline: accept again after running out of descriptors");
                    self.on_accept_backoff_over()
                }
                Timer::Redis => {
                    trace!("deadline: check the Redis links");
                    self.on_redis_tick()
                }
                Timer::ShutdownLimit => {
                    trace!("deadline: the drain's grace or window is over");
                    self.on_shutdown_limit()
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
        // Meaningful only for a parked subscriber, which it ends.
        let token_over = self.token_expired(id);
        let Some(conn) = self.conns.get(id) else {
            return;
        };
        if !self.deadlines.conn_due(&mut conn.deadline, id, at) {
            return;
        }
        trace!("deadline: conn {id}: {}", deadline_meaning(conn.state()));
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
            State::Streaming { .. } | State::Polling { .. } | State::WebSocket(_) if token_over => {
                self.end_token_expired(id)
            }
            &State::Streaming {
                transport, http10, ..
            } => {
                let beat = match transport {
                    Transport::Sse => SSE_HEARTBEAT,
                    Transport::Stream | Transport::WebSocket => STREAM_HEARTBEAT,
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
                let at = self.token_deadline(id, self.now + self.config.heartbeat);
                self.set_deadline(id, at);
            }
            State::WebSocket(_) => {
                // A peer that stopped reading short of --max-queued-bytes
                // is caught here, as a stream's is.
                if !conn.out.is_empty() {
                    let timeout = self.config.send_timeout;
                    if let SendProgress::Stalled = conn.send_progress(self.now, timeout) {
                        return self.on_send_timeout(id);
                    }
                }
                match conn.ws().map(|ws| &ws.role) {
                    Some(Role::Bayeux { .. }) => self.on_bayeux_ws_deadline(id),
                    _ => self.on_ws_heartbeat(id),
                }
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

    /// SIGTERM or SIGINT: the first starts the drain, a second one ends it
    /// at once (an operator who signals twice does not want to wait).
    pub(super) fn on_signal(&mut self) {
        let mut n = self.signals.as_ref().map_or(0, |s| s.drain());
        if n > 0 && !self.shutting_down {
            self.begin_shutdown();
            n -= 1;
        }
        if n > 0 {
            let closed = self.close_all(|_| true);
            info!("second signal: closed {closed} connections; exiting now");
        }
    }

    /// Stops accepting and tells every client to go elsewhere, each at its
    /// own moment within `--drain-secs` so a restart is not a storm: SSE
    /// streams end after a random `retry:`, held Bayeux connects are
    /// answered with a random `interval`, other streams and long-polls end
    /// as they always do, and in-flight requests finish with
    /// `Connection: close`. The loop exits when the last connection is gone
    /// or the window is over.
    pub fn begin_shutdown(&mut self) {
        info!(
            "draining over {:?}: {} connections open",
            self.config.drain,
            self.conns.len()
        );
        self.shutting_down = true;
        self.listener = None;
        let window = self.config.drain;
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
                State::Streaming {
                    transport, http10, ..
                } => {
                    let (channel, kind, key) = conn.unpark().expect("a stream is subscribed");
                    self.hub.unsubscribe(&channel, kind, key, id, self.now);
                    let last_frame = match transport {
                        Transport::Sse => sse_retry_frame(self.spread.delay_ms(window)),
                        Transport::Stream | Transport::WebSocket => Vec::new(),
                    };
                    self.end_stream(id, &last_frame, transport, http10);
                }
                State::Polling { .. } => self.end_poll(id),
                State::Held { .. } => self.end_held_connect(id),
                State::WebSocket(ref ws) if matches!(ws.role, Role::Bayeux { .. }) => {
                    self.end_bayeux_ws(id)
                }
                State::WebSocket(_) => {
                    self.ws_close(id, crate::ws::close::GOING_AWAY, "server shutting down")
                }
                // Redis answers within its timeout, which is shorter than
                // the grace; the answer goes out with `Connection: close`.
                State::AwaitingHead { .. }
                | State::Waiting { .. }
                | State::Body(_)
                | State::Closing { .. }
                | State::Closed { .. } => {}
            }
        }
        self.drain_ends = Some(self.now + window);
        let grace = SHUTDOWN_GRACE.min(window);
        self.deadlines.set(self.now + grace, Timer::ShutdownLimit);
    }

    /// The grace for requests in progress is over: those still without a
    /// response close, and a response still going out may go on until the
    /// window ends (bounded by the send timeout too). At the window's end,
    /// everything left closes.
    fn on_shutdown_limit(&mut self) {
        let ends = self.drain_ends.expect("the limit is armed by a drain");
        if self.now >= ends {
            info!(
                "drain window over; closing {} connections",
                self.conns.len()
            );
            self.close_all(|_| true);
            return;
        }
        let closed = self.close_all(|conn| conn.out.is_empty());
        info!("shutdown grace over; closed {closed} connections");
        self.deadlines.set(ends, Timer::ShutdownLimit);
    }

    /// Closes every open connection that `pick` chooses; returns how many.
    fn close_all(&mut self, pick: impl Fn(&super::conn::Conn) -> bool) -> usize {
        let mut closed = 0;
        for id in self.conns.ids() {
            if self
                .conns
                .get(id)
                .is_some_and(|c| !c.is_closed() && pick(c))
            {
                self.close(id);
                closed += 1;
            }
        }
        closed
    }
}

/// What a connection's deadline means in `state`, for the trace.
fn deadline_meaning(state: &State) -> &'static str {
    match state {
        State::AwaitingHead { started: false } => "idle timeout",
        State::AwaitingHead { started: true } => "header timeout (or send timeout)",
        State::Body(_) => "body timeout",
        State::Streaming { .. } => "heartbeat",
        State::WebSocket(_) => "WebSocket heartbeat",
        State::Polling { .. } => "long-poll timeout",
        State::Held { .. } => "Bayeux connect timeout",
        State::Waiting { .. } => "Redis timeout",
        State::Closing { .. } => "linger or send timeout",
        State::Closed { .. } => "closed already",
    }
}

/// The last frame of a draining SSE stream: a `retry:` field, which an
/// EventSource adopts as its reconnect delay before it sees the stream end,
/// in a `drain` event carrying the same delay, since a page's script cannot
/// read `retry:` (halley.js waits that long before it reconnects).
fn sse_retry_frame(ms: u64) -> Vec<u8> {
    let mut frame = Vec::with_capacity(48);
    let text = format!("retry: {ms}\nevent: drain\ndata: {ms}\n\n");
    write_chunk(&mut frame, text.as_bytes());
    frame
}

/// The reconnect delays a drain hands out: a splitmix64 sequence seeded once
/// per process, so clients of different processes and restarts get different
/// delays, and no delay costs a syscall. Not for secrets.
pub(super) struct Spread {
    state: u64,
}

impl Spread {
    /// Seeded from the clock and the process id: two workers draining at
    /// the same instant still spread their clients differently.
    pub(super) fn seeded() -> Spread {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Spread::new(nanos ^ (u64::from(std::process::id()) << 32))
    }

    fn new(seed: u64) -> Spread {
        Spread { state: seed }
    }

    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Whole milliseconds, uniform from 0 to `window` inclusive (by
    /// multiplying rather than `%`, which would favour small values).
    pub(super) fn delay_ms(&mut self, window: Duration) -> u64 {
        let span = window.as_millis().min(u128::from(u64::MAX - 1)) as u64 + 1;
        ((u128::from(self.next()) * u128::from(span)) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_stay_inside_the_window_and_cover_it() {
        // Window, draws, and the least share of the window the draws must span.
        let cases: &[(u64, usize, f64)] = &[(1, 200, 1.0), (10, 500, 1.0), (10_000, 1000, 0.95)];
        for &(window_ms, draws, cover) in cases {
            let mut spread = Spread::new(window_ms);
            let window = Duration::from_millis(window_ms);
            let delays: Vec<u64> = (0..draws).map(|_| spread.delay_ms(window)).collect();
            let (lo, hi) = (*delays.iter().min().unwrap(), *delays.iter().max().unwrap());
            assert!(hi <= window_ms, "{hi} > {window_ms}");
            assert!(
                (hi - lo) as f64 >= cover * window_ms as f64,
                "{lo}..{hi} of {window_ms}"
            );
        }
    }

    #[test]
    fn different_seeds_give_different_sequences() {
        let window = Duration::from_secs(10);
        let (mut a, mut b) = (Spread::new(1), Spread::new(2));
        let a: Vec<u64> = (0..8).map(|_| a.delay_ms(window)).collect();
        let b: Vec<u64> = (0..8).map(|_| b.delay_ms(window)).collect();
        assert_ne!(a, b);
    }

    #[test]
    fn the_retry_frame_is_one_chunk_with_one_field() {
        let frame = b"25\r\nretry: 1234\nevent: drain\ndata: 1234\n\n\r\n";
        assert_eq!(sse_retry_frame(1234), frame);
    }
}

//! Turning a complete request into a reply: routing each request to its
//! handler, the small endpoints (health, stats, channel info, preflight), the
//! one place a complete response or error is written (`respond`, `reject`),
//! and what a connection does after a response (keep-alive or close).

use std::net::Shutdown;
use std::time::Duration;

use log::{debug, info};

use super::conn::{Conn, SendError, State};
use super::Server;
use crate::conn_id::ConnId;
use crate::http::request::{Method, RequestHead};
use crate::http::response::{self, Framing};
use crate::http::Reject;
use crate::hub::Hub;
use crate::json;
use crate::routes::{self, Route};
use crate::stats::{self, ConnCounts, Snapshot};

/// How long a closing connection may take to read its last response.
pub(super) const LINGER: Duration = Duration::from_secs(2);

pub(super) const JSON: &str = "application/json";

/// Bodies up to this size are copied behind their head and sent in one
/// write; larger ones are written beside it (`Conn::send_head_and_body`).
const COPY_BODY_MAX: usize = 16 * 1024;

impl Server {
    pub(super) fn on_request(&mut self, id: ConnId, head: RequestHead, body: Vec<u8>) {
        let route = match routes::route(&head) {
            Ok(route) => route,
            Err(reject) => return self.reject(id, reject, Ask::of(&head)),
        };
        match route {
            // A node that cannot reach Redis tells its load balancer to
            // send new clients elsewhere.
            Route::Health if !self.redis_healthy() => self.reject(
                id,
                Reject::new(503, "redis unavailable").with_retry_after(1),
                Ask::of(&head),
            ),
            Route::Health => self.respond(
                id,
                Ask::of(&head),
                200,
                "text/plain; charset=utf-8",
                b"ok",
                &[],
            ),
            Route::Page => self.on_page(id, &head),
            Route::Stats => {
                let body = self.snapshot(|s| s.to_json());
                self.respond(id, Ask::of(&head), 200, JSON, &body, &[]);
            }
            Route::Metrics => {
                let body = self.snapshot(crate::metrics::exposition);
                let ask = Ask::of(&head);
                self.respond(id, ask, 200, crate::metrics::CONTENT_TYPE, &body, &[]);
            }
            Route::Preflight { allow } => {
                let methods = format!("Access-Control-Allow-Methods: {allow}");
                let extra = [
                    methods.as_str(),
                    "Access-Control-Allow-Headers: Content-Type, Authorization, Last-Event-ID, Accept, Idempotency-Key",
                    "Access-Control-Max-Age: 86400",
                ];
                self.respond(id, Ask::of(&head), 204, JSON, b"", &extra);
            }
            Route::ChannelInfo { channel } => {
                match channel_info(&self.hub, &channel, self.cluster.is_some()) {
                    Ok(body) => self.respond(id, Ask::of(&head), 200, JSON, &body, &[]),
                    Err(reject) => self.reject(id, reject, Ask::of(&head)),
                }
            }
            Route::Publish { channel, event } => self.on_publish(id, &head, &channel, event, body),
            Route::Delete { channel } => self.on_delete(id, &head, &channel),
            Route::Subscribe {
                channel,
                mode,
                cursor,
            } => self.on_subscribe(id, &head, &channel, mode, cursor),
            Route::Bayeux => self.on_bayeux(id, &head, body),
            Route::WsEcho if !self.config.ws_echo => {
                let why = "the echo endpoint is off; start the server with --ws-echo";
                self.reject(id, Reject::new(404, why), Ask::of(&head))
            }
            Route::WsEcho => {
                let accept = crate::ws::handshake::check(&head).expect("checked by routes");
                self.upgrade(id, accept, super::conn::Role::Echo)
            }
            Route::Mux => {
                let accept = crate::ws::handshake::check(&head).expect("checked by routes");
                // Kept only where it is judged: each subscribe and publish
                // is checked against the upgrade's credentials, per channel.
                let credentials = self.web.checks_tokens().then(|| Box::new(head.clone()));
                self.on_mux_upgrade(id, accept, credentials)
            }
            Route::BayeuxSocket => {
                let accept = crate::ws::handshake::check(&head).expect("checked by routes");
                self.on_bayeux_upgrade(id, accept)
            }
        }
    }

    /// Sends a complete response from bytes, then keeps the connection for the
    /// next request or closes it.
    pub(super) fn respond(
        &mut self,
        id: ConnId,
        ask: Ask,
        status: u16,
        content_type: &str,
        body: &[u8],
        extra: &[&str],
    ) {
        let keep_alive = ask.keep_alive && !self.shutting_down;
        self.scratch.clear();
        let response_head = response::ResponseHead {
            status,
            content_type: Some(content_type),
            framing: Framing::Length(body.len()),
            keep_alive,
            cors_origin: &self.config.cors_origin,
            date: Some(self.date.as_str()),
            extra,
        };
        if ask.head_only || body.len() <= COPY_BODY_MAX {
            response::write_full(&mut self.scratch, response_head, body, !ask.head_only);
            self.send_scratch(id);
        } else {
            // A large body (a long-poll batch, a file) goes out beside its
            // head, and only what the socket does not take is copied; through
            // `scratch` it would be copied whole and grow it for good.
            response_head.write(&mut self.scratch);
            let Some(conn) = self.conns.get(id) else {
                return;
            };
            if let Err(e) = conn.send_head_and_body(&self.scratch, body) {
                note_send_error(&mut self.counters, id, &SendError::Io(e));
                return self.close(id);
            }
        }
        self.finish_response(id, keep_alive);
    }

    /// Answers with `{"error": ...}`. Without `ask.keep_alive` the
    /// connection closes after it: the framing of anything that follows is
    /// not trusted.
    pub(super) fn reject(&mut self, id: ConnId, reject: Reject, ask: Ask) {
        let keep_alive = self.write_reject(&reject, ask);
        self.send_scratch(id);
        self.finish_response(id, keep_alive);
    }

    /// Counts an error answer and writes it into `scratch`; returns whether
    /// the connection is kept after it. Also used for connections refused
    /// at accept, which never become a `Conn`.
    pub(super) fn write_reject(&mut self, reject: &Reject, ask: Ask) -> bool {
        self.counters.reject(reject.status);
        let keep_alive = ask.keep_alive && !self.shutting_down;
        let mut extra: Vec<&str> = reject.header.iter().map(String::as_str).collect();
        if reject.status == 401 {
            extra.push("WWW-Authenticate: Bearer");
        }
        self.scratch.clear();
        let head = response::ResponseHead {
            status: reject.status,
            content_type: Some(JSON),
            framing: Framing::Length(0),
            keep_alive,
            cors_origin: &self.config.cors_origin,
            date: Some(self.date.as_str()),
            extra: &extra,
        };
        response::write_full(
            &mut self.scratch,
            head,
            &json::error_body(&reject.message),
            !ask.head_only,
        );
        keep_alive
    }

    pub(super) fn send_scratch(&mut self, id: ConnId) {
        let Some(conn) = self.conns.get(id) else {
            return;
        };
        if let Err(e) = conn.send(&self.scratch) {
            note_send_error(&mut self.counters, id, &SendError::Io(e));
            self.close(id);
        }
    }

    /// After a response: back to reading the next request (which may already
    /// be buffered), or closing. A response the socket did not take whole is
    /// governed by the send timeout until it drains (`Server::on_drained` then
    /// starts the state's own clock): neither the idle timeout nor the linger
    /// may cut a response short.
    pub(super) fn finish_response(&mut self, id: ConnId, keep_alive: bool) {
        let Some(conn) = self.conns.get(id) else {
            return;
        };
        conn.response_sent(keep_alive);
        let at = if conn.out.is_empty() {
            drained_deadline(conn, self.now, &self.config)
        } else {
            conn.note_send_progress(self.now);
            self.now + self.config.send_timeout
        };
        self.deadlines.set_conn(&mut conn.deadline, id, at);
    }

    /// Gathers what `/stats` and `/metrics` report, and writes it with `write`.
    fn snapshot(&self, write: impl FnOnce(&Snapshot) -> Vec<u8>) -> Vec<u8> {
        let mut conns = ConnCounts::default();
        let mut bytes_queued = 0;
        for conn in self.conns.iter() {
            bytes_queued += conn.out.queued() as u64;
            match conn.state() {
                State::Streaming {
                    transport: crate::encode::Transport::Sse,
                    ..
                } => conns.sse += 1,
                State::Streaming { .. } => conns.stream += 1,
                State::Polling { .. } => conns.longpoll += 1,
                State::WebSocket(_) => conns.websocket += 1,
                State::Held { .. } => conns.bayeux += 1,
                _ => conns.other += 1,
            }
        }
        let snapshot = Snapshot {
            conns,
            deadlines: self.deadlines.counts(),
            channels: self.hub.n_channels(),
            published: self.hub.n_published,
            evicted: self.hub.n_evicted,
            expired: self.hub.n_expired,
            bytes_queued,
            rss_bytes: stats::rss_bytes(),
            uptime_secs: self.now.duration_since(self.started).as_secs(),
            counters: &self.counters,
            limits: self.limit_figures(),
            bayeux: self.bayeux_figures(),
            redis: self.redis_stats(),
            worker: self.config.worker,
            workers: self.config.workers,
            worker_restarts: self.config.worker_restarts,
        };
        write(&snapshot)
    }
}

impl Server {
    fn limit_figures(&self) -> stats::LimitFigures {
        // With Redis the hub holds subscribers only: its bounds do not apply.
        let limits = self.cluster.is_none().then(|| self.hub.limits());
        stats::LimitFigures {
            channels: self.hub.n_channels(),
            max_channels: limits.map(|l| l.max_channels),
            channels_refused: self.hub.n_channels_refused,
            history_bytes: self.hub.history_bytes(),
            max_history_bytes: limits.map(|l| l.max_history_bytes),
            history_refused: self.hub.n_history_refused,
            max_connections_per_ip: self.config.max_connections_per_ip,
            clients: self.conns.n_clients(),
            per_ip_refused: self.counters.per_ip_refused,
            refused_out_of_fds: self.counters.refused_out_of_fds,
        }
    }
}

/// `GET /pub/{channel}`: what the hub knows of one channel. It needs the hub
/// and nothing else. With Redis the hub holds this node's subscribers but
/// no messages, so `messages` and `last_id` are `null`.
fn channel_info(hub: &Hub, channel: &str, redis: bool) -> Result<Vec<u8>, Reject> {
    let Some(c) = hub.channel(channel) else {
        return Err(Reject::new(404, format!("no channel {channel}")));
    };
    let mut out = b"{\"channel\":".to_vec();
    json::push_str(&mut out, channel);
    out.extend_from_slice(b",\"subscribers\":");
    json::push_u64(&mut out, c.n_subscribers() as u64);
    if redis {
        out.extend_from_slice(b",\"messages\":null,\"last_id\":null}");
        return Ok(out);
    }
    out.extend_from_slice(b",\"messages\":");
    json::push_u64(&mut out, c.n_messages() as u64);
    out.extend_from_slice(b",\"last_id\":");
    let last_id = c.last_seq().map(|seq| hub.id_of(seq));
    json::push_opt_str(&mut out, last_id.as_deref());
    out.push(b'}');
    Ok(out)
}

/// What the request asked of its response's framing.
#[derive(Clone, Copy)]
pub(super) struct Ask {
    pub keep_alive: bool,
    /// A `HEAD` request: the head says what `GET` would send, without the body.
    pub head_only: bool,
}

impl Ask {
    /// For errors that end the connection, where the request (if any) is
    /// not trusted enough to read more from it.
    pub const CLOSE: Ask = Ask {
        keep_alive: false,
        head_only: false,
    };

    pub fn of(head: &RequestHead) -> Ask {
        Ask {
            keep_alive: head.keep_alive,
            head_only: head.method == Method::Head,
        }
    }
}

/// The deadline of a connection whose output has just gone out (or never
/// queued): the header or idle timeout while reading, or the linger while
/// closing, whose write side it shuts now.
pub(super) fn drained_deadline(
    conn: &mut Conn,
    now: std::time::Instant,
    config: &crate::config::Config,
) -> std::time::Instant {
    match *conn.state() {
        State::AwaitingHead { started: true } => now + config.header_timeout,
        State::AwaitingHead { started: false } => now + config.idle_timeout,
        _ => {
            let _ = conn.socket.shutdown(Shutdown::Write);
            now + LINGER
        }
    }
}

pub(super) fn note_send_error(counters: &mut crate::stats::Counters, id: ConnId, e: &SendError) {
    match e {
        SendError::TooSlow => {
            counters.slow_consumer_closes += 1;
            info!("{id:?}: closing a slow consumer: its queued output passed --max-queued-bytes");
        }
        SendError::Io(e) => debug!("{id:?}: write failed: {e}"),
    }
}

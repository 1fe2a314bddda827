//! Subscribing and fan-out: opening streams with their replay, parking
//! long-polls, delivering a published message to every subscriber of its
//! channel, and ending subscriptions when a channel is deleted. A message's
//! bytes are encoded once and written to each subscriber from the same buffer.

use std::ops::Range;
use std::rc::Rc;
use std::time::Instant;

use super::conn::{Role, SendError, State};
use super::respond::{note_send_error, Ask};
use super::Server;
use crate::conn_id::ConnId;
use crate::cursor::Cursor;
use crate::encode;
use crate::encode::Transport;
use crate::http::request::{Method, RequestHead};
use crate::http::response::{self, chunk_payload, Framing, LAST_CHUNK};
use crate::hub::{Channel, Kind, Replay};
use crate::message::Message;
use crate::outq::Chunk;
use crate::routes::Mode;
use crate::ws::close;
use crate::ws::handshake::{self, Accept};

const SSE_TYPE: &str = "text/event-stream";
const STREAM_TYPE: &str = "application/x-ndjson";
/// What a subscriber whose token ended is told, on every transport.
const TOKEN_EXPIRED: &str = "token expired";
const SSE_TOKEN_EXPIRED: &[u8] = b"event: error\ndata: {\"error\":\"token expired\"}\n\n";
const STREAM_TOKEN_EXPIRED: &[u8] = b"{\"error\":\"token expired\"}\n";
const STREAM_HEADERS: [&str; 2] = ["Cache-Control: no-cache", "X-Accel-Buffering: no"];

/// The close reason a WebSocket too slow for its channel reads (1008): it
/// let more than `--max-queued-bytes` pile up, as a slow stream does.
const SLOW_CONSUMER_REASON: &str = "slow consumer: too far behind its channel";

impl Server {
    pub(super) fn on_subscribe(
        &mut self,
        id: ConnId,
        head: &RequestHead,
        channel: &str,
        mode: Mode,
        cursor: Cursor,
    ) {
        if let Err(reject) = self.admit_subscriber(id, head, channel) {
            return self.reject(id, reject, Ask::of(head));
        }
        if self.cluster.is_some() {
            return self.subscribe_via_redis(id, head, channel, mode, cursor);
        }
        let batch = match mode {
            Mode::LongPoll => self.config.longpoll_batch,
            Mode::Stream(_) => usize::MAX,
        };
        let replay = match self.hub.replay(channel, cursor, batch) {
            Ok(replay) => replay,
            Err(reject) => return self.reject(id, reject, Ask::of(head)),
        };
        let head_only = head.method == Method::Head;
        match mode {
            Mode::Stream(transport) if head_only => self.stream_head_only(id, head, transport),
            Mode::Stream(transport) => {
                let accept = head.upgrade_websocket.then(|| handshake::check(head).ok());
                let accept = accept.flatten();
                self.open_stream(id, head.http10, channel, transport, accept, replay)
            }
            // GET would wait for a message; there is no body to measure yet.
            Mode::LongPoll if replay.messages.is_empty() && replay.gap.is_none() && head_only => {
                self.respond(
                    id,
                    Ask::of(head),
                    200,
                    "application/json",
                    b"",
                    &STREAM_HEADERS,
                )
            }
            Mode::LongPoll if replay.messages.is_empty() && replay.gap.is_none() => {
                self.park_poll(id, head.keep_alive, channel)
            }
            Mode::LongPoll => {
                let messages: Vec<&Message> = replay.messages.iter().map(|m| &**m).collect();
                let body = encode::poll_body(&messages, replay.gap.as_ref(), &replay.next);
                if !head_only {
                    self.counters.delivered += messages.len() as u64;
                }
                self.respond(
                    id,
                    Ask::of(head),
                    200,
                    "application/json",
                    &body,
                    &["Cache-Control: no-cache"],
                );
            }
        }
    }

    /// `HEAD` on a stream: the head `GET` would get, which announces a
    /// chunked body (or, for HTTP/1.0, one that ends with the connection),
    /// never a length; nothing follows and nothing subscribes.
    pub(super) fn stream_head_only(
        &mut self,
        id: ConnId,
        head: &RequestHead,
        transport: Transport,
    ) {
        let keep_alive = head.keep_alive && !head.http10 && !self.shutting_down;
        self.scratch.clear();
        self.write_stream_head(transport, head.http10, keep_alive);
        self.send_scratch(id);
        self.finish_response(id, keep_alive);
    }

    /// A stream's response head, into `scratch`.
    fn write_stream_head(&mut self, transport: Transport, http10: bool, keep_alive: bool) {
        response::ResponseHead {
            status: 200,
            content_type: Some(match transport {
                Transport::Sse => SSE_TYPE,
                Transport::Stream => STREAM_TYPE,
                Transport::WebSocket => unreachable!("a WebSocket opens with a 101"),
            }),
            framing: if http10 {
                Framing::UntilClose
            } else {
                Framing::Chunked
            },
            keep_alive,
            cors_origin: &self.config.cors_origin,
            date: Some(self.date.as_str()),
            extra: &STREAM_HEADERS,
        }
        .write(&mut self.scratch);
    }

    /// Answers with the stream's head (for a WebSocket, the `101` with
    /// `accept`), the SSE preamble, any gap and the replayed messages, all
    /// in one write, then parks the connection.
    pub(super) fn open_stream(
        &mut self,
        id: ConnId,
        http10: bool,
        channel: &str,
        transport: Transport,
        accept: Option<Accept>,
        replay: Replay,
    ) {
        self.scratch.clear();
        match accept {
            Some(accept) => self.write_switch(accept),
            // A stream ends only when the server ends it, and then it closes.
            None => self.write_stream_head(transport, http10, false),
        }
        let push_chunk = |scratch: &mut Vec<u8>, chunk: &[u8]| {
            let range = if http10 {
                chunk_payload(chunk)
            } else {
                0..chunk.len()
            };
            scratch.extend_from_slice(&chunk[range]);
        };
        let nothing_to_replay = replay.gap.is_none() && replay.messages.is_empty();
        let starts_at = nothing_to_replay.then_some(replay.next.as_str());
        if transport == Transport::Sse {
            push_chunk(
                &mut self.scratch,
                &encode::sse_preamble(self.config.sse_retry.as_millis() as u64, starts_at),
            );
        }
        if let Some(gap) = &replay.gap {
            push_chunk(&mut self.scratch, &encode::gap_frame(transport, gap));
        }
        self.counters.delivered += replay.messages.len() as u64;

        let (channel, key) = self.hub.subscribe(channel, Kind::Stream, id);
        let conn = self.conns.get(id).expect("subscribing connection is open");
        // What an HTTP stream's client sends has no meaning; a WebSocket's
        // may be frames sent right behind the handshake, read in the resume
        // phase (a subscriber answered from Redis is not being driven now).
        let frames_waiting = transport == Transport::WebSocket && !conn.inbuf.is_empty();
        match transport {
            Transport::WebSocket => {
                conn.upgrade(Role::Channel { channel, key });
                self.counters.ws_upgrades += 1;
            }
            _ => {
                conn.park_stream(channel, key, transport, http10);
                conn.inbuf.clear();
            }
        }
        conn.release_inbuf(&mut self.bufs);
        let sent = if replay.messages.is_empty() {
            conn.send(&self.scratch)
        } else {
            // The replay goes out as the buffered frames themselves, shared and
            // uncopied, in as few writev calls as the socket takes.
            conn.queue_owed(Chunk::Owned(self.scratch.clone()));
            for message in &replay.messages {
                let (frame, range) = frame_for(message, transport, http10);
                conn.queue_owed(Chunk::Shared(frame.clone(), range));
            }
            conn.flush().map(|_| ())
        };
        if let Err(e) = sent {
            note_send_error(&mut self.counters, id, &SendError::Io(e));
            return self.close(id);
        }
        let at = self.token_deadline(id, self.now + self.config.heartbeat);
        self.set_deadline(id, at);
        if frames_waiting {
            self.conns.resume_later(id);
        }
    }

    /// Holds a long-poll that has nothing to receive yet.
    pub(super) fn park_poll(&mut self, id: ConnId, keep_alive: bool, channel: &str) {
        let (channel, key) = self.hub.subscribe(channel, Kind::Poll, id);
        let conn = self.conns.get(id).expect("subscribing connection is open");
        conn.park_poll(channel, key, keep_alive);
        let at = self.token_deadline(id, self.now + self.config.longpoll_timeout);
        self.set_deadline(id, at);
    }

    /// Fan-out: writes `message` to every subscriber of its channel. Streams
    /// get the shared frame; parked long-polls, which all wait at the head of
    /// the channel, get the same shared answer and leave the channel. Bayeux
    /// sessions whose subscriptions match get it queued, and their held
    /// connects are answered in the flush phase.
    pub(super) fn deliver(&mut self, message: &Rc<Message>) {
        // Two clock reads per message, not per subscriber: the histogram
        // (`halley_fanout_seconds`) costs the same for one subscriber or
        // ten thousand, and `observe` neither allocates nor makes a syscall.
        let started = Instant::now();
        self.fan_out(message);
        let took = started.elapsed();
        self.counters.fanout.observe(took);
        if log::log_enabled!(log::Level::Trace) {
            let subscribers = self
                .hub
                .channel(&message.channel)
                .map_or(0, |c| c.n_subscribers());
            log::trace!(
                "fan-out {} on {}: {} subscribers left parked, {} bytes of data, {} us",
                message.id,
                message.channel,
                subscribers,
                message.data.len(),
                took.as_micros()
            );
        }
    }

    fn fan_out(&mut self, message: &Rc<Message>) {
        self.bayeux.on_publish(&super::bayeux::hub_message(message));
        let Some(channel) = self.hub.channel_mut(&message.channel) else {
            return;
        };
        let max_queued = self.config.max_queued_bytes;
        // With Redis, a stream still catching up gets its messages through
        // its own merge (`server::redis`); only then through here.
        let catchups = self.cluster.as_ref().and_then(|c| c.catchups_if_any());
        // WebSockets too slow to take this message, to be sent a close frame
        // once the channel is no longer borrowed; allocated only if any are.
        let mut slow_websockets = Vec::new();
        for (_, &id) in channel.streams.iter() {
            if catchups.is_some_and(|c| c.contains_key(&id)) {
                continue;
            }
            let Some(conn) = self.conns.get(id) else {
                continue;
            };
            let Some((transport, http10)) = conn.stream_kind() else {
                continue;
            };
            let (frame, range) = frame_for(message, transport, http10);
            match conn.send_live(frame, range, max_queued) {
                Ok(()) => self.counters.delivered += 1,
                Err(e) => {
                    note_send_error(&mut self.counters, id, &e);
                    match (e, transport) {
                        (SendError::TooSlow, Transport::WebSocket) => slow_websockets.push(id),
                        _ => {
                            self.conns.close(id);
                        }
                    }
                }
            }
        }
        if !channel.polls.is_empty() {
            // Every parked poll is answered and leaves the channel. The list
            // is swapped for the empty spare (no allocation either way),
            // which also ends the borrow of the hub, so each answer can use
            // the server's own response path.
            std::mem::swap(&mut channel.polls, &mut self.spare_polls);
            let body = message.poll_body();
            let mut polls = std::mem::take(&mut self.spare_polls);
            for id in polls.drain() {
                self.answer_poll(id, body);
            }
            self.spare_polls = polls;
            self.note_maybe_idle(&message.channel);
        }
        for id in slow_websockets {
            self.ws_close(id, close::POLICY, SLOW_CONSUMER_REASON);
        }
    }

    /// Answers a parked long-poll with a message's shared body.
    pub(super) fn answer_poll(&mut self, id: ConnId, body: &Rc<[u8]>) {
        let Some(conn) = self.conns.get(id) else {
            return;
        };
        let State::Polling { keep_alive, .. } = *conn.state() else {
            return;
        };
        // The hub has already forgotten this poller; its state must too.
        conn.unpark();
        let keep_alive = keep_alive && !self.shutting_down;
        self.scratch.clear();
        response::ResponseHead {
            status: 200,
            content_type: Some("application/json"),
            framing: Framing::Length(body.len()),
            keep_alive,
            cors_origin: &self.config.cors_origin,
            date: Some(self.date.as_str()),
            extra: &["Cache-Control: no-cache"],
        }
        .write(&mut self.scratch);
        if let Err(e) = conn.send_head_and_shared(&self.scratch, body) {
            note_send_error(&mut self.counters, id, &SendError::Io(e));
            self.close(id);
            return;
        }
        self.counters.delivered += 1;
        self.finish_response(id, keep_alive);
        self.conns.resume_later(id);
    }

    /// A deleted channel's subscribers: streams get a `deleted` event and their
    /// end, long-polls a 410.
    pub(super) fn end_subscriptions(&mut self, channel: Channel) {
        let sse_deleted = encode::sse_deleted(&channel.name);
        let stream_deleted = encode::stream_deleted(&channel.name);
        let ws_deleted = encode::ws_deleted(&channel.name);
        for (_, id) in channel.streams {
            let Some(conn) = self.conns.get(id) else {
                continue;
            };
            if conn.mux().is_some() {
                // A `/ws` connection follows other channels still.
                self.mux_channel_deleted(id, &channel.name);
                continue;
            }
            let Some((transport, http10)) = conn.stream_kind() else {
                continue;
            };
            // The subscription went with the channel; nothing to undo later.
            conn.unpark();
            let frame = match transport {
                Transport::Sse => &sse_deleted,
                Transport::Stream => &stream_deleted,
                Transport::WebSocket => &ws_deleted,
            };
            self.end_stream(id, frame, transport, http10);
        }
        for (_, id) in channel.polls {
            let Some(conn) = self.conns.get(id) else {
                continue;
            };
            let State::Polling { keep_alive, .. } = *conn.state() else {
                continue;
            };
            conn.unpark();
            let gone =
                crate::http::Reject::new(410, format!("channel {} was deleted", channel.name));
            self.reject(
                id,
                gone,
                Ask {
                    keep_alive,
                    head_only: false,
                },
            );
            self.conns.resume_later(id);
        }
    }

    /// A parked subscriber whose token ended: a stream gets a last frame
    /// saying so (SSE an `error` event, NDJSON an `error` line) and ends; a
    /// held long-poll is answered 401. Never silently: the client learns
    /// that it needs a new token, not that the network failed.
    pub(super) fn end_token_expired(&mut self, id: ConnId) {
        let Some(conn) = self.conns.get(id) else {
            return;
        };
        self.counters.token_expired += 1;
        let keep_alive = match *conn.state() {
            State::Polling { keep_alive, .. } => Some(keep_alive),
            _ => None,
        };
        if conn.mux().is_some() {
            // Every channel of a `/ws` socket was admitted by the same token.
            self.mux_leave_all(id);
            return self.ws_send_last(id, &encode::ws_token_expired());
        }
        let stream_kind = conn.stream_kind();
        let Some((channel, kind, key)) = conn.unpark() else {
            return;
        };
        self.hub.unsubscribe(&channel, kind, key, id, self.now);
        self.note_maybe_idle(&channel);
        if let Some((transport, http10)) = stream_kind {
            let frame = match transport {
                Transport::Sse => SSE_TOKEN_EXPIRED,
                Transport::Stream => STREAM_TOKEN_EXPIRED,
                Transport::WebSocket => {
                    let frame = encode::ws_token_expired();
                    return self.end_stream(id, &frame, transport, http10);
                }
            };
            let mut chunk = Vec::with_capacity(frame.len() + 8);
            response::write_chunk(&mut chunk, frame);
            return self.end_stream(id, &chunk, transport, http10);
        }
        let ask = Ask {
            keep_alive: keep_alive.unwrap_or(false),
            head_only: false,
        };
        self.reject(id, crate::http::Reject::new(401, TOKEN_EXPIRED), ask);
        self.conns.resume_later(id);
    }

    /// Ends a stream, already out of its channel: an optional last frame,
    /// the terminating chunk, and close. A WebSocket's last frame ends with
    /// its close frame.
    pub(super) fn end_stream(
        &mut self,
        id: ConnId,
        last_frame: &[u8],
        transport: Transport,
        http10: bool,
    ) {
        if transport == Transport::WebSocket {
            return self.ws_send_last(id, last_frame);
        }
        self.scratch.clear();
        if http10 {
            self.scratch
                .extend_from_slice(&last_frame[chunk_payload(last_frame)]);
        } else {
            self.scratch.extend_from_slice(last_frame);
            self.scratch.extend_from_slice(LAST_CHUNK);
        }
        self.send_scratch(id);
        self.finish_response(id, false);
    }
}

/// A message's frame for one stream subscriber: the shared chunk, and the
/// part of it to send (all of it, or the bare payload for HTTP/1.0).
pub(super) fn frame_for(
    message: &Message,
    transport: Transport,
    http10: bool,
) -> (&Rc<[u8]>, Range<usize>) {
    let frame = match transport {
        Transport::Sse => message.sse(),
        Transport::Stream => message.stream(),
        Transport::WebSocket => message.ws(),
    };
    let range = if http10 {
        chunk_payload(frame)
    } else {
        0..frame.len()
    };
    (frame, range)
}

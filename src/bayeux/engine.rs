//! The Bayeux engine: every session, the routing index from subscription
//! patterns to sessions, the held connects, and the entry points the server
//! calls. It never touches a socket: it takes messages and `now`, and returns
//! what to answer, what to publish and what to hold. The handlers for each
//! meta channel and for publishing live in `meta.rs`, fan-out and the
//! answering of held connects in `deliver.rs`. Session expiry runs on the
//! server's deadline queue: one `Timer::Session` per session, asked for in
//! `to_arm` at handshake and again each time it comes up early.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Map, Value};

use super::channel;
use super::message::{error_reply, BayeuxError, Incoming};
use super::session::{ConnId, Held, Session};
use super::wire::{encode_body, Framing};
use crate::deadline::{Timer, ToArm};

/// Subscriptions (channels and patterns) one session may hold. A page holds
/// a handful, and one wildcard (`/chat/**`) stands for a whole family of
/// channels, so this is far above any real client; it bounds what one
/// session puts in the routing index (a few hundred KB of names at most) and
/// what ending it costs.
pub const MAX_SUBSCRIPTIONS_PER_SESSION: usize = 1_000;

/// Channels one `/meta/subscribe` or `/meta/unsubscribe` may name. Faye
/// resubscribes to everything in one message after a re-handshake, so this is
/// the per-session bound: a session at its bound can always come back whole.
pub const MAX_SUBSCRIPTIONS_PER_MESSAGE: usize = MAX_SUBSCRIPTIONS_PER_SESSION;

/// `/meta/handshake` messages one request may carry. A client sends one; a
/// few cost nothing, while without a bound one request could create sessions
/// (and reply bytes) in proportion to its size.
pub const MAX_HANDSHAKES_PER_REQUEST: usize = 4;

/// Distinct resumed subscriptions (a session and a channel with
/// `ext.halley.since`) one request may carry. Each one reads up to `--buffer`
/// messages of history and encodes them for the session, all before the loop
/// does anything else (history must come before live messages), so this is
/// what bounds one request's replay work: at most this many times the
/// buffer, and never more than the session's queue can take. A page resumes
/// the handful of channels it shows; 32 leaves room for a busy one while
/// keeping the work to a few thousand messages at the default `--buffer`.
/// A later resume of the same channel for the same session in the same
/// request replaces the earlier one's cursor and costs nothing more.
pub const MAX_RESUMES_PER_REQUEST: usize = 32;

/// Sessions at once, from all clients. A session with nothing queued and a
/// few subscriptions is a few hundred bytes, so this keeps their total in
/// tens of MB; sessions whose clients stopped connecting make room again
/// after `max_interval`.
pub const MAX_SESSIONS: usize = 100_000;

/// Sessions at once from one client address. One open page is one session;
/// this leaves room for a large office behind one NAT address while keeping
/// one host from taking more than a hundredth of `MAX_SESSIONS`.
pub const MAX_SESSIONS_PER_ADDR: usize = 1_000;

/// The engine's settings; the server fills them from its flags.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long a connect is held when nothing is pending (`--longpoll-timeout`).
    pub timeout: Duration,
    /// How long a session lives without a connect in progress. CometD's default is 10 s.
    pub max_interval: Duration,
    /// Bound on one session's queue, in bytes (`--max-queued-bytes`).
    pub max_queued_bytes: usize,
    /// With `--publish-token T`, only sessions whose handshake carried
    /// `ext.halley.token == T` may publish.
    pub publish_token: Option<String>,
    /// With `--token-secret`: every subscribe needs a signed token whose
    /// claims cover it, from the handshake's `ext.halley.token` or the
    /// subscribe's own, and such a token may publish where its claims say.
    pub tokens: Option<crate::token::Verifier>,
    /// Sessions at once (`MAX_SESSIONS`); a handshake past it is refused.
    pub max_sessions: usize,
    /// Sessions at once from one address (`MAX_SESSIONS_PER_ADDR`).
    pub max_sessions_per_addr: usize,
    /// The server is a Redis node. It follows the routing index in Redis,
    /// so each pattern that gains its first session or loses its last is
    /// recorded in `route_events`; and it replays resumed subscriptions
    /// later than the subscribe (the history is read from Redis), so live
    /// messages of a resuming channel wait in the session until then.
    pub clustered: bool,
    /// The server upgrades `/bayeux` to a WebSocket, so handshakes offer
    /// `websocket` (CometD and Faye then use it first).
    pub websocket: bool,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            timeout: Duration::from_secs(30),
            max_interval: Duration::from_secs(10),
            max_queued_bytes: 1 << 20,
            publish_token: None,
            tokens: None,
            max_sessions: MAX_SESSIONS,
            max_sessions_per_addr: MAX_SESSIONS_PER_ADDR,
            clustered: false,
            websocket: false,
        }
    }
}

/// A message the hub has accepted, as the server hands it to `on_publish`.
#[derive(Debug, Clone, Copy)]
pub struct HubMessage<'a> {
    pub id: &'a str,
    /// The hub's channel name (`chat/room1`).
    pub channel: &'a str,
    pub data: Data<'a>,
    pub event: Option<&'a str>,
}

/// How a message's data reaches Bayeux: text becomes a JSON string, JSON
/// (published as `application/json` and known to parse) is inserted as is.
#[derive(Debug, Clone, Copy)]
pub enum Data<'a> {
    Text(&'a str),
    Json(&'a str),
}

/// Whether the hub has room for a publish, asked of each one as the engine
/// accepts it: a publish the hub cannot take is answered unsuccessful in
/// Bayeux's form (`503:/chat/room1:history_full`), not acknowledged and
/// lost. The server answers from its hub's limits (`--max-channels`,
/// `--max-history-bytes`); `Unbounded` admits everything.
pub trait Room {
    /// `Err` holds the reason for the error string (`channels_full`).
    fn admit(&mut self, publish: &Publish) -> Result<(), &'static str>;
}

/// A hub without limits.
pub struct Unbounded;

impl Room for Unbounded {
    fn admit(&mut self, _: &Publish) -> Result<(), &'static str> {
        Ok(())
    }
}

/// A Bayeux publish for the server to put into the hub, then hand back to
/// `on_publish` like any other hub message.
#[derive(Debug, Clone, PartialEq)]
pub struct Publish {
    /// Hub channel name (`chat/room1`).
    pub channel: String,
    /// The message's `data` as JSON text: publish it as `application/json`,
    /// so HTTP transports carry this text and Bayeux gets the value back.
    pub json: String,
    /// `ext.halley.event`, the SSE event name (checked free of CR and LF).
    pub event: Option<String>,
}

/// Where a resumed subscription starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Since {
    Id(String),
    Earliest,
}

/// A subscribe that asked to resume: the server reads the hub's buffer for
/// `channel` after `since` and passes it to `on_replay` before anything else
/// happens on the loop, so history comes before live messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resume {
    pub client_id: String,
    pub channel: String,
    pub since: Since,
}

/// A complete HTTP 200 response for one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub conn: ConnId,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

/// What to do with the request that `handle` was given.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// Answer at once: HTTP 200 with this content type and body.
    Now {
        content_type: &'static str,
        body: Vec<u8>,
    },
    /// Park the connection. The engine answers it later through `flush`, or
    /// `on_connect_timeout` when the server's deadline queue reaches `deadline`.
    Hold { deadline: Instant },
    /// A request that came as a WebSocket frame (`Framing::WebSocket`): the
    /// replies to its messages go out at once as one frame (`body`; none when
    /// no message asked for one), and a connect among them may be held until
    /// `hold` all the same. The held connect is answered later, through
    /// `flush` or `on_connect_timeout`, as one more frame on the socket.
    Socket {
        body: Option<Vec<u8>>,
        hold: Option<Instant>,
    },
}

#[derive(Debug)]
pub struct Outcome {
    pub reply: Reply,
    /// Messages to publish into the hub, in order.
    pub publishes: Vec<Publish>,
    /// Resumed subscriptions to fill from the hub's buffers.
    pub resumes: Vec<Resume>,
    /// Earlier held connects that this request released; answer them now.
    pub released: Vec<Response>,
    /// With `Settings::clustered`: the patterns this request subscribed to,
    /// so a Redis node can hold the reply until Redis has the subscription
    /// (a message published meanwhile would otherwise miss the session).
    pub subscribed: Vec<String>,
}

/// Counters for `/stats`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    pub handshakes: u64,
    pub expired: u64,
    pub disconnects: u64,
    /// Sessions ended because their queue passed `max_queued_bytes`.
    pub slow_sessions: u64,
    /// `402::session_unknown` answers.
    pub unknown_session: u64,
    /// Messages queued into sessions (one per session reached).
    pub delivered: u64,
    /// Handshakes refused with `too_many_sessions`: past `max_sessions` in
    /// all, or `max_sessions_per_addr` from one address.
    pub sessions_refused: u64,
    /// Handshakes refused for being past `MAX_HANDSHAKES_PER_REQUEST` in one request.
    pub handshakes_refused: u64,
    /// (Un)subscribes refused with `too_many_subscriptions`.
    pub subscriptions_refused: u64,
    /// Subscribes refused with `too_many_resumes`: past `MAX_RESUMES_PER_REQUEST`.
    pub resumes_refused: u64,
    /// History messages queued by resumed subscriptions (also in `delivered`).
    pub replayed: u64,
    /// Handshakes, subscribes and publishes refused for their signed token
    /// (missing, invalid, or not covering the channel).
    pub token_refused: u64,
    /// Sessions ended because the token they subscribed with ended.
    pub token_expired: u64,
}

pub struct Engine {
    pub(super) config: Settings,
    pub(super) sessions: HashMap<Rc<str>, Session>,
    /// Live sessions per client address; an address with none has no entry.
    pub(super) per_addr: HashMap<IpAddr, usize>,
    /// Pattern text (`/a/b`, `/a/*`, `/a/**`) to the sessions subscribed with it.
    pub(super) routes: HashMap<String, HashSet<Rc<str>>>,
    /// Held connects by connection, so a timeout or close finds its session.
    pub(super) held: HashMap<ConnId, Rc<str>>,
    /// Sessions holding a connect that have messages since the last `flush`.
    pub(super) ready: Vec<Rc<str>>,
    /// Responses produced outside a request (slow-session ends), sent by `flush`.
    pub(super) out: Vec<Response>,
    /// Expiry timers for the server to set. Each session has one from its
    /// handshake to its end: a connect only moves `Session::expires_at`
    /// later, and the timer, coming up early, asks to be set again then
    /// (`on_expiry_timer`).
    pub to_arm: ToArm,
    /// With `Settings::clustered`: `(pattern, true)` when a pattern got
    /// its first session, `(pattern, false)` when it lost its last, in
    /// order, until the server takes them.
    pub route_events: Vec<(String, bool)>,
    pub(super) new_id: Box<dyn FnMut() -> u128>,
    pub(super) fanout_seq: u64,
    /// Reused by `on_publish` so a publish allocates only its encoding.
    pub(super) scratch: Vec<Rc<str>>,
    /// The wall clock, which signed tokens' `exp` and `nbf` are judged by:
    /// the server sets it before each `handle` (the engine reads no clock).
    pub wall: SystemTime,
    pub stats: Stats,
}

impl Engine {
    /// An engine whose clientIds come from `new_id` (use `Urandom::into_source`).
    pub fn new(config: Settings, new_id: Box<dyn FnMut() -> u128>) -> Engine {
        Engine {
            config,
            sessions: HashMap::new(),
            per_addr: HashMap::new(),
            routes: HashMap::new(),
            held: HashMap::new(),
            ready: Vec::new(),
            out: Vec::new(),
            to_arm: ToArm::default(),
            route_events: Vec::new(),
            new_id,
            fanout_seq: 0,
            scratch: Vec::new(),
            wall: SystemTime::UNIX_EPOCH,
            stats: Stats::default(),
        }
    }

    pub fn n_sessions(&self) -> usize {
        self.sessions.len()
    }

    pub fn n_held(&self) -> usize {
        self.held.len()
    }

    /// The deadline of the connect held on `conn`, if one is: a WebSocket
    /// keeps it in its one deadline beside its heartbeat.
    pub fn held_deadline(&self, conn: ConnId) -> Option<Instant> {
        let id = self.held.get(&conn)?;
        self.sessions.get(id)?.held.as_ref().map(|h| h.deadline)
    }

    /// Handles one request's messages (from `wire::parse_post` or `parse_get`)
    /// arriving on `conn`. `peer` is the client's address, which only a
    /// handshake needs (sessions are bounded per address), so the server
    /// looks it up only for a request that carries one
    /// (`wire::has_handshake`); a handshake without it is refused.
    pub fn handle(
        &mut self,
        conn: ConnId,
        peer: Option<IpAddr>,
        messages: Vec<Value>,
        framing: Framing,
        now: Instant,
    ) -> Outcome {
        self.handle_in(conn, peer, messages, framing, now, &mut Unbounded)
    }

    /// `handle`, with each publish admitted by `room` first.
    pub fn handle_in(
        &mut self,
        conn: ConnId,
        peer: Option<IpAddr>,
        messages: Vec<Value>,
        framing: Framing,
        now: Instant,
        room: &mut dyn Room,
    ) -> Outcome {
        let mut req = Request::new(peer, room);
        for value in messages {
            let msg = Incoming::from_value(value);
            self.dispatch(&msg, &mut req, now);
        }
        if framing == Framing::WebSocket {
            // A socket answers every message as it comes; only the connect
            // waits, and the replies to the others must not wait with it.
            let hold = req.hold.take().map(|pending| {
                let deadline = pending.deadline;
                let released = &mut req.released;
                self.hold(conn, pending, framing.clone(), Vec::new(), released, now);
                deadline
            });
            let body = (!req.replies.is_empty()).then(|| encode_body(&req.replies, &framing));
            return req.into_outcome(Reply::Socket { body, hold });
        }
        let reply = match req.hold.take() {
            // A connect to park: the replies to the request's other messages
            // wait with it, since one HTTP response carries them all.
            Some(pending) => {
                let deadline = pending.deadline;
                let prefix = std::mem::take(&mut req.replies);
                self.hold(conn, pending, framing, prefix, &mut req.released, now);
                Reply::Hold { deadline }
            }
            None => Reply::Now {
                content_type: framing.content_type(),
                body: encode_body(&req.replies, &framing),
            },
        };
        req.into_outcome(reply)
    }

    /// Makes `pending` the connect its session holds on `conn`. A socket
    /// carries many requests, so another session's connect may already be
    /// held on it (a client that handshook twice on one socket): that one is
    /// answered now, with what it has queued, since `held` names one
    /// session per connection.
    fn hold(
        &mut self,
        conn: ConnId,
        pending: PendingHold,
        framing: Framing,
        prefix: Vec<String>,
        released: &mut Vec<Response>,
        now: Instant,
    ) {
        if let Some(other) = self.held.get(&conn).cloned() {
            if other != pending.session {
                released.extend(self.release(&other, now, true, 0));
            }
        }
        let session = self
            .sessions
            .get_mut(&pending.session)
            .expect("hold is for a live session");
        session.held = Some(Held {
            conn,
            reply_id: pending.reply_id,
            framing,
            prefix,
            deadline: pending.deadline,
        });
        self.held.insert(conn, pending.session);
    }

    fn dispatch(&mut self, msg: &Incoming, req: &mut Request, now: Instant) {
        let result = match msg.channel.as_str() {
            "" => Err(BayeuxError::Missing("channel_missing")),
            "/meta/handshake" => self.on_handshake(msg, req, now),
            "/meta/connect" => self.on_connect(msg, req, now),
            "/meta/subscribe" => self.on_subscribe(msg, req, now),
            "/meta/unsubscribe" => self.on_unsubscribe(msg, req),
            "/meta/disconnect" => self.on_disconnect(msg, req, now),
            c if channel::is_meta(c) => Err(BayeuxError::ChannelInvalid(c.to_string())),
            _ => self.on_message(msg, req),
        };
        if let Err(err) = result {
            if err == BayeuxError::SessionUnknown {
                self.stats.unknown_session += 1;
            }
            req.replies.push(error_reply(msg, &err));
        }
    }

    /// The session a message names, or the 402 that sends the client back to handshake.
    pub(super) fn session_of(&mut self, msg: &Incoming) -> Result<&mut Session, BayeuxError> {
        let id = msg
            .client_id
            .as_deref()
            .ok_or(BayeuxError::SessionUnknown)?;
        self.sessions.get_mut(id).ok_or(BayeuxError::SessionUnknown)
    }

    /// The advice on every successful handshake and connect reply. It always
    /// names `reconnect`, because Faye keeps the last `reconnect` it saw: after
    /// one 402 it would otherwise handshake again on every later reply.
    ///
    /// `interval` is how long the client waits before its next connect: 0,
    /// except from a draining server, which spreads its clients' returns.
    pub(super) fn advice(&self, interval: u64) -> Value {
        json!({
            "reconnect": "retry",
            "interval": interval,
            "timeout": self.config.timeout.as_millis() as u64,
            "maxInterval": self.config.max_interval.as_millis() as u64,
        })
    }

    /// Asks for a new session's one expiry timer.
    pub(super) fn arm_expiry(&mut self, at: Instant, id: &Rc<str>) {
        self.to_arm.push(at, Timer::Session(id.clone()));
    }

    /// Builds the answer to a connect: pending messages first (unless
    /// `with_messages` is false), then the connect reply, and restarts the
    /// session's expiry clock.
    pub(super) fn connect_reply(
        &mut self,
        id: &Rc<str>,
        reply_id: Option<Value>,
        now: Instant,
        with_messages: bool,
        interval: u64,
    ) -> Vec<String> {
        let advice = self.advice(interval);
        let expires_at = now + self.config.max_interval;
        let session = self.sessions.get_mut(id).expect("live session");
        let (msgs, batch) = if with_messages {
            session.take_for_reply()
        } else {
            (Vec::new(), None)
        };
        session.expires_at = expires_at;
        let mut parts: Vec<String> = msgs.iter().map(|m| m.to_string()).collect();
        let mut reply = Map::new();
        reply.insert("channel".into(), "/meta/connect".into());
        if let Some(rid) = reply_id {
            reply.insert("id".into(), rid);
        }
        reply.insert("clientId".into(), Value::String(id.to_string()));
        reply.insert("successful".into(), true.into());
        reply.insert("advice".into(), advice);
        if let Some(b) = batch {
            reply.insert("ext".into(), json!({ "ack": b }));
        }
        parts.push(Value::Object(reply).to_string());
        parts
    }

    /// Answers the connect `id` holds, if any, with whatever it has queued
    /// (or nothing, when `with_messages` is false), advising the next
    /// connect after `interval` ms.
    pub(super) fn release(
        &mut self,
        id: &Rc<str>,
        now: Instant,
        with_messages: bool,
        interval: u64,
    ) -> Option<Response> {
        let held = self.sessions.get_mut(id)?.held.take()?;
        self.held.remove(&held.conn);
        let mut parts = held.prefix;
        let reply = self.connect_reply(id, held.reply_id, now, with_messages, interval);
        parts.extend(reply);
        Some(Response {
            conn: held.conn,
            content_type: held.framing.content_type(),
            body: encode_body(&parts, &held.framing),
        })
    }

    /// Removes a session and its routes. A connect it was holding is answered
    /// with `held_reply` (its error or final reply), which the caller sends.
    pub(super) fn end_session(
        &mut self,
        id: &Rc<str>,
        held_reply: impl FnOnce(&Held) -> String,
    ) -> Option<Response> {
        let session = self.sessions.remove(id)?;
        if let Some(n) = self.per_addr.get_mut(&session.addr) {
            *n -= 1;
            if *n == 0 {
                self.per_addr.remove(&session.addr);
            }
        }
        for p in &session.subscriptions {
            self.unroute(&p.text(), id);
        }
        let held = session.held?;
        self.held.remove(&held.conn);
        let mut parts = held.prefix.clone();
        parts.push(held_reply(&held));
        Some(Response {
            conn: held.conn,
            content_type: held.framing.content_type(),
            body: encode_body(&parts, &held.framing),
        })
    }

    pub(super) fn route(&mut self, pattern: String, id: &Rc<str>) {
        if self.config.clustered && !self.routes.contains_key(&pattern) {
            self.route_events.push((pattern.clone(), true));
        }
        self.routes.entry(pattern).or_default().insert(id.clone());
    }

    pub(super) fn unroute(&mut self, pattern: &str, id: &Rc<str>) {
        if let Some(set) = self.routes.get_mut(pattern) {
            set.remove(id);
            if set.is_empty() {
                self.routes.remove(pattern);
                if self.config.clustered {
                    self.route_events.push((pattern.to_owned(), false));
                }
            }
        }
    }

    /// The server's deadline for a held connect passed. Returns the reply, or
    /// `None` when the connect was already answered (a stale deadline).
    pub fn on_connect_timeout(&mut self, conn: ConnId, now: Instant) -> Option<Response> {
        let id = self.held.get(&conn)?.clone();
        let due = self
            .sessions
            .get(&id)?
            .held
            .as_ref()
            .is_some_and(|h| h.conn == conn && h.deadline <= now);
        if !due {
            return None;
        }
        self.release(&id, now, true, 0)
    }

    /// Answers the connect held on `conn` now, whatever its deadline, with
    /// what its session has queued: for a server draining, which advises
    /// the client to connect again (elsewhere) after `interval` ms.
    pub fn release_conn(&mut self, conn: ConnId, now: Instant, interval: u64) -> Option<Response> {
        let id = self.held.get(&conn)?.clone();
        self.release(&id, now, true, interval)
    }

    /// Whether `flush` has something to send: the server must then not sleep
    /// before its next flush phase.
    pub fn needs_flush(&self) -> bool {
        !self.ready.is_empty() || !self.out.is_empty()
    }

    /// The connection of a held connect closed. Its messages stay queued for
    /// the next connect and the session's expiry clock starts now.
    pub fn on_conn_closed(&mut self, conn: ConnId, now: Instant) {
        let Some(id) = self.held.remove(&conn) else {
            return;
        };
        if let Some(session) = self.sessions.get_mut(&id) {
            session.held = None;
            session.expires_at = now + self.config.max_interval;
        }
    }

    /// The expiry timer of session `id` came up: ends the session if it has
    /// held no connect for `max_interval` (returning true), or asks for the
    /// timer again at the earliest the session could expire. A session
    /// holding a connect cannot expire before `max_interval` from now, so it
    /// is looked at again then. An ended session's timer ends here.
    pub fn on_expiry_timer(&mut self, id: &Rc<str>, now: Instant) -> bool {
        let Some(session) = self.sessions.get(id) else {
            return false;
        };
        let token_ends = session.token_ends;
        if token_ends.is_some_and(|ends| ends <= now) {
            self.end_token_expired(id);
            return true;
        }
        let next = match session.held {
            Some(_) => now + self.config.max_interval,
            None if session.expires_at > now => session.expires_at,
            None => {
                self.end_session(id, |_| unreachable!("a holding session never expires"));
                self.stats.expired += 1;
                return true;
            }
        };
        let next = token_ends.map_or(next, |ends| ends.min(next));
        self.to_arm.push(next, Timer::Session(id.clone()));
        false
    }

    /// Ends session `id` because its token ended: a connect it holds is
    /// answered `403::token_expired` with advice to handshake again, which
    /// CometD and Faye both follow (and a page gives its new token to the
    /// new handshake). The answer goes out from the next `flush`.
    pub(super) fn end_token_expired(&mut self, id: &Rc<str>) {
        let released = self.end_session(id, |held| {
            token_expired_reply(held.reply_id.clone(), id).to_string()
        });
        self.out.extend(released);
        self.stats.token_expired += 1;
    }
}

/// The connect reply of a session whose token ended.
pub(super) fn token_expired_reply(reply_id: Option<Value>, id: &str) -> Value {
    let mut reply = json!({
        "channel": "/meta/connect",
        "clientId": id,
        "successful": false,
        "error": "403::token_expired",
        "advice": {"reconnect": "handshake", "interval": 0},
    });
    if let Some(rid) = reply_id {
        reply["id"] = rid;
    }
    reply
}

/// What one request accumulates while its messages are handled.
pub(super) struct Request<'r> {
    /// The client address the request came from, when the server looked it
    /// up (see `Engine::handle`).
    pub peer: Option<IpAddr>,
    /// Asked whether the hub takes each publish.
    pub room: &'r mut dyn Room,
    /// Handshake messages seen so far, for `MAX_HANDSHAKES_PER_REQUEST`.
    pub n_handshakes: usize,
    pub replies: Vec<String>,
    pub hold: Option<PendingHold>,
    pub publishes: Vec<Publish>,
    pub resumes: Vec<Resume>,
    /// Where in `resumes` each hub channel's resumes are (one per session),
    /// so a second resume of a session's channel replaces the first instead
    /// of replaying twice, and is found without allocating.
    pub resume_index: HashMap<String, Vec<usize>>,
    pub released: Vec<Response>,
    pub subscribed: Vec<String>,
}

impl<'r> Request<'r> {
    fn into_outcome(self, reply: Reply) -> Outcome {
        Outcome {
            reply,
            publishes: self.publishes,
            resumes: self.resumes,
            released: self.released,
            subscribed: self.subscribed,
        }
    }

    fn new(peer: Option<IpAddr>, room: &'r mut dyn Room) -> Request<'r> {
        Request {
            peer,
            room,
            n_handshakes: 0,
            replies: Vec::new(),
            hold: None,
            publishes: Vec::new(),
            resumes: Vec::new(),
            resume_index: HashMap::new(),
            released: Vec::new(),
            subscribed: Vec::new(),
        }
    }
}

/// A connect in this request that will be held unless a later message answers it.
pub(super) struct PendingHold {
    pub session: Rc<str>,
    pub reply_id: Option<Value>,
    pub deadline: Instant,
}

//! The `/bayeux` endpoint: hands each request's messages to the pure Bayeux
//! engine and carries out what it returns (answer now, hold the connect on
//! the loop, publish into the hub, replay history). Held connects are
//! answered from the flush phase, their deadline, or shutdown.

use std::io;
use std::rc::Rc;
use std::time::Instant;

use log::debug;
use serde_json::{json, Value};

use super::conn::State;
use super::publish::{Draft, Publisher};
use super::respond::Ask;
use super::Server;
use crate::bayeux::ids::Urandom;
use crate::bayeux::{
    self, wire, BadRequest, Data, Engine, Framing, HubMessage, Outcome, Reply, Response, Since,
};
use crate::client::client_key;
use crate::config::Config;
use crate::conn_id::ConnId;
use crate::cursor::{self, Cursor};
use crate::encode::Gap;
use crate::http::query::split_target;
use crate::http::request::{Method, RequestHead};
use crate::http::Reject;
use crate::message::Message;
use crate::stats::BayeuxFigures;
use crate::ws::frame::Opcode;

/// Bayeux replies are answers to one request each; no cache may keep them.
const NO_CACHE: [&str; 1] = ["Cache-Control: no-cache"];

/// The engine, set from the server's flags: connects are held for
/// `--longpoll-timeout`, session queues bounded by `--max-queued-bytes`, and
/// `--publish-token` and `--token-secret` apply to Bayeux too.
pub(super) fn new_engine(config: &Config) -> io::Result<Engine> {
    let settings = bayeux::Settings {
        clustered: !config.redis.is_empty(),
        // `/bayeux` upgrades to a WebSocket (`server::bayeux_ws`).
        websocket: true,
        timeout: config.longpoll_timeout,
        max_queued_bytes: config.max_queued_bytes,
        publish_token: config.publish_token.clone(),
        tokens: config.token_secret.clone(),
        ..bayeux::Settings::default()
    };
    Ok(Engine::new(settings, Urandom::open()?.into_source()))
}

/// How the engine names a connection: its mio token, which carries the
/// generation, so an id the engine kept never names a later connection.
pub(super) fn engine_conn(id: ConnId) -> bayeux::ConnId {
    id.token().0 as u64
}

fn server_conn(conn: bayeux::ConnId) -> ConnId {
    ConnId::from_token(mio::Token(conn as usize))
}

/// A hub message as the engine reads it: JSON data goes to Bayeux as the
/// value, text as a string.
pub(super) fn hub_message(message: &Message) -> HubMessage<'_> {
    HubMessage {
        id: &message.id,
        channel: &message.channel,
        data: match message.data_is_json {
            true => Data::Json(&message.data),
            false => Data::Text(&message.data),
        },
        event: message.event.as_deref(),
    }
}

impl Server {
    /// What both Bayeux transports (`POST /bayeux` and a `/bayeux`
    /// WebSocket) do with one request's messages: the engine decides, then
    /// the connects it released are answered, resumed subscriptions filled
    /// from history, and publishes made, in that order. The reply is left in
    /// the outcome for the caller to frame its own way.
    pub(super) fn run_bayeux(
        &mut self,
        id: ConnId,
        messages: Vec<Value>,
        framing: Framing,
    ) -> Outcome {
        // The engine bounds sessions per client address; only a handshake
        // needs it, and looking it up is a syscall.
        let peer = match wire::has_handshake(&messages) {
            true => self.conns.get(id).and_then(|c| c.socket.peer_addr().ok()),
            false => None,
        };
        // Signed tokens are judged by the wall clock, which the engine does not read.
        self.bayeux.wall = std::time::SystemTime::now();
        let mut room = super::publish::HubRoom::new(&self.hub, self.cluster.is_some());
        let mut outcome = self.bayeux.handle_in(
            engine_conn(id),
            peer.map(|p| client_key(p.ip())),
            messages,
            framing,
            self.now,
            &mut room,
        );
        for response in std::mem::take(&mut outcome.released) {
            self.answer_held(response);
        }
        // History before this request's publishes, so a resumed subscription
        // gets each message once and in order.
        for replay in &outcome.resumes {
            self.replay_to_session(replay);
        }
        for publish in std::mem::take(&mut outcome.publishes) {
            self.publish_from_bayeux(publish);
        }
        outcome
    }

    /// One request to `/bayeux`: messages in a `POST` body (JSON or form
    /// `message=`) or a `GET` query (JSONP only). Only a request that is not
    /// Bayeux at all gets an HTTP error; Bayeux errors are answered with 200.
    /// `routes` refuses `HEAD` with 405, since answering it would mean acting.
    pub(super) fn on_bayeux(&mut self, id: ConnId, head: &RequestHead, body: Vec<u8>) {
        let parsed = match head.method {
            Method::Post => wire::parse_post(head.content_type.as_deref(), &body),
            _ => wire::parse_get(split_target(&head.target).1),
        };
        let (messages, framing) = match parsed {
            Ok(parsed) => parsed,
            Err(BadRequest(why)) => {
                debug!("{id:?}: {why} while reading a Bayeux request");
                return self.reject(id, Reject::new(400, why), Ask::of(head));
            }
        };
        let outcome = self.run_bayeux(id, messages, framing);
        match outcome.reply {
            Reply::Now { content_type, body } => {
                // With Redis, a subscribe is answered once Redis has it.
                let ask = Ask::of(head);
                let subscribed = &outcome.subscribed;
                if let Some(body) = self.hold_bayeux_reply(id, ask, content_type, body, subscribed)
                {
                    self.respond(id, ask, 200, content_type, &body, &NO_CACHE)
                }
            }
            Reply::Hold { deadline } => self.hold_connect(id, head.keep_alive, deadline),
            Reply::Socket { .. } => unreachable!("an HTTP request is never framed for a socket"),
        }
    }

    /// Parks a connect the engine holds. The engine keeps the reply's makings;
    /// the connection keeps only whether to stay open after it.
    fn hold_connect(&mut self, id: ConnId, keep_alive: bool, deadline: Instant) {
        let conn = self
            .conns
            .get(id)
            .expect("a connection being answered is open");
        conn.hold_connect(keep_alive);
        self.set_deadline(id, deadline);
        if self.shutting_down {
            self.end_held_connect(id);
        }
    }

    /// A Bayeux publish goes into the hub like `POST /pub` with JSON data, so
    /// every transport gets it with the same id; `deliver` hands it back to
    /// the engine for Bayeux subscribers.
    pub(super) fn publish_from_bayeux(&mut self, publish: bayeux::Publish) {
        let draft = Draft {
            channel: publish.channel,
            data: publish.json.into(),
            data_is_json: true,
            event: publish.event.map(Into::into),
        };
        self.publish(draft, Publisher::Bayeux);
    }

    /// Fills a subscription that asked for `ext.halley.since` from the hub's
    /// buffer. A cursor the hub cannot place (malformed, or ahead of the
    /// channel) is never skipped silently: the session is told with a gap, and
    /// delivery goes on from now.
    /// Reads no more history than the session's queue could take, and none
    /// for a session already gone.
    pub(super) fn replay_to_session(&mut self, replay: &bayeux::Resume) {
        if self.cluster.is_some() {
            return self.resume_via_redis(replay);
        }
        let Some(room) = self.bayeux.replay_room(&replay.client_id) else {
            return;
        };
        let cursor = match &replay.since {
            Since::Earliest => Ok(Cursor::Earliest),
            Since::Id(text) => cursor::parse(text),
        };
        let found = cursor
            .ok()
            .and_then(|c| self.hub.replay(&replay.channel, c, room).ok());
        let (gap, messages) = match found {
            Some(found) => (found.gap.as_ref().map(gap_value), found.messages),
            None => {
                let gap = Gap {
                    reason: "unknown",
                    missed: None,
                    cursor: match &replay.since {
                        Since::Id(text) => text.clone(),
                        Since::Earliest => "earliest".into(),
                    },
                    next: self.head_cursor(&replay.channel),
                };
                (Some(gap_value(&gap)), Vec::new())
            }
        };
        let history = messages.iter().map(|m| hub_message(m));
        self.bayeux.on_replay(replay, gap, history);
    }

    /// Writes the engine's answer to a held connect, then the connection goes
    /// back to reading requests (any that arrived while it was held run in the
    /// resume phase). A connection closed meanwhile is simply skipped.
    pub(super) fn answer_held(&mut self, response: Response) {
        let id = server_conn(response.conn);
        let Some(conn) = self.conns.get(id) else {
            return;
        };
        if conn.ws().is_some() {
            // A Bayeux socket: the answer is one more frame.
            self.ws_send(id, Opcode::Text, &response.body);
            return;
        }
        let State::Held { keep_alive } = *conn.state() else {
            debug!("{id:?}: a Bayeux reply for a connection holding no connect; dropped");
            return;
        };
        let ask = Ask {
            keep_alive,
            head_only: false,
        };
        let (content_type, body) = (response.content_type, &response.body);
        self.respond(id, ask, 200, content_type, body, &NO_CACHE);
        self.conns.resume_later(id);
    }

    /// The flush phase: one reply per session that messages reached in this
    /// iteration, and the final replies of sessions ended since the last one.
    pub(super) fn flush_bayeux(&mut self) {
        self.sync_bayeux_routes();
        let responses = self.bayeux.flush(self.now);
        if responses.is_empty() {
            return;
        }
        for response in responses {
            self.answer_held(response);
        }
    }

    /// A held connect's deadline: answered empty, and the client connects again.
    pub(super) fn on_connect_timeout(&mut self, id: ConnId) {
        match self.bayeux.on_connect_timeout(engine_conn(id), self.now) {
            Some(response) => self.answer_held(response),
            None => {
                debug!("{id:?}: no connect held for it at its deadline; closing");
                self.close(id);
            }
        }
    }

    /// A drain answers a held connect at once, with what its session has
    /// queued and advice to connect again at a random moment of the window.
    pub(super) fn end_held_connect(&mut self, id: ConnId) {
        let interval = self.spread.delay_ms(self.config.drain);
        match self
            .bayeux
            .release_conn(engine_conn(id), self.now, interval)
        {
            Some(response) => self.answer_held(response),
            None => self.close(id),
        }
    }

    /// A session's expiry timer came up.
    pub(super) fn on_session_expiry(&mut self, session: &Rc<str>) {
        if self.bayeux.on_expiry_timer(session, self.now) {
            debug!("Bayeux session {session} expired: no connect within maxInterval");
        }
    }

    pub(super) fn bayeux_figures(&self) -> BayeuxFigures<'_> {
        BayeuxFigures {
            sessions: self.bayeux.n_sessions(),
            held_connects: self.bayeux.n_held(),
            stats: &self.bayeux.stats,
        }
    }
}

/// A gap as Bayeux carries it in `ext.halley.gap`: the same fields as the
/// long-poll `gap`.
pub(super) fn gap_value(gap: &Gap) -> Value {
    json!({
        "reason": gap.reason,
        "missed": gap.missed,
        "cursor": gap.cursor,
        "next": gap.next,
    })
}

#[cfg(test)]
mod tests {
    //! The loop's phases run one by one on a real server, so a test can put
    //! two events in one iteration, which no client can arrange on purpose.

    use std::io::{ErrorKind, Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    use mio::Events;
    use serde_json::{json, Value};

    use super::*;

    /// How long the test waits for the server to see something before it fails.
    const LIMIT: Duration = Duration::from_secs(5);

    /// The dispatch phase alone: poll (for at most `LIMIT`) and handle what it reports.
    fn dispatch_once(server: &mut Server, events: &mut Events) {
        server.poll.poll(events, Some(LIMIT)).expect("poll");
        server.now = Instant::now();
        for event in events.iter() {
            server.dispatch(event);
        }
    }

    /// One whole iteration of `Server::run`.
    fn iterate(server: &mut Server, events: &mut Events) {
        dispatch_once(server, events);
        server.flush_bayeux();
        server.fire_deadlines();
        server.resume();
        server.reap();
        server.arm_timers();
    }

    fn send_bayeux(client: &mut TcpStream, messages: Value) {
        let body = messages.to_string();
        let request = format!(
            "POST /bayeux HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        client.write_all(request.as_bytes()).expect("write");
    }

    /// Sends `messages` and runs the loop until the whole response is read.
    fn exchange(
        server: &mut Server,
        events: &mut Events,
        client: &mut TcpStream,
        messages: Value,
    ) -> Value {
        send_bayeux(client, messages);
        let started = Instant::now();
        let mut buf = Vec::new();
        loop {
            assert!(started.elapsed() < LIMIT, "no whole response: {buf:?}");
            iterate(server, events);
            let mut chunk = [0u8; 4096];
            loop {
                match client.read(&mut chunk) {
                    Ok(0) => panic!("closed"),
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => panic!("{e}"),
                }
            }
            let text = String::from_utf8_lossy(&buf);
            let Some((head, body)) = text.split_once("\r\n\r\n") else {
                continue;
            };
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .expect("Content-Length")
                .parse()
                .unwrap();
            if body.len() >= len {
                return serde_json::from_str(&body[..len]).expect("JSON body");
            }
        }
    }

    fn client(server: &Server) -> TcpStream {
        let client = TcpStream::connect(server.local_addr()).expect("connect");
        client.set_nonblocking(true).unwrap();
        client
    }

    /// A held connect's client leaves and, in the same iteration, a publish
    /// reaches its session: the message must wait for the next connect, not
    /// go into a reply for the closed connection.
    #[test]
    fn a_publish_in_the_iteration_a_held_connect_closes_waits_for_the_next_connect() {
        let mut server = Server::bind(Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..Config::default()
        })
        .expect("bind");
        let mut events = Events::with_capacity(64);
        let mut a = client(&server);
        let hs = json!([{"channel": "/meta/handshake", "version": "1.0",
                         "supportedConnectionTypes": ["long-polling"]}]);
        let reply = exchange(&mut server, &mut events, &mut a, hs);
        let cid = reply[0]["clientId"].as_str().expect("clientId").to_string();
        let sub = json!([{"channel": "/meta/subscribe", "clientId": cid,
                          "subscription": "/chat/room1"}]);
        exchange(&mut server, &mut events, &mut a, sub);
        let connect = json!([{"channel": "/meta/connect", "clientId": cid,
                              "connectionType": "long-polling"}]);
        exchange(&mut server, &mut events, &mut a, connect.clone());
        // The second connect finds nothing queued and is held.
        send_bayeux(&mut a, connect);
        let started = Instant::now();
        while server.bayeux.n_held() == 0 {
            assert!(started.elapsed() < LIMIT, "the connect was never held");
            iterate(&mut server, &mut events);
        }

        // One iteration: the client's close is dispatched, then a publish
        // arrives, then the flush and reap phases run.
        drop(a);
        while server.conns.n_to_reap() == 0 {
            assert!(started.elapsed() < LIMIT, "the close was never seen");
            dispatch_once(&mut server, &mut events);
        }
        let message = server
            .hub
            .publish("chat/room1", "hello".into(), false, None, server.now)
            .expect("room in the hub");
        server.deliver(&message);
        server.flush_bayeux();
        server.reap();

        // CometD's first connect after a network failure asks for `timeout: 0`:
        // it is answered at once with whatever the session has queued.
        let mut b = client(&server);
        let reconnect = json!([{"channel": "/meta/connect", "clientId": cid,
                                "connectionType": "long-polling", "advice": {"timeout": 0}}]);
        let reply = exchange(&mut server, &mut events, &mut b, reconnect);
        let data: Vec<&Value> = reply
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["channel"] == "/chat/room1")
            .map(|m| &m["data"])
            .collect();
        assert_eq!(data, [&json!("hello")], "reply: {reply}");
    }
}

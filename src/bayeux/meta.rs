//! The handler for each kind of message: the five meta channels and
//! publishing. Each one checks the message, changes the engine's state and
//! pushes its reply onto the request; an `Err` becomes an error reply.

use std::collections::HashSet;
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::channel::{self, NameError, Pattern};
use super::engine::{
    Engine, PendingHold, Publish, Request, Resume, Since, MAX_HANDSHAKES_PER_REQUEST,
    MAX_RESUMES_PER_REQUEST, MAX_SUBSCRIPTIONS_PER_MESSAGE, MAX_SUBSCRIPTIONS_PER_SESSION,
};
use super::ids::format_id;
use super::message::{reply_to, BayeuxError, Incoming};
use super::session::{Resuming, Session};
use crate::token::{self, Action, Claims, Invalid, Refusal, Token, Verifier};

/// The transports halley serves at `/bayeux` over HTTP. Without `websocket`
/// CometD and Faye stay on long-polling (CometD in Node tries a WebSocket
/// upgrade first and falls back when it is refused).
const CONNECTION_TYPES: [&str; 2] = ["long-polling", "callback-polling"];
/// The same with WebSocket first (`Settings::websocket`), the order in which
/// a client should prefer them.
const CONNECTION_TYPES_WS: [&str; 3] = ["websocket", "long-polling", "callback-polling"];

type Handled = Result<(), BayeuxError>;

impl Engine {
    pub(super) fn on_handshake(
        &mut self,
        msg: &Incoming,
        req: &mut Request,
        now: Instant,
    ) -> Handled {
        req.n_handshakes += 1;
        if req.n_handshakes > MAX_HANDSHAKES_PER_REQUEST {
            // No client batches handshakes; one that does is not one to retry.
            self.stats.handshakes_refused += 1;
            let advice = json!({"reconnect": "none"});
            req.replies
                .push(refused_handshake(msg, "too_many_handshakes", advice));
            return Ok(());
        }
        let offered: &[&str] = match self.config.websocket {
            true => &CONNECTION_TYPES_WS,
            false => &CONNECTION_TYPES,
        };
        if let Some(types) = &msg.supported_connection_types {
            if !types.iter().any(|t| offered.contains(&t.as_str())) {
                return Err(BayeuxError::Refused {
                    arg: types.join(","),
                    reason: "connection_type_mismatch",
                });
            }
        }
        let given = match msg.halley_field("token") {
            Some(Value::String(given)) => Some(given.as_str()),
            _ => None,
        };
        let fixed = Token::check(self.config.publish_token.as_deref(), given);
        // With --token-secret, a token that is not the publish token must be
        // a valid signed one; its claims then govern the session.
        let mut claims = None;
        if let (Some(verifier), Some(given), false) =
            (&self.config.tokens, given, fixed == Token::Valid)
        {
            match verifier.verify(given, token::unix(self.wall)) {
                Ok(valid) => claims = Some(Rc::new(valid)),
                Err(why) => {
                    // The client must get a new token before it tries again.
                    self.stats.token_refused += 1;
                    let advice = json!({"reconnect": "none"});
                    req.replies
                        .push(refused_handshake(msg, why.reason(), advice));
                    return Ok(());
                }
            }
        }
        let may_publish = match (fixed, given) {
            // With a secret and no publish token, publishing is by claim.
            (Token::NotConfigured, _) => self.config.tokens.is_none(),
            (Token::Valid, _) => true,
            (Token::MissingOrWrong, Some(_)) if claims.is_none() => {
                // A wrong token is a misconfigured client: tell it to stop
                // rather than retry the same handshake forever.
                let advice = json!({"reconnect": "none"});
                req.replies
                    .push(refused_handshake(msg, "handshake_denied", advice));
                return Ok(());
            }
            // Without the token a session may subscribe but not publish.
            (Token::MissingOrWrong, _) => false,
        };
        let Some(peer) = req.peer else {
            // The server gives the address to every request with a
            // handshake; without it the per-address bound cannot hold.
            let advice = json!({"reconnect": "none"});
            req.replies
                .push(refused_handshake(msg, "handshake_denied", advice));
            return Ok(());
        };
        let from_peer = self.per_addr.get(&peer).copied().unwrap_or(0);
        if self.sessions.len() >= self.config.max_sessions
            || from_peer >= self.config.max_sessions_per_addr
        {
            // Room appears as sessions end, at the latest when an abandoned
            // one expires after `max_interval`: retry the handshake then.
            // CometD and Faye both wait `interval` before handshaking again.
            self.stats.sessions_refused += 1;
            let interval = self.config.max_interval.as_millis() as u64;
            let advice = json!({"reconnect": "handshake", "interval": interval});
            req.replies
                .push(refused_handshake(msg, "too_many_sessions", advice));
            return Ok(());
        }
        let acks = msg.ext_field("ack") == Some(&Value::Bool(true));
        let id: Rc<str> = Rc::from(format_id((self.new_id)()));
        let expires_at = now + self.config.max_interval;
        let mut session = Session::new(id.clone(), peer, expires_at, may_publish, acks);
        session.claims = claims;
        self.sessions.insert(id.clone(), session);
        *self.per_addr.entry(peer).or_default() += 1;
        self.arm_expiry(expires_at, &id);
        self.stats.handshakes += 1;

        let mut reply = reply_to(msg);
        reply.insert("version".into(), "1.0".into());
        reply.insert("supportedConnectionTypes".into(), json!(offered));
        reply.insert("clientId".into(), Value::String(id.to_string()));
        reply.insert("successful".into(), true.into());
        reply.insert("advice".into(), self.advice(0));
        if acks {
            // The plain `true` form: the AckExtension of CometD's JavaScript
            // client then starts from batch 0, and halley never delivers
            // messages on the handshake reply itself.
            reply.insert("ext".into(), json!({"ack": true}));
        }
        req.replies.push(Value::Object(reply).to_string());
        Ok(())
    }

    /// A connect is answered at once when it is the session's first, when the
    /// client's own advice asks for `timeout: 0` (CometD's first connect after
    /// a handshake or a network failure), or when messages are waiting;
    /// otherwise it is held until messages arrive or the timeout passes.
    pub(super) fn on_connect(
        &mut self,
        msg: &Incoming,
        req: &mut Request,
        now: Instant,
    ) -> Handled {
        let session = self.session_of(msg)?;
        let id = session.id.clone();
        if session.token_ends.is_some_and(|ends| ends <= now) {
            // Its deadline may not have come up yet in this iteration.
            self.end_token_expired(&id);
            let reply = super::engine::token_expired_reply(msg.id.clone(), &id);
            req.replies.push(reply.to_string());
            return Ok(());
        }
        if let Some(ack) = msg.ext_field("ack").and_then(Value::as_u64) {
            session.ack(ack);
        }
        let immediate =
            !session.connected || msg.advice_timeout_ms == Some(0) || session.has_pending();
        session.connected = true;
        // One outstanding connect per session: an earlier one, held by another
        // request or earlier in this one, is answered now, without messages.
        // A client sends a second connect when it gave the first up for lost,
        // so the messages go with the connect it is waiting for.
        req.released.extend(self.release(&id, now, false, 0));
        if let Some(earlier) = req.hold.take_if(|h| h.session == id) {
            req.replies
                .extend(self.connect_reply(&id, earlier.reply_id, now, false, 0));
        }
        if immediate {
            req.replies
                .extend(self.connect_reply(&id, msg.id.clone(), now, true, 0));
            return Ok(());
        }
        let mut timeout = self.config.timeout;
        if let Some(ms) = msg.advice_timeout_ms {
            timeout = timeout.min(Duration::from_millis(ms));
        }
        if let Some(other) = req.hold.replace(PendingHold {
            session: id,
            reply_id: msg.id.clone(),
            deadline: now + timeout,
        }) {
            // Two sessions' connects in one request: only one request can be
            // parked, so the other session's connect is answered now.
            req.replies
                .extend(self.connect_reply(&other.session, other.reply_id, now, true, 0));
        }
        Ok(())
    }

    pub(super) fn on_subscribe(
        &mut self,
        msg: &Incoming,
        req: &mut Request,
        now: Instant,
    ) -> Handled {
        let since = match msg.halley_field("since") {
            None => None,
            Some(Value::String(s)) if s == "earliest" => Some(Since::Earliest),
            Some(Value::String(s)) => Some(Since::Id(s.clone())),
            Some(_) => {
                return Err(BayeuxError::Refused {
                    arg: String::new(),
                    reason: "since_must_be_a_string",
                })
            }
        };
        let id = self.session_of(msg)?.id.clone();
        let patterns = self.check_subscription(msg, since.is_some())?;
        let token_ends = self.check_subscribe_token(msg, &id, &patterns, now)?;
        let session = self.sessions.get_mut(&id).expect("checked above");
        // Applied whole or not at all, so a refused message changes nothing.
        let fresh: HashSet<&Pattern> = patterns
            .iter()
            .filter(|p| !session.is_subscribed(p))
            .collect();
        if session.subscriptions.len() + fresh.len() > MAX_SUBSCRIPTIONS_PER_SESSION {
            let first = patterns.iter().find(|p| fresh.contains(p));
            let arg = first.map(Pattern::text).unwrap_or_default();
            return Err(self.too_many_subscriptions(arg));
        }
        // `since` only on exact channels (checked), so every pattern resumes.
        let resumes: Vec<&str> = match since {
            Some(_) => patterns
                .iter()
                .filter_map(Pattern::exact)
                .map(|name| channel::to_hub(name).expect("checked"))
                .collect(),
            None => Vec::new(),
        };
        if let Some(past) = first_resume_past_bound(req, &id, &resumes) {
            self.stats.resumes_refused += 1;
            let arg = channel::from_hub(past).unwrap_or_default();
            return Err(BayeuxError::Forbidden {
                arg,
                reason: "too_many_resumes",
            });
        }
        let mut added = Vec::new();
        for p in &patterns {
            if session.subscriptions.insert(p.clone()) {
                added.push(p.text());
            }
        }
        if self.config.clustered {
            req.subscribed.extend(added.iter().cloned());
        }
        for text in added {
            self.route(text, &id);
        }
        self.note_token_end(&id, token_ends);
        if let Some(since) = since {
            let clustered = self.config.clustered;
            let session = self.sessions.get_mut(&id).expect("checked above");
            for hub in resumes {
                queue_resume(req, &id, hub, &since);
                if clustered && !session.resuming.iter().any(|r| r.channel == hub) {
                    session.resuming.push(Resuming {
                        channel: hub.to_owned(),
                        held: Vec::new(),
                        held_bytes: 0,
                    });
                }
            }
        }
        req.replies.push(subscription_reply(msg, &id));
        Ok(())
    }

    pub(super) fn on_unsubscribe(&mut self, msg: &Incoming, req: &mut Request) -> Handled {
        let id = self.session_of(msg)?.id.clone();
        let patterns = self.check_subscription(msg, false)?;
        let session = self.sessions.get_mut(&id).expect("checked above");
        let mut removed = Vec::new();
        for p in patterns {
            if session.subscriptions.remove(&p) {
                removed.push(p.text());
            }
        }
        for text in removed {
            self.unroute(&text, &id);
        }
        req.replies.push(subscription_reply(msg, &id));
        Ok(())
    }

    /// With `--token-secret`: whether the subscribe's token (its own
    /// `ext.halley.token`, else the handshake's) covers every one of
    /// `patterns`, and if so when the earliest-ending grant ends. Checked
    /// before anything is applied, like the patterns themselves.
    fn check_subscribe_token(
        &mut self,
        msg: &Incoming,
        id: &Rc<str>,
        patterns: &[Pattern],
        now: Instant,
    ) -> Result<Option<Instant>, BayeuxError> {
        let Some(verifier) = &self.config.tokens else {
            return Ok(None);
        };
        let wall = token::unix(self.wall);
        let session_claims = self.sessions.get(id).and_then(|s| s.claims.clone());
        let first = || patterns.first().map(Pattern::text).unwrap_or_default();
        let claims = match claims_of(verifier, msg, session_claims.as_ref(), wall) {
            Ok(claims) => claims,
            Err(refusal) => return Err(self.token_refused(first(), refusal)),
        };
        let mut ends = None;
        for p in patterns {
            let text = p.text();
            // Claims name hub channels: `/chat/*` is `chat/*`.
            let hub = text.strip_prefix('/').unwrap_or(&text);
            match claims.allow(Action::Subscribe, hub) {
                // One token's grants all end when it does.
                Ok(grant) => ends = grant.ends,
                Err(refusal) => return Err(self.token_refused(text, refusal)),
            }
        }
        Ok(ends.map(|ends| token::ends_at(ends, now, self.wall)))
    }

    /// A session's subscriptions last no longer than the token that allowed
    /// them: its end is kept if earlier than one kept already, and the
    /// session's timer is asked for then (one more entry per such subscribe,
    /// at most `MAX_SUBSCRIPTIONS_PER_SESSION`).
    fn note_token_end(&mut self, id: &Rc<str>, ends: Option<Instant>) {
        let Some(ends) = ends else {
            return;
        };
        let Some(session) = self.sessions.get_mut(id) else {
            return;
        };
        if session.token_ends.is_some_and(|kept| kept <= ends) {
            return;
        }
        session.token_ends = Some(ends);
        self.arm_expiry(ends, id);
    }

    /// A refusal for the token, counted, in the `403:<channel>:<reason>`
    /// form CometD and Faye report to the caller of `subscribe`/`publish`.
    fn token_refused(&mut self, arg: String, refusal: Refusal) -> BayeuxError {
        self.stats.token_refused += 1;
        BayeuxError::Forbidden {
            arg,
            reason: refusal.reason(),
        }
    }

    /// Checks every channel of a (un)subscribe before any takes effect, so a
    /// request is applied whole or not at all. The count is checked first, so
    /// an oversized message costs no parsing.
    fn check_subscription(
        &mut self,
        msg: &Incoming,
        resuming: bool,
    ) -> Result<Vec<Pattern>, BayeuxError> {
        if msg.subscription.len() > MAX_SUBSCRIPTIONS_PER_MESSAGE {
            return Err(self.too_many_subscriptions(String::new()));
        }
        check_patterns(msg, resuming)
    }

    /// The refusal of a (un)subscribe past a subscription bound, counted.
    fn too_many_subscriptions(&mut self, arg: String) -> BayeuxError {
        self.stats.subscriptions_refused += 1;
        BayeuxError::Forbidden {
            arg,
            reason: "too_many_subscriptions",
        }
    }

    pub(super) fn on_disconnect(
        &mut self,
        msg: &Incoming,
        req: &mut Request,
        _now: Instant,
    ) -> Handled {
        let id = self.session_of(msg)?.id.clone();
        if req.hold.as_ref().is_some_and(|h| h.session == id) {
            req.hold = None;
        }
        // A connect still held is answered with `reconnect: none`: the client
        // is going away and must not connect again with this clientId.
        let released = self.end_session(&id, |held| {
            json!({"channel": "/meta/connect", "id": held.reply_id, "clientId": &*id,
                   "successful": true, "advice": {"reconnect": "none"}})
            .to_string()
        });
        req.released.extend(released);
        self.stats.disconnects += 1;
        let mut reply = reply_to(msg);
        reply.insert("clientId".into(), Value::String(id.to_string()));
        reply.insert("successful".into(), true.into());
        req.replies.push(Value::Object(reply).to_string());
        Ok(())
    }

    /// Publishing to a non-meta channel. The session must exist (the publish
    /// token is checked at handshake, so this is what keeps Bayeux from being
    /// a way around it). `/service/**` messages are for the server alone, and
    /// halley runs no services, so they are acknowledged and go nowhere.
    pub(super) fn on_message(&mut self, msg: &Incoming, req: &mut Request) -> Handled {
        let name = msg.channel.as_str();
        let session = self.session_of(msg)?;
        if channel::check_name(name).is_err() {
            return Err(BayeuxError::ChannelInvalid(name.to_string()));
        }
        let data = msg
            .data
            .as_ref()
            .ok_or(BayeuxError::Missing("data_missing"))?;
        let (may_publish, claims) = (session.may_publish, session.claims.clone());
        if !may_publish {
            let Some(verifier) = &self.config.tokens else {
                return Err(BayeuxError::Forbidden {
                    arg: name.to_string(),
                    reason: "publish_forbidden",
                });
            };
            let hub = channel::to_hub(name).unwrap_or(name);
            let wall = token::unix(self.wall);
            claims_of(verifier, msg, claims.as_ref(), wall)
                .and_then(|claims| claims.allow(Action::Publish, hub))
                .map_err(|refusal| self.token_refused(name.to_string(), refusal))?;
        }
        let event = match msg.halley_field("event") {
            None => None,
            // The same rules as `?event=` on `POST /pub`, so Bayeux is no way
            // around them (a reserved name would spoof halley's own signals).
            Some(Value::String(e)) if crate::routes::check_event_name(e).is_ok() => Some(e.clone()),
            Some(_) => {
                return Err(BayeuxError::Refused {
                    arg: name.to_string(),
                    reason: "event_invalid",
                })
            }
        };
        if !channel::is_service(name) {
            let publish = Publish {
                channel: channel::to_hub(name).expect("checked").to_string(),
                json: data.to_string(),
                event,
            };
            if let Err(reason) = req.room.admit(&publish) {
                return Err(BayeuxError::Unavailable {
                    arg: name.to_string(),
                    reason,
                });
            }
            req.publishes.push(publish);
        }
        let mut reply = reply_to(msg);
        reply.insert("successful".into(), true.into());
        req.replies.push(Value::Object(reply).to_string());
        Ok(())
    }
}

/// The first of `channels` (hub names a subscribe of session `id` resumes)
/// that would take the request past `MAX_RESUMES_PER_REQUEST`, or `None` when
/// they all fit. A channel the request already resumes for this session, or
/// one named twice, takes no more room. Nothing is allocated per channel, so
/// a refused message costs no more than its parsing.
fn first_resume_past_bound<'a>(req: &Request, id: &str, channels: &[&'a str]) -> Option<&'a str> {
    let mut n = req.resumes.len();
    let mut seen = HashSet::new();
    for &hub in channels {
        if resume_at(req, id, hub).is_some() || !seen.insert(hub) {
            continue;
        }
        n += 1;
        if n > MAX_RESUMES_PER_REQUEST {
            return Some(hub);
        }
    }
    None
}

/// Where in `req.resumes` session `id`'s resume of `channel` is, if any.
fn resume_at(req: &Request, id: &str, channel: &str) -> Option<usize> {
    let at = req.resume_index.get(channel)?;
    at.iter().copied().find(|&i| req.resumes[i].client_id == id)
}

/// Adds a resume to the request, or moves an earlier one of the same session
/// and channel to the later cursor: the client asked last for that one, and
/// one replay delivers each message once.
fn queue_resume(req: &mut Request, id: &str, channel: &str, since: &Since) {
    if let Some(i) = resume_at(req, id, channel) {
        req.resumes[i].since = since.clone();
        return;
    }
    req.resume_index
        .entry(channel.to_string())
        .or_default()
        .push(req.resumes.len());
    req.resumes.push(Resume {
        client_id: id.to_string(),
        channel: channel.to_string(),
        since: since.clone(),
    });
}

/// The claims a subscribe or publish is held to: those of its own
/// `ext.halley.token` if it has one, else those its session's handshake
/// presented, still within their time.
fn claims_of(
    verifier: &Verifier,
    msg: &Incoming,
    session: Option<&Rc<Claims>>,
    wall: u64,
) -> Result<Rc<Claims>, Refusal> {
    match msg.halley_field("token") {
        Some(Value::String(given)) => verifier
            .verify(given, wall)
            .map(Rc::new)
            .map_err(Refusal::Invalid),
        Some(_) => Err(Refusal::Invalid(Invalid::Malformed)),
        None => {
            let claims = session.ok_or(Refusal::Missing)?;
            claims.check_time(wall).map_err(Refusal::Invalid)?;
            Ok(claims.clone())
        }
    }
}

/// Parses and checks every channel a (un)subscribe names.
fn check_patterns(msg: &Incoming, resuming: bool) -> Result<Vec<Pattern>, BayeuxError> {
    if msg.subscription.is_empty() {
        return Err(BayeuxError::Missing("subscription_missing"));
    }
    msg.subscription
        .iter()
        .map(|text| {
            let p = Pattern::parse(text).map_err(|e| match e {
                NameError::Missing => BayeuxError::Missing("subscription_missing"),
                NameError::Invalid => BayeuxError::ChannelInvalid(text.clone()),
            })?;
            if p.is_reserved() {
                return Err(BayeuxError::Forbidden {
                    arg: text.clone(),
                    reason: "channel_forbidden",
                });
            }
            if resuming && p.exact().is_none() {
                // The hub keeps history per channel; a pattern has no single cursor.
                return Err(BayeuxError::Refused {
                    arg: text.clone(),
                    reason: "since_needs_a_channel",
                });
            }
            Ok(p)
        })
        .collect()
}

/// An unsuccessful handshake: `403::<reason>` with the advice that tells
/// the client whether and when to try again.
fn refused_handshake(msg: &Incoming, reason: &str, advice: Value) -> String {
    let mut reply = reply_to(msg);
    reply.insert("successful".into(), false.into());
    reply.insert("error".into(), format!("403::{reason}").into());
    reply.insert("advice".into(), advice);
    Value::Object(reply).to_string()
}

fn subscription_reply(msg: &Incoming, id: &str) -> String {
    let mut reply = reply_to(msg);
    reply.insert("clientId".into(), Value::String(id.to_string()));
    reply.insert(
        "subscription".into(),
        msg.subscription_raw.clone().unwrap_or(Value::Null),
    );
    reply.insert("successful".into(), true.into());
    Value::Object(reply).to_string()
}

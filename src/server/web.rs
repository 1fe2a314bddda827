//! The browser-facing side of the server: pages (the embedded demo and
//! client, or files under `--static`) and the rules for publishing, where
//! channels under `--open-publish` take anonymous publishes with a small body
//! limit and a per-address rate limit. `Web` decides, given only the request
//! head, the client's address and the time; `Server::on_page` and
//! `Server::admit` are the thin edges that fetch those and write the answer.
//!
//! With `--token-secret`, this is also where a subscriber's signed token is
//! judged (`Server::admit_subscriber`, which every transport calls) and
//! where the expiry of each held subscription's token is kept, in a side
//! table beside the connection table: only connections with a token pay for it.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::time::{Instant, SystemTime};

use super::respond::Ask;
use super::Server;
use crate::config::Config;
use crate::conn_id::ConnId;
use crate::http::query::split_target;
use crate::http::request::{BodyKind, Method, RequestHead};
use crate::http::Reject;
use crate::routes::{self, Route};
use crate::token::{self, Action, Refusal, Token, Verifier};
use crate::web::assets::{self, AssetReply};
use crate::web::open_publish::{PublishPolicy, PublishVerdict};
use crate::web::rate_limit::RateLimiter;
use crate::web::static_files::{StaticReply, StaticRoot};

/// The client script stays available under `--static`, so users' own pages
/// can load it from the server they talk to.
const CLIENT_PATH: &str = "/halley.js";

pub(super) struct Web {
    static_root: Option<StaticRoot>,
    policy: PublishPolicy,
    /// `--publish-token`, for publishing and deleting over HTTP.
    publish_token: Option<String>,
    /// `--max-body`: the largest body of any request.
    max_body: usize,
    /// `--token-secret`: subscribing needs a signed token, which may also
    /// publish where its claims say.
    tokens: Option<Verifier>,
    /// When the token of each subscriber admitted with one ends, by
    /// connection: a parked subscriber's deadline is kept no later, and when
    /// it comes up the subscription ends. Set at every admission (a
    /// kept-alive connection's next subscribe replaces it), removed when the
    /// connection is reaped; so it holds at most one entry per open connection.
    expiries: HashMap<ConnId, Instant>,
}

/// A page or file to send: what `on_page` writes with `respond`.
pub(super) struct Page {
    pub status: u16,
    pub content_type: &'static str,
    /// Embedded assets are borrowed; files read from `--static` are owned.
    pub body: Cow<'static, [u8]>,
    pub etag: String,
}

impl Web {
    pub fn new(config: &Config, now: Instant) -> io::Result<Web> {
        let static_root = match &config.static_dir {
            Some(dir) => Some(StaticRoot::new(dir).map_err(|e| {
                io::Error::new(e.kind(), format!("--static {}: {e}", dir.display()))
            })?),
            None => None,
        };
        let limiter = RateLimiter::with_defaults(now);
        let policy = PublishPolicy::new(config.open_publish.clone(), limiter);
        Ok(Web {
            static_root,
            policy,
            publish_token: config.publish_token.clone(),
            max_body: config.max_body,
            tokens: config.token_secret.clone(),
            expiries: HashMap::new(),
        })
    }

    /// The page or file a `GET` names: from `--static` when given (the
    /// client script stays available either way), else the embedded demo.
    pub fn page(&self, head: &RequestHead) -> Result<Page, Reject> {
        let if_none_match = head.if_none_match.as_deref();
        let from_disk = self
            .static_root
            .as_ref()
            .map(|root| root.resolve(&head.target, if_none_match));
        let embedded = match &from_disk {
            None => true,
            Some(StaticReply::NotFound) => routes::path(&head.target) == CLIENT_PATH,
            Some(_) => false,
        };
        let reply = match (embedded, from_disk) {
            (true, _) => match assets::lookup(&head.target) {
                None => StaticReply::NotFound,
                Some(asset) => match assets::reply(asset, if_none_match) {
                    AssetReply::NotModified => StaticReply::NotModified {
                        etag: asset.etag().to_owned(),
                    },
                    AssetReply::Full(content_type) => {
                        return Ok(Page {
                            status: 200,
                            content_type,
                            body: Cow::Borrowed(asset.body),
                            etag: asset.etag().to_owned(),
                        })
                    }
                },
            },
            (false, reply) => reply.expect("resolved from disk"),
        };
        match reply {
            StaticReply::File {
                body,
                content_type,
                etag,
            } => Ok(Page {
                status: 200,
                content_type,
                body: Cow::Owned(body),
                etag,
            }),
            StaticReply::NotModified { etag } => Ok(Page {
                status: 304,
                content_type: "text/plain",
                body: Cow::Borrowed(b""),
                etag,
            }),
            StaticReply::NotFound => {
                let path = routes::path(&head.target);
                Err(Reject::new(404, format!("no route or file for {path}")))
            }
            StaticReply::BadRequest(why) => Err(Reject::new(400, format!("bad path: {why}"))),
        }
    }

    /// How a publish or delete of `channel` stands: `--publish-token`
    /// first, then, with `--token-secret`, a signed token in
    /// `Authorization: Bearer` whose `publish` claim covers the channel.
    /// Only the header counts: a cookie would let any page the user visits
    /// publish in their name (a cross-site form sends cookies along).
    /// With a secret set, publishing needs one of the two, except where the
    /// open rules let anyone publish. A signed token that is refused answers
    /// why on a channel that is not open (401, or 403 outside its claim).
    pub fn publisher(&self, head: &RequestHead, channel: &str) -> Result<Token, Reject> {
        let bearer = head.authorization.as_deref().and_then(token::bearer);
        let fixed = Token::check(self.publish_token.as_deref(), bearer);
        let Some(verifier) = &self.tokens else {
            return Ok(fixed);
        };
        if fixed == Token::Valid {
            return Ok(fixed);
        }
        match verifier.authorize(bearer, Action::Publish, channel, unix_now()) {
            Ok(_) => Ok(Token::Valid),
            Err(_) if self.policy.is_open(channel) => Ok(Token::MissingOrWrong),
            Err(Refusal::Missing) => Ok(Token::MissingOrWrong),
            Err(refusal) => Err(refused(refusal, Action::Publish, channel)),
        }
    }

    /// Whether the request's token lets it subscribe to `channel` at `wall`
    /// (Unix seconds): without `--token-secret` always, with it only with a
    /// token whose `subscribe` claim covers the channel. `Some` is when that
    /// token ends (Unix seconds).
    pub fn subscriber(
        &self,
        head: &RequestHead,
        channel: &str,
        wall: u64,
    ) -> Result<Option<u64>, Reject> {
        let Some(verifier) = &self.tokens else {
            return Ok(None);
        };
        let query = split_target(&head.target).1;
        let credential = token::from_request(
            head.authorization.as_deref(),
            head.token_cookie.as_deref(),
            query,
        );
        match verifier.authorize(credential.as_deref(), Action::Subscribe, channel, wall) {
            Ok(grant) => Ok(grant.ends),
            Err(refusal) => Err(refused(refusal, Action::Subscribe, channel)),
        }
    }

    /// Whether a request's credentials can matter: with neither
    /// `--publish-token` nor `--token-secret` every request stands alike.
    pub fn checks_tokens(&self) -> bool {
        self.publish_token.is_some() || self.tokens.is_some()
    }

    /// When the token of subscriber `id` ends, if it has one.
    pub fn token_ends(&self, id: ConnId) -> Option<Instant> {
        self.expiries.get(&id).copied()
    }

    /// The connection was reaped: its token's end goes with it.
    pub fn forget(&mut self, id: ConnId) {
        if !self.expiries.is_empty() {
            self.expiries.remove(&id);
        }
    }

    /// Decides from a request's head alone what it may send: a publish's
    /// token, open-channel and rate rules run before its body is read, so a
    /// refused publish costs no more than its head, and a body past its limit
    /// is refused by its `Content-Length`. Returns the body limit (which a
    /// chunked body is held to as it decodes). Only a publish is routed
    /// here and asks for the client's address (`peer`, a syscall): every
    /// other request pays for one length check.
    pub fn admit(
        &mut self,
        head: &RequestHead,
        now: Instant,
        peer: impl FnOnce() -> Option<IpAddr>,
    ) -> Result<usize, Reject> {
        let publish = match head.method {
            Method::Post => match routes::route(head) {
                Ok(Route::Publish { channel, .. }) => {
                    let token = self.publisher(head, &channel)?;
                    Some((channel, token))
                }
                _ => None,
            },
            _ => None,
        };
        let limit = match &publish {
            Some((channel, token)) => self.policy.body_limit(channel, *token, self.max_body),
            None => self.max_body,
        };
        // Every request's declared body is held to its limit, whatever its
        // route: a Bayeux body is read whole before the engine sees it.
        let declared = match head.body {
            BodyKind::Length(n) if n > limit as u64 => return Err(too_large(limit)),
            BodyKind::Length(n) => n as usize,
            BodyKind::None | BodyKind::Chunked => 0,
        };
        let Some((channel, token)) = publish else {
            return Ok(limit);
        };
        let Some(peer) = peer() else {
            return Err(Reject::new(400, "the connection has no peer address"));
        };
        verdict(self.policy.decide(&channel, token, declared, peer, now)).map(|()| limit)
    }

    /// The same rules for a publish that has no head of its own (a `/ws`
    /// command): `token` from the upgrade request, `len` the data's size.
    pub fn decide_publish(
        &mut self,
        channel: &str,
        token: Token,
        len: usize,
        peer: Option<IpAddr>,
        now: Instant,
    ) -> Result<(), Reject> {
        let limit = self.policy.body_limit(channel, token, self.max_body);
        if len > limit {
            return Err(too_large(limit));
        }
        let Some(peer) = peer else {
            return Err(Reject::new(400, "the connection has no peer address"));
        };
        verdict(self.policy.decide(channel, token, len, peer, now))
    }

    /// Deleting has no open rules: with `--publish-token` it needs the
    /// token, and with `--token-secret` that or a signed token whose
    /// `publish` claim covers the channel.
    pub fn check_delete(&self, head: &RequestHead, channel: &str) -> Result<(), Reject> {
        // Open channels answer MissingOrWrong here: their rules are for
        // publishing only.
        match self.publisher(head, channel)? {
            Token::MissingOrWrong => Err(unauthorized()),
            Token::NotConfigured | Token::Valid => Ok(()),
        }
    }
}

impl Server {
    pub(super) fn on_page(&mut self, id: ConnId, head: &RequestHead) {
        match self.web.page(head) {
            Ok(page) => {
                let etag = format!("ETag: {}", page.etag);
                let extra = [
                    etag.as_str(),
                    "Cache-Control: no-cache",
                    "X-Content-Type-Options: nosniff",
                ];
                let ask = Ask::of(head);
                self.respond(id, ask, page.status, page.content_type, &page.body, &extra);
            }
            Err(reject) => self.reject(id, reject, Ask::of(head)),
        }
    }

    /// The one check every transport makes before it subscribes connection
    /// `id` to `channel` (a hub name): without `--token-secret` it passes;
    /// with it, the request's token must cover the channel, or the refusal
    /// (401 or 403, saying why) is for the caller to answer. A token that
    /// ends is remembered for `id`, so the subscription ends with it: park
    /// the connection with a deadline from `token_deadline`, and when it
    /// comes up, end the subscription if `token_expired`.
    pub(super) fn admit_subscriber(
        &mut self,
        id: ConnId,
        head: &RequestHead,
        channel: &str,
    ) -> Result<(), Reject> {
        if self.web.tokens.is_none() {
            return Ok(());
        }
        let wall = SystemTime::now();
        let ends = self.web.subscriber(head, channel, token::unix(wall))?;
        match ends {
            Some(ends) => {
                let at = token::ends_at(ends, self.now, wall);
                self.web.expiries.insert(id, at);
            }
            None => {
                self.web.expiries.remove(&id);
            }
        }
        Ok(())
    }

    /// A parked subscriber's next deadline: `at`, or its token's end if
    /// that is sooner.
    pub(super) fn token_deadline(&self, id: ConnId, at: Instant) -> Instant {
        self.web.token_ends(id).map_or(at, |ends| ends.min(at))
    }

    /// Whether subscriber `id`'s token has ended.
    pub(super) fn token_expired(&self, id: ConnId) -> bool {
        self.web.token_ends(id).is_some_and(|ends| ends <= self.now)
    }

    /// `Web::admit` for connection `id`, whose address a publish's rate
    /// limit needs.
    pub(super) fn admit(&mut self, id: ConnId, head: &RequestHead) -> Result<usize, Reject> {
        let conns = &mut self.conns;
        let peer = || Some(conns.get(id)?.socket.peer_addr().ok()?.ip());
        self.web.admit(head, self.now, peer)
    }
}

pub(super) fn too_large(limit: usize) -> Reject {
    Reject::new(413, format!("request body exceeds {limit} bytes"))
}

/// What a publish's verdict is answered with, when it is refused.
fn verdict(verdict: PublishVerdict) -> Result<(), Reject> {
    match verdict {
        PublishVerdict::Allow => Ok(()),
        PublishVerdict::Unauthorized => Err(unauthorized()),
        PublishVerdict::TooLarge { limit } => Err(Reject::new(
            413,
            format!("messages to open channels are at most {limit} bytes"),
        )),
        PublishVerdict::RateLimited { retry_after } => Err(Reject::new(
            429,
            format!("too many messages from your address; retry in {retry_after} s"),
        )
        .with_retry_after(retry_after)),
    }
}

/// A signed token's refusal as the HTTP answer.
fn refused(refusal: Refusal, action: Action, channel: &str) -> Reject {
    Reject::new(refusal.status(), refusal.message(action, channel))
}

/// Unix seconds now: read only where a signed token is checked.
fn unix_now() -> u64 {
    token::unix(SystemTime::now())
}

fn unauthorized() -> Reject {
    Reject::new(401, "publishing needs Authorization: Bearer <token>")
}

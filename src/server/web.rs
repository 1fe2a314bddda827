//! The browser-facing side of the server: pages (the embedded demo and
//! client, or files under `--static`) and the rules for publishing, where
//! channels under `--open-publish` take anonymous publishes with a small body
//! limit and a per-address rate limit. The decisions come from `crate::web`;
//! this file turns them into responses.

use std::io;
use std::time::Instant;

use super::respond::Ask;
use super::Server;
use crate::config::Config;
use crate::conn_id::ConnId;
use crate::http::request::{BodyKind, Method, RequestHead};
use crate::http::Reject;
use crate::routes::{self, Route};
use crate::token::Token;
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
        })
    }
}

impl Server {
    pub(super) fn on_page(&mut self, id: ConnId, head: &RequestHead) {
        let if_none_match = head.if_none_match.as_deref();
        let from_disk = self
            .web
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
                        let etag = format!("ETag: {}", asset.etag());
                        return self.send_page(id, head, 200, content_type, asset.body, &etag);
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
            } => self.send_page(id, head, 200, content_type, &body, &format!("ETag: {etag}")),
            StaticReply::NotModified { etag } => {
                self.send_page(id, head, 304, "text/plain", b"", &format!("ETag: {etag}"))
            }
            StaticReply::NotFound => {
                let path = routes::path(&head.target);
                self.reject(
                    id,
                    Reject::new(404, format!("no route or file for {path}")),
                    Ask::of(head),
                )
            }
            StaticReply::BadRequest(why) => self.reject(
                id,
                Reject::new(400, format!("bad path: {why}")),
                Ask::of(head),
            ),
        }
    }

    fn send_page(
        &mut self,
        id: ConnId,
        head: &RequestHead,
        status: u16,
        content_type: &str,
        body: &[u8],
        etag: &str,
    ) {
        let extra = [
            etag,
            "Cache-Control: no-cache",
            "X-Content-Type-Options: nosniff",
        ];
        self.respond(id, Ask::of(head), status, content_type, body, &extra);
    }

    /// How the request's `Authorization` stands against `--publish-token`.
    pub(super) fn publish_token(&self, head: &RequestHead) -> Token {
        let configured = self.config.publish_token.as_deref();
        Token::from_authorization(configured, head.authorization.as_deref())
    }

    /// Decides from a request's head alone what it may send: a publish's
    /// token, open-channel and rate rules run before its body is read, so a
    /// refused publish costs no more than its head, and a body past its limit
    /// is refused by its `Content-Length`. Returns the body limit (which a
    /// chunked body is held to as it decodes).
    pub(super) fn admit(&mut self, id: ConnId, head: &RequestHead) -> Result<usize, Reject> {
        let max_body = self.config.max_body;
        if head.method != Method::Post {
            return Ok(max_body);
        }
        let Ok(Route::Publish { channel, .. }) = routes::route(head) else {
            return Ok(max_body);
        };
        let limit = self
            .web
            .policy
            .body_limit(&channel, self.publish_token(head), max_body);
        let declared = match head.body {
            BodyKind::Length(n) if n > limit as u64 => return Err(too_large(limit)),
            BodyKind::Length(n) => n as usize,
            BodyKind::None | BodyKind::Chunked => 0,
        };
        self.check_publish(id, head, &channel, declared)?;
        Ok(limit)
    }

    /// Whether this publish may go ahead: the token, or on open channels the
    /// body limit and the sender's rate limit.
    pub(super) fn check_publish(
        &mut self,
        id: ConnId,
        head: &RequestHead,
        channel: &str,
        body_len: usize,
    ) -> Result<(), Reject> {
        let token = self.publish_token(head);
        let peer = self.conns.get(id).and_then(|c| c.socket.peer_addr().ok());
        let Some(peer) = peer else {
            return Err(Reject::new(400, "the connection has no peer address"));
        };
        match self
            .web
            .policy
            .decide(channel, token, body_len, peer.ip(), self.now)
        {
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

    /// Deleting has no open rules: with `--publish-token` it needs the token.
    pub(super) fn check_delete(&self, head: &RequestHead) -> Result<(), Reject> {
        match self.publish_token(head) {
            Token::MissingOrWrong => Err(unauthorized()),
            Token::NotConfigured | Token::Valid => Ok(()),
        }
    }
}

pub(super) fn too_large(limit: usize) -> Reject {
    Reject::new(413, format!("request body exceeds {limit} bytes"))
}

fn unauthorized() -> Reject {
    Reject::new(401, "publishing needs Authorization: Bearer <token>")
}

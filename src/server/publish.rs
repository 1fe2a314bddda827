//! Publishing and deleting: the one path every message takes into the hub,
//! from `POST /pub` and from Bayeux alike, and the end of a deleted channel.
//!
//! A publish has two halves. `publish` hands the message to be *sequenced*
//! (given its id and its place in the channel's history); `on_sequenced`
//! then fans it out and answers whoever published it. In memory the hub
//! sequences at once, so the second half runs straight after the first. This
//! split is the seam for an engine that sequences elsewhere (Redis, issue 9):
//! `publish` would send the message there and return, the publisher's
//! connection waiting like a held long-poll, and `on_sequenced` would run
//! when the engine's answer arrives on the loop. Nothing else would change:
//! fan-out, the Bayeux engine and the publisher's reply are already behind it.

use std::rc::Rc;
use std::time::Instant;

use log::{debug, info};

use super::respond::{Ask, JSON};
use super::Server;
use crate::conn_id::ConnId;
use crate::http::request::RequestHead;
use crate::http::Reject;
use crate::idempotency::{self, Seen};
use crate::json;
use crate::message::Message;

/// A message on its way into the hub, before it has an id.
pub(super) struct Draft {
    pub channel: String,
    pub data: Box<str>,
    /// `data` is JSON text; Bayeux subscribers get it as a value.
    pub data_is_json: bool,
    pub event: Option<Box<str>>,
}

/// Who waits for a publish to be sequenced, and how to answer them.
pub(super) enum Publisher {
    /// `POST /pub`: answered `201` with the id and the subscriber count the
    /// channel had when the publish arrived.
    Http {
        id: ConnId,
        ask: Ask,
        subscribers: usize,
        /// The loop's clock when the request was read, for
        /// `halley_publish_seconds`.
        started: Instant,
        /// The request's `Idempotency-Key`, if it had one.
        idempotency: Option<Idempotency>,
    },
    /// A Bayeux publish: the engine has already built its reply, so nobody
    /// waits for the id.
    Bayeux,
    /// A `/ws` command: answered on the socket with `{"published":...}`.
    Mux(ConnId),
}

/// A publish's `Idempotency-Key` and a hash of its body: a retry has both
/// the same, a different publish under the same key has another hash.
pub(super) struct Idempotency {
    pub key: Box<str>,
    pub hash: String,
}

impl Server {
    pub(super) fn on_publish(
        &mut self,
        id: ConnId,
        head: &RequestHead,
        channel: &str,
        event: Option<String>,
        body: Vec<u8>,
    ) {
        // The token, open-channel and rate rules were decided from the head
        // (`admit`), before the body was read.
        let Ok(data) = String::from_utf8(body) else {
            return self.reject(
                id,
                Reject::new(400, "message is not valid UTF-8"),
                Ask::of(head),
            );
        };
        let idempotency = match head.idempotency_key.as_deref() {
            None => None,
            Some(key) => {
                if let Err(why) = idempotency::validate_key(key) {
                    return self.reject(id, Reject::new(400, why), Ask::of(head));
                }
                let hash = idempotency::body_hash(data.as_bytes());
                // With Redis, the publish script checks the key, atomically
                // with the publish, on whichever node the retry lands.
                if self.cluster.is_none() && self.repeated(id, head, channel, key, &hash) {
                    return;
                }
                Some(Idempotency {
                    key: key.into(),
                    hash,
                })
            }
        };
        let data_is_json = crate::bayeux::wire::is_json_text(head.content_type.as_deref(), &data);
        let publisher = Publisher::Http {
            id,
            ask: Ask::of(head),
            subscribers: self.hub.channel(channel).map_or(0, |c| c.n_subscribers()),
            started: self.now,
            idempotency,
        };
        let draft = Draft {
            channel: channel.to_owned(),
            data: data.into(),
            data_is_json,
            event: event.map(Into::into),
        };
        self.publish(draft, publisher);
    }

    /// Whether a publish under `key` was seen here already, and if so
    /// answers it: the first publish's `201` again for the same body, `409`
    /// for another.
    fn repeated(
        &mut self,
        id: ConnId,
        head: &RequestHead,
        channel: &str,
        key: &str,
        hash: &str,
    ) -> bool {
        match self.idempotency.check(channel, key, hash, self.now) {
            Seen::New => false,
            Seen::Repeat(reply) => {
                let reply = reply.to_vec();
                self.counters.idempotent_replays += 1;
                self.respond(id, Ask::of(head), 201, JSON, &reply, &[]);
                true
            }
            Seen::Conflict => {
                self.reject(id, idempotency_conflict(), Ask::of(head));
                true
            }
        }
    }

    /// The first half of every publish: the message is sequenced by the hub,
    /// which in memory answers at once (see the module doc for an engine
    /// that answers later).
    pub(super) fn publish(&mut self, draft: Draft, publisher: Publisher) {
        if self.cluster.is_some() {
            return self.publish_via_redis(draft, publisher);
        }
        let published = self.hub.publish(
            &draft.channel,
            draft.data,
            draft.data_is_json,
            draft.event,
            self.now,
        );
        match published {
            Ok(message) => self.on_sequenced(&message, publisher),
            Err(full) => self.on_refused(full.reject(), publisher),
        }
    }

    /// A publish the hub had no room for: nothing was stored or delivered.
    /// An HTTP publisher is told why. A Bayeux publish was admitted by the
    /// engine's `HubRoom`, which errs on the side of refusing, and already
    /// answered; should the hub refuse it after all, it is counted and logged.
    fn on_refused(&mut self, reject: Reject, publisher: Publisher) {
        match publisher {
            Publisher::Http { id, ask, .. } => self.reject(id, reject, ask),
            Publisher::Bayeux => debug!("a Bayeux publish was refused: {}", reject.message),
            Publisher::Mux(id) => self.mux_publish_failed(id, "", &reject.message),
        }
    }

    /// The second half: the message has its id; every transport's
    /// subscribers get it, then the publisher is answered.
    pub(super) fn on_sequenced(&mut self, message: &Rc<Message>, publisher: Publisher) {
        self.deliver(message);
        if let Publisher::Mux(id) = publisher {
            return self.answer_mux_publish(id, &message.id, &message.channel);
        }
        let Publisher::Http {
            id,
            ask,
            subscribers,
            started,
            idempotency,
        } = publisher
        else {
            return;
        };
        let reply = publish_reply(&message.id, &message.channel, subscribers);
        if let Some(Idempotency { key, hash }) = idempotency {
            let now = self.now;
            (self.idempotency).remember(&message.channel, &key, hash, &reply, now);
        }
        self.respond(id, ask, 201, JSON, &reply, &[]);
        self.counters.publish.observe(started.elapsed());
    }

    pub(super) fn on_delete(&mut self, id: ConnId, head: &RequestHead, channel: &str) {
        if let Err(reject) = self.web.check_delete(head, channel) {
            return self.reject(id, reject, Ask::of(head));
        }
        if self.cluster.is_some() {
            return self.delete_via_redis(id, Ask::of(head), channel);
        }
        match self.hub.delete(channel, self.now) {
            None => self.reject(
                id,
                Reject::new(404, format!("no channel {channel}")),
                Ask::of(head),
            ),
            Some(deleted) => {
                info!(
                    "channel {channel} deleted with {} subscribers",
                    deleted.n_subscribers()
                );
                self.end_subscriptions(deleted);
                self.respond(id, Ask::of(head), 204, JSON, b"", &[]);
            }
        }
    }
}

/// The hub's limits as the Bayeux engine asks them, for the publishes of
/// one request (`bayeux::Room`). With Redis the node holds no history, and
/// Redis's own bound answers.
pub(super) struct HubRoom<'a> {
    hub: &'a crate::hub::Hub,
    redis: bool,
    ahead: crate::hub::Ahead,
}

impl HubRoom<'_> {
    pub fn new(hub: &crate::hub::Hub, redis: bool) -> HubRoom<'_> {
        HubRoom {
            hub,
            redis,
            ahead: crate::hub::Ahead::default(),
        }
    }
}

impl crate::bayeux::Room for HubRoom<'_> {
    fn admit(&mut self, p: &crate::bayeux::Publish) -> Result<(), &'static str> {
        if self.redis {
            return Ok(());
        }
        let event = p.event.as_deref();
        (self
            .hub
            .admit_ahead(&p.channel, &p.json, event, &mut self.ahead))
        .map_err(|full| full.reason())
    }
}

/// A publish's `201` body: the message's id, its channel, and how many
/// subscribers the channel had here when the publish arrived.
pub(super) fn publish_reply(message_id: &str, channel: &str, subscribers: usize) -> Vec<u8> {
    let mut out = b"{\"id\":".to_vec();
    json::push_str(&mut out, message_id);
    out.extend_from_slice(b",\"channel\":");
    json::push_str(&mut out, channel);
    out.extend_from_slice(b",\"subscribers\":");
    json::push_u64(&mut out, subscribers as u64);
    out.push(b'}');
    out
}

/// The answer to a publish whose `Idempotency-Key` was used for another body.
pub(super) fn idempotency_conflict() -> Reject {
    Reject::new(
        409,
        "Idempotency-Key was already used with a different body on this channel",
    )
}

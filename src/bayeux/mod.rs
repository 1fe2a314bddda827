//! Bayeux 1.0 (the protocol of CometD and Faye) as a pure engine the server
//! drives: it takes parsed messages and `now`, and returns what to answer,
//! what to publish into the hub and whether to park the request. It holds
//! sessions and the server's opaque connection ids, never a socket.
//!
//! # Code map
//! - `wire`: request body or query -> JSON messages; replies -> body (JSON or JSONP).
//! - `message`: the fields of one message, Bayeux errors, reply builders.
//! - `channel`: channel names, wildcard patterns, meta/service, hub name mapping.
//! - `session`: one clientId's subscriptions, bounded queue, ack batches, held connect.
//! - `engine`: all sessions, routing index, entry points; `meta`: one handler per
//!   channel; `deliver`: fan-out of hub messages and answering held connects.
//! - `ids`: clientIds from `/dev/urandom`.
//!
//! # Integrating it
//! Every path under `/bayeux` is one endpoint (CometD posts to `/bayeux/handshake`,
//! `/bayeux/connect`, ...). `POST` bodies go through [`wire::parse_post`] (JSON, or
//! form-encoded `message=`), `GET ?message=..&jsonp=..` through [`wire::parse_get`].
//! A [`wire::BadRequest`] is an HTTP 400 `{"error": ...}`; everything else, errors
//! included, is HTTP 200 (CometD treats any other status as a network failure and
//! retries with the same dead clientId). A `GET` WebSocket upgrade fails to parse
//! and gets 400; CometD then falls back to long-polling.
//!
//! ```text
//!   request ──parse──▶ engine.handle(conn, peer?, msgs, framing, now) ──▶ Outcome
//!                          reply:     Now{body} -> write 200 now
//!                                     Hold{deadline} -> park conn, its one deadline moved to `deadline`
//!                          publishes: hub.publish(channel, json as application/json, event)
//!                                     then engine.on_publish(&hub_message) for each
//!                          resumes:   engine.replay_room(client) (None: session gone, skip)
//!                                     hub.replay(channel, since, room) -> engine.on_replay(..)
//!                          released:  write each (earlier held connects of the same client)
//!   any hub publish (/pub or Bayeux) ──▶ engine.on_publish(&msg)
//!   every loop iteration, flush phase ──▶ engine.flush(now) -> write each Response
//!   the held conn's deadline comes   ──▶ engine.on_connect_timeout(conn, now) -> write it (None: stale)
//!   parked conn closed (at once,     ──▶ engine.on_conn_closed(conn, now)
//!     before the next flush phase)
//!   end of each loop iteration: deadlines.arm(&mut engine.to_arm)   (session expiry timers)
//!   Timer::Session(id) fires         ──▶ engine.on_expiry_timer(id, now)
//! ```
//!
//! Replays must run right after `handle` returns, before the loop handles any
//! other event, so the history is queued ahead of live messages. The engine
//! counts what it does in `engine.stats` for `/stats`.
//!
//! One handshake: `[{"channel":"/meta/handshake","version":"1.0",
//! "supportedConnectionTypes":["long-polling"],"id":"1"}]` -> `handle` creates a
//! session with a 128-bit clientId and answers at once with `clientId`,
//! `supportedConnectionTypes` and `advice {reconnect:"retry", interval:0,
//! timeout, maxInterval}`. The client's first `/meta/connect` is answered at once too.
//!
//! One held connect: a later connect finds nothing queued, so `handle` returns
//! `Reply::Hold{deadline}`; the server parks the connection (no read buffer) and
//! puts `deadline` on its queue. Either a publish reaches the session (the next
//! `flush` returns the reply with the messages) or the deadline fires
//! (`on_connect_timeout` returns an empty successful reply). If the client
//! closes, `on_conn_closed` keeps the messages queued for its next connect.
//!
//! One publish: `{"channel":"/chat/room1","data":{..},"clientId":..}` -> the reply
//! is immediate and `Outcome::publishes` holds `Publish{channel:"chat/room1",
//! json}`. The server publishes it into the hub like `POST /pub/chat/room1` with
//! `Content-Type: application/json` (SSE, stream and long-poll subscribers see
//! the JSON text), gets its id, and calls `on_publish`, which queues the message
//! (encoded once, shared) for every matching Bayeux session.
//!
//! # What the clients do on the wire
//! - CometD's Node client (`cometd-nodejs-client`) sends request bodies with
//!   `Transfer-Encoding: chunked`, over a keep-alive agent with at most two
//!   connections: one parked connect and one for everything else. Faye sends
//!   `Content-Length` and may batch a publish with its connect in one POST.
//! - CometD gives up on a connect after `advice.timeout` + 10 s and on anything
//!   else after 10 s; Faye after 1.2 x `advice.timeout`. A held connect must be
//!   answered before then, which the deadline from `Reply::Hold` guarantees.
//! - Both dispatch a delivered message by its `channel` and only if it has a
//!   `data` field, so publish replies carry none. Both match wildcards again on
//!   their side, so only the wire shows whether the server stopped sending.
//! - Faye keeps the last `reconnect` advice it saw; CometD resets advice on
//!   every message that carries some. Faye re-handshakes on any reply whose
//!   advice says `handshake`, then resubscribes with one `/meta/subscribe`
//!   whose `subscription` is an array. CometD re-handshakes only when a
//!   connect (or handshake) fails with that advice, and drops its subscriptions
//!   (not its listeners) on every handshake: applications resubscribe in their
//!   `/meta/handshake` listener.
//! - CometD in Node tries a WebSocket upgrade first; refused, it falls back to
//!   long-polling within about a second. Its `callback-polling` needs a DOM.
//! - Faye's Node client ignores the HTTP status and parses the body; CometD
//!   treats anything but 200 as a network failure.
//!
//! A CometD client for halley, as in the README:
//!
//! ```text
//! import { adapt } from "cometd-nodejs-client";   // in a browser: not needed
//! import { CometD, AckExtension } from "cometd";
//! adapt();
//! const cometd = new CometD();
//! cometd.registerExtension("ack", new AckExtension());   // optional: at-least-once
//! cometd.configure({ url: "http://127.0.0.1:8080/bayeux" });
//! cometd.handshake({ ext: { halley: { token: "T" } } }, (reply) => {   // token only with --publish-token
//!   if (!reply.successful) return;
//!   cometd.subscribe("/chat/room1", (m) => console.log(m.id, m.data),
//!     { ext: { halley: { since: "earliest" } } });   // optional: resume from history
//!   cometd.publish("/chat/room1", { text: "hello" });
//! });
//! ```
//!
//! # Choices
//! - The publish token is `ext.halley.token` in the handshake. Without it a
//!   session may subscribe but publishing answers `403:<channel>:publish_forbidden`;
//!   a wrong token fails the handshake with advice `reconnect: none`.
//! - A subscribe may carry `ext.halley.since` (an id or `"earliest"`) on exact
//!   channels; a gap arrives as a message with `data: null` and `ext.halley.gap`.
//! - A session's queue is bounded in bytes; passing the bound ends the session
//!   (its held connect gets `402`, so the client handshakes again) rather than
//!   dropping messages silently.
//! - Every bound a client can push on is a named constant in `engine` (or a
//!   `Settings` field), refused in Bayeux form and counted in `Stats`:
//!   subscriptions per session and per message (`403:..:too_many_subscriptions`),
//!   handshakes per request (`403::too_many_handshakes`, advice `none`),
//!   distinct resumes per request (`403:<channel>:too_many_resumes`: what
//!   bounds the history one request replays before the loop moves on), and
//!   sessions in all and per client address (`403::too_many_sessions`, advice
//!   to handshake again after `max_interval`, when abandoned sessions have
//!   expired). Membership and routing are hash lookups, so a subscribe costs
//!   one lookup per channel and a publish one per segment of its channel.
//! - CometD's ack extension: handshake `ext.ack: true` turns it on; connect
//!   replies carry `ext.ack: <batch>`; messages stay queued until the client's
//!   next connect acknowledges their batch.

pub mod channel;
mod deliver;
pub mod engine;
pub mod ids;
pub mod message;
mod meta;
pub mod session;
pub mod wire;

pub use engine::{
    Data, Engine, HubMessage, Outcome, Publish, Reply, Response, Resume, Room, Settings, Since,
    Stats, Unbounded,
};
pub use session::ConnId;
pub use wire::{BadRequest, Framing};

#[cfg(test)]
mod tests;

#[cfg(test)]
mod prop_tests;
#[cfg(test)]
mod token_tests;
#[cfg(test)]
mod ws_tests;

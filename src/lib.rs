//! halley: a COMET server on one thread and one `mio` readiness loop.
//!
//! # Bird's-eye view
//!
//! Browsers subscribe to named channels and wait, over Server-Sent Events, an
//! NDJSON HTTP stream, WebSocket, long-polling, or Bayeux (CometD and Faye
//! clients); publishers `POST` messages, and every waiting subscriber gets
//! them at once.
//! Nearly all connections are idle most of the time, so halley keeps each
//! parked connection down to about 165 bytes (an 88-byte enum-owning `Conn` in
//! a slab, a hub key, one deadline-queue entry) and never gives one a thread.
//! One loop does everything, in named phases (`server::Server::run`):
//!
//! ```text
//!            +--------------------------------------------------------+
//!            |                    Server::run                         |
//!            |                                                        |
//!   kernel   |  1 poll(timeout = earliest deadline; 0 if work waits)  |
//!   epoll -->|  2 now = Instant::now(), read once per iteration       |
//!            |  3 dispatch events:  listener -> accept                |
//!            |                      signal pipe -> begin_shutdown     |
//!            |                      redis link -> replies, pub/sub    |
//!            |                      conn -> write queued / read+parse |
//!            |        request --> routes --> respond | park | publish|
//!            |                 (/bayeux --> bayeux::Engine::handle)   |
//!            |                                          |             |
//!            |     publish --> hub --> deliver (fan-out, Bayeux)      |
//!            |  4 flush: answer held Bayeux connects messages reached |
//!            |  5 fire due deadlines (timeouts, heartbeats, expiry)   |
//!            |  6 resume unparked conns and those out of turn budget  |
//!            |  7 reap connections closed in this iteration           |
//!            |  8 arm expiry timers the hub and engine asked for      |
//!            |  9 with --redis: write the commands queued, one write  |
//!            |    per Redis link                                      |
//!            +--------------------------------------------------------+
//! ```
//!
//! Follow one request: `server::read` drives the connection's steps
//! (`server::conn`), which read bytes and parse the head with
//! `http::request`; `routes` decides what it is, `server::respond` answers
//! it. Follow one publish: `server::publish` hands the message to the `hub`,
//! which gives it its id, and `server::deliver` writes the message's shared,
//! once-encoded frame (`message`, `encode`) to each subscriber the hub lists
//! and hands it to the Bayeux engine for every session whose subscriptions
//! match. Follow one Bayeux request: `server::bayeux` parses it with
//! `bayeux::wire`, and `bayeux::Engine::handle` says what to do: answer now,
//! publish into the hub, or hold the connect until the flush phase or its
//! deadline.
//!
//! With `--redis`, Redis sequences and keeps the history, and several nodes
//! share it (`server::redis`). A publish becomes one Lua script sent on the
//! channel's Redis link, its publisher parked (`Waiting`) until the reply
//! arrives on the loop; the message comes back to every node by pub/sub,
//! into the node's feed of the channel, whose merge (`redis::merge`) passes
//! each message on once and in order to the same `deliver`. A subscriber with
//! a cursor first catches up from the channel's Redis stream with a merge of
//! its own. The links are event sources of the same `mio::Poll`: nothing
//! waits for Redis but the requests that need its answer.
//!
//! `docs/architecture.md` has the long form: these paths step by step, the
//! connection lifecycle, the deadline queue, every limit with its outcome and
//! `/stats` counter, and the seams where a Redis engine, WebSocket, signed
//! tokens and metrics plug in.
//!
//! # Code map
//!
//! Pure core (values in, values out; unit-tested without sockets or sleeps):
//! - `http`: request heads and framing, chunked bodies, response heads, query
//!   strings. `routes`: which endpoint a request names.
//! - `ws`: RFC 6455: the WebSocket handshake, client frames decoded one step
//!   per state (UTF-8 checked as fragments arrive), server frames, close codes.
//! - `hub`: channels, their message buffers and subscriber ids, cursors and
//!   gaps. `message`, `encode`, `json`, `cursor`: messages, their bytes per
//!   transport, their ids.
//! - `deadline`: the one deadline queue, for every timer. `token`: the
//!   publish token and signed tokens (HS256, channel claims). `conn_id`:
//!   generational connection ids. `client`: which addresses count as one
//!   client, for per-client bounds.
//!   `idempotency`: the `Idempotency-Key`s of recent publishes, bounded.
//! - `redis`: the Redis engine's values: the RESP2 codec, `--redis` URLs,
//!   shards, back-off, the Lua scripts and their replies, and the merge of a
//!   channel's stream with its live messages.
//! - `bayeux`: Bayeux 1.0 as an engine of sessions, subscriptions and held
//!   connects that takes messages and `now` and returns what to answer,
//!   publish and hold; it knows connections only by an opaque id; a
//!   request that came as a WebSocket frame is answered at once, only its
//!   connect held.
//! - `mux`: the `/ws` commands (subscribe, unsubscribe, publish) parsed or
//!   refused, and the replies encoded.
//!
//! Consulted by the edge: `outq` (a connection's pending output), `stats`
//! (and `metrics`, the same figures for Prometheus, with latency histograms),
//! `config`, `web` (pages and the open-publishing rules as decisions),
//! `fd_limit`.
//!
//! IO edge (the only code that touches sockets and `mio::Poll`):
//! - `server`: the loop (`mod.rs`), the connection table (`conns`), the
//!   connection and its states (`conn`), and one file per kind of event:
//!   `accept`, `read`, `respond`, `web`, `publish`, `deliver`, `bayeux`,
//!   `websocket` (the frames of every WebSocket), `timers`, `mux` (`/ws`: one WebSocket's many channels as hub stream
//!   entries) and `bayeux_ws` (Bayeux in WebSocket frames); and `redis`: the cluster's state (`mod.rs`), its two links
//!   per shard (`link`) and their events (`events`), publishing and deleting
//!   through Redis (`publish`), a node's feed of each channel (`feed`),
//!   subscribers catching up (`catchup`) and Bayeux on a cluster (`bayeux`).
//! - `signals`: SIGTERM/SIGINT through a self-pipe.
//! - `supervisor`: `--workers N`, the process that runs N servers on one
//!   port (`SO_REUSEPORT`), restarts them and passes signals on; the
//!   workers share channels and history through Redis.
//!
//! # Invariants
//!
//! - One thread. Nothing blocks except `poll`; every socket is non-blocking and
//!   edge-triggered, and every read loop runs until `WouldBlock` or until the
//!   connection's turn budget is spent; then it waits on the ready list, which
//!   keeps `poll` from sleeping, so no peer starves the others.
//! - The pure core imports nothing from `server` or `web`; only `server`
//!   touches `mio::Poll` and sockets.
//! - Connections are named by `ConnId` (slot + generation) everywhere outside
//!   the slab: in mio tokens, the hub, the deadline queue, the Bayeux engine.
//!   A stale id is recognised and ignored, never applied to the slot's next
//!   occupant.
//! - A connection is freed only in the reap phase, after the batch of events,
//!   so no handler ever sees a connection vanish under it; and only
//!   `server/conn/mod.rs` moves a connection between states.
//! - Every timer is an entry in the one deadline queue, with at most two live
//!   entries per connection and one per channel name and per Bayeux session;
//!   stale entries are skipped when they come up. Nothing scans all
//!   connections on a schedule; only shutdown sweeps them.
//! - Writes are tried at once; only what a short write leaves is queued. A
//!   queued response is bounded by the send timeout, live stream output by
//!   `--max-queued-bytes` (past it, a slow consumer is closed).
//! - A published message is encoded at most once per transport; subscribers
//!   share those bytes. Every publish, from `/pub` or Bayeux, takes the same
//!   path (`publish`, `on_sequenced`, `deliver`), so all transports see the
//!   same messages with the same ids.
//! - With `--redis`, a node holds no history: Redis gives every message its
//!   id, so all nodes agree on it, and each message reaches a node's
//!   subscribers once, in order, or as an explicit gap (`redis::merge`).
//!   A Redis link is one more non-blocking socket on the loop; commands are
//!   pipelined and their replies matched in order. Only a request waiting
//!   for Redis waits, bounded by `--redis-timeout`.
//! - The hub and the Bayeux engine hold ids, never connections, and do no IO
//!   (the engine's clientIds come from a `/dev/urandom` reader handed to it).
//! - Deliberately absent: threads, an async runtime, an HTTP framework,
//!   per-connection timers, per-subscriber copies of a message.

pub mod bayeux;
pub mod client;
pub mod config;
pub mod conn_id;
pub mod cursor;
pub mod deadline;
pub mod encode;
pub mod fd_limit;
pub mod http;
pub mod hub;
pub mod idempotency;
pub mod json;
pub mod message;
pub mod metrics;
pub mod mux;
pub mod outq;
pub mod redis;
pub mod routes;
pub mod server;
pub mod signals;
pub mod stats;
pub mod supervisor;
pub mod token;
pub mod web;
pub mod ws;

pub use config::Config;
pub use server::{spawn, Server};

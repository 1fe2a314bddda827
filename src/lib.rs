//! halley: a COMET server on one thread and one `mio` readiness loop.
//!
//! # Bird's-eye view
//!
//! Browsers subscribe to named channels and wait, over Server-Sent Events, an
//! NDJSON HTTP stream, long-polling, or Bayeux (CometD and Faye clients);
//! publishers `POST` messages, and every waiting subscriber gets them at once.
//! Nearly all connections are idle most of the time, so halley keeps each
//! parked connection down to about 200 bytes (an 88-byte enum-owning `Conn` in
//! a slab, a hub key, one deadline-queue entry) and never gives one a thread.
//! One loop does everything:
//!
//! ```text
//!            +--------------------------------------------------------+
//!            |                    Server::run                         |
//!            |                                                        |
//!   kernel   |  1 poll(timeout = earliest deadline; 0 if work is due) |
//!   epoll -->|  2 now = Instant::now()                                |
//!            |  3 dispatch events:  listener -> accept                |
//!            |                      signal pipe -> begin_shutdown     |
//!            |                      conn -> write queued / read+parse |
//!            |        request --> routes --> respond | park | publish|
//!            |                 (/bayeux --> bayeux::Engine::handle)   |
//!            |                                          |             |
//!            |     hub.publish --> deliver (fan-out, Bayeux sessions) |
//!            |  4 flush: answer held Bayeux connects messages reached |
//!            |  5 fire due deadlines (timeouts, heartbeats, expiry)   |
//!            |  6 resume unparked conns and those out of turn budget  |
//!            |  7 reap connections closed in this iteration           |
//!            +--------------------------------------------------------+
//! ```
//!
//! Follow one request: `server::read` reads bytes and parses the head with
//! `http::request`, `routes` decides what it is, `server::respond` answers
//! it. Follow one publish: `server::respond::on_publish` appends the message
//! to its channel in the `hub`, and `server::deliver::deliver` writes the
//! message's shared, once-encoded frame (`message`, `encode`) to each
//! subscriber the hub lists, and hands it to the Bayeux engine, which queues
//! it for every session whose subscriptions match. Follow one Bayeux request:
//! `server::bayeux::on_bayeux` parses it with `bayeux::wire`, and
//! `bayeux::Engine::handle` says what to do: answer now, publish into the hub,
//! or hold the connect (`State::Held`) until the flush phase or its deadline.
//!
//! # Code map
//!
//! Pure core (values in, values out; unit-tested without sockets):
//! - `http`: request heads and framing (`request`), chunked bodies
//!   (`chunked`), response heads (`response`), query strings (`query`).
//! - `routes`: which endpoint a request names, with its parameters checked.
//! - `hub`: channels, their message buffers and subscribers, cursors and gaps.
//! - `message`, `encode`, `json`, `cursor`: messages and their bytes per
//!   transport, message ids.
//! - `deadline`: the one deadline queue, for every timer. `outq`: a
//!   connection's pending output.
//! - `config`, `stats`: flags and counters. `token`: the publish token check.
//! - `bayeux`: Bayeux 1.0 as an engine of sessions, subscriptions and held
//!   connects that takes messages and `now` and returns what to answer,
//!   publish and hold; it knows connections only by an opaque id.
//!
//! IO edge (the only code that touches sockets and `mio::Poll`):
//! - `server`: the loop (`mod.rs`), `accept`, `read`, `respond`, `deliver`,
//!   `timers`, `web`, `bayeux`; `server::conn` is the connection and its
//!   state enum.
//! - `signals`: SIGTERM/SIGINT through a self-pipe. `fd_limit`: the open-file
//!   limit, raised at start; `--max-connections` defaults to just under it.
//!
//! # Invariants
//!
//! - One thread. Nothing blocks except `poll`; every socket is non-blocking and
//!   edge-triggered, and every read loop runs until `WouldBlock` or until the
//!   connection's turn budget is spent; then it waits on the ready list, which
//!   keeps `poll` from sleeping, so no peer starves the others.
//! - Connections are named by `ConnId` (slot + generation) everywhere outside
//!   the slab: in mio tokens, the hub, the deadline queue. A stale id is
//!   recognised and ignored, never applied to the slot's next occupant.
//! - A connection is freed only in the reap phase, after the batch of events,
//!   so no handler ever sees a connection vanish under it.
//! - Every timer is an entry in the one deadline queue: connection timeouts
//!   and heartbeats, channel message expiry, Bayeux session expiry. A
//!   connection, a channel name and a session each have at most one live
//!   entry: a deadline moved later pushes nothing (the entry re-queues itself
//!   when it comes up early), and stale entries are skipped when they come
//!   up. `/stats` shows the queue's size. Nothing scans all connections on a
//!   timer, and fan-out never touches the queue per delivery.
//! - Writes are tried at once; only what a short write leaves is queued, and a
//!   queue past `--max-queued-bytes` closes its connection (a slow consumer).
//! - A published message is encoded at most once per transport; subscribers
//!   share those bytes.
//! - The hub holds ids, never connections, and never does IO; so does the
//!   Bayeux engine, whose only IO is reading `/dev/urandom` for clientIds.
//! - Every hub publish, from `/pub` or Bayeux, goes through `deliver`, so all
//!   transports see the same messages with the same ids.
//! - Deliberately absent: threads, an async runtime, an HTTP framework,
//!   per-connection timers, per-subscriber copies of a message.

pub mod bayeux;
pub mod config;
pub mod conn_id;
pub mod cursor;
pub mod deadline;
pub mod encode;
pub mod fd_limit;
pub mod http;
pub mod hub;
pub mod json;
pub mod message;
pub mod outq;
pub mod routes;
pub mod server;
pub mod signals;
pub mod stats;
pub mod token;
pub mod web;

pub use config::Config;
pub use server::{spawn, Server};

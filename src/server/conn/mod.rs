//! One connection and its lifecycle: the state enum, whose variants own what
//! each state needs (a parked subscriber holds its channel and hub key and
//! nothing else: no read buffer, no request), and every move between states.
//! `state` is private to this module, so a transition happens here or not at
//! all; the rest of the server asks for it by name (`park_stream`,
//! `response_sent`, `close`, ...). The socket side is `io.rs`.
//!
//! Because every transition passes through `Conn::enter`, that is where
//! `RUST_LOG=halley=trace` narrates them: `conn 12.3: AwaitingHead ->
//! Streaming(sse, chat/room1)`.
//!
//! ```text
//!   accept -> AwaitingHead --head with body--> Body --body read--+
//!                 ^   |                                          |
//!                 |   +-------------head alone-------------------+--> route
//!                 |                                                     |
//!                 +---- response_sent(keep-alive) <--- answered now <---+
//!                 |                                     | park_stream / park_poll / hold_connect
//!                 |                      Streaming / Polling / Held --unpark + answer--+
//!                 |                                                                    |
//!   Closing <-- response_sent(close), finish_then_close, read_closed <-----------------+
//!   Closed  <-- close() from any state; freed in the reap phase
//!
//!   AwaitingHead --upgrade (101 sent)--> WebSocket --unpark + close frame--> Closing
//! ```

mod input;
mod io;
mod ws;

use std::fmt;
use std::rc::Rc;

use log::{log_enabled, trace, Level};

use mio::net::TcpStream;

use crate::conn_id::ConnId;
use crate::deadline::ConnDeadline;
use crate::encode::Transport;
use crate::http::chunked;
use crate::http::request::RequestHead;
use crate::hub::Kind;
use crate::outq::OutQueue;

pub use input::{Progress, Turn};
pub use io::{BufPool, SendError, SendProgress};
pub use ws::{Role, Ws};

use super::mux::Mux;

pub enum State {
    /// Waiting for a request head. `started` once its first byte has arrived
    /// (or, for a new connection, once it connected), which is when the
    /// header timeout starts counting; before that, a kept-alive connection
    /// is idle.
    AwaitingHead { started: bool },
    /// Reading a request body; boxed, so the states a connection spends
    /// most of its life in stay small.
    Body(Box<BodyState>),
    /// An SSE or NDJSON subscriber parked on `channel`. HTTP/1.0 clients get
    /// frames without chunk framing and the stream ends with the connection.
    Streaming {
        channel: Rc<str>,
        key: u32,
        transport: Transport,
        http10: bool,
    },
    /// A long-poll held until a message, its timeout, or shutdown.
    Polling {
        channel: Rc<str>,
        key: u32,
        keep_alive: bool,
    },
    /// A Bayeux `/meta/connect` the engine holds until its session has
    /// messages, its deadline, or shutdown; the engine keeps what the reply
    /// needs, keyed by this connection's id.
    Held { keep_alive: bool },
    /// A request waiting for Redis (a publish to be sequenced, a subscriber
    /// for its channel's position or history) until the answer arrives on
    /// the loop or its deadline, `--redis-timeout`, answers 503.
    Waiting { keep_alive: bool },
    /// A WebSocket after its `101`: frames both ways until a close frame
    /// is sent, when it moves to `Closing`. Boxed: it holds its role
    /// (a channel subscription, for `/sub`) and liveness, and the state
    /// most connections are in stays small.
    WebSocket(Box<Ws>),
    /// Sending a last response. While output is queued, the send timeout
    /// governs; once it has drained, the write side is shut and input is
    /// drained until the client closes or the linger ends, so the client reads
    /// the response before any RST. `eof` once the client has half-closed:
    /// then there is nothing to drain and the connection closes as soon as
    /// its output is out.
    Closing { eof: bool },
    /// Finished, waiting to be reaped after this batch of events; `sub` is the
    /// hub subscription still to be removed then, and `held_connect` says it
    /// was holding a Bayeux connect (which `Server::close` tells the engine at once).
    Closed {
        sub: Option<Subscription>,
        held_connect: bool,
    },
}

/// A hub subscription: channel, kind and key.
pub type Subscription = (Rc<str>, Kind, u32);

pub struct BodyState {
    pub head: RequestHead,
    pub body: Vec<u8>,
    pub reader: BodyReader,
}

pub enum BodyReader {
    Length {
        left: usize,
    },
    /// A chunked body, refused once it decodes to more than `limit` bytes.
    Chunked {
        decoder: chunked::Decoder,
        limit: usize,
    },
}

pub struct Conn {
    pub socket: TcpStream,
    /// Its generation: the table checks it against an id's, and the trace
    /// names the connection by it (`ConnId`'s `Display`). The slot is the
    /// table's to know; keeping it here too would cost 8 bytes a connection.
    pub gen: u32,
    /// Private: only the transitions below change it.
    state: State,
    /// Bytes read but not yet parsed; empty (and unallocated) when idle.
    pub inbuf: Vec<u8>,
    pub out: OutQueue,
    /// The one deadline of this connection, and which of its entries in the
    /// deadline queue is live.
    pub deadline: ConnDeadline,
}

impl Conn {
    /// A new connection's first request counts as started when it connects,
    /// so its header timeout is armed once, at accept.
    pub fn new(socket: TcpStream, id: ConnId) -> Conn {
        trace!("conn {id}: accepted -> AwaitingHead");
        Conn {
            socket,
            gen: id.gen,
            state: State::AwaitingHead { started: true },
            inbuf: Vec::new(),
            out: OutQueue::default(),
            deadline: ConnDeadline::default(),
        }
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed { .. })
    }

    /// How a parked stream encodes messages, if this is one: its transport,
    /// and whether it is HTTP/1.0 (frames without chunk framing).
    pub fn stream_kind(&self) -> Option<(Transport, bool)> {
        match &self.state {
            &State::Streaming {
                transport, http10, ..
            } => Some((transport, http10)),
            State::WebSocket(ws) if matches!(ws.role, Role::Channel { .. } | Role::Mux(_)) => {
                Some((Transport::WebSocket, false))
            }
            _ => None,
        }
    }

    /// The WebSocket state, if this connection is one.
    pub fn ws(&mut self) -> Option<&mut Ws> {
        match &mut self.state {
            State::WebSocket(ws) => Some(ws),
            _ => None,
        }
    }

    /// What a `/ws` connection follows, if this is one.
    pub fn mux(&mut self) -> Option<&mut Mux> {
        match &mut self.ws()?.role {
            Role::Mux(mux) => Some(mux),
            _ => None,
        }
    }

    /// Moves to `Closed`, keeping the hub subscription to undo at reaping.
    /// Returns false if it was closed already.
    pub fn close(&mut self) -> bool {
        if self.is_closed() {
            return false;
        }
        let held_connect = match &self.state {
            State::Held { .. } => true,
            // A Bayeux socket may hold a connect; the engine ignores the
            // news if it does not.
            State::WebSocket(ws) => matches!(ws.role, Role::Bayeux { .. }),
            _ => false,
        };
        let left = self.enter(State::Closed {
            sub: None,
            held_connect,
        });
        if let State::Closed { sub, .. } = &mut self.state {
            *sub = subscription_of(left);
        }
        true
    }

    /// Takes a parked connection out of its channel to answer it: the state
    /// becomes a request being answered, and the hub subscription it held is
    /// returned for the caller to undo (or drop, if the channel is gone).
    pub fn unpark(&mut self) -> Option<Subscription> {
        let parked = matches!(
            self.state,
            State::Streaming { .. } | State::Polling { .. } | State::WebSocket(_)
        );
        if !parked {
            return None;
        }
        subscription_of(self.enter(State::AwaitingHead { started: true }))
    }

    /// Every transition: moves to `next` and returns the state left, whose
    /// data the caller may still need. The trace line is formatted only
    /// when trace logging is on, and a move that shows as no change (one
    /// request answered, the next awaited) is not narrated.
    fn enter(&mut self, next: State) -> State {
        if log_enabled!(Level::Trace) {
            let (from, to) = (self.state.to_string(), next.to_string());
            if from != to {
                trace!("conn #{}: {from} -> {to}", self.gen);
            }
        }
        std::mem::replace(&mut self.state, next)
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// A head announced a body: read it next, into a buffer that starts at
    /// `capacity` and grows with what arrives.
    pub fn start_body(&mut self, head: RequestHead, reader: BodyReader, capacity: usize) {
        debug_assert!(matches!(self.state, State::AwaitingHead { .. }));
        self.enter(State::Body(Box::new(BodyState {
            head,
            body: Vec::with_capacity(capacity),
            reader,
        })));
    }

    /// The body being read, beside the input it is read from.
    pub fn body_and_input(&mut self) -> Option<(&mut BodyState, &mut Vec<u8>)> {
        match &mut self.state {
            State::Body(state) => Some((&mut **state, &mut self.inbuf)),
            _ => None,
        }
    }

    /// The body is complete: the request goes to be answered, and the
    /// connection waits for the next head (not yet started).
    pub fn finish_body(&mut self) -> Box<BodyState> {
        match self.enter(State::AwaitingHead { started: false }) {
            State::Body(state) => state,
            other => unreachable!("finish_body in {:?}", other.name()),
        }
    }

    /// The first byte of a kept-alive connection's next request has arrived:
    /// from now the header timeout counts. True if that just happened.
    pub fn start_head(&mut self) -> bool {
        match &mut self.state {
            State::AwaitingHead { started } if !*started => {
                *started = true;
                trace!("conn #{}: the next request's head has begun", self.gen);
                true
            }
            _ => false,
        }
    }

    /// A stream subscriber parks on its channel until the server ends it.
    pub fn park_stream(&mut self, channel: Rc<str>, key: u32, transport: Transport, http10: bool) {
        self.enter(State::Streaming {
            channel,
            key,
            transport,
            http10,
        });
    }

    /// A long-poll with nothing to receive yet parks on its channel.
    pub fn park_poll(&mut self, channel: Rc<str>, key: u32, keep_alive: bool) {
        self.enter(State::Polling {
            channel,
            key,
            keep_alive,
        });
    }

    /// The `101` has been sent: from now on the connection carries frames,
    /// for `role`. Input already buffered is the first frames.
    pub fn upgrade(&mut self, role: Role) {
        debug_assert!(matches!(
            self.state,
            State::AwaitingHead { .. } | State::Waiting { .. }
        ));
        self.enter(State::WebSocket(Box::new(Ws::new(role))));
    }

    /// The Bayeux engine holds this connect; it keeps the reply's makings.
    pub fn hold_connect(&mut self, keep_alive: bool) {
        self.enter(State::Held { keep_alive });
    }

    /// The request waits for Redis; what it waits for keeps what the answer needs.
    pub fn wait_for_redis(&mut self, keep_alive: bool) {
        self.enter(State::Waiting { keep_alive });
    }

    /// A response has been sent (or queued): back to waiting for the next
    /// request, which may already be buffered, or to closing.
    pub fn response_sent(&mut self, keep_alive: bool) {
        let next = match keep_alive {
            true => State::AwaitingHead {
                started: !self.inbuf.is_empty(),
            },
            false => State::Closing { eof: false },
        };
        self.enter(next);
    }

    /// Shutdown: a connection between requests whose last response is still
    /// going out closes once it is out.
    pub fn finish_then_close(&mut self) {
        debug_assert!(matches!(self.state, State::AwaitingHead { .. }));
        self.enter(State::Closing { eof: false });
    }

    /// The client half-closed while its response is still queued: nothing
    /// more to read, the output still to send.
    pub fn read_closed(&mut self) {
        self.enter(State::Closing { eof: true });
    }
}

impl Conn {
    /// A closed connection, freed: the hub subscription it still held, for
    /// the reap phase to undo.
    pub fn into_subscription(self) -> Option<Subscription> {
        match self.state {
            State::Closed { sub, .. } => sub,
            _ => None,
        }
    }
}

impl State {
    /// What this state is called in messages.
    pub fn name(&self) -> &'static str {
        match self {
            State::AwaitingHead { .. } => "AwaitingHead",
            State::Body(_) => "Body",
            State::Streaming { .. } => "Streaming",
            State::Polling { .. } => "Polling",
            State::Held { .. } => "Held",
            State::Waiting { .. } => "Waiting",
            State::WebSocket(_) => "WebSocket",
            State::Closing { .. } => "Closing",
            State::Closed { .. } => "Closed",
        }
    }
}

/// What a parked state was subscribed to, for the hub to undo.
fn subscription_of(state: State) -> Option<Subscription> {
    match state {
        State::Streaming { channel, key, .. } => Some((channel, Kind::Stream, key)),
        State::Polling { channel, key, .. } => Some((channel, Kind::Poll, key)),
        State::WebSocket(ws) => match ws.role {
            Role::Channel { channel, key } => Some((channel, Kind::Stream, key)),
            // A `/ws` connection's subscriptions are many; `Conns::close`
            // takes them before the state goes.
            Role::Echo | Role::Mux(_) | Role::Bayeux { .. } => None,
        },
        _ => None,
    }
}

/// A state as the trace shows it: its name, and for a parked subscriber
/// its transport and channel (`Streaming(sse, chat/room1)`).
impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            State::Streaming {
                channel, transport, ..
            } => write!(f, "Streaming({}, {channel})", transport.name()),
            State::Polling { channel, .. } => write!(f, "Polling({channel})"),
            State::WebSocket(ws) => write!(f, "WebSocket({})", ws.role.name()),
            other => f.write_str(other.name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The slab holds one `Conn` per connection, parked or not; this is most
    /// of what a held subscriber costs in user space, and the slab grows by
    /// doubling, so 8 bytes more here cost about 13 more per connection at
    /// 10,000.
    #[test]
    fn a_connection_stays_small() {
        let size = std::mem::size_of::<Conn>();
        assert!(size <= 88, "Conn grew to {size} bytes");
    }

    /// What a parked `/sub` WebSocket holds beyond an SSE stream's `Conn`:
    /// its boxed `Ws`, with no decoder or buffer while no frame is half-read.
    /// The goal is within 1.5 times a parked SSE connection (about 165
    /// bytes in all), so the box must stay a small allocation.
    #[test]
    fn a_parked_websocket_stays_small() {
        let size = std::mem::size_of::<Ws>();
        assert!(size <= 40, "Ws grew to {size} bytes");
    }

    #[test]
    fn the_trace_names_states_with_what_they_hold() {
        let channel: Rc<str> = "chat/room1".into();
        let cases = [
            (State::AwaitingHead { started: true }, "AwaitingHead"),
            (
                State::Streaming {
                    channel: channel.clone(),
                    key: 0,
                    transport: Transport::Sse,
                    http10: false,
                },
                "Streaming(sse, chat/room1)",
            ),
            (
                State::Polling {
                    channel,
                    key: 0,
                    keep_alive: true,
                },
                "Polling(chat/room1)",
            ),
            (State::Closing { eof: false }, "Closing"),
            (
                State::WebSocket(Box::new(Ws::new(Role::Echo))),
                "WebSocket(echo)",
            ),
            (
                State::WebSocket(Box::new(Ws::new(Role::Channel {
                    channel: "chat/room1".into(),
                    key: 0,
                }))),
                "WebSocket(chat/room1)",
            ),
        ];
        for (state, shown) in cases {
            assert_eq!(state.to_string(), shown);
        }
    }
}

//! The event loop: the only code that touches `mio::Poll` and sockets. It owns
//! the listener, the connection table (`conns`), the hub, the Bayeux engine
//! and the deadline queue, and runs the loop's phases in `Server::run`: poll,
//! read the clock, dispatch, flush Bayeux replies, fire deadlines, resume,
//! reap, arm the expiry timers asked for (see `docs/architecture.md` for the
//! picture and the order's reasons).
//!
//! The rest of the server is split by event: `accept` (new connections),
//! `read` (the request side of a connection), `respond` (routes into
//! replies), `web` (pages, and publishes decided from their head), `publish`
//! (the one path into the hub), `deliver` (subscribing and fan-out),
//! `bayeux` (the `/bayeux` endpoint around the engine), `websocket` (a
//! connection after its `101`) and `timers` (deadlines and shutdown). `conn` is one connection, its states and every
//! transition between them; `conns` is the table that holds them.

mod accept;
mod bayeux;
mod bayeux_ws;
mod conn;
mod conns;
mod deliver;
mod mux;
mod publish;
mod read;
mod redis;
mod respond;
mod timers;
mod web;
mod websocket;

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use log::{info, log_enabled, trace, Level};
use mio::event::Event;
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::bayeux::Engine;
use crate::config::Config;
use crate::conn_id::ConnId;
use crate::cursor;
use crate::deadline::Deadlines;
use crate::http::response::HttpDate;
use crate::hub::{Hub, Limits};
use crate::signals::SignalPipe;
use crate::stats::Counters;
use conn::BufPool;
use conns::Conns;

const LISTENER: Token = Token(usize::MAX);
const SIGNALS: Token = Token(usize::MAX - 1);

/// Connections the kernel may hold completed but not yet accepted. mio binds
/// with 128, which a burst of connecting subscribers overflows, and an
/// overflowed SYN is retried only after a second. The kernel caps this at
/// `net.core.somaxconn`.
const LISTEN_BACKLOG: libc::c_int = 4096;

/// Readiness events taken from the kernel per poll.
const EVENTS_PER_POLL: usize = 1024;

pub struct Server {
    poll: Poll,
    /// `None` once shutdown has begun.
    listener: Option<TcpListener>,
    local_addr: SocketAddr,
    signals: Option<SignalPipe>,
    conns: Conns,
    /// An empty list of long-polls, swapped with a channel's during fan-out
    /// (`deliver`), so answering them allocates nothing.
    spare_polls: Slab<ConnId>,
    hub: Hub,
    /// Bayeux sessions; it names connections by `bayeux::engine_conn(id)`.
    bayeux: Engine,
    deadlines: Deadlines,
    config: Config,
    counters: Counters,
    /// The time of this loop iteration, read once after each poll.
    now: Instant,
    /// The wall-clock time of this iteration, for the `Date` header.
    date: HttpDate,
    started: Instant,
    /// Reused to build responses, so answering allocates nothing.
    scratch: Vec<u8>,
    bufs: BufPool,
    /// While accepting is paused after running out of descriptors: the
    /// current back-off.
    accept_backoff: Option<Duration>,
    /// The descriptor kept back to refuse connections with when out of
    /// them (`accept`).
    spare: crate::fd_limit::Spare,
    shutting_down: bool,
    /// When the drain window ends, once shutdown has begun.
    drain_ends: Option<Instant>,
    /// The random reconnect delays a drain hands out.
    spread: timers::Spread,
    web: web::Web,
    /// `Idempotency-Key`s of recent publishes, without `--redis` (with it,
    /// Redis keeps them, so every node sees them).
    idempotency: crate::idempotency::Store,
    /// With `--redis`: the links, feeds and subscribers catching up.
    cluster: Option<redis::Cluster>,
}

impl Server {
    /// Binds the listening socket; nothing runs until `run`.
    pub fn bind(config: Config) -> io::Result<Server> {
        let poll = Poll::new()?;
        let mut listener = bind_listener(&config)?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let now = Instant::now();
        let web = web::Web::new(&config, now)?;
        let mut deadlines = Deadlines::new(now);
        let cluster = match config.redis.is_empty() {
            true => None,
            false => Some(redis::Cluster::new(&config, now, &mut deadlines)?),
        };
        let limits = Limits {
            buffer: config.buffer,
            ttl: config.message_ttl,
            max_channels: config.max_channels,
            max_history_bytes: config.max_history_bytes,
        };
        let idempotency = crate::idempotency::Store::new(config.idempotency_ttl);
        Ok(Server {
            local_addr: listener.local_addr()?,
            poll,
            listener: Some(listener),
            signals: None,
            conns: Conns::with_per_client_limit(config.max_connections_per_ip),
            spare_polls: Slab::new(),
            hub: Hub::new(cursor::new_epoch(), limits),
            bayeux: bayeux::new_engine(&config)?,
            deadlines,
            config,
            counters: Counters::default(),
            now,
            date: HttpDate::new(SystemTime::now()),
            started: now,
            scratch: Vec::with_capacity(4096),
            bufs: BufPool::default(),
            accept_backoff: None,
            spare: {
                let mut spare = crate::fd_limit::Spare::default();
                spare.take();
                spare
            },
            shutting_down: false,
            drain_ends: None,
            spread: timers::Spread::seeded(),
            web,
            idempotency,
            cluster,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Makes SIGTERM and SIGINT shut the server down gracefully.
    pub fn with_signals(mut self, mut signals: SignalPipe) -> io::Result<Server> {
        self.poll
            .registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        self.signals = Some(signals);
        Ok(self)
    }

    /// Runs the loop until shutdown completes.
    pub fn run(mut self) -> io::Result<()> {
        info!("listening on {}", self.local_addr);
        let mut events = Events::with_capacity(EVENTS_PER_POLL);
        loop {
            // 1. Sleep until readiness or the earliest deadline.
            let timeout = self.poll_timeout();
            // Tracing reads the clock once more, to say how long it slept.
            let slept_from = log_enabled!(Level::Trace).then(Instant::now);
            let interrupted = match self.poll.poll(&mut events, timeout) {
                Err(e) if e.kind() != io::ErrorKind::Interrupted => return Err(e),
                Err(_) => true,
                Ok(()) => false,
            };
            // 2. Read the clock once for everything this iteration does.
            self.now = Instant::now();
            self.date.update(SystemTime::now());
            if let Some(from) = slept_from {
                trace_poll(events.iter().count(), self.now - from, timeout, interrupted);
            }
            // 3. Dispatch readiness: accept, read, write.
            for event in events.iter() {
                self.dispatch(event);
            }
            // 4. Answer held Bayeux connects that messages reached: a burst
            //    of publishes goes out in one reply per session.
            self.flush_bayeux();
            // 5. Fire due deadlines: timeouts, heartbeats, expiry.
            self.fire_deadlines();
            // 6. Run requests that waited behind a parked one, and give
            //    connections whose turn ran out their next one.
            self.resume();
            // 7. Free connections closed during this iteration.
            self.reap();
            // 8. Queue the expiry timers the hub and the Bayeux engine asked
            //    for during this iteration; each is due later than now.
            self.arm_timers();
            // 9. With Redis: send the commands this iteration queued, in one
            //    write per link.
            self.flush_redis();
            if self.shutting_down && self.conns.is_empty() {
                info!("shutdown complete");
                return Ok(());
            }
        }
    }

    /// Until the earliest deadline; not at all while Bayeux replies wait for
    /// the flush phase (a request run by `resume` may have queued them) or
    /// connections wait on the ready list.
    fn poll_timeout(&self) -> Option<Duration> {
        if self.bayeux.needs_flush() || self.conns.any_ready() {
            return Some(Duration::ZERO);
        }
        self.deadlines
            .next()
            .map(|at| at.saturating_duration_since(Instant::now()))
    }

    fn dispatch(&mut self, event: &Event) {
        match event.token() {
            LISTENER => {
                trace!("listener: acceptable");
                self.on_acceptable()
            }
            SIGNALS => {
                trace!("signal pipe: readable");
                self.on_signal()
            }
            token if self.cluster.as_ref().is_some_and(|c| c.owns(token)) => {
                self.on_redis_ready(token)
            }
            token => {
                let id = ConnId::from_token(token);
                trace!("conn {id}: {}", readiness(event));
                if event.is_writable() {
                    self.on_writable(id);
                }
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    self.on_readable(id);
                }
            }
        }
    }

    /// Moves connection `id`'s one deadline to `at`; see `deadline::ConnDeadline`.
    fn set_deadline(&mut self, id: ConnId, at: Instant) {
        if let Some(conn) = self.conns.get(id) {
            self.deadlines.set_conn(&mut conn.deadline, id, at);
        }
    }

    fn close(&mut self, id: ConnId) {
        // The engine forgets a held connect now, not at reaping: the flush
        // phase comes first and would hand it messages to drop.
        if self.conns.close(id) == Some(true) {
            self.bayeux
                .on_conn_closed(bayeux::engine_conn(id), self.now);
        }
    }

    /// Drives the connections whose turn ran out last time, each once, then
    /// those unparked during this iteration.
    fn resume(&mut self) {
        let ready = self.conns.take_ready();
        for &id in &ready {
            self.drive(id);
        }
        self.conns.ready_done(ready);
        while let Some(id) = self.conns.next_to_resume() {
            self.drive(id);
        }
    }

    fn reap(&mut self) {
        let (hub, cluster, now) = (&mut self.hub, &mut self.cluster, self.now);
        let web = &mut self.web;
        self.conns.reap(|id, sub| {
            web.forget(id);
            if let Some((channel, kind, key)) = &sub {
                hub.unsubscribe(channel, *kind, *key, id, now);
            }
            if let Some(cluster) = cluster {
                cluster.on_conn_reaped(id, sub.as_ref().map(|s| &s.0), now);
            }
        });
    }
}

/// The trace's line for one poll: how many events it returned, how long it
/// slept, and what bounded the sleep. With no events, the deadline is what
/// woke it, and the lines that follow say which one fired.
fn trace_poll(n_events: usize, slept: Duration, timeout: Option<Duration>, interrupted: bool) {
    let why = match timeout {
        _ if interrupted => "interrupted by a signal".to_string(),
        None => "no deadline".to_string(),
        Some(Duration::ZERO) => "work waiting, no sleep".to_string(),
        Some(t) if n_events == 0 => format!("woken by the deadline due in {t:.1?}"),
        Some(t) => format!("next deadline in {t:.1?}"),
    };
    trace!("poll: {n_events} events after {slept:.1?} ({why})");
}

/// What a readiness event reports, in the trace's words.
fn readiness(event: &Event) -> &'static str {
    let closed = event.is_read_closed() || event.is_error();
    match (event.is_readable(), event.is_writable(), closed) {
        (_, _, true) if event.is_error() => "error",
        (_, true, true) => "writable, peer closed",
        (_, false, true) => "peer closed",
        (true, true, false) => "readable and writable",
        (true, false, false) => "readable",
        (false, true, false) => "writable",
        (false, false, false) => "no readiness",
    }
}

/// The listening socket. With `--workers`, every worker binds its own to the
/// same address with `SO_REUSEPORT` (`supervisor::bind_shared`), and the
/// kernel spreads new connections over the workers' sockets.
fn bind_listener(config: &Config) -> io::Result<TcpListener> {
    let listener = match config.workers {
        1 => TcpListener::bind(config.listen)?,
        _ => {
            let shared =
                std::net::TcpListener::from(crate::supervisor::bind_shared(config.listen)?);
            shared.set_nonblocking(true)?;
            TcpListener::from_std(shared)
        }
    };
    listen_deeply(&listener)?;
    Ok(listener)
}

/// `listen(2)` with our backlog; called again on a listening socket (mio
/// binds with 128), it sets the backlog anew.
fn listen_deeply(listener: &TcpListener) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: listen(2) on a socket we own, with no pointers involved.
    match unsafe { libc::listen(listener.as_raw_fd(), LISTEN_BACKLOG) } {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

/// Starts a server on a background thread and returns its address; for tests
/// and benchmarks. The thread runs until the process exits.
pub fn spawn(config: Config) -> io::Result<SocketAddr> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || match Server::bind(config) {
        Ok(server) => {
            let _ = tx.send(Ok(server.local_addr()));
            server.run().expect("server loop failed");
        }
        Err(e) => {
            let _ = tx.send(Err(e));
        }
    });
    rx.recv()
        .map_err(|_| io::Error::other("server thread died"))?
}

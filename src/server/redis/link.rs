//! One TCP connection to one Redis, as an event source of the server's
//! `mio::Poll` like any client connection: a non-blocking connect, commands
//! pipelined into one output buffer, replies parsed incrementally from one
//! input buffer and matched to their commands in order (Redis answers a
//! connection's commands in the order they came). On a connection in pub/sub
//! mode, replies nobody waits for are pushes (`message`, `subscribe`, ...).
//!
//! The link knows nothing of what its commands mean: each carries a tag `T`
//! that comes back with its reply, or, if the connection fails first, in the
//! list `fail` returns. Every (re)connect first sends the link's `setup`
//! commands (`AUTH`, `SELECT`, `SCRIPT LOAD`), whose errors fail the link.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::{info, warn};
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use crate::redis::backoff::Backoff;
use crate::redis::resp::{self, Value};

/// Bytes read from the socket per `read` call.
const READ_CHUNK: usize = 64 * 1024;

enum State {
    /// Not connected; try again at `retry_at`.
    Down {
        retry_at: Instant,
    },
    /// The connect was started; writable means done (or failed).
    Connecting(TcpStream),
    Up(TcpStream),
}

/// Who waits for a reply.
enum Expect<T> {
    /// One of the setup commands.
    Setup,
    Command(T),
}

pub(super) struct Link<T> {
    /// For logs: `redis://host:port/db` without the password.
    name: String,
    addr: SocketAddr,
    token: Token,
    state: State,
    /// Sent on every connect before anything else, each as its arguments.
    setup: Vec<Vec<Vec<u8>>>,
    /// Commands sent or queued, oldest first, with when each was queued.
    waiting: VecDeque<(Instant, Expect<T>)>,
    /// Setup commands not yet answered: the link is `up` once none are.
    setup_left: usize,
    out: Vec<u8>,
    /// Replies received: `inbuf[..filled]`. The rest of `inbuf` is room,
    /// zeroed once when it grew, so a read is not preceded by clearing
    /// 64 KiB each time.
    inbuf: Vec<u8>,
    filled: usize,
    backoff: Backoff,
    /// Connections that failed since the link was made.
    pub n_failures: u64,
}

impl<T> Link<T> {
    pub fn new(
        name: String,
        addr: SocketAddr,
        token: Token,
        setup: Vec<Vec<Vec<u8>>>,
        seed: u64,
        now: Instant,
    ) -> Link<T> {
        Link {
            name,
            addr,
            token,
            state: State::Down { retry_at: now },
            setup,
            waiting: VecDeque::new(),
            setup_left: 0,
            out: Vec::new(),
            inbuf: Vec::new(),
            filled: 0,
            backoff: Backoff::new(seed),
            n_failures: 0,
        }
    }

    /// Connected, with every setup command answered.
    pub fn is_up(&self) -> bool {
        matches!(self.state, State::Up(_)) && self.setup_left == 0
    }

    /// Commands may be queued: connected or connecting (they are pipelined
    /// behind the setup commands).
    pub fn is_open(&self) -> bool {
        !matches!(self.state, State::Down { .. })
    }

    /// When a link that is down should try again.
    pub fn retry_at(&self) -> Option<Instant> {
        match self.state {
            State::Down { retry_at } => Some(retry_at),
            _ => None,
        }
    }

    pub fn in_flight(&self) -> usize {
        self.waiting.len()
    }

    /// When the oldest unanswered command was queued.
    pub fn oldest_wait(&self) -> Option<Instant> {
        self.waiting.front().map(|(at, _)| *at)
    }

    /// Starts connecting; a failure to even start puts the link down again.
    pub fn connect(&mut self, registry: &Registry, now: Instant) {
        let mut stream = match TcpStream::connect(self.addr) {
            Ok(stream) => stream,
            Err(e) => {
                self.down(now, &e.to_string());
                return;
            }
        };
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(e) = registry.register(&mut stream, self.token, interest) {
            self.down(now, &e.to_string());
            return;
        }
        let _ = stream.set_nodelay(true);
        self.state = State::Connecting(stream);
        self.setup_left = self.setup.len();
        for command in std::mem::take(&mut self.setup) {
            let args: Vec<&[u8]> = command.iter().map(|a| &a[..]).collect();
            resp::write_command(&mut self.out, &args);
            self.waiting.push_back((now, Expect::Setup));
            self.setup.push(command);
        }
    }

    /// Queues a command; it is written by the next `flush`. The caller sends
    /// only while `is_open`.
    pub fn send(&mut self, args: &[&[u8]], tag: T, now: Instant) {
        resp::write_command(&mut self.out, args);
        self.waiting.push_back((now, Expect::Command(tag)));
    }

    /// Queues a command no reply is matched to: on a pub/sub connection,
    /// `SUBSCRIBE` and its kin are answered by pushes.
    pub fn send_push(&mut self, args: &[&[u8]]) {
        resp::write_command(&mut self.out, args);
    }

    /// Writes what is queued, as far as the socket takes it.
    pub fn flush(&mut self) -> io::Result<()> {
        let State::Up(stream) = &mut self.state else {
            return Ok(());
        };
        let mut written = 0;
        while written < self.out.len() {
            match stream.write(&self.out[written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.out.drain(..written);
        Ok(())
    }

    /// Readiness on the link's socket: completes a connect, writes what is
    /// queued, and reads every reply that arrived. Each reply goes to `out`
    /// with its command's tag, or with none for a push. An error means the
    /// link must `fail`.
    pub fn on_ready(&mut self, out: &mut Vec<(Option<T>, Value)>) -> Result<(), String> {
        if let State::Connecting(stream) = &mut self.state {
            if let Some(e) = stream.take_error().map_err(|e| e.to_string())? {
                return Err(e.to_string());
            }
            match stream.peer_addr() {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(()),
                Err(e) => return Err(e.to_string()),
            }
            let State::Connecting(stream) = std::mem::replace(
                &mut self.state,
                State::Down {
                    retry_at: Instant::now(),
                },
            ) else {
                unreachable!("checked");
            };
            self.state = State::Up(stream);
            if self.setup_left == 0 {
                self.on_connected();
            }
        }
        self.flush().map_err(|e| e.to_string())?;
        self.read(out)
    }

    fn read(&mut self, out: &mut Vec<(Option<T>, Value)>) -> Result<(), String> {
        let State::Up(stream) = &mut self.state else {
            return Ok(());
        };
        loop {
            if self.inbuf.len() - self.filled < READ_CHUNK / 2 {
                self.inbuf.resize(self.filled + READ_CHUNK, 0);
            }
            match stream.read(&mut self.inbuf[self.filled..]) {
                Ok(0) => return Err("Redis closed the connection".into()),
                Ok(n) => self.filled += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        let mut used = 0;
        while let Some((value, n)) = resp::parse(&self.inbuf[used..self.filled])
            .map_err(|e| format!("garbled reply: {e}"))?
        {
            used += n;
            match self.waiting.pop_front() {
                Some((_, Expect::Setup)) => {
                    if let Value::Error(e) = value {
                        return Err(format!("Redis refused the connection's setup: {e}"));
                    }
                    self.setup_left -= 1;
                    if self.setup_left == 0 {
                        self.on_connected();
                    }
                }
                Some((_, Expect::Command(tag))) => out.push((Some(tag), value)),
                None => out.push((None, value)),
            }
        }
        // What is left is the start of a reply still arriving.
        if used > 0 {
            self.inbuf.copy_within(used..self.filled, 0);
            self.filled -= used;
        }
        if self.inbuf.len() > 4 * READ_CHUNK && self.filled < READ_CHUNK {
            self.inbuf.truncate(READ_CHUNK);
            self.inbuf.shrink_to_fit();
        }
        Ok(())
    }

    /// Drops the connection: returns the tags of every command it left
    /// unanswered, and tries again after a back-off.
    pub fn fail(&mut self, registry: &Registry, now: Instant, why: &str) -> Vec<T> {
        if let State::Connecting(stream) | State::Up(stream) = &mut self.state {
            let _ = registry.deregister(stream);
        }
        self.n_failures += 1;
        self.down(now, why);
        self.waiting
            .drain(..)
            .filter_map(|(_, expect)| match expect {
                Expect::Command(tag) => Some(tag),
                Expect::Setup => None,
            })
            .collect()
    }

    fn on_connected(&mut self) {
        info!("redis {}: connected", self.name);
        self.backoff.reset();
    }

    fn down(&mut self, now: Instant, why: &str) {
        let delay: Duration = self.backoff.next();
        warn!(
            "redis {}: {why}; retrying in {} ms",
            self.name,
            delay.as_millis()
        );
        self.state = State::Down {
            retry_at: now + delay,
        };
        self.setup_left = 0;
        self.out.clear();
        self.inbuf.clear();
        self.filled = 0;
    }
}

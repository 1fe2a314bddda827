//! A worker process: opens its share of the subscribers (SSE or WebSocket), holds them, and reads deliveries
//! until the coordinator writes `end PUBLISHED` on its stdin. It reports on stdout, one line each:
//! `held HELD FAILED CONNECT_NS` once connected, `done SEQ LAST_AT_NS` when all its subscribers
//! have a message, and at the end `hist NAME buckets...`, `counts ...` and `end`.

use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::args::Args;
use crate::hist::Latencies;
use crate::net::{connect_from, now_ns, LineReader};
use crate::split::source_addr;
use crate::sub::{self, Ctx, Outcome, State, Sub, Transport};
use crate::tally::{Bounds, Tally};
use crate::url::UrlTemplate;
use crate::ws::Rng;

const STDIN: Token = Token(usize::MAX);
/// A worker that outlives its run by this much gives up, so no load loop runs unbounded.
const MAX_LIFETIME_NS: u64 = 15 * 60 * 1_000_000_000;

struct Worker {
    poll: Poll,
    url: UrlTemplate,
    transport: Transport,
    /// Keys and masks for WebSocket subscribers.
    rng: Rng,
    /// Subscriber indices `first..first + count` are this worker's share.
    first: usize,
    count: usize,
    n_addrs: usize,
    concurrency: usize,
    connect_deadline: u64,
    subs: Slab<Sub>,
    tally: Tally,
    connect: Latencies,
    buf: Vec<u8>,
    /// Report lines not yet written to stdout; flushed once per loop turn.
    out: Vec<u8>,
    control: LineReader,
    next: usize,
    in_flight: usize,
    held: u32,
    failed: u32,
    dropped: u32,
    started: u64,
    held_reported: bool,
    /// Set by the coordinator's `end` line: how many messages it published.
    published: Option<u64>,
}

pub fn run(args: &Args) -> Result<(), String> {
    halley::fd_limit::raise();
    let url = UrlTemplate::parse(args.require("sub-url")?)?;
    let ws = match args.get("transport").unwrap_or("sse") {
        "sse" => false,
        "ws" => true,
        other => return Err(format!("--transport {other:?}: sse or ws")),
    };
    let transport = Transport::new(ws, url.path(args.require("channel")?), &url.host);
    let count: usize = args.num("count", 0)?;
    let bounds = Bounds::parse(args.require("bounds")?).ok_or("bad --bounds")?;
    let started = now_ns();
    let poll = Poll::new().map_err(|e| e.to_string())?;
    let stdin_fd = io::stdin().as_raw_fd();
    set_nonblocking(stdin_fd);
    poll.registry()
        .register(&mut SourceFd(&stdin_fd), STDIN, Interest::READABLE)
        .map_err(|e| e.to_string())?;
    let mut w = Worker {
        poll,
        url,
        transport,
        rng: Rng::new(started ^ (std::process::id() as u64) << 32),
        first: args.num("first", 0)?,
        count,
        n_addrs: args.num("src-addrs", 64)?,
        concurrency: args.num("concurrency", 200)?,
        connect_deadline: started + args.num::<u64>("connect-timeout-s", 60)? * 1_000_000_000,
        subs: Slab::with_capacity(count),
        tally: Tally::new(bounds),
        connect: Latencies::default(),
        buf: vec![0; 64 * 1024],
        out: Vec::with_capacity(64 * 1024),
        control: LineReader::default(),
        next: 0,
        in_flight: 0,
        held: 0,
        failed: 0,
        dropped: 0,
        started,
        held_reported: false,
        published: None,
    };
    let mut events = Events::with_capacity(1024);
    while w.published.is_none() && now_ns() - w.started < MAX_LIFETIME_NS {
        // New connections start only between batches, so a slab slot freed during a batch
        // cannot be reused while events for its old socket are still being dispatched.
        w.start_connects()?;
        w.report_held_once_connected();
        flush(&mut w.out)?;
        w.poll
            .poll(&mut events, Some(Duration::from_millis(100)))
            .map_err(|e| e.to_string())?;
        for ev in events.iter() {
            match ev.token() {
                STDIN => w.on_control()?,
                Token(key) => w.on_sub(key),
            }
        }
    }
    w.finish()
}

impl Worker {
    fn start_connects(&mut self) -> Result<(), String> {
        while !self.held_reported && self.next < self.count && self.in_flight < self.concurrency {
            let src = source_addr(self.first + self.next, self.n_addrs);
            self.next += 1;
            match connect_from(src, self.url.addr) {
                Ok(mut stream) => {
                    let entry = self.subs.vacant_entry();
                    self.poll
                        .registry()
                        .register(
                            &mut stream,
                            Token(entry.key()),
                            Interest::READABLE | Interest::WRITABLE,
                        )
                        .map_err(|e| e.to_string())?;
                    entry.insert(Sub {
                        stream,
                        started_ns: now_ns(),
                        state: State::Connecting,
                    });
                    self.in_flight += 1;
                }
                Err(e) => {
                    log::warn!("connect from {src} failed: {e}");
                    self.failed += 1;
                }
            }
        }
        Ok(())
    }

    /// Reports `held` once every connect has resolved, or at the connect deadline, when whatever
    /// is still connecting counts as failed.
    fn report_held_once_connected(&mut self) {
        let expired = now_ns() > self.connect_deadline;
        if self.held_reported || !(self.next == self.count && self.in_flight == 0 || expired) {
            return;
        }
        if expired {
            let pending: Vec<usize> = self
                .subs
                .iter()
                .filter(|(_, s)| !s.state.is_held())
                .map(|(k, _)| k)
                .collect();
            self.failed += (pending.len() + self.count - self.next) as u32;
            for k in pending {
                self.subs.remove(k);
            }
        }
        self.held_reported = true;
        let (held, failed) = (self.held, self.failed);
        writeln!(self.out, "held {held} {failed} {}", now_ns() - self.started).unwrap();
    }

    fn on_control(&mut self) -> Result<(), String> {
        let published = &mut self.published;
        self.control
            .read_from(&mut io::stdin().lock(), &mut |line| {
                if let Some(n) = line.strip_prefix("end ") {
                    *published = n.trim().parse().ok();
                }
            })
            .map_err(|e| e.to_string())?;
        if self.control.eof && self.published.is_none() {
            return Err("coordinator went away".into());
        }
        Ok(())
    }

    fn on_sub(&mut self, key: usize) {
        let Some(s) = self.subs.get_mut(key) else {
            return;
        };
        let mut cx = Ctx {
            transport: &self.transport,
            buf: &mut self.buf,
            tally: &mut self.tally,
            live: self.held - self.dropped,
            out: &mut self.out,
            rng: &mut self.rng,
        };
        match sub::on_event(s, &mut cx) {
            Outcome::Alive => {}
            Outcome::Held => {
                self.held += 1;
                self.in_flight -= 1;
                self.connect.record(now_ns() - s.started_ns);
            }
            Outcome::Failed => {
                self.in_flight -= 1;
                self.failed += 1;
                self.subs.remove(key);
            }
            Outcome::Dropped => {
                self.dropped += 1;
                self.subs.remove(key);
                let (live, out) = (self.held - self.dropped, &mut self.out);
                self.tally.after_drop(live, &mut |seq, at| {
                    writeln!(out, "done {seq} {at}").unwrap()
                });
            }
        }
    }

    fn finish(mut self) -> Result<(), String> {
        let published = self.published.unwrap_or(0);
        let mut line = String::new();
        for (name, h) in [
            ("connect", &self.connect),
            ("fanout", &self.tally.fanout),
            ("open", &self.tally.open),
        ] {
            line.clear();
            h.encode(&mut line);
            writeln!(self.out, "hist {name}{line}").unwrap();
        }
        let t = &self.tally;
        writeln!(
            self.out,
            "counts {} {} {} {} {} {}",
            t.distinct,
            t.missing(self.held as u64, published),
            t.duplicate,
            t.out_of_order,
            t.unknown,
            self.dropped
        )
        .unwrap();
        writeln!(self.out, "end").unwrap();
        flush(&mut self.out)
    }
}

fn flush(out: &mut Vec<u8>) -> Result<(), String> {
    if !out.is_empty() {
        let mut stdout = io::stdout().lock();
        stdout
            .write_all(out)
            .and_then(|_| stdout.flush())
            .map_err(|e| e.to_string())?;
        out.clear();
    }
    Ok(())
}

pub fn set_nonblocking(fd: i32) {
    // SAFETY: fcntl on a descriptor this process owns.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
}

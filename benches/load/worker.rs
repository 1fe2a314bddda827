//! A worker process: opens its share of the SSE subscribers, holds them, and reads deliveries
//! until the coordinator writes `end PUBLISHED` on its stdin. It reports on stdout, one line each:
//! `held HELD FAILED CONNECT_NS` once connected, `done SEQ LAST_AT_NS` when all its subscribers
//! have a message, and at the end `hist NAME buckets...`, `counts ...` and `end`.

use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::args::Args;
use crate::hist::Latencies;
use crate::http::{self, Body};
use crate::net::{connect_from, now_ns, raise_fd_limit};
use crate::split::source_addr;
use crate::sse::SseParser;
use crate::tally::{Bounds, Seen, Tally};
use crate::url::UrlTemplate;

const STDIN: Token = Token(usize::MAX);
/// A worker that outlives its run by this much gives up, so no load loop runs unbounded.
const MAX_LIFETIME_NS: u64 = 15 * 60 * 1_000_000_000;

/// One subscriber; its state owns what that state needs.
struct Sub {
    stream: mio::net::TcpStream,
    started_ns: u64,
    state: State,
}

enum State {
    Connecting,
    /// Request sent; the response head accumulates here until complete.
    Head(Vec<u8>),
    Streaming {
        body: Body,
        sse: SseParser,
        seen: Seen,
    },
}

/// What happened to a subscriber during one readiness event.
enum Outcome {
    Alive,
    Held,
    Failed,
    Dropped,
}

pub fn run(args: &Args) -> Result<(), String> {
    raise_fd_limit();
    let url = UrlTemplate::parse(args.require("sub-url")?)?;
    let channel = args.require("channel")?;
    let first: usize = args.num("first", 0)?;
    let count: usize = args.num("count", 0)?;
    let n_addrs: usize = args.num("src-addrs", 64)?;
    let concurrency: usize = args.num("concurrency", 200)?;
    let connect_timeout_ns = args.num::<u64>("connect-timeout-s", 60)? * 1_000_000_000;
    let bounds = Bounds::parse(args.require("bounds")?).ok_or("bad --bounds")?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n",
        url.path(channel),
        url.host
    );

    let mut poll = Poll::new().map_err(|e| e.to_string())?;
    let stdin_fd = io::stdin().as_raw_fd();
    set_nonblocking(stdin_fd);
    poll.registry()
        .register(&mut SourceFd(&stdin_fd), STDIN, Interest::READABLE)
        .map_err(|e| e.to_string())?;

    let mut subs: Slab<Sub> = Slab::with_capacity(count);
    let mut tally = Tally::new(bounds);
    let mut connect = Latencies::default();
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 64 * 1024];
    let mut out: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut control = crate::net::LineReader::default();
    let (mut next, mut held, mut failed, mut dropped) = (0usize, 0u32, 0u32, 0u32);
    let mut in_flight = 0usize;
    let started = now_ns();
    let mut held_reported = false;
    let mut published: Option<u64> = None;

    while published.is_none() && now_ns() - started < MAX_LIFETIME_NS {
        // New connections start only between batches, so a slab slot freed during a batch
        // cannot be reused while events for its old socket are still being dispatched.
        while !held_reported && next < count && in_flight < concurrency {
            let src = source_addr(first + next, n_addrs);
            next += 1;
            match connect_from(src, url.addr) {
                Ok(mut stream) => {
                    let entry = subs.vacant_entry();
                    let token = Token(entry.key());
                    poll.registry()
                        .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
                        .map_err(|e| e.to_string())?;
                    entry.insert(Sub {
                        stream,
                        started_ns: now_ns(),
                        state: State::Connecting,
                    });
                    in_flight += 1;
                }
                Err(e) => {
                    log::warn!("connect from {src} failed: {e}");
                    failed += 1;
                }
            }
        }
        let connect_expired = now_ns() - started > connect_timeout_ns;
        if !held_reported && (next == count && in_flight == 0 || connect_expired) {
            if connect_expired {
                // Whatever is still connecting now counts as failed.
                let pending: Vec<usize> = subs
                    .iter()
                    .filter(|(_, s)| !matches!(s.state, State::Streaming { .. }))
                    .map(|(k, _)| k)
                    .collect();
                for k in pending {
                    subs.remove(k);
                    failed += 1;
                }
                failed += (count - next) as u32;
            }
            held_reported = true;
            writeln!(out, "held {held} {failed} {}", now_ns() - started).unwrap();
        }
        flush(&mut out)?;

        poll.poll(&mut events, Some(Duration::from_millis(100)))
            .map_err(|e| e.to_string())?;
        for ev in events.iter() {
            if ev.token() == STDIN {
                let mut stdin = io::stdin().lock();
                control
                    .read_from(&mut stdin, &mut |line| {
                        if let Some(n) = line.strip_prefix("end ") {
                            published = n.trim().parse().ok();
                        }
                    })
                    .map_err(|e| e.to_string())?;
                if control.eof && published.is_none() {
                    return Err("coordinator went away".into());
                }
                continue;
            }
            let key = ev.token().0;
            let Some(sub) = subs.get_mut(key) else {
                continue;
            };
            let live = held - dropped;
            let outcome = on_event(sub, &request, &mut buf, &mut tally, live, &mut out);
            match outcome {
                Outcome::Alive => {}
                Outcome::Held => {
                    held += 1;
                    in_flight -= 1;
                    connect.record(now_ns() - sub.started_ns);
                }
                Outcome::Failed => {
                    in_flight -= 1;
                    failed += 1;
                    subs.remove(key);
                }
                Outcome::Dropped => {
                    dropped += 1;
                    subs.remove(key);
                    let live = held - dropped;
                    tally.after_drop(live, &mut |seq, at| {
                        writeln!(out, "done {seq} {at}").unwrap()
                    });
                }
            }
        }
    }

    let published = published.unwrap_or(0);
    let mut line = String::new();
    for (name, h) in [
        ("connect", &connect),
        ("fanout", &tally.fanout),
        ("open", &tally.open),
    ] {
        line.clear();
        h.encode(&mut line);
        writeln!(out, "hist {name}{line}").unwrap();
    }
    writeln!(
        out,
        "counts {} {} {} {} {} {}",
        tally.distinct,
        tally.missing(held as u64, published),
        tally.duplicate,
        tally.out_of_order,
        tally.unknown,
        dropped
    )
    .unwrap();
    writeln!(out, "end").unwrap();
    flush(&mut out)
}

/// Advances one subscriber on a readiness event.
fn on_event(
    sub: &mut Sub,
    request: &str,
    buf: &mut [u8],
    tally: &mut Tally,
    live: u32,
    out: &mut Vec<u8>,
) -> Outcome {
    if let State::Connecting = sub.state {
        match sub.stream.take_error() {
            Ok(None) => {}
            _ => return Outcome::Failed,
        }
        if sub.stream.peer_addr().is_err() {
            return Outcome::Alive; // Not connected yet; a later event will say.
        }
        // A fresh socket's send buffer always takes a request this small in one write.
        match sub.stream.write(request.as_bytes()) {
            Ok(n) if n == request.len() => sub.state = State::Head(Vec::with_capacity(512)),
            _ => return Outcome::Failed,
        }
    }
    let mut outcome = Outcome::Alive;
    loop {
        let n = match sub.stream.read(buf) {
            Ok(0) => return gone(&sub.state, &outcome),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return outcome,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return gone(&sub.state, &outcome),
        };
        let now = now_ns();
        match &mut sub.state {
            State::Head(head) => {
                head.extend_from_slice(&buf[..n]);
                match http::parse_head(head) {
                    Ok(None) => {}
                    Ok(Some(h)) if h.status == 200 => {
                        // The body's first bytes may have come with the head.
                        let rest = head.split_off(h.len);
                        let (mut body, mut sse, mut seen) =
                            (Body::new(h.framing), SseParser::default(), tally.new_seen());
                        if feed(
                            &mut body,
                            &mut sse,
                            &mut seen,
                            &rest,
                            tally,
                            now,
                            live + 1,
                            out,
                        )
                        .is_err()
                        {
                            return Outcome::Failed;
                        }
                        sub.state = State::Streaming { body, sse, seen };
                        outcome = Outcome::Held;
                    }
                    Ok(Some(h)) => {
                        log::warn!(
                            "subscribe answered {} while reading the response head",
                            h.status
                        );
                        return Outcome::Failed;
                    }
                    Err(e) => {
                        log::warn!("{e} while reading the subscribe response head");
                        return Outcome::Failed;
                    }
                }
            }
            State::Streaming { body, sse, seen } => {
                if feed(body, sse, seen, &buf[..n], tally, now, live, out).is_err() {
                    return Outcome::Dropped;
                }
            }
            State::Connecting => unreachable!("the request is sent before reading"),
        }
        // A short read from a TCP socket means its receive queue is empty, and data arriving
        // later raises a new edge, so the usual read that returns EAGAIN is skipped: that halves
        // the generator's system calls per delivery.
        if n < buf.len() {
            return outcome;
        }
    }
}

/// A subscriber whose connection ended was dropped if it had been counted as held, else it failed.
fn gone(state: &State, outcome: &Outcome) -> Outcome {
    match (state, outcome) {
        (State::Streaming { .. }, Outcome::Alive) => Outcome::Dropped,
        _ => Outcome::Failed,
    }
}

/// Decodes body framing and events from one read, recording each delivery.
#[allow(clippy::too_many_arguments)]
fn feed(
    body: &mut Body,
    sse: &mut SseParser,
    seen: &mut Seen,
    input: &[u8],
    tally: &mut Tally,
    now: u64,
    live: u32,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    body.feed(input, &mut |payload| {
        sse.feed(payload, &mut |d| {
            if let Some(seq) = tally.record(seen, d, now, live) {
                writeln!(out, "done {seq} {}", tally.last_at(seq)).unwrap();
            }
        })
    })?;
    if body.is_done() {
        return Err("stream ended".into());
    }
    Ok(())
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

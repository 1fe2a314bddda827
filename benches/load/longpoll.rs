//! The `longpoll` mode, two measurements: sustained cycles per second when a message is always
//! ready (each connection GETs `--ready-url` again as soon as an answer is complete), and the
//! latency of held long-polls (`--wait-url` requests parked on the server, then one publish).

use std::io::Write;
use std::time::Duration;

use mio::{Events, Poll, Token};

use crate::args::Args;
use crate::client::Conn;
use crate::hist::Latencies;
use crate::net::now_ns;
use crate::procfs;
use crate::report::Report;
use crate::sse::write_payload;
use crate::url::UrlTemplate;

const SEC: u64 = 1_000_000_000;

/// Connections and the loop that drives them; connection 0 publishes.
struct Driver {
    poll: Poll,
    events: Events,
    conns: Vec<Conn>,
    buf: Vec<u8>,
}

impl Driver {
    fn connect(&mut self, url: &UrlTemplate) -> Result<usize, String> {
        let i = self.conns.len();
        let c =
            Conn::connect(url.addr, self.poll.registry(), Token(i)).map_err(|e| e.to_string())?;
        self.conns.push(c);
        Ok(i)
    }

    fn get(&mut self, i: usize, url: &UrlTemplate, channel: &str) -> Result<(), String> {
        let c = &mut self.conns[i];
        let req = c.request_buf();
        write!(
            req,
            "GET {} HTTP/1.1\r\nHost: {}\r\n\r\n",
            url.path(channel),
            url.host
        )
        .unwrap();
        c.send(0, now_ns()).map_err(|e| e.to_string())
    }

    fn publish(&mut self, url: &UrlTemplate, channel: &str, seq: u64) -> Result<u64, String> {
        let mut body = Vec::new();
        let sent = now_ns();
        write_payload(&mut body, seq, sent, 0);
        let c = &mut self.conns[0];
        let req = c.request_buf();
        write!(
            req,
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n\r\n",
            url.path(channel),
            url.host,
            body.len()
        )
        .unwrap();
        req.extend_from_slice(&body);
        c.send(seq, sent).map_err(|e| e.to_string())?;
        Ok(sent)
    }

    /// Waits up to `timeout` until `want` polls (not the publisher) are answered and the publisher
    /// is idle again, calling `on_answer(status, now)` for each poll.
    fn collect(
        &mut self,
        timeout: u64,
        want: usize,
        on_answer: &mut impl FnMut(u16, u64),
    ) -> Result<(), String> {
        let deadline = now_ns() + timeout;
        let mut got = 0;
        while (got < want || !self.conns[0].is_idle()) && now_ns() < deadline {
            self.turn(deadline, &mut |i, status, now| {
                if i != 0 {
                    got += 1;
                    on_answer(status, now);
                }
            })?;
        }
        Ok(())
    }

    /// Waits up to `until` for events; calls `on_done(conn, status, now)` per complete answer.
    fn turn(
        &mut self,
        until: u64,
        on_done: &mut impl FnMut(usize, u16, u64),
    ) -> Result<(), String> {
        let wait = until.saturating_sub(now_ns()).min(SEC / 10);
        self.poll
            .poll(&mut self.events, Some(Duration::from_nanos(wait)))
            .map_err(|e| e.to_string())?;
        for ev in self.events.iter() {
            let i = ev.token().0;
            match self.conns[i].on_ready(&mut self.buf) {
                Ok(Some(status)) => on_done(i, status, now_ns()),
                Ok(None) => {}
                Err(e) => return Err(format!("{e} on long-poll connection {i}")),
            }
        }
        Ok(())
    }
}

pub fn run(args: &Args) -> Result<(), String> {
    halley::fd_limit::raise();
    let pub_url = UrlTemplate::parse(args.require("pub-url")?)?;
    let channel = args
        .get("channel")
        .map(String::from)
        .unwrap_or_else(|| format!("bench-lp-{}", std::process::id()));
    let server = procfs::with_descendants(&args.all::<u32>("server-pid")?);
    let poll = Poll::new().map_err(|e| e.to_string())?;
    let mut d = Driver {
        poll,
        events: Events::with_capacity(1024),
        conns: Vec::new(),
        buf: vec![0; 64 * 1024],
    };
    d.connect(&pub_url)?;
    let mut rep = Report::default();
    rep.text("mode", "longpoll")
        .text("label", args.get("label").unwrap_or(""));
    let mut seq = 0;

    if let Some(url) = args.get("ready-url") {
        let url = UrlTemplate::parse(url)?;
        let n_conns: usize = args.num("conns", 50)?;
        let duration = (args.num::<f64>("duration-s", 3.0)? * SEC as f64) as u64;
        // A message must be waiting for every poll to be answered at once.
        d.publish(&pub_url, &channel, seq)?;
        seq += 1;
        let mut published = false;
        while !published {
            d.turn(now_ns() + 5 * SEC, &mut |i, _, _| published |= i == 0)?;
        }
        let conns: Vec<usize> = (0..n_conns)
            .map(|_| d.connect(&url))
            .collect::<Result<_, _>>()?;
        let (cpu0, t0) = (procfs::cpu_ns(&server), now_ns());
        for &i in &conns {
            d.get(i, &url, &channel)?;
        }
        let (mut cycles, mut errors, mut lat) = (0u64, 0u64, Latencies::default());
        let mut again = Vec::with_capacity(n_conns);
        while now_ns() < t0 + duration {
            d.turn(t0 + duration, &mut |i, status, now| {
                if (200..300).contains(&status) {
                    cycles += 1;
                } else {
                    errors += 1;
                }
                again.push((i, now));
            })?;
            for (i, now) in again.drain(..) {
                lat.record(now - d.conns[i].started_ns);
                d.get(i, &url, &channel)?;
            }
        }
        let (cpu1, t1) = (procfs::cpu_ns(&server), now_ns());
        rep.int("ready_conns", n_conns as u64)
            .int("ready_cycles", cycles)
            .int("ready_errors", errors)
            .num(
                "ready_cycles_per_s",
                cycles as f64 / ((t1 - t0) as f64 / SEC as f64),
            )
            .num(
                "ready_server_cpu_ms_per_1k",
                (cpu1 - cpu0) as f64 / 1e6 / cycles.max(1) as f64 * 1000.0,
            );
        rep.latencies("ready", &lat.summary());
        // The ready connections may still have a request in flight; they are simply closed.
        d.conns.truncate(1);
    }

    if let Some(url) = args.get("wait-url") {
        let url = UrlTemplate::parse(url)?;
        let held: usize = args.num("held", 1000)?;
        let rounds: u64 = args.num("rounds", 20)?;
        let settle = args.num::<u64>("settle-ms", 200)? * 1_000_000;
        let first = d.conns.len();
        for _ in 0..held {
            d.connect(&url)?;
        }
        let (mut lat, mut missing, mut late, mut errors) = (Latencies::default(), 0u64, 0u64, 0u64);
        for _ in 0..rounds {
            for i in first..first + held {
                d.get(i, &url, &channel)?;
            }
            // A SYN dropped from a full backlog is retried a second later, so first wait until every
            // request is out; then, as the server gives no sign that a long-poll is parked, give it
            // time to park them all.
            let sent_by = now_ns() + 10 * SEC;
            while !d.conns[first..].iter().all(Conn::is_sent) && now_ns() < sent_by {
                d.turn(sent_by, &mut |_, _, _| errors += 1)?;
            }
            let settled = now_ns() + settle;
            while now_ns() < settled {
                d.turn(settled, &mut |_, _, _| errors += 1)?;
            }
            let sent = d.publish(&pub_url, &channel, seq)?;
            seq += 1;
            let mut answered = 0usize;
            d.collect(5 * SEC, held, &mut |status, now| {
                answered += 1;
                if (200..300).contains(&status) {
                    lat.record(now - sent);
                } else {
                    errors += 1;
                }
            })?;
            if answered < held {
                // A poll that reached the server after the publish waits for the next message,
                // which is a late poll, not a lost answer: release it with one more message.
                d.publish(&pub_url, &channel, seq)?;
                seq += 1;
                let before = answered;
                d.collect(5 * SEC, held - answered, &mut |_, _| answered += 1)?;
                late += (answered - before) as u64;
            }
            missing += (held - answered) as u64;
            if answered < held {
                break; // Connections still waiting cannot be reused for the next round.
            }
        }
        rep.int("held", held as u64).int("rounds", rounds);
        rep.latencies("held", &lat.summary())
            .int("held_missing", missing)
            .int("held_late", late)
            .int("held_errors", errors);
    }
    println!("{}", rep.to_json());
    eprint!("{}", rep.to_text());
    Ok(())
}

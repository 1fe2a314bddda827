//! The `sse` and `ws` modes: hold N SSE or WebSocket subscribers in worker processes, measures what holding them costs
//! the server, then publishes warm-up, one-at-a-time and open-loop messages and reports latency,
//! losses and CPU. This process only publishes and adds up; the workers do the reading.

use std::os::fd::AsRawFd;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use crate::args::Args;
use crate::client::Conn;
use crate::coord::{Run, SEC, WORKER_TOKENS};
use crate::hist::Latencies;
use crate::net::now_ns;
use crate::procfs::{self, Memory};
use crate::procs::{Reports, Worker};
use crate::report::Report;
use crate::split;
use crate::tally::Bounds;
use crate::url::UrlTemplate;

/// Publisher connections for the open-loop schedule, so one slow answer does not hold up the next
/// message (its timestamp is its scheduled time either way, so any wait is counted as latency).
const OPEN_LOOP_PUBLISHERS: usize = 8;

/// `mode` is `sse` or `ws`: the subscribers' transport; everything else is the same.
pub fn run(args: &Args, mode: &'static str) -> Result<(), String> {
    let n: usize = args.num("n", 1000)?;
    // Several --sub-url (the nodes of a cluster) share the subscribers half and half; messages
    // are published to the one --pub-url.
    let sub_urls: Vec<String> = args.all("sub-url")?;
    if sub_urls.is_empty() {
        return Err("--sub-url is required".into());
    }
    let pub_url = UrlTemplate::parse(args.require("pub-url")?)?;
    for url in &sub_urls {
        UrlTemplate::parse(url)?;
    }
    let channel = args
        .get("channel")
        .map(String::from)
        .unwrap_or_else(|| format!("bench-{}-{}", std::process::id(), now_ns()));
    let warmup: u64 = args.num("warmup", 5)?;
    let messages: u64 = args.num("messages", 50)?;
    let rate: f64 = args.num("rate", 0.0)?;
    let rate_messages: u64 = if rate > 0.0 {
        args.num("rate-messages", 50)?
    } else {
        0
    };
    let msg_timeout = args.num::<u64>("message-timeout-s", 10)? * SEC;
    let connect_timeout_s: u64 = args.num("connect-timeout-s", 60)?;
    let node_pids = args.all::<u32>("server-pid")?;
    let server = procfs::with_descendants(&node_pids);
    // Each node on its own, only when there are several to tell apart.
    let nodes: Vec<Vec<u32>> = match node_pids.len() {
        0 | 1 => Vec::new(),
        _ => node_pids
            .iter()
            .map(|&p| procfs::with_descendants(&[p]))
            .collect(),
    };
    let aux = procfs::with_descendants(&args.all::<u32>("aux-pid")?);
    let hard = halley::fd_limit::raise();
    let cap: usize = args.num("per-process", split::per_process(hard))?;
    let parts = split::split_over(n, sub_urls.len(), cap);
    if parts.len() > sub_urls.len() {
        eprintln!(
            "halley-load: {n} subscribers are more than one process may hold ({cap}, from the fd hard limit {hard}); splitting over {} worker processes",
            parts.len()
        );
    }
    let n_pubs = if rate_messages > 0 {
        OPEN_LOOP_PUBLISHERS
    } else {
        1
    };
    let bounds = Bounds {
        measured: warmup,
        open: warmup + messages,
        total: warmup + messages + rate_messages,
        publishers: n_pubs as u64,
    };

    let poll = Poll::new().map_err(|e| e.to_string())?;
    let mem_before = procfs::memory(&server);
    let concurrency: usize = args.num("concurrency", 200)?;
    let mut workers = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let wargs: Vec<String> = [
            ("sub-url", sub_urls[part.url].clone()),
            ("channel", channel.clone()),
            ("transport", mode.to_string()),
            ("first", part.subs.start.to_string()),
            ("count", part.subs.len().to_string()),
            ("src-addrs", args.num::<usize>("src-addrs", 64)?.to_string()),
            (
                "concurrency",
                (concurrency / parts.len()).max(1).to_string(),
            ),
            ("bounds", bounds.encode()),
            ("connect-timeout-s", connect_timeout_s.to_string()),
        ]
        .into_iter()
        .flat_map(|(k, v)| [format!("--{k}"), v])
        .collect();
        let w = Worker::spawn(&wargs)?;
        poll.registry()
            .register(
                &mut SourceFd(&w.stdout.as_raw_fd()),
                Token(WORKER_TOKENS + i),
                Interest::READABLE,
            )
            .map_err(|e| e.to_string())?;
        workers.push(w);
    }
    let mut run = Run {
        poll,
        events: Events::with_capacity(1024),
        reports: Reports::new(
            parts.iter().map(|p| p.url).collect(),
            sub_urls.len(),
            bounds.total,
        ),
        workers,
        pubs: Vec::new(),
        pub_addr: pub_url.addr,
        n_pubs,
        pub_path: pub_url.path(&channel),
        pub_host: pub_url.host.clone(),
        size: args.num("size", 0)?,
        sent_at: vec![0; bounds.total as usize],
        accepted: 0,
        rejected: 0,
        buf: vec![0; 64 * 1024],
    };
    let pids = Pids {
        server: &server,
        nodes: &nodes,
        aux: &aux,
    };
    let result = measure(
        &mut run,
        args,
        n,
        &pids,
        mode,
        mem_before,
        bounds,
        rate,
        msg_timeout,
        connect_timeout_s,
    );
    for w in run.workers.iter_mut() {
        w.reap();
    }
    result
}

/// The processes whose CPU a run reads: the server (every node, with descendants), each node on
/// its own (as given by --server-pid, in order), and the auxiliary ones (a cluster's Redis), whose
/// CPU is reported apart from the server's.
struct Pids<'a> {
    server: &'a [u32],
    nodes: &'a [Vec<u32>],
    aux: &'a [u32],
}

impl Pids<'_> {
    /// CPU time so far, in nanoseconds.
    fn cpu(&self) -> Cpu {
        Cpu {
            server: procfs::cpu_ns(self.server),
            nodes: self.nodes.iter().map(|p| procfs::cpu_ns(p)).collect(),
            aux: procfs::cpu_ns(self.aux),
        }
    }
}

/// CPU time of a run's processes at one instant; the difference of two is a phase's cost.
#[derive(Default)]
struct Cpu {
    server: u64,
    nodes: Vec<u64>,
    aux: u64,
}

impl Cpu {
    /// What was spent from `before` to `self`.
    fn since(&self, before: &Cpu) -> Cpu {
        Cpu {
            server: self.server - before.server,
            nodes: (self.nodes.iter().zip(&before.nodes))
                .map(|(&a, &b)| a - b)
                .collect(),
            aux: self.aux - before.aux,
        }
    }
}

/// Milliseconds of CPU per 1,000 deliveries.
fn ms_per_1k(cpu_ns: u64, deliveries: u64) -> f64 {
    cpu_ns as f64 / 1e6 / deliveries.max(1) as f64 * 1000.0
}

#[allow(clippy::too_many_arguments)]
fn measure(
    run: &mut Run,
    args: &Args,
    n: usize,
    pids: &Pids,
    mode: &str,
    mem_before: Memory,
    bounds: Bounds,
    rate: f64,
    msg_timeout: u64,
    connect_timeout_s: u64,
) -> Result<(), String> {
    let t_connect = now_ns();
    if !run.wait(t_connect + (connect_timeout_s + 10) * SEC, |r| {
        r.reports.held.iter().all(Option::is_some)
    })? {
        return Err("workers did not finish connecting".into());
    }
    let connect_ns = run
        .reports
        .held
        .iter()
        .map(|h| h.unwrap().2)
        .max()
        .unwrap_or(0);
    let held: u64 = run.reports.held.iter().map(|h| h.unwrap().0).sum();
    let failed: u64 = run.reports.held.iter().map(|h| h.unwrap().1).sum();
    // Let the server finish whatever it does after answering before reading its memory.
    run.wait(now_ns() + SEC / 2, |_| false)?;
    let mem_held = procfs::memory(pids.server);
    // Publishers connect only when they are first used: a server short of connection slots
    // (nginx) or with a header or idle timeout would otherwise close one that waits unused, while
    // the subscribers connect or (the open-loop publishers) through the one-at-a-time phase, which
    // on a busy machine outlasts halley's 10 s header timeout.
    let first = 1.min(run.n_pubs);
    connect_publishers(run, first)?;
    let gen: Vec<u32> = run
        .workers
        .iter()
        .map(Worker::pid)
        .chain([std::process::id()])
        .collect();

    // One broadcast at a time: the next message goes out once every subscriber has the last.
    let mut timeouts = 0u64;
    let (mut cpu0, mut gen0, mut t0) = (Cpu::default(), 0, 0);
    for seq in 0..bounds.open {
        if seq == bounds.measured {
            (cpu0, gen0, t0) = (pids.cpu(), procfs::cpu_ns(&gen), now_ns());
        }
        run.publish(0, seq, now_ns())?;
        let deadline = now_ns() + msg_timeout;
        if !run.wait(deadline, |r| r.all_done(seq) && r.pubs[0].is_idle())? {
            timeouts += 1;
            if !run.pubs[0].is_idle() {
                return Err(format!("publish of message {seq} got no answer"));
            }
        }
    }
    let (cpu1, gen1) = (pids.cpu(), procfs::cpu_ns(&gen));
    let spent = cpu1.since(&cpu0);
    let t1 = (bounds.measured..bounds.open)
        .map(|s| run.reports.last_at[s as usize])
        .max()
        .unwrap_or(t0)
        .max(t0);
    let mut to_last = Latencies::default();
    for s in bounds.measured..bounds.open {
        if run.all_done(s) {
            to_last.record(run.reports.last_at[s as usize] - run.sent_at[s as usize]);
        }
    }

    // Open loop: messages leave on a fixed schedule whether or not earlier ones have arrived.
    let (mut open_spent, mut t2, mut t3) = (Cpu::default(), 0, 0);
    if bounds.total > bounds.open {
        let all = run.n_pubs;
        connect_publishers(run, all)?;
        let interval = (SEC as f64 / rate) as u64;
        let cpu2 = pids.cpu();
        t2 = now_ns() + SEC / 100;
        let mut next = bounds.open;
        let stop = t2 + (bounds.total - bounds.open) * interval + 30 * SEC;
        while next < bounds.total && now_ns() < stop {
            let due = t2 + (next - bounds.open) * interval;
            // Round-robin, so each connection carries an ordered stream the workers can check.
            // A message whose connection is still busy leaves late, and its latency shows it.
            let c = bounds.stream(next) - 1;
            if now_ns() >= due && run.pubs[c].is_idle() {
                run.publish(c, next, due)?;
                next += 1;
                continue;
            }
            let wake = if now_ns() >= due {
                now_ns() + SEC / 1000
            } else {
                due
            };
            run.turn(wake)?;
        }
        let last = bounds.total - 1;
        run.wait(now_ns() + msg_timeout, |r| {
            (bounds.open..=last).all(|s| r.all_done(s)) && r.pubs.iter().all(Conn::is_idle)
        })?;
        open_spent = pids.cpu().since(&cpu2);
        t3 = (bounds.open..bounds.total)
            .map(|s| run.reports.last_at[s as usize])
            .max()
            .unwrap_or(t2)
            .max(t2);
    }
    let mem_after = procfs::memory(pids.server);

    let published = bounds.total;
    for w in run.workers.iter_mut() {
        w.end(published);
    }
    run.wait(now_ns() + 10 * SEC, |r| {
        r.reports.finished.iter().all(|&f| f)
    })?;

    let r = &run.reports;
    let per_conn =
        |after: u64, before: u64| (after as f64 - before as f64) * 1024.0 / held.max(1) as f64;
    let fan = r.fanout.summary();
    let wall = (t1 - t0) as f64 / SEC as f64;
    let gen_cpu = (gen1 - gen0) as f64;
    let mut rep = Report::default();
    rep.text("mode", mode)
        .text("label", args.get("label").unwrap_or(""))
        .int("n", n as u64)
        .int("workers", run.workers.len() as u64)
        .int("held", held)
        .int("failed", failed)
        .num("connect_s", connect_ns as f64 / SEC as f64);
    rep.latencies("connect", &r.connect.summary())
        .num(
            "pss_per_conn_b",
            per_conn(mem_held.pss_kb, mem_before.pss_kb),
        )
        .num(
            "rss_per_conn_b",
            per_conn(mem_held.rss_kb, mem_before.rss_kb),
        )
        .num(
            "slab_per_conn_b",
            per_conn(mem_held.slab_kb, mem_before.slab_kb),
        )
        .num(
            "pss_after_fanout_per_conn_b",
            per_conn(mem_after.pss_kb, mem_before.pss_kb),
        )
        .int("server_pss_kb", mem_held.pss_kb)
        .int("warmup", bounds.measured)
        .int("messages", bounds.open - bounds.measured);
    rep.latencies("fanout", &fan)
        .latencies("to_last", &to_last.summary())
        .num("deliveries_per_s", fan.count as f64 / wall)
        .num("server_cpu_ms_per_1k", ms_per_1k(spent.server, fan.count))
        .num(
            "gen_cpu_us_per_delivery",
            gen_cpu / 1e3 / fan.count.max(1) as f64,
        )
        .num("gen_cpu_share", gen_cpu / (t1 - t0).max(1) as f64)
        // Near 1.0 the server was the bottleneck; the generator's share says how close it was.
        .num(
            "server_cpu_share",
            spent.server as f64 / (t1 - t0).max(1) as f64,
        );
    // A cluster's figures: each node's part of the server's CPU (so they add up to it), each
    // node's subscribers' latency, and what the auxiliary processes (Redis) spent besides.
    for (i, &ns) in spent.nodes.iter().enumerate() {
        rep.num(
            &format!("node{}_cpu_ms_per_1k", i + 1),
            ms_per_1k(ns, fan.count),
        );
    }
    if r.by_url.len() > 1 {
        for (i, h) in r.by_url.iter().enumerate() {
            rep.latencies(&format!("node{}_fanout", i + 1), &h.summary());
        }
    }
    if !pids.aux.is_empty() {
        rep.num("aux_cpu_ms_per_1k", ms_per_1k(spent.aux, fan.count))
            .num("aux_cpu_share", spent.aux as f64 / (t1 - t0).max(1) as f64);
    }
    if bounds.total > bounds.open {
        let open = r.open.summary();
        rep.num("rate", rate)
            .int("rate_messages", bounds.total - bounds.open);
        rep.latencies("open", &open)
            .num(
                "open_deliveries_per_s",
                open.count as f64 / ((t3 - t2) as f64 / SEC as f64),
            )
            .num(
                "open_server_cpu_ms_per_1k",
                ms_per_1k(open_spent.server, open.count),
            );
        if !pids.aux.is_empty() {
            rep.num(
                "open_aux_cpu_ms_per_1k",
                ms_per_1k(open_spent.aux, open.count),
            );
        }
    }
    let [_, missing, duplicate, out_of_order, unknown, dropped] = r.counts;
    rep.int("missing", missing)
        .int("duplicate", duplicate)
        .int("out_of_order", out_of_order)
        .int("unknown", unknown)
        .int("dropped", dropped)
        .int("timeouts", timeouts)
        .int("publish_accepted", run.accepted)
        .int("publish_rejected", run.rejected);
    println!("{}", rep.to_json());
    eprint!("{}", rep.to_text());
    if gen_cpu / ((t1 - t0).max(1) as f64) > 0.8 {
        eprintln!(
            "halley-load: the generator used over 80% of a core; it may have been the bottleneck"
        );
    }
    Ok(())
}

/// Connects publishers until `n` are open (publisher `i` on token `i`).
fn connect_publishers(run: &mut Run, n: usize) -> Result<(), String> {
    for i in run.pubs.len()..n {
        let c = Conn::connect(run.pub_addr, run.poll.registry(), Token(i))
            .map_err(|e| format!("publisher: {e}"))?;
        run.pubs.push(c);
    }
    Ok(())
}

//! `halley-load`: the load generator behind `scripts/bench`. It holds N SSE or WebSocket subscribers on
//! loopback (split over worker processes when one may not hold them all), publishes timestamped
//! messages and reports delivery latency, losses, and what the server spent in memory and CPU
//! (read from /proc). It also drives long-poll cycles. mio only, no async runtime.
//!
//! `halley-load --help` prints the whole usage (`args::USAGE`). In brief:
//!   halley-load sse --sub-url URL --pub-url URL -n N [--messages M] [--warmup W]
//!                   [--rate MSG_PER_S --rate-messages K] [--server-pid PID]... [--size BYTES]
//!                   [--channel NAME] [--src-addrs A] [--concurrency C] [--per-process P] [--label L]
//!                   [--aux-pid PID]...
//!       Several --sub-url (the nodes of a cluster) share the N subscribers half and half, each
//!       with its own workers; messages go to the one --pub-url, and losses are counted over all.
//!       Several --server-pid are summed as the server and also reported one by one, in order;
//!       --aux-pid processes (a cluster's Redis) are measured over the same phases, apart.
//!   halley-load ws ...      (the same options: the subscribers upgrade the --sub-url to WebSocket)
//!   halley-load longpoll --ready-url URL --wait-url URL --pub-url URL [--conns C]
//!                   [--duration-s S] [--held H] [--rounds R] [--server-pid PID]...
//!   halley-load worker ...   (internal: one process's share of the subscribers)
//! URLs are templates: `{channel}` is replaced by the run's channel name. Results are one JSON
//! line on stdout and a readable listing on stderr.
//!
//! Code map, from the top down:
//! - `fanout`: the sse and ws modes' phases; `coord`: its event loop over worker pipes and publishers;
//! - `procs`: worker processes; `worker`: one process's subscribers; `sub`: one subscriber;
//! - `http`, `sse`, `ws`, `tally`, `hist`, `split`, `url`: pure parsing and bookkeeping, tested in place;
//! - `client`: keep-alive requests; `longpoll`: the longpoll mode;
//! - `procfs`, `net`: /proc and the system calls std lacks; `args`, `report`: in and out.

mod args;
mod client;
mod coord;
mod fanout;
mod hist;
mod http;
mod longpoll;
mod net;
mod procfs;
mod procs;
mod report;
mod split;
mod sse;
mod sub;
mod tally;
mod url;
mod worker;
mod ws;

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let (mode, rest) = argv
        .split_first()
        .map(|(m, r)| (m.as_str(), r))
        .unwrap_or(("", &[]));
    if matches!(mode, "--help" | "-h" | "help") {
        print!("{}", args::USAGE);
        return;
    }
    let result = args::Args::parse(rest).and_then(|args| match mode {
        "sse" => fanout::run(&args, "sse"),
        "ws" => fanout::run(&args, "ws"),
        "longpoll" => longpoll::run(&args),
        "worker" => worker::run(&args),
        _ => Err(format!("unknown mode {mode:?}\n\n{}", args::USAGE)),
    });
    if let Err(e) = result {
        eprintln!("halley-load {mode}: {e}");
        std::process::exit(1);
    }
}

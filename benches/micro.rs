//! `cargo bench`: halley's hot paths in-process, without sockets. Parsing a
//! request head, encoding a message for each transport, and one publish to
//! 10,000 subscribers of a channel, where the message is encoded once and every
//! subscriber shares the bytes; the naive per-subscriber encode beside it shows
//! what sharing saves. `cargo bench -- WORD` runs the benchmarks whose name
//! contains WORD.
//!
//! The harness is the small one at the bottom of this file: calibrate a batch
//! of iterations to take about `SAMPLE` of wall time, warm up, take `SAMPLES`
//! batches and report the median time per iteration with the fastest and
//! slowest batch. Everything the code under test returns goes through
//! `black_box`, so the optimiser cannot drop the work.

use std::hint::black_box;
use std::rc::Rc;
use std::time::{Duration, Instant};

use halley::conn_id::ConnId;
use halley::encode;
use halley::http::request::{self, Parsed};
use halley::hub::{Hub, Kind, Limits};
use halley::message::Message;

/// What an EventSource in a browser sends to subscribe (Chromium's headers).
const BROWSER_SSE_GET: &[u8] = b"GET /sub/room HTTP/1.1\r\n\
Host: localhost:8080\r\n\
Connection: keep-alive\r\n\
Accept: text/event-stream\r\n\
Cache-Control: no-cache\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36\r\n\
Origin: http://localhost:8080\r\n\
Sec-Fetch-Site: same-origin\r\n\
Sec-Fetch-Mode: cors\r\n\
Sec-Fetch-Dest: empty\r\n\
Referer: http://localhost:8080/\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Accept-Language: en-US,en;q=0.9\r\n\
Last-Event-ID: 1a2b3c-41\r\n\r\n";

/// What `curl` or the load generator sends to subscribe.
const MINIMAL_GET: &[u8] = b"GET /sub/room HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

/// A publish, head only (the body follows it in the read buffer).
const PUBLISH_POST: &[u8] = b"POST /pub/room HTTP/1.1\r\n\
Host: 127.0.0.1:8080\r\n\
User-Agent: curl/8.5.0\r\n\
Accept: */*\r\n\
Content-Type: application/json\r\n\
Content-Length: 96\r\n\r\n";

/// The load generator's message body: a sequence number and a timestamp.
const SMALL_DATA: &str = "417 1234567890123456";
/// Subscribers of the fan-out benchmark, as in the load tier of issue 3.
const FANOUT_N: u32 = 10_000;

fn main() {
    // `cargo bench` passes `--bench`; any other argument filters by name.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let mut run = Runner { filter };
    run.note("halley microbenchmarks: median per iteration (fastest–slowest batch)");

    parse_benches(&mut run);
    encode_benches(&mut run);
    fanout_benches(&mut run);
}

fn parse_benches(run: &mut Runner) {
    for (name, raw) in [
        ("parse/minimal GET", MINIMAL_GET),
        ("parse/browser EventSource GET", BROWSER_SSE_GET),
        ("parse/publish POST", PUBLISH_POST),
    ] {
        // The benchmark is only meaningful if the head parses completely.
        assert!(matches!(
            request::parse(raw),
            Ok(Parsed::Complete { len, .. }) if len == raw.len()
        ));
        run.bench(&format!("{name} ({} B)", raw.len()), 1, || {
            request::parse(black_box(raw))
        });
    }
    // A head split across reads: everything but the final CRLF has arrived.
    let partial = &BROWSER_SSE_GET[..BROWSER_SSE_GET.len() - 2];
    run.bench("parse/browser GET, last 2 bytes missing", 1, || {
        request::parse(black_box(partial))
    });
}

fn message(data: &str, event: Option<&str>) -> Message {
    Message::new(
        0x1a2b3c,
        417,
        "1a2b3c-417".into(),
        "room".into(),
        event.map(Into::into),
        data.into(),
        false,
        Instant::now(),
    )
}

fn encode_benches(run: &mut Runner) {
    let kib: String = "lorem ipsum \"dolor\" sit amet\n".repeat(36);
    let messages = [
        ("20 B", message(SMALL_DATA, None)),
        ("1 KiB, quotes and newlines", message(&kib, Some("note"))),
    ];
    for (what, m) in &messages {
        // These are what `Message::sse()` and its siblings run on first use;
        // every later call returns the cached `Rc` (measured below).
        run.bench(&format!("encode/sse_event {what}"), 1, || {
            encode::sse_event(black_box(m))
        });
        run.bench(&format!("encode/stream_line {what}"), 1, || {
            encode::stream_line(black_box(m))
        });
        run.bench(&format!("encode/json_object {what}"), 1, || {
            encode::json_object(black_box(m))
        });
        // A poll body embeds each message's cached JSON object, so after
        // the first call this is the concatenation alone; first use adds one
        // `json_object` above.
        m.json();
        run.bench(&format!("encode/poll_body {what}, JSON cached"), 1, || {
            encode::poll_body(&[black_box(m)], None, &m.id)
        });
    }
    let (_, m) = &messages[0];
    m.sse();
    run.bench("encode/Message::sse() once cached", 1, || {
        black_box(m).sse().clone()
    });
}

/// A hub with one channel of `FANOUT_N` SSE subscribers.
fn hub_with_subscribers() -> Hub {
    let mut hub = Hub::new(
        0x1a2b3c,
        Limits {
            buffer: 64,
            ttl: Duration::from_secs(3600),
            max_channels: usize::MAX,
            max_history_bytes: usize::MAX,
        },
    );
    for slot in 0..FANOUT_N {
        hub.subscribe("room", Kind::Stream, ConnId { slot, gen: 1 });
    }
    hub
}

fn fanout_benches(run: &mut Runner) {
    let n = FANOUT_N as u64;
    let now = Instant::now();

    // What `server::deliver` does for a publish, minus the `write()` per
    // subscriber: append the message to its channel, walk the channel's
    // subscribers and take the one shared frame (and its range) for each.
    let mut hub = hub_with_subscribers();
    run.bench("fan-out/publish + shared frame to 10,000", n, || {
        let message = hub
            .publish("room", SMALL_DATA.into(), false, None, now)
            .expect("no limits");
        let channel = hub.channel("room").expect("subscribed");
        for (_, &id) in channel.streams.iter() {
            let frame: &Rc<[u8]> = message.sse();
            black_box((id, frame, 0..frame.len()));
        }
        message
    });

    // The same walk when a subscriber's short write keeps the frame: it holds
    // another reference to the shared bytes, not a copy.
    let mut hub = hub_with_subscribers();
    let mut kept: Vec<Rc<[u8]>> = Vec::with_capacity(FANOUT_N as usize);
    run.bench("fan-out/publish + shared frame kept by each", n, || {
        kept.clear();
        let message = hub
            .publish("room", SMALL_DATA.into(), false, None, now)
            .expect("no limits");
        let channel = hub.channel("room").expect("subscribed");
        for (_, &id) in channel.streams.iter() {
            black_box(id);
            kept.push(message.sse().clone());
        }
        black_box(&kept);
    });

    // The naive alternative: every subscriber gets its own encoding.
    let mut hub = hub_with_subscribers();
    run.bench("fan-out/publish + encode per subscriber", n, || {
        let message = hub
            .publish("room", SMALL_DATA.into(), false, None, now)
            .expect("no limits");
        let channel = hub.channel("room").expect("subscribed");
        for (_, &id) in channel.streams.iter() {
            black_box((id, encode::sse_event(&message)));
        }
        message
    });
}

/// Batches of iterations are sized to take about this long.
const SAMPLE: Duration = Duration::from_millis(10);
/// Batches measured per benchmark, after the warm-up.
const SAMPLES: usize = 21;
/// Running before measuring, so caches, branch predictors and the allocator
/// have settled and the CPU has left any low-power state.
const WARM_UP: Duration = Duration::from_millis(100);

struct Runner {
    filter: Vec<String>,
}

impl Runner {
    fn note(&self, text: &str) {
        println!("{text}");
    }

    /// Times `f` and prints the median time per call; with `per > 1` also the
    /// time per unit (each call does `per` units of work, e.g. deliveries).
    fn bench<T>(&mut self, name: &str, per: u64, mut f: impl FnMut() -> T) {
        if !self.filter.is_empty() && !self.filter.iter().any(|w| name.contains(w.as_str())) {
            return;
        }
        // Calibrate: double the batch until one takes SAMPLE. This warms up too.
        let mut iters: u64 = 1;
        loop {
            let took = time(&mut f, iters);
            if took >= SAMPLE || iters >= 1 << 30 {
                break;
            }
            let scale = SAMPLE.as_secs_f64() / took.as_secs_f64().max(1e-9);
            iters = (iters as f64 * scale.clamp(1.5, 10.0)).ceil() as u64;
        }
        let start = Instant::now();
        while start.elapsed() < WARM_UP {
            time(&mut f, iters);
        }
        let mut per_iter: Vec<f64> = (0..SAMPLES)
            .map(|_| time(&mut f, iters).as_nanos() as f64 / iters as f64)
            .collect();
        per_iter.sort_by(f64::total_cmp);
        let (lo, med, hi) = (per_iter[0], per_iter[SAMPLES / 2], per_iter[SAMPLES - 1]);
        let mut line = format!(
            "{name:<58} {:>10} ({}–{})",
            human(med),
            human(lo),
            human(hi)
        );
        if per > 1 {
            let per = per as f64;
            line += &format!(
                "   = {} per delivery ({}–{})",
                human(med / per),
                human(lo / per),
                human(hi / per)
            );
        }
        println!("{line}   [{SAMPLES} × {iters} iterations]");
    }
}

fn time<T>(f: &mut impl FnMut() -> T, iters: u64) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        black_box(f());
    }
    start.elapsed()
}

fn human(ns: f64) -> String {
    match ns {
        ns if ns < 1_000.0 => format!("{ns:.1} ns"),
        ns if ns < 1_000_000.0 => format!("{:.2} µs", ns / 1e3),
        ns => format!("{:.2} ms", ns / 1e6),
    }
}

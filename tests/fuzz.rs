//! A fuzz-style test of a running server: many connections throw mutated
//! requests at it (a seeded generator bends a corpus of valid ones: bit
//! flips, cuts, inserted bytes, huge headers, broken chunked bodies, heads
//! sent a few bytes at a time, heads left unfinished), while a witness SSE
//! subscriber must receive every message published on its own channel once
//! and in order. Every answer must be a well-formed HTTP response, every
//! refusal a JSON `{"error": ...}`, every half-closed connection closed, and
//! at the end the server must answer as if nothing had happened.
//!
//! The run is bounded in count (`N_CONNS` x `ROUNDS` connections) and in
//! time (`TIME_LIMIT`, past which no connection is started). The seed is
//! printed with any failure; `HALLEY_FUZZ_SEED=0x... cargo test --release
//! --test fuzz` repeats a run's requests (not their interleaving).

mod common;

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// Connections throwing requests at once.
const N_CONNS: usize = 50;
/// Connections each of them opens, one after another.
const ROUNDS: usize = 20;
/// Messages the witness must receive.
const N_WITNESS: usize = 100;
/// No fuzzing connection starts after this long.
const TIME_LIMIT: Duration = Duration::from_secs(20);
/// The server's header timeout here, which unfinished heads run into.
const HEADER_TIMEOUT: Duration = Duration::from_millis(500);
const DEFAULT_SEED: u64 = 0x5eed_4a11_e7c0_ffee;

/// splitmix64: small, seedable, and the same on every platform.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n` (which must not be 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn seed() -> u64 {
    match std::env::var("HALLEY_FUZZ_SEED") {
        Ok(text) => {
            let text = text.trim_start_matches("0x");
            u64::from_str_radix(text, 16).expect("HALLEY_FUZZ_SEED is hex")
        }
        Err(_) => DEFAULT_SEED,
    }
}

/// Valid requests of every kind the server serves, on channels other than
/// the witness's.
fn corpus() -> Vec<Vec<u8>> {
    let handshake = r#"[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["long-polling"]}]"#;
    let subscribe =
        r#"[{"channel":"/meta/subscribe","clientId":"nope","subscription":"/fz/a","id":"2"}]"#;
    let connect =
        r#"{"channel":"/meta/connect","clientId":"nope","connectionType":"long-polling"}"#;
    let publish = r#"[{"channel":"/fz/b","data":{"x":1},"clientId":"nope"}]"#;
    let mut requests = vec![
        request_bytes(
            "GET",
            "/sub/fz/a?transport=sse",
            &["Accept: text/event-stream"],
            b"",
        ),
        request_bytes("GET", "/sub/fz/a?transport=sse&since=earliest", &[], b""),
        request_bytes("GET", "/sub/fz/b?transport=stream", &[], b""),
        request_bytes("GET", "/sub/fz/a?transport=longpoll", &[], b""),
        request_bytes(
            "GET",
            "/sub/fz/b",
            &["Last-Event-ID: 000000000001-1"],
            b"",
        ),
        request_bytes("POST", "/pub/fz/a", &[], b"hello"),
        request_bytes(
            "POST",
            "/pub/fz/b?event=note",
            &["Content-Type: application/json", "Idempotency-Key: k1"],
            br#"{"n":2}"#,
        ),
        b"POST /pub/fz/a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n\
          5;x=y\r\nhello\r\n0\r\nT: 1\r\n\r\n"
            .to_vec(),
        b"POST /pub/fz/b HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc"
            .to_vec(),
        request_bytes("DELETE", "/pub/fz/a", &[], b""),
        request_bytes("GET", "/pub/fz/b", &[], b""),
        request_bytes("OPTIONS", "/pub/fz/a", &["Origin: http://x"], b""),
        request_bytes("HEAD", "/stats", &[], b""),
        request_bytes("GET", "/stats", &[], b""),
        request_bytes("GET", "/", &[], b""),
        b"GET /stats HTTP/1.0\r\n\r\n".to_vec(),
        request_bytes(
            "GET",
            "/bayeux?jsonp=cb&message=%5B%7B%22channel%22%3A%22%2Fmeta%2Fhandshake%22%7D%5D",
            &[],
            b"",
        ),
    ];
    for body in [handshake, subscribe, connect, publish] {
        requests.push(request_bytes(
            "POST",
            "/bayeux",
            &["Content-Type: application/json"],
            body.as_bytes(),
        ));
    }
    requests.push(request_bytes(
        "POST",
        "/bayeux",
        &["Content-Type: application/x-www-form-urlencoded"],
        b"message=%7B%22channel%22%3A%22%2Fmeta%2Fhandshake%22%7D",
    ));
    requests
}

/// One way of bending a request.
fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>) {
    let at = |rng: &mut Rng, bytes: &Vec<u8>| rng.below(bytes.len() + 1);
    match rng.below(9) {
        0 if !bytes.is_empty() => {
            let i = rng.below(bytes.len());
            bytes[i] ^= 1 << rng.below(8);
        }
        1 => {
            let cut = at(rng, bytes);
            bytes.truncate(cut);
        }
        2 => {
            let i = at(rng, bytes);
            let junk: Vec<u8> = (0..1 + rng.below(8)).map(|_| rng.next() as u8).collect();
            bytes.splice(i..i, junk);
        }
        3 if !bytes.is_empty() => {
            let (a, b) = (rng.below(bytes.len()), rng.below(bytes.len()));
            let slice = bytes[a.min(b)..a.max(b)].to_vec();
            let i = at(rng, bytes);
            bytes.splice(i..i, slice);
        }
        4 => {
            // A header past the head limit, or just under it.
            let n = 4096 + rng.below(8192);
            let line = format!("X-Big: {}\r\n", "a".repeat(n));
            let i = find(bytes, b"\r\n").map_or(0, |i| i + 2);
            bytes.splice(i..i, line.into_bytes());
        }
        5 => {
            let bad: &[&[u8]] = &[
                b"zz\r\nhello\r\n0\r\n\r\n",
                b"5\r\nhelloXX0\r\n\r\n",
                b"fffffffffffffffff\r\n",
                b"3\r\nabc\r\n0\r\n\n",
                b"10000000\r\n",
            ];
            let head = b"POST /pub/fz/a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
            *bytes = [&head[..], bad[rng.below(bad.len())]].concat();
        }
        6 => {
            let lengths: &[&str] = &["-1", "1,1", "99999999999999999999", "+3", "0x5", ""];
            let line = format!("Content-Length: {}\r\n", lengths[rng.below(lengths.len())]);
            let i = find(bytes, b"\r\n").map_or(0, |i| i + 2);
            bytes.splice(i..i, line.into_bytes());
        }
        7 => {
            // Line ends as a sloppy client writes them.
            let text = String::from_utf8_lossy(bytes).replace("\r\n", "\n");
            *bytes = text.into_bytes();
        }
        _ => {
            let i = at(rng, bytes);
            bytes.insert(i, [0u8, b'\r', b'\n', b' ', 0xff][rng.below(5)]);
        }
    }
}

/// How a fuzzing connection sends its bytes and leaves.
#[derive(Clone, Copy, Debug)]
enum Delivery {
    /// All at once, then half-close and read to the end.
    Whole,
    /// A few bytes at a time, then half-close and read to the end.
    Slowloris,
    /// All at once, then close without reading.
    Abandon,
    /// Only part of the first head, then wait, not half-closed: the head
    /// must run into the header timeout and the connection be closed.
    Linger,
}

/// Tallies of what the server answered, across every connection.
#[derive(Default)]
struct Tally {
    statuses: BTreeMap<u16, usize>,
    connections: usize,
    bytes_sent: usize,
}

struct Fuzzer {
    addr: SocketAddr,
    seed: u64,
    corpus: Arc<Vec<Vec<u8>>>,
    tally: Arc<Mutex<Tally>>,
}

impl Fuzzer {
    fn run(&self, index: usize, started: Instant) {
        let mut rng = Rng(self.seed ^ (index as u64).wrapping_mul(0x1000_0000_01b3));
        for round in 0..ROUNDS {
            if started.elapsed() > TIME_LIMIT {
                break;
            }
            let bytes = self.request(&mut rng);
            let delivery = match rng.below(100) {
                0..=59 => Delivery::Whole,
                60..=79 => Delivery::Slowloris,
                80..=94 => Delivery::Abandon,
                _ => Delivery::Linger,
            };
            let what = format!(
                "seed {:#x}, connection {index}, round {round}, {delivery:?}, sent {}",
                self.seed,
                preview(&bytes)
            );
            let got = self.throw(&mut rng, &bytes, delivery, &what);
            let statuses = check_responses(&got, &what);
            let mut tally = self.tally.lock().unwrap();
            tally.connections += 1;
            tally.bytes_sent += bytes.len();
            for status in statuses {
                *tally.statuses.entry(status).or_default() += 1;
            }
        }
    }

    /// One to three corpus requests, pipelined, the result bent zero to three times.
    fn request(&self, rng: &mut Rng) -> Vec<u8> {
        let mut bytes = Vec::new();
        for _ in 0..1 + rng.below(3) {
            bytes.extend_from_slice(&self.corpus[rng.below(self.corpus.len())]);
        }
        for _ in 0..rng.below(4) {
            mutate(rng, &mut bytes);
        }
        bytes
    }

    /// Sends `bytes` as `delivery` says and returns what came back.
    fn throw(&self, rng: &mut Rng, bytes: &[u8], delivery: Delivery, what: &str) -> Vec<u8> {
        let mut stream =
            TcpStream::connect(self.addr).unwrap_or_else(|e| panic!("connect: {e} ({what})"));
        stream.set_nodelay(true).unwrap();
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(READ_TIMEOUT)).unwrap();
        // The server may refuse and close before everything is written;
        // that is its right, so write errors end the sending, not the test.
        let bytes = match delivery {
            Delivery::Linger => {
                let end = [&b"\r\n\r\n"[..], b"\n\n", b"\r\n\n", b"\n\r\n"]
                    .iter()
                    .filter_map(|delim| find(bytes, delim))
                    .min()
                    .unwrap_or(bytes.len());
                &bytes[..rng.below(end + 1)]
            }
            _ => bytes,
        };
        let sent = match delivery {
            Delivery::Slowloris => {
                let mut rest = bytes;
                let mut ok = true;
                let most = (bytes.len() / 32).max(16);
                while !rest.is_empty() && ok {
                    let n = (1 + rng.below(most)).min(rest.len());
                    ok = stream.write_all(&rest[..n]).is_ok();
                    rest = &rest[n..];
                    // Pacing, not synchronisation: give the server separate reads.
                    thread::sleep(Duration::from_millis(1));
                }
                ok
            }
            _ => stream.write_all(bytes).is_ok(),
        };
        match delivery {
            Delivery::Abandon => return Vec::new(),
            Delivery::Linger => {}
            Delivery::Whole | Delivery::Slowloris if sent => {
                let _ = stream.shutdown(Shutdown::Write);
            }
            Delivery::Whole | Delivery::Slowloris => {}
        }
        read_to_end(&mut stream, what)
    }
}

/// Reads until the server closes, which it must: a half-closed connection
/// once its answers are written (a subscription or a held poll included:
/// the client has gone), an unfinished head when the header timeout comes.
fn read_to_end(stream: &mut TcpStream, what: &str) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return got,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!(
                    "not closed after {READ_TIMEOUT:?} ({what}); got {}",
                    preview(&got)
                )
            }
            Err(e) => panic!("read failed: {e} ({what})"),
        }
    }
}

/// Checks every response head in `got` that can be delimited: a valid
/// status line, and for each refusal a JSON body with an `error`. Returns
/// the statuses seen.
fn check_responses(got: &[u8], what: &str) -> Vec<u16> {
    let mut statuses = Vec::new();
    let mut rest = got;
    while !rest.is_empty() {
        let Some(end) = find(rest, b"\r\n\r\n") else {
            assert!(
                !statuses.is_empty(),
                "no whole head ({what}): {}",
                preview(got)
            );
            break;
        };
        let head = std::str::from_utf8(&rest[..end])
            .unwrap_or_else(|_| panic!("head is not UTF-8 ({what}): {}", preview(got)));
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap();
        let status: u16 = status_line
            .strip_prefix("HTTP/1.1 ")
            .or_else(|| status_line.strip_prefix("HTTP/1.0 "))
            .and_then(|s| s.get(..3))
            .and_then(|s| s.parse().ok())
            .filter(|s| (100..600).contains(s))
            .unwrap_or_else(|| panic!("bad status line {status_line:?} ({what})"));
        statuses.push(status);
        let header = |name: &str| {
            head.split("\r\n").skip(1).find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
            })
        };
        rest = &rest[end + 4..];
        if status >= 400 {
            let ct = header("content-type").unwrap_or_default();
            assert!(
                ct.starts_with("application/json"),
                "a {status} that is not JSON ({what}): {head}"
            );
        }
        if status / 100 == 1 || status == 204 || status == 304 {
            continue;
        }
        let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) else {
            // Chunked or unframed: a stream, or a body this check does not read.
            break;
        };
        // A HEAD is answered with the length and no body: the next head follows.
        if len > 0 && rest.starts_with(b"HTTP/1.") {
            continue;
        }
        if rest.len() < len {
            break;
        }
        if status >= 400 {
            let body: Value = serde_json::from_slice(&rest[..len]).unwrap_or_else(|e| {
                panic!(
                    "a {status} body is not JSON: {e} ({what}): {}",
                    preview(rest)
                )
            });
            assert!(
                body["error"].is_string(),
                "a {status} without an error ({what}): {body}"
            );
        }
        rest = &rest[len..];
    }
    statuses
}

#[test]
fn mutated_requests_from_many_connections_leave_the_witness_and_the_server_intact() {
    let seed = seed();
    eprintln!("fuzz seed {seed:#x} (HALLEY_FUZZ_SEED={seed:#x} repeats the requests)");
    let addr = start(Config {
        header_timeout: HEADER_TIMEOUT,
        ..config()
    });
    let witness_channel = channel("witness");
    let mut witness = Sub::sse(addr, &witness_channel, "", &[]);
    let reader = thread::spawn(move || {
        let received: Vec<_> = (0..N_WITNESS)
            .map(|_| {
                let ev = witness.next_event();
                (ev.id.clone().unwrap_or_default(), ev.data())
            })
            .collect();
        (received, witness)
    });

    let tally = Arc::new(Mutex::new(Tally::default()));
    let corpus = Arc::new(corpus());
    let started = Instant::now();
    let fuzzers: Vec<_> = (0..N_CONNS)
        .map(|index| {
            let fuzzer = Fuzzer {
                addr,
                seed,
                corpus: corpus.clone(),
                tally: tally.clone(),
            };
            thread::spawn(move || fuzzer.run(index, started))
        })
        .collect();

    // The witness's messages go out while the fuzzers are at work, on one
    // kept-alive connection, each waiting for its 201.
    let mut publisher = Client::connect(addr);
    let mut ids = Vec::new();
    for i in 0..N_WITNESS {
        let body = format!("w{i}");
        publisher.request(
            "POST",
            &format!("/pub/{witness_channel}"),
            &[],
            body.as_bytes(),
        );
        let resp = publisher.read_response();
        assert_eq!(
            resp.status, 201,
            "seed {seed:#x}: witness publish {i}: {resp:?}"
        );
        ids.push(resp.json()["id"].as_str().unwrap().to_owned());
    }

    drop(publisher);
    for (index, fuzzer) in fuzzers.into_iter().enumerate() {
        if let Err(e) = fuzzer.join() {
            panic!("seed {seed:#x}: fuzzing connection {index} failed: {e:?}");
        }
    }
    let (received, mut witness) = reader
        .join()
        .unwrap_or_else(|e| panic!("seed {seed:#x}: the witness failed: {e:?}"));
    let want: Vec<(String, String)> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.clone(), format!("w{i}")))
        .collect();
    assert_eq!(received, want, "seed {seed:#x}: the witness's messages");
    let seqs: Vec<u64> = ids.iter().map(|id| seq_of(id)).collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "seed {seed:#x}: witness ids {ids:?}"
    );

    let tally = tally.lock().unwrap();
    eprintln!(
        "{} connections, {} bytes, statuses {:?}",
        tally.connections, tally.bytes_sent, tally.statuses
    );
    // The fuzzing reached the server: it served some requests and refused
    // others for each kind of reason thrown at it.
    for status in [200, 201, 400, 431] {
        assert!(
            tally.statuses.contains_key(&status),
            "seed {seed:#x}: no {status} in {:?}",
            tally.statuses
        );
    }

    // The server is still itself: the fuzzers' connections are all gone,
    // a normal request is answered and the witness still receives.
    let mut s = stats(addr);
    wait_until("only the witness and this request are connected", || {
        s = stats(addr);
        s["connections"]["total"] == 2 && s["connections"]["sse"] == 1
    });
    assert_eq!(s["accept_errors"], 0, "seed {seed:#x}: {s}");
    // Unfinished heads were cut off by the header timeout, not left open.
    assert!(s["timeouts"].as_u64().unwrap() > 0, "seed {seed:#x}: {s}");
    assert!(
        s["messages_published"].as_u64().unwrap() >= N_WITNESS as u64,
        "seed {seed:#x}: {s}"
    );
    let last = publish(addr, &witness_channel, "after");
    assert_eq!(seq_of(&last), seqs[N_WITNESS - 1] + 1);
    let ev = witness.next_event();
    assert_eq!((ev.data(), ev.id), ("after".to_owned(), Some(last)));
}

//! Shared helpers for the integration tests: starting a server (in-process or
//! as the `halley` binary), a raw HTTP/1.1 client over `TcpStream` that reads
//! responses, chunks, SSE events and NDJSON lines, and JSON bodies read into
//! `serde_json::Value`s so tests can assert on structure.
//!
//! Tests synchronise on bytes arriving (every read has a timeout) or on state
//! the server reports (`wait_until` over `/stats` or `GET /pub/{ch}`), never on
//! sleeps.

#![allow(dead_code)]

pub mod redis;
pub mod ws;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use halley::Config;
pub use serde_json::Value;

/// How long any single read may wait before the test fails.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// A configuration for tests: port 0, and timeouts long enough that they never
/// fire in a test that is not about them (so no heartbeat interleaves with the
/// events a test expects), short enough that a hung test ends.
pub fn config() -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        header_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(10),
        heartbeat: Duration::from_secs(30),
        longpoll_timeout: Duration::from_secs(10),
        ..Config::default()
    }
}

/// Starts an in-process server with `config` and returns its address.
pub fn start(config: Config) -> SocketAddr {
    halley::spawn(config).expect("server starts")
}

/// Starts an in-process server with the test defaults.
pub fn start_default() -> SocketAddr {
    start(config())
}

/// Polls `cond` until it holds, failing the test after 5 s. For conditions
/// that no byte on the test's own connection announces (a long-poll being
/// parked, a connection being reaped).
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

// ---------------------------------------------------------------------------
// The raw client.

/// A response as read off the wire.
#[derive(Debug, Clone)]
pub struct Response {
    pub version: String,
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The value of the first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn has_header(&self, name: &str) -> bool {
        self.header(name).is_some()
    }

    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("body is UTF-8")
    }

    #[track_caller]
    pub fn json(&self) -> Value {
        parse_json(self.text())
    }

    /// Asserts the shape every error answer has: the status, a JSON
    /// content type and a body `{"error": "..."}` with a non-empty message.
    #[track_caller]
    pub fn assert_error(&self, status: u16) {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(self.header("content-type"), Some("application/json"));
        let body = self.json();
        let message = body["error"].as_str().expect("a message");
        assert!(!message.is_empty(), "error body {body:?}");
        assert_eq!(keys(&body), vec!["error"], "error body {body:?}");
    }

    pub fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// A connection to the server that speaks raw bytes.
pub struct Client {
    pub stream: TcpStream,
    /// Bytes read but not consumed yet.
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(READ_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    /// A client over a stream connected elsewhere (from another source
    /// address, say), with the same timeouts as `connect`.
    pub fn from_stream(stream: TcpStream) -> Client {
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(READ_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn set_read_timeout(&mut self, timeout: Duration) {
        self.stream.set_read_timeout(Some(timeout)).unwrap();
    }

    pub fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.stream.write_all(bytes.as_ref()).expect("write");
    }

    /// Sends a request with the usual head: `Host`, and `Content-Length` when
    /// there is a body. `extra` are further header lines without CRLF.
    pub fn request(&mut self, method: &str, path: &str, extra: &[&str], body: &[u8]) {
        self.send(request_bytes(method, path, extra, body));
    }

    /// Reads more bytes into the buffer; returns how many (0 at EOF). A
    /// connection reset counts as EOF: the server closing with unread input
    /// resets, and both mean "closed".
    fn fill(&mut self) -> io::Result<usize> {
        let mut tmp = [0u8; 64 * 1024];
        match self.stream.read(&mut tmp) {
            Ok(n) => {
                self.buf.extend_from_slice(&tmp[..n]);
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Reads once if bytes arrive within the read timeout: `Some(n)` for
    /// `n` new bytes (0 at EOF), `None` if nothing came in time.
    pub fn try_fill(&mut self) -> Option<usize> {
        match self.fill() {
            Ok(n) => Some(n),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                None
            }
            Err(e) => panic!("read failed: {e}"),
        }
    }

    #[track_caller]
    fn fill_or_panic(&mut self, what: &str) {
        match self.fill() {
            Ok(0) => panic!(
                "connection closed while reading {what}; had {}",
                preview(&self.buf)
            ),
            Ok(_) => {}
            Err(e) => panic!(
                "read failed while reading {what}: {e}; had {}",
                preview(&self.buf)
            ),
        }
    }

    /// Takes exactly `n` bytes.
    #[track_caller]
    pub fn read_bytes(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            self.fill_or_panic("a fixed number of bytes");
        }
        self.buf.drain(..n).collect()
    }

    /// Takes bytes up to and including the first `delim`.
    #[track_caller]
    pub fn read_until(&mut self, delim: &[u8]) -> Vec<u8> {
        loop {
            if let Some(at) = find(&self.buf, delim) {
                return self.buf.drain(..at + delim.len()).collect();
            }
            self.fill_or_panic("up to a delimiter");
        }
    }

    /// Reads a response head (status line and headers), leaving the body.
    #[track_caller]
    pub fn read_head(&mut self) -> Response {
        let head = self.read_until(b"\r\n\r\n");
        let head = String::from_utf8(head).expect("head is UTF-8");
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap();
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap().to_owned();
        let status = parts
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let reason = parts.next().unwrap_or("").to_owned();
        let headers = lines
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (n, v) = l.split_once(':').expect("header has a colon");
                (n.to_owned(), v.trim().to_owned())
            })
            .collect();
        Response {
            version,
            status,
            reason,
            headers,
            body: Vec::new(),
        }
    }

    /// Reads one complete response to a request that was not `HEAD`.
    #[track_caller]
    pub fn read_response(&mut self) -> Response {
        let mut resp = self.read_head();
        let no_body = resp.status == 204 || resp.status == 304 || resp.status / 100 == 1;
        if no_body {
            assert!(
                !resp.has_header("content-length") && !resp.has_header("transfer-encoding"),
                "a {} announces no body: {resp:?}",
                resp.status
            );
            return resp;
        }
        if resp
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            let mut body = Vec::new();
            loop {
                let chunk = self.read_chunk();
                if chunk.is_empty() {
                    break;
                }
                body.extend_from_slice(&chunk);
            }
            resp.body = body;
        } else if let Some(len) = resp.header("content-length") {
            let len: usize = len.parse().expect("numeric Content-Length");
            resp.body = self.read_bytes(len);
        } else {
            resp.body = self.read_to_end();
        }
        resp
    }

    /// Reads the response to a `HEAD` request: a head and never a body.
    #[track_caller]
    pub fn read_head_response(&mut self) -> Response {
        self.read_head()
    }

    /// Reads one chunk of a chunked body and returns its payload; an empty
    /// payload is the terminating chunk (its trailer's CRLF is consumed too).
    #[track_caller]
    pub fn read_chunk(&mut self) -> Vec<u8> {
        let size_line = self.read_until(b"\r\n");
        let size_text = std::str::from_utf8(&size_line[..size_line.len() - 2]).unwrap();
        let size_text = size_text.split(';').next().unwrap();
        let size = usize::from_str_radix(size_text, 16)
            .unwrap_or_else(|_| panic!("bad chunk size line {size_text:?}"));
        if size == 0 {
            let trailer = self.read_bytes(2);
            assert_eq!(trailer, b"\r\n", "terminating chunk ends with CRLF");
            return Vec::new();
        }
        let payload = self.read_bytes(size);
        assert_eq!(self.read_bytes(2), b"\r\n", "chunk payload ends with CRLF");
        payload
    }

    /// Reads one chunk and returns it with its framing, exactly as sent.
    #[track_caller]
    pub fn read_raw_chunk(&mut self) -> Vec<u8> {
        let mut raw = self.read_until(b"\r\n");
        let size_text = std::str::from_utf8(&raw[..raw.len() - 2])
            .unwrap()
            .to_owned();
        let size = usize::from_str_radix(&size_text, 16).expect("chunk size");
        raw.extend(self.read_bytes(size + 2));
        raw
    }

    /// Reads until the server closes the connection; returns what came.
    #[track_caller]
    pub fn read_to_end(&mut self) -> Vec<u8> {
        loop {
            match self.fill() {
                Ok(0) => return std::mem::take(&mut self.buf),
                Ok(_) => {}
                Err(e) => panic!(
                    "read failed waiting for the connection to close: {e}; had {} bytes",
                    self.buf.len()
                ),
            }
        }
    }

    /// Asserts that the server closes the connection without sending more.
    #[track_caller]
    pub fn expect_closed(&mut self) {
        let rest = self.read_to_end();
        assert!(
            rest.is_empty(),
            "expected the connection to close, got {}",
            preview(&rest)
        );
    }

    /// Asserts that nothing arrives within `wait` and the connection stays
    /// open. (A negative check: the only place a test waits on the clock.)
    #[track_caller]
    pub fn expect_silence(&mut self, wait: Duration) {
        assert!(self.buf.is_empty(), "unread bytes {}", preview(&self.buf));
        self.stream.set_read_timeout(Some(wait)).unwrap();
        let mut tmp = [0u8; 1024];
        match self.stream.read(&mut tmp) {
            Ok(0) => panic!("connection closed, expected it to stay open"),
            Ok(n) => panic!("expected silence, got {}", preview(&tmp[..n])),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("read failed: {e}"),
        }
        self.stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    }

    /// Whatever is buffered but not consumed.
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }

    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }
}

/// A short, printable view of `bytes` for failure messages: the start and
/// the end, and the length.
pub fn preview(bytes: &[u8]) -> String {
    const EDGE: usize = 160;
    if bytes.len() <= 2 * EDGE {
        return format!("{:?}", String::from_utf8_lossy(bytes));
    }
    format!(
        "{:?} ... {:?} ({} bytes)",
        String::from_utf8_lossy(&bytes[..EDGE]),
        String::from_utf8_lossy(&bytes[bytes.len() - EDGE..]),
        bytes.len()
    )
}

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The bytes of a request with `Host` and, when there is a body,
/// `Content-Length`.
pub fn request_bytes(method: &str, path: &str, extra: &[&str], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nHost: test\r\n");
    for line in extra {
        out.push_str(line);
        out.push_str("\r\n");
    }
    if !body.is_empty() || method == "POST" {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

// ---------------------------------------------------------------------------
// One-shot requests on fresh connections.

/// Sends one request on a new connection and reads its response.
pub fn call(addr: SocketAddr, method: &str, path: &str, extra: &[&str], body: &[u8]) -> Response {
    let mut c = Client::connect(addr);
    c.request(method, path, extra, body);
    if method == "HEAD" {
        c.read_head_response()
    } else {
        c.read_response()
    }
}

pub fn get(addr: SocketAddr, path: &str) -> Response {
    call(addr, "GET", path, &[], b"")
}

/// Publishes `data` on `channel` and returns the new message's id.
#[track_caller]
pub fn publish(addr: SocketAddr, channel: &str, data: &str) -> String {
    let resp = call(
        addr,
        "POST",
        &format!("/pub/{channel}"),
        &[],
        data.as_bytes(),
    );
    assert_eq!(resp.status, 201, "publish: {resp:?} {}", resp.text());
    resp.json()["id"].as_str().unwrap().to_owned()
}

/// `/stats` as JSON.
pub fn stats(addr: SocketAddr) -> Value {
    let resp = get(addr, "/stats");
    assert_eq!(resp.status, 200);
    resp.json()
}

/// POSTs Bayeux `messages` on `conn` as JSON and returns the reply array,
/// asserting a 200 (Bayeux errors come back inside it).
#[track_caller]
pub fn post_bayeux(conn: &mut Client, messages: Value) -> Value {
    let body = messages.to_string();
    conn.request(
        "POST",
        "/bayeux",
        &["Content-Type: application/json"],
        body.as_bytes(),
    );
    let resp = conn.read_response();
    assert_eq!(resp.status, 200, "{resp:?}");
    resp.json()
}

/// How many subscribers `GET /pub/{channel}` reports (0 if there is no channel).
pub fn subscribers(addr: SocketAddr, channel: &str) -> u64 {
    let resp = get(addr, &format!("/pub/{channel}"));
    match resp.status {
        404 => 0,
        200 => resp.json()["subscribers"].as_u64().unwrap(),
        s => panic!("GET /pub/{channel}: {s}"),
    }
}

/// Waits until `channel` has exactly `n` subscribers, e.g. after parking
/// long-polls, which no byte announces.
pub fn wait_subscribers(addr: SocketAddr, channel: &str, n: u64) {
    wait_until(&format!("{channel} has {n} subscribers"), || {
        subscribers(addr, channel) == n
    });
}

/// The epoch part of a message id (`EPOCH-SEQ`).
pub fn epoch_of(id: &str) -> &str {
    id.split_once('-').expect("id is EPOCH-SEQ").0
}

/// The sequence part of a message id.
pub fn seq_of(id: &str) -> u64 {
    id.split_once('-')
        .expect("id is EPOCH-SEQ")
        .1
        .parse()
        .unwrap()
}

/// A unique channel name per call, so tests sharing a server never collide.
pub fn channel(prefix: &str) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("{prefix}-{}", N.fetch_add(1, Ordering::Relaxed))
}

// ---------------------------------------------------------------------------
// Subscribers.

/// An SSE event as the EventSource parser would see it (fields in order).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Event {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: Vec<String>,
    /// The raw text of the block, `\n\n` included.
    pub raw: String,
}

impl Event {
    pub fn data(&self) -> String {
        self.data.join("\n")
    }

    pub fn is_comment(&self) -> bool {
        self.raw.lines().all(|l| l.is_empty() || l.starts_with(':'))
    }

    /// Whether EventSource dispatches this block: only blocks with data do
    /// (comments and id-only blocks just update state).
    pub fn dispatches(&self) -> bool {
        !self.data.is_empty()
    }
}

/// A subscriber connection after its response head: reads SSE blocks or
/// NDJSON lines out of a chunked (HTTP/1.1) or raw (HTTP/1.0) body.
pub struct Sub {
    pub client: Client,
    pub head: Response,
    chunked: bool,
    text: String,
    pub ended: bool,
    /// The last `id:` seen, as EventSource keeps it for `Last-Event-ID`.
    pub last_id: Option<String>,
}

impl Sub {
    /// Opens `GET path` with `extra` headers and reads the response head,
    /// asserting it is a 200.
    #[track_caller]
    pub fn open(addr: SocketAddr, path: &str, extra: &[&str]) -> Sub {
        let mut client = Client::connect(addr);
        client.request("GET", path, extra, b"");
        Sub::from_client(client)
    }

    /// SSE subscription to `channel` with a query string (may be empty).
    #[track_caller]
    pub fn sse(addr: SocketAddr, channel: &str, query: &str, extra: &[&str]) -> Sub {
        let mut sub = Sub::open(addr, &format!("/sub/{channel}?transport=sse{query}"), extra);
        assert_eq!(
            sub.head.header("content-type"),
            Some("text/event-stream"),
            "{:?}",
            sub.head
        );
        // The preamble arrives at once, after the subscription is made, so
        // once it is here a publish reaches this subscriber.
        let preamble = sub.next_block();
        assert!(preamble.raw.starts_with("retry: "), "{preamble:?}");
        sub.skip_id_only_block();
        sub
    }

    /// Takes an id-only block if one is already buffered (a subscriber with
    /// nothing to replay is told its starting cursor that way, in the
    /// preamble's chunk), keeping its id in `last_id`.
    pub fn skip_id_only_block(&mut self) {
        if let Some(at) = self.text.find("\n\n") {
            let block = parse_event(self.text[..at + 2].to_owned());
            if block.id.is_some() && !block.dispatches() && block.event.is_none() {
                self.text.drain(..at + 2);
                self.last_id = block.id;
            }
        }
    }

    /// NDJSON stream subscription to `channel`.
    #[track_caller]
    pub fn stream(addr: SocketAddr, channel: &str, query: &str) -> Sub {
        let sub = Sub::open(
            addr,
            &format!("/sub/{channel}?transport=stream{query}"),
            &[],
        );
        assert_eq!(
            sub.head.header("content-type"),
            Some("application/x-ndjson")
        );
        sub
    }

    #[track_caller]
    pub fn from_client(mut client: Client) -> Sub {
        let head = client.read_head();
        assert_eq!(head.status, 200, "subscribe: {head:?}");
        let chunked = head
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        Sub {
            client,
            head,
            chunked,
            text: String::new(),
            ended: false,
            last_id: None,
        }
    }

    /// Reads more body text; false once the body has ended (terminating
    /// chunk, or EOF for an HTTP/1.0 stream).
    #[track_caller]
    fn more(&mut self) -> bool {
        if self.ended {
            return false;
        }
        if self.chunked {
            let payload = self.client.read_chunk();
            if payload.is_empty() {
                self.ended = true;
                return false;
            }
            self.text
                .push_str(std::str::from_utf8(&payload).expect("UTF-8 chunk"));
        } else {
            let before = self.client.buf.len();
            if before == 0 {
                match self.client.fill() {
                    Ok(0) => {
                        self.ended = true;
                        return false;
                    }
                    Ok(_) => {}
                    Err(e) => panic!("read failed: {e}; had {}", preview(self.text.as_bytes())),
                }
            }
            let bytes = std::mem::take(&mut self.client.buf);
            self.text
                .push_str(std::str::from_utf8(&bytes).expect("UTF-8 body"));
        }
        true
    }

    /// The next SSE block (event or comment), up to its blank line.
    #[track_caller]
    pub fn next_block(&mut self) -> Event {
        self.try_next_block()
            .unwrap_or_else(|| panic!("stream ended; had {}", preview(self.text.as_bytes())))
    }

    /// The next SSE block, or `None` if the stream ended first.
    #[track_caller]
    pub fn try_next_block(&mut self) -> Option<Event> {
        loop {
            if let Some(at) = self.text.find("\n\n") {
                let raw: String = self.text.drain(..at + 2).collect();
                let ev = parse_event(raw);
                if ev.id.is_some() {
                    self.last_id.clone_from(&ev.id);
                }
                return Some(ev);
            }
            if !self.more() {
                assert!(
                    self.text.is_empty(),
                    "stream ended mid-event {:?}",
                    self.text
                );
                return None;
            }
        }
    }

    /// The next event EventSource would dispatch: blocks without data
    /// (heartbeat comments, the id-only block that tells a new subscriber its
    /// starting cursor) are skipped, though their `id:` is kept in `last_id`.
    #[track_caller]
    pub fn next_event(&mut self) -> Event {
        loop {
            let ev = self.next_block();
            if ev.dispatches() {
                return ev;
            }
        }
    }

    /// The next NDJSON line (without its newline); heartbeats are empty lines.
    #[track_caller]
    pub fn next_line(&mut self) -> String {
        self.try_next_line()
            .unwrap_or_else(|| panic!("stream ended; had {}", preview(self.text.as_bytes())))
    }

    #[track_caller]
    pub fn try_next_line(&mut self) -> Option<String> {
        loop {
            if let Some(at) = self.text.find('\n') {
                let mut line: String = self.text.drain(..at + 1).collect();
                line.pop();
                return Some(line);
            }
            if !self.more() {
                assert!(
                    self.text.is_empty(),
                    "stream ended mid-line {:?}",
                    self.text
                );
                return None;
            }
        }
    }

    /// The next non-empty NDJSON line, parsed.
    #[track_caller]
    pub fn next_json(&mut self) -> Value {
        loop {
            let line = self.next_line();
            if !line.is_empty() {
                return parse_json(&line);
            }
        }
    }

    /// Reads the last block of a draining server's SSE stream, a `drain`
    /// event whose `retry:` and data name the same delay, and asserts that
    /// the stream then ends properly; returns the delay in milliseconds.
    #[track_caller]
    pub fn expect_drain(&mut self) -> u64 {
        let block = self.next_block();
        let field = |name: &str| {
            block
                .raw
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .unwrap_or_else(|| panic!("no {name} in {:?}", block.raw))
                .to_owned()
        };
        let ms: u64 = field("retry: ").parse().expect("whole milliseconds");
        assert_eq!(block.event.as_deref(), Some("drain"), "{block:?}");
        assert_eq!(field("data: "), ms.to_string(), "{block:?}");
        self.expect_end();
        ms
    }

    /// Asserts that the body ends properly (the terminating chunk for HTTP/1.1)
    /// with nothing before it, and that the connection then closes.
    #[track_caller]
    pub fn expect_end(&mut self) {
        assert!(
            self.text.is_empty(),
            "unread text {}",
            preview(self.text.as_bytes())
        );
        assert!(
            !self.more(),
            "expected the end, got {}",
            preview(self.text.as_bytes())
        );
        self.client.expect_closed();
    }
}

fn parse_event(raw: String) -> Event {
    let mut ev = Event::default();
    for line in raw.lines() {
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "id" => ev.id = Some(value.to_owned()),
            "event" => ev.event = Some(value.to_owned()),
            "data" => ev.data.push(value.to_owned()),
            _ => {}
        }
    }
    ev.raw = raw;
    ev
}

// ---------------------------------------------------------------------------
// The binary.

/// A server process started for a test; killed when dropped if still running.
pub struct Proc {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Proc {
    /// Starts `halley --listen 127.0.0.1:0 ARGS` and waits for its
    /// `listening on` line.
    pub fn start(args: &[&str]) -> Proc {
        Proc::start_with(args, |_| {})
    }

    /// Like `start`, with a hook to adjust the command (e.g. limits).
    pub fn start_with(args: &[&str], adjust: impl FnOnce(&mut Command)) -> Proc {
        // benches/tests share this file but build no server binary, so the path is
        // looked up only when a test starts the server.
        #[allow(clippy::option_env_unwrap)]
        let exe = option_env!("CARGO_BIN_EXE_halley").expect("the halley binary is in this crate");
        let mut cmd = Command::new(exe);
        cmd.args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "warn")
            .stderr(Stdio::inherit());
        adjust(&mut cmd);
        Proc::spawn(cmd)
    }

    /// Starts any of the project's servers (halley, the benchmark floor) and
    /// waits for the `listening on ADDR` line each prints once bound.
    pub fn spawn(mut cmd: Command) -> Proc {
        cmd.stdin(Stdio::null()).stdout(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn a server");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the server printed its address");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .expect("an address");
        Proc { child, addr }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// Waits up to `limit` for the process to exit; returns its status and how
    /// long it took, or `None` if it is still running.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<(std::process::ExitStatus, Duration)> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some((status, start.elapsed()));
            }
            if start.elapsed() > limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// User plus system CPU time the process has used, from /proc.
    pub fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        // Fields after the parenthesised command name; utime and stime are
        // the 14th and 15th fields of the whole line.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        // SAFETY: sysconf only reads a system constant.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        Duration::from_millis(ticks * 1000 / hz)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------
// JSON, read with serde_json.

/// Parses `text` as JSON, failing the test with the text when it is not.
#[track_caller]
pub fn parse_json(text: &str) -> Value {
    serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("{e} in JSON {}", preview(text.as_bytes())))
}

/// An object's keys in the order they came on the wire (the tests build serde_json with
/// `preserve_order`); empty for anything but an object.
pub fn keys(value: &Value) -> Vec<&str> {
    value
        .as_object()
        .map_or_else(Vec::new, |o| o.keys().map(String::as_str).collect())
}

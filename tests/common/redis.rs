//! A real `redis-server` for the tests that run halley with `--redis`: each
//! test starts its own on a free port of 127.0.0.1 in its own temporary
//! directory, without persistence, and can stop it (keeping or losing its
//! data), start it again on the same port, or freeze it. `cmd` speaks one raw
//! RESP command, so a test can look at what halley keeps in Redis.
//!
//! Nothing here touches a system Redis: the port is never 6379, and the
//! server is killed and its directory removed when the handle is dropped.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{stats, wait_until, Event, Proc, Sub, READ_TIMEOUT};

/// The Redis the tests use; `scripts/test` installs it.
const REDIS_SERVER: &str = "/usr/bin/redis-server";
/// The port a system Redis listens on, which a test must never use.
const SYSTEM_PORT: u16 = 6379;
/// How many free ports `start` tries: another process may take the one it
/// picked between the probe and Redis binding it.
const BIND_ATTEMPTS: usize = 5;
/// How long Redis may take to answer its first `PING`, or to exit after a
/// `SHUTDOWN`.
const READY_DEADLINE: Duration = Duration::from_secs(10);

/// One RESP2 reply, as read by `cmd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    Nil,
    Array(Vec<Reply>),
}

impl Reply {
    /// The reply as text: a status or a bulk string.
    #[track_caller]
    pub fn text(&self) -> String {
        match self {
            Reply::Status(s) => s.clone(),
            Reply::Bulk(b) => String::from_utf8(b.clone()).expect("a UTF-8 bulk string"),
            other => panic!("expected text, got {other:?}"),
        }
    }

    #[track_caller]
    pub fn int(&self) -> i64 {
        match self {
            Reply::Int(n) => *n,
            other => panic!("expected an integer, got {other:?}"),
        }
    }

    #[track_caller]
    pub fn array(&self) -> &[Reply] {
        match self {
            Reply::Array(items) => items,
            other => panic!("expected an array, got {other:?}"),
        }
    }
}

/// A `redis-server` child process with its port and directory.
pub struct RedisServer {
    /// `None` while stopped.
    child: Option<Child>,
    pub port: u16,
    /// Where Redis writes `dump.rdb` on a `SHUTDOWN SAVE`, and its log.
    dir: PathBuf,
}

impl RedisServer {
    /// Starts a Redis on a free port and waits until it answers `PING`.
    pub fn start() -> RedisServer {
        for _ in 0..BIND_ATTEMPTS {
            let mut redis = RedisServer::unstarted();
            if redis.try_start() {
                return redis;
            }
            // Another process took the port first; the handle's drop removes
            // its directory.
        }
        panic!("redis-server did not start on any of {BIND_ATTEMPTS} free ports");
    }

    /// A Redis that is not running yet, with its port and directory chosen:
    /// for a node that must start before its Redis does. `start_again`
    /// starts it.
    pub fn unstarted() -> RedisServer {
        let port = free_port();
        let dir = temp_dir(port);
        RedisServer {
            child: None,
            port,
            dir,
        }
    }

    /// The URL halley's `--redis` takes.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts Redis again on the same port and directory, loading the
    /// `dump.rdb` that `stop_keep_data` saved, if any.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "redis is already running");
        assert!(
            self.try_start(),
            "redis-server did not start again on port {}",
            self.port
        );
    }

    /// Spawns Redis and waits for its `PING`; false if it exited first
    /// (the port was taken).
    fn try_start(&mut self) -> bool {
        assert_ne!(self.port, SYSTEM_PORT);
        let log = std::fs::File::create(self.dir.join("redis.log")).expect("a log file");
        let mut cmd = Command::new(REDIS_SERVER);
        // SAFETY: prctl is async-signal-safe and touches only the child. A test
        // process that dies without unwinding (a harness timeout, SIGKILL)
        // takes its Redis with it rather than leaving it on the shared machine.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--dir", self.dir.to_str().unwrap()])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn /usr/bin/redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                eprintln!(
                    "redis-server on port {} exited with {status}: {}",
                    self.port,
                    std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default()
                );
                return false;
            }
            if self.try_cmd(&["PING"]).ok() == Some(Reply::Status("PONG".into())) {
                return true;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not answer PING",
                self.port
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Saves the data set and stops: `start_again` comes back with it.
    pub fn stop_keep_data(&mut self) {
        self.shutdown("SAVE");
        assert!(
            self.dir.join("dump.rdb").exists(),
            "SHUTDOWN SAVE wrote dump.rdb"
        );
    }

    /// Stops without saving, and removes any earlier save: `start_again`
    /// comes back empty.
    pub fn stop_lose_data(&mut self) {
        self.shutdown("NOSAVE");
        let _ = std::fs::remove_file(self.dir.join("dump.rdb"));
    }

    fn shutdown(&mut self, mode: &str) {
        // A paused Redis would never read the command.
        self.resume();
        // Redis closes the connection instead of answering a SHUTDOWN that
        // succeeds, so the reply (or its absence) says nothing; the exit does.
        let _ = self.try_cmd(&["SHUTDOWN", mode]);
        let mut child = self.child.take().expect("redis is running");
        let deadline = Instant::now() + READY_DEADLINE;
        while child.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not exit on SHUTDOWN {mode}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Freezes Redis with SIGSTOP: its port still accepts connections (the
    /// kernel does that) but nothing is answered, as with a hung server.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Thaws a paused Redis with SIGCONT; harmless when it is not paused.
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, sig: i32) {
        let child = self.child.as_ref().expect("redis is running");
        // SAFETY: kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(child.id() as i32, sig) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// Sends one command on a new connection and reads its reply.
    #[track_caller]
    pub fn cmd(&self, args: &[&str]) -> Reply {
        self.try_cmd(args)
            .unwrap_or_else(|e| panic!("redis {args:?} on port {}: {e}", self.port))
    }

    fn try_cmd(&self, args: &[&str]) -> io::Result<Reply> {
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port))?;
        stream.set_read_timeout(Some(READ_TIMEOUT))?;
        stream.set_write_timeout(Some(READ_TIMEOUT))?;
        stream.write_all(&encode_command(args))?;
        read_reply(&mut BufReader::new(stream))
    }

    /// The keys matching `pattern`, sorted (`KEYS` is fine on a test's Redis).
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        let mut keys: Vec<String> = self
            .cmd(&["KEYS", pattern])
            .array()
            .iter()
            .map(Reply::text)
            .collect();
        keys.sort();
        keys
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A port of 127.0.0.1 that was free a moment ago (never 6379).
fn free_port() -> u16 {
    loop {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind port 0");
        let port = listener.local_addr().unwrap().port();
        if port != SYSTEM_PORT {
            return port;
        }
    }
}

/// A fresh directory for one Redis, named by the test process and the port.
fn temp_dir(port: u16) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("halley-redis-{}-{port}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a temp dir");
    dir
}

/// A command as a RESP array of bulk strings.
pub fn encode_command(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n{arg}\r\n", arg.len()).as_bytes());
    }
    out
}

/// Reads one RESP2 reply; an EOF before it is an error.
pub fn read_reply(r: &mut impl BufRead) -> io::Result<Reply> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    let line = line
        .strip_suffix("\r\n")
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("no CRLF: {line:?}")))?;
    let (kind, rest) = line.split_at(1);
    let number = || -> io::Result<i64> {
        rest.parse()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("bad length {line:?}")))
    };
    Ok(match kind {
        "+" => Reply::Status(rest.to_owned()),
        "-" => Reply::Error(rest.to_owned()),
        ":" => Reply::Int(number()?),
        "$" => match number()? {
            -1 => Reply::Nil,
            len => {
                let mut payload = vec![0; len as usize + 2];
                r.read_exact(&mut payload)?;
                payload.truncate(len as usize);
                Reply::Bulk(payload)
            }
        },
        "*" => match number()? {
            -1 => Reply::Nil,
            len => Reply::Array((0..len).map(|_| read_reply(r)).collect::<io::Result<_>>()?),
        },
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad reply {line:?}"),
            ))
        }
    })
}

// ---------------------------------------------------------------------------
// halley nodes on Redis.

/// The `--redis URL` arguments for these shards, in order.
pub fn redis_args(shards: &[RedisServer]) -> Vec<String> {
    shards
        .iter()
        .flat_map(|s| ["--redis".to_owned(), s.url()])
        .collect()
}

/// Starts `n` Redis servers, the shards of one cluster.
pub fn shards(n: usize) -> Vec<RedisServer> {
    (0..n).map(|_| RedisServer::start()).collect()
}

/// Starts a halley node on `shards` with `extra` flags, and waits until it is
/// connected to Redis, so that a publish on it is answered 201.
pub fn node(shards: &[RedisServer], extra: &[&str]) -> Proc {
    let node = node_unready(shards, extra);
    wait_connected(&node, true);
    node
}

/// Starts a halley node on `shards` without waiting for Redis.
pub fn node_unready(shards: &[RedisServer], extra: &[&str]) -> Proc {
    let mut args = redis_args(shards);
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Proc::start(&args)
}

/// `/stats`' `redis` object of a node.
pub fn redis_stats(node: &Proc) -> serde_json::Value {
    stats(node.addr)["redis"].clone()
}

/// Waits until the node's `/stats` says it is (or is not) connected to Redis.
pub fn wait_connected(node: &Proc, connected: bool) {
    wait_until(&format!("redis connected is {connected}"), || {
        redis_stats(node)["connected"].as_bool() == Some(connected)
    });
}

// ---------------------------------------------------------------------------
// Subscribers on nodes with short heartbeats.

/// The next SSE event that dispatches, within `READ_TIMEOUT`. With a short
/// `--heartbeat`, heartbeats keep every read alive, so `Sub::next_event`
/// alone would wait forever for a message that never comes.
#[track_caller]
pub fn next_event(sub: &mut Sub) -> Event {
    let deadline = Instant::now() + READ_TIMEOUT;
    loop {
        let block = sub.next_block();
        if block.dispatches() {
            return block;
        }
        assert!(
            Instant::now() < deadline,
            "only heartbeats for {READ_TIMEOUT:?}, no event"
        );
    }
}

/// The next non-empty NDJSON line, parsed, within `READ_TIMEOUT` (see
/// `next_event`).
#[track_caller]
pub fn next_json(sub: &mut Sub) -> serde_json::Value {
    let deadline = Instant::now() + READ_TIMEOUT;
    loop {
        let line = sub.next_line();
        if !line.is_empty() {
            return super::parse_json(&line);
        }
        assert!(
            Instant::now() < deadline,
            "only heartbeats for {READ_TIMEOUT:?}, no line"
        );
    }
}

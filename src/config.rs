//! Command-line configuration: every limit and timeout is a named field here,
//! with its default and the outcome it controls listed in `--help`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::redis::url::RedisUrl;
use crate::web::open_publish::{OpenPrefix, DEFAULT_OPEN_PREFIX};

#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    /// Open connections beyond this are answered 503 and closed.
    pub max_connections: usize,
    /// Connections from one client (an IPv4 address, an IPv6 /64) beyond
    /// this are answered 429 and closed; `None`: no bound.
    pub max_connections_per_ip: Option<u32>,
    /// Channels in the hub beyond which a publish to a new one gets 503.
    pub max_channels: usize,
    /// Bytes of buffered messages beyond which a publish gets 503.
    pub max_history_bytes: usize,
    /// Request bodies beyond this are answered 413.
    pub max_body: usize,
    /// From a request's first byte to the end of its head (else closed), and
    /// again for its body.
    pub header_timeout: Duration,
    /// How long a keep-alive connection may sit between requests.
    pub idle_timeout: Duration,
    /// How long a connection with a response queued may go without the
    /// client taking any of it; then it is closed (counted in /stats).
    pub send_timeout: Duration,
    /// Messages kept per channel.
    pub buffer: usize,
    pub message_ttl: Duration,
    /// A subscriber with more output queued than this is closed as too slow.
    pub max_queued_bytes: usize,
    pub heartbeat: Duration,
    pub longpoll_timeout: Duration,
    /// Most messages in one long-poll answer; `next` continues from there.
    pub longpoll_batch: usize,
    /// When set, publishing and deleting need `Authorization: Bearer TOKEN`.
    pub publish_token: Option<String>,
    /// `--token-secret` or `--token-secret-file`: subscribing needs an HS256
    /// token signed with it whose claims cover the channel, and such a token
    /// may publish where its claims say (`src/token`).
    pub token_secret: Option<crate::token::Verifier>,
    pub cors_origin: String,
    /// The reconnect delay SSE clients are told in the `retry:` line.
    pub sse_retry: Duration,
    /// Serve files from this directory instead of the embedded demo page.
    pub static_dir: Option<PathBuf>,
    /// Channels under these prefixes take publishes without the token, with a
    /// small body limit and a per-address rate limit.
    pub open_publish: Vec<OpenPrefix>,
    /// With one or more Redis URLs, Redis sequences and keeps every
    /// channel's history and the nodes on it form one cluster; several are
    /// shards, a channel living in one of them. Empty: all in memory.
    pub redis: Vec<RedisUrl>,
    /// A Redis command unanswered this long fails: a publish gets 503, and
    /// the connection to that Redis is dropped and made again.
    pub redis_timeout: Duration,
    /// How long Redis keeps a channel's epoch and sequence number after its
    /// last publish or read; far longer than its messages, so an old cursor
    /// is told `expired` rather than `restarted`.
    pub redis_meta_ttl: Duration,
    /// How long a publish's `Idempotency-Key` is remembered: a retry with
    /// it within this time publishes nothing and gets the first answer.
    pub idempotency_ttl: Duration,
    /// How many worker processes serve `listen` together (`--workers`), each
    /// its own loop on its own `SO_REUSEPORT` socket; above 1 needs `redis`.
    pub workers: usize,
    /// Which of them this process is, 1 to `workers`: not a flag, but told
    /// to each worker by its supervisor (`supervisor::WORKER_ENV`).
    pub worker: usize,
    /// How many times the supervisor has started this worker again after it
    /// died (`supervisor::RESTARTS_ENV`); 0 for its first start.
    pub worker_restarts: u64,
    /// How long a SIGTERM's drain lasts: the window over which clients are
    /// told to reconnect, spread at random, and the most the server waits
    /// for its connections before it exits.
    pub drain: Duration,
    /// The largest WebSocket message a client may send (all its fragments);
    /// past it the connection is closed with 1009.
    pub ws_max_message: usize,
    /// Serve `GET /ws-echo`, a WebSocket that echoes every message, for
    /// conformance testing (scripts/autobahn). Off unless asked for.
    pub ws_echo: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: "127.0.0.1:8080".parse().expect("valid address"),
            max_connections: default_max_connections(),
            max_connections_per_ip: None,
            max_channels: DEFAULT_MAX_CHANNELS,
            max_history_bytes: DEFAULT_MAX_HISTORY_BYTES,
            max_body: 1024 * 1024,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(30),
            buffer: 100,
            message_ttl: Duration::from_secs(3600),
            max_queued_bytes: 1024 * 1024,
            heartbeat: Duration::from_secs(15),
            longpoll_timeout: Duration::from_secs(30),
            longpoll_batch: 100,
            publish_token: None,
            token_secret: None,
            cors_origin: "*".into(),
            sse_retry: Duration::from_secs(2),
            static_dir: None,
            open_publish: vec![OpenPrefix::parse(DEFAULT_OPEN_PREFIX).expect("valid prefix")],
            redis: Vec::new(),
            redis_timeout: Duration::from_secs(2),
            redis_meta_ttl: Duration::from_secs(30 * 24 * 3600),
            idempotency_ttl: Duration::from_secs(300),
            workers: 1,
            worker: 1,
            worker_restarts: 0,
            drain: Duration::from_secs(10),
            ws_max_message: 64 * 1024,
            ws_echo: false,
        }
    }
}

/// A million channels: an empty one costs a few hundred bytes (its name, its
/// entries, its tombstone when freed), so well under a GiB at the limit, and
/// far more than one node's subscribers spread over in practice.
pub const DEFAULT_MAX_CHANNELS: usize = 1_000_000;
/// 1 GiB of messages. The budget counts each message once; the encodings
/// its subscribers' transports make can add up to about as much again per
/// transport, so a node at the limit holds a few GiB at worst: safe on a
/// machine of 8 GiB or more, and set lower on smaller ones.
pub const DEFAULT_MAX_HISTORY_BYTES: usize = 1 << 30;

/// Descriptors kept free for the listener, the poll instance, the signal
/// pipe, logging and files, so that hitting `--max-connections` is a 503
/// rather than an accept failure.
const RESERVED_FDS: usize = 32;

/// Just under the process's open-file limit.
pub fn default_max_connections() -> usize {
    (crate::fd_limit::soft() as usize)
        .saturating_sub(RESERVED_FDS)
        .max(1)
}

pub const HELP: &str = "\
halley: a COMET server (SSE, long-poll, HTTP streaming) on one mio event loop

USAGE: halley [FLAGS]

  --listen ADDR            address to listen on                   [127.0.0.1:8080]
  --max-connections N      open connections before answering 503  [fd limit - 32]
  --max-connections-per-ip N
                           connections from one address (IPv6:
                           one /64) before answering 429          [off]
  --max-channels N         channels before a publish that would
                           create one is answered 503             [1000000]
  --max-history-bytes BYTES
                           buffered messages' bytes before a
                           publish is answered 503                [1073741824]
  --max-body BYTES         largest request body, else 413         [1048576]
  --header-timeout SECS    first byte to end of head, else closed [10]
  --idle-timeout SECS      keep-alive connection idle time        [60]
  --send-timeout SECS      output queued with no progress this
                           long (a response, a stream) is closed  [30]
  --buffer N               messages kept per channel              [100]
  --message-ttl SECS       how long a message is kept             [3600]
  --max-queued-bytes BYTES queued output before a slow subscriber
                           is closed                              [1048576]
  --heartbeat SECS         SSE comment / stream empty-line period [15]
  --longpoll-timeout SECS  how long a long-poll is held, then 204 [30]
  --longpoll-batch N       most messages in one long-poll answer  [100]
  --publish-token TOKEN    require 'Authorization: Bearer TOKEN'
                           to publish and delete                  [none]
  --token-secret SECRET    HS256 secret of signed tokens: then every
                           subscribe needs a token whose claims
                           cover the channel (401 without, 403 if
                           not covered), and a token may publish
                           where its claims say (README, Security)[none]
  --token-secret-file PATH the same secret, read once from PATH at
                           start (a trailing newline is dropped),
                           so it stays out of `ps`                [none]
  --cors-origin ORIGIN     Access-Control-Allow-Origin            [*]
  --sse-retry MILLIS       reconnect delay told to SSE clients    [2000]
  --static DIR             serve DIR's files instead of the demo
                           page (/halley.js stays available)      [none]
  --open-publish PREFIX    channels under PREFIX take publishes
                           without the token: 4 KiB bodies, a burst
                           of 10 then 1/s per address, else 429.
                           Repeatable; 'none' opens nothing        [demo/]
  --redis URL              keep history in Redis and run as one of
                           many nodes: redis://[:PASSWORD@]HOST[:PORT][/DB].
                           Repeatable: channels are sharded over the
                           URLs, which every node lists alike     [none]
  --redis-timeout SECS     a Redis command unanswered this long
                           fails (publish: 503); then reconnect   [2]
  --redis-meta-ttl SECS    how long Redis keeps a channel's epoch
                           and sequence number after last use     [2592000]
  --idempotency-ttl SECS   how long a publish's Idempotency-Key is
                           remembered: a retry with it gets the
                           first 201 and publishes nothing        [300]
  --workers N|auto         serve --listen from N processes, one loop
                           each on its own SO_REUSEPORT socket,
                           restarted if they die; auto: one per
                           core. Above 1 needs --redis. Limits
                           such as --max-connections are per worker [1]
  --drain-secs SECS        on SIGTERM, clients are told to reconnect
                           at random within this window; exit when
                           all are gone or it ends (up to 3600)   [10]
  --ws-max-message BYTES   largest WebSocket message a client may
                           send, else closed with 1009            [65536]
  --ws-echo                serve GET /ws-echo, a WebSocket that
                           echoes every message: for conformance
                           testing (scripts/autobahn) only        [off]
  --help                   this text

Seconds are decimal, from 0.001 to 86400 (a day; --message-ttl up to a year,
31536000; --redis-meta-ttl from --message-ttl to ten years; --drain-secs up
to 3600); --sse-retry takes 1 to 86400000 ms; counts are 1 to 1000000
(--max-connections, --max-connections-per-ip and --max-channels up to
10000000); bytes 1 to 1073741824 (1 GiB; --max-history-bytes up to 1 TiB); a token or
origin is 1 to 1024 visible ASCII characters without spaces. Anything else is
refused at start, naming the flag, with exit status 2.

Logging: RUST_LOG=info (default), debug or warn; RUST_LOG=halley=trace narrates
the event loop step by step (docs/walkthrough.md).
";

/// What the command line asked for.
#[derive(Debug)]
pub enum Command {
    Run(Box<Config>),
    Help,
}

// The accepted range of every flag. A value outside its range is refused at start, with the
// flag and the range named, rather than left to overflow an `Instant` on the first request or
// to spin the loop on a zero period.

/// The shortest timeout, heartbeat or reconnect delay: below a millisecond a period is a spin.
const MIN_PERIOD: Duration = Duration::from_millis(1);
/// The longest drain: an hour. Clients are told to come back within it, and a
/// deploy that waits longer than that for one process has stalled.
const MAX_DRAIN: Duration = Duration::from_secs(3600);
/// The longest timeout, heartbeat or reconnect delay: a day.
const MAX_PERIOD: Duration = Duration::from_secs(24 * 3600);
/// The longest a message may be kept: a year.
const MAX_MESSAGE_TTL: Duration = Duration::from_secs(365 * 24 * 3600);
/// Far above any descriptor limit a kernel hands out.
const MAX_CONNECTIONS: usize = 10_000_000;
/// The largest `--max-body` and `--max-queued-bytes`: each is memory held per connection.
const MAX_BYTES: usize = 1 << 30;
/// The longest `--redis-meta-ttl`: ten years.
const MAX_META_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// The largest `--max-history-bytes`: a TiB.
const MAX_HISTORY_BYTES: usize = 1 << 40;
/// The most `--redis` shards.
pub const MAX_SHARDS: usize = 64;
/// The most `--workers`: far more cores than a machine has, few enough
/// that a typo does not fork thousands of processes.
pub const MAX_WORKERS: usize = 1024;
/// The longest channel history and long-poll answer.
const MAX_MESSAGES: usize = 1_000_000;
/// The shortest `--token-secret`: RFC 7518 (3.2) asks for an HS256 key at
/// least as long as the hash, 32 bytes; a shorter one can be guessed offline
/// from any one token.
pub const MIN_SECRET_BYTES: usize = 32;
/// The longest `--token-secret`: HMAC hashes a longer key down to 32 bytes anyway.
const MAX_SECRET_BYTES: usize = 4096;
/// The longest `--publish-token` and `--cors-origin`: each goes into a header line.
const MAX_HEADER_VALUE: usize = 1024;

pub fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut config = Config::default();
    let mut open_given = false;
    // A bound on the node's own history, which with --redis it has none of.
    let mut history_flag = None;
    let mut secret_given = None;
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        if flag == "--help" || flag == "-h" {
            return Ok(Command::Help);
        }
        // The one flag without a value.
        if flag == "--ws-echo" {
            config.ws_echo = true;
            continue;
        }
        // Read before the flag is known, so that an unknown flag is named as such.
        let value = args.next();
        let v = Flag {
            name: &flag,
            value: value.as_deref(),
        };
        match flag.as_str() {
            "--listen" => {
                config.listen = v
                    .text()?
                    .parse()
                    .map_err(|_| v.bad("an address like 127.0.0.1:8080"))?
            }
            "--max-connections" => config.max_connections = v.count(1, MAX_CONNECTIONS)?,
            "--max-connections-per-ip" => {
                config.max_connections_per_ip = Some(v.count(1, MAX_CONNECTIONS)? as u32)
            }
            "--max-channels" => {
                config.max_channels = v.count(1, MAX_CONNECTIONS)?;
                history_flag = Some("--max-channels");
            }
            "--max-history-bytes" => {
                config.max_history_bytes = v.bytes(1, MAX_HISTORY_BYTES)?;
                history_flag = Some("--max-history-bytes");
            }
            "--max-body" => config.max_body = v.bytes(1, MAX_BYTES)?,
            "--header-timeout" => config.header_timeout = v.secs(MIN_PERIOD, MAX_PERIOD)?,
            "--idle-timeout" => config.idle_timeout = v.secs(MIN_PERIOD, MAX_PERIOD)?,
            "--send-timeout" => config.send_timeout = v.secs(MIN_PERIOD, MAX_PERIOD)?,
            "--buffer" => config.buffer = v.count(1, MAX_MESSAGES)?,
            "--message-ttl" => config.message_ttl = v.secs(MIN_PERIOD, MAX_MESSAGE_TTL)?,
            "--max-queued-bytes" => config.max_queued_bytes = v.bytes(1, MAX_BYTES)?,
            "--ws-max-message" => config.ws_max_message = v.bytes(1, MAX_BYTES)?,
            "--heartbeat" => config.heartbeat = v.secs(MIN_PERIOD, MAX_PERIOD)?,
            "--longpoll-timeout" => config.longpoll_timeout = v.secs(MIN_PERIOD, MAX_PERIOD)?,
            "--longpoll-batch" => config.longpoll_batch = v.count(1, MAX_MESSAGES)?,
            "--publish-token" => config.publish_token = Some(v.header_value()?),
            "--token-secret" | "--token-secret-file" => {
                if let Some(first) = secret_given.replace(flag.clone()) {
                    return Err(format!(
                        "{flag}: the secret is given already by {first}; give one of them"
                    ));
                }
                let secret = match flag.as_str() {
                    "--token-secret" => v.text()?.as_bytes().to_vec(),
                    _ => read_secret(v.text()?).map_err(|e| v.bad(e))?,
                };
                config.token_secret = Some(token_secret(&secret).map_err(|e| v.bad(e))?);
            }
            "--cors-origin" => config.cors_origin = v.header_value()?,
            "--sse-retry" => config.sse_retry = v.millis(MIN_PERIOD, MAX_PERIOD)?,
            "--static" => match v.text()? {
                "" => return Err(v.bad("a directory")),
                dir => config.static_dir = Some(PathBuf::from(dir)),
            },
            "--open-publish" => {
                // The first one given replaces the default prefix.
                if !open_given {
                    config.open_publish.clear();
                    open_given = true;
                }
                match v.text()? {
                    "none" => {}
                    prefix => config.open_publish.push(OpenPrefix::parse(prefix)?),
                }
            }
            "--redis" => {
                if config.redis.len() == MAX_SHARDS {
                    return Err(format!("--redis: at most {MAX_SHARDS} shards"));
                }
                let url =
                    crate::redis::url::parse(v.text()?).map_err(|e| format!("--redis: {e}"))?;
                config.redis.push(url);
            }
            "--redis-timeout" => config.redis_timeout = v.secs(MIN_PERIOD, MAX_PERIOD)?,
            "--redis-meta-ttl" => config.redis_meta_ttl = v.secs(MIN_PERIOD, MAX_META_TTL)?,
            "--idempotency-ttl" => config.idempotency_ttl = v.secs(MIN_PERIOD, MAX_PERIOD)?,
            "--drain-secs" => config.drain = v.secs(MIN_PERIOD, MAX_DRAIN)?,
            "--workers" => config.workers = workers(v.text()?, cores()).map_err(|e| v.bad(e))?,
            _ => return Err(format!("unknown flag {flag} (see --help)")),
        }
    }
    if !config.redis.is_empty() && config.redis_meta_ttl < config.message_ttl {
        return Err(format!(
            "--redis-meta-ttl ({} s) must be at least --message-ttl ({} s): a channel's position must outlive its messages",
            config.redis_meta_ttl.as_secs_f64(),
            config.message_ttl.as_secs_f64()
        ));
    }
    if let (Some(flag), false) = (history_flag, config.redis.is_empty()) {
        return Err(format!(
            "{flag} bounds the history a node keeps in memory, and with --redis it keeps none: \
             channels and history live in Redis. Bound them there with `maxmemory` and \
             `maxmemory-policy noeviction` (a publish past it is answered 503)"
        ));
    }
    if config.workers > 1 && config.redis.is_empty() {
        return Err(format!(
            "--workers {n} needs --redis: the workers share channels and history through Redis. \
             Start one with `redis-server --port 6380 --save '' --appendonly no` and add \
             `--redis redis://127.0.0.1:6380`, or run one worker",
            n = config.workers
        ));
    }
    Ok(Command::Run(Box::new(config)))
}

/// A `--token-secret-file`'s contents, read once at start; the one trailing
/// newline an editor or `echo` leaves is not part of the secret.
fn read_secret(path: &str) -> Result<Vec<u8>, String> {
    let mut secret = std::fs::read(path).map_err(|e| format!("a readable file ({e})"))?;
    if secret.ends_with(b"\n") {
        secret.pop();
        if secret.ends_with(b"\r") {
            secret.pop();
        }
    }
    Ok(secret)
}

/// A secret of an accepted length, as the verifier of signed tokens.
fn token_secret(secret: &[u8]) -> Result<crate::token::Verifier, String> {
    if !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&secret.len()) {
        return Err(format!(
            "a secret of {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes (openssl rand -hex 32)"
        ));
    }
    Ok(crate::token::Verifier::new(secret))
}

/// What `--workers` names: a count, or `auto` for one per core. A refusal is
/// what the flag expected.
fn workers(text: &str, cores: usize) -> Result<usize, String> {
    match text {
        "auto" => Ok(cores.clamp(1, MAX_WORKERS)),
        n => match n.parse::<usize>() {
            Ok(n) if (1..=MAX_WORKERS).contains(&n) => Ok(n),
            _ => Err(format!("a number from 1 to {MAX_WORKERS}, or auto")),
        },
    }
}

/// The cores this process may run on (its affinity mask, so `taskset` counts).
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// One flag and the value given to it, read into the type and range the flag accepts; every
/// refusal names the flag, the range and the value.
struct Flag<'a> {
    name: &'a str,
    /// `None` when the flag was the last argument.
    value: Option<&'a str>,
}

impl Flag<'_> {
    fn text(&self) -> Result<&str, String> {
        self.value
            .ok_or_else(|| format!("{} needs a value (see --help)", self.name))
    }

    fn bad(&self, what: impl std::fmt::Display) -> String {
        let value = self.value.unwrap_or_default();
        format!("{}: expected {what}, got {value:?}", self.name)
    }

    /// Decimal seconds (`0.5`, `30`), checked before conversion: `Duration::from_secs_f64`
    /// panics on what does not fit.
    fn secs(&self, min: Duration, max: Duration) -> Result<Duration, String> {
        let range = format!(
            "seconds from {} to {}",
            min.as_secs_f64(),
            max.as_secs_f64()
        );
        match self.text()?.parse::<f64>() {
            Ok(s) if (min.as_secs_f64()..=max.as_secs_f64()).contains(&s) => {
                Ok(Duration::from_secs_f64(s))
            }
            _ => Err(self.bad(range)),
        }
    }

    /// Whole milliseconds.
    fn millis(&self, min: Duration, max: Duration) -> Result<Duration, String> {
        let (lo, hi) = (min.as_millis() as u64, max.as_millis() as u64);
        match self.text()?.parse::<u64>() {
            Ok(ms) if (lo..=hi).contains(&ms) => Ok(Duration::from_millis(ms)),
            _ => Err(self.bad(format!("milliseconds from {lo} to {hi}"))),
        }
    }

    fn count(&self, min: usize, max: usize) -> Result<usize, String> {
        self.whole(min, max, "a number")
    }

    fn bytes(&self, min: usize, max: usize) -> Result<usize, String> {
        self.whole(min, max, "a number of bytes")
    }

    fn whole(&self, min: usize, max: usize, what: &str) -> Result<usize, String> {
        match self.text()?.parse::<usize>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(self.bad(format!("{what} from {min} to {max}"))),
        }
    }

    /// Text that goes into a header line as it is: visible ASCII, no spaces, so that it can
    /// neither break the line nor differ from what a client sends after trimming.
    fn header_value(&self) -> Result<String, String> {
        let v = self.text()?;
        if v.is_empty() || v.len() > MAX_HEADER_VALUE || !v.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(self.bad(format!(
                "1 to {MAX_HEADER_VALUE} visible ASCII characters without spaces"
            )));
        }
        Ok(v.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Config, String> {
        match parse_args(args.iter().map(|s| s.to_string()))? {
            Command::Run(config) => Ok(*config),
            Command::Help => Err("help".into()),
        }
    }

    #[test]
    fn reads_the_token_secret_from_the_flag_or_a_file() {
        let secret = "0123456789abcdef0123456789abcdef";
        let token = crate::token::sign(secret.as_bytes(), "{}");
        let verifies = |c: &Config| c.token_secret.as_ref().unwrap().verify(&token, 0).is_ok();
        assert!(run(&[]).unwrap().token_secret.is_none());
        assert!(verifies(&run(&["--token-secret", secret]).unwrap()));
        let dir = std::env::temp_dir().join(format!("halley-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // (file contents, verifies the token signed with `secret`)
        let cases = [
            (format!("{secret}\n"), true),
            (format!("{secret}\r\n"), true),
            (secret.to_string(), true),
            (format!("{secret}\n\n"), false),
            (format!(" {secret}"), false),
        ];
        for (i, (contents, want)) in cases.iter().enumerate() {
            let path = dir.join(format!("s{i}"));
            std::fs::write(&path, contents).unwrap();
            let config = run(&["--token-secret-file", path.to_str().unwrap()]).unwrap();
            assert_eq!(verifies(&config), *want, "{contents:?}");
        }
        let path = dir.join("s0");
        let path = path.to_str().unwrap();
        let short = "x".repeat(MIN_SECRET_BYTES - 1);
        let cases: [(&[&str], &str); 5] = [
            (&["--token-secret", &short], "a secret of 32 to 4096 bytes"),
            (
                &["--token-secret-file", "/nonexistent/halley"],
                "a readable file",
            ),
            (
                &["--token-secret", secret, "--token-secret-file", path],
                "given already by --token-secret",
            ),
            (
                &["--token-secret-file", path, "--token-secret-file", path],
                "given already by --token-secret-file",
            ),
            (&["--token-secret"], "needs a value"),
        ];
        for (args, want) in cases {
            let err = run(args).unwrap_err();
            assert!(err.contains(want), "{args:?}: {err}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn parses_flags() {
        let c = run(&[
            "--listen",
            "127.0.0.1:0",
            "--buffer",
            "5",
            "--heartbeat",
            "0.5",
            "--publish-token",
            "s3",
        ])
        .unwrap();
        assert_eq!(c.listen.port(), 0);
        assert_eq!(c.buffer, 5);
        assert_eq!(c.heartbeat, Duration::from_millis(500));
        assert_eq!(c.publish_token.as_deref(), Some("s3"));
        assert_eq!(run(&[]).unwrap().longpoll_timeout, Duration::from_secs(30));
        assert_eq!(run(&[]).unwrap().idempotency_ttl, Duration::from_secs(300));
        let c = run(&["--idempotency-ttl", "2.5"]).unwrap();
        assert_eq!(c.idempotency_ttl, Duration::from_millis(2500));
        assert_eq!(run(&[]).unwrap().drain, Duration::from_secs(10));
        assert!(!run(&[]).unwrap().ws_echo);
        let c = run(&["--ws-echo", "--ws-max-message", "1000", "--buffer", "3"]).unwrap();
        assert!(c.ws_echo);
        assert_eq!((c.ws_max_message, c.buffer), (1000, 3));
        let drain = run(&["--drain-secs", "2.5"]).unwrap().drain;
        assert_eq!(drain, Duration::from_millis(2500));
    }

    #[test]
    fn open_publish_replaces_the_default() {
        let prefixes = |args: &[&str]| -> Vec<String> {
            let config = run(args).unwrap();
            config
                .open_publish
                .iter()
                .map(|p| p.as_str().to_owned())
                .collect()
        };
        assert_eq!(prefixes(&[]), ["demo/"]);
        assert_eq!(
            prefixes(&["--open-publish", "a", "--open-publish", "b/"]),
            ["a/", "b/"]
        );
        assert!(prefixes(&["--open-publish", "none"]).is_empty());
        assert!(run(&["--open-publish", "bad prefix"]).is_err());
    }

    #[test]
    fn rejects_bad_flags() {
        for args in [
            &["--buffer", "0"][..],
            &["--listen", "nowhere"],
            &["--heartbeat"],
            &["--frobnicate", "1"],
            &["--heartbeat", "-1"],
        ] {
            assert!(run(args).is_err(), "{args:?}");
        }
        assert!(matches!(
            parse_args(["--help".to_string()]),
            Ok(Command::Help)
        ));
    }

    #[test]
    fn refuses_values_outside_each_flags_range() {
        let long_token = "x".repeat(MAX_HEADER_VALUE + 1);
        // Flag, value, and the range the refusal must name.
        let cases: &[(&str, &str, &str)] = &[
            ("--idle-timeout", "1e19", "seconds from 0.001 to 86400"),
            ("--heartbeat", "1e20", "seconds from 0.001 to 86400"),
            ("--drain-secs", "3601", "seconds from 0.001 to 3600"),
            ("--drain-secs", "0", "seconds from 0.001 to 3600"),
            ("--heartbeat", "1e-10", "seconds from 0.001 to 86400"),
            ("--heartbeat", "0", "seconds from 0.001 to 86400"),
            ("--heartbeat", "-1", "seconds from 0.001 to 86400"),
            ("--heartbeat", "NaN", "seconds from 0.001 to 86400"),
            ("--heartbeat", "inf", "seconds from 0.001 to 86400"),
            ("--heartbeat", "soon", "seconds from 0.001 to 86400"),
            ("--header-timeout", "86400.5", "seconds from 0.001 to 86400"),
            ("--idempotency-ttl", "0", "seconds from 0.001 to 86400"),
            ("--idempotency-ttl", "86401", "seconds from 0.001 to 86400"),
            (
                "--longpoll-timeout",
                "0.0001",
                "seconds from 0.001 to 86400",
            ),
            (
                "--message-ttl",
                "31536001",
                "seconds from 0.001 to 31536000",
            ),
            ("--max-connections", "0", "a number from 1 to 10000000"),
            (
                "--max-connections",
                "10000001",
                "a number from 1 to 10000000",
            ),
            ("--max-body", "0", "a number of bytes from 1 to 1073741824"),
            ("--max-body", "-5", "a number of bytes from 1 to 1073741824"),
            (
                "--max-body",
                "1e6",
                "a number of bytes from 1 to 1073741824",
            ),
            (
                "--max-queued-bytes",
                "1073741825",
                "a number of bytes from 1 to",
            ),
            ("--buffer", "0", "a number from 1 to 1000000"),
            ("--buffer", "1000001", "a number from 1 to 1000000"),
            ("--longpoll-batch", "0", "a number from 1 to 1000000"),
            ("--sse-retry", "0", "milliseconds from 1 to 86400000"),
            ("--sse-retry", "1.5", "milliseconds from 1 to 86400000"),
            ("--sse-retry", "86400001", "milliseconds from 1 to 86400000"),
            ("--publish-token", "", "1 to 1024 visible ASCII characters"),
            ("--publish-token", "two words", "1 to 1024 visible ASCII"),
            (
                "--publish-token",
                "t\r\nX-Evil: 1",
                "1 to 1024 visible ASCII",
            ),
            ("--publish-token", "tökén", "1 to 1024 visible ASCII"),
            ("--publish-token", &long_token, "1 to 1024 visible ASCII"),
            ("--cors-origin", "", "1 to 1024 visible ASCII"),
            (
                "--cors-origin",
                "a\r\nSet-Cookie: x",
                "1 to 1024 visible ASCII",
            ),
            ("--listen", "nowhere", "an address like 127.0.0.1:8080"),
            ("--static", "", "a directory"),
            (
                "--open-publish",
                "bad prefix",
                "a prefix is 1 to 127 characters",
            ),
        ];
        for (flag, value, range) in cases {
            let err = run(&[flag, value]).expect_err(&format!("{flag} {value:?} accepted"));
            assert!(err.starts_with(flag), "{flag} {value:?}: {err}");
            assert!(err.contains(range), "{flag} {value:?}: {err}");
            assert!(
                err.contains(&format!("{value:?}")),
                "{flag} {value:?}: {err}"
            );
        }
    }

    #[test]
    fn parses_the_memory_and_per_client_limits() {
        let d = run(&[]).unwrap();
        assert_eq!(
            (
                d.max_channels,
                d.max_history_bytes,
                d.max_connections_per_ip
            ),
            (1_000_000, 1 << 30, None)
        );
        let c = run(&[
            "--max-channels",
            "10",
            "--max-history-bytes",
            "1099511627776",
            "--max-connections-per-ip",
            "3",
        ])
        .unwrap();
        assert_eq!(
            (
                c.max_channels,
                c.max_history_bytes,
                c.max_connections_per_ip
            ),
            (10, 1 << 40, Some(3))
        );
        for (flag, value, range) in [
            ("--max-channels", "0", "a number from 1 to 10000000"),
            (
                "--max-connections-per-ip",
                "0",
                "a number from 1 to 10000000",
            ),
            (
                "--max-history-bytes",
                "1099511627777",
                "bytes from 1 to 1099511627776",
            ),
        ] {
            let err = run(&[flag, value]).unwrap_err();
            assert!(err.starts_with(flag) && err.contains(range), "{err}");
        }
        // With Redis the node keeps no history to bound: said at start.
        for flag in ["--max-channels", "--max-history-bytes"] {
            let err = run(&["--redis", "redis://127.0.0.1:6379", flag, "5"]).unwrap_err();
            assert!(err.starts_with(flag) && err.contains("maxmemory"), "{err}");
        }
        let c = run(&[
            "--redis",
            "redis://127.0.0.1:6379",
            "--max-connections-per-ip",
            "5",
        ]);
        assert_eq!(c.unwrap().max_connections_per_ip, Some(5));
    }

    #[test]
    fn accepts_each_end_of_each_range() {
        let longest_token = "~".repeat(MAX_HEADER_VALUE);
        let cases: &[(&str, &str)] = &[
            ("--header-timeout", "0.001"),
            ("--idle-timeout", "86400"),
            ("--heartbeat", "0.001"),
            ("--heartbeat", "86400"),
            ("--longpoll-timeout", "1e3"),
            ("--message-ttl", "31536000"),
            ("--max-connections", "1"),
            ("--max-connections", "10000000"),
            ("--max-body", "1"),
            ("--max-body", "1073741824"),
            ("--max-queued-bytes", "1073741824"),
            ("--buffer", "1000000"),
            ("--longpoll-batch", "1"),
            ("--sse-retry", "1"),
            ("--sse-retry", "86400000"),
            ("--publish-token", "!"),
            ("--publish-token", &longest_token),
            ("--cors-origin", "https://a.example:8443"),
            ("--static", "."),
            ("--idempotency-ttl", "0.001"),
            ("--idempotency-ttl", "86400"),
        ];
        for (flag, value) in cases {
            if let Err(e) = run(&[flag, value]) {
                panic!("{flag} {value:?} refused: {e}");
            }
        }
        let c = run(&["--heartbeat", "86400", "--message-ttl", "31536000"]).unwrap();
        assert_eq!(c.heartbeat, MAX_PERIOD);
        assert_eq!(c.message_ttl, MAX_MESSAGE_TTL);
    }

    #[test]
    fn names_unknown_flags_and_missing_values() {
        let cases: &[(&[&str], &str)] = &[
            (&["--frobnicate", "1"], "unknown flag --frobnicate"),
            // Not "needs a value": the flag itself is what is wrong.
            (&["--frobnicate"], "unknown flag --frobnicate"),
            (&["--heartbeat"], "--heartbeat needs a value"),
            (&["--publish-token"], "--publish-token needs a value"),
            (&["--listen"], "--listen needs a value"),
        ];
        for (args, want) in cases {
            let err = run(args).expect_err(&format!("{args:?} accepted"));
            assert!(err.contains(want), "{args:?}: {err}");
        }
    }

    #[test]
    fn help_lists_every_flag() {
        for flag in [
            "--listen",
            "--max-connections",
            "--max-body",
            "--header-timeout",
            "--idle-timeout",
            "--send-timeout",
            "--buffer",
            "--message-ttl",
            "--max-queued-bytes",
            "--heartbeat",
            "--longpoll-timeout",
            "--longpoll-batch",
            "--publish-token",
            "--cors-origin",
            "--sse-retry",
            "--static",
            "--open-publish",
            "--workers",
        ] {
            assert!(HELP.contains(flag), "{flag}");
        }
    }

    #[test]
    fn workers_is_a_count_or_one_per_core() {
        // Text, cores available, and the count (or the refusal) it means.
        let cases: &[(&str, usize, Result<usize, &str>)] = &[
            ("1", 8, Ok(1)),
            ("6", 2, Ok(6)),
            ("1024", 1, Ok(MAX_WORKERS)),
            ("auto", 2, Ok(2)),
            ("auto", 64, Ok(64)),
            ("auto", 0, Ok(1)),
            ("auto", 5000, Ok(MAX_WORKERS)),
            ("0", 2, Err("a number from 1 to 1024, or auto")),
            ("1025", 2, Err("a number from 1 to 1024, or auto")),
            ("-1", 2, Err("a number from 1 to 1024, or auto")),
            ("Auto", 2, Err("a number from 1 to 1024, or auto")),
            ("", 2, Err("a number from 1 to 1024, or auto")),
        ];
        for &(text, cores, ref want) in cases {
            let got = workers(text, cores);
            assert_eq!(
                got.as_ref().map_err(|e| e.as_str()),
                want.as_ref().map_err(|e| *e),
                "{text:?} on {cores} cores"
            );
        }
    }

    #[test]
    fn several_workers_need_redis_and_say_how_to_start_it() {
        let err = run(&["--workers", "2"]).expect_err("two workers without Redis");
        assert!(err.starts_with("--workers 2 needs --redis"), "{err}");
        assert!(err.contains("redis-server --port"), "{err}");
        assert!(err.contains("--redis redis://127.0.0.1:"), "{err}");
        let c = run(&["--workers", "3", "--redis", "redis://127.0.0.1:6380"]).unwrap();
        assert_eq!((c.workers, c.worker), (3, 1));
        let c = run(&["--workers", "1"]).unwrap();
        assert_eq!(c.workers, 1);
        assert_eq!(run(&[]).unwrap().workers, 1);
        let err = run(&["--workers", "many"]).unwrap_err();
        assert!(
            err.starts_with("--workers: expected a number from 1 to 1024, or auto"),
            "{err}"
        );
    }
}

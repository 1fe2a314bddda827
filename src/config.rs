//! Command-line configuration: every limit and timeout is a named field here,
//! with its default and the outcome it controls listed in `--help`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::web::open_publish::{OpenPrefix, DEFAULT_OPEN_PREFIX};

#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    /// Open connections beyond this are answered 503 and closed.
    pub max_connections: usize,
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
    pub cors_origin: String,
    /// The reconnect delay SSE clients are told in the `retry:` line.
    pub sse_retry: Duration,
    /// Serve files from this directory instead of the embedded demo page.
    pub static_dir: Option<PathBuf>,
    /// Channels under these prefixes take publishes without the token, with a
    /// small body limit and a per-address rate limit.
    pub open_publish: Vec<OpenPrefix>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: "127.0.0.1:8080".parse().expect("valid address"),
            max_connections: default_max_connections(),
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
            cors_origin: "*".into(),
            sse_retry: Duration::from_secs(2),
            static_dir: None,
            open_publish: vec![OpenPrefix::parse(DEFAULT_OPEN_PREFIX).expect("valid prefix")],
        }
    }
}

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
  --max-body BYTES         largest request body, else 413         [1048576]
  --header-timeout SECS    first byte to end of head, else closed [10]
  --idle-timeout SECS      keep-alive connection idle time        [60]
  --send-timeout SECS      a queued response taking no progress
                           this long is closed                    [30]
  --buffer N               messages kept per channel              [100]
  --message-ttl SECS       how long a message is kept             [3600]
  --max-queued-bytes BYTES queued output before a slow subscriber
                           is closed                              [1048576]
  --heartbeat SECS         SSE comment / stream empty-line period [15]
  --longpoll-timeout SECS  how long a long-poll is held, then 204 [30]
  --longpoll-batch N       most messages in one long-poll answer  [100]
  --publish-token TOKEN    require 'Authorization: Bearer TOKEN'
                           to publish and delete                  [none]
  --cors-origin ORIGIN     Access-Control-Allow-Origin            [*]
  --sse-retry MILLIS       reconnect delay told to SSE clients    [2000]
  --static DIR             serve DIR's files instead of the demo
                           page (/halley.js stays available)      [none]
  --open-publish PREFIX    channels under PREFIX take publishes
                           without the token: 4 KiB bodies, a burst
                           of 10 then 1/s per address, else 429.
                           Repeatable; 'none' opens nothing        [demo/]
  --help                   this text

Logging: RUST_LOG=info (default), debug or warn.
";

/// What the command line asked for.
#[derive(Debug)]
pub enum Command {
    Run(Box<Config>),
    Help,
}

pub fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut config = Config::default();
    let mut open_given = false;
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        if flag == "--help" || flag == "-h" {
            return Ok(Command::Help);
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |what: &str| format!("{flag}: expected {what}, got {value:?}");
        let secs = |v: &str| {
            v.parse::<f64>()
                .ok()
                .filter(|s| *s > 0.0 && s.is_finite())
                .map(Duration::from_secs_f64)
        };
        let count = |v: &str| v.parse::<usize>().ok().filter(|n| *n > 0);
        match flag.as_str() {
            "--listen" => {
                config.listen = value
                    .parse()
                    .map_err(|_| bad("an address like 127.0.0.1:8080"))?
            }
            "--max-connections" => {
                config.max_connections = count(&value).ok_or_else(|| bad("a positive number"))?
            }
            "--max-body" => {
                config.max_body = value.parse().map_err(|_| bad("a number of bytes"))?
            }
            "--header-timeout" => {
                config.header_timeout = secs(&value).ok_or_else(|| bad("seconds"))?
            }
            "--idle-timeout" => config.idle_timeout = secs(&value).ok_or_else(|| bad("seconds"))?,
            "--send-timeout" => config.send_timeout = secs(&value).ok_or_else(|| bad("seconds"))?,
            "--buffer" => config.buffer = count(&value).ok_or_else(|| bad("a positive number"))?,
            "--message-ttl" => config.message_ttl = secs(&value).ok_or_else(|| bad("seconds"))?,
            "--max-queued-bytes" => {
                config.max_queued_bytes = count(&value).ok_or_else(|| bad("a number of bytes"))?
            }
            "--heartbeat" => config.heartbeat = secs(&value).ok_or_else(|| bad("seconds"))?,
            "--longpoll-timeout" => {
                config.longpoll_timeout = secs(&value).ok_or_else(|| bad("seconds"))?
            }
            "--longpoll-batch" => {
                config.longpoll_batch = count(&value).ok_or_else(|| bad("a positive number"))?
            }
            "--publish-token" if !value.is_empty() => config.publish_token = Some(value),
            "--cors-origin" => config.cors_origin = value,
            "--sse-retry" => {
                config.sse_retry =
                    Duration::from_millis(value.parse().map_err(|_| bad("milliseconds"))?)
            }
            "--static" => config.static_dir = Some(PathBuf::from(value)),
            "--open-publish" => {
                // The first one given replaces the default prefix.
                if !open_given {
                    config.open_publish.clear();
                    open_given = true;
                }
                if value != "none" {
                    config.open_publish.push(OpenPrefix::parse(&value)?);
                }
            }
            _ => return Err(format!("unknown flag {flag} (see --help)")),
        }
    }
    Ok(Command::Run(Box::new(config)))
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
        ] {
            assert!(HELP.contains(flag), "{flag}");
        }
    }
}

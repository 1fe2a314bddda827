//! Command-line options as `--name value` pairs (repeatable names keep every value), read into
//! typed values by the mode that needs them. Small enough not to need an argument crate.

use std::collections::HashMap;
use std::str::FromStr;

/// What `halley-load --help` prints: every mode and option, with its default.
pub const USAGE: &str = "\
halley-load: hold many SSE or WebSocket subscribers or long-polls against a COMET server, publish
timestamped messages, and report delivery latency, losses, and the server's memory and CPU (from
/proc). Works against any server that streams SSE on a GET (or upgrades it to WebSocket) and takes
a publish as a POST body.

USAGE:
  halley-load sse --sub-url URL --pub-url URL [OPTIONS]
  halley-load ws --sub-url URL --pub-url URL [OPTIONS]
  halley-load longpoll --pub-url URL (--ready-url URL | --wait-url URL) [OPTIONS]
  halley-load --help

URLs are templates: {channel} is replaced by the run's channel name, e.g.
  --sub-url 'http://127.0.0.1:8080/sub/{channel}?transport=sse'
  --pub-url 'http://127.0.0.1:8080/pub/{channel}'

sse: N subscribers connect and stay; then messages are published one at a time, each waiting
for every subscriber (closed loop), and optionally at a fixed rate (open loop).
  -n N                     subscribers to hold                          [1000]
  --sub-url URL            where subscribers connect; repeat it for the nodes of a
                           cluster, which share the subscribers evenly
  --pub-url URL            where messages are POSTed
  --warmup W               messages published and not measured          [5]
  --messages M             closed-loop messages measured                [50]
  --rate MSG_PER_S         then publish at this rate, open loop         [0: off]
  --rate-messages K        messages in the open-loop phase              [50]
  --size BYTES             pad each message to this size                [0: no padding]
  --message-timeout-s S    a message not everywhere by then is lost     [10]
  --connect-timeout-s S    time allowed for all subscribers to connect  [60]
  --concurrency C          connection attempts in flight per process    [200]
  --src-addrs A            127.0.0.x source addresses to spread the
                           subscribers over (64 x ~28000 ports)         [64]
  --per-process P          subscribers per worker process               [from the fd limit]
  --channel NAME           channel name                                 [bench-PID-TIME]
  --server-pid PID         measure this process (and its children); repeat to sum
                           several and report each one too
  --aux-pid PID            measure apart over the same phases (a cluster's Redis)
  --label L                copied into the JSON result

ws: the same run and options as sse, with WebSocket subscribers: each upgrades the --sub-url
(RFC 6455, a fresh random key, the server's accept value checked), sends nothing but masked pongs
and a close, and reads each message from one text frame, either the text itself (Nchan, the floor)
or inside a JSON object's \"data\" (halley's {\"id\",\"channel\",\"data\"}).

longpoll: two measurements, either or both.
  --ready-url URL          cycles per second when a message is always there: each
                           connection asks again as soon as it is answered
  --conns C                connections for --ready-url                  [50]
  --duration-s S           how long the --ready-url phase runs          [3]
  --wait-url URL           latency of parked long-polls answered by one publish
  --held H                 long-polls held per round                    [1000]
  --rounds R               rounds                                       [20]
  --settle-ms MS           pause after the polls are sent, before publishing [200]
  --pub-url, --channel, --server-pid, --label   as for sse

Output: one JSON line on stdout (for scripts/bench), and a readable listing on stderr.
Latency is from a message's publish (its scheduled time, in the open loop) to its arrival at
each subscriber; p50/p99/max over all deliveries. Server CPU and memory are /proc deltas of
the --server-pid processes over each phase. See docs/benchmarking.md for reading the figures
and the kernel settings that many connections need.

halley-load worker ... is internal: one process's share of the sse or ws subscribers.
";

pub struct Args {
    values: HashMap<String, Vec<String>>,
}

impl Args {
    /// Reads `--name value` and `-n value` pairs; `--flag` without a value (followed by another
    /// option or nothing) counts as `true`.
    pub fn parse(argv: &[String]) -> Result<Args, String> {
        let mut values: HashMap<String, Vec<String>> = HashMap::new();
        let mut i = 0;
        while i < argv.len() {
            let name = argv[i]
                .strip_prefix("--")
                .or_else(|| argv[i].strip_prefix('-'))
                .ok_or_else(|| format!("unexpected argument {}", argv[i]))?;
            let value = match argv.get(i + 1) {
                Some(v) if !v.starts_with('-') || v.parse::<f64>().is_ok() => {
                    i += 1;
                    v.clone()
                }
                _ => "true".to_string(),
            };
            values.entry(name.to_string()).or_default().push(value);
            i += 1;
        }
        Ok(Args { values })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .and_then(|v| v.last())
            .map(String::as_str)
    }

    pub fn require(&self, name: &str) -> Result<&str, String> {
        self.get(name)
            .ok_or_else(|| format!("--{name} is required"))
    }

    pub fn num<T: FromStr>(&self, name: &str, default: T) -> Result<T, String> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("--{name}: cannot read {v:?}")),
        }
    }

    pub fn all<T: FromStr>(&self, name: &str) -> Result<Vec<T>, String> {
        let list = self.values.get(name).map(Vec::as_slice).unwrap_or(&[]);
        list.iter()
            .map(|v| {
                v.parse()
                    .map_err(|_| format!("--{name}: cannot read {v:?}"))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Args {
        Args::parse(&s.split_whitespace().map(String::from).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn pairs_flags_and_repeats() {
        let a = args("-n 10 --server-pid 1 --server-pid 2 --quiet --offset -5");
        assert_eq!(a.num("n", 0usize), Ok(10));
        assert_eq!(a.all::<u32>("server-pid"), Ok(vec![1, 2]));
        assert_eq!(a.get("quiet"), Some("true"));
        assert_eq!(a.num("offset", 0i32), Ok(-5));
        assert_eq!(a.num("missing", 7u8), Ok(7));
        assert!(a.require("sub-url").is_err());
        assert!(a.num::<u32>("quiet", 0).is_err());
    }
}

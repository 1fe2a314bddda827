//! Open publishing: channels under a prefix given by `--open-publish` accept publishes from anyone
//! (a browser has no publish token), with a small body limit and a per-address rate limit. Every other
//! channel keeps the core rules: with `--publish-token`, a publish needs the token.
//!
//! [`PublishPolicy::decide`] is the whole rule as one function of the request's values.

use std::net::IpAddr;
use std::time::Instant;

use super::rate_limit::{RateLimiter, Verdict};
use crate::hub::{is_channel_byte, MAX_CHANNEL_NAME};
use crate::token::Token;

/// The body limit for a publish without the token on an open channel. A comment is a few hundred bytes;
/// anything much larger from an anonymous client is abuse, and refusing it costs nothing.
pub const OPEN_MAX_BODY: usize = 4 * 1024;

/// The prefix the default run opens: the demo page's channels, e.g. `demo/post-1`.
pub const DEFAULT_OPEN_PREFIX: &str = "demo/";

/// A channel name prefix, always ending in `/`, so `demo` opens `demo/post-1` but neither `demo` itself
/// nor `demonstration`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenPrefix(String);

impl OpenPrefix {
    /// Parses a `--open-publish` value; its characters must be ones a channel name may hold.
    pub fn parse(value: &str) -> Result<OpenPrefix, String> {
        let too_long = value.len() >= MAX_CHANNEL_NAME;
        if value.is_empty() || too_long || !value.bytes().all(is_channel_byte) {
            return Err(format!(
                "--open-publish {value:?}: a prefix is 1 to 127 characters of [A-Za-z0-9_.:/-]"
            ));
        }
        let mut prefix = value.to_string();
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
        Ok(OpenPrefix(prefix))
    }

    pub fn covers(&self, channel: &str) -> bool {
        channel.len() > self.0.len() && channel.starts_with(&self.0)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What to answer a publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishVerdict {
    /// Go ahead under the core rules (including `--max-body`).
    Allow,
    /// `401`: the channel is not open and the token is missing or wrong.
    Unauthorized,
    /// `413`: the body is over this limit.
    TooLarge { limit: usize },
    /// `429` with `Retry-After: retry_after` (seconds).
    RateLimited { retry_after: u64 },
}

#[derive(Debug)]
pub struct PublishPolicy {
    prefixes: Vec<OpenPrefix>,
    limiter: RateLimiter,
}

impl PublishPolicy {
    /// No prefixes means no channel is open.
    pub fn new(prefixes: Vec<OpenPrefix>, limiter: RateLimiter) -> PublishPolicy {
        PublishPolicy { prefixes, limiter }
    }

    /// The default run: the demo prefix open, the default rate limit.
    pub fn demo(now: Instant) -> PublishPolicy {
        let prefix = OpenPrefix::parse(DEFAULT_OPEN_PREFIX).expect("the default prefix is valid");
        PublishPolicy::new(vec![prefix], RateLimiter::with_defaults(now))
    }

    pub fn is_open(&self, channel: &str) -> bool {
        self.prefixes.iter().any(|p| p.covers(channel))
    }

    /// The largest body this publish may carry, so the server can answer `413` from `Content-Length`
    /// before reading the body. `max_body` is the server's `--max-body`.
    pub fn body_limit(&self, channel: &str, token: Token, max_body: usize) -> usize {
        if token != Token::Valid && self.is_open(channel) {
            OPEN_MAX_BODY.min(max_body)
        } else {
            max_body
        }
    }

    /// Decides a `POST /pub/{channel}` of `body_len` bytes from `addr` at `now`. An allowed open publish
    /// uses up one unit of `addr`'s rate limit, so call this once per publish.
    ///
    /// The token wins over the open rules: a holder of the token is a trusted back end, not a browser.
    /// Without it, the open rules apply to open channels even when no token is configured, because the
    /// demo's channels are the ones anonymous pages write to.
    pub fn decide(
        &mut self,
        channel: &str,
        token: Token,
        body_len: usize,
        addr: IpAddr,
        now: Instant,
    ) -> PublishVerdict {
        match (token, self.is_open(channel)) {
            (Token::Valid, _) | (Token::NotConfigured, false) => PublishVerdict::Allow,
            (Token::MissingOrWrong, false) => PublishVerdict::Unauthorized,
            (_, true) if body_len > OPEN_MAX_BODY => PublishVerdict::TooLarge {
                limit: OPEN_MAX_BODY,
            },
            (_, true) => match self.limiter.check(addr, now) {
                Verdict::Allow => PublishVerdict::Allow,
                Verdict::RetryAfter(secs) => PublishVerdict::RateLimited { retry_after: secs },
            },
        }
    }

    /// The rate limiter, e.g. for `sweep` now and then and for `/stats`.
    pub fn limiter_mut(&mut self) -> &mut RateLimiter {
        &mut self.limiter
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::Duration;

    #[test]
    fn prefixes() {
        let demo = OpenPrefix::parse("demo").unwrap();
        assert_eq!(demo, OpenPrefix::parse("demo/").unwrap());
        assert_eq!(demo.as_str(), "demo/");
        let cases: &[(&str, bool)] = &[
            ("demo/post-1", true),
            ("demo/a/b", true),
            ("demo/", false),
            ("demo", false),
            ("demonstration", false),
            ("demox/post-1", false),
            ("other/demo/post-1", false),
            ("DEMO/post-1", false),
            ("", false),
        ];
        for &(channel, want) in cases {
            assert_eq!(demo.covers(channel), want, "channel {channel:?}");
        }
        for bad in ["", "demo post", "demo?x", "démo", &"a".repeat(128)] {
            assert!(OpenPrefix::parse(bad).is_err(), "prefix {bad:?}");
        }
    }

    #[test]
    fn decide() {
        use PublishVerdict::*;
        let t0 = Instant::now();
        let addr: IpAddr = "192.0.2.7".parse().unwrap();
        let other: IpAddr = "192.0.2.8".parse().unwrap();
        let limiter = RateLimiter::new(2, Duration::from_secs(1), 100, t0);
        let mut policy = PublishPolicy::new(vec![OpenPrefix::parse("demo/").unwrap()], limiter);
        // (channel, token, body length, client, expected). Steps run in order and share one limiter.
        let steps: &[(&str, Token, usize, IpAddr, PublishVerdict)] = &[
            ("private", Token::MissingOrWrong, 10, addr, Unauthorized),
            ("private", Token::Valid, 100_000, addr, Allow),
            ("private", Token::NotConfigured, 100_000, addr, Allow),
            ("demo/post-1", Token::MissingOrWrong, 4096, addr, Allow),
            (
                "demo/post-1",
                Token::MissingOrWrong,
                4097,
                addr,
                TooLarge { limit: 4096 },
            ),
            ("demo/post-1", Token::NotConfigured, 10, addr, Allow),
            (
                "demo/post-1",
                Token::NotConfigured,
                10,
                addr,
                RateLimited { retry_after: 1 },
            ),
            // The token bypasses the open rules; other addresses have their own limit.
            ("demo/post-1", Token::Valid, 100_000, addr, Allow),
            ("demo/post-1", Token::MissingOrWrong, 10, other, Allow),
            ("demo", Token::MissingOrWrong, 10, addr, Unauthorized),
        ];
        for (i, &(channel, token, len, client, want)) in steps.iter().enumerate() {
            assert_eq!(
                policy.decide(channel, token, len, client, t0),
                want,
                "step {i}"
            );
        }
        let later = t0 + Duration::from_secs(1);
        assert_eq!(
            policy.decide("demo/post-1", Token::NotConfigured, 10, addr, later),
            Allow
        );
    }

    #[test]
    fn body_limits() {
        let policy = PublishPolicy::demo(Instant::now());
        let mib = 1 << 20;
        let cases: &[(&str, Token, usize, usize)] = &[
            ("demo/post-1", Token::NotConfigured, mib, OPEN_MAX_BODY),
            ("demo/post-1", Token::MissingOrWrong, mib, OPEN_MAX_BODY),
            ("demo/post-1", Token::Valid, mib, mib),
            ("demo/post-1", Token::NotConfigured, 1000, 1000),
            ("news", Token::NotConfigured, mib, mib),
        ];
        for &(channel, token, max_body, want) in cases {
            assert_eq!(
                policy.body_limit(channel, token, max_body),
                want,
                "{channel} {token:?}"
            );
        }
    }
}

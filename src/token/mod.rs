//! Credentials: the static publish token (`--publish-token`) and signed
//! tokens (`--token-secret`), whether they came as `Authorization: Bearer`,
//! a `halley_token` cookie or `?token=` over HTTP, or as `ext.halley.token`
//! in a Bayeux message. It sits below `web`, `server` and `bayeux` so that
//! every transport asks the same questions of the same code: `Token::check`
//! for the static token, `Verifier::authorize` for a signed one.
//!
//! `jwt` parses and verifies HS256 JSON Web Tokens; `scope` says whether a
//! claim's channel pattern covers a channel.

pub mod jwt;
pub mod scope;

use std::borrow::Cow;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use jwt::{sign, Claims, Invalid, LEEWAY_SECS};

/// Unix seconds of `wall`, as tokens count time.
pub fn unix(wall: SystemTime) -> u64 {
    wall.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// When a token that ends at `ends` (Unix seconds) ends on the monotonic
/// clock, given that `now` is `wall`.
pub fn ends_at(ends: u64, now: Instant, wall: SystemTime) -> Instant {
    let left = (UNIX_EPOCH + Duration::from_secs(ends))
        .duration_since(wall)
        .unwrap_or_default();
    now + left
}

/// The cookie a browser's EventSource carries a token in: it cannot send
/// headers, but it sends the cookies of the server it connects to.
pub const COOKIE: &str = "halley_token";

/// What a token is asked to allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Subscribe,
    Publish,
}

/// Why a signed token does not allow what was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No token was presented: 401.
    Missing,
    /// The token is not valid (signature, algorithm, time, form): 401.
    Invalid(Invalid),
    /// A valid token whose claims do not cover the channel: 403.
    NotCovered,
}

impl Refusal {
    /// The HTTP status: 401 when the client has no valid credential, 403
    /// when it has one that does not reach this far.
    pub fn status(self) -> u16 {
        match self {
            Refusal::Missing | Refusal::Invalid(_) => 401,
            Refusal::NotCovered => 403,
        }
    }

    /// A short reason in the snake case Bayeux errors use (`403::<reason>`).
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Missing => "token_missing",
            Refusal::Invalid(why) => why.reason(),
            Refusal::NotCovered => "channel_not_covered",
        }
    }

    /// What the client is told over HTTP, naming the channel refused.
    pub fn message(self, action: Action, channel: &str) -> String {
        let verb = match action {
            Action::Subscribe => "subscribing",
            Action::Publish => "publishing",
        };
        match self {
            Refusal::Missing => format!(
                "{verb} needs a token: Authorization: Bearer <token>, \
                 the {COOKIE} cookie, or ?token="
            ),
            Refusal::Invalid(why) => why.message().to_string(),
            Refusal::NotCovered => {
                let claim = match action {
                    Action::Subscribe => "subscribe",
                    Action::Publish => "publish",
                };
                format!("the token's {claim} claim does not cover channel {channel}")
            }
        }
    }
}

/// What a token allowed: until when (Unix seconds, the leeway included), so
/// that a held subscription can end when its token does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    pub ends: Option<u64>,
}

/// The `--token-secret`, and the one check of a signed token against a
/// channel that every transport calls.
#[derive(Clone)]
pub struct Verifier {
    secret: Vec<u8>,
}

impl std::fmt::Debug for Verifier {
    /// Never prints the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Verifier(..)")
    }
}

impl Verifier {
    pub fn new(secret: &[u8]) -> Verifier {
        Verifier {
            secret: secret.to_vec(),
        }
    }

    /// Verifies `token` at `now` (Unix seconds): its claims, or why not.
    pub fn verify(&self, token: &str, now: u64) -> Result<Claims, Invalid> {
        jwt::verify(&self.secret, token, now)
    }

    /// Does `credential` allow `action` on `channel` (a hub name; for a
    /// Bayeux subscription it may hold `*` and `**` segments) at `now`?
    pub fn authorize(
        &self,
        credential: Option<&str>,
        action: Action,
        channel: &str,
        now: u64,
    ) -> Result<Grant, Refusal> {
        let token = credential.ok_or(Refusal::Missing)?;
        let claims = self.verify(token, now).map_err(Refusal::Invalid)?;
        claims.allow(action, channel)
    }
}

impl Claims {
    /// Whether these (verified) claims allow `action` on `channel`.
    pub fn allow(&self, action: Action, channel: &str) -> Result<Grant, Refusal> {
        let patterns = match action {
            Action::Subscribe => &self.subscribe,
            Action::Publish => &self.publish,
        };
        match scope::any_covers(patterns, channel) {
            true => Ok(Grant {
                ends: self.exp.map(|exp| exp.saturating_add(LEEWAY_SECS)),
            }),
            false => Err(Refusal::NotCovered),
        }
    }
}

/// The token an HTTP request presents (`cookie` is the `halley_token`
/// cookie's value, found as the head is parsed), in order of preference:
/// `Authorization: Bearer`, then the `halley_token` cookie, then `?token=`.
/// The query comes last because it is the weakest: URLs end up in access
/// logs, proxies, `Referer` headers and browser history, so a token there
/// outlives the request it was meant for. A query that does not decode
/// presents nothing.
pub fn from_request<'a>(
    authorization: Option<&'a str>,
    cookie: Option<&'a str>,
    query: &str,
) -> Option<Cow<'a, str>> {
    if let Some(token) = authorization.and_then(bearer) {
        return Some(Cow::Borrowed(token));
    }
    if let Some(token) = cookie {
        return Some(Cow::Borrowed(token));
    }
    crate::http::query::param(query, "token")
        .ok()
        .flatten()
        .map(Cow::Owned)
}

/// The value of cookie `name` in a `Cookie` header (`a=1; name=v`).
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k == name).then(|| v.trim_matches('"'))
    })
}

/// How a publisher's token stands with respect to `--publish-token`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token {
    /// The server runs without `--publish-token`.
    NotConfigured,
    Valid,
    /// A token is configured and the request's is absent or different.
    MissingOrWrong,
}

impl Token {
    /// Compares `given` with the `configured` token without stopping at the first differing byte,
    /// so timing does not reveal how much of a guess was right.
    pub fn check(configured: Option<&str>, given: Option<&str>) -> Token {
        let Some(want) = configured else {
            return Token::NotConfigured;
        };
        let given = given.unwrap_or("").as_bytes();
        let same = want.len() == given.len()
            && want
                .bytes()
                .zip(given)
                .fold(0u8, |acc, (x, y)| acc | (x ^ y))
                == 0;
        match same {
            true => Token::Valid,
            false => Token::MissingOrWrong,
        }
    }
}

/// The credentials of an `Authorization: Bearer <token>` value. The scheme is
/// case-insensitive (RFC 7235 section 2.1, so `bearer` and `BEARER` count too)
/// and is followed by one or more spaces; the token itself is compared exactly.
pub fn bearer(authorization: &str) -> Option<&str> {
    let (scheme, rest) = authorization.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("Bearer") {
        return None;
    }
    Some(rest.trim_start_matches(' '))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"s3cret";
    const NOW: u64 = 1_700_000_000;

    #[test]
    fn authorizes_by_claim_and_says_why_not() {
        let verifier = Verifier::new(KEY);
        let token = sign(
            KEY,
            r#"{"exp":1700000060,"halley":{"subscribe":["chat/*","user/42"],"publish":["chat/**"]}}"#,
        );
        let expired = sign(KEY, r#"{"exp":1600000000,"halley":{"subscribe":["**"]}}"#);
        let forged = sign(b"guess", r#"{"halley":{"subscribe":["**"]}}"#);
        let ends = Ok(Grant {
            ends: Some(1_700_000_060 + LEEWAY_SECS),
        });
        use Action::*;
        // (token, action, channel, result)
        type Case<'a> = (Option<&'a str>, Action, &'a str, Result<Grant, Refusal>);
        let cases: Vec<Case> = vec![
            (Some(&token), Subscribe, "chat/a", ends),
            (Some(&token), Subscribe, "user/42", ends),
            (
                Some(&token),
                Subscribe,
                "chat/a/b",
                Err(Refusal::NotCovered),
            ),
            (Some(&token), Subscribe, "user/43", Err(Refusal::NotCovered)),
            (Some(&token), Publish, "chat/a/b", ends),
            (Some(&token), Publish, "user/42", Err(Refusal::NotCovered)),
            (None, Subscribe, "chat/a", Err(Refusal::Missing)),
            (
                Some(""),
                Subscribe,
                "chat/a",
                Err(Refusal::Invalid(Invalid::Malformed)),
            ),
            (
                Some(&expired),
                Subscribe,
                "chat/a",
                Err(Refusal::Invalid(Invalid::Expired)),
            ),
            (
                Some(&forged),
                Subscribe,
                "chat/a",
                Err(Refusal::Invalid(Invalid::Signature)),
            ),
        ];
        for (credential, action, channel, want) in cases {
            let got = verifier.authorize(credential, action, channel, NOW);
            assert_eq!(got, want, "{credential:?} {action:?} {channel}");
        }
        let never = sign(KEY, r#"{"halley":{"subscribe":["a"]}}"#);
        assert_eq!(
            verifier.authorize(Some(&never), Subscribe, "a", NOW),
            Ok(Grant { ends: None })
        );
    }

    #[test]
    fn refusals_are_401_or_403_with_a_reason() {
        let cases = [
            (Refusal::Missing, 401, "token_missing"),
            (Refusal::Invalid(Invalid::Expired), 401, "token_expired"),
            (Refusal::Invalid(Invalid::Algorithm), 401, "token_algorithm"),
            (Refusal::NotCovered, 403, "channel_not_covered"),
        ];
        for (refusal, status, reason) in cases {
            assert_eq!((refusal.status(), refusal.reason()), (status, reason));
        }
        let message = Refusal::NotCovered.message(Action::Subscribe, "x/y");
        assert_eq!(
            message,
            "the token's subscribe claim does not cover channel x/y"
        );
        assert_eq!(
            Refusal::Invalid(Invalid::Expired).message(Action::Subscribe, "x"),
            "token expired"
        );
    }

    #[test]
    fn reads_the_cookie() {
        // (Cookie header, halley_token's value)
        let cases = [
            ("halley_token=c", Some("c")),
            ("a=1; halley_token=c; b=2", Some("c")),
            ("a=1;halley_token=c", Some("c")),
            ("halley_token=\"c\"", Some("c")),
            ("xhalley_token=c", None),
            ("halley_token", None),
            ("", None),
        ];
        for (header, want) in cases {
            assert_eq!(cookie_value(header, COOKIE), want, "{header:?}");
        }
    }

    #[test]
    fn finds_the_token_in_header_cookie_or_query() {
        // (authorization, cookie, query, token)
        type Case<'a> = (Option<&'a str>, Option<&'a str>, &'a str, Option<&'a str>);
        let cases: &[Case] = &[
            (Some("Bearer h"), Some("c"), "token=q", Some("h")),
            (Some("Basic x"), Some("c"), "token=q", Some("c")),
            (None, Some("c"), "token=q", Some("c")),
            (None, None, "since=1&token=q%2Eq", Some("q.q")),
            (None, None, "token=%zz", None),
            (None, None, "tokens=q", None),
            (None, None, "", None),
        ];
        for &(authorization, cookie, query, want) in cases {
            let got = from_request(authorization, cookie, query);
            assert_eq!(
                got.as_deref(),
                want,
                "{authorization:?} {cookie:?} {query:?}"
            );
        }
    }

    #[test]
    fn checks_tokens() {
        let cases = [
            (None, None, Token::NotConfigured),
            (None, Some("x"), Token::NotConfigured),
            (Some("s3"), Some("s3"), Token::Valid),
            (Some("s3"), Some("s4"), Token::MissingOrWrong),
            (Some("s3"), Some("s3x"), Token::MissingOrWrong),
            (Some("s3"), Some(""), Token::MissingOrWrong),
            (Some("s3"), None, Token::MissingOrWrong),
        ];
        for (configured, given, want) in cases {
            assert_eq!(
                Token::check(configured, given),
                want,
                "{configured:?} {given:?}"
            );
        }
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        // (header value, credentials)
        let cases: &[(&str, Option<&str>)] = &[
            ("Bearer s3", Some("s3")),
            ("bearer s3", Some("s3")),
            ("BEARER s3", Some("s3")),
            ("bEaReR s3", Some("s3")),
            ("Bearer   s3", Some("s3")),
            ("Bearer S3", Some("S3")),
            ("Basic czM=", None),
            ("Bearers3", None),
            ("Bearer", None),
            ("", None),
            ("Token s3", None),
        ];
        for (value, want) in cases {
            assert_eq!(bearer(value), *want, "{value:?}");
        }
        let cases = [
            (Some("bearer s3"), Token::Valid),
            (Some("BEARER s3"), Token::Valid),
            (Some("Bearer S3"), Token::MissingOrWrong),
            (Some("Basic s3"), Token::MissingOrWrong),
            (None, Token::MissingOrWrong),
        ];
        for (value, want) in cases {
            // As `Web::publisher` judges an `Authorization` header.
            assert_eq!(
                Token::check(Some("s3"), value.and_then(bearer)),
                want,
                "{value:?}"
            );
        }
    }
}

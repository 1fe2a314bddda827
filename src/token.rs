//! The publish token (`--publish-token`): how a publisher's credential stands
//! against it, whether it came as `Authorization: Bearer` over HTTP or as
//! `ext.halley.token` in a Bayeux handshake. It sits below `web`, `server` and
//! `bayeux` so the pure Bayeux engine and the HTTP edge share one check.

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

    /// Checks an `Authorization` header value against the `configured` token.
    pub fn from_authorization(configured: Option<&str>, authorization: Option<&str>) -> Token {
        Token::check(configured, authorization.and_then(bearer))
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
            assert_eq!(
                Token::from_authorization(Some("s3"), value),
                want,
                "{value:?}"
            );
        }
    }
}

//! HS256 JSON Web Tokens (RFC 7519): parsing, verifying and, for tests and
//! tools, signing. Verification is strict on purpose: the header must say
//! `"alg":"HS256"` exactly, so a token cannot choose a weaker check (`none`)
//! or trick a key into another role (`RS256` with the HMAC secret as a
//! "public key"); the signature is compared in constant time; `exp` and `nbf`
//! are honoured with a small leeway for clocks that disagree.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The longest token read. A real one is a few hundred bytes; the bound
/// keeps what a hostile client can make the server decode, parse and match
/// small (it also fits comfortably in a request head's 8 KiB).
pub const MAX_TOKEN_BYTES: usize = 4096;

/// How far `exp` and `nbf` may be off: the issuer's clock and this server's
/// may disagree by a few seconds, and a token refused for that alone would
/// make a client fail at random. Small, since it lengthens every token's life.
pub const LEEWAY_SECS: u64 = 5;

/// The header every token halley issues in `sign`.
const HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

/// A verified token's claims, as far as halley reads them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Claims {
    /// Unix seconds from which the token is refused (`exp`); none: never.
    pub exp: Option<u64>,
    /// Unix seconds before which the token is refused (`nbf`).
    pub nbf: Option<u64>,
    /// `halley.subscribe`: channel patterns the holder may subscribe to.
    pub subscribe: Vec<String>,
    /// `halley.publish`: channel patterns the holder may publish to.
    pub publish: Vec<String>,
}

/// Why a token was refused; each is a 401 at the HTTP edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// Longer than `MAX_TOKEN_BYTES`.
    TooLong,
    /// Not three base64url parts of JSON objects.
    Malformed,
    /// The header's `alg` is not `HS256` (or it names `crit` extensions).
    Algorithm,
    /// The signature does not match the secret.
    Signature,
    /// The claims are not of the types halley reads.
    Claims,
    /// Past `exp` (and the leeway).
    Expired,
    /// Before `nbf` (less the leeway).
    NotYetValid,
}

impl Invalid {
    /// A short reason, in the snake case Bayeux errors use.
    pub fn reason(self) -> &'static str {
        match self {
            Invalid::TooLong => "token_too_long",
            Invalid::Malformed => "token_malformed",
            Invalid::Algorithm => "token_algorithm",
            Invalid::Signature => "token_signature",
            Invalid::Claims => "token_claims",
            Invalid::Expired => "token_expired",
            Invalid::NotYetValid => "token_not_yet_valid",
        }
    }

    /// What the client is told over HTTP.
    pub fn message(self) -> &'static str {
        match self {
            Invalid::TooLong => "the token is too long",
            Invalid::Malformed => "the token is not a JSON Web Token",
            Invalid::Algorithm => "the token's alg must be HS256",
            Invalid::Signature => "the token's signature is wrong",
            Invalid::Claims => "the token's claims are malformed",
            Invalid::Expired => "token expired",
            Invalid::NotYetValid => "the token is not valid yet (nbf)",
        }
    }
}

/// Checks `token` against `key` at `now` (Unix seconds) and returns its
/// claims. The header is checked before the signature, and the claims are
/// parsed only once the signature holds, so unsigned bytes reach nothing
/// but the base64 decoder and one small JSON object.
pub fn verify(key: &[u8], token: &str, now: u64) -> Result<Claims, Invalid> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Invalid::TooLong);
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Invalid::Malformed);
    };
    let header = object(header).ok_or(Invalid::Malformed)?;
    // Exactly HS256: the server has one key of one kind, and a token does
    // not get to say how it is checked.
    if header.get("alg").and_then(Value::as_str) != Some("HS256") || header.contains_key("crit") {
        return Err(Invalid::Algorithm);
    }
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| Invalid::Malformed)?;
    let signed = &token[..header_len(token, payload)];
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(signed.as_bytes());
    // `verify_slice` compares in constant time.
    mac.verify_slice(&signature)
        .map_err(|_| Invalid::Signature)?;
    let claims = claims(&object(payload).ok_or(Invalid::Malformed)?)?;
    claims.check_time(now)?;
    Ok(claims)
}

impl Claims {
    /// Whether the token is valid at `now` (Unix seconds) by its `exp` and
    /// `nbf`: for claims kept past the request that brought them.
    pub fn check_time(&self, now: u64) -> Result<(), Invalid> {
        if self
            .exp
            .is_some_and(|exp| now >= exp.saturating_add(LEEWAY_SECS))
        {
            return Err(Invalid::Expired);
        }
        if self
            .nbf
            .is_some_and(|nbf| now.saturating_add(LEEWAY_SECS) < nbf)
        {
            return Err(Invalid::NotYetValid);
        }
        Ok(())
    }
}

/// The length of `header.payload`, the signed part of `token`.
fn header_len(token: &str, payload: &str) -> usize {
    // `payload` is a slice of `token`, so its end is an offset in it.
    payload.as_ptr() as usize - token.as_ptr() as usize + payload.len()
}

/// A base64url (no padding) JSON object.
fn object(part: &str) -> Option<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

fn claims(payload: &Map<String, Value>) -> Result<Claims, Invalid> {
    let time = |name: &str| match payload.get(name) {
        None => Ok(None),
        // NumericDate may have a fraction; whole seconds are what counts.
        Some(v) => match v.as_f64() {
            Some(t) if t >= 0.0 && t.is_finite() => Ok(Some(t as u64)),
            _ => Err(Invalid::Claims),
        },
    };
    let (exp, nbf) = (time("exp")?, time("nbf")?);
    let scope = match payload.get("halley") {
        None => None,
        Some(Value::Object(scope)) => Some(scope),
        Some(_) => return Err(Invalid::Claims),
    };
    let patterns = |name: &str| -> Result<Vec<String>, Invalid> {
        match scope.and_then(|s| s.get(name)) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_owned).ok_or(Invalid::Claims))
                .collect(),
            Some(_) => Err(Invalid::Claims),
        }
    };
    Ok(Claims {
        exp,
        nbf,
        subscribe: patterns("subscribe")?,
        publish: patterns("publish")?,
    })
}

/// Signs `claims` (a JSON object's text) with `key` as an HS256 token: what
/// an issuer does, for tests and for tools that mint tokens.
pub fn sign(key: &[u8], claims: &str) -> String {
    sign_with_header(key, HEADER, claims)
}

/// Signs with any header: tests use it to make tokens that must be refused.
pub fn sign_with_header(key: &[u8], header: &str, claims: &str) -> String {
    let mut token = URL_SAFE_NO_PAD.encode(header);
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(claims));
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(token.as_bytes());
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()));
    token
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"k3y";
    const NOW: u64 = 1_700_000_000;

    #[test]
    fn verifies_or_says_why_not() {
        let good = r#"{"exp":1700000100,"halley":{"subscribe":["chat/*"],"publish":["chat/**"]}}"#;
        let unsigned = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(good)
        );
        let hs256_header = URL_SAFE_NO_PAD.encode(HEADER);
        // (token, result)
        let cases: Vec<(String, Result<(), Invalid>)> = vec![
            (sign(KEY, good), Ok(())),
            (sign(KEY, "{}"), Ok(())),
            (sign(b"other", good), Err(Invalid::Signature)),
            (unsigned, Err(Invalid::Algorithm)),
            (
                sign_with_header(KEY, r#"{"alg":"none"}"#, good),
                Err(Invalid::Algorithm),
            ),
            (
                sign_with_header(KEY, r#"{"alg":"HS512"}"#, good),
                Err(Invalid::Algorithm),
            ),
            (
                sign_with_header(KEY, r#"{"alg":"RS256"}"#, good),
                Err(Invalid::Algorithm),
            ),
            (
                sign_with_header(KEY, r#"{"alg":"hs256"}"#, good),
                Err(Invalid::Algorithm),
            ),
            (
                sign_with_header(KEY, r#"{"typ":"JWT"}"#, good),
                Err(Invalid::Algorithm),
            ),
            (
                sign_with_header(KEY, r#"{"alg":"HS256","crit":["x"]}"#, good),
                Err(Invalid::Algorithm),
            ),
            (sign_with_header(KEY, "[1]", good), Err(Invalid::Malformed)),
            (sign(KEY, "[]"), Err(Invalid::Malformed)),
            (sign(KEY, r#"{"exp":"soon"}"#), Err(Invalid::Claims)),
            (sign(KEY, r#"{"exp":-1}"#), Err(Invalid::Claims)),
            (sign(KEY, r#"{"halley":[]}"#), Err(Invalid::Claims)),
            (
                sign(KEY, r#"{"halley":{"subscribe":"chat"}}"#),
                Err(Invalid::Claims),
            ),
            (
                sign(KEY, r#"{"halley":{"subscribe":[1]}}"#),
                Err(Invalid::Claims),
            ),
            // exp is the first second refused, after the leeway.
            (
                sign(KEY, &format!(r#"{{"exp":{}}}"#, NOW - LEEWAY_SECS)),
                Err(Invalid::Expired),
            ),
            (
                sign(KEY, &format!(r#"{{"exp":{}}}"#, NOW - LEEWAY_SECS + 1)),
                Ok(()),
            ),
            (
                sign(KEY, &format!(r#"{{"exp":{}.9}}"#, NOW - LEEWAY_SECS)),
                Err(Invalid::Expired),
            ),
            (
                sign(KEY, &format!(r#"{{"nbf":{}}}"#, NOW + LEEWAY_SECS)),
                Ok(()),
            ),
            (
                sign(KEY, &format!(r#"{{"nbf":{}}}"#, NOW + LEEWAY_SECS + 1)),
                Err(Invalid::NotYetValid),
            ),
            ("".into(), Err(Invalid::Malformed)),
            ("a.b".into(), Err(Invalid::Malformed)),
            (format!("{}.e30.x.y", hs256_header), Err(Invalid::Malformed)),
            (format!("{}.e30.!!", hs256_header), Err(Invalid::Malformed)),
            (format!("{}.e30=.", hs256_header), Err(Invalid::Signature)),
            ("x".repeat(MAX_TOKEN_BYTES + 1), Err(Invalid::TooLong)),
        ];
        for (token, want) in cases {
            assert_eq!(verify(KEY, &token, NOW).map(|_| ()), want, "{token}");
        }
    }

    #[test]
    fn reads_the_claims() {
        let token = sign(
            KEY,
            r#"{"exp":1700000100.5,"nbf":1,"sub":"u42","halley":{"subscribe":["chat/*","user/42"],"publish":["chat/**"]}}"#,
        );
        let claims = verify(KEY, &token, NOW).unwrap();
        assert_eq!(
            claims,
            Claims {
                exp: Some(1_700_000_100),
                nbf: Some(1),
                subscribe: vec!["chat/*".into(), "user/42".into()],
                publish: vec!["chat/**".into()],
            }
        );
    }

    #[test]
    fn a_padded_or_non_canonical_signature_is_refused() {
        let token = sign(KEY, "{}");
        let (signed, signature) = token.rsplit_once('.').unwrap();
        assert_eq!(
            verify(KEY, &format!("{signed}.{signature}="), NOW),
            Err(Invalid::Malformed)
        );
        // The last character of a 32-byte signature carries 4 bits and 2
        // unused ones; setting an unused bit must not yield the same bytes.
        let last = signature.chars().last().unwrap();
        let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let i = alphabet.find(last).unwrap();
        let twin = alphabet.as_bytes()[i ^ 1] as char;
        let forged = format!("{signed}.{}{twin}", &signature[..signature.len() - 1]);
        assert!(verify(KEY, &forged, NOW).is_err());
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            // proptest's default of 256 cases each keeps CI quick;
            // PROPTEST_CASES=100000 cargo test --release --lib token runs them long.

            /// Whatever a client sends, verifying answers and never panics.
            #[test]
            fn arbitrary_text_never_panics(text in ".{0,300}", now in any::<u64>()) {
                let _ = verify(KEY, &text, now);
            }

            /// So does anything shaped like a token: three parts of base64url.
            #[test]
            fn token_shaped_text_never_panics(
                parts in proptest::collection::vec("[A-Za-z0-9_=+/-]{0,60}", 1..5),
            ) {
                let _ = verify(KEY, &parts.join("."), NOW);
            }

            /// A valid token with any one character changed is refused.
            #[test]
            fn one_changed_character_is_refused(
                subscribe in proptest::collection::vec("[a-z*]{1,8}(/[a-z*]{1,8}){0,2}", 0..4),
                exp in NOW..NOW + 1_000_000,
                at in any::<prop::sample::Index>(),
                with in any::<char>(),
            ) {
                let claims = serde_json::json!({"exp": exp, "halley": {"subscribe": subscribe}});
                let token = sign(KEY, &claims.to_string());
                prop_assert!(verify(KEY, &token, NOW).is_ok());
                let i = at.index(token.len());
                let old = token.as_bytes()[i] as char;
                prop_assume!(old != with);
                let mut changed = token.clone();
                changed.replace_range(i..i + 1, with.encode_utf8(&mut [0; 4]));
                prop_assert!(verify(KEY, &changed, NOW).is_err(), "{changed}");
            }
        }
    }
}

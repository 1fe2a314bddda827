//! Splitting a request target into path and query, and percent-decoding.

/// Splits `/path?query` into its two halves (the query without the `?`).
pub fn split_target(target: &str) -> (&str, &str) {
    target.split_once('?').unwrap_or((target, ""))
}

/// Percent-decodes `s` (and `+` as space when `plus_is_space`, as in forms).
/// Fails on a broken escape or on bytes that do not form UTF-8. This is the
/// server's one percent-decoder: query parameters, channel names, static file
/// paths and Bayeux form bodies all go through it.
pub fn decode(s: &str, plus_is_space: bool) -> Result<String, &'static str> {
    if !s.contains(['%', '+']) {
        return Ok(s.to_owned());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                out.push(escaped_byte(bytes.get(i + 1..i + 3)).ok_or("broken percent-escape")?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| "percent-escapes do not form UTF-8")
}

/// The byte that the two characters after a `%` spell: exactly two hex digits.
/// (`u8::from_str_radix` would also take `+5`, a sign and one digit.)
fn escaped_byte(hex: Option<&[u8]>) -> Option<u8> {
    let digit = |b: u8| (b as char).to_digit(16);
    match hex? {
        &[hi, lo] => Some((digit(hi)? * 16 + digit(lo)?) as u8),
        _ => None,
    }
}

/// The decoded value of the first `key` parameter in `query`, if any.
pub fn param(query: &str, key: &str) -> Result<Option<String>, &'static str> {
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if decode(k, true)? == key {
            return decode(v, true).map(Some);
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_targets() {
        assert_eq!(split_target("/a/b?x=1&y"), ("/a/b", "x=1&y"));
        assert_eq!(split_target("/a"), ("/a", ""));
        assert_eq!(split_target("/a?"), ("/a", ""));
    }

    #[test]
    fn decodes() {
        let cases: &[(&str, bool, Result<&str, ()>)] = &[
            ("plain", true, Ok("plain")),
            ("a%2Fb", false, Ok("a/b")),
            ("a+b", true, Ok("a b")),
            ("a+b", false, Ok("a+b")),
            ("%C3%A9", true, Ok("é")),
            ("%", true, Err(())),
            ("%4", true, Err(())),
            ("%zz", true, Err(())),
            ("%FF", true, Err(())),
            ("%2f%2F", false, Ok("//")),
            ("%41%4a%4A%7e", false, Ok("AJJ~")),
            ("%00", false, Ok("\0")),
            ("100%25", true, Ok("100%")),
            ("%2B+", true, Ok("+ ")),
            ("a%", true, Err(())),
            // A sign is not a hex digit, though `u8::from_str_radix` takes one.
            ("%+5", true, Err(())),
            ("%+5", false, Err(())),
            ("%-1", true, Err(())),
            ("%5+", true, Err(())),
            ("% 5", true, Err(())),
            ("%5g", true, Err(())),
            ("%0x1", true, Err(())),
            ("%é", true, Err(())),
            // Two hex digits and no more: the third is a plain character.
            ("%414", false, Ok("A4")),
        ];
        for (input, plus, want) in cases {
            assert_eq!(
                decode(input, *plus).as_deref().map_err(|_| ()),
                *want,
                "{input:?}"
            );
        }
    }

    #[test]
    fn finds_params() {
        let q = "transport=sse&since=abc-1&event=a%20b&flag";
        assert_eq!(param(q, "transport"), Ok(Some("sse".into())));
        assert_eq!(param(q, "event"), Ok(Some("a b".into())));
        assert_eq!(param(q, "flag"), Ok(Some(String::new())));
        assert_eq!(param(q, "missing"), Ok(None));
        assert!(param("x=%ZZ", "x").is_err());
    }
}

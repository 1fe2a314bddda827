//! JSON output. The core only ever writes JSON (replies, stream lines, long-poll
//! bodies), so a string writer and a few others are all it needs; strings are
//! escaped by serde_json, the same escaper as the Bayeux replies'.

/// Appends `s` as a quoted JSON string, escaped by serde_json: the one JSON
/// string escaper, shared with the Bayeux replies that serde_json writes whole.
pub fn push_str(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *out, s).expect("a string always serializes into a Vec");
}

/// Appends `s` as a JSON string, or `null` when absent.
pub fn push_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => push_str(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

/// Appends an unsigned integer.
pub fn push_u64(out: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// The body of every error reply: `{"error":"..."}`.
pub fn error_body(message: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 14);
    out.extend_from_slice(b"{\"error\":");
    push_str(&mut out, message);
    out.push(b'}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_strings() {
        let cases: &[(&str, &str)] = &[
            ("plain", r#""plain""#),
            ("a\"b", r#""a\"b""#),
            ("back\\slash", r#""back\\slash""#),
            ("line\nbreak\r\t", r#""line\nbreak\r\t""#),
            ("\u{1}\u{1f}", r#""\u0001\u001f""#),
            ("\u{8}\u{c}\u{7f}", "\"\\b\\f\u{7f}\""),
            ("a/b", r#""a/b""#),
            ("é✓", "\"é✓\""),
            ("", r#""""#),
        ];
        for (input, want) in cases {
            let mut out = Vec::new();
            push_str(&mut out, input);
            assert_eq!(String::from_utf8(out).unwrap(), *want, "input {input:?}");
        }
    }

    #[test]
    fn writes_numbers() {
        for n in [0u64, 7, 10, 12345, u64::MAX] {
            let mut out = Vec::new();
            push_u64(&mut out, n);
            assert_eq!(String::from_utf8(out).unwrap(), n.to_string());
        }
    }
}

//! Entity tags: computing them for embedded and on-disk files, and deciding whether a request's
//! `If-None-Match` already names the current version (then the answer is `304 Not Modified`).

/// Length of a strong ETag made by [`of_bytes`]: 16 hex digits between double quotes.
pub const ETAG_LEN: usize = 18;

/// A strong ETag for a byte string: the 64-bit FNV-1a hash in hex, quoted.
///
/// It is a `const fn` so the embedded assets carry their tags from compile time and no request pays
/// for hashing. FNV is not collision resistant, which is fine: the tag only has to change when the
/// content does, and nobody gains anything by forging one.
pub const fn of_bytes(bytes: &[u8]) -> [u8; ETAG_LEN] {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    quoted_hex(hash)
}

/// A strong ETag for a file on disk from its length and modification time, as most static servers do:
/// hashing the content would mean reading every file on every conditional request.
pub fn of_metadata(len: u64, modified_nanos: u128) -> String {
    let mut key = [0u8; 24];
    key[..8].copy_from_slice(&len.to_le_bytes());
    key[8..].copy_from_slice(&modified_nanos.to_le_bytes());
    as_str(&of_bytes(&key)).to_string()
}

/// Views a tag made by [`of_bytes`] as text; it is always ASCII.
pub fn as_str(tag: &[u8; ETAG_LEN]) -> &str {
    std::str::from_utf8(tag).expect("an ETag is ASCII")
}

const fn quoted_hex(mut value: u64) -> [u8; ETAG_LEN] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [b'"'; ETAG_LEN];
    let mut i = ETAG_LEN - 2;
    while i >= 1 {
        out[i] = DIGITS[(value & 0xf) as usize];
        value >>= 4;
        i -= 1;
    }
    out
}

/// Whether an `If-None-Match` header value matches `etag`, so the client's cached copy is current.
///
/// RFC 9110 asks for the weak comparison here: `W/"x"` matches `"x"`. The header may hold a
/// comma-separated list, or `*` for "any version".
pub fn none_match_hits(if_none_match: &str, etag: &str) -> bool {
    let etag = etag.strip_prefix("W/").unwrap_or(etag);
    if_none_match.split(',').map(str::trim).any(|candidate| {
        candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate) == etag
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_quoted_hex_and_depend_on_content() {
        let empty = of_bytes(b"");
        // The FNV-1a offset basis is the hash of nothing.
        assert_eq!(as_str(&empty), "\"cbf29ce484222325\"");
        assert_eq!(as_str(&of_bytes(b"a")), "\"af63dc4c8601ec8c\"");
        assert_ne!(of_bytes(b"halley"), of_bytes(b"halley!"));
        assert_ne!(of_metadata(1, 2), of_metadata(2, 1));
        assert_eq!(of_metadata(10, 20).len(), ETAG_LEN);
    }

    #[test]
    fn if_none_match() {
        let tag = "\"abc\"";
        let cases: &[(&str, bool)] = &[
            ("\"abc\"", true),
            ("W/\"abc\"", true),
            ("*", true),
            ("\"x\", \"abc\"", true),
            ("\"x\",W/\"abc\"", true),
            ("\"abcd\"", false),
            ("abc", false),
            ("", false),
            ("\"x\", \"y\"", false),
        ];
        for &(header, want) in cases {
            assert_eq!(
                none_match_hits(header, tag),
                want,
                "If-None-Match: {header}"
            );
        }
    }
}

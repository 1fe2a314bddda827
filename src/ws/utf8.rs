//! UTF-8 validated as it arrives: a text message's bytes come in pieces
//! (fragments, and reads that end inside a fragment), and a code point may be
//! split anywhere. The validator keeps only what the next byte must be, so a
//! bad byte is caught the moment it arrives (Autobahn 6.x checks that a peer
//! fails fast), not when the message ends.

/// Where a validator stands between two pieces: how many continuation bytes
/// the current code point still needs, and the range the next one must be in
/// (narrower than `0x80..=0xBF` right after a lead byte, which is how
/// overlong forms, surrogates and code points past U+10FFFF are refused).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Utf8 {
    need: u8,
    lo: u8,
    hi: u8,
}

impl Default for Utf8 {
    fn default() -> Utf8 {
        Utf8 {
            need: 0,
            lo: 0x80,
            hi: 0xBF,
        }
    }
}

impl Utf8 {
    /// Checks the next piece; false as soon as the bytes so far cannot be
    /// the start of valid UTF-8.
    pub fn feed(&mut self, bytes: &[u8]) -> bool {
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            i += 1;
            if self.need == 0 {
                // Most text is ASCII: skip it without touching the state.
                if b < 0x80 {
                    continue;
                }
                let (need, lo, hi) = match b {
                    0xC2..=0xDF => (1, 0x80, 0xBF),
                    0xE0 => (2, 0xA0, 0xBF),
                    0xE1..=0xEC | 0xEE..=0xEF => (2, 0x80, 0xBF),
                    0xED => (2, 0x80, 0x9F),
                    0xF0 => (3, 0x90, 0xBF),
                    0xF1..=0xF3 => (3, 0x80, 0xBF),
                    0xF4 => (3, 0x80, 0x8F),
                    _ => return false,
                };
                *self = Utf8 { need, lo, hi };
            } else {
                if b < self.lo || b > self.hi {
                    return false;
                }
                self.need -= 1;
                self.lo = 0x80;
                self.hi = 0xBF;
            }
        }
        true
    }

    /// No code point is left open: the text so far is complete UTF-8.
    pub fn is_complete(&self) -> bool {
        self.need == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_std_on_whole_inputs() {
        let cases: &[&[u8]] = &[
            b"",
            b"hello",
            "κόσμε".as_bytes(),
            "\u{10FFFF}".as_bytes(),
            "\u{FFFD}\u{7FF}\u{800}".as_bytes(),
            b"\xC0\x80",         // overlong NUL
            b"\xE0\x80\x80",     // overlong
            b"\xED\xA0\x80",     // surrogate
            b"\xF4\x90\x80\x80", // past U+10FFFF
            b"\xF5\x80\x80\x80",
            b"\x80",
            b"\xCE\xBA\xE1", // truncated
            b"a\xFFb",
            b"\xF0\x9F\x98\x80", // emoji
            b"\xF0\x9F\x98",     // truncated emoji
        ];
        for &bytes in cases {
            let mut v = Utf8::default();
            let ok = v.feed(bytes) && v.is_complete();
            assert_eq!(ok, std::str::from_utf8(bytes).is_ok(), "{bytes:x?}");
        }
    }

    #[test]
    fn fails_on_the_first_bad_byte_across_pieces() {
        // Split inside a code point, then a byte no continuation may be.
        let mut v = Utf8::default();
        assert!(v.feed(b"ok \xF0\x9F"));
        assert!(!v.is_complete());
        assert!(v.feed(b"\x98"));
        assert!(v.feed(b"\x80"));
        assert!(v.is_complete());
        assert!(v.feed(b"\xED"));
        assert!(
            !v.feed(b"\xA0"),
            "a surrogate is refused at its second byte"
        );
    }

    #[test]
    fn any_split_gives_the_same_answer() {
        let text = "a\u{7FF}b\u{FFFD}c\u{10348}d".as_bytes();
        for cut in 0..=text.len() {
            let mut v = Utf8::default();
            assert!(v.feed(&text[..cut]) && v.feed(&text[cut..]) && v.is_complete());
        }
    }
}

//! Close codes (RFC 6455 7.4): which a peer may send, the ones halley sends
//! and why, and the close frame's bytes.

use super::frame::{write_header, Opcode, MAX_CONTROL_PAYLOAD};

/// The connection did what it was for.
pub const NORMAL: u16 = 1000;
/// The server is going away (SIGTERM's drain).
pub const GOING_AWAY: u16 = 1001;
/// The peer broke the framing rules.
pub const PROTOCOL_ERROR: u16 = 1002;
/// A text message (or a close reason) that is not UTF-8.
pub const INVALID_DATA: u16 = 1007;
/// The peer did not keep up (slow consumer) or did not answer pings.
pub const POLICY: u16 = 1008;
/// A message over the size limit.
pub const TOO_BIG: u16 = 1009;

/// Whether a peer may put `code` in a close frame: the codes RFC 6455
/// defines for the wire (not 1004, nor 1005 and 1006, which only name what
/// an API saw), those registered since (1012-1014), and the ranges left to
/// libraries (3000-3999) and applications (4000-4999).
pub fn is_valid(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// A close frame carrying `code` and as much of `reason` as fits in a
/// control frame, cut at a character boundary.
pub fn frame(code: u16, reason: &str) -> Vec<u8> {
    let mut end = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = Vec::with_capacity(4 + end);
    write_header(&mut out, Opcode::Close, 2 + end);
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(&reason.as_bytes()[..end]);
    out
}

/// A close frame with no code: the answer to a peer's close that had none.
pub const EMPTY_FRAME: &[u8] = &[0x88, 0x00];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_codes() {
        let cases = [
            (0, false),
            (999, false),
            (1000, true),
            (1003, true),
            (1004, false),
            (1005, false),
            (1006, false),
            (1007, true),
            (1011, true),
            (1014, true),
            (1015, false),
            (1016, false),
            (2999, false),
            (3000, true),
            (4999, true),
            (5000, false),
            (65535, false),
        ];
        for (code, valid) in cases {
            assert_eq!(is_valid(code), valid, "{code}");
        }
    }

    #[test]
    fn frames_carry_the_code_and_a_cut_reason() {
        assert_eq!(frame(1000, ""), [0x88, 2, 0x03, 0xE8]);
        assert_eq!(frame(1008, "slow"), b"\x88\x06\x03\xF0slow");
        let long = "é".repeat(100);
        let f = frame(1001, &long);
        assert_eq!(f[1] as usize, f.len() - 2);
        assert!(f.len() - 2 <= MAX_CONTROL_PAYLOAD);
        assert!(
            std::str::from_utf8(&f[4..]).is_ok(),
            "cut at a char boundary"
        );
    }
}

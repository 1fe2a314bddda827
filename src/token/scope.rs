//! Channel patterns in a token's claims, and whether one covers a channel.
//!
//! Patterns name hub channels, the names `/sub/{channel}` and `/pub/{channel}`
//! use (`chat/room1`); a Bayeux channel is its hub name with the leading `/`
//! dropped (`/chat/room1` is `chat/room1`), so one claim covers a channel on
//! every transport. Segments are split on `/`. As in Bayeux, `*` as a whole
//! segment matches exactly one non-empty segment and `**`, only as the last
//! segment, matches one or more; any other text matches itself. A pattern
//! with `**` anywhere but last matches nothing, rather than a guess.
//!
//! What is checked may itself be a pattern: a Bayeux subscription to
//! `/chat/*` is covered only by a claim that covers every channel it could
//! receive (`chat/*` or `chat/**`, not `chat/room1`).

/// Whether claim `pattern` covers `channel` (a hub name, whose segments may
/// be `*` or `**` when it is a Bayeux subscription pattern).
pub fn covers(pattern: &str, channel: &str) -> bool {
    let mut want = pattern.split('/');
    let mut have = channel.split('/');
    loop {
        match (want.next(), have.next()) {
            (None, None) => return true,
            (Some("**"), Some(seg)) => return want.next().is_none() && !seg.is_empty(),
            (Some("*"), Some(seg)) => {
                if seg.is_empty() || seg == "**" {
                    return false;
                }
            }
            (Some(lit), Some(seg)) => {
                if lit != seg || seg == "*" || seg == "**" {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

/// Whether any of `patterns` covers `channel`.
pub fn any_covers(patterns: &[String], channel: &str) -> bool {
    patterns.iter().any(|p| covers(p, channel))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_segment_any_depth_and_literals() {
        // (pattern, channel, covered)
        let cases = [
            ("chat/room1", "chat/room1", true),
            ("chat/room1", "chat/room2", false),
            ("chat/room1", "chat/room1/x", false),
            ("chat/room1", "chat", false),
            ("chat/*", "chat/room1", true),
            ("chat/*", "chat/room1/x", false),
            ("chat/*", "chat", false),
            ("chat/*", "chat/", false),
            ("chat/**", "chat/room1", true),
            ("chat/**", "chat/room1/x/y", true),
            ("chat/**", "chat", false),
            ("chat/**", "chatter/x", false),
            ("*/x", "a/x", true),
            ("*/x", "a/y", false),
            ("*", "a", true),
            ("*", "a/b", false),
            ("**", "a", true),
            ("**", "a/b/c", true),
            ("**/x", "a/x", false),
            ("chat/**/x", "chat/a/x", false),
            ("chat*", "chatter", false),
            ("chat*", "chat*", true),
            ("", "", true),
            ("", "a", false),
            ("a//b", "a//b", true),
            // Bayeux subscription patterns, as hub names.
            ("chat/*", "chat/*", true),
            ("chat/**", "chat/*", true),
            ("chat/**", "chat/**", true),
            ("chat/*", "chat/**", false),
            ("chat/room1", "chat/*", false),
            ("chat/*", "*/room1", false),
            ("**", "**", true),
            ("*", "**", false),
        ];
        for (pattern, channel, want) in cases {
            assert_eq!(covers(pattern, channel), want, "{pattern:?} {channel:?}");
        }
    }

    #[test]
    fn any_of_several() {
        let claims = vec!["user/42".to_string(), "chat/*".to_string()];
        assert!(any_covers(&claims, "user/42"));
        assert!(any_covers(&claims, "chat/a"));
        assert!(!any_covers(&claims, "user/43"));
        assert!(!any_covers(&[], "user/42"));
    }
}

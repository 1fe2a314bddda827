//! Bayeux channel names: which names are valid, what a subscription pattern
//! (`/a/*`, `/a/**`) matches, which channels are meta or service channels, and
//! the mapping between a Bayeux channel `/chat/room1` and the hub channel
//! `chat/room1`.
//!
//! halley accepts as a Bayeux channel exactly the names that map onto a hub
//! channel: segments of `[A-Za-z0-9_.:-]`, at most 128 bytes once the leading
//! `/` is dropped. The Bayeux grammar also allows `!~()$@` in segments, but a
//! channel the hub cannot hold could never be shared with SSE, stream or
//! long-poll subscribers, so refusing it up front (405) is the honest answer.

use crate::hub::{is_channel_byte, MAX_CHANNEL_NAME};

/// What a subscription pattern matches. The prefix keeps its trailing `/`
/// so that matching is a plain `starts_with`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Pattern {
    /// `/a/b`: that channel only.
    Exact(String),
    /// `/a/*`: channels one segment below the prefix `/a/`.
    OneLevel(String),
    /// `/a/**`: channels any number (at least one) of segments below `/a/`.
    AnyDepth(String),
}

/// Why a name was refused, so that replies can tell `400` from `405`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameError {
    /// Empty name.
    Missing,
    /// Not a channel halley can carry.
    Invalid,
}

/// A segment between slashes; split on `/`, so it holds none.
fn valid_segment(seg: &str) -> bool {
    !seg.is_empty() && seg.bytes().all(is_channel_byte)
}

/// Checks a concrete channel name (no wildcards), e.g. `/chat/room1`.
pub fn check_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Missing);
    }
    let Some(rest) = name.strip_prefix('/') else {
        return Err(NameError::Invalid);
    };
    if rest.is_empty() || rest.len() > MAX_CHANNEL_NAME || !rest.split('/').all(valid_segment) {
        return Err(NameError::Invalid);
    }
    Ok(())
}

impl Pattern {
    /// Parses a subscription: a channel name whose last segment may be `*` or `**`.
    pub fn parse(text: &str) -> Result<Pattern, NameError> {
        if text.is_empty() {
            return Err(NameError::Missing);
        }
        let (prefix, make): (&str, fn(String) -> Pattern) =
            if let Some(p) = text.strip_suffix("/**") {
                (p, Pattern::AnyDepth)
            } else if let Some(p) = text.strip_suffix("/*") {
                (p, Pattern::OneLevel)
            } else {
                check_name(text)?;
                return Ok(Pattern::Exact(text.to_string()));
            };
        // `/**` and `/*` have an empty prefix: they match every channel (at one or any depth).
        if !prefix.is_empty() {
            check_name(prefix)?;
        }
        Ok(make(format!("{prefix}/")))
    }

    /// Does this pattern match the concrete channel `name`?
    pub fn matches(&self, name: &str) -> bool {
        match self {
            Pattern::Exact(n) => n == name,
            Pattern::OneLevel(p) => name
                .strip_prefix(p.as_str())
                .is_some_and(|rest| !rest.is_empty() && !rest.contains('/')),
            Pattern::AnyDepth(p) => name
                .strip_prefix(p.as_str())
                .is_some_and(|rest| !rest.is_empty()),
        }
    }

    /// The text the client subscribed with, which is also the key of the
    /// engine's routing index.
    pub fn text(&self) -> String {
        match self {
            Pattern::Exact(n) => n.clone(),
            Pattern::OneLevel(p) => format!("{p}*"),
            Pattern::AnyDepth(p) => format!("{p}**"),
        }
    }

    /// The channel this pattern names when it has no wildcard.
    pub fn exact(&self) -> Option<&str> {
        match self {
            Pattern::Exact(n) => Some(n),
            _ => None,
        }
    }

    /// Meta or service patterns, which no client may subscribe to: meta
    /// messages are never broadcast and service messages go to the server only.
    /// `/**` and `/*` are allowed and simply never see them.
    pub fn is_reserved(&self) -> bool {
        let head = match self {
            Pattern::Exact(n) => n.as_str(),
            Pattern::OneLevel(p) | Pattern::AnyDepth(p) => p.as_str(),
        };
        is_meta(head) || is_service(head)
    }
}

/// Calls `f` with every pattern text that matches `name`, most specific
/// first: `/a/b/c`, `/a/b/*`, `/a/b/**`, `/a/**`, `/**` (and `/*` for a
/// one-segment name). These are the keys to look up in the routing index,
/// so a publish costs one hash lookup per segment, whatever the number of
/// subscriptions.
pub fn for_each_matching_pattern(name: &str, mut f: impl FnMut(&str)) {
    f(name);
    let mut key = String::with_capacity(name.len() + 2);
    let mut first = true;
    // Walk the `/` positions from the deepest parent up to the root.
    let mut end = name.len();
    while let Some(slash) = name[..end].rfind('/') {
        key.clear();
        key.push_str(&name[..=slash]);
        if first {
            key.push('*');
            f(&key);
            first = false;
        }
        key.truncate(slash + 1);
        key.push_str("**");
        f(&key);
        end = slash;
    }
}

/// Is this a `/meta/...` channel (never broadcast)?
pub fn is_meta(name: &str) -> bool {
    name == "/meta" || name.starts_with("/meta/")
}

/// Is this a `/service/...` channel (delivered to the server only)?
pub fn is_service(name: &str) -> bool {
    name == "/service" || name.starts_with("/service/")
}

/// Maps a valid Bayeux channel to its hub name: `/chat/room1` -> `chat/room1`.
pub fn to_hub(name: &str) -> Option<&str> {
    check_name(name).ok()?;
    Some(&name[1..])
}

/// Maps a hub channel to its Bayeux name: `chat/room1` -> `/chat/room1`.
/// Hub names are 1 to 128 bytes of `[A-Za-z0-9_.:/-]`; one with an empty
/// segment (`a//b`, `a/`) has no Bayeux name and is never delivered to Bayeux.
pub fn from_hub(hub: &str) -> Option<String> {
    let name = format!("/{hub}");
    check_name(&name).ok()?;
    Some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let cases: &[(&str, Result<(), NameError>)] = &[
            ("/chat/room1", Ok(())),
            ("/a", Ok(())),
            ("/a.b/c:d/e-f_g", Ok(())),
            ("", Err(NameError::Missing)),
            ("/", Err(NameError::Invalid)),
            ("chat", Err(NameError::Invalid)),
            ("/chat/", Err(NameError::Invalid)),
            ("/a//b", Err(NameError::Invalid)),
            ("/a/*", Err(NameError::Invalid)),
            ("/a b", Err(NameError::Invalid)),
            ("/a/é", Err(NameError::Invalid)),
        ];
        for (name, want) in cases {
            assert_eq!(check_name(name), *want, "{name:?}");
        }
        assert_eq!(check_name(&format!("/{}", "a".repeat(128))), Ok(()));
        assert_eq!(
            check_name(&format!("/{}", "a".repeat(129))),
            Err(NameError::Invalid)
        );
    }

    #[test]
    fn pattern_parsing() {
        let cases: &[(&str, Result<Pattern, NameError>)] = &[
            ("/a/b", Ok(Pattern::Exact("/a/b".into()))),
            ("/a/*", Ok(Pattern::OneLevel("/a/".into()))),
            ("/a/**", Ok(Pattern::AnyDepth("/a/".into()))),
            ("/**", Ok(Pattern::AnyDepth("/".into()))),
            ("/*", Ok(Pattern::OneLevel("/".into()))),
            ("/a/*/b", Err(NameError::Invalid)),
            ("/a/***", Err(NameError::Invalid)),
            ("/a*", Err(NameError::Invalid)),
            ("*", Err(NameError::Invalid)),
            ("", Err(NameError::Missing)),
        ];
        for (text, want) in cases {
            let got = Pattern::parse(text);
            assert_eq!(got, *want, "{text:?}");
            if let Ok(p) = got {
                assert_eq!(p.text(), *text, "text() round-trips");
            }
        }
    }

    #[test]
    fn wildcard_matching() {
        // (pattern, channel, matches)
        let cases = [
            ("/a/b", "/a/b", true),
            ("/a/b", "/a/b/c", false),
            ("/a/*", "/a/b", true),
            ("/a/*", "/a/b/c", false),
            ("/a/*", "/a", false),
            ("/a/*", "/ab/c", false),
            ("/a/**", "/a/b", true),
            ("/a/**", "/a/b/c/d", true),
            ("/a/**", "/a", false),
            ("/a/**", "/ab/c", false),
            ("/**", "/x", true),
            ("/**", "/x/y/z", true),
            ("/*", "/x", true),
            ("/*", "/x/y", false),
        ];
        for (pattern, channel, want) in cases {
            let p = Pattern::parse(pattern).unwrap();
            assert_eq!(p.matches(channel), want, "{pattern} vs {channel}");
        }
    }

    #[test]
    fn candidate_patterns_agree_with_matches() {
        let mut got = Vec::new();
        for_each_matching_pattern("/a/b/c", |k| got.push(k.to_string()));
        assert_eq!(got, ["/a/b/c", "/a/b/*", "/a/b/**", "/a/**", "/**"]);
        got.clear();
        for_each_matching_pattern("/x", |k| got.push(k.to_string()));
        assert_eq!(got, ["/x", "/*", "/**"]);
        // Every candidate really matches, so the index never over-delivers.
        for channel in ["/a/b/c", "/x", "/chat/room1"] {
            for_each_matching_pattern(channel, |k| {
                assert!(
                    Pattern::parse(k).unwrap().matches(channel),
                    "{k} vs {channel}"
                )
            });
        }
    }

    #[test]
    fn reserved_and_hub_mapping() {
        let reserved = [
            ("/meta/connect", true),
            ("/meta/**", true),
            ("/service/x", true),
            ("/**", false),
            ("/metadata", false),
        ];
        for (text, want) in reserved {
            assert_eq!(Pattern::parse(text).unwrap().is_reserved(), want, "{text}");
        }
        assert_eq!(to_hub("/chat/room1"), Some("chat/room1"));
        assert_eq!(to_hub("/chat/*"), None);
        assert_eq!(from_hub("chat/room1").as_deref(), Some("/chat/room1"));
        assert_eq!(from_hub("chat//x"), None);
        assert_eq!(from_hub("chat/"), None);
    }
}

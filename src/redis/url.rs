//! What a `--redis` URL names: `redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]`,
//! parsed once at start. Neither its `Display` nor its `Debug` shows the
//! password, and no parse error repeats the text it was given, so a URL or its
//! error can go in any log line.

use std::fmt;
use std::io;
use std::net::{Ipv6Addr, SocketAddr, ToSocketAddrs};

use crate::http::query::decode;

/// The port a URL without one means: Redis's own default.
pub const DEFAULT_PORT: u16 = 6379;

/// Where one Redis is and how to log in to it.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    /// A host name or an IP address; an IPv6 address without its brackets.
    pub host: String,
    pub port: u16,
    /// For `AUTH USER PASSWORD` (Redis 6 ACLs); `None` means the default user.
    /// Never set without `password`.
    pub username: Option<String>,
    /// For `AUTH`; `None` when Redis wants none.
    pub password: Option<String>,
    /// For `SELECT`.
    pub db: u32,
}

/// How to write a URL, for error messages.
const SHAPE: &str = "redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]";

/// Parses one `--redis` URL. Errors say what is wrong without repeating any
/// of the URL: a password with an unescaped `/` or `:` would otherwise show up
/// in them as a "port" or a "database".
pub fn parse(text: &str) -> Result<RedisUrl, String> {
    let Some((scheme, rest)) = text.split_once("://") else {
        return Err(format!("a Redis URL has the form {SHAPE}"));
    };
    if scheme.eq_ignore_ascii_case("rediss") {
        return Err("rediss:// (Redis over TLS) is not supported; use redis://".into());
    }
    if !scheme.eq_ignore_ascii_case("redis") {
        return Err(format!("the scheme must be redis://, as in {SHAPE}"));
    }
    if rest.contains(['?', '#']) {
        return Err(
            "a Redis URL takes no query (?) or fragment (#); percent-encode them in a password"
                .into(),
        );
    }
    let (authority, path) = match rest.find('/') {
        Some(slash) => rest.split_at(slash),
        None => (rest, ""),
    };
    let (username, password, host_port) = match authority.rsplit_once('@') {
        Some((user_info, host_port)) => {
            let (username, password) = credentials(user_info)?;
            (username, password, host_port)
        }
        None => (None, None, authority),
    };
    let (host, port) = host_and_port(host_port)?;
    Ok(RedisUrl {
        host,
        port,
        username,
        password,
        db: db(path)?,
    })
}

impl RedisUrl {
    /// The address to connect to: the first one the host resolves to. It may
    /// block on DNS, so it is called once, at start, before the loop runs.
    pub fn resolve(&self) -> io::Result<SocketAddr> {
        (self.host.as_str(), self.port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("Redis host {} resolves to no address", self.host),
                )
            })
    }
}

/// `USER:PASSWORD` or `:PASSWORD`, percent-decoded.
fn credentials(user_info: &str) -> Result<(Option<String>, Option<String>), String> {
    let Some((user, password)) = user_info.split_once(':') else {
        return Err(format!(
            "the part before '@' needs a ':' before the password, as in {SHAPE}"
        ));
    };
    let user = decode(user, false).map_err(|e| format!("the user name: {e}"))?;
    let password = decode(password, false).map_err(|e| format!("the password: {e}"))?;
    match (user.is_empty(), password.is_empty()) {
        (_, true) if !user.is_empty() => Err("a user name needs a password".into()),
        (_, true) => Ok((None, None)),
        (true, false) => Ok((None, Some(password))),
        (false, false) => Ok((Some(user), Some(password))),
    }
}

/// `HOST`, `HOST:PORT`, `[IPV6]` or `[IPV6]:PORT`.
fn host_and_port(text: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(bracketed) = text.strip_prefix('[') {
        let Some((address, after)) = bracketed.split_once(']') else {
            return Err("an IPv6 address opened with '[' is never closed with ']'".into());
        };
        if address.parse::<Ipv6Addr>().is_err() {
            return Err("the address in brackets is not an IPv6 address".into());
        }
        let port = match after {
            "" => None,
            _ => match after.strip_prefix(':') {
                Some(port) => Some(port),
                None => return Err("after an IPv6 address's ']' only :PORT may follow".into()),
            },
        };
        (address, port)
    } else {
        match text.split_once(':') {
            Some((_, port)) if port.contains(':') => {
                return Err("an IPv6 address goes in brackets, as in redis://[::1]:6379".into())
            }
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    if host.is_empty() {
        return Err(format!("the URL names no host, as in {SHAPE}"));
    }
    if !host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'))
    {
        return Err("the host is not a host name or IP address".into());
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(port) => match decimal::<u16>(port) {
            Some(port) if port > 0 => port,
            _ => return Err("the port is not a number from 1 to 65535".into()),
        },
    };
    Ok((host.to_owned(), port))
}

/// `""`, `"/"` or `"/DB"`.
fn db(path: &str) -> Result<u32, String> {
    match path {
        "" | "/" => Ok(0),
        _ => decimal::<u32>(&path[1..])
            .ok_or_else(|| "the database is not a number, as in redis://HOST/0".into()),
    }
}

/// Digits only: `str::parse` would also take a sign.
fn decimal<T: std::str::FromStr>(text: &str) -> Option<T> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

impl fmt::Display for RedisUrl {
    /// The URL with `***` for the password, for logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("redis://")?;
        match (&self.username, &self.password) {
            (Some(user), Some(_)) => write!(f, "{user}:***@")?,
            (Some(user), None) => write!(f, "{user}@")?,
            (None, Some(_)) => f.write_str(":***@")?,
            (None, None) => {}
        }
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            f.write_str(&self.host)?;
        }
        write!(f, ":{}/{}", self.port, self.db)
    }
}

impl fmt::Debug for RedisUrl {
    /// As derived, but with the password hidden, so a `Config` printed with
    /// `{:?}` leaks nothing.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisUrl")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("db", &self.db)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(
        host: &str,
        port: u16,
        username: Option<&str>,
        password: Option<&str>,
        db: u32,
    ) -> RedisUrl {
        RedisUrl {
            host: host.into(),
            port,
            username: username.map(Into::into),
            password: password.map(Into::into),
            db,
        }
    }

    #[test]
    fn parses_the_accepted_forms() {
        let cases = [
            ("redis://127.0.0.1", url("127.0.0.1", 6379, None, None, 0)),
            (
                "redis://127.0.0.1:7000",
                url("127.0.0.1", 7000, None, None, 0),
            ),
            ("redis://localhost/", url("localhost", 6379, None, None, 0)),
            (
                "redis://localhost:6380/3",
                url("localhost", 6380, None, None, 3),
            ),
            (
                "REDIS://cache.internal-1.example",
                url("cache.internal-1.example", 6379, None, None, 0),
            ),
            (
                "redis://:s3cret@10.0.0.5:6379/2",
                url("10.0.0.5", 6379, None, Some("s3cret"), 2),
            ),
            (
                "redis://app:s3cret@db:6379",
                url("db", 6379, Some("app"), Some("s3cret"), 0),
            ),
            // Escapes are decoded; an unescaped '@' or ':' in a password still
            // parses, since the host is after the last '@' and the password
            // after the first ':'.
            (
                "redis://:p%40ss%3Aw%2Fd@h",
                url("h", 6379, None, Some("p@ss:w/d"), 0),
            ),
            (
                "redis://us%65r:a@b:c@h",
                url("h", 6379, Some("user"), Some("a@b:c"), 0),
            ),
            ("redis://:@h", url("h", 6379, None, None, 0)),
            ("redis://[::1]", url("::1", 6379, None, None, 0)),
            ("redis://[::1]:6390/1", url("::1", 6390, None, None, 1)),
            (
                "redis://:pw@[fe80::1]:7000",
                url("fe80::1", 7000, None, Some("pw"), 0),
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(parse(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn refuses_everything_else_saying_why() {
        let cases = [
            ("127.0.0.1:6379", "has the form"),
            ("http://127.0.0.1:6379", "scheme must be redis://"),
            ("rediss://127.0.0.1:6379", "TLS"),
            ("redis://", "no host"),
            ("redis://:6379", "no host"),
            ("redis://:pw@/0", "no host"),
            ("redis://h:", "the port is not"),
            ("redis://h:0", "the port is not"),
            ("redis://h:65536", "the port is not"),
            ("redis://h:+80", "the port is not"),
            ("redis://h:http", "the port is not"),
            ("redis://h/x", "the database is not"),
            ("redis://h/-1", "the database is not"),
            ("redis://h/1/2", "the database is not"),
            ("redis://h/4294967296", "the database is not"),
            ("redis://h?db=1", "no query"),
            ("redis://::1:6379", "brackets"),
            ("redis://[::1", "never closed"),
            ("redis://[::1]x", "only :PORT"),
            ("redis://[nope]:1", "is not an IPv6 address"),
            ("redis://bad host", "not a host name"),
            ("redis://s3cret@h", "needs a ':'"),
            ("redis://user:@h", "needs a password"),
            ("redis://:%zz@h", "the password: broken percent-escape"),
        ];
        for (text, needle) in cases {
            match parse(text) {
                Ok(parsed) => panic!("{text} parsed as {parsed:?}"),
                Err(message) => assert!(
                    message.contains(needle),
                    "{text}: {message:?} lacks {needle:?}"
                ),
            }
        }
    }

    #[test]
    fn errors_never_repeat_a_password() {
        let cases = [
            "redis://:s3cret@h:99999",
            "redis://u:s3cret@[::1",
            "redis://:s3cret@h/x?y",
            "redis://s3cret@h",
            // Unescaped, a '/' cuts the password into a "port" and a "database".
            "redis://u:s3cr/et@h",
        ];
        for text in cases {
            let message = parse(text).unwrap_err();
            assert!(!message.contains("s3cr"), "{message:?}");
        }
    }

    #[test]
    fn displays_without_the_password() {
        let cases = [
            ("redis://127.0.0.1", "redis://127.0.0.1:6379/0"),
            ("redis://:s3cret@h:7000/2", "redis://:***@h:7000/2"),
            ("redis://app:s3cret@h", "redis://app:***@h:6379/0"),
            ("redis://[::1]:6390/1", "redis://[::1]:6390/1"),
        ];
        for (text, shown) in cases {
            let parsed = parse(text).unwrap();
            assert_eq!(parsed.to_string(), shown);
            assert!(!format!("{parsed:?}").contains("s3cret"), "{parsed:?}");
            // What is shown parses back to the same place (the password aside).
            let back = parse(shown).unwrap();
            assert_eq!(
                (back.host, back.port, back.db),
                (parsed.host, parsed.port, parsed.db)
            );
        }
    }

    #[test]
    fn resolves_addresses_and_names() {
        let v4 = parse("redis://127.0.0.1:7001").unwrap().resolve().unwrap();
        assert_eq!(v4, "127.0.0.1:7001".parse().unwrap());
        let v6 = parse("redis://[::1]:7002").unwrap().resolve().unwrap();
        assert_eq!(v6, "[::1]:7002".parse().unwrap());
        let named = parse("redis://localhost:7003").unwrap().resolve().unwrap();
        assert!(named.ip().is_loopback() && named.port() == 7003, "{named}");
    }
}

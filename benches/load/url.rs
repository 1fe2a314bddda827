//! URL templates such as `http://127.0.0.1:8080/sub/{channel}`: each server under test spells its
//! subscribe, publish and poll URLs differently, so the generator is told them rather than guessing.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

/// A parsed `http://HOST:PORT/PATH` whose path may contain `{channel}`.
#[derive(Debug, Clone, PartialEq)]
pub struct UrlTemplate {
    /// Where to connect. Only IPv4 literals and `localhost` are accepted, because every target
    /// of this generator must be on the loopback range.
    pub addr: SocketAddr,
    /// The `Host` header value, as written in the URL.
    pub host: String,
    path: String,
}

impl UrlTemplate {
    pub fn parse(url: &str) -> Result<UrlTemplate, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url}: only http:// URLs are supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().map_err(|_| format!("{url}: bad port"))?),
            None => (authority, 80),
        };
        let ip: Ipv4Addr = if host == "localhost" {
            Ipv4Addr::LOCALHOST
        } else {
            host.parse()
                .map_err(|_| format!("{url}: host must be an IPv4 address or localhost"))?
        };
        if !ip.is_loopback() {
            return Err(format!(
                "{url}: only loopback targets (127.0.0.0/8) are allowed"
            ));
        }
        Ok(UrlTemplate {
            addr: SocketAddr::V4(SocketAddrV4::new(ip, port)),
            host: authority.to_string(),
            path: path.to_string(),
        })
    }

    /// The request target for one channel.
    pub fn path(&self, channel: &str) -> String {
        self.path.replace("{channel}", channel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_renders() {
        let cases = [
            (
                "http://127.0.0.1:8080/sub/{channel}",
                "127.0.0.1:8080",
                "/sub/c1",
            ),
            (
                "http://localhost:9/pub/{channel}?x=1",
                "127.0.0.1:9",
                "/pub/c1?x=1",
            ),
            ("http://127.0.0.5", "127.0.0.5:80", "/"),
            (
                "http://127.1.2.3:7/a/{channel}/{channel}",
                "127.1.2.3:7",
                "/a/c1/c1",
            ),
        ];
        for (url, addr, path) in cases {
            let t = UrlTemplate::parse(url).unwrap();
            assert_eq!(t.addr.to_string(), addr, "{url}");
            assert_eq!(t.path("c1"), path, "{url}");
        }
    }

    #[test]
    fn refuses_what_it_cannot_or_must_not_reach() {
        for url in [
            "https://127.0.0.1/x",
            "http://10.0.0.1:80/x",
            "http://example.com/x",
            "http://127.0.0.1:notaport/x",
        ] {
            assert!(UrlTemplate::parse(url).is_err(), "{url}");
        }
    }
}

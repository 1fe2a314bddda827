//! Which addresses count as one client, for every per-client bound (the
//! open-publish rate limit, Bayeux sessions per address,
//! `--max-connections-per-ip`). An IPv6 host usually owns a whole /64, so
//! bounding single IPv6 addresses would bound nothing; an IPv4-mapped IPv6
//! address counts as the IPv4 address it is.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::conn_id::ConnId;

/// The key an address is bounded under.
pub fn client_key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(bits.into())
            }
        },
    }
}

/// Open connections per client (`--max-connections-per-ip`). It knows each
/// admitted connection's client, so a connection's end gives its place back
/// without the socket (whose peer address may be gone by then). A client's
/// entry goes with its last connection: the map holds only clients with
/// connections open, and so is bounded by them.
pub struct ConnsPerClient {
    limit: u32,
    open: HashMap<IpAddr, u32>,
    client_of: HashMap<ConnId, IpAddr>,
}

impl ConnsPerClient {
    pub fn new(limit: u32) -> ConnsPerClient {
        ConnsPerClient {
            limit,
            open: HashMap::new(),
            client_of: HashMap::new(),
        }
    }

    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Counts connection `conn` from `addr` against its client's limit;
    /// `false` (and nothing counted) if the client has `limit` open already.
    pub fn admit(&mut self, conn: ConnId, addr: IpAddr) -> bool {
        let client = client_key(addr);
        let open = self.open.entry(client).or_default();
        if *open >= self.limit {
            return false;
        }
        *open += 1;
        self.client_of.insert(conn, client);
        true
    }

    /// Connection `conn` ended; a connection never admitted is ignored.
    pub fn release(&mut self, conn: ConnId) {
        let Some(client) = self.client_of.remove(&conn) else {
            return;
        };
        if let Some(open) = self.open.get_mut(&client) {
            *open -= 1;
            if *open == 0 {
                self.open.remove(&client);
            }
        }
    }

    /// Clients with a connection open.
    pub fn n_clients(&self) -> usize {
        self.open.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conns_per_client_are_bounded_and_given_back() {
        let conn = |slot| ConnId { slot, gen: 0 };
        let mut per = ConnsPerClient::new(2);
        // (step, conn, address or release, admitted)
        let steps: [(u32, Option<&str>, bool); 9] = [
            (1, Some("192.0.2.1"), true),
            (2, Some("192.0.2.1"), true),
            (3, Some("192.0.2.1"), false),
            // Another address is another client.
            (4, Some("192.0.2.2"), true),
            // The same /64 is the same client; a mapped address is its IPv4.
            (5, Some("2001:db8::1"), true),
            (6, Some("2001:db8::ffff"), true),
            (7, Some("::ffff:192.0.2.1"), false),
            // A refused connection releases nothing; an admitted one does.
            (3, None, true),
            (1, None, true),
        ];
        for (slot, addr, admitted) in steps {
            match addr {
                Some(a) => assert_eq!(per.admit(conn(slot), a.parse().unwrap()), admitted, "{a}"),
                None => per.release(conn(slot)),
            }
        }
        assert!(
            per.admit(conn(8), "192.0.2.1".parse().unwrap()),
            "one place given back"
        );
        assert!(!per.admit(conn(9), "192.0.2.1".parse().unwrap()));
        for slot in [2, 4, 5, 6, 8] {
            per.release(conn(slot));
        }
        assert_eq!(
            per.n_clients(),
            0,
            "no entry outlives its client's last connection"
        );
    }

    #[test]
    fn one_key_per_ipv4_address_per_ipv6_64_and_mapped_as_ipv4() {
        let key = |s: &str| client_key(s.parse().unwrap()).to_string();
        let cases = [
            ("192.0.2.1", "192.0.2.1"),
            ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::"),
            ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::"),
            ("2001:db8:1:3::1", "2001:db8:1:3::"),
            ("::ffff:192.0.2.7", "192.0.2.7"),
        ];
        for (addr, want) in cases {
            assert_eq!(key(addr), want, "{addr}");
        }
    }
}

//! Which addresses count as one client, for every per-client bound (the
//! open-publish rate limit, Bayeux sessions per address). An IPv6 host
//! usually owns a whole /64, so bounding single IPv6 addresses would bound
//! nothing; an IPv4-mapped IPv6 address counts as the IPv4 address it is.

use std::net::IpAddr;

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

#[cfg(test)]
mod tests {
    use super::*;

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

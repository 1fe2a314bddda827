//! Connection ids: a slab slot plus a generation. Slots are reused as soon as a
//! connection closes, so anything that outlives a connection (a deadline, a hub
//! subscription, a mio event already queued) names it by id, and a stale id is
//! recognised because its generation no longer matches.

/// Identifies one connection for its whole life, and never a later one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnId {
    pub slot: u32,
    pub gen: u32,
}

impl ConnId {
    /// The mio token for this connection: generation in the high half, slot in
    /// the low half. Tokens at the very top of the range are reserved for the
    /// listener and the signal pipe, which real ids never reach.
    pub fn token(self) -> mio::Token {
        mio::Token(((self.gen as usize) << 32) | self.slot as usize)
    }

    pub fn from_token(token: mio::Token) -> ConnId {
        ConnId {
            slot: token.0 as u32,
            gen: (token.0 >> 32) as u32,
        }
    }
}

/// `slot.gen`, as the trace names connections (`conn 12.3`).
/// How the trace names a connection: `#GEN`. Generations come from one
/// counter for the whole server, so the generation alone names a connection
/// for the server's life (until the counter wraps at 2^32), while its slot is
/// reused as soon as it closes.
impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.gen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        for id in [
            ConnId { slot: 0, gen: 0 },
            ConnId { slot: 7, gen: 3 },
            ConnId {
                slot: u32::MAX - 1,
                gen: 9,
            },
        ] {
            assert_eq!(ConnId::from_token(id.token()), id);
        }
    }
}

//! The connection table: every open connection in a slab, named by a
//! `ConnId` (slot and generation), and the three lists of connections the
//! loop comes back to after the batch of events: closed ones to free (reap),
//! unparked ones whose buffered requests may now run (resume), and ones whose
//! turn ran out of budget (ready). A handler never frees a connection; it
//! closes it here, and the reap phase frees it, so no id in flight ever
//! names a vanished connection.

use std::net::IpAddr;

use slab::Slab;

use super::conn::{Conn, State, Subscription};
use crate::client::ConnsPerClient;
use crate::conn_id::ConnId;

#[derive(Default)]
pub struct Conns {
    slab: Slab<Conn>,
    /// The generation the next connection gets; wraps, which is harmless
    /// because a slot is reused long before 2^32 connections come and go.
    next_gen: u32,
    to_reap: Vec<ConnId>,
    to_resume: Vec<ConnId>,
    /// Connections whose turn ran out with input perhaps still in the
    /// kernel, which no readiness edge will announce again.
    ready: Vec<ConnId>,
    /// `ready`'s spare buffer, swapped in while its entries are driven.
    ready_now: Vec<ConnId>,
    /// The hub subscriptions of closed `/ws` connections, which hold many
    /// where the `Closed` state keeps one; undone with the reap.
    leaving: Vec<(ConnId, Subscription)>,
    /// With `--max-connections-per-ip`: each client's open connections.
    per_client: Option<ConnsPerClient>,
}

impl Conns {
    /// A table whose connections are bounded per client (`--max-connections-per-ip`).
    pub fn with_per_client_limit(limit: Option<u32>) -> Conns {
        Conns {
            per_client: limit.map(ConnsPerClient::new),
            ..Conns::default()
        }
    }

    /// Counts the connection about to be inserted as `id` against its
    /// client's limit, or returns the limit it would pass. Its place is given
    /// back when it is reaped (or by `forget_admitted` if it never goes in).
    pub fn admit(&mut self, id: ConnId, peer: IpAddr) -> Result<(), u32> {
        match &mut self.per_client {
            Some(per) => match per.admit(id, peer) {
                true => Ok(()),
                false => Err(per.limit()),
            },
            None => Ok(()),
        }
    }

    pub fn forget_admitted(&mut self, id: ConnId) {
        if let Some(per) = &mut self.per_client {
            per.release(id);
        }
    }

    /// Clients with a connection open, when connections are bounded per client.
    pub fn n_clients(&self) -> Option<usize> {
        self.per_client.as_ref().map(ConnsPerClient::n_clients)
    }

    pub fn len(&self) -> usize {
        self.slab.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slab.is_empty()
    }

    /// The id the next `insert` will get; the socket is registered with the
    /// poll under it before the connection goes in.
    pub fn next_id(&self) -> ConnId {
        ConnId {
            slot: self.slab.vacant_key() as u32,
            gen: self.next_gen,
        }
    }

    pub fn insert(&mut self, make: impl FnOnce(ConnId) -> Conn) -> ConnId {
        let id = self.next_id();
        self.next_gen = self.next_gen.wrapping_add(1);
        let slot = self.slab.insert(make(id));
        debug_assert_eq!(slot, id.slot as usize);
        id
    }

    /// The open connection `id` names: `None` once it has closed, or when its
    /// slot now holds a later connection (the generation tells them apart).
    pub fn get(&mut self, id: ConnId) -> Option<&mut Conn> {
        self.slab
            .get_mut(id.slot as usize)
            .filter(|c| c.gen == id.gen && !c.is_closed())
    }

    /// The ids of every connection, for the rare sweeps (shutdown).
    pub fn ids(&self) -> Vec<ConnId> {
        self.slab
            .iter()
            .map(|(slot, c)| ConnId {
                slot: slot as u32,
                gen: c.gen,
            })
            .collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Conn> {
        self.slab.iter().map(|(_, c)| c)
    }

    /// Closes `id` (it is freed in the reap phase). Returns whether it was
    /// holding a Bayeux connect, which the engine must hear of at once, or
    /// `None` if it was closed already.
    pub fn close(&mut self, id: ConnId) -> Option<bool> {
        let conn = self.get(id)?;
        if let Some(mux) = conn.mux() {
            let subs = std::mem::take(&mut mux.subs);
            self.leaving.extend(subs.into_iter().map(|s| (id, s)));
        }
        let conn = self.get(id)?;
        conn.close();
        let held_connect = matches!(
            conn.state(),
            State::Closed {
                held_connect: true,
                ..
            }
        );
        self.to_reap.push(id);
        Some(held_connect)
    }

    /// `id` was unparked and may have requests buffered behind the one just
    /// answered: run them in the resume phase, never in the middle of a fan-out.
    pub fn resume_later(&mut self, id: ConnId) {
        self.to_resume.push(id);
    }

    pub fn next_to_resume(&mut self) -> Option<ConnId> {
        self.to_resume.pop()
    }

    /// `id` spent its turn's budget: it is driven again in the resume phase.
    pub fn yield_turn(&mut self, id: ConnId) {
        self.ready.push(id);
    }

    pub fn any_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// The connections that yielded their turn, each to be driven once; one
    /// that yields again meanwhile waits for the next iteration. Hand the
    /// list back with `ready_done` so its buffer is reused.
    pub fn take_ready(&mut self) -> Vec<ConnId> {
        std::mem::swap(&mut self.ready, &mut self.ready_now);
        std::mem::take(&mut self.ready_now)
    }

    pub fn ready_done(&mut self, mut list: Vec<ConnId>) {
        list.clear();
        self.ready_now = list;
    }

    /// The reap phase: frees every connection closed in this iteration and
    /// passes each hub subscription one still held to `unsubscribe`.
    /// Dropping the socket closes it, which also takes it out of epoll.
    pub fn reap(&mut self, mut reaped: impl FnMut(ConnId, Option<Subscription>)) {
        for id in std::mem::take(&mut self.to_reap) {
            let Some(conn) = self.slab.get_mut(id.slot as usize) else {
                continue;
            };
            if conn.gen != id.gen || !conn.is_closed() {
                continue;
            }
            if let Some(per) = &mut self.per_client {
                per.release(id);
            }
            reaped(id, self.slab.remove(id.slot as usize).into_subscription());
        }
        for (id, sub) in self.leaving.drain(..) {
            reaped(id, Some(sub));
        }
    }

    #[cfg(test)]
    pub fn n_to_reap(&self) -> usize {
        self.to_reap.len()
    }
}

//! Publishing and deleting through Redis: the `PUBLISH` and `DELETE` scripts
//! go to the channel's shard, the request waits (`State::Waiting`, bounded
//! by `--redis-timeout`), and the script's reply answers it. The message
//! itself comes back through pub/sub to every node, this one included, so
//! every subscriber gets it by one path (`feed.rs`).

use std::rc::Rc;
use std::time::{Instant, SystemTime};

use log::{debug, warn};

use super::{Op, Server};
use crate::conn_id::ConnId;
use crate::redis::resp::Value;
use crate::redis::scripts::{self, Published};
use crate::server::conn::State;
use crate::server::publish::{idempotency_conflict, publish_reply, Draft, Publisher};
use crate::server::respond::{Ask, JSON};

impl Server {
    /// The first half of a publish with Redis: the script is queued for the
    /// channel's shard, and an HTTP publisher waits for its reply.
    pub(in crate::server) fn publish_via_redis(&mut self, draft: Draft, publisher: Publisher) {
        let now = self.now;
        let cluster = self.cluster.as_mut().expect("publishing via Redis");
        let shard = cluster.shard_of(&draft.channel);
        if !cluster.shards[shard].cmd.is_open() {
            cluster.figures.publishes += 1;
            return self.publish_failed(publisher, "redis unavailable");
        }
        let keys = scripts::Keys::of(&draft.channel);
        let epoch = cluster.new_epoch();
        let buffer = cluster.buffer.to_string();
        let ttl = cluster.message_ttl.as_millis().to_string();
        let meta_ttl = cluster.meta_ttl.as_millis().to_string();
        let time = scripts::unix_ms(SystemTime::now()).to_string();
        let flag: &[u8] = if draft.data_is_json { b"j" } else { b"t" };
        let event = draft.event.as_deref().unwrap_or("");
        // With an `Idempotency-Key`, the script checks and sets it too, in
        // the same atomic step as the publish (a fourth key, three more
        // arguments).
        let idempotency = match &publisher {
            Publisher::Http {
                idempotency: Some(k),
                subscribers,
                ..
            } => Some((
                scripts::idempotency_key(&draft.channel, &k.key),
                k.hash.clone(),
                self.config.idempotency_ttl.as_millis().to_string(),
                subscribers.to_string(),
            )),
            _ => None,
        };
        let n_keys: &[u8] = if idempotency.is_some() { b"4" } else { b"3" };
        let mut args: Vec<&[u8]> = vec![
            b"EVALSHA",
            cluster.shas[scripts::PUBLISH_INDEX].as_bytes(),
            n_keys,
            keys.meta.as_bytes(),
            keys.stream.as_bytes(),
            keys.pubsub.as_bytes(),
        ];
        if let Some((key, ..)) = &idempotency {
            args.push(key.as_bytes());
        }
        args.extend_from_slice(&[
            epoch.as_bytes(),
            buffer.as_bytes(),
            ttl.as_bytes(),
            meta_ttl.as_bytes(),
            time.as_bytes(),
            flag,
            event.as_bytes(),
            draft.data.as_bytes(),
        ]);
        if let Some((_, hash, ttl, subscribers)) = &idempotency {
            args.extend_from_slice(&[hash.as_bytes(), ttl.as_bytes(), subscribers.as_bytes()]);
        }
        let waiting = match &publisher {
            Publisher::Http { id, ask, .. } => Some((*id, ask.keep_alive)),
            // A socket goes on reading commands; its answer comes as a frame.
            Publisher::Bayeux | Publisher::Mux(_) => None,
        };
        let op = Op::Publish {
            publisher,
            channel: Rc::from(draft.channel.as_str()),
            sent: now,
        };
        cluster.shards[shard].cmd.send(&args, op, now);
        cluster.figures.publishes += 1;
        let timeout = cluster.timeout;
        if let Some((id, keep_alive)) = waiting {
            if let Some(conn) = self.conns.get(id) {
                conn.wait_for_redis(keep_alive);
            }
            self.set_deadline(id, now + timeout);
        }
    }

    /// The publish script answered: the publisher gets the id every
    /// subscriber will see.
    pub(super) fn on_publish_reply(
        &mut self,
        publisher: Publisher,
        channel: &str,
        sent: Instant,
        reply: Value,
    ) {
        let cluster = self.cluster.as_mut().expect("a Redis reply");
        let published = scripts::published(&reply);
        let f = &mut cluster.figures;
        match &published {
            Ok(_) => {
                let rtt = self.now.saturating_duration_since(sent).as_micros() as u64;
                f.rtt_last_us = rtt;
                f.rtt_sum_us += rtt;
                f.rtt_max_us = f.rtt_max_us.max(rtt);
            }
            Err(why) => {
                f.publish_failures += 1;
                warn!("redis: a publish to {channel} failed: {why}");
            }
        }
        if let Publisher::Mux(id) = publisher {
            return match published {
                Ok(Published::New { epoch, seq } | Published::Repeat { epoch, seq, .. }) => {
                    let message_id = crate::cursor::format(epoch, seq);
                    self.answer_mux_publish(id, &message_id, channel)
                }
                _ => self.mux_publish_failed(id, channel, "redis refused the publish"),
            };
        }
        let Publisher::Http {
            id,
            subscribers,
            started,
            ..
        } = publisher
        else {
            return;
        };
        let Some(keep_alive) = self.waiting_keep_alive(id) else {
            debug!("{id:?}: the publish was answered after its connection moved on");
            return;
        };
        let ask = Ask {
            keep_alive,
            head_only: false,
        };
        match published {
            Ok(Published::New { epoch, seq }) => {
                let message_id = crate::cursor::format(epoch, seq);
                let reply = publish_reply(&message_id, channel, subscribers);
                self.respond(id, ask, 201, JSON, &reply, &[]);
                // The round trip to Redis is part of the latency.
                self.counters.publish.observe(started.elapsed());
            }
            // A retry, maybe of a publish made through another node: the
            // first publish's answer, rebuilt from what Redis kept of it.
            Ok(Published::Repeat {
                epoch,
                seq,
                subscribers,
            }) => {
                let message_id = crate::cursor::format(epoch, seq);
                let reply = publish_reply(&message_id, channel, subscribers as usize);
                self.counters.idempotent_replays += 1;
                self.respond(id, ask, 201, JSON, &reply, &[]);
            }
            Ok(Published::Conflict) => self.reject(id, idempotency_conflict(), ask),
            Err(_) => self.redis_unavailable(id, ask, "redis refused the publish"),
        }
        self.conns.resume_later(id);
    }

    /// A publish that cannot reach Redis: an HTTP publisher gets 503 at once.
    pub(super) fn publish_failed(&mut self, publisher: Publisher, why: &str) {
        if let Some(cluster) = self.cluster.as_mut() {
            cluster.figures.publish_failures += 1;
        }
        let (id, ask) = match publisher {
            Publisher::Http { id, ask, .. } => (id, ask),
            Publisher::Mux(id) => return self.mux_publish_failed(id, "", why),
            Publisher::Bayeux => {
                warn!("redis: a Bayeux publish was lost: {why}");
                return;
            }
        };
        let ask = match self.waiting_keep_alive(id) {
            Some(keep_alive) => Ask {
                keep_alive,
                head_only: false,
            },
            None => ask,
        };
        self.redis_unavailable(id, ask, why);
        self.conns.resume_later(id);
    }

    /// `DELETE /pub/{channel}` with Redis: the script removes the messages
    /// and tells every node, whose subscribers then get their end.
    pub(in crate::server) fn delete_via_redis(&mut self, id: ConnId, ask: Ask, channel: &str) {
        let now = self.now;
        let cluster = self.cluster.as_mut().expect("deleting via Redis");
        let shard = cluster.shard_of(channel);
        if !cluster.shards[shard].cmd.is_open() {
            return self.redis_unavailable(id, ask, "redis unavailable");
        }
        let keys = scripts::Keys::of(channel);
        let args: [&[u8]; 6] = [
            b"EVALSHA",
            cluster.shas[scripts::DELETE_INDEX].as_bytes(),
            b"3",
            keys.meta.as_bytes(),
            keys.stream.as_bytes(),
            keys.pubsub.as_bytes(),
        ];
        let op = Op::Delete {
            id,
            ask,
            channel: channel.into(),
        };
        cluster.shards[shard].cmd.send(&args, op, now);
        let timeout = cluster.timeout;
        if let Some(conn) = self.conns.get(id) {
            conn.wait_for_redis(ask.keep_alive);
        }
        self.set_deadline(id, now + timeout);
    }

    pub(super) fn on_delete_reply(&mut self, id: ConnId, ask: Ask, channel: &str, reply: Value) {
        if self.waiting_keep_alive(id).is_none() {
            return;
        }
        match reply {
            Value::Int(1) => self.respond(id, ask, 204, JSON, b"", &[]),
            Value::Int(0) => self.reject(
                id,
                crate::http::Reject::new(404, format!("no channel {channel}")),
                ask,
            ),
            other => {
                warn!("redis: deleting {channel} answered {other:?}");
                self.redis_unavailable(id, ask, "redis refused the delete");
            }
        }
        self.conns.resume_later(id);
    }

    /// Whether connection `id` still waits for Redis, and its keep-alive.
    fn waiting_keep_alive(&mut self, id: ConnId) -> Option<bool> {
        match self.conns.get(id)?.state() {
            State::Waiting { keep_alive } => Some(*keep_alive),
            _ => None,
        }
    }
}

//! What halley keeps in Redis, and the three Lua scripts that change or read
//! it, each one atomic on the Redis side; plus the decoding of their replies
//! and of the pub/sub payload into `Message`s. Pure: commands are built into
//! argument lists and replies read from `resp::Value`s.
//!
//! Per channel `CH` (braces make the two keys share a slot, should the Redis
//! be a Redis Cluster):
//! - `halley:{CH}:meta`, a hash: `epoch` (hex, unpadded; ids pad it to 12
//!   digits) and `seq`, the last
//!   sequence number given. It outlives the messages (`--redis-meta-ttl`, a
//!   month by default, renewed by every publish and read), so a cursor whose
//!   messages merely expired is told `expired`, and numbers never restart
//!   under a client. When it is gone (Redis lost it), the next script to
//!   touch the channel starts a new epoch at 0: cursors of the old one are
//!   told `restarted`.
//! - `halley:{CH}:stream`, a Redis Stream of the last `--buffer` messages,
//!   entry id `SEQ-0`, fields `t` (publish time, Unix ms), `f` (`j` JSON data
//!   or `t` text), `e` (SSE event type, may be empty), `d` (data). It expires
//!   `--message-ttl` after the last publish; readers also leave out entries
//!   older than the TTL, which is how a message expires on its own.
//! - `halley:{CH}:idem:K`, a string: a publish's `Idempotency-Key` `K`,
//!   as `HASH EPOCH SEQ SUBSCRIBERS` (its body's hash, its message's
//!   position, the count its `201` reported), for `--idempotency-ttl`.
//! - pub/sub channel `halley:{CH}`: each publish, as
//!   `m EPOCH SEQ TIME FLAG EVENTLEN\nEVENTDATA`; a deletion as
//!   `d EPOCH SEQ\n`.

use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::merge::History;
use super::resp::Value;
use crate::cursor;
use crate::message::Message;

/// Publishes one message. KEYS: meta, stream, pub/sub channel, and for a
/// publish with an `Idempotency-Key` its key (`Keys::idempotency`). ARGV: a
/// fresh epoch for a new channel, the stream's length bound, the message TTL
/// (ms), the meta TTL (ms), the time (Unix ms), the data flag, the event,
/// the data; with the key also the body's hash, the key's TTL (ms) and the
/// subscriber count the `201` reports. Returns `{epoch, seq}`; for a key
/// already used, publishing nothing, `{epoch, seq, subscribers}` of its
/// first publish when the hash is the same, else 0 (see `published`).
pub const PUBLISH: &str = r"
if KEYS[4] then
  local prior = redis.call('GET', KEYS[4])
  if prior then
    local hash, e, s, subs = string.match(prior, '^(%x+) (%x+) (%d+) (%d+)$')
    if hash ~= ARGV[9] then return 0 end
    return {e, tonumber(s), tonumber(subs)}
  end
end
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'seq', 0)
end
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[2], seq .. '-0',
  't', ARGV[5], 'f', ARGV[6], 'e', ARGV[7], 'd', ARGV[8])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PUBLISH', KEYS[3], 'm ' .. epoch .. ' ' .. seq .. ' ' .. ARGV[5] .. ' ' ..
  ARGV[6] .. ' ' .. #ARGV[7] .. '\n' .. ARGV[7] .. ARGV[8])
if KEYS[4] then
  redis.call('SET', KEYS[4], ARGV[9] .. ' ' .. epoch .. ' ' .. seq .. ' ' .. ARGV[11],
    'PX', ARGV[10])
end
return {epoch, seq}
";

/// Reads a channel's position and the stream after a sequence number, in
/// one snapshot; a channel Redis does not know starts a new epoch here, so
/// every subscriber has a real position. KEYS: meta, stream. ARGV: a fresh
/// epoch, the sequence number to read after, the most entries (0: position
/// only), the meta TTL (ms). Returns `{epoch, seq, entries}`.
pub const READ: &str = r"
local epoch = redis.call('HGET', KEYS[1], 'epoch')
local last = 0
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'seq', 0)
else
  last = tonumber(redis.call('HGET', KEYS[1], 'seq'))
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
local entries = {}
if tonumber(ARGV[3]) > 0 then
  entries = redis.call('XRANGE', KEYS[2], '(' .. ARGV[2] .. '-0', '+', 'COUNT', ARGV[3])
end
return {epoch, last, entries}
";

/// Deletes a channel's messages and tells every node; the meta stays, so the
/// channel's numbers go on if it is used again. KEYS: meta, stream, pub/sub
/// channel. Returns 0 when Redis knows no such channel, else 1.
pub const DELETE: &str = r"
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then return 0 end
redis.call('DEL', KEYS[2])
local seq = redis.call('HGET', KEYS[1], 'seq')
redis.call('PUBLISH', KEYS[3], 'd ' .. epoch .. ' ' .. seq .. '\n')
return 1
";

/// The scripts, in the order a link loads them.
pub const ALL: [&str; 3] = [PUBLISH, READ, DELETE];
pub const PUBLISH_INDEX: usize = 0;
pub const READ_INDEX: usize = 1;
pub const DELETE_INDEX: usize = 2;

/// Prefix of every key and pub/sub channel halley uses.
pub const PREFIX: &str = "halley:{";

/// The names of a channel's keys in Redis.
pub struct Keys {
    pub meta: String,
    pub stream: String,
    pub pubsub: String,
}

impl Keys {
    pub fn of(channel: &str) -> Keys {
        Keys {
            meta: format!("{PREFIX}{channel}}}:meta"),
            stream: format!("{PREFIX}{channel}}}:stream"),
            pubsub: pubsub_channel(channel),
        }
    }
}

/// The key remembering a publish's `Idempotency-Key` on `channel`, in the
/// channel's slot: `HASH EPOCH SEQ SUBSCRIBERS`, for `--idempotency-ttl`.
pub fn idempotency_key(channel: &str, key: &str) -> String {
    format!("{PREFIX}{channel}}}:idem:{key}")
}

pub fn pubsub_channel(channel: &str) -> String {
    format!("{PREFIX}{channel}}}")
}

/// The hub channel a pub/sub channel carries, if it is one of halley's.
pub fn channel_of(pubsub: &[u8]) -> Option<&str> {
    let inner = pubsub.strip_prefix(PREFIX.as_bytes())?.strip_suffix(b"}")?;
    let name = std::str::from_utf8(inner).ok()?;
    crate::hub::validate_channel(name).ok()?;
    Some(name)
}

/// The Redis pattern for a Bayeux wildcard subscription below `prefix` (the
/// hub name of the pattern's fixed part, with its trailing `/`, or empty for
/// `/*` and `/**`). A Redis `*` matches any depth, so the pattern is a
/// superset; the Bayeux engine picks the exact matches.
pub fn pubsub_pattern(prefix: &str) -> String {
    format!("{PREFIX}{prefix}*")
}

/// Does a pattern made by `pubsub_pattern` match this hub channel?
pub fn pattern_matches(pattern: &str, channel: &str) -> bool {
    let prefix = &pattern[PREFIX.len()..pattern.len() - 1];
    channel.starts_with(prefix)
}

/// The wall clock in Unix milliseconds, as the stream stores publish times.
pub fn unix_ms(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What a pub/sub payload announces.
pub enum Notice {
    Message(Rc<Message>),
    /// The channel was deleted at this position.
    Deleted {
        epoch: u64,
        seq: u64,
    },
}

/// The context a decoded message is built in: its shared channel name, the
/// loop's `now`, and the wall clock and TTL to tell expired entries by.
pub struct Decode<'a> {
    pub channel: &'a Rc<str>,
    pub now: Instant,
    pub unix_ms: u64,
    pub ttl: Duration,
}

impl<'a> Decode<'a> {
    /// For pub/sub payloads only: a live message is never expired, so no
    /// clock or TTL is needed.
    pub fn live(channel: &'a Rc<str>, now: Instant) -> Decode<'a> {
        Decode {
            channel,
            now,
            unix_ms: 0,
            ttl: Duration::ZERO,
        }
    }

    /// Reads a pub/sub payload; `None` if it is not one halley wrote.
    pub fn notice(&self, payload: &[u8]) -> Option<Notice> {
        let newline = payload.iter().position(|&b| b == b'\n')?;
        let head = std::str::from_utf8(&payload[..newline]).ok()?;
        let body = &payload[newline + 1..];
        let mut words = head.split(' ');
        let kind = words.next()?;
        let epoch = u64::from_str_radix(words.next()?, 16).ok()?;
        let seq: u64 = words.next()?.parse().ok()?;
        match kind {
            "d" => Some(Notice::Deleted { epoch, seq }),
            "m" => {
                let time: u64 = words.next()?.parse().ok()?;
                let flag = words.next()?;
                let event_len: usize = words.next()?.parse().ok()?;
                let event = body.get(..event_len)?;
                let data = &body[event_len..];
                self.message(epoch, seq, time, flag.as_bytes(), event, data)
                    .map(Notice::Message)
            }
            _ => None,
        }
    }

    /// Builds a message from its parts, as stored or published.
    fn message(
        &self,
        epoch: u64,
        seq: u64,
        _time: u64,
        flag: &[u8],
        event: &[u8],
        data: &[u8],
    ) -> Option<Rc<Message>> {
        let data = std::str::from_utf8(data).ok()?;
        let event = match event {
            b"" => None,
            e => Some(std::str::from_utf8(e).ok()?.into()),
        };
        Some(Rc::new(Message::new(
            epoch,
            seq,
            cursor::format(epoch, seq),
            self.channel.clone(),
            event,
            data.into(),
            flag == b"j",
            self.now,
        )))
    }

    /// Reads the `READ` script's reply; entries older than the TTL are left
    /// out. `count` is what the read asked for, to tell a cut-short read.
    pub fn history(&self, reply: Value, count: usize) -> Result<History, String> {
        let Value::Array(mut parts) = reply else {
            return Err(format!("read answered {reply:?}"));
        };
        if parts.len() != 3 {
            return Err("read answered a reply of the wrong shape".into());
        }
        let entries = parts.pop().expect("three parts");
        let last = parts.pop().expect("three parts");
        let epoch = parse_epoch(&parts[0])?;
        let Value::Int(last) = last else {
            return Err("read answered no sequence number".into());
        };
        let Value::Array(entries) = entries else {
            return Err("read answered no entries".into());
        };
        let truncated = count > 0 && entries.len() >= count;
        let oldest_kept = self.unix_ms.saturating_sub(self.ttl.as_millis() as u64);
        let mut messages = Vec::with_capacity(entries.len());
        for entry in entries {
            let (seq, fields) = entry_parts(entry)?;
            let field = |name: &[u8]| -> &[u8] {
                fields
                    .chunks(2)
                    .find(|pair| pair[0] == name)
                    .map_or(&[][..], |pair| &pair[1][..])
            };
            let time: u64 = std::str::from_utf8(field(b"t"))
                .ok()
                .and_then(|t| t.parse().ok())
                .unwrap_or(0);
            if time < oldest_kept {
                continue;
            }
            let message = self
                .message(epoch, seq, time, field(b"f"), field(b"e"), field(b"d"))
                .ok_or("a stream entry is not halley's")?;
            messages.push(message);
        }
        Ok(History {
            epoch,
            last: last.max(0) as u64,
            entries: messages,
            truncated,
        })
    }
}

/// What the `PUBLISH` script did.
#[derive(Debug, PartialEq, Eq)]
pub enum Published {
    /// Published: the message's epoch and sequence number.
    New { epoch: u64, seq: u64 },
    /// Nothing published: the `Idempotency-Key` was used for the same body,
    /// whose publish got these.
    Repeat {
        epoch: u64,
        seq: u64,
        subscribers: u64,
    },
    /// Nothing published: the `Idempotency-Key` was used for another body.
    Conflict,
}

/// Reads the `PUBLISH` script's reply.
pub fn published(reply: &Value) -> Result<Published, String> {
    let seq = |v: &Value| match v {
        Value::Int(seq) if *seq > 0 => Ok(*seq as u64),
        _ => Err("publish answered no sequence number".to_string()),
    };
    match reply {
        Value::Array(parts) if parts.len() == 2 => Ok(Published::New {
            epoch: parse_epoch(&parts[0])?,
            seq: seq(&parts[1])?,
        }),
        Value::Array(parts) if parts.len() == 3 => match parts[2] {
            Value::Int(subscribers) if subscribers >= 0 => Ok(Published::Repeat {
                epoch: parse_epoch(&parts[0])?,
                seq: seq(&parts[1])?,
                subscribers: subscribers as u64,
            }),
            _ => Err("publish answered no subscriber count".into()),
        },
        Value::Int(0) => Ok(Published::Conflict),
        Value::Error(e) => Err(e.to_string()),
        other => Err(format!("publish answered {other:?}")),
    }
}

/// Reads the reply of a `PUBLISH` without an `Idempotency-Key`: the
/// message's epoch and sequence number.
pub fn sequenced(reply: &Value) -> Result<(u64, u64), String> {
    match published(reply)? {
        Published::New { epoch, seq } => Ok((epoch, seq)),
        other => Err(format!("publish answered {other:?}")),
    }
}

fn parse_epoch(value: &Value) -> Result<u64, String> {
    match value {
        Value::Bulk(text) => std::str::from_utf8(text)
            .ok()
            .and_then(|t| u64::from_str_radix(t, 16).ok())
            .ok_or_else(|| "a channel's epoch is not hex".into()),
        other => Err(format!("no epoch in {other:?}")),
    }
}

/// An `XRANGE` entry: `[id, [field, value, ...]]`, with id `SEQ-0`.
fn entry_parts(entry: Value) -> Result<(u64, Vec<Vec<u8>>), String> {
    let Value::Array(mut pair) = entry else {
        return Err("a stream entry is not an array".into());
    };
    if pair.len() != 2 {
        return Err("a stream entry is not an id and fields".into());
    }
    let fields = pair.pop().expect("two parts");
    let Value::Bulk(id) = &pair[0] else {
        return Err("a stream entry has no id".into());
    };
    let seq = std::str::from_utf8(id)
        .ok()
        .and_then(|id| id.split_once('-'))
        .and_then(|(seq, _)| seq.parse().ok())
        .ok_or("a stream entry's id is not SEQ-0")?;
    let Value::Array(fields) = fields else {
        return Err("a stream entry has no fields".into());
    };
    let fields = fields
        .into_iter()
        .map(|f| match f {
            Value::Bulk(b) => Ok(b),
            _ => Err("a stream field is not a string".to_string()),
        })
        .collect::<Result<Vec<_>, _>>()?;
    if fields.len() % 2 != 0 {
        return Err("a stream entry's fields are not pairs".into());
    }
    Ok((seq, fields))
}

#[cfg(test)]
mod tests;

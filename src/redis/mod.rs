//! The Redis engine's pure parts (`--redis`): several halley nodes share one
//! history through Redis, which sequences every publish, keeps each channel's
//! messages in a stream and carries live messages between nodes by pub/sub.
//! The loop's side, the links and what the server does with their replies,
//! is `server::redis`.
//!
//! - `resp`: the RESP2 wire format, parsed incrementally.
//! - `url`: what `--redis` names. `shard`: which Redis owns a channel when
//!   there are several. `backoff`: how long to wait before reconnecting.
//! - `scripts`: the keys halley keeps in Redis, the Lua scripts that change
//!   and read them, and the decoding of their replies and of pub/sub
//!   payloads into messages.
//! - `merge`: passing a channel's history and its live messages on once
//!   each, in order, with a gap where Redis no longer has them.

pub mod backoff;
pub mod merge;
pub mod resp;
pub mod scripts;
pub mod shard;
pub mod url;

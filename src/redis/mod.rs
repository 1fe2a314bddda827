//! The Redis engine (issue 9): several halley nodes share one history through
//! Redis, which sequences every publish, keeps each channel's messages in a
//! stream and carries live messages between nodes by pub/sub.
//!
//! The files here that touch nothing but values: `resp` (the RESP2 wire
//! format, parsed incrementally), `url` (what `--redis` names), `backoff`
//! (how long to wait before reconnecting) and `shard` (which Redis owns a
//! channel when there are several).

pub mod backoff;
pub mod resp;
pub mod shard;
pub mod url;

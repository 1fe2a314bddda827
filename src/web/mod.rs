//! The browser side of halley: the demo page and `halley.js` embedded in the binary, the `--static DIR`
//! file resolver, and the rules for open publishing from browsers (channel prefix, small body limit,
//! per-address rate limit).
//!
//! Everything here is pure: functions take a request's values (path, headers, client address, `now`)
//! and return a decision as a value. Only `static_files` reads the file system, and nothing here touches
//! a socket; the server module turns these decisions into responses.

pub mod assets;
pub mod etag;
pub mod open_publish;
pub mod rate_limit;
pub mod static_files;

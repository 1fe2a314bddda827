//! The browser side of halley: the demo page and `halley.js` embedded in the binary, the `--static DIR`
//! file resolver, and the rules for open publishing from browsers (channel prefix, small body limit,
//! per-address rate limit).
//!
//! Everything here takes a request's values (path, headers, client address, `now`) and returns a
//! decision as a value; only `static_files` reads the file system, and nothing here touches a socket.
//! The server turns the decisions into responses:
//!
//! ```text
//! GET|HEAD  with --static DIR   StaticRoot::resolve(target, If-None-Match) -> StaticReply
//!                               (NotFound for /halley.js falls through to the embedded client)
//!           otherwise           assets::lookup(target) -> assets::reply(asset, If-None-Match)
//! POST /pub/{channel}           headers: PublishPolicy::body_limit -> 413 from Content-Length
//!                               headers: PublishPolicy::decide -> Allow | 401 | 429 Retry-After
//!                               body:    a chunked body past body_limit -> 413
//! ```

pub mod assets;
pub mod etag;
pub mod open_publish;
pub mod rate_limit;
pub mod static_files;

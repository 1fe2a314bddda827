//! RFC 6455 WebSocket as pure functions, the way `http` is HTTP/1.1: the
//! opening handshake (`handshake`), frames in and out (`frame`), UTF-8
//! checked as fragments arrive (`utf8`) and close codes (`close`). Nothing
//! here touches a socket; `server::websocket` puts it on the loop.

pub mod close;
pub mod frame;
pub mod handshake;
pub mod utf8;

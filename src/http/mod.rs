//! HTTP/1.1 as pure functions: request heads in, framing decisions out
//! (`request`), chunked bodies (`chunked`), response heads (`response`) and
//! query strings (`query`). Nothing here touches a socket.

pub mod chunked;
pub mod query;
pub mod request;
pub mod response;

/// A request the server refuses, with the status that says why. The message
/// becomes the `{"error": ...}` body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reject {
    pub status: u16,
    pub message: String,
}

impl Reject {
    pub fn new(status: u16, message: impl Into<String>) -> Reject {
        Reject {
            status,
            message: message.into(),
        }
    }
}

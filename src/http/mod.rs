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
    /// The methods a 405 lists in its `Allow` header.
    pub allow: Option<&'static str>,
}

impl Reject {
    pub fn new(status: u16, message: impl Into<String>) -> Reject {
        Reject {
            status,
            message: message.into(),
            allow: None,
        }
    }

    pub fn with_allow(self, allow: &'static str) -> Reject {
        Reject {
            allow: Some(allow),
            ..self
        }
    }
}

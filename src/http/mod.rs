//! HTTP/1.1 as pure functions: request heads in, framing decisions out
//! (`request`), chunked bodies (`chunked`), response heads (`response`) and
//! query strings (`query`). Nothing here touches a socket.

pub mod chunked;
pub mod query;
pub mod request;
pub mod response;

#[cfg(test)]
mod prop_tests;

/// A request the server refuses, with the status that says why. The message
/// becomes the `{"error": ...}` body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reject {
    pub status: u16,
    pub message: String,
    /// A header line the answer needs: `Allow` for a 405, `Retry-After` for
    /// a 429.
    pub header: Option<String>,
}

impl Reject {
    pub fn new(status: u16, message: impl Into<String>) -> Reject {
        Reject {
            status,
            message: message.into(),
            header: None,
        }
    }

    pub fn with_allow(self, allow: &str) -> Reject {
        Reject {
            header: Some(format!("Allow: {allow}")),
            ..self
        }
    }

    pub fn with_retry_after(self, secs: u64) -> Reject {
        Reject {
            header: Some(format!("Retry-After: {secs}")),
            ..self
        }
    }
}

//! `--static DIR`: maps a request target to a file under DIR without ever leaving it, picks the
//! content type, and decides between `200`, `304`, `400` and `404`.
//!
//! The check happens twice on purpose. [`parse_target`] is pure and refuses every spelling of a path
//! that could climb out (`..`, `%2e%2e`, `%2f`, backslashes, NUL, `//`) before the file system is
//! consulted; [`StaticRoot::resolve`] then canonicalizes the result and refuses anything a symlink has
//! taken outside the canonical root. Either check alone would be enough today; together they stay
//! safe when one of them is later changed carelessly.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use super::etag;
use crate::http::query;

/// The file served for a directory, e.g. for `/` or `/docs/`.
pub const INDEX_FILE: &str = "index.html";

/// The decision for one request; the server turns it into a response.
#[derive(Debug, PartialEq, Eq)]
pub enum StaticReply {
    /// `200` with this body, `Content-Type` and `ETag`.
    File {
        body: Vec<u8>,
        content_type: &'static str,
        etag: String,
    },
    /// `304 Not Modified` with this `ETag`: the client's copy is current.
    NotModified { etag: String },
    /// `404`: no such file, a hidden file, or a path that leads outside the root.
    NotFound,
    /// `400`: a target no file name could produce; the text says what was wrong.
    BadRequest(&'static str),
}

/// Why [`parse_target`] refused a target.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    BadRequest(&'static str),
    NotFound,
}

/// A request target reduced to plain file name segments, each free of `/`, `\`, NUL and dots-only names.
#[derive(Debug, PartialEq, Eq)]
pub struct SafePath {
    pub segments: Vec<String>,
    /// The target ended in `/`, so it names a directory and the index file is meant.
    pub is_dir: bool,
}

/// Reduces a request target (`/a/b.html?x=1`) to safe segments, or refuses it.
///
/// Each segment is percent-decoded exactly once and on its own, so an encoded slash can never become a
/// separator; encoded slashes and backslashes are refused outright because no honest link needs them.
/// Segments starting with `.` are hidden (`.git`, `.env`) and answered as not found.
pub fn parse_target(target: &str) -> Result<SafePath, Refusal> {
    use Refusal::BadRequest;
    let path = target.split(['?', '#']).next().unwrap_or("");
    let Some(rest) = path.strip_prefix('/') else {
        return Err(BadRequest("the path must start with /"));
    };
    let mut raw_segments: Vec<&str> = rest.split('/').collect();
    let is_dir = raw_segments.last() == Some(&"");
    if is_dir {
        raw_segments.pop();
    }
    let mut segments = Vec::with_capacity(raw_segments.len());
    for raw in raw_segments {
        if raw.is_empty() {
            return Err(BadRequest("empty path segment"));
        }
        let segment = percent_decode(raw)?;
        if segment == "." || segment == ".." {
            return Err(BadRequest("dot segments are not allowed"));
        }
        if segment.starts_with('.') {
            return Err(Refusal::NotFound);
        }
        segments.push(segment);
    }
    Ok(SafePath { segments, is_dir })
}

/// One segment, decoded by the server's one percent-decoder, then checked for what no file name holds.
fn percent_decode(raw: &str) -> Result<String, Refusal> {
    use Refusal::BadRequest;
    let segment = query::decode(raw, false).map_err(BadRequest)?;
    // The segment was split on `/` before decoding, so a slash in it was encoded.
    if segment.contains('/') {
        return Err(BadRequest("encoded slashes are not allowed"));
    }
    if segment.contains('\\') {
        return Err(BadRequest("backslashes are not allowed"));
    }
    if segment.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err(BadRequest("control characters and NUL are not allowed"));
    }
    Ok(segment)
}

/// The content type for a file name, by extension; unknown types are sent as opaque bytes so that a
/// browser never guesses them into something executable.
pub fn content_type(file_name: &str) -> &'static str {
    let ext = match file_name.rsplit_once('.') {
        Some((_, ext)) => ext.to_ascii_lowercase(),
        None => String::new(),
    };
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" | "map" => "application/json",
        "txt" | "md" => "text/plain; charset=utf-8",
        "xml" => "application/xml",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "avif" => "image/avif",
        "ico" => "image/x-icon",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "wasm" => "application/wasm",
        "pdf" => "application/pdf",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "mp3" => "audio/mpeg",
        _ => "application/octet-stream",
    }
}

/// The directory given to `--static`, canonicalized once at startup.
#[derive(Debug, Clone)]
pub struct StaticRoot {
    root: PathBuf,
}

impl StaticRoot {
    /// Fails when `dir` does not exist or is not a directory, so a typo in `--static` stops the server at
    /// startup instead of turning every request into a 404.
    pub fn new(dir: &Path) -> std::io::Result<StaticRoot> {
        let root = fs::canonicalize(dir)?;
        if !root.is_dir() {
            return Err(std::io::Error::other(format!(
                "{} is not a directory",
                dir.display()
            )));
        }
        Ok(StaticRoot { root })
    }

    /// Answers a `GET` or `HEAD` for `target` (for `HEAD` the server drops the body).
    pub fn resolve(&self, target: &str, if_none_match: Option<&str>) -> StaticReply {
        let safe = match parse_target(target) {
            Ok(safe) => safe,
            Err(Refusal::BadRequest(why)) => return StaticReply::BadRequest(why),
            Err(Refusal::NotFound) => return StaticReply::NotFound,
        };
        let mut path = self.root.clone();
        path.extend(&safe.segments);
        if safe.is_dir {
            path.push(INDEX_FILE);
        }
        let Some(path) = self.contained(&path) else {
            return StaticReply::NotFound;
        };
        // A directory named without its trailing slash gets its index too; relative links inside that
        // index then resolve one level up, which is the price of not answering with a redirect.
        let path = if path.is_dir() {
            match self.contained(&path.join(INDEX_FILE)) {
                Some(index) => index,
                None => return StaticReply::NotFound,
            }
        } else {
            path
        };
        let Ok(meta) = fs::metadata(&path) else {
            return StaticReply::NotFound;
        };
        if !meta.is_file() {
            return StaticReply::NotFound;
        }
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        let etag = etag::of_metadata(meta.len(), modified);
        if if_none_match.is_some_and(|header| etag::none_match_hits(header, &etag)) {
            return StaticReply::NotModified { etag };
        }
        let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let content_type = content_type(file_name);
        match fs::read(&path) {
            Ok(body) => StaticReply::File {
                body,
                content_type,
                etag,
            },
            Err(_) => StaticReply::NotFound,
        }
    }

    /// The canonical form of `path` if it exists and lies inside the root once every symlink is followed.
    fn contained(&self, path: &Path) -> Option<PathBuf> {
        let canonical = fs::canonicalize(path).ok()?;
        canonical.starts_with(&self.root).then_some(canonical)
    }
}

#[cfg(test)]
#[path = "static_files_tests.rs"]
mod tests;

//! The files of the built-in demo page, compiled into the binary so `cargo run --release` needs nothing
//! on disk: each with its URL path, content type and an ETag computed at compile time.

use super::etag;

/// One embedded file.
pub struct Asset {
    /// The URL path it is served at, starting with `/`.
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
    etag: [u8; etag::ETAG_LEN],
}

impl Asset {
    /// The strong ETag of `body`, quoted, ready for the `ETag` header.
    pub fn etag(&self) -> &str {
        etag::as_str(&self.etag)
    }
}

macro_rules! asset {
    ($path:literal, $file:literal, $content_type:literal) => {
        Asset {
            path: $path,
            content_type: $content_type,
            body: include_bytes!(concat!("assets/", $file)),
            etag: etag::of_bytes(include_bytes!(concat!("assets/", $file))),
        }
    };
}

/// Every embedded file. `/` is the demo page; `/halley.js` is the client users may take into their own
/// pages, so its path is part of the public API.
pub static ASSETS: &[Asset] = &[
    asset!("/", "index.html", "text/html; charset=utf-8"),
    asset!("/halley.js", "halley.js", "text/javascript; charset=utf-8"),
    asset!("/demo.js", "demo.js", "text/javascript; charset=utf-8"),
    asset!("/style.css", "style.css", "text/css; charset=utf-8"),
];

/// The asset served at a request target, if any. The query string is ignored so that cache-busting
/// links like `/halley.js?v=2` still work; `/index.html` is accepted as an alias of `/`.
pub fn lookup(target: &str) -> Option<&'static Asset> {
    let path = target.split(['?', '#']).next().unwrap_or("");
    let path = if path == "/index.html" { "/" } else { path };
    ASSETS.iter().find(|asset| asset.path == path)
}

/// What to answer for an embedded asset, given the request's `If-None-Match` header.
#[derive(Debug, PartialEq, Eq)]
pub enum AssetReply {
    /// `200` with the body, `Content-Type` and `ETag`.
    Full(&'static str),
    /// `304 Not Modified` with the `ETag` and no body: the client's copy is current.
    NotModified,
}

/// Decides between a full answer and `304` for `asset`.
pub fn reply(asset: &Asset, if_none_match: Option<&str>) -> AssetReply {
    match if_none_match {
        Some(header) if etag::none_match_hits(header, asset.etag()) => AssetReply::NotModified,
        _ => AssetReply::Full(asset.content_type),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_finds_each_asset() {
        let cases: &[(&str, Option<&str>)] = &[
            ("/", Some("/")),
            ("/index.html", Some("/")),
            ("/?transport=longpoll", Some("/")),
            ("/halley.js", Some("/halley.js")),
            ("/halley.js?v=3", Some("/halley.js")),
            ("/demo.js", Some("/demo.js")),
            ("/style.css", Some("/style.css")),
            ("/style.css#x", Some("/style.css")),
            ("/nope.js", None),
            ("/halley.js/", None),
            ("", None),
            ("halley.js", None),
        ];
        for &(target, want) in cases {
            assert_eq!(lookup(target).map(|a| a.path), want, "target {target:?}");
        }
    }

    #[test]
    fn assets_are_not_empty_and_tags_are_distinct() {
        for asset in ASSETS {
            assert!(!asset.body.is_empty(), "{} is empty", asset.path);
            assert_eq!(asset.etag(), etag::as_str(&etag::of_bytes(asset.body)));
        }
        let mut tags: Vec<&str> = ASSETS.iter().map(Asset::etag).collect();
        tags.sort();
        tags.dedup();
        assert_eq!(tags.len(), ASSETS.len());
    }

    #[test]
    fn conditional_requests() {
        let asset = lookup("/halley.js").unwrap();
        let current = asset.etag().to_string();
        let weak = format!("W/{current}");
        let cases: &[(Option<&str>, bool)] = &[
            (None, false),
            (Some(&current), true),
            (Some(&weak), true),
            (Some("\"stale\""), false),
            (Some("*"), true),
        ];
        for &(header, not_modified) in cases {
            let want = if not_modified {
                AssetReply::NotModified
            } else {
                AssetReply::Full("text/javascript; charset=utf-8")
            };
            assert_eq!(reply(asset, header), want, "If-None-Match: {header:?}");
        }
    }

    #[test]
    fn the_page_loads_its_own_files() {
        let page = std::str::from_utf8(lookup("/").unwrap().body).unwrap();
        for asset in ASSETS.iter().filter(|a| a.path != "/") {
            assert!(
                page.contains(&format!("\"{}\"", asset.path)),
                "page must load {}",
                asset.path
            );
        }
    }
}

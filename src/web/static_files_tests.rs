//! Unit tests for `static_files`: every spelling of path traversal we know of, content types, and the
//! file system checks (symlinks out of the root, directories, conditional requests) on a scratch tree.

use super::*;
use std::os::unix::fs::symlink;
use std::sync::atomic::{AtomicUsize, Ordering};

fn ok(segments: &[&str], is_dir: bool) -> Result<SafePath, Refusal> {
    Ok(SafePath {
        segments: segments.iter().map(|s| s.to_string()).collect(),
        is_dir,
    })
}

#[test]
fn parse_target_accepts_plain_paths() {
    let cases: &[(&str, Result<SafePath, Refusal>)] = &[
        ("/", ok(&[], true)),
        ("/index.html", ok(&["index.html"], false)),
        ("/a/b/c.css", ok(&["a", "b", "c.css"], false)),
        ("/docs/", ok(&["docs"], true)),
        ("/a.js?v=1", ok(&["a.js"], false)),
        ("/a.js?x=/../../etc/passwd", ok(&["a.js"], false)),
        ("/page.html#top", ok(&["page.html"], false)),
        ("/hello%20world.txt", ok(&["hello world.txt"], false)),
        ("/caf%C3%A9.html", ok(&["café.html"], false)),
        ("/a..b", ok(&["a..b"], false)),
        ("/..a", Err(Refusal::NotFound)),
        ("/a%2eb", ok(&["a.b"], false)),
        ("/a+b", ok(&["a+b"], false)),
        // Decoding happens once: a double-encoded dot pair stays the literal name "%2e%2e".
        ("/%252e%252e/secret", ok(&["%2e%2e", "secret"], false)),
        ("/%252f", ok(&["%2f"], false)),
    ];
    for (target, want) in cases {
        assert_eq!(&parse_target(target), want, "target {target:?}");
    }
}

#[test]
fn parse_target_refuses_traversal_in_every_spelling() {
    let cases: &[&str] = &[
        // Plain dot segments.
        "/..",
        "/../",
        "/../etc/passwd",
        "/a/../../etc/passwd",
        "/a/..",
        "/./a",
        "/a/./b",
        "/.",
        // Percent-encoded dots, any case, any mix.
        "/%2e%2e/etc/passwd",
        "/%2E%2E/etc/passwd",
        "/.%2e/etc/passwd",
        "/%2e./etc/passwd",
        "/a/%2e%2e",
        "/%2e",
        // Encoded separators, which would turn one segment into two after decoding.
        "/..%2fetc%2fpasswd",
        "/%2e%2e%2fetc%2fpasswd",
        "/a%2Fb",
        "/a%2fb",
        "/..%5cwindows",
        "/a%5Cb",
        // Backslashes, which some platforms treat as separators.
        "/..\\etc\\passwd",
        "/a\\b",
        // NUL and other control bytes, raw or encoded.
        "/index.html%00.png",
        "/a\0b",
        "/a%0ab",
        "/a%7f",
        // Absolute and relative forms.
        "//etc/passwd",
        "/a//b",
        "etc/passwd",
        "../etc/passwd",
        "",
        "http://example.com/index.html",
        "C:\\Windows",
        // Broken escapes and non-UTF-8 results.
        "/%",
        "/%2",
        "/%zz",
        "/%+1",
        "/%ff%fe",
        "/%c0%ae%c0%ae/etc/passwd",
    ];
    for target in cases {
        match parse_target(target) {
            Err(Refusal::BadRequest(_)) => {}
            other => panic!("target {target:?} should be a bad request, got {other:?}"),
        }
    }
}

#[test]
fn parse_target_hides_dot_files() {
    for target in [
        "/.git/config",
        "/.env",
        "/a/.htpasswd",
        "/%2egit/config",
        "/.well-known/x",
    ] {
        assert_eq!(
            parse_target(target),
            Err(Refusal::NotFound),
            "target {target:?}"
        );
    }
}

#[test]
fn content_types_by_extension() {
    let cases: &[(&str, &str)] = &[
        ("index.html", "text/html; charset=utf-8"),
        ("INDEX.HTM", "text/html; charset=utf-8"),
        ("app.js", "text/javascript; charset=utf-8"),
        ("mod.mjs", "text/javascript; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
        ("data.json", "application/json"),
        ("logo.svg", "image/svg+xml"),
        ("photo.JPG", "image/jpeg"),
        ("font.woff2", "font/woff2"),
        ("app.wasm", "application/wasm"),
        ("notes.txt", "text/plain; charset=utf-8"),
        ("README", "application/octet-stream"),
        ("archive.tar.gz", "application/octet-stream"),
        ("evil.html.exe", "application/octet-stream"),
    ];
    for &(name, want) in cases {
        assert_eq!(content_type(name), want, "file {name:?}");
    }
}

/// A scratch directory tree, removed when dropped:
/// `outside/secret.txt`, `site/index.html`, `site/a.css`, `site/docs/index.html`, `site/empty/`,
/// `site/.env`, and symlinks `site/leak.txt -> ../outside/secret.txt`, `site/leakdir -> ../outside`,
/// `site/alias.css -> a.css`.
struct Scratch {
    base: PathBuf,
}

impl Scratch {
    fn new() -> Scratch {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let base = std::env::temp_dir().join(format!("halley-static-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let site = base.join("site");
        fs::create_dir_all(site.join("docs")).unwrap();
        fs::create_dir_all(site.join("empty")).unwrap();
        fs::create_dir_all(base.join("outside")).unwrap();
        fs::write(base.join("outside/secret.txt"), "secret").unwrap();
        fs::write(site.join("index.html"), "<h1>home</h1>").unwrap();
        fs::write(site.join("a.css"), "body{}").unwrap();
        fs::write(site.join("docs/index.html"), "docs").unwrap();
        fs::write(site.join(".env"), "TOKEN=x").unwrap();
        symlink("../outside/secret.txt", site.join("leak.txt")).unwrap();
        symlink("../outside", site.join("leakdir")).unwrap();
        symlink("a.css", site.join("alias.css")).unwrap();
        Scratch { base }
    }

    fn root(&self) -> StaticRoot {
        StaticRoot::new(&self.base.join("site")).unwrap()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.base);
    }
}

fn body_of(reply: StaticReply) -> Option<(String, &'static str)> {
    match reply {
        StaticReply::File {
            body, content_type, ..
        } => Some((String::from_utf8(body).unwrap(), content_type)),
        _ => None,
    }
}

#[test]
fn resolve_serves_files_inside_the_root() {
    let scratch = Scratch::new();
    let root = scratch.root();
    let html = "text/html; charset=utf-8";
    let css = "text/css; charset=utf-8";
    let cases: &[(&str, Option<(&str, &str)>)] = &[
        ("/", Some(("<h1>home</h1>", html))),
        ("/index.html", Some(("<h1>home</h1>", html))),
        ("/a.css?v=2", Some(("body{}", css))),
        ("/alias.css", Some(("body{}", css))),
        ("/docs/", Some(("docs", html))),
        ("/docs", Some(("docs", html))),
        ("/empty/", None),
        ("/empty", None),
        ("/missing.html", None),
        ("/a.css/", None),
    ];
    for &(target, want) in cases {
        let got = body_of(root.resolve(target, None));
        assert_eq!(
            got.as_ref().map(|(b, t)| (b.as_str(), *t)),
            want,
            "target {target:?}"
        );
    }
}

#[test]
fn resolve_refuses_everything_that_leaves_the_root() {
    let scratch = Scratch::new();
    let root = scratch.root();
    let cases: &[(&str, bool)] = &[
        // (target, answered with 400 rather than 404)
        ("/leak.txt", false),
        ("/leakdir/secret.txt", false),
        ("/leakdir/", false),
        ("/leakdir", false),
        ("/.env", false),
        ("/../outside/secret.txt", true),
        ("/%2e%2e/outside/secret.txt", true),
        ("/docs/../../outside/secret.txt", true),
        ("/..%2foutside%2fsecret.txt", true),
        ("//etc/passwd", true),
        ("/index.html%00", true),
    ];
    for &(target, is_bad_request) in cases {
        let reply = root.resolve(target, None);
        match (&reply, is_bad_request) {
            (StaticReply::BadRequest(_), true) | (StaticReply::NotFound, false) => {}
            _ => panic!("target {target:?}: unexpected {reply:?}"),
        }
    }
}

#[test]
fn resolve_answers_304_for_a_current_etag() {
    let scratch = Scratch::new();
    let root = scratch.root();
    let StaticReply::File { etag, .. } = root.resolve("/a.css", None) else {
        panic!("a.css should be served");
    };
    assert_eq!(
        root.resolve("/a.css", Some(&etag)),
        StaticReply::NotModified { etag: etag.clone() }
    );
    assert_eq!(
        root.resolve("/a.css", Some(&format!("\"other\", W/{etag}"))),
        StaticReply::NotModified { etag: etag.clone() }
    );
    assert!(matches!(
        root.resolve("/a.css", Some("\"other\"")),
        StaticReply::File { .. }
    ));
    // A file's tag is not another file's tag.
    let StaticReply::File {
        etag: index_tag, ..
    } = root.resolve("/", None)
    else {
        panic!()
    };
    assert_ne!(index_tag, etag);
}

#[test]
fn a_missing_or_plain_file_root_is_refused_at_startup() {
    let scratch = Scratch::new();
    assert!(StaticRoot::new(&scratch.base.join("nope")).is_err());
    assert!(StaticRoot::new(&scratch.base.join("site/a.css")).is_err());
}

//! The chat page's HTTP side, read over raw TCP: a self-contained document whose only script
//! and style are admitted by hash, under a CSP that lets it connect to this gateway alone.
#![cfg(feature = "local")]

#[path = "support/http.rs"]
mod http;
#[path = "support/local_harness.rs"]
mod local_harness;

use local_harness::{Gateway, WAIT};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use wsexec::local::codec::base64;

/// `GET /` with `host` as the `Host` header; returns the response.
async fn get_page(addr: SocketAddr, host: &str) -> http::Message {
    let head = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    http::exchange(addr, &head, WAIT).await
}

/// The text of every `<tag>…</tag>` element in `html`.
fn elements<'a>(html: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    html.split(&open)
        .skip(1)
        .filter_map(|rest| rest.split_once(&close).map(|(inner, _)| inner))
        .collect()
}

/// The CSP directive `name`'s sources.
fn directive<'a>(csp: &'a str, name: &str) -> Vec<&'a str> {
    csp.split(';')
        .map(str::trim)
        .find_map(|d| d.strip_prefix(name).filter(|r| r.starts_with(' ')))
        .map(|r| r.split_whitespace().collect())
        .unwrap_or_default()
}

/// The hash source of `text`, as a browser computes it for an inline element.
fn hash_source(text: &str) -> String {
    format!("'sha256-{}'", base64(&Sha256::digest(text.as_bytes())))
}

/// The page is HTML, loads nothing from anywhere (no `src`/`href` but a data: icon), and its
/// one script and one style are exactly what the CSP's hashes admit; nothing else may run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_runs_only_its_own_hashed_script() {
    let gw = Gateway::dev().await;
    let resp = get_page(gw.addr, &gw.addr.to_string()).await;
    assert_eq!(resp.status(), Some(200), "{}", resp.head);
    assert_eq!(
        resp.header("content-type").as_deref(),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(
        resp.header("x-content-type-options").as_deref(),
        Some("nosniff")
    );
    let html = std::str::from_utf8(resp.body()).expect("UTF-8 page");
    let csp = resp.header("content-security-policy").expect("a CSP");
    assert_eq!(directive(&csp, "default-src"), ["'none'"], "{csp}");
    let scripts = elements(html, "script");
    let styles = elements(html, "style");
    assert_eq!(scripts.len(), 1, "one inline script");
    assert_eq!(styles.len(), 1, "one inline style");
    assert!(!html.contains("<script src") && !html.contains("stylesheet"));
    assert_eq!(
        directive(&csp, "script-src"),
        [hash_source(scripts[0])],
        "{csp}"
    );
    assert_eq!(
        directive(&csp, "style-src"),
        [hash_source(styles[0])],
        "{csp}"
    );
    for attr in [
        "src=",
        "href=\"http",
        "href=\"//",
        "onload=",
        "onclick=",
        "style=\"",
    ] {
        assert!(!html.contains(attr), "the page has {attr}");
    }
    assert!(scripts[0].len() > 1000, "the script is embedded");
    gw.stop().await;
}

/// `connect-src` names this gateway (`'self'` and `ws://` + the loopback `Host` used) and no
/// other host; a `Host` carrying directive syntax gets 403 and no policy at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_src_is_this_gateway_only() {
    let gw = Gateway::dev().await;
    let host = gw.addr.to_string();
    let csp = get_page(gw.addr, &host)
        .await
        .header("content-security-policy")
        .expect("a CSP");
    assert_eq!(
        directive(&csp, "connect-src"),
        ["'self'".to_owned(), format!("ws://{host}")],
        "{csp}"
    );
    for fenced in [
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(fenced), "{csp}");
    }
    let aliased = get_page(gw.addr, "localhost:3001")
        .await
        .header("content-security-policy")
        .expect("a CSP");
    assert_eq!(
        directive(&aliased, "connect-src"),
        ["'self'", "ws://localhost:3001"],
        "{aliased}"
    );
    // A `Host` with directive syntax is not loopback: refused before any policy is written
    // (and `page::policy` would leave it out anyway: its unit test).
    let hostile = get_page(gw.addr, "evil.example;script-src").await;
    assert_eq!(hostile.status(), Some(403), "{}", hostile.head);
    assert!(hostile.header("content-security-policy").is_none());
    gw.stop().await;
}

//! The chat page `GET /` serves: one self-contained HTML document (style and script embedded
//! from `page/`, admitted by their hashes), under a CSP that lets it reach only this gateway.

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use sha2::{Digest, Sha256};
use std::sync::LazyLock;

/// The document, with [`STYLE_SLOT`] and [`SCRIPT_SLOT`] where the style and script go.
const TEMPLATE: &str = include_str!("page/index.html");
/// The page's whole stylesheet.
const STYLE: &str = include_str!("page/style.css");
/// The page's whole script: the client library and the page's two parts inside one strict-mode
/// function, so they share one scope and leave no globals (each uses what those before it
/// declare). `client.js` is `clients/typescript` built into one plain script (it declares
/// `wsexec`): committed, since `cargo build` cannot run Node, and checked against its sources
/// by the package's tests (`scripts/page-bundle.mjs --check`).
const SCRIPT: &str = concat!(
    "\"use strict\";\n(() => {\n",
    include_str!("page/client.js"),
    include_str!("page/runs.js"),
    include_str!("page/app.js"),
    "})();\n"
);
/// Replaced by [`STYLE`] inside the template's `<style>` element.
const STYLE_SLOT: &str = "/*STYLE*/";
/// Replaced by [`SCRIPT`] inside the template's `<script>` element.
const SCRIPT_SLOT: &str = "/*SCRIPT*/";

/// The page and the CSP hash sources of its style and script, built once: the hashes must be
/// of exactly the bytes between the tags, so both come from the same strings.
static PAGE: LazyLock<Page> = LazyLock::new(|| Page {
    html: TEMPLATE
        .replacen(STYLE_SLOT, STYLE, 1)
        .replacen(SCRIPT_SLOT, SCRIPT, 1),
    style_hash: sha256_source(STYLE),
    script_hash: sha256_source(SCRIPT),
});

/// The built document and its hash sources.
struct Page {
    html: String,
    style_hash: String,
    script_hash: String,
}

/// A CSP hash source (`'sha256-…'`) for an inline element's text.
fn sha256_source(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    format!("'sha256-{}'", super::codec::base64(&digest))
}

/// Whether `req` is a browser asking for the page: a plain `GET /` (any query).
pub fn is_page_request<B>(req: &Request<B>) -> bool {
    req.method() == hyper::Method::GET && req.uri().path() == "/"
}

/// `ws://` + `host` when `host` is a plain `name[:port]` or `[v6][:port]`: anything else (a
/// `;` or space would add CSP directives) leaves `connect-src` at `'self'` alone.
fn websocket_source(host: Option<&HeaderValue>) -> Option<String> {
    let host = host?.to_str().ok()?;
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']');
    (!host.is_empty() && host.chars().all(plain)).then(|| format!("ws://{host}"))
}

/// The policy: nothing by default; the page's own style and script by hash; WebSocket and
/// fetches only to this gateway (`'self'`, and `ws://` + the `Host` the browser used, for
/// browsers whose `'self'` does not cover `ws:`); no forms, frames, base or plugins.
fn policy(host: Option<&HeaderValue>) -> String {
    let page = &*PAGE;
    let connect = match websocket_source(host) {
        Some(ws) => format!("'self' {ws}"),
        None => "'self'".to_owned(),
    };
    format!(
        "default-src 'none'; script-src {}; style-src {}; connect-src {connect}; \
         img-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        page.script_hash, page.style_hash
    )
}

/// The page, with its CSP and headers that keep it from being sniffed, cached or framed.
pub fn response<B>(req: &Request<B>) -> Response<Full<Bytes>> {
    let csp = policy(req.headers().get(header::HOST));
    let mut resp = Response::new(Full::new(Bytes::from(PAGE.html.clone())));
    *resp.status_mut() = StatusCode::OK;
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The template has each slot once, and nothing embedded can end its element early.
    #[test]
    fn embedded_parts_fit_their_elements() {
        assert_eq!(TEMPLATE.matches(STYLE_SLOT).count(), 1);
        assert_eq!(TEMPLATE.matches(SCRIPT_SLOT).count(), 1);
        assert!(!SCRIPT.to_ascii_lowercase().contains("</script"));
        assert!(!STYLE.to_ascii_lowercase().contains("</style"));
        assert!(PAGE.html.contains(SCRIPT) && PAGE.html.contains(STYLE));
    }

    /// The script never parses text as HTML, so untrusted text can only ever be text.
    #[test]
    fn script_builds_no_markup_from_strings() {
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
            "setAttribute(\"on",
            "setAttribute('on",
        ] {
            assert!(!SCRIPT.contains(sink), "the page's script uses {sink}");
        }
    }

    /// A `Host` that would smuggle CSP directives in is left out of `connect-src`.
    #[test]
    fn hostile_host_stays_out_of_the_policy() {
        let ok = HeaderValue::from_static("127.0.0.1:3001");
        assert!(policy(Some(&ok)).contains("connect-src 'self' ws://127.0.0.1:3001;"));
        let bad = HeaderValue::from_static("x; script-src *");
        assert!(policy(Some(&bad)).contains("connect-src 'self';"));
        assert!(!policy(Some(&bad)).contains("script-src *"));
    }
}

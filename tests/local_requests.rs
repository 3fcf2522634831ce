//! Requests the local gateway must refuse precisely, sent over raw TCP: malformed WebSocket
//! upgrades, and management paths naming ids no connection can have.
#![cfg(feature = "local")]

#[path = "support/http.rs"]
mod http;
#[path = "support/local_harness.rs"]
mod local_harness;

use aws_sdk_apigatewaymanagement::error::ProvideErrorMetadata;
use aws_sdk_apigatewaymanagement::primitives::Blob;
use local_harness::{Gateway, WAIT, management_client};
use serde_json::Value;
use std::net::SocketAddr;

/// A valid `Sec-WebSocket-Key` (RFC 6455 §1.3's sample nonce).
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// Sends `head` (a request without body) on a fresh TCP connection; returns the response.
async fn raw(addr: SocketAddr, head: &str) -> http::Message {
    http::exchange(addr, head, WAIT).await
}

/// An upgrade request for `target` with `version`, `host` and `key`, plus `extra` header lines.
fn upgrade(target: &str, version: &str, host: Option<&str>, key: &str, extra: &str) -> String {
    let host = host.map(|h| format!("Host: {h}\r\n")).unwrap_or_default();
    format!(
        "GET {target} {version}\r\n{host}Connection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// Malformed upgrades get 400 (bad key, no Host, HTTP/1.0), 414 (long URL) or 431 (large
/// header) before any `$connect`; a well-formed one still gets 101.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_upgrades_are_refused_before_connect() {
    let mut gw = Gateway::dev().await;
    let host = gw.addr.to_string();
    let target = "/?user_id=refused-01";
    let big = format!("X-Big: {}\r\n", "b".repeat(100 * 1024));
    let long_url = format!("{target}&pad={}", "u".repeat(5000));
    let cases = [
        (
            "key x",
            upgrade(target, "HTTP/1.1", Some(&host), "x", ""),
            400,
        ),
        (
            "key of 15 bytes",
            upgrade(target, "HTTP/1.1", Some(&host), "dGhlIHNhbXBsZSBub25j", ""),
            400,
        ),
        (
            "key not base64",
            upgrade(
                target,
                "HTTP/1.1",
                Some(&host),
                "dGhlIHNhbXBsZSBub25j*Q==",
                "",
            ),
            400,
        ),
        ("no Host", upgrade(target, "HTTP/1.1", None, KEY, ""), 400),
        (
            "HTTP/1.0",
            upgrade(target, "HTTP/1.0", Some(&host), KEY, ""),
            400,
        ),
        (
            "100 KB header",
            upgrade(target, "HTTP/1.1", Some(&host), KEY, &big),
            431,
        ),
        (
            "5000-char URL",
            upgrade(&long_url, "HTTP/1.1", Some(&host), KEY, ""),
            414,
        ),
    ];
    for (what, head, status) in cases {
        let resp = raw(gw.addr, &head).await;
        assert_eq!(resp.status(), Some(status), "{what}: {}", resp.head);
    }
    a_good_upgrade_is_the_first_connect(&mut gw, &host).await;
    gw.stop().await;
}

/// A management request naming an id with a slash in it (raw or percent-encoded, also from
/// the SDK client) gets the management API's own 400 in API Gateway's REST-JSON shape, not 426.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn management_paths_with_impossible_ids_get_a_rest_json_400() {
    let gw = Gateway::dev().await;
    let host = gw.addr.to_string();
    for path in [
        "/@connections/a/b",
        "/@connections/a%2Fb",
        "/local/@connections/a%2fb",
    ] {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let resp = raw(gw.addr, &head).await;
        assert_eq!(resp.status(), Some(400), "{path}: {}", resp.head);
        assert_eq!(
            resp.header("x-amzn-ErrorType").as_deref(),
            Some("BadRequestException"),
            "{path}"
        );
        let body: Value = serde_json::from_slice(resp.body()).expect("JSON error body");
        assert!(body["message"].is_string(), "{path}: {body}");
    }
    let err = management_client(&gw)
        .post_to_connection()
        .connection_id("a/b")
        .data(Blob::new("hi"))
        .send()
        .await
        .expect_err("an impossible id");
    assert_eq!(
        err.raw_response().map(|r| r.status().as_u16()),
        Some(400),
        "{err:?}"
    );
    assert_eq!(err.code(), Some("BadRequestException"), "{err:?}");
    gw.stop().await;
}

/// A plain `GET /` (a browser, no upgrade) gets the chat page; other paths and methods still
/// answer 426 Upgrade Required naming `websocket`; none of them invokes the function.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_get_of_root_is_the_page_and_the_rest_is_told_to_upgrade() {
    let mut gw = Gateway::dev().await;
    let host = gw.addr.to_string();
    let plain = |method: &str, path: &str| {
        format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
    };
    let page = raw(gw.addr, &plain("GET", "/?user_id=alice-01")).await;
    assert_eq!(page.status(), Some(200), "{}", page.head);
    assert_eq!(
        page.header("content-type").as_deref(),
        Some("text/html; charset=utf-8")
    );
    for (method, path) in [
        ("GET", "/chat"),
        ("GET", "/local"),
        ("POST", "/"),
        ("PUT", "/"),
    ] {
        let resp = raw(gw.addr, &plain(method, path)).await;
        assert_eq!(resp.status(), Some(426), "{method} {path}: {}", resp.head);
        assert_eq!(resp.header("upgrade").as_deref(), Some("websocket"));
    }
    a_good_upgrade_is_the_first_connect(&mut gw, &host).await;
    gw.stop().await;
}

/// After the refused requests, a well-formed upgrade succeeds and its `$connect` is the first
/// one the function saw: none of the refused requests reached it.
async fn a_good_upgrade_is_the_first_connect(gw: &mut Gateway, host: &str) {
    let ok = raw(
        gw.addr,
        &upgrade("/?user_id=alice-01", "HTTP/1.1", Some(host), KEY, ""),
    )
    .await;
    assert_eq!(ok.status(), Some(101), "{}", ok.head);
    let connect = gw.next_invocation("CONNECT", None).await;
    assert_eq!(
        connect.event["queryStringParameters"]["user_id"], "alice-01",
        "a refused request reached $connect"
    );
}

//! Requests the local gateway must refuse precisely, sent over raw TCP: malformed WebSocket
//! upgrades, management paths naming ids no connection can have, and requests from browsers
//! under a foreign host name (DNS rebinding) or from a foreign page (`Origin`).
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
        let resp = raw(gw.addr, &plain("POST", path, &host, "")).await;
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
    let page = raw(gw.addr, &plain("GET", "/?user_id=alice-01", &host, "")).await;
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
        let resp = raw(gw.addr, &plain(method, path, &host, "")).await;
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

/// A request for `target` with `method` and `host`, plus `extra` header lines, no body.
fn plain(method: &str, target: &str, host: &str, extra: &str) -> String {
    format!(
        "{method} {target} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\
         {extra}\r\n"
    )
}

/// DNS rebinding: every endpoint (upgrade, page, `@connections`, `Invoke`) reached under a name
/// that is not loopback gets 403 before anything runs; `localhost` and `[::1]` with or
/// without a port still upgrade.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_under_a_foreign_host_name_are_refused_before_connect() {
    let mut gw = Gateway::dev().await;
    let port = gw.addr.port();
    let target = "/?user_id=alice-01";
    for host in [
        format!("evil.example:{port}"),
        "evil.example".to_owned(),
        format!("127.0.0.1.nip.io:{port}"),
        format!("localhost.:{port}"),
        format!("192.168.1.20:{port}"),
    ] {
        let requests = [
            upgrade(target, "HTTP/1.1", Some(&host), KEY, ""),
            plain("GET", "/", &host, ""),
            plain("POST", "/@connections/L0SM9cOFvHcCIhw=", &host, ""),
            plain(
                "POST",
                "/2015-03-31/functions/wsexec/invocations",
                &host,
                "",
            ),
            plain("GET", "/favicon.ico", &host, ""),
        ];
        for head in requests {
            let resp = raw(gw.addr, &head).await;
            assert_eq!(resp.status(), Some(403), "{head}{}", resp.head);
        }
    }
    let own = gw.addr.to_string();
    a_good_upgrade_is_the_first_connect(&mut gw, &own).await;
    for host in [
        "localhost",
        "LOCALHOST:3001",
        "[::1]",
        &format!("[::1]:{port}"),
    ] {
        let ok = raw(gw.addr, &upgrade(target, "HTTP/1.1", Some(host), KEY, "")).await;
        assert_eq!(ok.status(), Some(101), "{host}: {}", ok.head);
    }
    gw.stop().await;
}

/// A foreign page's WebSocket (its `Origin` not loopback, not listed, `null`, or sent twice)
/// gets 403 before any `$connect`; no `Origin`, a loopback one, or one listed with
/// `--allow-origin` (any letter case) connects. The SDK-only APIs take no `Origin` at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_origin_upgrades_are_refused_unless_loopback_or_listed() {
    let mut gw = Gateway::start(local_harness::dev_config(), |o| {
        o.allowed_origins = vec!["https://app.example:8443".into()];
    })
    .await;
    let url = gw.url("/?user_id=alice-01");
    for origin in [
        "http://evil.example",
        "https://app.example",
        "http://app.example:8443",
        "http://localhost.evil.example",
        "null",
    ] {
        let req = local_harness::request_with(&url, &[("Origin", origin)]);
        assert_eq!(local_harness::refused_status(req).await, 403, "{origin}");
    }
    let host = gw.addr.to_string();
    let twice = "Origin: http://localhost\r\nOrigin: http://evil.example\r\n";
    let resp = raw(
        gw.addr,
        &upgrade("/?user_id=alice-01", "HTTP/1.1", Some(&host), KEY, twice),
    )
    .await;
    assert_eq!(resp.status(), Some(403), "{}", resp.head);
    a_good_upgrade_is_the_first_connect(&mut gw, &host).await;
    for origin in [
        "http://localhost:5173",
        "http://127.0.0.1",
        "https://[::1]:8443",
        "https://app.example:8443",
        "HTTPS://APP.EXAMPLE:8443",
    ] {
        let req = local_harness::request_with(&url, &[("Origin", origin)]);
        let (mut ws, _) = tokio_tungstenite::connect_async(req)
            .await
            .unwrap_or_else(|e| panic!("{origin}: {e}"));
        local_harness::send_json(&mut ws, serde_json::json!({"type": "ping"})).await;
        assert_eq!(
            local_harness::recv_json(&mut ws).await["type"],
            "pong",
            "{origin}"
        );
    }
    for path in [
        "/@connections/L0SM9cOFvHcCIhw=",
        "/2015-03-31/functions/wsexec/invocations",
    ] {
        let head = plain("POST", path, &host, "Origin: http://localhost:5173\r\n");
        let resp = raw(gw.addr, &head).await;
        assert_eq!(resp.status(), Some(403), "{path}: {}", resp.head);
    }
    gw.stop().await;
}

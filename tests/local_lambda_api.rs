//! The emulator's `Invoke` API runs only the function's own worker invocations: forged route
//! events, other callers' signatures and cross-origin requests never reach the handler.
#![cfg(feature = "local")]

#[path = "support/http.rs"]
mod http;
#[path = "support/jwt.rs"]
mod jwt;
#[path = "support/local_harness.rs"]
mod local_harness;

use aws_sdk_lambda::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_lambda::error::ProvideErrorMetadata;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use local_harness::{Gateway, WAIT, Ws, recv_json, recv_run, send_json, start_agent};
use serde_json::{Value, json};
use std::net::SocketAddr;
use wsexec::Config;
use wsexec::auth::JwtVerifier;
use wsexec::context::Mode;
use wsexec::store::Store;

/// The path of an `Invoke` of the function `wsexec`.
const INVOKE: &str = "/2015-03-31/functions/wsexec/invocations";

/// The gateway's JWT secret: the forged events below never need it.
const SECRET: &str = "local-lambda-api-secret";

/// A connection id in API Gateway's shape that the gateway never issued.
const FORGED_CONNECTION: &str = "Forged0000000AB=";

/// A sample event from `events/`, aimed at `alice-01` on the forged connection.
fn forged(file: &str) -> Value {
    let path = format!("{}/events/{file}", env!("CARGO_MANIFEST_DIR"));
    let mut event: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("sample event"))
            .expect("JSON event");
    let ctx = &mut event["requestContext"];
    ctx["connectionId"] = json!(FORGED_CONNECTION);
    ctx["authorizer"] = json!({ "principalId": "alice-01" });
    event
}

/// POSTs `body` to `path` over raw TCP with `extra` header lines; returns the response.
async fn post(addr: SocketAddr, path: &str, extra: &str, body: &str) -> http::Message {
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\
         {extra}\r\n{body}",
        body.len()
    );
    http::exchange(addr, &head, WAIT).await
}

/// A gateway that authenticates with a JWT only (no `--dev-auth`), and `alice-01` connected
/// with a token and one completed run; returns the gateway, alice's socket and the run's id.
async fn gateway_with_alices_run() -> (Gateway, Ws, String) {
    let config = Config {
        jwt: JwtVerifier::from_settings(Some(SECRET), None, None, None).expect("verifier"),
        mode: Mode::Local,
        ..Config::default()
    };
    let mut gw = Gateway::start(config, |_| {}).await;
    let exp = wsexec::time::now_ms() / 1000 + 600;
    let token = jwt::token(json!({ "sub": "alice-01", "exp": exp }), SECRET);
    let (mut ws, _) = tokio_tungstenite::connect_async(gw.url(&format!("/?token={token}")))
        .await
        .expect("alice connects");
    gw.next_invocation("CONNECT", None).await;
    send_json(&mut ws, start_agent("secret-1", "alice's secret plans")).await;
    let run_id = recv_run(&mut ws, "secret-1").await[0]["run_id"]
        .as_str()
        .expect("run id")
        .to_owned();
    (gw, ws, run_id)
}

/// A forged `$connect` (an authorizer naming `alice-01`) and forged `$default` messages
/// (`list_executions`, `start_agent`) posted to `Invoke` get 403, whether as a plain client
/// or as a web page's `no-cors` fetch would send them: no connection is recorded for the
/// forged id, nothing of alice's leaks, and no run is started on her behalf.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_route_events_on_invoke_are_refused_even_with_jwt_auth() {
    let (gw, mut ws, run_id) = gateway_with_alices_run().await;
    let list = forged("message-list-executions.json");
    let mut start = forged("message-start-agent.json");
    start["body"] = json!(start_agent("forged-1", "spend alice's model budget").to_string());
    let as_client = "Content-Type: application/json\r\nX-Amz-Invocation-Type: RequestResponse\r\n";
    let as_page = "Content-Type: text/plain;charset=UTF-8\r\nOrigin: http://evil.example\r\n";
    for (how, extra) in [("a local client", as_client), ("a web page", as_page)] {
        for event in [
            forged("connect-authorizer.json"),
            list.clone(),
            start.clone(),
        ] {
            let route = event["requestContext"]["eventType"].clone();
            let resp = post(gw.addr, INVOKE, extra, &event.to_string()).await;
            let body = String::from_utf8_lossy(resp.body()).into_owned();
            assert_eq!(
                resp.status(),
                Some(403),
                "{how}, {route}: {}\n{body}",
                resp.head
            );
            assert!(
                !body.contains(&run_id),
                "{how}, {route} read alice's run: {body}"
            );
        }
    }
    let forged_conn = gw.store.get_connection(FORGED_CONNECTION).await;
    assert!(
        matches!(forged_conn, Ok(None)),
        "a forged $connect was recorded: {forged_conn:?}"
    );
    send_json(&mut ws, json!({ "type": "list_executions" })).await;
    let page = recv_json(&mut ws).await;
    assert_eq!(
        page["payload"]["items"].as_array().map(Vec::len),
        Some(1),
        "{page}"
    );
    gw.stop().await;
}

/// The function's own SDK client signing with credentials other than the ones the gateway
/// gave it (the environment's, say) is refused with Lambda's 403 `UnrecognizedClientException`,
/// even for a well-formed worker event; an unsigned worker event gets 403 too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_events_not_signed_by_the_gateway_are_refused() {
    let (gw, _ws, run_id) = gateway_with_alices_run().await;
    let worker = json!({ "wsexec_worker": { "user_id": "alice-01", "run_id": run_id } });
    let conf = aws_sdk_lambda::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "AKIDLOCAL",
            "local-secret",
            None,
            None,
            "t",
        ))
        .endpoint_url(format!("http://{}", gw.addr))
        .http_client(wsexec::tls::https_client(false))
        .sleep_impl(aws_smithy_async::rt::sleep::TokioSleep::new())
        .build();
    let err = aws_sdk_lambda::Client::from_conf(conf)
        .invoke()
        .function_name("wsexec")
        .invocation_type(InvocationType::Event)
        .payload(Blob::new(worker.to_string()))
        .send()
        .await
        .expect_err("foreign credentials are refused");
    assert_eq!(err.code(), Some("UnrecognizedClientException"), "{err:?}");
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(403));

    let unsigned = post(
        gw.addr,
        INVOKE,
        "X-Amz-Invocation-Type: Event\r\n",
        &worker.to_string(),
    )
    .await;
    assert_eq!(unsigned.status(), Some(403), "{}", unsigned.head);
    assert_eq!(
        unsigned.header("x-amzn-ErrorType").as_deref(),
        Some("MissingAuthenticationTokenException")
    );
    let forged_sig = "Authorization: AWS4-HMAC-SHA256 Credential=WSEXECLOCALX/20260101/us-east-1/\
                      lambda/aws4_request, SignedHeaders=host;x-amz-date, Signature=00\r\n\
                      X-Amz-Date: 20260101T000000Z\r\n";
    let resp = post(gw.addr, INVOKE, forged_sig, &worker.to_string()).await;
    assert_eq!(resp.status(), Some(403), "{}", resp.head);
    gw.stop().await;
}

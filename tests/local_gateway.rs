//! The local API Gateway emulator driven by real clients (tokio-tungstenite, the `@connections`
//! SDK client): the golden path, event shapes, authentication and the sweep.
#![cfg(feature = "local")]

#[path = "support/local_harness.rs"]
mod local_harness;

use aws_sdk_apigatewaymanagement::primitives::Blob;
use lambda_http::aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use local_harness::{
    Gateway, dev_config, local_credentials, management_client, recv_close, recv_json, recv_run,
    refused_status, request_with, send_json, start_agent,
};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use wsexec::Config;
use wsexec::auth::JwtVerifier;
use wsexec::notify::apigw::ApiGatewayNotifier;
use wsexec::notify::{Notifier, PushErrorKind, PushTarget};
use wsexec::store::Store;

/// The HS256 secret the sample tokens in `events/` are signed with.
const SAMPLE_SECRET: &str = "wsexec-sample-secret";

fn sample(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("events")
        .join(name);
    let raw = std::fs::read_to_string(&path).expect("sample event");
    serde_json::from_str(&raw).expect("sample JSON")
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

/// Every key path in `v` (`identity.sourceIp`), recursively through objects.
fn key_paths(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    if let Some(o) = v.as_object() {
        for (k, child) in o {
            let path = format!("{prefix}{k}");
            key_paths(child, &format!("{path}."), out);
            out.insert(path);
        }
    }
}

fn context_paths(event: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    key_paths(&event["requestContext"], "", &mut out);
    out
}

/// A dev-auth client's golden path: five run events in order, `completed` on read, and the
/// connection record removed by the DISCONNECT the close produces.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_path_streams_run_events_and_disconnect_removes_the_record() {
    let mut gw = Gateway::dev().await;
    let (mut ws, conn_id) = gw.connect_user("alice-01").await;
    assert!(gw.store.get_connection(&conn_id).await.unwrap().is_some());

    send_json(&mut ws, json!({ "type": "ping" })).await;
    assert_eq!(
        recv_json(&mut ws).await["type"],
        "pong",
        "two-way route response"
    );

    send_json(&mut ws, start_agent("req-golden-1", "Summarise the week")).await;
    let run = recv_run(&mut ws, "req-golden-1").await;
    let run_id = run[0]["run_id"].as_str().unwrap().to_owned();
    assert_eq!(
        run[4]["payload"]["result"]["reply"],
        "echo: Summarise the week"
    );

    send_json(
        &mut ws,
        json!({ "type": "get_execution", "run_id": run_id }),
    )
    .await;
    let execution = recv_json(&mut ws).await;
    assert_eq!(execution["type"], "execution");
    assert_eq!(execution["payload"]["state"], "completed");

    let bye = CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    };
    ws.close(Some(bye)).await.unwrap();
    let disconnect = gw.next_invocation("DISCONNECT", Some(&conn_id)).await;
    assert_eq!(disconnect.response.as_ref().unwrap().status_code, 200);
    let rc = &disconnect.event["requestContext"];
    assert_eq!(
        (&rc["disconnectStatusCode"], &rc["disconnectReason"]),
        (&json!(1000), &json!("bye"))
    );
    assert!(gw.store.get_connection(&conn_id).await.unwrap().is_none());
    gw.stop().await;
}

/// 200 concurrent connections each run `start_agent`: every connection gets exactly its own
/// five events, in order, none lost or crossed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_connections_get_their_own_events_in_order() {
    let gw = Gateway::dev().await;
    let url = gw.url("");
    let clients = (0..200).map(|i| {
        let url = url.clone();
        tokio::spawn(async move {
            let (mut ws, _) =
                tokio_tungstenite::connect_async(format!("{url}/?user_id=user-{i:03}"))
                    .await
                    .expect("connect");
            let request_id = format!("req-{i:03}");
            send_json(&mut ws, start_agent(&request_id, &format!("request {i}"))).await;
            let run = recv_run(&mut ws, &request_id).await;
            assert_eq!(
                run[4]["payload"]["result"]["reply"],
                format!("echo: request {i}")
            );
            ws.close(None).await.expect("close");
            run[0]["run_id"].as_str().unwrap().to_owned()
        })
    });
    let run_ids: Vec<String> = futures_util::future::join_all(clients)
        .await
        .into_iter()
        .map(|r| r.expect("client task"))
        .collect();
    let distinct: BTreeSet<&String> = run_ids.iter().collect();
    assert_eq!(distinct.len(), 200, "every connection ran its own run");
    gw.stop().await;
}

/// The function's own `@connections` SDK client works against the emulator: POST delivers in
/// order, GET describes, DELETE closes (and DISCONNECT fires), a gone id is GoneException.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn management_api_serves_the_sdk_client() {
    let mut gw = Gateway::dev().await;
    let client = management_client(&gw);
    let (mut ws, conn_id) = gw.connect_user("alice-01").await;

    for i in 0..50 {
        client
            .post_to_connection()
            .connection_id(&conn_id)
            .data(Blob::new(json!({ "n": i }).to_string()))
            .send()
            .await
            .expect("post");
    }
    for i in 0..50 {
        assert_eq!(recv_json(&mut ws).await["n"], i, "pushes arrive in order");
    }

    let described = client
        .get_connection()
        .connection_id(&conn_id)
        .send()
        .await
        .expect("get");
    let identity = described.identity().expect("identity");
    assert_eq!(identity.source_ip(), Some("127.0.0.1"));
    let connected = described.connected_at().expect("connectedAt").secs();
    let last_active = described.last_active_at().expect("lastActiveAt").secs();
    let now = wsexec::time::now_ms() as i64 / 1000;
    assert!((now - connected).abs() < 60 && last_active >= connected);

    client
        .delete_connection()
        .connection_id(&conn_id)
        .send()
        .await
        .expect("delete");
    let close = recv_close(&mut ws).await.expect("close frame");
    assert_eq!(close.code, CloseCode::Normal);
    gw.next_invocation("DISCONNECT", Some(&conn_id)).await;

    for id in [conn_id.as_str(), "NeverConnected0="] {
        let err = client
            .post_to_connection()
            .connection_id(id)
            .data(Blob::new("late"))
            .send()
            .await
            .expect_err("gone");
        assert!(
            err.as_service_error()
                .is_some_and(|e| e.is_gone_exception()),
            "{err:?}"
        );
        // The function's own notifier reads the same answer as a gone client.
        let notifier = ApiGatewayNotifier::new("us-east-1", local_credentials());
        let target = PushTarget {
            endpoint: &format!("http://{}", gw.addr),
            connection_id: id,
        };
        let pushed = notifier.push(target, "late").await.expect_err("gone");
        assert_eq!(pushed.kind(), PushErrorKind::Gone);
    }
    let err = client
        .get_connection()
        .connection_id(&conn_id)
        .send()
        .await
        .expect_err("gone");
    assert!(
        err.as_service_error()
            .is_some_and(|e| e.is_gone_exception()),
        "{err:?}"
    );
    gw.stop().await;
}

/// The events the emulator builds parse with `lambda_http`'s types and have exactly the keys
/// of the sample events (top level and, recursively, `requestContext`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emulated_events_have_the_shape_of_the_samples() {
    let mut gw = Gateway::dev().await;
    let req = request_with(
        &gw.url("/?user_id=alice-01"),
        &[("User-Agent", "local-test/1.0")],
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("connect");
    let connect = gw.next_invocation("CONNECT", None).await;
    let conn_id = connect.connection_id().to_owned();
    send_json(&mut ws, json!({ "type": "ping" })).await;
    recv_json(&mut ws).await;
    let message = gw.next_invocation("MESSAGE", Some(&conn_id)).await;
    ws.close(None).await.unwrap();
    let disconnect = gw.next_invocation("DISCONNECT", Some(&conn_id)).await;

    let pairs = [
        (&connect.event, sample("connect-jwt-query.json")),
        (&message.event, sample("message-start-agent.json")),
        (&disconnect.event, sample("disconnect.json")),
    ];
    for (built, sample) in pairs {
        let parsed: ApiGatewayWebsocketProxyRequest =
            serde_json::from_value(built.clone()).expect("lambda_http parses the emulator's event");
        assert_eq!(
            parsed.request_context.connection_id.as_deref(),
            Some(conn_id.as_str())
        );
        assert_eq!(keys(built), keys(&sample), "top-level keys of {built}");
        assert_eq!(
            context_paths(built),
            context_paths(&sample),
            "requestContext keys of {built}"
        );
    }
    assert_eq!(
        keys(&disconnect.event["headers"]),
        keys(&sample("disconnect.json")["headers"])
    );

    let rc = &connect.event["requestContext"];
    assert_eq!(conn_id.len(), 16);
    assert!(conn_id.ends_with('='));
    assert_eq!(rc["domainName"], gw.addr.to_string());
    assert_eq!(rc["stage"], "local");
    assert_eq!(rc["messageDirection"], "IN");
    assert_eq!(rc["identity"]["userAgent"], "local-test/1.0");
    assert_eq!(rc["identity"]["sourceIp"], "127.0.0.1");
    let time = rc["requestTime"].as_str().unwrap();
    assert!(
        time.ends_with(" +0000") && time.len() == 26 && &time[2..3] == "/",
        "{time}"
    );
    let headers = keys(&connect.event["headers"]);
    for h in [
        "Host",
        "Sec-WebSocket-Key",
        "Sec-WebSocket-Version",
        "X-Amzn-Trace-Id",
        "X-Forwarded-For",
    ] {
        assert!(headers.contains(h), "CONNECT lacks header {h}: {headers:?}");
    }
    assert_eq!(
        connect.event["queryStringParameters"]["user_id"],
        "alice-01"
    );
    assert_eq!(
        connect.event["multiValueQueryStringParameters"]["user_id"],
        json!(["alice-01"])
    );
    assert_eq!(message.event["requestContext"]["routeKey"], "$default");
    assert!(
        message.event["requestContext"]["messageId"]
            .as_str()
            .is_some_and(|m| m.len() == 16)
    );
    gw.stop().await;
}

/// Without `--dev-auth` or a JWT the upgrade is refused with 401; a placeholder user with 403.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_without_credentials_is_refused() {
    let mut strict = Gateway::start(Config::default(), |_| {}).await;
    assert_eq!(refused_status(strict.url("/")).await, 401);
    assert_eq!(refused_status(strict.url("/?user_id=alice-01")).await, 401);
    let refused = strict.next_invocation("CONNECT", None).await;
    assert_eq!(refused.response.unwrap().status_code, 401);
    strict.stop().await;

    let dev = Gateway::dev().await;
    assert_eq!(refused_status(dev.url("/")).await, 401);
    assert_eq!(refused_status(dev.url("/?user_id=placeholder")).await, 403);
    dev.stop().await;
}

/// A JWT in `Sec-WebSocket-Protocol: jwt.<token>` authenticates and the protocol is echoed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_subprotocol_is_echoed() {
    let config = Config {
        jwt: JwtVerifier::from_settings(Some(SAMPLE_SECRET), None, None, None).unwrap(),
        ..Config::default()
    };
    let mut gw = Gateway::start(config, |_| {}).await;
    let offered = sample("connect-jwt-subprotocol.json")["headers"]["Sec-WebSocket-Protocol"]
        .as_str()
        .unwrap()
        .to_owned();
    let chosen = offered
        .split(", ")
        .find(|p| p.starts_with("jwt."))
        .unwrap()
        .to_owned();
    let req = request_with(&gw.url("/"), &[("Sec-WebSocket-Protocol", &offered)]);
    let (mut ws, resp) = tokio_tungstenite::connect_async(req)
        .await
        .expect("accepted");
    assert_eq!(resp.headers()["sec-websocket-protocol"], chosen.as_str());
    let connect = gw.next_invocation("CONNECT", None).await;
    let rec = gw
        .store
        .get_connection(connect.connection_id())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rec.user_id, "user-alice-01");
    send_json(&mut ws, json!({ "type": "ping" })).await;
    assert_eq!(recv_json(&mut ws).await["type"], "pong");

    let bad = request_with(
        &gw.url("/"),
        &[("Sec-WebSocket-Protocol", "jwt.not-a-token")],
    );
    assert_eq!(refused_status(bad).await, 401);
    gw.stop().await;
}

/// The emulator runs the scheduled sweep: a run whose process died is marked `dead` and its
/// owner's open connection is told through the `@connections` API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_sweep_reports_dead_runs_to_their_owner() {
    let mut gw = Gateway::start(dev_config(), |o| {
        o.sweep_interval = Some(Duration::from_millis(200))
    })
    .await;
    let (mut ws, conn_id) = gw.connect_user("alice-01").await;
    let now = wsexec::time::now_ms();
    let orphan: wsexec::store::RunRecord = serde_json::from_value(json!({
        "run_id": "run_orphaned_by_a_crash", "user_id": "alice-01", "thread_id": "thread-1",
        "request_id": "req-orphan", "connection_id": conn_id, "agent": "echo",
        "endpoint": format!("http://{}", gw.addr), "state": "running", "version": 1,
        "created_at": now - 5_000, "updated_at": now - 5_000, "stale_at": now - 1_000,
        "deadline_at": now + 60_000, "request": "lost", "expires_at": now / 1000 + 3_600,
    }))
    .expect("run record");
    gw.store.create_run(&orphan).await.expect("create");
    let notice = recv_json(&mut ws).await;
    assert_eq!(notice["type"], "agent_death", "{notice}");
    assert_eq!(notice["run_id"], "run_orphaned_by_a_crash");
    let run = gw.stored_run("alice-01", "run_orphaned_by_a_crash").await;
    assert_eq!(run.state, wsexec::ExecutionState::Dead);
    gw.stop().await;
}

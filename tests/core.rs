//! Core behaviour on the embedded store: routes, runs, identity, bad input, sample events.

mod support;

use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use support::jwt::{b64, token};
use support::*;
use wsexec::config::Config;
use wsexec::handler::handle;
use wsexec::manager::{InitError, Manager};
use wsexec::notify::memory::MemoryNotifier;
use wsexec::state::ExecutionState;
use wsexec::store::embedded::EmbeddedStore;
use wsexec::store::{Expected, Store};
use wsexec::time::now_ms;

mod embedded_contract {
    use super::*;
    store_contract!(async { Arc::new(EmbeddedStore::in_memory().unwrap()) as Arc<dyn Store> });
}

mod memory_contract {
    use super::*;
    store_contract!(async {
        Arc::new(wsexec::store::memory::MemoryStore::new()) as Arc<dyn Store>
    });
}

/// connect → start_agent → the five events in order → get_execution completed → disconnect.
#[tokio::test]
async fn golden_path_on_embedded_store() {
    let dir = tempdir();
    let store = Arc::new(EmbeddedStore::open(&dir).unwrap());
    let h = Harness::on(test_config(), store.clone());
    let conn = h.connect("alice-01").await;
    assert_eq!(
        h.send_json(&conn, start_frame("r-1", "hello", None)).await,
        None
    );
    let events = h.pushed(&conn);
    assert_eq!(types(&events), FIVE_EVENTS);
    let run_id = events[0]["run_id"].as_str().unwrap().to_owned();
    for e in &events {
        assert_eq!(e["run_id"], run_id.as_str());
        assert_eq!(e["request_id"], "r-1");
        assert!(e["timestamp"].as_str().unwrap().ends_with('Z'));
    }
    assert_eq!(events[0]["payload"]["agent_name"], "echo");
    assert_eq!(events[1]["payload"]["step_number"], 1);
    assert_eq!(events[2]["payload"]["tool_name"], "echo");
    assert_eq!(events[3]["payload"]["result"]["echo"], "hello");
    assert_eq!(events[4]["payload"]["result"]["reply"], "echo: hello");
    let got = h
        .send_json(&conn, json!({"type": "get_execution", "run_id": run_id}))
        .await
        .unwrap();
    assert_eq!(got["type"], "execution");
    assert_eq!(got["payload"]["state"], "completed");
    assert_eq!(got["payload"]["result"]["reply"], "echo: hello");
    // Two writes: the create and the terminal write.
    assert_eq!(got["payload"]["version"], 2);
    let resp = h.invoke(&disconnect_event(&conn)).await;
    assert_eq!(resp["statusCode"], 200);
    assert_eq!(store.get_connection(&conn).await.unwrap(), None);
    let after = h
        .send_json(&conn, json!({"type": "get_execution", "run_id": run_id}))
        .await
        .unwrap();
    assert_eq!(after["payload"]["code"], "unauthorized");
}

/// The same request_id twice makes one run; the retry answers with the existing run.
#[tokio::test]
async fn retried_request_id_returns_the_existing_run() {
    let h = Harness::memory();
    let conn = h.connect("alice-01").await;
    assert_eq!(
        h.send_json(&conn, start_frame("same", "one", None)).await,
        None
    );
    let first = h.pushed(&conn);
    let retry = h
        .send_json(&conn, start_frame("same", "two", None))
        .await
        .unwrap();
    assert_eq!(retry["type"], "execution");
    assert_eq!(retry["payload"]["deduplicated"], true);
    assert_eq!(retry["run_id"], first[0]["run_id"]);
    assert_eq!(retry["payload"]["result"]["reply"], "echo: one");
    assert_eq!(h.pushed(&conn).len(), 5, "a retry pushes no new events");
    let list = h
        .send_json(&conn, json!({"type": "list_executions"}))
        .await
        .unwrap();
    assert_eq!(list["payload"]["items"].as_array().unwrap().len(), 1);
}

/// Without a request_id, API Gateway's messageId deduplicates a redelivered frame.
#[tokio::test]
async fn redelivered_message_id_makes_one_run() {
    let h = Harness::memory();
    let conn = h.connect("alice-01").await;
    let mut ev = message_event(&conn, r#"{"type":"chat","payload":{"text":"hi"}}"#);
    ev["requestContext"]["messageId"] = json!("L0SOBfI6oAMCJTx=");
    h.invoke(&ev).await;
    let again = h.invoke(&ev).await;
    let reply: Value = serde_json::from_str(again["body"].as_str().unwrap()).unwrap();
    assert_eq!(reply["payload"]["deduplicated"], true);
    assert_eq!(reply["request_id"], "L0SOBfI6oAMCJTx");
}

/// Another user's run id answers exactly like an unknown one, on get and cancel.
#[tokio::test]
async fn other_users_run_is_indistinguishable_from_unknown() {
    let h = Harness::memory();
    let alice = h.connect("alice-01").await;
    let bob = h.connect("bob-02").await;
    h.send_json(&alice, start_frame("r-1", "secret", None))
        .await;
    let run_id = h.pushed(&alice)[0]["run_id"].as_str().unwrap().to_owned();
    for kind in ["get_execution", "cancel_agent"] {
        let theirs = h
            .send_json(
                &bob,
                json!({"type": kind, "run_id": run_id, "request_id": "q"}),
            )
            .await
            .unwrap();
        let unknown = h
            .send_json(
                &bob,
                json!({"type": kind, "run_id": "run_doesnotexist", "request_id": "q"}),
            )
            .await
            .unwrap();
        assert_eq!(theirs["payload"], unknown["payload"], "{kind}");
        assert_eq!(theirs["payload"]["code"], "not_found");
        assert_eq!(
            theirs.as_object().unwrap().keys().collect::<Vec<_>>(),
            unknown.as_object().unwrap().keys().collect::<Vec<_>>()
        );
    }
    let list = h
        .send_json(&bob, json!({"type": "list_executions"}))
        .await
        .unwrap();
    assert!(list["payload"]["items"].as_array().unwrap().is_empty());
    let mine = h
        .send_json(&alice, json!({"type": "get_execution", "run_id": run_id}))
        .await
        .unwrap();
    assert_eq!(mine["payload"]["state"], "completed");
}

async fn connect_status(h: &Harness, query: &[(&str, &str)], headers: &[(&str, &str)]) -> Value {
    h.invoke(&connect_event(&aws_id(), query, headers)).await
}

/// Expired, wrongly signed, alg:none, wrong-audience, garbage and missing tokens get 401.
#[tokio::test]
async fn bad_tokens_get_401() {
    let mut cfg = test_config();
    cfg.dev_auth = false;
    cfg.jwt = wsexec::auth::JwtVerifier::from_settings(
        Some(SAMPLE_SECRET),
        None,
        Some("wsexec"),
        Some("chat"),
    )
    .unwrap();
    let h = Harness::with_config(cfg);
    let exp = now_ms() / 1000 + 600;
    let good = token(
        json!({"sub": "alice-01", "exp": exp, "iss": "wsexec", "aud": "chat"}),
        SAMPLE_SECRET,
    );
    assert_eq!(
        connect_status(&h, &[("token", &good)], &[]).await["statusCode"],
        200
    );
    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(format!(r#"{{"sub":"alice-01","exp":{exp},"iss":"wsexec","aud":"chat"}}"#).as_bytes())
    );
    let cases = [
        (
            "expired",
            token(
                json!({"sub": "alice-01", "exp": 1_000_000, "iss": "wsexec", "aud": "chat"}),
                SAMPLE_SECRET,
            ),
        ),
        (
            "wrong key",
            token(
                json!({"sub": "alice-01", "exp": exp, "iss": "wsexec", "aud": "chat"}),
                "other-secret",
            ),
        ),
        ("alg none", none),
        (
            "wrong audience",
            token(
                json!({"sub": "alice-01", "exp": exp, "iss": "wsexec", "aud": "admin"}),
                SAMPLE_SECRET,
            ),
        ),
        (
            "wrong issuer",
            token(
                json!({"sub": "alice-01", "exp": exp, "iss": "evil", "aud": "chat"}),
                SAMPLE_SECRET,
            ),
        ),
        (
            "not yet valid",
            token(
                json!({"sub": "alice-01", "exp": exp, "nbf": exp - 10, "iss": "wsexec", "aud": "chat"}),
                SAMPLE_SECRET,
            ),
        ),
        (
            "no exp",
            token(
                json!({"sub": "alice-01", "iss": "wsexec", "aud": "chat"}),
                SAMPLE_SECRET,
            ),
        ),
        ("garbage", "not.a.jwt".to_owned()),
        ("oversized", "a".repeat(9000)),
    ];
    for (name, t) in &cases {
        let r = connect_status(&h, &[("token", t)], &[]).await;
        assert_eq!(r["statusCode"], 401, "{name}");
        assert_eq!(r["body"], r#"{"message":"unauthorized"}"#, "{name}");
    }
    assert_eq!(
        connect_status(&h, &[], &[]).await["statusCode"],
        401,
        "missing"
    );
    assert_eq!(
        connect_status(&h, &[("user_id", "alice-01")], &[]).await["statusCode"],
        401,
        "dev auth off"
    );
    // The subprotocol carries the token too, and is echoed.
    let proto = format!("chat, jwt.{good}");
    let r = connect_status(&h, &[], &[("Sec-WebSocket-Protocol", &proto)]).await;
    assert_eq!(r["statusCode"], 200);
    assert_eq!(
        r["headers"]["Sec-WebSocket-Protocol"],
        format!("jwt.{good}")
    );
}

/// With no JWT key configured, a token is refused rather than trusted.
#[tokio::test]
async fn tokens_without_configured_key_get_401() {
    let mut cfg = test_config();
    cfg.jwt = None;
    let h = Harness::with_config(cfg);
    let t = token(
        json!({"sub": "alice-01", "exp": now_ms() / 1000 + 60}),
        SAMPLE_SECRET,
    );
    assert_eq!(
        connect_status(&h, &[("token", &t)], &[]).await["statusCode"],
        401
    );
}

/// Placeholder identities get 403 through every identity source.
#[tokio::test]
async fn placeholder_users_get_403() {
    let mut cfg = test_config();
    cfg.mode = wsexec::context::Mode::Production;
    let h = Harness::with_config(cfg);
    for user in [
        "placeholder",
        "NULL",
        "test",
        "mock_user",
        "default_x",
        "test_alice",
        "USER#bob",
    ] {
        let r = connect_status(&h, &[("user_id", user)], &[]).await;
        assert_eq!(r["statusCode"], 403, "{user}");
        assert_eq!(r["body"], r#"{"message":"forbidden"}"#);
        let r = h.invoke(&authorizer_connect_event(&aws_id(), user)).await;
        assert_eq!(r["statusCode"], 403, "authorizer {user}");
        let t = token(
            json!({"sub": user, "exp": now_ms() / 1000 + 60}),
            SAMPLE_SECRET,
        );
        assert_eq!(
            connect_status(&h, &[("token", &t)], &[]).await["statusCode"],
            403,
            "jwt {user}"
        );
    }
    assert_eq!(
        connect_status(&h, &[("user_id", "default_user")], &[]).await["statusCode"],
        200
    );
}

/// Every bad frame class gets its error code, and the next good frame still works.
#[tokio::test]
async fn bad_frames_get_typed_errors_and_connection_stays_usable() {
    let h = Harness::memory();
    let conn = h.connect("alice-01").await;
    let big = "x".repeat(wsexec::limits::MAX_TEXT_BYTES + 1);
    let cases: Vec<(String, &str)> = vec![
        ("not json".into(), "invalid_json"),
        ("".into(), "invalid_json"),
        ("[1]".into(), "invalid_frame"),
        (r#"{"type":7}"#.into(), "invalid_field"),
        (r#"{"payload":{}}"#.into(), "missing_field"),
        (r#"{"type":"dance"}"#.into(), "unknown_type"),
        (r#"{"type":"start_agent"}"#.into(), "missing_field"),
        (r#"{"type":"get_execution"}"#.into(), "missing_field"),
        (
            r#"{"type":"get_execution","run_id":"USER#bob"}"#.into(),
            "invalid_id",
        ),
        (
            r#"{"type":"cancel_agent","run_id":"a/b"}"#.into(),
            "invalid_id",
        ),
        (
            r#"{"type":"list_executions","limit":1000}"#.into(),
            "invalid_field",
        ),
        (
            r#"{"type":"list_executions","cursor":"nope"}"#.into(),
            "invalid_field",
        ),
        (
            r#"{"type":"start_agent","agent":"nobody","payload":{"user_request":"x"}}"#.into(),
            "unknown_agent",
        ),
        (
            format!(r#"{{"type":"start_agent","payload":{{"user_request":"{big}"}}}}"#),
            "field_too_large",
        ),
        (
            format!(
                r#"{{"type":"ping","pad":"{}"}}"#,
                "x".repeat(wsexec::limits::MAX_MESSAGE_BYTES)
            ),
            "message_too_large",
        ),
        // An unclosed `[` is broken JSON, not a JSON value of the wrong kind (issue 17).
        ("[".repeat(100_000), "invalid_json"),
        (
            format!(r#"{{"type":"ping","x":{}}}"#, "[".repeat(100_000)),
            "invalid_json",
        ),
        (
            r#"{"type":"start_agent","payload":{"user_request":"x","metadata":{"user_id":"bob"}}}"#
                .into(),
            "invalid_id",
        ),
    ];
    for (body, code) in &cases {
        let reply = h
            .send(&conn, body)
            .await
            .unwrap_or_else(|| panic!("no reply to {body:.40}"));
        assert_eq!(reply["type"], "error", "{body:.60}");
        assert_eq!(reply["payload"]["code"], *code, "{body:.60}");
        assert_eq!(reply["payload"]["retryable"], false);
        let pong = h.send(&conn, r#"{"type":"ping"}"#).await.unwrap();
        assert_eq!(pong["type"], "pong");
    }
    let mut binary = message_event(&conn, "AAEC");
    binary["isBase64Encoded"] = json!(true);
    let r = h.invoke(&binary).await;
    assert!(r["body"].as_str().unwrap().contains("invalid_frame"));
    assert!(h.pushed(&conn).is_empty(), "no bad frame started a run");
    h.send_json(&conn, start_frame("ok", "still works", None))
        .await;
    assert_eq!(types(&h.pushed(&conn)), FIVE_EVENTS);
}

/// ping and heartbeat answer without building the store.
#[tokio::test]
async fn ping_creates_no_storage_client() {
    let factory: wsexec::manager::StoreFactory =
        Box::new(|_: &Config| Ok(Arc::new(EmbeddedStore::in_memory().unwrap()) as Arc<dyn Store>));
    let mgr = Manager::with_store_factory(test_config(), factory, Arc::new(MemoryNotifier::new()));
    for (body, want) in [
        (r#"{"type":"ping","request_id":"p1"}"#, "pong"),
        (r#"{"type":"heartbeat"}"#, "heartbeat_ack"),
    ] {
        let ev = message_event("C0000000000009=", body);
        let out = handle(&ev.to_string(), Ok(&mgr), None).await.unwrap();
        let v = serde_json::to_value(out).unwrap();
        let reply: Value = serde_json::from_str(v["body"].as_str().unwrap()).unwrap();
        assert_eq!(reply["type"], want);
    }
    assert!(!mgr.store_built());
    let ev = message_event("C0000000000009=", r#"{"type":"list_executions"}"#);
    handle(&ev.to_string(), Ok(&mgr), None).await.unwrap();
    assert!(mgr.store_built());
}

/// A failed initialisation is an error reply (500 on connect), and the next invocation retries.
#[tokio::test]
async fn failed_initialisation_is_an_error_reply_and_retried() {
    let attempts = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let a = attempts.clone();
    let factory: wsexec::manager::StoreFactory = Box::new(move |_: &Config| {
        if a.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            Err(InitError::Config(wsexec::config::ConfigError::Missing {
                var: "TABLE_NAME",
            }))
        } else {
            Ok(Arc::new(EmbeddedStore::in_memory().unwrap()) as Arc<dyn Store>)
        }
    });
    let mgr = Manager::with_store_factory(test_config(), factory, Arc::new(MemoryNotifier::new()));
    let ev = connect_event(&aws_id(), &[("user_id", "alice-01")], &[]);
    let first =
        serde_json::to_value(handle(&ev.to_string(), Ok(&mgr), None).await.unwrap()).unwrap();
    assert_eq!(first["statusCode"], 500);
    assert!(
        !first["body"].as_str().unwrap().contains("TABLE_NAME"),
        "no internals leak"
    );
    let second =
        serde_json::to_value(handle(&ev.to_string(), Ok(&mgr), None).await.unwrap()).unwrap();
    assert_eq!(second["statusCode"], 200);
    // A manager that could not be built at all: error frames, 500 on connect.
    let err = InitError::Config(wsexec::config::ConfigError::Missing { var: "TABLE_NAME" });
    let msg = message_event("C0000000000009=", r#"{"type":"ping"}"#);
    let v = serde_json::to_value(handle(&msg.to_string(), Err(&err), None).await.unwrap()).unwrap();
    assert!(v["body"].as_str().unwrap().contains(r#""code":"internal""#));
    let v = serde_json::to_value(handle(&ev.to_string(), Err(&err), None).await.unwrap()).unwrap();
    assert_eq!(v["statusCode"], 500);
}

/// Events that are not WebSocket or scheduled events fail the invocation with a clear message.
#[tokio::test]
async fn non_websocket_events_fail_the_invocation() {
    let h = Harness::memory();
    for raw in [
        json!({"version": "2.0", "routeKey": "GET /", "requestContext": {"http": {"method": "GET"}}}),
        json!({"Records": []}),
        json!([1, 2]),
        json!({"requestContext": {"eventType": "MESSAGE", "connectionId": 5}}),
    ] {
        let err = handle(&raw.to_string(), Ok(&h.mgr), None)
            .await
            .unwrap_err();
        assert_eq!(err.error_type, "NonRetryable.InvalidEvent", "{raw}");
        assert!(err.message.contains("WebSocket"), "{}", err.message);
    }
}

/// A run past its time limit ends `timeout` with a retryable `agent_error` that names the
/// setting to raise.
#[tokio::test]
async fn run_time_limit_gives_timeout() {
    let mut cfg = test_config();
    cfg.run_time_limit = Some(Duration::from_millis(300));
    let h = Harness::with_config(cfg);
    let conn = h.connect("alice-01").await;
    h.send_json(&conn, json!({"type": "start_agent", "request_id": "slow", "payload": {"user_request": "x", "delay_ms": 5000}})).await;
    let events = h.pushed(&conn);
    assert_eq!(
        types(&events),
        [
            "agent_started",
            "agent_thinking",
            "tool_executing",
            "agent_error"
        ]
    );
    assert_eq!(events[3]["payload"]["code"], "run_timeout");
    assert_eq!(events[3]["payload"]["retryable"], true);
    let message = events[3]["payload"]["message"].as_str().unwrap();
    assert!(message.contains("RUN_TIME_LIMIT_MS"), "{message}");
    let run_id = events[0]["run_id"].as_str().unwrap();
    let got = h
        .send_json(&conn, json!({"type": "get_execution", "run_id": run_id}))
        .await
        .unwrap();
    assert_eq!(got["payload"]["state"], "timeout");
}

/// A long step renews the heartbeat (rate limited) so the run is never declared dead.
#[tokio::test]
async fn long_steps_renew_the_heartbeat() {
    let mut cfg = test_config();
    cfg.heartbeat_deadline = Duration::from_millis(600);
    let h = Harness::with_config(cfg);
    let conn = h.connect("alice-01").await;
    h.send_json(&conn, json!({"type": "start_agent", "request_id": "long", "payload": {"user_request": "x", "delay_ms": 1500}})).await;
    let events = h.pushed(&conn);
    assert_eq!(types(&events), FIVE_EVENTS);
    let run_id = events[0]["run_id"].as_str().unwrap();
    let got = h
        .send_json(&conn, json!({"type": "get_execution", "run_id": run_id}))
        .await
        .unwrap();
    let v = got["payload"]["version"].as_u64().unwrap();
    // 1.5 s at one renewal per 200 ms: a handful of writes, not one per tick.
    assert!((4..=10).contains(&v), "version {v}");
}

/// cancel_agent from a second connection ends the run `cancelled`; both sides hear it once.
#[tokio::test]
async fn cancel_from_another_connection() {
    let h = Arc::new(Harness::memory());
    let runner = h.connect("alice-01").await;
    let other = h.connect("alice-01").await;
    let h2 = h.clone();
    let r2 = runner.clone();
    let task = tokio::spawn(async move {
        h2.send_json(&r2, json!({"type": "start_agent", "request_id": "c1", "payload": {"user_request": "x", "delay_ms": 3000}})).await
    });
    let run_id = loop {
        if let Some(e) = h.pushed(&runner).first() {
            break e["run_id"].as_str().unwrap().to_owned();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let reply = h
        .send_json(&other, json!({"type": "cancel_agent", "run_id": run_id}))
        .await
        .unwrap();
    assert_eq!(reply["type"], "agent_cancelled");
    task.await.unwrap();
    let events = h.pushed(&runner);
    assert_eq!(types(&events).last().unwrap(), "agent_cancelled");
    assert!(!types(&events).contains(&"agent_completed".to_owned()));
    let got = h
        .send_json(&other, json!({"type": "get_execution", "run_id": run_id}))
        .await
        .unwrap();
    assert_eq!(got["payload"]["state"], "cancelled");
    let again = h
        .send_json(&other, json!({"type": "cancel_agent", "run_id": run_id}))
        .await
        .unwrap();
    assert_eq!(again["payload"]["code"], "run_finished");
}

/// A stale alive run is marked dead by get_execution and by the sweep, exactly once, and the
/// owner's live connections hear `agent_death`.
#[tokio::test]
async fn stale_runs_are_marked_dead_once() {
    let h = Harness::memory();
    let conn = h.connect("alice-01").await;
    let store = h.mgr.store().unwrap();
    let old = now_ms() - 60_000;
    let mut a = support::contract::run("alice-01", "run_stale_a", old);
    a.connection_id = "Cgone0000000001=".into();
    a.deadline_at = now_ms() + 60_000;
    let mut b = a.clone();
    b.run_id = "run_stale_b".into();
    b.deadline_at = old + 1;
    store.create_run(&a).await.unwrap();
    store.create_run(&b).await.unwrap();
    let got = h
        .send_json(
            &conn,
            json!({"type": "get_execution", "run_id": "run_stale_a"}),
        )
        .await
        .unwrap();
    assert_eq!(got["payload"]["state"], "dead");
    let sweep = h.invoke(&sample("scheduled-sweep.json")).await;
    assert_eq!(
        sweep,
        json!({"examined": 1, "dead": 0, "continued": 0, "timed_out": 1, "skipped": 0, "errors": 0})
    );
    let again = h.invoke(&sample("scheduled-sweep.json")).await;
    assert_eq!(again["examined"], 0);
    let pushed = h.pushed(&conn);
    assert_eq!(types(&pushed), ["agent_death", "agent_error"]);
    assert_eq!(pushed[0]["run_id"], "run_stale_a");
    assert_eq!(pushed[1]["payload"]["code"], "run_timeout");
}

/// A run that finished between the sweep's read and its write is left as it finished.
#[tokio::test]
async fn sweep_leaves_runs_finished_meanwhile() {
    let h = Harness::memory();
    let store = h.mgr.store().unwrap();
    let old = now_ms() - 60_000;
    let r = support::contract::run("alice-01", "run_race", old);
    store.create_run(&r).await.unwrap();
    let mut done = r.clone();
    done.state = ExecutionState::Completed;
    done.version = 2;
    store.update_run(&done, Expected::of(&r)).await.unwrap();
    // The sweep still holds the stale read `r`.
    let out = wsexec::sweep::reap(&h.mgr.run_deps().unwrap(), &r, now_ms())
        .await
        .unwrap();
    assert_eq!(out, wsexec::sweep::Reaped::Raced(done.clone()));
    assert_eq!(
        store.get_run("alice-01".into(), "run_race").await.unwrap(),
        Some(done)
    );
}

/// list_executions pages newest first with an opaque cursor, per thread too.
#[tokio::test]
async fn list_executions_paginates() {
    let h = Harness::memory();
    let conn = h.connect("alice-01").await;
    for i in 0..5 {
        let thread = if i % 2 == 0 { "even" } else { "odd" };
        h.send_json(&conn, json!({"type": "start_agent", "request_id": format!("l{i}"), "thread_id": thread, "payload": {"user_request": format!("m{i}")}})).await;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut seen = vec![];
    let mut cursor = Value::Null;
    loop {
        let mut q = json!({"type": "list_executions", "limit": 2});
        if !cursor.is_null() {
            q["cursor"] = cursor.clone();
        }
        let page = h.send_json(&conn, q).await.unwrap();
        for it in page["payload"]["items"].as_array().unwrap() {
            seen.push(it["request_id"].as_str().unwrap().to_owned());
        }
        cursor = page["payload"]["cursor"].clone();
        if cursor.is_null() {
            break;
        }
    }
    assert_eq!(seen, ["l4", "l3", "l2", "l1", "l0"]);
    let odd = h
        .send_json(
            &conn,
            json!({"type": "list_executions", "thread_id": "odd"}),
        )
        .await
        .unwrap();
    let ids: Vec<_> = odd["payload"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["request_id"].clone())
        .collect();
    assert_eq!(ids, [json!("l3"), json!("l1")]);
}

/// The embedded store keeps connections and runs across a reopen.
#[tokio::test]
async fn embedded_store_survives_reopen() {
    let dir = tempdir();
    let run_id;
    {
        let h = Harness::on(test_config(), Arc::new(EmbeddedStore::open(&dir).unwrap()));
        let conn = h.connect("alice-01").await;
        h.send_json(&conn, start_frame("persist", "keep me", None))
            .await;
        run_id = h.pushed(&conn)[0]["run_id"].as_str().unwrap().to_owned();
    }
    let store = EmbeddedStore::open(&dir).unwrap();
    let run = store
        .get_run("alice-01".into(), &run_id)
        .await
        .unwrap()
        .expect("run survives");
    assert_eq!(run.state, ExecutionState::Completed);
    assert_eq!(run.request, "keep me");
}

/// Every file in events/ runs through the handler with its documented outcome; a new file
/// without an expectation fails this test.
#[tokio::test]
async fn every_sample_event_runs() {
    let mut cfg = test_config();
    cfg.dev_auth = false;
    cfg.mode = wsexec::context::Mode::Production;
    let h = Harness::with_config(cfg);
    // Order matters: connections first, then messages on the JWT connection, then goodbye.
    let expected: &[(&str, &str)] = &[
        ("connect-jwt-query.json", "200"),
        ("connect-jwt-subprotocol.json", "200+protocol"),
        ("connect-authorizer.json", "200"),
        ("connect-no-credentials.json", "401"),
        ("connect-placeholder-user.json", "403"),
        ("message-ping.json", "pong"),
        ("message-start-agent.json", "pushed:5"),
        ("message-user-message.json", "pushed:10"),
        ("message-get-execution.json", "execution:completed"),
        ("message-list-executions.json", "executions:2"),
        ("message-cancel-agent.json", "error:run_finished"),
        ("message-not-json.json", "error:invalid_json"),
        ("scheduled-sweep.json", "sweep"),
        ("disconnect.json", "200"),
    ];
    let mut files: Vec<String> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/events"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    let mut listed: Vec<String> = expected.iter().map(|(f, _)| f.to_string()).collect();
    listed.sort();
    assert_eq!(
        files, listed,
        "every sample event needs an expectation here"
    );
    let conn = sample("connect-jwt-query.json")["requestContext"]["connectionId"]
        .as_str()
        .unwrap()
        .to_owned();
    for (file, want) in expected {
        let resp = h.invoke(&sample(file)).await;
        let body: Value = resp
            .get("body")
            .and_then(|b| b.as_str())
            .map(|b| serde_json::from_str(b).unwrap())
            .unwrap_or(Value::Null);
        match *want {
            "200" | "401" | "403" => {
                assert_eq!(resp["statusCode"].to_string(), *want, "{file}: {resp}")
            }
            "200+protocol" => {
                assert_eq!(resp["statusCode"], 200, "{file}");
                assert!(
                    resp["headers"]["Sec-WebSocket-Protocol"]
                        .as_str()
                        .unwrap()
                        .starts_with("jwt.")
                );
            }
            "pong" => assert_eq!(body["type"], "pong", "{file}"),
            "sweep" => assert_eq!(resp["examined"], 0, "{file}"),
            w if w.starts_with("pushed:") => {
                assert!(body.is_null(), "{file}: {body}");
                let n: usize = w[7..].parse().unwrap();
                assert_eq!(h.pushed(&conn).len(), n, "{file}");
            }
            w => {
                let (kind, detail) = w.split_once(':').unwrap();
                assert_eq!(body["type"], kind, "{file}: {body}");
                match kind {
                    "execution" => assert_eq!(body["payload"]["state"], detail),
                    "executions" => assert_eq!(
                        body["payload"]["items"]
                            .as_array()
                            .unwrap()
                            .len()
                            .to_string(),
                        detail
                    ),
                    _ => assert_eq!(body["payload"]["code"], detail, "{file}"),
                }
            }
        }
    }
}

fn tempdir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "wsexec-test-{}-{}",
        std::process::id(),
        aws_id().trim_end_matches('=')
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

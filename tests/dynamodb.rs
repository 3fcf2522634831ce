//! The DynamoDB store on AWS's own DynamoDB Local, and classified failures on real wire faults.

mod support;

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{Value, json};
use std::sync::Arc;
use support::dynamodb::*;
use support::*;
use wsexec::state::ExecutionState;
use wsexec::store::dynamo::DynamoStore;
use wsexec::store::{Expected, StorageErrorKind, Store};
use wsexec::time::now_ms;

mod dynamodb_contract {
    use super::*;
    store_contract!(async { Arc::new(fresh_store("contract").await) as Arc<dyn Store> });
}

/// The golden path on DynamoDB Local, then the raw items have the documented layout.
#[tokio::test]
async fn golden_path_and_item_layout() {
    let store = Arc::new(fresh_store("golden").await);
    let h = Harness::on(test_config(), store.clone());
    let conn = h.connect("alice-01").await;
    assert_eq!(
        h.send_json(&conn, start_frame("g-1", "hello dynamo", None))
            .await,
        None
    );
    let events = h.pushed(&conn);
    assert_eq!(types(&events), FIVE_EVENTS);
    let run_id = events[0]["run_id"].as_str().unwrap().to_owned();
    let got = h
        .send_json(&conn, json!({"type": "get_execution", "run_id": run_id}))
        .await
        .unwrap();
    assert_eq!(got["payload"]["state"], "completed");

    let client = store.client();
    let item = client
        .get_item()
        .table_name(store.table())
        .key("pk", AttributeValue::S("USER#alice-01".into()))
        .key("sk", AttributeValue::S(format!("RUN#{run_id}")))
        .send()
        .await
        .unwrap()
        .item
        .expect("run item");
    let s = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
    let n = |k: &str| {
        item.get(k)
            .and_then(|v| v.as_n().ok())
            .map(|v| v.parse::<u64>().unwrap())
    };
    assert_eq!(s("state").as_deref(), Some("completed"));
    assert_eq!(n("version"), Some(2));
    assert_eq!(s("item_type").as_deref(), Some("run"));
    assert_eq!(s("gsi1pk").as_deref(), Some("USER#alice-01"));
    assert!(s("gsi1sk").unwrap().starts_with("RUN#") && s("gsi1sk").unwrap().ends_with(&run_id));
    assert_eq!(
        s("gsi2pk").as_deref(),
        Some(format!("USER#alice-01#THREAD#{run_id}").as_str())
    );
    let ttl = n("expires_at").unwrap();
    assert!(
        ttl > now_ms() / 1000 + 6 * 86_400 && ttl < now_ms() / 1000 + 8 * 86_400,
        "TTL ~7 days in seconds"
    );
    assert!(
        !item.contains_key("alive_shard") && !item.contains_key("alive_due"),
        "terminal runs leave the sparse index"
    );
    assert_eq!(
        serde_json::from_str::<Value>(&s("result").unwrap()).unwrap()["reply"],
        "echo: hello dynamo"
    );

    let conns = client
        .query()
        .table_name(store.table())
        .index_name("by_owner")
        .key_condition_expression("gsi1pk = :u AND begins_with(gsi1sk, :c)")
        .expression_attribute_values(":u", AttributeValue::S("USER#alice-01".into()))
        .expression_attribute_values(":c", AttributeValue::S("CONN#".into()))
        .send()
        .await
        .unwrap();
    let items = conns.items.unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["pk"].as_s().unwrap(), &format!("CONN#{conn}"));
    assert!(items[0]["expires_at"].as_n().is_ok());

    let resp = h.invoke(&disconnect_event(&conn)).await;
    assert_eq!(resp["statusCode"], 200);
    assert_eq!(store.get_connection(&conn).await.unwrap(), None);
}

/// DynamoDB requests per route: ping 0, $connect 1, a whole echo run 2, get 1, $disconnect 1.
#[tokio::test]
async fn requests_per_route_are_counted() {
    let store = Arc::new(fresh_store("count").await);
    let counter = store.requests();
    let h = Harness::on(test_config(), store.clone());
    let measure =
        async |label: &str, f: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + '_>>| {
            let before = counter.get();
            f.await;
            (label.to_owned(), counter.get() - before)
        };
    let conn_id = aws_id();
    let ev = connect_event(&conn_id, &[("user_id", "alice-01")], &[]);
    let connect = measure(
        "connect",
        Box::pin(async {
            h.invoke(&ev).await;
        }),
    )
    .await;
    let ping = measure(
        "ping",
        Box::pin(async {
            h.send(&conn_id, r#"{"type":"ping"}"#).await;
        }),
    )
    .await;
    let run = measure(
        "run",
        Box::pin(async {
            h.send_json(&conn_id, start_frame("c-1", "hello dynamo", None))
                .await;
        }),
    )
    .await;
    let run_id = h.pushed(&conn_id)[0]["run_id"].as_str().unwrap().to_owned();
    let get = measure(
        "get",
        Box::pin(async {
            h.send_json(&conn_id, json!({"type":"get_execution","run_id":run_id}))
                .await;
        }),
    )
    .await;
    let disconnect = measure(
        "disconnect",
        Box::pin(async {
            h.invoke(&disconnect_event(&conn_id)).await;
        }),
    )
    .await;
    assert_eq!(
        vec![connect, ping, run, get, disconnect],
        vec![
            ("connect".into(), 1),
            ("ping".into(), 0),
            ("run".into(), 2),
            ("get".into(), 1),
            ("disconnect".into(), 1)
        ]
    );
    // A cold instance (no cached identity) pays one GetItem for the connection record.
    let cold = Harness::on(test_config(), store.clone());
    let c2 = h.connect("bob-02").await;
    let before = counter.get();
    cold.send_json(&c2, json!({"type":"list_executions"})).await;
    assert_eq!(counter.get() - before, 2);
}

/// DynamoDB requests of a run with and without a follower, and of `resume`: a run is its
/// create, one write per heartbeat and its terminal write; a `resume` of an alive run is one
/// read and one conditional write, and costs the run two more (its next heartbeat conflicts,
/// is read back and written again); a `resume` of a finished run is one read.
#[tokio::test]
async fn requests_per_run_with_and_without_followers_are_counted() {
    let driving = Arc::new(fresh_store("follow").await);
    // The resuming connection's instance: same table, its own request counter.
    let resuming = Arc::new(store_at(
        driving.table(),
        &endpoint(),
        wsexec::store::dynamo::DynamoSettings::default(),
    ));
    let mut config = test_config();
    // Heartbeats at 1 s and 2 s of a 2.5 s echo step: far from every other request.
    config.heartbeat_deadline = std::time::Duration::from_millis(3_000);
    let h = Arc::new(Harness::on(config.clone(), driving.clone()));
    let other = Harness::on(config, resuming.clone());
    let (runs, resumes) = (driving.requests(), resuming.requests());
    let a = h.connect("alice-01").await;
    let b = h.connect("alice-01").await;
    // Warm `other`'s identity cache for `b` (one GetItem), so the resume counts only itself.
    other
        .send_json(&b, json!({"type": "get_execution", "run_id": "run-none-1"}))
        .await;

    let mut per_run = Vec::new();
    for (request_id, follow) in [("plain-1", false), ("followed-1", true)] {
        let before = runs.get();
        let runner = {
            let (h, a) = (h.clone(), a.clone());
            let frame = start_frame(request_id, "count me", Some(2_500));
            tokio::spawn(async move { h.send_json(&a, frame).await })
        };
        if follow {
            let run_id = wsexec::run::derive_run_id("alice-01", request_id);
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            let r0 = resumes.get();
            let reply = other
                .send_json(
                    &b,
                    json!({"type": "resume", "run_id": run_id, "after_seq": 0}),
                )
                .await
                .unwrap();
            assert_eq!(reply["payload"]["state"], "running", "{reply}");
            assert_eq!(
                resumes.get() - r0,
                2,
                "resume of an alive run: GetItem + PutItem"
            );
        }
        tokio::time::timeout(std::time::Duration::from_secs(10), runner)
            .await
            .unwrap()
            .unwrap();
        per_run.push(runs.get() - before);
    }
    assert_eq!(
        per_run,
        vec![4, 6],
        "create + 2 heartbeats + terminal; +2 for the follower"
    );
    let followed = h.pushed(&b);
    assert_eq!(
        types(&followed),
        FIVE_EVENTS,
        "the follower got the whole run"
    );

    let run_id = wsexec::run::derive_run_id("alice-01", "followed-1");
    let r0 = resumes.get();
    let reply = other
        .send_json(&b, json!({"type": "resume", "run_id": run_id}))
        .await
        .unwrap();
    assert_eq!(reply["payload"]["state"], "completed");
    assert_eq!(resumes.get() - r0, 1, "resume of a finished run: GetItem");
}

/// 50 writers racing the same transition: exactly one wins, the rest get Conflict.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_transitions_have_one_winner() {
    let store = Arc::new(fresh_store("race").await);
    let r = support::contract::run("alice-01", "run-race", now_ms());
    store.create_run(&r).await.unwrap();
    let mut tasks = vec![];
    for i in 0..50u64 {
        let store = store.clone();
        let r = r.clone();
        tasks.push(tokio::spawn(async move {
            let mut next = r.clone();
            next.version = 2;
            next.state = if i % 2 == 0 {
                ExecutionState::Completed
            } else {
                ExecutionState::Cancelled
            };
            next.cancelled_by = Some(format!("writer-{i}"));
            (
                next.clone(),
                store.update_run(&next, Expected::of(&r)).await,
            )
        }));
    }
    let mut winners = vec![];
    for t in tasks {
        let (next, res) = t.await.unwrap();
        match res {
            Ok(()) => winners.push(next),
            Err(e) => {
                assert_eq!(e.kind(), StorageErrorKind::Conflict);
                assert!(!e.is_retryable());
            }
        }
    }
    assert_eq!(winners.len(), 1);
    assert_eq!(
        store.get_run("alice-01".into(), "run-race").await.unwrap(),
        Some(winners.remove(0))
    );
}

/// 50 concurrent start_agent with one request_id make exactly one run.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_starts_with_one_request_id_make_one_run() {
    let store = Arc::new(fresh_store("idem").await);
    let h = Arc::new(Harness::on(test_config(), store.clone()));
    let conn = h.connect("alice-01").await;
    let mut tasks = vec![];
    for _ in 0..50 {
        let h = h.clone();
        let conn = conn.clone();
        tasks.push(tokio::spawn(async move {
            h.send_json(&conn, start_frame("same-request", "hello dynamo", None))
                .await
        }));
    }
    let mut deduplicated = 0;
    for t in tasks {
        if let Some(reply) = t.await.unwrap() {
            assert_eq!(reply["type"], "execution", "{reply}");
            deduplicated += 1;
        }
    }
    assert_eq!(deduplicated, 49);
    let page = store
        .list_runs("alice-01".into(), None, 50, None)
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    let started = types(&h.pushed(&conn))
        .iter()
        .filter(|t| *t == "agent_started")
        .count();
    assert_eq!(started, 1);
}

/// A missing table is a non-retryable Schema error naming the table; $connect answers 500.
#[tokio::test]
async fn missing_table_is_a_schema_error() {
    let store = Arc::new(store_at("no-such-table", &endpoint(), fast_settings(1)));
    let e = store.get_run("alice-01".into(), "run-x").await.unwrap_err();
    assert_eq!(e.kind(), StorageErrorKind::Schema);
    assert_eq!(e.code(), "storage_schema");
    assert!(!e.is_retryable());
    assert!(e.to_string().contains("no-such-table"), "{e}");
    let h = Harness::on(test_config(), store);
    let r = h
        .invoke(&connect_event(&aws_id(), &[("user_id", "alice-01")], &[]))
        .await;
    assert_eq!(r["statusCode"], 500);
    assert_eq!(r["body"], r#"{"message":"internal error"}"#);
}

/// Every DynamoDB failure on the wire is classified, and the client hears the right outcome.
#[tokio::test]
async fn wire_faults_are_classified() {
    use StorageErrorKind::*;
    let cases: Vec<(Fault, StorageErrorKind, &str, bool, u16)> = vec![
        (
            Fault::Error {
                status: 400,
                code: "ProvisionedThroughputExceededException",
                extra: "",
            },
            Throttled,
            "throttled",
            true,
            503,
        ),
        (
            Fault::Error {
                status: 400,
                code: "ThrottlingException",
                extra: "",
            },
            Throttled,
            "throttled",
            true,
            503,
        ),
        (
            Fault::Error {
                status: 400,
                code: "RequestLimitExceeded",
                extra: "",
            },
            Throttled,
            "throttled",
            true,
            503,
        ),
        (
            Fault::Error {
                status: 400,
                code: "TransactionConflictException",
                extra: "",
            },
            Contention,
            "contention",
            true,
            503,
        ),
        (
            Fault::Error {
                status: 500,
                code: "InternalServerError",
                extra: "",
            },
            Unavailable,
            "storage_unavailable",
            true,
            503,
        ),
        (
            Fault::Error {
                status: 503,
                code: "ServiceUnavailable",
                extra: "",
            },
            Unavailable,
            "storage_unavailable",
            true,
            503,
        ),
        (
            Fault::Error {
                status: 400,
                code: "ResourceNotFoundException",
                extra: "",
            },
            Schema,
            "storage_schema",
            false,
            500,
        ),
        (
            Fault::Error {
                status: 400,
                code: "AccessDeniedException",
                extra: "",
            },
            Permission,
            "storage_permission",
            false,
            500,
        ),
        (
            Fault::Error {
                status: 400,
                code: "UnrecognizedClientException",
                extra: "",
            },
            Permission,
            "storage_permission",
            false,
            500,
        ),
        (
            Fault::Error {
                status: 400,
                code: "ValidationException",
                extra: "",
            },
            Invalid,
            "storage_invalid",
            false,
            500,
        ),
        (
            Fault::Error {
                status: 400,
                code: "ConditionalCheckFailedException",
                extra: "",
            },
            Conflict,
            "conflict",
            false,
            500,
        ),
        (Fault::Silent, Timeout, "storage_timeout", true, 503),
    ];
    for (fault, kind, code, retryable, connect_status) in cases {
        let label = format!("{fault:?}");
        let (url, hits) = fault_endpoint(fault).await;
        let store = Arc::new(store_at("t", &url, fast_settings(1)));
        let e = store.get_connection("C1=").await.unwrap_err();
        assert_eq!(
            (e.kind(), e.code(), e.is_retryable()),
            (kind, code, retryable),
            "{label}: {e:?}"
        );
        assert!(
            hits.load(std::sync::atomic::Ordering::SeqCst) >= 1,
            "{label}: the SDK really called"
        );
        // What clients are told follows from the kind.
        let h = Harness::on(test_config(), store);
        let r = h
            .invoke(&connect_event(&aws_id(), &[("user_id", "alice-01")], &[]))
            .await;
        assert_eq!(r["statusCode"], connect_status, "{label}");
        let reply = h
            .send(
                &aws_id(),
                r#"{"type":"get_execution","run_id":"run-1","request_id":"q1"}"#,
            )
            .await
            .unwrap();
        assert_eq!(reply["type"], "error", "{label}");
        assert_eq!(reply["payload"]["code"], code, "{label}");
        assert_eq!(reply["payload"]["retryable"], retryable, "{label}");
        assert_eq!(reply["request_id"], "q1");
        assert!(
            !reply.to_string().contains("injected"),
            "{label}: no raw cause reaches clients"
        );
    }
    let store = store_at("t", &refused_endpoint(), fast_settings(1));
    let e = store.get_connection("C1=").await.unwrap_err();
    assert_eq!(
        (e.kind(), e.is_retryable()),
        (StorageErrorKind::Connection, true),
        "{e:?}"
    );
}

/// The SDK's own retries stay on and bounded: a throttled call is tried exactly max_attempts times.
#[tokio::test]
async fn sdk_retries_are_bounded() {
    let (url, hits) = fault_endpoint(Fault::Error {
        status: 400,
        code: "ThrottlingException",
        extra: "",
    })
    .await;
    let mut settings = fast_settings(3);
    settings.operation_timeout = std::time::Duration::from_secs(30);
    settings.attempt_timeout = std::time::Duration::from_secs(5);
    let store = store_at("t", &url, settings);
    let counter = store.requests();
    let e = store.get_run("alice-01".into(), "r").await.unwrap_err();
    assert_eq!(e.kind(), StorageErrorKind::Throttled);
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 3);
    assert_eq!(counter.get(), 3);
}

/// The client is built from the standard environment variables, never a metadata endpoint.
#[test]
fn store_from_env_requires_region_and_credentials() {
    // Runs in a child process so the environment is exactly what the test sets.
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args(["--exact", "env_child", "--nocapture", "--include-ignored"])
        .env_clear()
        .env("WSEXEC_ENV_CHILD", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    // A renamed or filtered-out child would pass vacuously: it must have run, once.
    assert!(stdout.contains("test env_child ... ok"), "{stdout}");
    assert!(stdout.contains("1 passed"), "{stdout}");
}

/// Child of `store_from_env_requires_region_and_credentials`.
#[test]
#[ignore = "run as a child process by store_from_env_requires_region_and_credentials"]
fn env_child() {
    if std::env::var("WSEXEC_ENV_CHILD").is_err() {
        return;
    }
    let e = DynamoStore::from_env("t", Default::default())
        .err()
        .expect("no region");
    assert_eq!(e.kind(), StorageErrorKind::Invalid);
    assert!(e.to_string().contains("AWS_REGION"));
    // SAFETY: this child process is single-threaded test code with nothing else reading env.
    unsafe { std::env::set_var("AWS_REGION", "us-east-1") };
    let e = DynamoStore::from_env("t", Default::default())
        .err()
        .expect("no credentials");
    assert_eq!(e.kind(), StorageErrorKind::Permission);
    assert!(e.to_string().contains("AWS_ACCESS_KEY_ID"));
}

/// The init-time warm-up is one real request (a `GetItem` of a key that never exists).
#[tokio::test]
async fn warm_up_sends_one_get_item() {
    let table = fresh_store("warm").await;
    let store = store_at(table.table(), &endpoint(), Default::default());
    let counter = store.requests();
    store.warm_up().await.unwrap();
    assert_eq!(counter.operations(), [("GetItem".to_owned(), 1)].into());
    let (url, hits) = fault_endpoint(Fault::Error {
        status: 500,
        code: "InternalServerError",
        extra: "",
    })
    .await;
    let failing = store_at("t", &url, fast_settings(1));
    let e = failing.warm_up().await.unwrap_err();
    assert_eq!(e.kind(), StorageErrorKind::Unavailable);
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
}

//! Fuzzes whole Lambda events through `decode` and the real handler on an in-memory manager.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use std::sync::Arc;
use wsexec::config::Config;
use wsexec::context::Mode;
use wsexec::event::{Incoming, decode};
use wsexec::handler::{Output, handle};
use wsexec::limits::MAX_MESSAGE_BYTES;
use wsexec::manager::{Identity, Manager};
use wsexec::notify::memory::MemoryNotifier;
use wsexec::store::embedded::EmbeddedStore;
use wsexec::store::{RunRecord, Store};

/// The secret the sample JWTs in `events/` are signed with.
const SAMPLE_SECRET: &str = "wsexec-sample-secret";
/// The owner of the pre-seeded runs, and of every connection the fuzzer names.
const USER: &str = "user-alice-01";
/// The run the sample get/cancel events name.
const SAMPLE_RUN: &str = "run_2f5c665cfb6691ac803533105bb46442";

/// Every `type` a direct reply may have.
const REPLY_TYPES: [&str; 6] = [
    "pong",
    "heartbeat_ack",
    "execution",
    "executions",
    "agent_cancelled",
    "error",
];

/// Inputs handled by one manager before a fresh one replaces it: reusing it keeps the target
/// fast, replacing it bounds the memory the stored runs take.
const INPUTS_PER_MANAGER: u32 = 2_000;

/// One instance's manager, as a warm Lambda keeps it, and its notifier.
struct Instance {
    mgr: Manager,
    notifier: Arc<MemoryNotifier>,
    inputs: u32,
}

thread_local! {
    static RT: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    static INSTANCE: std::cell::RefCell<Option<Instance>> = const { std::cell::RefCell::new(None) };
}

async fn instance() -> Instance {
    let store = Arc::new(EmbeddedStore::in_memory().unwrap());
    store.create_run(&run(SAMPLE_RUN, false)).await.unwrap();
    store.create_run(&run("run_stale", true)).await.unwrap();
    let notifier = Arc::new(MemoryNotifier::new());
    Instance {
        mgr: Manager::new(config(), store, notifier.clone()),
        notifier,
        inputs: 0,
    }
}

fn config() -> Config {
    let mut c = Config::from_lookup(|k| match k {
        "JWT_SECRET" => Some(SAMPLE_SECRET.to_owned()),
        _ => None,
    })
    .unwrap();
    c.dev_auth = true;
    c.mode = Mode::Test;
    c
}

fn run(run_id: &str, alive: bool) -> RunRecord {
    let now = wsexec::time::now_ms();
    let created = if alive { now - 60_000 } else { now };
    RunRecord {
        run_id: run_id.into(),
        user_id: USER.into(),
        thread_id: "thread-0001".into(),
        request_id: "req-0001".into(),
        connection_id: "L0SM9cOFvHcCIhw=".into(),
        tenant_id: None,
        endpoint: Some("https://a1b2c3d4e5.execute-api.us-east-1.amazonaws.com/prod".into()),
        agent: "echo".into(),
        state: if alive {
            wsexec::ExecutionState::Running
        } else {
            wsexec::ExecutionState::Completed
        },
        version: 1,
        created_at: created,
        updated_at: created,
        stale_at: created + 10_000,
        deadline_at: created + 15_000,
        request: "Summarise the week".into(),
        options: Default::default(),
        result: None,
        error: None,
        cancelled_by: None,
        claimed_by: None,
        expires_at: now / 1000 + 3600,
    }
}

/// Checks a `$default` reply: no body, or one JSON frame of a known type; errors are typed.
fn check_reply(body: Option<&str>) {
    let Some(body) = body else { return };
    let v: Value = serde_json::from_str(body).expect("reply is JSON");
    let kind = v["type"].as_str().expect("reply has a type");
    assert!(REPLY_TYPES.contains(&kind), "reply type {kind}");
    assert!(v["timestamp"].is_string());
    if kind == "error" {
        assert!(v["payload"]["code"].is_string() && v["payload"]["retryable"].is_boolean());
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    RT.with(|rt| {
        INSTANCE.with_borrow_mut(|slot| {
            rt.block_on(async {
                if slot.as_ref().is_none_or(|i| i.inputs >= INPUTS_PER_MANAGER) {
                    *slot = Some(instance().await);
                }
                let Some(Instance {
                    mgr,
                    notifier,
                    inputs,
                }) = slot.as_mut()
                else {
                    return;
                };
                *inputs += 1;
                let decoded = decode(raw);
                // Whatever connection the event names is a connection of USER: messages get past
                // the identity check and reach the routes.
                let mut is_message = false;
                if let Ok(Incoming::WebSocket(e)) = &decoded {
                    is_message = e.request_context.event_type.as_deref() == Some("MESSAGE");
                    if let Some(c) = &e.request_context.connection_id {
                        mgr.remember(
                            c,
                            Identity {
                                user_id: USER.into(),
                                tenant_id: None,
                            },
                        );
                    }
                }
                match handle(raw, Ok(&*mgr), None).await {
                    Ok(Output::WebSocket(resp)) => {
                        assert!(decoded.is_ok());
                        assert!(
                            [200, 401, 403, 500, 503].contains(&resp.status_code),
                            "status {}",
                            resp.status_code
                        );
                        if is_message {
                            assert_eq!(resp.status_code, 200);
                            check_reply(resp.body.as_deref());
                        }
                    }
                    Ok(Output::Sweep(report)) => {
                        assert!(matches!(decoded, Ok(Incoming::Scheduled)));
                        assert_eq!(report.errors, 0);
                    }
                    Err(e) => assert_eq!(e.error_type, "NonRetryable.InvalidEvent"),
                }
                for (_, pushed) in notifier.drain() {
                    assert!(pushed.len() <= MAX_MESSAGE_BYTES);
                    let v: Value = serde_json::from_str(&pushed).expect("pushed JSON");
                    assert!(v["type"].is_string());
                }
            })
        })
    });
});

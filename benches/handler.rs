//! Warm-path costs (issue 2 targets): manager access < 1 µs, a `ping` end to end < 5 µs, a
//! whole `echo` run on an in-memory store < 50 µs.

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::sync::Arc;
use wsexec::handler::handle;
use wsexec::manager::Manager;
use wsexec::notify::memory::MemoryNotifier;
use wsexec::store::memory::MemoryStore;

const CONNECTION: &str = "L0SM9cOFvHcCIhw=";

fn message(body: &str, message_id: u64) -> String {
    let mut e: serde_json::Value =
        serde_json::from_str(include_str!("../events/message-ping.json")).unwrap();
    e["body"] = body.into();
    e["requestContext"]["connectionId"] = CONNECTION.into();
    e["requestContext"]["messageId"] = format!("M{message_id:015}").into();
    e.to_string()
}

fn manager() -> Manager {
    let mut config = wsexec::Config::from_lookup(|_| None).unwrap();
    config.dev_auth = true;
    Manager::new(
        config,
        Arc::new(MemoryStore::new()),
        Arc::new(MemoryNotifier::new()),
    )
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    // The production accessor: env read once, then a `OnceCell` load per invocation.
    // SAFETY: set before any other thread exists.
    unsafe { std::env::set_var("TABLE_NAME", "bench") };
    Manager::global().unwrap();
    c.bench_function("warm_manager_access", |b| {
        b.iter(|| black_box(Manager::global().is_ok()))
    });

    let mgr = manager();
    let ping = message(r#"{"type":"ping"}"#, 0);
    c.bench_function("ping_end_to_end", |b| {
        b.iter(|| {
            let out = rt
                .block_on(handle(black_box(&ping), Ok(&mgr), None))
                .unwrap();
            black_box(serde_json::to_vec(&out).unwrap())
        })
    });

    // One connection, then a fresh request id per run so every iteration is a whole new run.
    let connect = {
        let mut e: serde_json::Value =
            serde_json::from_str(include_str!("../events/connect-no-credentials.json")).unwrap();
        e["queryStringParameters"] = serde_json::json!({"user_id": "bench-user"});
        e["requestContext"]["connectionId"] = CONNECTION.into();
        e.to_string()
    };
    rt.block_on(handle(&connect, Ok(&mgr), None)).unwrap();
    let mut n = 0u64;
    c.bench_function("echo_run_in_memory", |b| {
        b.iter(|| {
            n += 1;
            let body = format!(
                r#"{{"type":"start_agent","request_id":"b{n}","payload":{{"user_request":"benchmark me"}}}}"#
            );
            let ev = message(&body, n);
            let out = rt.block_on(handle(&ev, Ok(&mgr), None)).unwrap();
            black_box(serde_json::to_vec(&out).unwrap())
        })
    });
}

criterion_group!(handler, benches);
criterion_main!(handler);

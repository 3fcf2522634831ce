//! The store contract: one suite every `Store` backend must pass (embedded and DynamoDB).
#![allow(dead_code)]

use std::sync::Arc;
use wsexec::limits::ALIVE_SHARDS;
use wsexec::state::ExecutionState;
use wsexec::store::{
    ConnectionRecord, CreateOutcome, Expected, ListCursor, Owner, RunRecord, StepRecord,
    StorageErrorKind, Store,
};
use wsexec::time::now_ms;

fn far_future_secs() -> u64 {
    now_ms() / 1000 + 3600
}

/// A connection record of `user`.
pub fn conn(id: &str, user: &str) -> ConnectionRecord {
    ConnectionRecord {
        connection_id: id.into(),
        user_id: user.into(),
        tenant_id: None,
        endpoint: Some("https://x.example/prod".into()),
        connected_at: now_ms(),
        expires_at: far_future_secs(),
    }
}

/// An alive (running, version 1) run of `user` created at `created`.
pub fn run(user: &str, id: &str, created: u64) -> RunRecord {
    RunRecord {
        run_id: id.into(),
        user_id: user.into(),
        thread_id: "thread-1".into(),
        request_id: format!("req-{id}"),
        connection_id: "C0000000000001=".into(),
        tenant_id: None,
        endpoint: Some("https://x.example/prod".into()),
        agent: "echo".into(),
        state: ExecutionState::Running,
        version: 1,
        created_at: created,
        updated_at: created,
        stale_at: created + 10_000,
        deadline_at: created + 15_000,
        request: "hello".into(),
        // Round-trips through every backend's codec.
        options: serde_json::json!({"delay_ms": 5})
            .as_object()
            .cloned()
            .unwrap_or_default(),
        result: None,
        error: None,
        cancelled_by: None,
        claimed_by: None,
        created_by: Some("create-token-1".into()),
        // Checkpoint and followers round-trip too.
        seq: 7,
        seq_reserved: 71,
        continuations: 2,
        recoveries: 1,
        continued_at: created + 5,
        clean_continuation: 2,
        // What a suspended run was last given round-trips too.
        awaiting: Some(wsexec::store::Awaiting {
            calls: vec![
                wsexec::store::AwaitedCall {
                    call_id: "call-1".into(),
                    tool_name: "orders__refund".into(),
                    parameters: serde_json::json!({"order": 42}),
                    seq: 6,
                    answer: Some(wsexec::store::ApprovalAnswer {
                        approved: false,
                        reason: Some("too much".into()),
                        at: created + 6,
                    }),
                },
                wsexec::store::AwaitedCall {
                    call_id: "call-2".into(),
                    tool_name: "orders__mail".into(),
                    parameters: serde_json::json!("not json"),
                    seq: 7,
                    // Answered: the run is an ordinary running run again, as the contract's
                    // callers expect.
                    answer: Some(wsexec::store::ApprovalAnswer {
                        approved: true,
                        reason: None,
                        at: created + 7,
                    }),
                },
            ],
            expires_at: created + 9_000,
        }),
        streamed: Some("so far".into()),
        followers: vec![wsexec::store::Follower {
            connection_id: "F0000000000001=".into(),
            endpoint: Some("https://x.example/prod".into()),
            after_seq: 3,
            expires_at: far_future_secs(),
        }],
        // Usage round-trips too.
        usage: wsexec::store::RunUsage {
            input_tokens: 11,
            output_tokens: 22,
            tool_calls: 3,
            duration_ms: 0,
        },
        holds_slot: false,
        metering: None,
        expires_at: far_future_secs(),
    }
}

/// Due runs across every shard.
pub async fn all_due(store: &dyn Store, now: u64) -> Vec<RunRecord> {
    let mut out = Vec::new();
    for s in 0..ALIVE_SHARDS {
        out.extend(store.due_runs(s, now, 1000).await.unwrap());
    }
    out
}

/// Connections round-trip, are found by user, and delete is idempotent.
pub async fn connection_roundtrip(store: Arc<dyn Store>) {
    let c = conn("K0000000000001=", "alice");
    store.put_connection(&c).await.unwrap();
    assert_eq!(
        store.get_connection(&c.connection_id).await.unwrap(),
        Some(c.clone())
    );
    assert_eq!(
        store.user_connections("alice".into()).await.unwrap(),
        vec![c.clone()]
    );
    assert!(
        store
            .user_connections("bob".into())
            .await
            .unwrap()
            .is_empty()
    );
    store.delete_connection(&c.connection_id).await.unwrap();
    assert_eq!(store.get_connection(&c.connection_id).await.unwrap(), None);
    assert!(
        store
            .user_connections("alice".into())
            .await
            .unwrap()
            .is_empty()
    );
    store.delete_connection(&c.connection_id).await.unwrap();
}

/// Expired connections are invisible to every read.
pub async fn expired_connection_invisible(store: Arc<dyn Store>) {
    let mut c = conn("K0000000000002=", "alice");
    c.expires_at = now_ms() / 1000 - 1;
    store.put_connection(&c).await.unwrap();
    assert_eq!(store.get_connection(&c.connection_id).await.unwrap(), None);
    assert!(
        store
            .user_connections("alice".into())
            .await
            .unwrap()
            .is_empty()
    );
}

/// A second create with the same key returns the first run unchanged.
pub async fn create_run_is_idempotent(store: Arc<dyn Store>) {
    let r = run("alice", "run-a", now_ms());
    assert_eq!(store.create_run(&r).await.unwrap(), CreateOutcome::Created);
    let mut again = r.clone();
    again.request = "different".into();
    assert_eq!(
        store.create_run(&again).await.unwrap(),
        CreateOutcome::Existing(Box::new(r.clone()))
    );
    assert_eq!(
        store.get_run("alice".into(), "run-a").await.unwrap(),
        Some(r)
    );
}

/// An expired run is invisible and a new create replaces it.
pub async fn expired_run_is_replaced(store: Arc<dyn Store>) {
    let mut old = run("alice", "run-x", now_ms());
    old.expires_at = now_ms() / 1000 - 1;
    assert_eq!(
        store.create_run(&old).await.unwrap(),
        CreateOutcome::Created
    );
    assert_eq!(store.get_run("alice".into(), "run-x").await.unwrap(), None);
    let fresh = run("alice", "run-x", now_ms());
    assert_eq!(
        store.create_run(&fresh).await.unwrap(),
        CreateOutcome::Created
    );
    assert_eq!(
        store.get_run("alice".into(), "run-x").await.unwrap(),
        Some(fresh)
    );
}

/// Another user's run id is simply absent.
pub async fn runs_are_owner_scoped(store: Arc<dyn Store>) {
    let r = run("alice", "run-b", now_ms());
    store.create_run(&r).await.unwrap();
    assert_eq!(store.get_run("bob".into(), "run-b").await.unwrap(), None);
    let page = store.list_runs("bob".into(), None, 10, None).await.unwrap();
    assert!(page.items.is_empty());
}

/// Two tenants whose users share an id share nothing: the same run id under `carol` of `acme`,
/// of `globex` and of no tenant is three runs; each owner reads, updates, lists (by owner and
/// by thread) and finds connections of its own only.
pub async fn tenants_are_kept_apart(store: Arc<dyn Store>) {
    let now = now_ms();
    let owners = [Some("acme"), Some("globex"), None];
    let of = |tenant: Option<&str>, request: &str| {
        let mut r = run("carol", "run-t", now);
        r.tenant_id = tenant.map(str::to_owned);
        r.request = request.into();
        r
    };
    for t in owners {
        let r = of(t, &format!("asked in {t:?}"));
        assert_eq!(
            store.create_run(&r).await.unwrap(),
            CreateOutcome::Created,
            "{t:?}: another tenant's run is not this one's retry"
        );
    }
    for t in owners {
        let owner = Owner::new("carol", t);
        let got = store.get_run(owner, "run-t").await.unwrap().unwrap();
        assert_eq!(got.request, format!("asked in {t:?}"));
        let page = store.list_runs(owner, None, 10, None).await.unwrap();
        assert_eq!(page.items, vec![got.clone()]);
        let thread = store
            .list_runs(owner, Some("thread-1"), 10, None)
            .await
            .unwrap();
        assert_eq!(thread.items, vec![got]);
    }
    // An update of acme's run touches acme's only.
    let acme = Owner::new("carol", Some("acme"));
    let before = store.get_run(acme, "run-t").await.unwrap().unwrap();
    let mut cancelled = before.clone();
    cancelled.state = ExecutionState::Cancelled;
    cancelled.version += 1;
    store
        .update_run(&cancelled, Expected::of(&before))
        .await
        .unwrap();
    for t in [Some("globex"), None] {
        let other = store
            .get_run(Owner::new("carol", t), "run-t")
            .await
            .unwrap();
        assert_eq!(other.unwrap().state, ExecutionState::Running, "{t:?}");
    }
    // Connections (their tenant round-trips): each owner finds its own.
    let conns: Vec<_> = owners
        .iter()
        .enumerate()
        .map(|(i, t)| ConnectionRecord {
            tenant_id: t.map(str::to_owned),
            ..conn(&format!("KT00000000000{i}="), "carol")
        })
        .collect();
    for c in &conns {
        store.put_connection(c).await.unwrap();
    }
    for c in &conns {
        let found = store.user_connections(c.owner()).await.unwrap();
        assert_eq!(found, vec![c.clone()], "{:?}", c.tenant_id);
        let got = store.get_connection(&c.connection_id).await.unwrap();
        assert_eq!(got.as_ref(), Some(c));
    }
    assert!(
        store
            .get_run("dave".into(), "run-t")
            .await
            .unwrap()
            .is_none()
    );
}

/// Updates apply only on the expected state and version; conflicts change nothing.
pub async fn update_run_is_conditional(store: Arc<dyn Store>) {
    let r = run("alice", "run-c", now_ms());
    store.create_run(&r).await.unwrap();
    let mut next = r.clone();
    next.version = 2;
    next.state = ExecutionState::Completed;
    next.result = Some(serde_json::json!({"reply": "x"}));
    let stale = Expected {
        state: ExecutionState::Running,
        version: 7,
    };
    let wrong_state = Expected {
        state: ExecutionState::Pending,
        version: 1,
    };
    for bad in [stale, wrong_state] {
        let e = store.update_run(&next, bad).await.unwrap_err();
        assert_eq!(e.kind(), StorageErrorKind::Conflict);
        assert!(!e.is_retryable());
    }
    assert_eq!(
        store.get_run("alice".into(), "run-c").await.unwrap(),
        Some(r.clone())
    );
    store.update_run(&next, Expected::of(&r)).await.unwrap();
    assert_eq!(
        store.get_run("alice".into(), "run-c").await.unwrap(),
        Some(next.clone())
    );
    // The old expectation no longer holds: a second identical write conflicts.
    let e = store.update_run(&next, Expected::of(&r)).await.unwrap_err();
    assert_eq!(e.kind(), StorageErrorKind::Conflict);
    let mut missing = run("alice", "run-missing", now_ms());
    missing.version = 2;
    let e = store
        .update_run(&missing, Expected::of(&r))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), StorageErrorKind::Conflict);
}

/// Alive runs are due once past their deadlines, most overdue first; terminal runs never are.
pub async fn alive_index_tracks_due_runs(store: Arc<dyn Store>) {
    let base = now_ms() - 100_000;
    let mut a = run("alice", "run-due-1", base);
    a.stale_at = base + 10;
    let mut b = run("alice", "run-due-2", base);
    b.stale_at = base + 20;
    let mut later = run("alice", "run-not-due", base);
    later.stale_at = base + 500_000;
    for r in [&a, &b, &later] {
        store.create_run(r).await.unwrap();
    }
    let due = all_due(store.as_ref(), base + 1_000).await;
    let ids: Vec<_> = due.iter().map(|r| r.run_id.as_str()).collect();
    assert!(
        ids.contains(&"run-due-1") && ids.contains(&"run-due-2"),
        "{ids:?}"
    );
    assert!(!ids.contains(&"run-not-due"));
    assert!(all_due(store.as_ref(), base + 5).await.is_empty());
    // Per shard, the most overdue comes first and the limit holds.
    if a.shard() == b.shard() {
        let one = store.due_runs(a.shard(), base + 1_000, 1).await.unwrap();
        assert_eq!(one[0].run_id, "run-due-1");
    }
    for s in 0..ALIVE_SHARDS {
        assert!(store.due_runs(s, base + 1_000, 1).await.unwrap().len() <= 1);
    }
    // A terminal run leaves the index; a heartbeat moves the due time.
    let mut done = a.clone();
    done.state = ExecutionState::Completed;
    done.version = 2;
    store.update_run(&done, Expected::of(&a)).await.unwrap();
    let mut beat = b.clone();
    beat.version = 2;
    beat.stale_at = base + 900_000;
    store.update_run(&beat, Expected::of(&b)).await.unwrap();
    assert!(all_due(store.as_ref(), base + 1_000).await.is_empty());
    let due = all_due(store.as_ref(), base + 950_000).await;
    let ids: Vec<_> = due.iter().map(|r| r.run_id.as_str()).collect();
    assert!(
        ids.contains(&"run-due-2") && ids.contains(&"run-not-due"),
        "{ids:?}"
    );
    assert!(!ids.contains(&"run-due-1"));
}

/// Runs list newest first in pages that cover every run exactly once, per thread too.
pub async fn list_runs_pages_newest_first(store: Arc<dyn Store>) {
    let base = now_ms() - 10_000;
    for i in 0..5u64 {
        let mut r = run("carol", &format!("run-{i}"), base + i);
        if i % 2 == 0 {
            r.thread_id = "even".into();
        }
        store.create_run(&r).await.unwrap();
    }
    store.create_run(&run("dave", "run-9", base)).await.unwrap();
    let mut seen = Vec::new();
    let mut cursor: Option<ListCursor> = None;
    for _ in 0..10 {
        let page = store
            .list_runs("carol".into(), None, 2, cursor.as_ref())
            .await
            .unwrap();
        assert!(page.items.len() <= 2);
        seen.extend(page.items.iter().map(|r| r.run_id.clone()));
        cursor = page.cursor;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(seen, vec!["run-4", "run-3", "run-2", "run-1", "run-0"]);
    let even = store
        .list_runs("carol".into(), Some("even"), 10, None)
        .await
        .unwrap();
    let ids: Vec<_> = even.items.iter().map(|r| r.run_id.as_str()).collect();
    assert_eq!(ids, vec!["run-4", "run-2", "run-0"]);
    assert!(even.cursor.is_none());
}

/// A page size of 0 is taken as 1 (as the DynamoDB store clamps it), and the last page of a
/// list whose length is an exact multiple of the page size carries no cursor: no store makes a
/// client ask for an empty page.
pub async fn list_runs_last_page_and_zero_limit(store: Arc<dyn Store>) {
    let base = now_ms() - 10_000;
    for i in 0..4u64 {
        store
            .create_run(&run("frank", &format!("run-{i}"), base + i))
            .await
            .unwrap();
    }
    let one = store
        .list_runs("frank".into(), None, 0, None)
        .await
        .unwrap();
    let ids: Vec<_> = one.items.iter().map(|r| r.run_id.as_str()).collect();
    assert_eq!(ids, vec!["run-3"]);
    assert!(one.cursor.is_some(), "more runs follow a page of one");
    let first = store
        .list_runs("frank".into(), None, 2, None)
        .await
        .unwrap();
    let ids: Vec<_> = first.items.iter().map(|r| r.run_id.as_str()).collect();
    assert_eq!(ids, vec!["run-3", "run-2"]);
    let cursor = first.cursor.expect("a second page follows");
    let last = store
        .list_runs("frank".into(), None, 2, Some(&cursor))
        .await
        .unwrap();
    let ids: Vec<_> = last.items.iter().map(|r| r.run_id.as_str()).collect();
    assert_eq!(ids, vec!["run-1", "run-0"]);
    assert_eq!(last.cursor, None, "the last full page carries no cursor");
    let all = store
        .list_runs("frank".into(), None, 4, None)
        .await
        .unwrap();
    assert_eq!((all.items.len(), all.cursor), (4, None));
}

/// Expired runs never appear in lists.
pub async fn list_runs_skips_expired(store: Arc<dyn Store>) {
    let mut old = run("erin", "run-old", now_ms() - 5);
    old.expires_at = now_ms() / 1000 - 1;
    store.create_run(&old).await.unwrap();
    store
        .create_run(&run("erin", "run-new", now_ms()))
        .await
        .unwrap();
    let page = store
        .list_runs("erin".into(), None, 10, None)
        .await
        .unwrap();
    let ids: Vec<_> = page.items.iter().map(|r| r.run_id.as_str()).collect();
    assert_eq!(ids, vec!["run-new"]);
}

/// Of 10 concurrent limited creates with 4 slots, exactly 4 run; a retried request still finds
/// its run at the limit; another owner (the same user id in another tenant) is not counted; a
/// heartbeat keeps the slot, the write that ends a run gives it back once (a second ending
/// write conflicts and gives nothing), and a freed slot can be taken again.
pub async fn active_slots_are_taken_atomically_and_given_back_once(store: Arc<dyn Store>) {
    let now = now_ms();
    let slotted = |user: &str, tenant: Option<&str>, i: u64| {
        let mut r = run(user, &format!("run-slot-{i}"), now + i);
        r.tenant_id = tenant.map(str::to_owned);
        r.holds_slot = true;
        r
    };
    let owner = Owner::new("slotty", Some("acme"));
    let creates = (0..10).map(|i| {
        let (store, r) = (store.clone(), slotted("slotty", Some("acme"), i));
        async move { (store.create_run_limited(&r, 4).await.unwrap(), r) }
    });
    let outcomes = futures_util::future::join_all(creates).await;
    let created: Vec<RunRecord> = outcomes
        .iter()
        .filter(|(o, _)| *o == CreateOutcome::Created)
        .map(|(_, r)| r.clone())
        .collect();
    let refused = outcomes
        .iter()
        .filter(|(o, _)| *o == CreateOutcome::AtLimit)
        .count();
    assert_eq!((created.len(), refused), (4, 6));
    assert_eq!(store.active_runs(owner).await.unwrap(), 4);
    let listed = store.list_runs(owner, None, 50, None).await.unwrap();
    assert_eq!(listed.items.len(), 4, "no refused run is left behind");
    let first = created[0].clone();
    assert_eq!(
        store.create_run_limited(&first, 4).await.unwrap(),
        CreateOutcome::Existing(Box::new(first.clone()))
    );
    let elsewhere = slotted("slotty", Some("globex"), 99);
    assert_eq!(
        store.create_run_limited(&elsewhere, 4).await.unwrap(),
        CreateOutcome::Created
    );
    assert_eq!(store.active_runs(owner).await.unwrap(), 4);

    let beat =
        wsexec::run::next_version(&first, &[wsexec::state::RunEvent::Heartbeat], now).unwrap();
    store.update_run(&beat, Expected::of(&first)).await.unwrap();
    assert_eq!(store.active_runs(owner).await.unwrap(), 4);
    let ended = wsexec::run::next_version(&beat, &[wsexec::state::RunEvent::Cancel], now).unwrap();
    store.update_run(&ended, Expected::of(&beat)).await.unwrap();
    assert_eq!(store.active_runs(owner).await.unwrap(), 3);
    let e = store
        .update_run(&ended, Expected::of(&beat))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), StorageErrorKind::Conflict);
    assert_eq!(store.active_runs(owner).await.unwrap(), 3);
    let again = slotted("slotty", Some("acme"), 50);
    assert_eq!(
        store.create_run_limited(&again, 4).await.unwrap(),
        CreateOutcome::Created
    );
    assert_eq!(store.active_runs(owner).await.unwrap(), 4);
}

/// Step `n` of `run`, with `body`.
pub fn step(run: &RunRecord, n: u32, body: serde_json::Value) -> StepRecord {
    StepRecord {
        run_id: run.run_id.clone(),
        user_id: run.user_id.clone(),
        tenant_id: run.tenant_id.clone(),
        n,
        body,
        expires_at: run.expires_at,
    }
}

/// Steps come back in order, a second write of a step number is a no-op (the first body
/// stays), another owner (user, or the same user in another tenant) and another run see none,
/// an expired step is invisible and may be written again, and a step of the item budget's size
/// round-trips.
pub async fn steps_are_journaled_once(store: Arc<dyn Store>) {
    let r = run("alice", "run-steps", now_ms());
    let other = run("alice", "run-steps2", now_ms());
    store.create_run(&r).await.unwrap();
    for n in [2, 1, 10] {
        let body = serde_json::json!({"kind": "round", "n": n, "text": "é\u{1}\"x"});
        store.put_step(&step(&r, n, body)).await.unwrap();
    }
    let dup = step(&r, 2, serde_json::json!({"kind": "other"}));
    store.put_step(&dup).await.unwrap();
    let got = store.steps(r.owner(), &r.run_id).await.unwrap();
    let ns: Vec<u32> = got.iter().map(|s| s.n).collect();
    assert_eq!(ns, vec![1, 2, 10]);
    assert_eq!(got[1].body["kind"], "round");
    assert_eq!(got[1].body["text"], "é\u{1}\"x");
    assert_eq!(got[1], step(&r, 2, got[1].body.clone()));
    assert!(
        store
            .steps(other.owner(), &other.run_id)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .steps("bob".into(), &r.run_id)
            .await
            .unwrap()
            .is_empty()
    );
    let tenant = Owner::new("alice", Some("acme"));
    assert!(store.steps(tenant, &r.run_id).await.unwrap().is_empty());
    // Expired: invisible, and replaced by a new write of the same number.
    let mut old = step(&r, 3, serde_json::json!({"kind": "old"}));
    old.expires_at = now_ms() / 1000 - 1;
    store.put_step(&old).await.unwrap();
    assert_eq!(store.steps(r.owner(), &r.run_id).await.unwrap().len(), 3);
    store
        .put_step(&step(&r, 3, serde_json::json!({"kind": "new"})))
        .await
        .unwrap();
    let got = store.steps(r.owner(), &r.run_id).await.unwrap();
    assert_eq!(got[2].body["kind"], "new");
    // The largest body a step may have is within the item limit.
    let big = wsexec::store::step::fit_step(serde_json::json!({
        "kind": "tool",
        "content": {"blob": "x".repeat(2 * wsexec::store::step::MAX_STEP_BYTES)},
    }));
    store.put_step(&step(&r, 4, big.clone())).await.unwrap();
    let got = store.steps(r.owner(), &r.run_id).await.unwrap();
    assert_eq!(got[3].body, big);
}

/// Metered creates count each run on the owner's and the tenant's day (tenants and users kept
/// apart), refuse once a budget is reached (the owner's first, writing nothing, a retried
/// request still finding its run), and charges add up atomically under concurrency.
pub async fn day_counters_count_runs_and_tokens_and_budgets_refuse(store: Arc<dyn Store>) {
    use wsexec::store::{BudgetScope, Metering};
    let now = now_ms();
    let day = "2026-12-06";
    let metering = Metering {
        day: day.into(),
        day_ends_at: now + 3_600_000,
        user_budget: Some(100),
        tenant_budget: Some(150),
    };
    let metered = |user: &str, tenant: Option<&str>, i: u64| {
        let mut r = run(user, &format!("run-metered-{i}"), now + i);
        r.tenant_id = tenant.map(str::to_owned);
        r.metering = Some(metering.clone());
        r
    };
    let (ann, bob) = (
        Owner::new("ann", Some("acme")),
        Owner::new("bob", Some("acme")),
    );
    let first = metered("ann", Some("acme"), 0);
    assert_eq!(
        store.create_run_metered(&first, None).await.unwrap(),
        CreateOutcome::Created
    );
    let stored = store.get_run(ann, &first.run_id).await.unwrap().unwrap();
    assert_eq!(
        stored.metering,
        Some(metering.clone()),
        "metering round-trips"
    );
    let charges = (0..10).map(|_| {
        let (store, m) = (store.clone(), metering.clone());
        async move { store.charge_usage(ann, &m, 6, 4).await.unwrap() }
    });
    futures_util::future::join_all(charges).await;
    let today = store.usage_on(ann, day).await.unwrap();
    assert_eq!(
        today.user,
        wsexec::store::DayUsage {
            runs: 1,
            input_tokens: 60,
            output_tokens: 40
        }
    );
    assert_eq!(today.tenant.map(|t| (t.runs, t.tokens())), Some((1, 100)));
    assert_eq!(
        store
            .create_run_metered(&metered("ann", Some("acme"), 1), None)
            .await
            .unwrap(),
        CreateOutcome::OverBudget(BudgetScope::User)
    );
    assert_eq!(
        store.create_run_metered(&first, None).await.unwrap(),
        CreateOutcome::Existing(Box::new(first.clone())),
        "a retried request finds its run, whatever the counters say"
    );
    assert_eq!(
        store
            .create_run_metered(&metered("bob", Some("acme"), 2), None)
            .await
            .unwrap(),
        CreateOutcome::Created
    );
    store.charge_usage(bob, &metering, 30, 30).await.unwrap();
    assert_eq!(
        store
            .create_run_metered(&metered("bob", Some("acme"), 3), None)
            .await
            .unwrap(),
        CreateOutcome::OverBudget(BudgetScope::Tenant)
    );
    let globex = Owner::new("ann", Some("globex"));
    assert_eq!(
        store
            .create_run_metered(&metered("ann", Some("globex"), 4), None)
            .await
            .unwrap(),
        CreateOutcome::Created
    );
    assert_eq!(
        store
            .usage_on(globex, day)
            .await
            .unwrap()
            .tenant
            .map(|t| t.runs),
        Some(1)
    );
    let ann_today = store.usage_on(ann, day).await.unwrap();
    assert_eq!(
        (
            ann_today.user.runs,
            ann_today.tenant.map(|t| (t.runs, t.tokens()))
        ),
        (1, Some((2, 160)))
    );
    assert_eq!(
        store.usage_on(ann, "2026-12-07").await.unwrap().user,
        Default::default()
    );
    let listed = store.list_runs(ann, None, 50, None).await.unwrap();
    assert_eq!(listed.items.len(), 1, "a refused create leaves no run");
    assert_eq!(
        store.limit_overrides(ann).await.unwrap(),
        Default::default()
    );
}

/// Generates one `#[tokio::test]` per contract case; `$make` is an async expression giving a
/// fresh `Arc<dyn Store>`.
#[macro_export]
macro_rules! store_contract {
    ($make:expr) => {
        $crate::store_contract!(@cases $make;
            connection_roundtrip, expired_connection_invisible, create_run_is_idempotent,
            expired_run_is_replaced, runs_are_owner_scoped, update_run_is_conditional,
            alive_index_tracks_due_runs, list_runs_pages_newest_first, list_runs_skips_expired,
            list_runs_last_page_and_zero_limit, tenants_are_kept_apart,
            active_slots_are_taken_atomically_and_given_back_once, steps_are_journaled_once);
    };
    (@cases $make:expr; $($case:ident),*) => {
        $(
            /// Store contract case (see `tests/support/contract.rs`).
            #[tokio::test]
            async fn $case() {
                let store = $make.await;
                $crate::support::contract::$case(store).await;
            }
        )*
    };
}

//! The active-run counter's `TransactWriteItems` failures provoked on the wire: a loopback
//! endpoint answers DynamoDB's real `TransactionCanceledException` bodies, and each set of
//! cancellation reasons is classified: a failed condition is the caller's answer (the limit,
//! a conflict), `TransactionConflict` is retried a bounded number of times then `contention`.

mod support;

use support::contract::run;
use support::dynamodb::*;
use wsexec::store::dynamo::transact::CONFLICT_ATTEMPTS;
use wsexec::store::{CreateOutcome, Expected, StorageErrorKind, Store};

/// A store on an endpoint that cancels every transaction with `reasons`; its request counter.
async fn cancelling(
    reasons: &'static str,
) -> (
    wsexec::store::dynamo::DynamoStore,
    std::sync::Arc<std::sync::atomic::AtomicU32>,
) {
    let (url, hits) = fault_endpoint(Fault::Error {
        status: 400,
        code: "TransactionCanceledException",
        extra: reasons,
    })
    .await;
    (store_at("faults", &url, fast_settings(1)), hits)
}

fn slotted() -> wsexec::store::RunRecord {
    let mut r = run("alice", "run-tx", wsexec::time::now_ms());
    r.holds_slot = true;
    r
}

/// The counter's condition failing (second item) is the limit's refusal, not an error.
#[tokio::test]
async fn the_counters_failed_condition_is_the_limit() {
    let (store, hits) = cancelling(
        r#","CancellationReasons":[{"Code":"None"},{"Code":"ConditionalCheckFailed","Message":"The conditional request failed"}]"#,
    )
    .await;
    assert_eq!(
        store.create_run_limited(&slotted(), 4).await.unwrap(),
        CreateOutcome::AtLimit
    );
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
}

/// `TransactionConflict` is sent again, at most `CONFLICT_ATTEMPTS` times, then is retryable
/// `contention`.
#[tokio::test]
async fn transaction_conflict_is_retried_then_contention() {
    let (store, hits) = cancelling(
        r#","CancellationReasons":[{"Code":"TransactionConflict","Message":"Transaction is ongoing for the item"},{"Code":"None"}]"#,
    )
    .await;
    let e = store.create_run_limited(&slotted(), 4).await.unwrap_err();
    assert_eq!(e.kind(), StorageErrorKind::Contention);
    assert!(e.is_retryable());
    assert_eq!(
        hits.load(std::sync::atomic::Ordering::SeqCst),
        CONFLICT_ATTEMPTS
    );
}

/// Throttling and unknown reasons classify by their code; no reason at all is `Transaction`.
#[tokio::test]
async fn other_reasons_classify_by_code() {
    let cases: [(&'static str, StorageErrorKind); 3] = [
        (
            r#","CancellationReasons":[{"Code":"ThrottlingError","Message":"Throughput exceeds the current capacity"},{"Code":"None"}]"#,
            StorageErrorKind::Throttled,
        ),
        (
            r#","CancellationReasons":[{"Code":"ValidationError","Message":"bad"},{"Code":"None"}]"#,
            StorageErrorKind::Invalid,
        ),
        (r#""#, StorageErrorKind::Transaction),
    ];
    for (reasons, kind) in cases {
        let (store, _) = cancelling(reasons).await;
        let e = store.create_run_limited(&slotted(), 4).await.unwrap_err();
        assert_eq!(e.kind(), kind, "{reasons}");
    }
}

/// The ending write's failed condition (the run changed) is a plain `Conflict`, as without a
/// slot, so the write loop reads the run back as it always did.
#[tokio::test]
async fn the_ending_writes_failed_condition_is_a_conflict() {
    let (store, _) = cancelling(
        r#","CancellationReasons":[{"Code":"ConditionalCheckFailed","Message":"The conditional request failed"},{"Code":"None"}]"#,
    )
    .await;
    let r = slotted();
    let ended = wsexec::run::next_version(&r, &[wsexec::state::RunEvent::Cancel], 1).unwrap();
    let e = store
        .update_run(&ended, Expected::of(&r))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), StorageErrorKind::Conflict);
}

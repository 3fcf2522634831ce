//! Metrics collected during an invocation and flushed at its end as CloudWatch Embedded Metric
//! Format (EMF) documents.
//!
//! Samples go to the invocation's own collector (a task-local set up by [`scope`]): they are
//! observed from places that have no manager in reach (the storage error logger, the push
//! channel), and concurrent invocations (the local gateway, parallel tests) must not mix.
//!
//! Every metric is in namespace [`NAMESPACE`] with dimension `FunctionName`; a metric with a
//! dimension of its own (`Route`, `State`, `ErrorCode`) is also published without it, so a
//! total exists for alarms. An EMF document holds one value per dimension key, so samples
//! whose dimension values conflict (two terminal states in one sweep) go to separate documents;
//! usually there is one.

use crate::notify::PushErrorKind;
use crate::state::ExecutionState;
use crate::store::StorageErrorKind;
use serde_json::{Map, Value, json};
use std::cell::RefCell;
use std::future::Future;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The CloudWatch namespace of every metric.
pub const NAMESPACE: &str = "wsexec";

/// The dimension every metric carries: the Lambda function's name, so two stacks in one
/// account (staging, production) keep apart.
pub const DIMENSION_FUNCTION: &str = "FunctionName";
/// `$connect`, `$default`, `$disconnect` or `sweep` (`Invocations`, `InvocationDuration`).
pub const DIMENSION_ROUTE: &str = "Route";
/// A run's terminal state (`RunsFinished`, `RunDuration`).
pub const DIMENSION_STATE: &str = "State";
/// A storage or push failure's stable code (`StorageErrors`, `PushErrors`).
pub const DIMENSION_ERROR_CODE: &str = "ErrorCode";
/// The usage limit that refused a start (`QuotaRefusals`): a variable's name.
pub const DIMENSION_LIMIT: &str = "Limit";
/// Why a run was continued (`recovery`, `handoff`).
pub const DIMENSION_CAUSE: &str = "Cause";

/// `FunctionName` outside Lambda (the local tool, tests).
pub const DEFAULT_FUNCTION_NAME: &str = "wsexec";

/// EMF allows at most 100 values per metric in one document; more go to the next document.
pub const MAX_VALUES_PER_METRIC: usize = 100;
/// EMF allows at most 100 metric definitions per directive.
pub const MAX_METRICS_PER_DOCUMENT: usize = 100;

/// Every metric name, for documentation and tests.
pub const METRIC_NAMES: [&str; 9] = [
    "ColdStart",
    "Invocations",
    "InvocationDuration",
    "ConnectionsOpened",
    "RunsStarted",
    "RunsFinished",
    "RunDuration",
    "StorageErrors",
    "PushErrors",
];

/// A CloudWatch unit (the EMF `Unit` member).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Unit {
    Count,
    Milliseconds,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
        }
    }
}

/// One metric's samples under one dimension value. Counts are summed into one value;
/// distributions keep every value.
#[derive(Clone, Debug, PartialEq)]
struct Series {
    name: &'static str,
    unit: Unit,
    dimension: Option<(&'static str, &'static str)>,
    values: Vec<f64>,
}

tokio::task_local! {
    static PENDING: RefCell<Vec<Series>>;
}

static COLD: AtomicBool = AtomicBool::new(true);

/// Runs `invocation` with its own metrics collector; [`flush`] inside it writes them.
/// Outside a scope, samples are dropped.
///
/// Not an `async fn`: one would hold `invocation` as its argument beside the scoped future
/// that owns it, doubling the size of every invocation's state (31 KiB instead of 15 KiB).
pub fn scope<F: Future>(invocation: F) -> impl Future<Output = F::Output> {
    PENDING.scope(RefCell::new(Vec::new()), invocation)
}

fn add(
    name: &'static str,
    unit: Unit,
    dimension: Option<(&'static str, &'static str)>,
    value: f64,
) {
    let _ = PENDING.try_with(|pending| {
        let mut pending = pending.borrow_mut();
        match pending
            .iter_mut()
            .find(|s| s.name == name && s.dimension == dimension)
        {
            Some(s) if unit == Unit::Count => s.values[0] += value,
            Some(s) => s.values.push(value),
            None => pending.push(Series {
                name,
                unit,
                dimension,
                values: vec![value],
            }),
        }
    });
}

fn ms(d: Duration) -> f64 {
    d.as_micros() as f64 / 1000.0
}

/// One invocation of `route` that took `duration`. Returns whether it was the instance's
/// first (a cold start, counted as `ColdStart`).
pub fn invocation(route: &'static str, duration: Duration) -> bool {
    let cold = COLD.swap(false, Ordering::Relaxed);
    if cold {
        add("ColdStart", Unit::Count, None, 1.0);
    }
    let dim = Some((DIMENSION_ROUTE, route));
    add("Invocations", Unit::Count, dim, 1.0);
    add("InvocationDuration", Unit::Milliseconds, dim, ms(duration));
    cold
}

/// A connection was accepted.
pub fn connection_opened() {
    add("ConnectionsOpened", Unit::Count, None, 1.0);
}

/// A run was created.
pub fn run_started() {
    add("RunsStarted", Unit::Count, None, 1.0);
}

/// A run reached terminal `state` after `duration_ms`.
pub fn run_finished(state: ExecutionState, duration_ms: u64) {
    let dim = Some((DIMENSION_STATE, state.as_str()));
    add("RunsFinished", Unit::Count, dim, 1.0);
    add("RunDuration", Unit::Milliseconds, dim, duration_ms as f64);
}

/// A start refused, or a run stopped, by the usage limit named `limit` (a variable's name: a handful of values,
/// never a user).
pub fn quota_refused(limit: &'static str) {
    add(
        "QuotaRefusals",
        Unit::Count,
        Some((DIMENSION_LIMIT, limit)),
        1.0,
    );
}

/// A run's model tokens, counted when it ends (whatever ended it): `InputTokens` and
/// `OutputTokens`, no dimension beyond the function (per-user figures are in the `run usage`
/// log line, not in metrics, where each user would be a new time series).
pub fn tokens_used(input: u64, output: u64) {
    if input == 0 && output == 0 {
        return;
    }
    add("InputTokens", Unit::Count, None, input as f64);
    add("OutputTokens", Unit::Count, None, output as f64);
}

/// A run was continued in a new invocation (`cause`: `recovery` after its worker died,
/// `handoff` before its invocation's deadline).
pub fn run_continued(cause: &'static str) {
    add(
        "RunsContinued",
        Unit::Count,
        Some((DIMENSION_CAUSE, cause)),
        1.0,
    );
}

/// A run was suspended to wait for its owner's approval of a tool call (its invocation
/// returned; the answer continues it, counted as `RunsContinued` with cause `approval`).
pub fn run_suspended() {
    add("RunsSuspended", Unit::Count, None, 1.0);
}

/// A classified storage failure.
pub fn storage_error(kind: StorageErrorKind) {
    add(
        "StorageErrors",
        Unit::Count,
        Some((DIMENSION_ERROR_CODE, kind.code())),
        1.0,
    );
}

/// A classified push failure.
pub fn push_error(kind: PushErrorKind) {
    add(
        "PushErrors",
        Unit::Count,
        Some((DIMENSION_ERROR_CODE, kind.code())),
        1.0,
    );
}

/// The function's name (`AWS_LAMBDA_FUNCTION_NAME`, else [`DEFAULT_FUNCTION_NAME`]).
fn function_name() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        std::env::var("AWS_LAMBDA_FUNCTION_NAME")
            .ok()
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_FUNCTION_NAME.into())
    })
}

/// The invocation's pending metrics as EMF documents (JSON lines); clears them.
pub fn take_emf(timestamp_ms: u64) -> Vec<String> {
    let pending = PENDING
        .try_with(|p| std::mem::take(&mut *p.borrow_mut()))
        .unwrap_or_default();
    encode(&pending, function_name(), timestamp_ms)
}

/// One EMF document being packed: its dimension values and its metrics' values.
#[derive(Default)]
struct Document<'s> {
    dimensions: Vec<(&'static str, &'static str)>,
    metrics: Vec<(&'s Series, &'s [f64])>,
}

impl Document<'_> {
    fn fits(&self, s: &Series) -> bool {
        self.metrics.len() < MAX_METRICS_PER_DOCUMENT
            && self.metrics.iter().all(|(m, _)| m.name != s.name)
            && s.dimension.is_none_or(|(key, value)| {
                self.dimensions.iter().all(|&(k, v)| k != key || v == value)
            })
    }
}

/// Packs series into as few documents as the EMF rules allow (one value per dimension key, one
/// definition per metric name, at most 100 values per metric) and renders them.
fn encode(series: &[Series], function: &str, timestamp_ms: u64) -> Vec<String> {
    let mut docs: Vec<Document<'_>> = Vec::new();
    for s in series {
        for chunk in s.values.chunks(MAX_VALUES_PER_METRIC) {
            let i = match docs.iter().position(|d| d.fits(s)) {
                Some(i) => i,
                None => {
                    docs.push(Document::default());
                    docs.len() - 1
                }
            };
            let doc = &mut docs[i];
            if let Some(dim) = s.dimension
                && !doc.dimensions.contains(&dim)
            {
                doc.dimensions.push(dim);
            }
            doc.metrics.push((s, chunk));
        }
    }
    docs.iter()
        .map(|d| render(d, function, timestamp_ms))
        .collect()
}

fn render(doc: &Document<'_>, function: &str, timestamp_ms: u64) -> String {
    let mut root = Map::new();
    root.insert(DIMENSION_FUNCTION.into(), function.into());
    for &(key, value) in &doc.dimensions {
        root.insert(key.into(), value.into());
    }
    // One directive per dimension key: metrics without one of their own share `[FunctionName]`.
    let mut directives: Vec<(Option<&str>, Vec<Value>)> = Vec::new();
    for (s, values) in &doc.metrics {
        let value = match values {
            [one] => json!(one),
            many => json!(many),
        };
        root.insert(s.name.into(), value);
        let key = s.dimension.map(|(k, _)| k);
        let definition = json!({ "Name": s.name, "Unit": s.unit.as_str() });
        match directives.iter_mut().find(|(k, _)| *k == key) {
            Some((_, defs)) => defs.push(definition),
            None => directives.push((key, vec![definition])),
        }
    }
    let directives: Vec<Value> = directives
        .into_iter()
        .map(|(key, metrics)| {
            let dimensions = match key {
                Some(k) => json!([[DIMENSION_FUNCTION, k], [DIMENSION_FUNCTION]]),
                None => json!([[DIMENSION_FUNCTION]]),
            };
            json!({ "Namespace": NAMESPACE, "Dimensions": dimensions, "Metrics": metrics })
        })
        .collect();
    root.insert(
        "_aws".into(),
        json!({ "Timestamp": timestamp_ms, "CloudWatchMetrics": directives }),
    );
    Value::Object(root).to_string()
}

/// Writes the invocation's metrics as EMF lines: through the subscriber's EMF layer (see
/// [`super::subscriber`]) to stdout, where Lambda's log agent turns them into metrics.
pub fn flush() {
    // Building the documents is most of a `ping`'s cost: skip it when nothing would write them.
    if !tracing::enabled!(target: super::EMF_TARGET, tracing::Level::INFO) {
        let _ = PENDING.try_with(|p| p.borrow_mut().clear());
        return;
    }
    for doc in take_emf(crate::time::now_ms()) {
        tracing::info!(target: super::EMF_TARGET, emf = doc.as_str());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(doc: &str) -> Value {
        serde_json::from_str(doc).unwrap()
    }

    /// Samples of one invocation pack into one document, counts summed, a dimensioned metric
    /// published with and without its dimension.
    #[test]
    fn one_invocation_is_one_document() {
        let docs = tokio_test_block_on(scope(async {
            invocation("$default", Duration::from_millis(3));
            run_started();
            run_finished(ExecutionState::Completed, 40);
            storage_error(StorageErrorKind::Throttled);
            storage_error(StorageErrorKind::Throttled);
            take_emf(1_700_000_000_000)
        }));
        assert_eq!(docs.len(), 1, "{docs:?}");
        let d = parse(&docs[0]);
        assert_eq!(d["Route"], "$default");
        assert_eq!(d["State"], "completed");
        assert_eq!(d["ErrorCode"], "throttled");
        assert_eq!(d["StorageErrors"], 2.0);
        assert_eq!(d["Invocations"], 1.0);
        assert_eq!(d["_aws"]["Timestamp"], 1_700_000_000_000u64);
        let directives = d["_aws"]["CloudWatchMetrics"].as_array().unwrap();
        let route = directives
            .iter()
            .find(|x| x["Metrics"][0]["Name"] == "Invocations")
            .unwrap();
        assert_eq!(
            route["Dimensions"],
            json!([["FunctionName", "Route"], ["FunctionName"]])
        );
    }

    /// Conflicting dimension values and more than 100 values per metric split documents.
    #[test]
    fn conflicts_and_long_series_split_documents() {
        let docs = tokio_test_block_on(scope(async {
            for i in 0..150 {
                run_finished(ExecutionState::Dead, i);
            }
            run_finished(ExecutionState::Timeout, 1);
            take_emf(1)
        }));
        let docs: Vec<Value> = docs.iter().map(|d| parse(d)).collect();
        assert_eq!(docs.len(), 3, "{docs:?}");
        let dead: Vec<&Value> = docs.iter().filter(|d| d["State"] == "dead").collect();
        assert_eq!(dead.len(), 2);
        assert_eq!(dead[0]["RunDuration"].as_array().unwrap().len(), 100);
        assert_eq!(dead[1]["RunDuration"].as_array().unwrap().len(), 50);
        assert_eq!(
            dead.iter()
                .filter_map(|d| d["RunsFinished"].as_f64())
                .sum::<f64>(),
            150.0
        );
        assert!(docs.iter().any(|d| d["State"] == "timeout"));
    }

    /// Outside a scope nothing is collected, and nothing is written.
    #[test]
    fn no_scope_no_metrics() {
        run_started();
        assert!(take_emf(1).is_empty());
    }

    fn tokio_test_block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }
}

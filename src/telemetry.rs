//! Structured logs (JSON lines through `tracing`) and CloudWatch Embedded Metric Format lines.

/// Installs the JSON log subscriber. `RUST_LOG` wins; else Lambda's `AWS_LAMBDA_LOG_LEVEL`;
/// else `info`. Safe to call twice (the second call does nothing).
pub fn init() {
    use tracing_subscriber::EnvFilter;
    let filter = std::env::var("RUST_LOG")
        .ok()
        .or_else(|| {
            std::env::var("AWS_LAMBDA_LOG_LEVEL")
                .ok()
                .map(|l| l.to_ascii_lowercase())
        })
        .unwrap_or_else(|| "info".into());
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(EnvFilter::new(filter))
        .with_current_span(false)
        .with_span_list(false)
        .with_target(false)
        .without_time()
        .try_init();
}

pub mod metrics {
    //! Counters collected during an invocation and flushed as one EMF line at its end.
    //!
    //! Process-wide atomics like the log sink they feed: metrics are observed from places (the
    //! storage error logger) that have no manager in reach, and a Lambda instance serves one
    //! invocation at a time, so a flush covers exactly one invocation.

    use crate::notify::PushErrorKind;
    use crate::state::ExecutionState;
    use crate::store::StorageErrorKind;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// The CloudWatch namespace of every metric.
    pub const NAMESPACE: &str = "wsexec";

    static COLD: AtomicBool = AtomicBool::new(true);
    static PENDING: Mutex<Vec<(String, f64, &'static str)>> = Mutex::new(Vec::new());

    fn add(name: String, value: f64, unit: &'static str) {
        let mut p = PENDING.lock().unwrap_or_else(|e| e.into_inner());
        match p
            .iter_mut()
            .find(|(n, _, u)| *n == name && *u == "Count" && unit == "Count")
        {
            Some(entry) => entry.1 += value,
            None => p.push((name, value, unit)),
        }
    }

    /// One invocation of `route` (`$connect`, `$default`, `$disconnect`, `sweep`).
    pub fn invocation(route: &str) {
        if COLD.swap(false, Ordering::Relaxed) {
            add("ColdStart".into(), 1.0, "Count");
        }
        add(format!("Invocations.{route}"), 1.0, "Count");
    }

    /// A connection was accepted.
    pub fn connection_opened() {
        add("ConnectionsOpened".into(), 1.0, "Count");
    }

    /// A run was created.
    pub fn run_started() {
        add("RunsStarted".into(), 1.0, "Count");
    }

    /// A run reached a terminal state after `duration_ms`.
    pub fn run_finished(state: ExecutionState, duration_ms: u64) {
        add(format!("RunOutcome.{state}"), 1.0, "Count");
        add("RunDuration".into(), duration_ms as f64, "Milliseconds");
    }

    /// A classified storage failure.
    pub fn storage_error(kind: StorageErrorKind) {
        add(format!("StorageErrors.{}", kind.code()), 1.0, "Count");
    }

    /// A classified push failure.
    pub fn push_error(kind: PushErrorKind) {
        add(format!("PushErrors.{}", kind.code()), 1.0, "Count");
    }

    /// The pending metrics as one EMF JSON line (`None` when nothing was recorded); clears them.
    pub fn take_emf(timestamp_ms: u64) -> Option<String> {
        let pending = std::mem::take(&mut *PENDING.lock().unwrap_or_else(|e| e.into_inner()));
        if pending.is_empty() {
            return None;
        }
        let mut root = serde_json::Map::new();
        let mut defs = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (name, value, unit) in &pending {
            // A metric name may appear once per directive; repeated samples become a list.
            match root.get_mut(name) {
                Some(serde_json::Value::Array(a)) => a.push((*value).into()),
                Some(v) => *v = serde_json::Value::Array(vec![v.clone(), (*value).into()]),
                None => {
                    root.insert(name.clone(), (*value).into());
                }
            }
            if seen.insert(name.clone()) {
                defs.push(serde_json::json!({ "Name": name, "Unit": unit }));
            }
        }
        root.insert("Service".into(), NAMESPACE.into());
        root.insert(
            "_aws".into(),
            serde_json::json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": [["Service"]],
                    "Metrics": defs,
                }],
            }),
        );
        Some(serde_json::Value::Object(root).to_string())
    }

    /// Whether [`flush`] writes to stderr instead of stdout.
    static TO_STDERR: AtomicBool = AtomicBool::new(false);

    /// Makes [`flush`] write to stderr: `wsexec-local` keeps stdout for its own output (the
    /// address line, `invoke`'s JSON lines), and there is no log agent to read EMF locally.
    pub fn flush_to_stderr() {
        TO_STDERR.store(true, Ordering::Relaxed);
    }

    /// Writes the pending metrics to stdout, where Lambda's log agent turns EMF into metrics.
    pub fn flush() {
        if let Some(line) = take_emf(crate::time::now_ms()) {
            if TO_STDERR.load(Ordering::Relaxed) {
                eprintln!("{line}");
            } else {
                println!("{line}");
            }
        }
    }
}

//! Structured logs (JSON lines through `tracing`) and CloudWatch Embedded Metric Format lines.
//!
//! Every invocation writes one [`InvocationLog`] line and its EMF metrics ([`metrics`]), both
//! through the subscriber built by [`subscriber`], so a test can capture them with any writer.

mod emf;
pub mod metrics;

use std::time::Duration;
use tracing::Subscriber;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{Layer, Registry};

/// Every environment variable telemetry reads: `RUST_LOG` (the template sets it from its
/// `LogLevel` parameter), and Lambda's own `AWS_LAMBDA_LOG_LEVEL` and `AWS_LAMBDA_FUNCTION_NAME`.
pub const ENV_VARS: [&str; 3] = [
    "RUST_LOG",
    "AWS_LAMBDA_LOG_LEVEL",
    "AWS_LAMBDA_FUNCTION_NAME",
];

/// The log filter when neither `RUST_LOG` nor Lambda's log level is set: one line per
/// invocation, plus warnings and errors.
pub const DEFAULT_LOG_FILTER: &str = "info";

/// The `tracing` target EMF documents travel on. Their own layer writes them verbatim and the
/// log filter never applies to them: metrics must not vanish because `RUST_LOG=warn`.
pub const EMF_TARGET: &str = "wsexec::emf";

/// The log filter: `RUST_LOG` wins; else Lambda's `AWS_LAMBDA_LOG_LEVEL` (lower-cased; its
/// `FATAL` becomes `error`, `tracing`'s most severe level); else [`DEFAULT_LOG_FILTER`].
pub fn log_filter(get: impl Fn(&str) -> Option<String>) -> String {
    let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());
    if let Some(filter) = get("RUST_LOG") {
        return filter;
    }
    match get("AWS_LAMBDA_LOG_LEVEL").map(|l| l.trim().to_ascii_lowercase()) {
        Some(l) if l == "fatal" => "error".into(),
        Some(l) => l,
        None => DEFAULT_LOG_FILTER.into(),
    }
}

/// The subscriber: JSON log lines filtered by `filter` (`target=level` directives as in
/// `RUST_LOG`, e.g. `info,wsexec=debug`; a malformed filter falls back to `info`), and EMF
/// documents unfiltered, both written to `make_writer`.
///
/// `Targets` rather than `EnvFilter`: the same directives wsexec needs without span and field
/// filters, and without the regex engine (measured: a smaller binary; see BENCHMARKS.md).
///
/// Log lines carry an RFC 3339 `timestamp` and a `level`: with the function's JSON log format,
/// Lambda filters application logs on `level`, and honours it only when the line also has a
/// valid timestamp (otherwise it files the line as INFO).
pub fn subscriber<W>(filter: &str, make_writer: W) -> impl Subscriber + Send + Sync + 'static
where
    W: for<'w> MakeWriter<'w> + Clone + Send + Sync + 'static,
{
    subscriber_for(filter, make_writer, false)
}

/// The target of `lambda_runtime`'s per-invocation span (`Lambda runtime invoke`, fields
/// `requestId` and `xrayTraceId`).
pub const INVOCATION_SPAN_TARGET: &str = "lambda_runtime::layers::trace";

/// [`subscriber`], and with `concurrent` every line written inside an invocation also carries
/// that invocation's span (`"span": {"requestId": ..., "xrayTraceId": ..., "name": ...}`),
/// whatever the log level. One invocation at a time, a line belongs to the invocation whose
/// line follows it; many at once, lines interleave and only the span says whose a line is.
pub fn subscriber_for<W>(
    filter: &str,
    make_writer: W,
    concurrent: bool,
) -> impl Subscriber + Send + Sync + 'static
where
    W: for<'w> MakeWriter<'w> + Clone + Send + Sync + 'static,
{
    let mut filter = filter
        .parse::<Targets>()
        .unwrap_or_else(|_| Targets::new().with_default(LevelFilter::INFO))
        .with_target(EMF_TARGET, LevelFilter::OFF)
        // rmcp's debug and info lines carry whole JSON-RPC messages (tool arguments and
        // results); wsexec logs MCP faults itself, with server and tool names only.
        .with_target("rmcp", LevelFilter::WARN);
    if concurrent {
        filter = filter.with_target(INVOCATION_SPAN_TARGET, LevelFilter::INFO);
    }
    let logs = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(concurrent)
        .with_span_list(false)
        .with_target(false)
        .with_writer(make_writer.clone())
        .with_filter(filter);
    let emf = emf::EmfLayer::new(make_writer).with_filter(tracing_subscriber::filter::filter_fn(
        |meta| meta.target() == EMF_TARGET,
    ));
    Registry::default().with(logs).with(emf)
}

/// Installs [`subscriber`] on stdout (Lambda sends stdout to CloudWatch Logs) with the filter
/// from [`log_filter`]. Safe to call twice (the second call does nothing).
pub fn init() {
    init_for(false);
}

/// [`init`] for a process serving one invocation at a time (`false`) or many at once
/// (`true`: see [`subscriber_for`]).
pub fn init_for(concurrent: bool) {
    let filter = log_filter(|k| std::env::var(k).ok());
    let _ = tracing::subscriber::set_global_default(subscriber_for(
        &filter,
        std::io::stdout,
        concurrent,
    ));
}

/// The one log line every invocation writes.
///
/// It carries ids and outcomes only: nothing is copied from the event's headers, query string
/// or body, so a token (`?token=`, `Sec-WebSocket-Protocol`) can never reach the logs; of the
/// direct reply only its `type` and error `code` are kept.
#[derive(Clone, Debug, Default)]
pub struct InvocationLog<'a> {
    /// Lambda's request id (`aws_request_id`), the key of the platform's `REPORT` line.
    pub lambda_request_id: Option<&'a str>,
    /// API Gateway's `requestContext.requestId`, the key of its access and execution logs.
    pub apigw_request_id: Option<&'a str>,
    /// `$connect`, `$default`, `$disconnect` or `sweep`; absent for an event that is neither.
    pub route: Option<&'static str>,
    pub connection_id: Option<&'a str>,
    /// The caller, once the route established it (absent for `ping` and refused connects).
    pub user_id: Option<std::borrow::Cow<'a, str>>,
    /// The WebSocket route's status code.
    pub status: Option<u16>,
    /// The `type` of the direct reply frame (`$default`): `pong`, `execution`, `error`, ...
    pub reply: Option<&'a str>,
    /// Why the invocation was refused or failed: a reply's error code, `$connect`'s refusal
    /// reason, or the Lambda error type of a failed invocation.
    pub error_code: Option<&'a str>,
    /// This invocation was the instance's first.
    pub cold_start: bool,
    pub duration: Duration,
}

impl InvocationLog<'_> {
    /// Writes the line (message `invocation`, level INFO). Absent fields are left out.
    pub fn emit(&self) {
        tracing::info!(
            lambda_request_id = self.lambda_request_id,
            apigw_request_id = self.apigw_request_id,
            route = self.route,
            connection_id = self.connection_id,
            user_id = self.user_id.as_deref(),
            status = self.status,
            reply = self.reply,
            error_code = self.error_code,
            cold_start = self.cold_start,
            duration_ms = self.duration.as_micros() as f64 / 1000.0,
            "invocation"
        );
    }
}

/// Logs a storage failure with its kind and raw cause, and counts it.
pub fn log_storage(e: &crate::store::StorageError) {
    metrics::storage_error(e.kind());
    tracing::warn!(
        operation = e.operation(),
        code = e.code(),
        retryable = e.is_retryable(),
        error = ?e,
        "storage error"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(pairs: &[(&str, &str)]) -> String {
        log_filter(|k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
    }

    /// RUST_LOG wins, then Lambda's level (lower-cased, FATAL as error), then `info`.
    #[test]
    fn log_filter_precedence() {
        assert_eq!(filter(&[]), "info");
        assert_eq!(filter(&[("AWS_LAMBDA_LOG_LEVEL", "WARN")]), "warn");
        assert_eq!(filter(&[("AWS_LAMBDA_LOG_LEVEL", "FATAL")]), "error");
        assert_eq!(
            filter(&[
                ("RUST_LOG", "wsexec=debug"),
                ("AWS_LAMBDA_LOG_LEVEL", "WARN")
            ]),
            "wsexec=debug"
        );
        assert_eq!(filter(&[("RUST_LOG", " ")]), "info");
    }
}

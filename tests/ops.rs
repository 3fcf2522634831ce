//! Operations: the invocation log line and the CloudWatch EMF metrics of real invocations,
//! captured through `telemetry::subscriber` with an in-memory writer.

mod support;

use serde_json::{Value, json};
use std::io::Write;
use std::sync::{Arc, Mutex};
use support::*;
use tracing_subscriber::fmt::MakeWriter;
use wsexec::handler::{LambdaContext, handle_with};
use wsexec::telemetry;
use wsexec::time::now_ms;

/// Every line the subscriber writes, in memory.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

struct CaptureWriter(Arc<Mutex<Vec<u8>>>);

impl Write for CaptureWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = CaptureWriter;

    fn make_writer(&'a self) -> CaptureWriter {
        CaptureWriter(self.0.clone())
    }
}

impl Capture {
    /// Installs a subscriber with `filter` writing here, for this thread (the test's runtime).
    fn install(&self, filter: &str) -> tracing::subscriber::DefaultGuard {
        tracing::subscriber::set_default(telemetry::subscriber(filter, self.clone()))
    }

    fn lines(&self) -> Vec<String> {
        let bytes = self.0.lock().unwrap().clone();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Every line, parsed: every line must be JSON.
    fn json(&self) -> Vec<Value> {
        self.lines()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    /// The `invocation` log lines.
    fn invocations(&self) -> Vec<Value> {
        self.json()
            .into_iter()
            .filter(|l| l["message"] == "invocation")
            .collect()
    }

    /// The EMF documents.
    fn emf(&self) -> Vec<Value> {
        self.json()
            .into_iter()
            .filter(|l| l.get("_aws").is_some())
            .collect()
    }
}

/// Runs `event` as the Lambda runtime would, with Lambda request id `lambda_request_id`.
async fn invoke(h: &Harness, event: &Value, lambda_request_id: &str) -> Value {
    let lambda = LambdaContext {
        request_id: Some(lambda_request_id),
        deadline_ms: Some(now_ms() + 30_000),
        ..Default::default()
    };
    match handle_with(&event.to_string(), Ok(&h.mgr), lambda).await {
        Ok(out) => serde_json::to_value(out).unwrap(),
        Err(e) => panic!("invocation failed: {e}"),
    }
}

fn jwt(sub: &str, secret: &str) -> String {
    let claims = json!({ "sub": sub, "exp": now_ms() / 1000 + 600 });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn with_request_id(mut event: Value, id: &str) -> Value {
    event["requestContext"]["requestId"] = json!(id);
    event
}

/// A JWT `$connect`, a `start_agent`, a failing `get_execution` and a refused `$connect` each
/// write one JSON `invocation` line with both request ids, route, connection, user and outcome;
/// no line carries a token or the JWT secret.
#[tokio::test]
async fn invocation_lines_carry_ids_and_outcomes_never_secrets() {
    let capture = Capture::default();
    let _guard = capture.install("info");
    let h = Harness::memory();
    let token = jwt("ops-user-1", SAMPLE_SECRET);
    let forged = jwt("ops-user-1", "not-the-secret");
    let conn = aws_id();

    let connect = connect_event(&conn, &[("token", &token)], &[]);
    let resp = invoke(
        &h,
        &with_request_id(connect, "apigw-connect"),
        "lambda-connect",
    )
    .await;
    assert_eq!(resp["statusCode"], 200, "{resp}");
    let start =
        json!({"type": "start_agent", "request_id": "ops-1", "payload": {"user_request": "hi"}});
    let message = message_event(&conn, &start.to_string());
    invoke(&h, &with_request_id(message, "apigw-start"), "lambda-start").await;
    let get = json!({"type": "get_execution", "run_id": "run_0000"});
    let message = message_event(&conn, &get.to_string());
    invoke(&h, &with_request_id(message, "apigw-get"), "lambda-get").await;
    let refused = connect_event(
        &aws_id(),
        &[],
        &[("Sec-WebSocket-Protocol", &format!("jwt.{forged}"))],
    );
    let resp = invoke(
        &h,
        &with_request_id(refused, "apigw-refused"),
        "lambda-refused",
    )
    .await;
    assert_eq!(resp["statusCode"], 401);

    let lines = capture.invocations();
    assert_eq!(lines.len(), 4, "{lines:#?}");
    for (line, lambda, apigw) in [
        (&lines[0], "lambda-connect", "apigw-connect"),
        (&lines[1], "lambda-start", "apigw-start"),
        (&lines[2], "lambda-get", "apigw-get"),
        (&lines[3], "lambda-refused", "apigw-refused"),
    ] {
        assert_eq!(line["level"], "INFO", "{line}");
        assert_eq!(line["lambda_request_id"], lambda, "{line}");
        assert_eq!(line["apigw_request_id"], apigw, "{line}");
        assert!(
            line["duration_ms"].as_f64().is_some_and(|d| d >= 0.0),
            "{line}"
        );
        assert!(line["cold_start"].is_boolean(), "{line}");
        assert!(
            line["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')),
            "{line}"
        );
    }
    let connected = &lines[0];
    assert_eq!(connected["route"], "$connect");
    assert_eq!(connected["connection_id"], conn.as_str());
    assert_eq!(connected["user_id"], "ops-user-1");
    assert_eq!(connected["status"], 200);
    assert!(connected.get("error_code").is_none(), "{connected}");
    let started = &lines[1];
    assert_eq!(started["route"], "$default");
    assert_eq!(started["user_id"], "ops-user-1");
    assert!(
        started.get("reply").is_none(),
        "run events are pushed, not replied: {started}"
    );
    let failed = &lines[2];
    assert_eq!(failed["reply"], "error");
    assert_eq!(failed["error_code"], "not_found");
    let refusal = &lines[3];
    assert_eq!(refusal["status"], 401);
    assert_eq!(refusal["error_code"], "invalid_token");
    assert!(refusal.get("user_id").is_none(), "{refusal}");

    let signature = |t: &str| t.rsplit('.').next().unwrap().to_owned();
    for line in capture.lines() {
        for secret in [&token, &forged, &signature(&token), &signature(&forged)] {
            assert!(!line.contains(secret.as_str()), "a token leaked: {line}");
        }
        assert!(
            !line.contains(SAMPLE_SECRET),
            "the JWT secret leaked: {line}"
        );
    }
}

/// The EMF documents of real invocations (`$connect`, a run, `$disconnect`, a sweep) pass the
/// specification's rules and carry invocations per route and runs per terminal state.
#[tokio::test]
async fn emf_of_real_invocations_follows_the_spec() {
    let capture = Capture::default();
    let _guard = capture.install("info");
    let h = Harness::memory();
    let conn = aws_id();
    let connect = connect_event(&conn, &[("token", &jwt("ops-user-2", SAMPLE_SECRET))], &[]);
    invoke(&h, &connect, "l-1").await;
    let start =
        json!({"type": "start_agent", "request_id": "ops-2", "payload": {"user_request": "hi"}});
    invoke(&h, &message_event(&conn, &start.to_string()), "l-2").await;
    invoke(&h, &disconnect_event(&conn), "l-3").await;
    invoke(&h, &sample("scheduled-sweep.json"), "l-4").await;

    let docs = capture.emf();
    assert!(
        docs.len() >= 4,
        "one document per invocation at least: {docs:#?}"
    );
    for doc in &docs {
        let errors = emf_errors(doc, now_ms());
        assert!(errors.is_empty(), "{errors:#?}\n{doc:#}");
    }
    let published = published(&docs);
    for route in ["$connect", "$default", "$disconnect", "sweep"] {
        assert!(
            published.contains(&("Invocations".into(), vec![("Route".into(), route.into())])),
            "no Invocations for {route}: {published:#?}"
        );
    }
    for (metric, dims) in [
        ("RunsFinished", vec![("State", "completed")]),
        ("RunDuration", vec![("State", "completed")]),
        ("RunsFinished", vec![]),
        ("RunsStarted", vec![]),
        ("ConnectionsOpened", vec![]),
        ("InvocationDuration", vec![("Route", "$default")]),
    ] {
        let dims: Vec<(String, String)> = dims
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert!(
            published.contains(&(metric.to_owned(), dims.clone())),
            "no {metric} {dims:?}: {published:#?}"
        );
    }
}

/// An agent that reports one model round of 100 input and 50 output tokens.
struct Metered;

#[async_trait::async_trait]
impl wsexec::run::Executor for Metered {
    async fn execute(
        &self,
        _input: wsexec::run::RunInput<'_>,
        sink: wsexec::run::RunSink,
    ) -> Result<Value, wsexec::run::AgentFailure> {
        sink.usage(100, 50).await;
        Ok(json!({"text": "ok"}))
    }
}

/// A run's tokens are metrics `InputTokens` / `OutputTokens` and a start refused by a spent
/// budget counts `QuotaRefusals` by `Limit`, in documents that pass the spec's rules and carry
/// no user or run as a dimension; the `run usage` log line carries the user and run ids with the
/// token counts.
#[tokio::test]
async fn tokens_and_refusals_are_metrics_with_bounded_dimensions() {
    let capture = Capture::default();
    let _guard = capture.install("info");
    let mut config = test_config();
    config.daily_token_budget_per_user = Some(100);
    let h = Harness::with_config(config).with_agent("metered", std::sync::Arc::new(Metered));
    let conn = aws_id();
    let connect = connect_event(&conn, &[("token", &jwt("ops-user-3", SAMPLE_SECRET))], &[]);
    invoke(&h, &connect, "l-1").await;
    for (i, id) in ["ops-3a", "ops-3b"].iter().enumerate() {
        let start = json!({"type": "start_agent", "agent": "metered", "request_id": id,
                           "payload": {"user_request": "hi"}});
        invoke(
            &h,
            &message_event(&conn, &start.to_string()),
            &format!("l-s{i}"),
        )
        .await;
    }

    let docs = capture.emf();
    for doc in &docs {
        let errors = emf_errors(doc, now_ms());
        assert!(errors.is_empty(), "{errors:#?}\n{doc:#}");
        assert!(!doc.to_string().contains("ops-user-3"), "{doc}");
    }
    let published = published(&docs);
    let limit = vec![("Limit".to_owned(), "DAILY_TOKEN_BUDGET_PER_USER".to_owned())];
    for (metric, dims) in [
        ("InputTokens", vec![]),
        ("OutputTokens", vec![]),
        ("QuotaRefusals", limit),
    ] {
        assert!(
            published.contains(&(metric.to_owned(), dims.clone())),
            "no {metric} {dims:?}: {published:#?}"
        );
    }
    let input: f64 = docs.iter().filter_map(|d| d["InputTokens"].as_f64()).sum();
    assert_eq!(input, 100.0);
    let usage: Vec<Value> = capture
        .json()
        .into_iter()
        .filter(|l| l["message"] == "run usage")
        .collect();
    assert_eq!(usage.len(), 1, "one run ran: {usage:#?}");
    assert_eq!(usage[0]["user_id"], "ops-user-3");
    assert!(usage[0]["run_id"].as_str().is_some_and(|r| !r.is_empty()));
    assert_eq!(
        (&usage[0]["input_tokens"], &usage[0]["output_tokens"]),
        (&json!(100), &json!(50))
    );
}

/// Metrics are written even when the log filter (`RUST_LOG=warn`) drops the invocation lines.
#[tokio::test]
async fn metrics_survive_a_warn_log_filter() {
    let capture = Capture::default();
    let _guard = capture.install("warn");
    let h = Harness::memory();
    invoke(
        &h,
        &message_event(&aws_id(), r#"{"type":"ping"}"#),
        "l-ping",
    )
    .await;
    assert!(capture.invocations().is_empty());
    let docs = capture.emf();
    assert_eq!(docs.len(), 1, "{docs:#?}");
    assert_eq!(docs[0]["Invocations"], 1.0);
    assert_eq!(docs[0]["Route"], "$default");
}

/// A way to break an EMF document.
type Breakage = fn(&mut Value);

/// The validator rejects a document breaking each EMF rule, so the spec test can fail.
#[test]
fn emf_validator_catches_each_rule() {
    let now = now_ms();
    let valid = json!({
        "FunctionName": "wsexec", "Route": "$default", "Invocations": 1.0, "RunDuration": [3.0, 4.0],
        "_aws": {"Timestamp": now, "CloudWatchMetrics": [{
            "Namespace": "wsexec",
            "Dimensions": [["FunctionName", "Route"], ["FunctionName"]],
            "Metrics": [{"Name": "Invocations", "Unit": "Count"}, {"Name": "RunDuration", "Unit": "Milliseconds"}]
        }]}
    });
    assert_eq!(emf_errors(&valid, now), Vec::<String>::new());
    let broken: [(&str, Breakage); 12] = [
        ("timestamp in seconds", |d| {
            d["_aws"]["Timestamp"] = json!(now_ms() / 1000)
        }),
        ("no directives", |d| {
            d["_aws"]["CloudWatchMetrics"] = json!([])
        }),
        ("extra _aws member", |d| d["_aws"]["Extra"] = json!(1)),
        ("no namespace", |d| {
            d["_aws"]["CloudWatchMetrics"][0]
                .as_object_mut()
                .unwrap()
                .remove("Namespace");
        }),
        ("dimension not a root member", |d| {
            d.as_object_mut().unwrap().remove("Route");
        }),
        ("dimension value a number", |d| d["Route"] = json!(1)),
        ("31 dimensions", |d| {
            d["_aws"]["CloudWatchMetrics"][0]["Dimensions"] = json!([vec!["FunctionName"; 31]])
        }),
        ("metric not a root member", |d| {
            d.as_object_mut().unwrap().remove("Invocations");
        }),
        ("metric value a string", |d| d["Invocations"] = json!("1")),
        ("101 values", |d| d["RunDuration"] = json!(vec![1.0; 101])),
        ("unknown unit", |d| {
            d["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"] = json!("Requests")
        }),
        ("101 metrics", |d| {
            let defs: Vec<Value> = (0..101).map(|i| json!({"Name": format!("M{i}")})).collect();
            for i in 0..101 {
                d[format!("M{i}")] = json!(1);
            }
            d["_aws"]["CloudWatchMetrics"][0]["Metrics"] = json!(defs);
        }),
    ];
    for (name, breaks) in broken {
        let mut doc = valid.clone();
        breaks(&mut doc);
        assert!(!emf_errors(&doc, now).is_empty(), "{name}: accepted");
    }
}

/// Every (metric name, dimension set as (key, value) pairs) the documents publish.
fn published(docs: &[Value]) -> Vec<(String, Vec<(String, String)>)> {
    let mut out = Vec::new();
    for doc in docs {
        for directive in doc["_aws"]["CloudWatchMetrics"].as_array().unwrap() {
            for set in directive["Dimensions"].as_array().unwrap() {
                let dims: Vec<(String, String)> = set
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|k| k.as_str().unwrap())
                    .filter(|k| *k != "FunctionName")
                    .map(|k| (k.to_owned(), doc[k].as_str().unwrap().to_owned()))
                    .collect();
                for m in directive["Metrics"].as_array().unwrap() {
                    out.push((m["Name"].as_str().unwrap().to_owned(), dims.clone()));
                }
            }
        }
    }
    out
}

/// CloudWatch's units, the only values `Unit` may take.
const UNITS: [&str; 27] = [
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

/// The specification's limits: dimensions per set, metrics per directive, values per metric.
const MAX_DIMENSIONS: usize = 30;
const MAX_METRICS: usize = 100;
const MAX_VALUES: usize = 100;

/// Breaks of the CloudWatch Embedded Metric Format specification in `doc`, written at `now_ms`.
fn emf_errors(doc: &Value, now_ms: u64) -> Vec<String> {
    let mut errors = Vec::new();
    let mut err = |m: String| errors.push(m);
    let Some(root) = doc.as_object() else {
        return vec!["the document is not a JSON object".into()];
    };
    let Some(aws) = root.get("_aws").and_then(Value::as_object) else {
        return vec!["no _aws metadata object".into()];
    };
    for key in aws.keys() {
        if key != "Timestamp" && key != "CloudWatchMetrics" {
            err(format!("_aws has an unknown member {key}"));
        }
    }
    match aws.get("Timestamp").and_then(Value::as_u64) {
        // Milliseconds since the epoch, near the time it was written.
        Some(t) if t.abs_diff(now_ms) < 3_600_000 => {}
        other => err(format!(
            "_aws.Timestamp {other:?} is not epoch milliseconds of now"
        )),
    }
    let directives = aws.get("CloudWatchMetrics").and_then(Value::as_array);
    if directives.is_none_or(|d| d.is_empty()) {
        err("_aws.CloudWatchMetrics is not a non-empty array".into());
    }
    for d in directives.into_iter().flatten() {
        let Some(d) = d.as_object() else {
            err("a directive is not an object".into());
            continue;
        };
        for key in d.keys() {
            if !["Namespace", "Dimensions", "Metrics"].contains(&key.as_str()) {
                err(format!("a directive has an unknown member {key}"));
            }
        }
        match d.get("Namespace").and_then(Value::as_str) {
            Some(ns) if (1..=1024).contains(&ns.len()) && ns.is_ascii() => {}
            other => err(format!("Namespace {other:?} is invalid")),
        }
        let Some(sets) = d.get("Dimensions").and_then(Value::as_array) else {
            err("Dimensions is not an array".into());
            continue;
        };
        for set in sets {
            let Some(keys) = set.as_array() else {
                err(format!("dimension set {set} is not an array"));
                continue;
            };
            if keys.len() > MAX_DIMENSIONS {
                err(format!("a dimension set has {} keys", keys.len()));
            }
            for key in keys {
                let Some(key) = key.as_str() else {
                    err(format!("dimension key {key} is not a string"));
                    continue;
                };
                match root.get(key).and_then(Value::as_str) {
                    Some(v)
                        if (1..=1024).contains(&v.len())
                            && v.is_ascii()
                            && !v.trim().is_empty() => {}
                    other => err(format!(
                        "dimension {key} has no valid string value: {other:?}"
                    )),
                }
            }
        }
        let Some(metrics) = d.get("Metrics").and_then(Value::as_array) else {
            err("Metrics is not an array".into());
            continue;
        };
        if metrics.len() > MAX_METRICS {
            err(format!("a directive has {} metrics", metrics.len()));
        }
        let mut names = std::collections::HashSet::new();
        for m in metrics {
            let Some(m) = m.as_object() else {
                err(format!("metric definition {m} is not an object"));
                continue;
            };
            for key in m.keys() {
                if !["Name", "Unit", "StorageResolution"].contains(&key.as_str()) {
                    err(format!("a metric definition has an unknown member {key}"));
                }
            }
            let Some(name) = m.get("Name").and_then(Value::as_str) else {
                err("a metric definition has no Name".into());
                continue;
            };
            if !names.insert(name) {
                err(format!("metric {name} is defined twice in a directive"));
            }
            if let Some(unit) = m.get("Unit")
                && !unit.as_str().is_some_and(|u| UNITS.contains(&u))
            {
                err(format!("metric {name} has unit {unit}"));
            }
            if let Some(r) = m.get("StorageResolution")
                && r != 1
                && r != 60
            {
                err(format!("metric {name} has storage resolution {r}"));
            }
            match root.get(name) {
                Some(Value::Number(_)) => {}
                Some(Value::Array(values))
                    if (1..=MAX_VALUES).contains(&values.len())
                        && values.iter().all(Value::is_number) => {}
                other => err(format!("metric {name} has no valid value: {other:?}")),
            }
        }
    }
    errors
}

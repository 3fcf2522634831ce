//! The built `wsexec-local invoke`: sample events across processes sharing one data dir, and
//! precise words for an event file that is empty, not JSON, or not a supported event.
#![cfg(feature = "local")]

#[path = "support/local_harness.rs"]
mod local_harness;

use local_harness::RUN_EVENTS;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// The HS256 secret the sample tokens in `events/` are signed with.
const SAMPLE_SECRET: &str = "wsexec-sample-secret";

/// Deletes its directory when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The built `wsexec-local invoke` on one file: whether it succeeded, and its one error line.
fn invoke_error(dir: &TempDir, name: &str, contents: &[u8]) -> (bool, String) {
    let file = dir.0.join(name);
    std::fs::write(&file, contents).expect("write event file");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wsexec-local"))
        .args(["invoke", "--data-dir"])
        .arg(dir.0.join("data"))
        .arg(&file)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run wsexec-local");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line: Value = serde_json::from_str(stdout.lines().next().unwrap_or(""))
        .unwrap_or_else(|e| panic!("stdout {stdout:?} is not a JSON line: {e}"));
    let error = line["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error: {line}"));
    (out.status.success(), error.to_owned())
}

/// `invoke` says precisely what is wrong with an event file: empty, not JSON (without the
/// parser's internals), or JSON that is not a supported event.
#[test]
fn invoke_names_what_is_wrong_with_an_event_file() {
    let dir =
        TempDir(std::env::temp_dir().join(format!("wsexec-invoke-bad-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).expect("temp dir");

    let (ok, error) = invoke_error(&dir, "empty.json", b"");
    assert!(!ok);
    assert!(error.contains("empty"), "{error}");
    let (ok, error) = invoke_error(&dir, "blank.json", b" \n\t\n");
    assert!(!ok);
    assert!(error.contains("empty"), "{error}");

    let (ok, error) = invoke_error(&dir, "broken.json", b"{\"requestContext\": ");
    assert!(!ok);
    assert!(error.contains("not JSON"), "{error}");
    for internal in ["EOF", "expected", "line", "column"] {
        assert!(!error.contains(internal), "parser internals leak: {error}");
    }

    let (ok, error) = invoke_error(&dir, "latin1.json", b"{\"a\": \"caf\xe9\"}");
    assert!(!ok);
    assert!(error.contains("not JSON"), "{error}");

    let (ok, error) = invoke_error(&dir, "other.json", br#"{"hello": "world"}"#);
    assert!(!ok);
    assert!(error.contains("unsupported event"), "{error}");
    assert!(
        !error.contains("empty") && !error.contains("not JSON"),
        "{error}"
    );
}

fn run_invoke(data_dir: &Path, event: &str) -> (bool, Vec<Value>) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wsexec-local"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["invoke", "--data-dir"])
        .arg(data_dir)
        .arg(format!("events/{event}"))
        .env("JWT_SECRET", SAMPLE_SECRET)
        .env("WSEXEC_MODE", "local")
        .env("RUST_LOG", "warn")
        // Hermetic: only the settings the sample events need.
        .env_remove("JWT_PUBLIC_KEY")
        .env_remove("JWT_ISSUER")
        .env_remove("JWT_AUDIENCE")
        .env_remove("CONNECTIONS_ENDPOINT")
        .output()
        .expect("run wsexec-local");
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("stdout line {l:?} is not JSON: {e}"))
        })
        .collect();
    (out.status.success(), lines)
}

/// `invoke` runs sample events in separate processes sharing one data dir: the run streams its
/// five events, and a later process reads it back `completed`; a bad file fails the command.
#[test]
fn invoke_keeps_state_across_processes() {
    let dir =
        TempDir(std::env::temp_dir().join(format!("wsexec-local-invoke-{}", std::process::id())));

    let (ok, lines) = run_invoke(&dir.0, "connect-jwt-query.json");
    assert!(ok);
    assert_eq!(
        lines,
        vec![
            json!({ "event": "events/connect-jwt-query.json", "response": { "statusCode": 200 } })
        ]
    );

    let (ok, lines) = run_invoke(&dir.0, "message-start-agent.json");
    assert!(ok);
    assert_eq!(lines[0]["response"]["statusCode"], 200);
    let pushed: Vec<&Value> = lines[1..].iter().map(|l| &l["pushed"]).collect();
    let types: Vec<&str> = pushed
        .iter()
        .map(|p| p["message"]["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, RUN_EVENTS);
    assert!(
        pushed
            .iter()
            .all(|p| p["connectionId"] == "L0SM9cOFvHcCIhw=")
    );
    let run_id = pushed[0]["message"]["run_id"].as_str().unwrap().to_owned();

    let (ok, lines) = run_invoke(&dir.0, "message-get-execution.json");
    assert!(ok);
    let body: Value = serde_json::from_str(lines[0]["response"]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["type"], "execution");
    assert_eq!(body["run_id"], run_id.as_str());
    assert_eq!(body["payload"]["state"], "completed");

    let (ok, lines) = run_invoke(&dir.0, "no-such-event.json");
    assert!(!ok);
    assert!(lines[0]["error"].is_string());
}

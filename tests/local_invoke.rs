//! `wsexec-local invoke` says precisely what is wrong with an event file: empty, not JSON,
//! or JSON that is not a supported event; run through the built binary.
#![cfg(feature = "local")]

use serde_json::Value;
use std::path::PathBuf;

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

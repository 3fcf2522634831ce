//! `wsexec-local invoke`: runs event files through the function's handler with an in-memory
//! notifier, printing one JSON line per response, per pushed message and per error.

use crate::dispatch::memory::MemoryInvoker;
use crate::handler::handle;
use crate::manager::Manager;
use crate::notify::memory::MemoryNotifier;
use serde_json::{Value, json};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

/// Runs each file's event in order, writing JSON lines to `out`. An event that hands a run to
/// a worker (`RUN_DISPATCH=async`) prints the worker event it would dispatch, then runs it.
/// Returns whether every event was read and handled without error (each error is a line too;
/// later files still run).
pub async fn invoke_files(
    mgr: &Manager,
    notifier: &Arc<MemoryNotifier>,
    invoker: &MemoryInvoker,
    files: &[impl AsRef<Path>],
    out: &mut impl Write,
) -> std::io::Result<bool> {
    let mut all_ok = true;
    for file in files {
        let name = file.as_ref().display().to_string();
        let raw = match read_event(file.as_ref()) {
            Ok(raw) => raw,
            Err(problem) => {
                all_ok = false;
                writeln!(out, "{}", json!({ "event": name, "error": problem }))?;
                continue;
            }
        };
        all_ok &= run_one(mgr, notifier, &name, &raw, out).await?;
        for (_, worker) in invoker.drain() {
            let shown = serde_json::from_str::<Value>(&worker).unwrap_or(Value::Null);
            writeln!(out, "{}", json!({ "event": name, "dispatched": shown }))?;
            all_ok &= run_one(mgr, notifier, &name, &worker, out).await?;
        }
    }
    out.flush()?;
    Ok(all_ok)
}

/// Runs one raw event; prints its response (or error) and what it pushed.
async fn run_one(
    mgr: &Manager,
    notifier: &MemoryNotifier,
    name: &str,
    raw: &str,
    out: &mut impl Write,
) -> std::io::Result<bool> {
    let ok = match handle(raw, Ok(mgr), None).await {
        Ok(output) => {
            let response = serde_json::to_value(&output).unwrap_or(Value::Null);
            writeln!(out, "{}", json!({ "event": name, "response": response }))?;
            true
        }
        Err(e) => {
            let line = json!({ "event": name, "error": e.message, "errorType": e.error_type });
            writeln!(out, "{line}")?;
            false
        }
    };
    for (connection_id, message) in notifier.drain() {
        // Pushed messages are JSON frames; anything else is shown as the string it is.
        let message = serde_json::from_str::<Value>(&message).unwrap_or(Value::String(message));
        let pushed = json!({ "connectionId": connection_id, "message": message });
        writeln!(out, "{}", json!({ "event": name, "pushed": pushed }))?;
    }
    Ok(ok)
}

/// The event file's text, or what is wrong with it in words for its author: unreadable,
/// empty, or not JSON. Whether the JSON is an event is the handler's to say.
fn read_event(path: &Path) -> Result<String, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read event file: {e}"))?;
    let Ok(raw) = String::from_utf8(bytes) else {
        return Err("event file is not JSON: it is not UTF-8 text".into());
    };
    if raw.trim().is_empty() {
        return Err("event file is empty: expected a JSON event such as events/*.json".into());
    }
    // The parser's own wording (`EOF while parsing...`) says nothing to the author.
    if serde_json::from_str::<serde::de::IgnoredAny>(&raw).is_err() {
        return Err("event file is not JSON".into());
    }
    Ok(raw)
}

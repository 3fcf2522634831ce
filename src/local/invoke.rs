//! `wsexec-local invoke`: runs event files through the function's handler with an in-memory
//! notifier, printing one JSON line per response, per pushed message and per error.

use crate::handler::handle;
use crate::manager::Manager;
use crate::notify::memory::MemoryNotifier;
use serde_json::{Value, json};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

/// Runs each file's event in order, writing JSON lines to `out`. Returns whether every event
/// was read and handled without error (each error is a line too; later files still run).
pub async fn invoke_files(
    mgr: &Manager,
    notifier: &Arc<MemoryNotifier>,
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
        match handle(&raw, Ok(mgr), None).await {
            Ok(output) => {
                let response = serde_json::to_value(&output).unwrap_or(Value::Null);
                writeln!(out, "{}", json!({ "event": name, "response": response }))?;
            }
            Err(e) => {
                all_ok = false;
                let line = json!({ "event": name, "error": e.message, "errorType": e.error_type });
                writeln!(out, "{line}")?;
            }
        }
        for (connection_id, message) in notifier.drain() {
            // Pushed messages are JSON frames; anything else is shown as the string it is.
            let message = serde_json::from_str::<Value>(&message).unwrap_or(Value::String(message));
            let pushed = json!({ "connectionId": connection_id, "message": message });
            writeln!(out, "{}", json!({ "event": name, "pushed": pushed }))?;
        }
    }
    out.flush()?;
    Ok(all_ok)
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

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
        let raw = match std::fs::read_to_string(file.as_ref()) {
            Ok(raw) => raw,
            Err(e) => {
                all_ok = false;
                writeln!(
                    out,
                    "{}",
                    json!({ "event": name, "error": format!("cannot read event file: {e}") })
                )?;
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

//! A tool a server listed, as the model is offered it (`{server}__{tool}`, the server's
//! description and bounded `inputSchema`, its annotations kept), and a call's result turned into
//! the bounded, marked value the model gets back.

use super::session::Server;
use crate::tools::{Tool, ToolError, ToolHints};
use async_trait::async_trait;
use rmcp::model::{CallToolResult, ContentBlock, Tool as RemoteTool};
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::time::Duration;

/// The longest function name both providers accept (OpenAI and Bedrock: `[a-zA-Z0-9_-]{1,64}`).
pub const MAX_OFFERED_NAME_CHARS: usize = 64;
/// The most of a server's description passed to the model: enough to say what a tool does;
/// more is tokens on every request.
pub const MAX_DESCRIPTION_CHARS: usize = 1024;
/// The largest `inputSchema` (serialized) offered: a schema is sent with every model request,
/// and a larger one is a broken or hostile server. Such a tool is left out.
pub const MAX_SCHEMA_BYTES: usize = 16 * 1024;
/// The most of a call's result handed to the model (and shown in `tool_completed`): tool results
/// are untrusted text, and every round re-sends them; a cut result is marked `truncated`.
pub const MAX_RESULT_BYTES: usize = 16 * 1024;
/// Grace on top of a call's own limit for the outer guard: a session re-initialisation and
/// one retry may follow an expired session.
const RETRY_GRACE: Duration = Duration::from_secs(5);

/// `{server}__{tool}` with every character outside `[a-zA-Z0-9_-]` replaced by `_`, cut to 64.
pub fn offered_name(server: &str, tool: &str) -> String {
    let sanitized: String = tool
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut name = format!("{server}__{sanitized}");
    name.truncate(MAX_OFFERED_NAME_CHARS);
    name
}

/// Why a listed tool is not offered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Its `inputSchema` is not an object schema.
    InvalidSchema,
    /// Its `inputSchema` is larger than [`MAX_SCHEMA_BYTES`].
    OversizedSchema,
}

impl Refusal {
    /// For the log.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::InvalidSchema => "input schema is not an object schema",
            Refusal::OversizedSchema => "input schema larger than the limit",
        }
    }
}

/// A server's tool offered to the model.
pub struct McpTool {
    server: Arc<Server>,
    remote_name: String,
    name: String,
    description: String,
    schema: Value,
    hints: ToolHints,
}

impl McpTool {
    /// The tool as offered, or why it is not.
    pub fn new(server: Arc<Server>, remote: &RemoteTool) -> Result<McpTool, Refusal> {
        let schema = Value::Object((*remote.input_schema).clone());
        if schema.get("type").and_then(Value::as_str) != Some("object") {
            return Err(Refusal::InvalidSchema);
        }
        if serde_json::to_vec(&schema).map_or(true, |b| b.len() > MAX_SCHEMA_BYTES) {
            return Err(Refusal::OversizedSchema);
        }
        let cfg = &server.config;
        let description = match remote.description.as_deref().map(str::trim) {
            Some(d) if !d.is_empty() => d.chars().take(MAX_DESCRIPTION_CHARS).collect(),
            // Bedrock requires a description; say where the tool comes from.
            _ => format!("{} (from the {} MCP server)", remote.name, cfg.name),
        };
        let a = remote.annotations.clone().unwrap_or_default();
        // MCP's defaults when a hint is absent: not read-only, destructive, not idempotent,
        // open-world.
        let hints = ToolHints {
            read_only: a.read_only_hint.unwrap_or(false),
            destructive: a.destructive_hint.unwrap_or(true),
            idempotent: a.idempotent_hint.unwrap_or(false),
            open_world: a.open_world_hint.unwrap_or(true),
            require_approval: cfg.require_approval.covers(
                &remote.name,
                a.destructive_hint,
                a.read_only_hint.unwrap_or(false),
            ),
        };
        Ok(McpTool {
            name: offered_name(&cfg.name, &remote.name),
            remote_name: remote.name.to_string(),
            description,
            schema,
            hints,
            server,
        })
    }

    /// The server it belongs to.
    pub fn server_name(&self) -> &str {
        &self.server.config.name
    }

    /// The tool's name on its server.
    pub fn remote_name(&self) -> &str {
        &self.remote_name
    }
}

#[async_trait]
impl Tool for McpTool {
    fn name(&self) -> &str {
        &self.name
    }

    fn description(&self) -> &str {
        &self.description
    }

    fn parameters(&self) -> Value {
        self.schema.clone()
    }

    fn time_limit(&self) -> Duration {
        self.server.config.timeout * 2 + RETRY_GRACE
    }

    fn hints(&self) -> ToolHints {
        self.hints
    }

    async fn call(&self, arguments: Value) -> Result<Value, ToolError> {
        let Value::Object(arguments) = arguments else {
            return Err(ToolError::InvalidArguments("expected an object".into()));
        };
        let server = &self.server.config.name;
        match self
            .server
            .call(&self.remote_name, arguments, self.hints.redo_safe())
            .await
        {
            Ok(result) => {
                let failed = result.is_error == Some(true);
                let value = model_result(&result);
                if failed {
                    tracing::info!(server = %server, tool = %self.remote_name, "mcp tool reported an error");
                    Err(ToolError::Failed(value_text(&value)))
                } else {
                    Ok(value)
                }
            }
            Err(fault) => {
                tracing::warn!(
                    server = %server,
                    tool = %self.remote_name,
                    code = fault.kind.code(),
                    status = fault.status,
                    rpc_code = fault.rpc_code,
                    "mcp tool call failed"
                );
                Err(ToolError::Failed(format!(
                    "{}: {}",
                    fault.kind.code(),
                    fault.kind.message()
                )))
            }
        }
    }
}

/// `{"text", "structured_content"?, "omitted"?, "truncated"?}`: the text parts joined, the
/// structured content, a note of the binary parts left out, all within [`MAX_RESULT_BYTES`].
pub fn model_result(result: &CallToolResult) -> Value {
    let mut text = String::new();
    let mut omitted = Vec::new();
    for block in &result.content {
        match block {
            ContentBlock::Text(t) => {
                if !text.is_empty() {
                    text.push('\n');
                }
                text.push_str(&t.text);
            }
            ContentBlock::Image(i) => omitted.push(format!("image ({})", i.mime_type)),
            ContentBlock::Audio(a) => omitted.push(format!("audio ({})", a.mime_type)),
            ContentBlock::Resource(_) => omitted.push("embedded resource".to_owned()),
            ContentBlock::ResourceLink(_) => omitted.push("resource link".to_owned()),
            _ => omitted.push("content of an unknown kind".to_owned()),
        }
    }
    let mut out = Map::new();
    out.insert("text".into(), Value::String(text));
    if let Some(s) = &result.structured_content {
        out.insert("structured_content".into(), s.clone());
    }
    if !omitted.is_empty() {
        omitted.truncate(16);
        out.insert(
            "omitted".into(),
            Value::String(format!("not shown: {}", omitted.join(", "))),
        );
    }
    cap(out)
}

/// Cuts a result to [`MAX_RESULT_BYTES`]: structured content goes first (its text usually says
/// the same), then the text is cut; either way `truncated` says so.
fn cap(mut out: Map<String, Value>) -> Value {
    let size = |m: &Map<String, Value>| serde_json::to_vec(m).map_or(usize::MAX, |b| b.len());
    if size(&out) <= MAX_RESULT_BYTES {
        return Value::Object(out);
    }
    out.insert("truncated".into(), Value::Bool(true));
    out.remove("structured_content");
    // Escaping makes the JSON longer than the text: cut in proportion, with room to spare,
    // until it fits.
    loop {
        let total = size(&out);
        let Some(Value::String(text)) = out.get_mut("text") else {
            break;
        };
        if total <= MAX_RESULT_BYTES || text.is_empty() {
            break;
        }
        let mut keep = (text.len() * (MAX_RESULT_BYTES - 256) / total).min(text.len() - 1);
        while keep > 0 && !text.is_char_boundary(keep) {
            keep -= 1;
        }
        text.truncate(keep);
    }
    Value::Object(out)
}

/// The text of an error result for the model (`isError: true`).
fn value_text(v: &Value) -> String {
    let text = v.get("text").and_then(Value::as_str).unwrap_or_default();
    if text.is_empty() {
        json!(v).to_string()
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::ContentBlock as Content;

    /// Names join server and tool, replace what providers refuse, and stop at 64 characters.
    #[test]
    fn offered_names() {
        assert_eq!(offered_name("orders", "lookup"), "orders__lookup");
        assert_eq!(offered_name("a", "get.item/v2 ü"), "a__get_item_v2__");
        let long = offered_name("s", &"x".repeat(100));
        assert_eq!(long.len(), 64);
        assert!(long.starts_with("s__x"));
    }

    /// Text parts join, structured content is kept, binary parts become a note.
    #[test]
    fn results_for_the_model() {
        let mut r = CallToolResult::success(vec![
            Content::text("one"),
            Content::image("aGk=", "image/png"),
            Content::text("two"),
        ]);
        r.structured_content = Some(json!({"n": 2}));
        let v = model_result(&r);
        assert_eq!(v["text"], "one\ntwo");
        assert_eq!(v["structured_content"], json!({"n": 2}));
        assert_eq!(v["omitted"], "not shown: image (image/png)");
        assert!(v.get("truncated").is_none());
    }

    /// A result past the cap is cut to fit and marked.
    #[test]
    fn big_results_are_cut_and_marked() {
        let mut r = CallToolResult::success(vec![Content::text("é\"".repeat(20_000))]);
        r.structured_content = Some(json!({"big": "y".repeat(20_000)}));
        let v = model_result(&r);
        assert!(serde_json::to_vec(&v).unwrap().len() <= MAX_RESULT_BYTES);
        assert_eq!(v["truncated"], true);
        assert!(v["text"].as_str().unwrap().len() > MAX_RESULT_BYTES / 4);
    }
}

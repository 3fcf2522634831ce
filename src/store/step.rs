//! The step journal's records: one completed step of a run (a model round, a tool result),
//! kept under the run's own owner so that ownership stays structural, within the item budget.

use super::Owner;
use crate::protocol::fit::{cut_text, json_len, prefix_within};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The most a step's body may take as JSON: DynamoDB refuses items over 400 KB, and the step's
/// keys and other attributes take well under the 16 KiB left.
pub const MAX_STEP_BYTES: usize = 384 * 1024;

/// The most steps one run's journal is read back with: a run of the `llm` agent journals at
/// most 9 rounds and their tool calls, so this only bounds a journal gone wrong.
pub const MAX_JOURNAL_STEPS: usize = 1024;

/// One completed step of a run, journaled before the next step starts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub run_id: String,
    pub user_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// 1-based, in the order the run completed its steps.
    pub n: u32,
    /// What the agent saved (its own JSON), within [`MAX_STEP_BYTES`] (see [`fit_step`]).
    pub body: Value,
    /// Epoch seconds (DynamoDB TTL): the run's own.
    pub expires_at: u64,
}

impl StepRecord {
    /// Whose run the step belongs to.
    pub fn owner(&self) -> Owner<'_> {
        Owner::new(&self.user_id, self.tenant_id.as_deref())
    }
}

/// `body` within [`MAX_STEP_BYTES`]: an oversized tool result (`content`) is replaced by a
/// marker `{"truncated": true, "result_bytes", "preview"}` with as much of its JSON as fits, an
/// oversized `text` is cut as a stored result's is; either way the body is marked
/// `truncated: true`, so a replay knows it does not hold the whole step. A body too large for
/// any other reason becomes that mark alone.
pub fn fit_step(mut body: Value) -> Value {
    let len = json_len(&body);
    if len <= MAX_STEP_BYTES {
        return body;
    }
    if let Some(content) = body.get_mut("content") {
        let whole = content.to_string();
        // Room for the marker's own fields besides the rest of the body.
        let rest = len - whole.len();
        let room = MAX_STEP_BYTES.saturating_sub(rest + 128);
        *content = json!({
            "truncated": true,
            "result_bytes": whole.len(),
            "preview": prefix_within(&whole, room),
        });
        body["truncated"] = json!(true);
        if json_len(&body) <= MAX_STEP_BYTES {
            return body;
        }
    }
    if cut_text(&mut body, MAX_STEP_BYTES) {
        return body;
    }
    json!({ "truncated": true, "step_bytes": len })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tool result over the item budget is cut with a marker that says how large it was; a
    /// step that fits is kept as it is.
    #[test]
    fn oversized_tool_results_are_cut_with_a_marker() {
        let small = json!({"kind": "tool", "content": {"a": 1}});
        assert_eq!(fit_step(small.clone()), small);
        let big = json!({"kind": "tool", "call_id": "c1",
                         "content": {"blob": "é".repeat(MAX_STEP_BYTES)}});
        let cut = fit_step(big);
        assert!(json_len(&cut) <= MAX_STEP_BYTES);
        assert_eq!(cut["truncated"], true);
        assert_eq!(cut["call_id"], "c1");
        assert_eq!(cut["content"]["truncated"], true);
        assert!(cut["content"]["result_bytes"].as_u64().unwrap() > MAX_STEP_BYTES as u64);
        assert!(cut["content"]["preview"].as_str().unwrap().len() > MAX_STEP_BYTES / 2);
        let text = json!({"kind": "round", "text": "x".repeat(2 * MAX_STEP_BYTES)});
        let cut = fit_step(text);
        assert!(json_len(&cut) <= MAX_STEP_BYTES);
        assert_eq!(
            (cut["kind"].as_str(), cut["truncated"].as_bool()),
            (Some("round"), Some(true))
        );
    }
}

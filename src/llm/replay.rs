//! The `llm` agent's journal: what each completed model round and tool call saves, and the
//! conversation a continuation rebuilds from it, so that a journaled round is never requested
//! again and a journaled tool call is never called again.

use crate::llm::chat::{Message, RoundOutput, ToolCall, Usage};
use serde_json::{Value, json};

/// What the model is told of a call that was in flight when the run's worker died, when the
/// tool does not declare that calling it again is safe.
pub const INTERRUPTED: &str = "this call was interrupted when the run's worker stopped; \
                               whether it took effect is unknown, and it was not made again";

/// What the model is told of a call whose result was not journaled although a later round
/// was (its journal write failed): it ran, and its result is gone.
pub const RESULT_LOST: &str = "the result of this call was not kept";

/// What the model is told of a call the user declined.
pub fn declined(reason: Option<&str>) -> String {
    match reason.map(str::trim).filter(|r| !r.is_empty()) {
        Some(r) => format!("the user declined this call; their reason: {r}"),
        None => "the user declined this call".to_owned(),
    }
}

/// The user's answer to a call that waited for approval.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub approved: bool,
    pub reason: Option<String>,
}

/// The step that carries the user's answer to the approval of call `call_id` (the driver adds
/// these to a continuation's journal from the run's stored answers).
pub fn approval_step(call_id: &str, approved: bool, reason: Option<&str>) -> Value {
    json!({"kind": "approval", "call_id": call_id, "approved": approved, "reason": reason})
}

/// The journal step of model round `round`: what it said (the answer, for a round that called
/// no tool), its tool calls, usage and model.
pub fn round_step(round: u32, said: &str, output: &RoundOutput) -> Value {
    let calls: Vec<Value> = output
        .tool_calls
        .iter()
        .map(|c| json!({"id": c.id, "name": c.name, "arguments": c.arguments}))
        .collect();
    json!({
        "kind": "round",
        "round": round,
        "text": said,
        "tool_calls": calls,
        "usage": output.usage.map(|u| json!({
            "input_tokens": u.input_tokens,
            "output_tokens": u.output_tokens,
        })),
        "model": output.model,
    })
}

/// The journal step of one tool call's result.
pub fn tool_step(round: u32, call_id: &str, name: &str, content: &Value, is_error: bool) -> Value {
    json!({
        "kind": "tool",
        "round": round,
        "call_id": call_id,
        "name": name,
        "content": content,
        "is_error": is_error,
    })
}

/// The conversation rebuilt from a journal.
#[derive(Debug, Default, PartialEq)]
pub struct Resumed {
    /// The assistant and tool-result messages of the journaled rounds, in order, except the
    /// results of [`Resumed::open`] calls (which go last, in the model's order).
    pub messages: Vec<Message>,
    /// Rounds journaled; the next round requested is one more.
    pub rounds: u32,
    /// The answer, when the last journaled round called no tool (and was kept whole).
    pub answer: Option<String>,
    /// The last round's calls, each with its journaled result (`None`: it was in flight).
    pub open: Vec<(ToolCall, Option<Message>)>,
    pub usage: Option<Usage>,
    pub model: Option<String>,
    /// Bytes of text the journaled rounds said (they count against the run's limit).
    pub said_bytes: usize,
    /// The user's answers to calls that waited for approval, by call id.
    pub answers: std::collections::HashMap<String, Answer>,
}

fn call_of(v: &Value) -> Option<ToolCall> {
    Some(ToolCall {
        id: v["id"].as_str()?.to_owned(),
        name: v["name"].as_str()?.to_owned(),
        arguments: v["arguments"].as_str()?.to_owned(),
    })
}

/// Rebuilds the conversation from `journal` (this agent's steps, oldest first). A round cut
/// to the item budget that called no tool is not taken as the answer: it is requested again.
pub fn resume(journal: &[Value]) -> Resumed {
    let mut r = Resumed::default();
    for step in journal.iter().filter(|s| s["kind"] == "approval") {
        if let (Some(id), Some(approved)) = (step["call_id"].as_str(), step["approved"].as_bool()) {
            let reason = step["reason"].as_str().map(str::to_owned);
            r.answers.insert(id.to_owned(), Answer { approved, reason });
        }
    }
    for step in journal {
        match step["kind"].as_str() {
            Some("round") => {
                r.close_round();
                let text = step["text"].as_str().unwrap_or_default().to_owned();
                let calls: Vec<ToolCall> = step["tool_calls"]
                    .as_array()
                    .map(|a| a.iter().filter_map(call_of).collect())
                    .unwrap_or_default();
                if calls.is_empty() && step["truncated"] == true {
                    break;
                }
                r.rounds += 1;
                r.said_bytes += text.len();
                if let Some(u) = step["usage"].as_object() {
                    let total = r.usage.get_or_insert_with(Usage::default);
                    total.input_tokens +=
                        u.get("input_tokens").and_then(Value::as_u64).unwrap_or(0);
                    total.output_tokens +=
                        u.get("output_tokens").and_then(Value::as_u64).unwrap_or(0);
                }
                if r.model.is_none() {
                    r.model = step["model"].as_str().map(str::to_owned);
                }
                if calls.is_empty() {
                    r.answer = Some(text);
                    break;
                }
                r.messages.push(Message::Assistant {
                    text,
                    tool_calls: calls.clone(),
                });
                r.open = calls.into_iter().map(|c| (c, None)).collect();
            }
            Some("tool") => {
                let id = step["call_id"].as_str().unwrap_or_default();
                if let Some(slot) = r.open.iter_mut().find(|(c, _)| c.id == id) {
                    slot.1 = Some(Message::ToolResult {
                        call_id: id.to_owned(),
                        name: step["name"].as_str().unwrap_or_default().to_owned(),
                        content: step["content"].clone(),
                        is_error: step["is_error"] == true,
                    });
                }
            }
            _ => {}
        }
    }
    r
}

impl Resumed {
    /// Moves a round's results into the conversation once a later round shows they were all
    /// given to the model; one missing there was lost, and says so.
    fn close_round(&mut self) {
        for (call, result) in std::mem::take(&mut self.open) {
            self.messages
                .push(result.unwrap_or_else(|| Message::ToolResult {
                    call_id: call.id.clone(),
                    name: call.name.clone(),
                    content: json!({ "error": RESULT_LOST }),
                    is_error: true,
                }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(id: &str) -> ToolCall {
        ToolCall {
            id: id.into(),
            name: "calculator".into(),
            arguments: "{}".into(),
        }
    }

    fn output(calls: Vec<ToolCall>) -> RoundOutput {
        RoundOutput {
            tool_calls: calls,
            usage: Some(Usage {
                input_tokens: 10,
                output_tokens: 2,
            }),
            model: Some("m".into()),
        }
    }

    /// A journal of a tool round with one result of two rebuilds the round, keeps the
    /// journaled result and leaves the other call open (in flight); usage and model add up.
    #[test]
    fn a_round_with_a_call_in_flight_leaves_it_open() {
        let journal = vec![
            round_step(1, "Let me", &output(vec![call("a"), call("b")])),
            tool_step(1, "b", "calculator", &json!({"value": 4}), false),
        ];
        let r = resume(&journal);
        assert_eq!(r.rounds, 1);
        assert_eq!(r.answer, None);
        assert_eq!(r.messages.len(), 1);
        assert_eq!(r.open.len(), 2);
        assert!(r.open[0].1.is_none());
        assert!(
            matches!(&r.open[1].1, Some(Message::ToolResult { call_id, .. }) if call_id == "b")
        );
        assert_eq!(r.usage.map(|u| u.input_tokens), Some(10));
        assert_eq!(r.model.as_deref(), Some("m"));
    }

    /// A journaled answer round ends the replay with its text; earlier rounds' results are in
    /// the model's order.
    #[test]
    fn a_journaled_answer_is_the_answer() {
        let journal = vec![
            round_step(1, "", &output(vec![call("a"), call("b")])),
            tool_step(1, "b", "calculator", &json!(2), false),
            tool_step(1, "a", "calculator", &json!(1), false),
            round_step(2, "It is 3.", &output(vec![])),
        ];
        let r = resume(&journal);
        assert_eq!((r.rounds, r.answer.as_deref()), (2, Some("It is 3.")));
        let ids: Vec<&str> = r
            .messages
            .iter()
            .filter_map(|m| match m {
                Message::ToolResult { call_id, .. } => Some(call_id.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(ids, vec!["a", "b"]);
        assert_eq!(r.usage.map(|u| u.output_tokens), Some(4));
    }

    /// An answer cut to the item budget is requested again, not taken as the answer.
    #[test]
    fn a_cut_answer_is_redone() {
        let mut step = round_step(1, "long", &output(vec![]));
        step["truncated"] = json!(true);
        let r = resume(&[step]);
        assert_eq!((r.rounds, r.answer), (0, None));
    }

    /// The user's answers travel as approval steps (added by the driver from the run's item):
    /// read wherever they are, by call id, and the round they answer stays open for them.
    #[test]
    fn approval_answers_are_read_by_call_id() {
        let journal = vec![
            round_step(1, "", &output(vec![call("a"), call("b")])),
            tool_step(1, "b", "calculator", &json!(2), false),
            approval_step("a", false, Some("too risky")),
        ];
        let r = resume(&journal);
        assert_eq!(r.rounds, 1);
        assert_eq!(
            r.answers.get("a"),
            Some(&Answer {
                approved: false,
                reason: Some("too risky".into())
            })
        );
        assert!(r.open[0].1.is_none() && r.open[1].1.is_some());
        assert_eq!(declined(Some("  ")), "the user declined this call");
        assert!(declined(Some("too risky")).ends_with("too risky"));
    }
}

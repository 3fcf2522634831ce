//! The Chat Completions request body for one round.

use crate::llm::chat::{ChatRequest, Message};
use serde_json::{Map, Value, json};

/// The JSON body: streamed, with usage in the final chunk, tools when offered.
pub fn body(req: &ChatRequest<'_>) -> Value {
    let mut messages = Vec::with_capacity(req.messages.len() + 1);
    if let Some(system) = req.system {
        messages.push(json!({"role": "system", "content": system}));
    }
    for m in req.messages {
        messages.push(message(m));
    }
    let mut body = Map::new();
    body.insert("model".into(), req.model.into());
    body.insert("messages".into(), Value::Array(messages));
    body.insert("stream".into(), true.into());
    body.insert("stream_options".into(), json!({"include_usage": true}));
    // `max_tokens` rather than `max_completion_tokens`: every compatible server knows it.
    body.insert("max_tokens".into(), req.max_tokens.into());
    if let Some(t) = req.temperature {
        body.insert("temperature".into(), json!(t));
    }
    if !req.tools.is_empty() {
        let tools: Vec<Value> = req
            .tools
            .iter()
            .map(|t| {
                json!({"type": "function", "function": {
                    "name": t.name, "description": t.description, "parameters": t.parameters,
                }})
            })
            .collect();
        body.insert("tools".into(), Value::Array(tools));
        let choice = if req.tools_disabled { "none" } else { "auto" };
        body.insert("tool_choice".into(), choice.into());
    }
    Value::Object(body)
}

fn message(m: &Message) -> Value {
    match m {
        Message::User(text) => json!({"role": "user", "content": text}),
        Message::Assistant { text, tool_calls } if tool_calls.is_empty() => {
            json!({"role": "assistant", "content": text})
        }
        Message::Assistant { text, tool_calls } => {
            let calls: Vec<Value> = tool_calls
                .iter()
                .map(|c| {
                    json!({"id": c.id, "type": "function",
                           "function": {"name": c.name, "arguments": c.arguments}})
                })
                .collect();
            let content = if text.is_empty() {
                Value::Null
            } else {
                text.as_str().into()
            };
            json!({"role": "assistant", "content": content, "tool_calls": calls})
        }
        Message::ToolResult {
            call_id, content, ..
        } => {
            let content = match content {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            json!({"role": "tool", "tool_call_id": call_id, "content": content})
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::chat::{ToolCall, ToolSpec};

    /// A full round carries system, history, tool calls and results in the API's shapes.
    #[test]
    fn body_shape() {
        let messages = vec![
            Message::User("hi".into()),
            Message::Assistant {
                text: "hello".into(),
                tool_calls: vec![],
            },
            Message::User("2+2?".into()),
            Message::Assistant {
                text: String::new(),
                tool_calls: vec![ToolCall {
                    id: "c1".into(),
                    name: "calculator".into(),
                    arguments: "{\"expression\":\"2+2\"}".into(),
                }],
            },
            Message::ToolResult {
                call_id: "c1".into(),
                name: "calculator".into(),
                content: json!({"result": 4.0}),
                is_error: false,
            },
        ];
        let tools = [ToolSpec {
            name: "calculator".into(),
            description: "d".into(),
            parameters: json!({"type": "object"}),
        }];
        let req = ChatRequest {
            model: "m",
            system: Some("be brief"),
            messages: &messages,
            tools: &tools,
            tools_disabled: true,
            max_tokens: 7,
            temperature: Some(0.5),
        };
        let b = body(&req);
        assert_eq!(b["stream"], true);
        assert_eq!(b["stream_options"]["include_usage"], true);
        assert_eq!(b["max_tokens"], 7);
        assert_eq!(b["temperature"], 0.5);
        assert_eq!(b["tool_choice"], "none");
        assert_eq!(b["tools"][0]["function"]["name"], "calculator");
        let m = b["messages"].as_array().unwrap();
        assert_eq!(m.len(), 6);
        assert_eq!(m[0], json!({"role": "system", "content": "be brief"}));
        assert_eq!(m[2], json!({"role": "assistant", "content": "hello"}));
        assert_eq!(m[4]["content"], Value::Null);
        assert_eq!(
            m[4]["tool_calls"][0]["function"]["arguments"],
            "{\"expression\":\"2+2\"}"
        );
        assert_eq!(
            m[5],
            json!({"role": "tool", "tool_call_id": "c1", "content": "{\"result\":4.0}"})
        );
    }

    /// Without tools the body has no `tools` or `tool_choice`, and no temperature unless set.
    #[test]
    fn minimal_body() {
        let messages = vec![Message::User("hi".into())];
        let req = ChatRequest {
            model: "m",
            system: None,
            messages: &messages,
            tools: &[],
            tools_disabled: false,
            max_tokens: 1,
            temperature: None,
        };
        let b = body(&req);
        for absent in ["tools", "tool_choice", "temperature"] {
            assert!(b.get(absent).is_none(), "{absent}");
        }
        assert_eq!(b["messages"].as_array().unwrap().len(), 1);
    }
}

//! Converts the provider-neutral conversation into Bedrock Converse types, and JSON values to
//! and from Smithy documents.

use crate::llm::chat::{ChatRequest, Message};
use crate::llm::error::{LlmErrorKind, ProviderError};
use aws_sdk_bedrockruntime::types::{
    self as bt, ContentBlock, ConversationRole, InferenceConfiguration, SystemContentBlock,
    ToolConfiguration, ToolInputSchema, ToolResultBlock, ToolResultContentBlock, ToolResultStatus,
    ToolSpecification, ToolUseBlock,
};
use aws_smithy_types::{Document, Number};
use serde_json::Value;

/// What Bedrock rejects as an empty text block is sent as this (an earlier empty answer).
const EMPTY_TEXT: &str = "(no answer)";

fn build_error(_: aws_smithy_types::error::operation::BuildError) -> ProviderError {
    ProviderError::new(LlmErrorKind::Invalid, "request could not be built")
}

/// A JSON value as a Smithy document.
pub fn to_document(v: &Value) -> Document {
    match v {
        Value::Null => Document::Null,
        Value::Bool(b) => Document::Bool(*b),
        Value::Number(n) => Document::Number(if let Some(u) = n.as_u64() {
            Number::PosInt(u)
        } else if let Some(i) = n.as_i64() {
            Number::NegInt(i)
        } else {
            Number::Float(n.as_f64().unwrap_or(0.0))
        }),
        Value::String(s) => Document::String(s.clone()),
        Value::Array(a) => Document::Array(a.iter().map(to_document).collect()),
        Value::Object(o) => {
            Document::Object(o.iter().map(|(k, v)| (k.clone(), to_document(v))).collect())
        }
    }
}

/// A Smithy document as a JSON value (non-finite floats become `null`).
pub fn to_json(d: &Document) -> Value {
    match d {
        Document::Null => Value::Null,
        Document::Bool(b) => Value::Bool(*b),
        Document::Number(Number::PosInt(u)) => (*u).into(),
        Document::Number(Number::NegInt(i)) => (*i).into(),
        Document::Number(Number::Float(f)) => {
            serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number)
        }
        Document::String(s) => Value::String(s.clone()),
        Document::Array(a) => Value::Array(a.iter().map(to_json).collect()),
        Document::Object(o) => {
            Value::Object(o.iter().map(|(k, v)| (k.clone(), to_json(v))).collect())
        }
    }
}

fn text_block(text: &str) -> ContentBlock {
    if text.trim().is_empty() {
        ContentBlock::Text(EMPTY_TEXT.to_owned())
    } else {
        ContentBlock::Text(text.to_owned())
    }
}

/// The conversation as Converse messages: tool results of one turn share one user message.
pub fn messages(request: &ChatRequest<'_>) -> Result<Vec<bt::Message>, ProviderError> {
    let mut out: Vec<bt::Message> = Vec::new();
    let mut results: Vec<ContentBlock> = Vec::new();
    let flush = |results: &mut Vec<ContentBlock>,
                 out: &mut Vec<bt::Message>|
     -> Result<(), ProviderError> {
        if !results.is_empty() {
            out.push(
                bt::Message::builder()
                    .role(ConversationRole::User)
                    .set_content(Some(std::mem::take(results)))
                    .build()
                    .map_err(build_error)?,
            );
        }
        Ok(())
    };
    for m in request.messages {
        match m {
            Message::ToolResult {
                call_id,
                content,
                is_error,
                ..
            } => {
                let text = match content {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let mut block = ToolResultBlock::builder()
                    .tool_use_id(call_id)
                    .content(ToolResultContentBlock::Text(text));
                if *is_error {
                    block = block.status(ToolResultStatus::Error);
                }
                results.push(ContentBlock::ToolResult(
                    block.build().map_err(build_error)?,
                ));
                continue;
            }
            Message::User(text) => {
                flush(&mut results, &mut out)?;
                out.push(
                    bt::Message::builder()
                        .role(ConversationRole::User)
                        .content(text_block(text))
                        .build()
                        .map_err(build_error)?,
                );
            }
            Message::Assistant { text, tool_calls } => {
                flush(&mut results, &mut out)?;
                let mut content = Vec::new();
                if !text.trim().is_empty() || tool_calls.is_empty() {
                    content.push(text_block(text));
                }
                for call in tool_calls {
                    // Arguments that were not JSON were answered with an error; the history
                    // still needs a document.
                    let input = serde_json::from_str::<Value>(&call.arguments)
                        .ok()
                        .filter(Value::is_object)
                        .unwrap_or_else(|| Value::Object(Default::default()));
                    content.push(ContentBlock::ToolUse(
                        ToolUseBlock::builder()
                            .tool_use_id(&call.id)
                            .name(&call.name)
                            .input(to_document(&input))
                            .build()
                            .map_err(build_error)?,
                    ));
                }
                out.push(
                    bt::Message::builder()
                        .role(ConversationRole::Assistant)
                        .set_content(Some(content))
                        .build()
                        .map_err(build_error)?,
                );
            }
        }
    }
    flush(&mut results, &mut out)?;
    Ok(out)
}

/// The system prompt blocks.
pub fn system(request: &ChatRequest<'_>) -> Option<Vec<SystemContentBlock>> {
    request
        .system
        .map(|s| vec![SystemContentBlock::Text(s.to_owned())])
}

/// Max tokens and temperature.
pub fn inference(request: &ChatRequest<'_>) -> InferenceConfiguration {
    InferenceConfiguration::builder()
        .max_tokens(i32::try_from(request.max_tokens).unwrap_or(i32::MAX))
        .set_temperature(request.temperature)
        .build()
}

/// The tools offered (Converse has no "none" choice: after the round cap they stay offered and
/// a model that still calls one fails the run).
pub fn tool_config(request: &ChatRequest<'_>) -> Result<Option<ToolConfiguration>, ProviderError> {
    if request.tools.is_empty() {
        return Ok(None);
    }
    let mut tools = Vec::with_capacity(request.tools.len());
    for t in request.tools {
        tools.push(bt::Tool::ToolSpec(
            ToolSpecification::builder()
                .name(&t.name)
                .description(&t.description)
                .input_schema(ToolInputSchema::Json(to_document(&t.parameters)))
                .build()
                .map_err(build_error)?,
        ));
    }
    ToolConfiguration::builder()
        .set_tools(Some(tools))
        .build()
        .map(Some)
        .map_err(build_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::chat::ToolCall;
    use serde_json::json;

    /// JSON survives the trip through a document, numbers keeping their kind.
    #[test]
    fn documents_round_trip() {
        let v = json!({"a": [1, -2, 2.5, "s", true, null], "b": {"c": {}}});
        assert_eq!(to_json(&to_document(&v)), v);
    }

    /// Tool results after an assistant's calls are grouped into one user message, and empty
    /// texts are replaced (Bedrock rejects blank blocks).
    #[test]
    fn messages_group_tool_results() {
        let call = |id: &str| ToolCall {
            id: id.into(),
            name: "calculator".into(),
            arguments: "{broken".into(),
        };
        let result = |id: &str| Message::ToolResult {
            call_id: id.into(),
            name: "calculator".into(),
            content: json!({"error": "x"}),
            is_error: true,
        };
        let msgs = vec![
            Message::User("q".into()),
            Message::Assistant {
                text: String::new(),
                tool_calls: vec![],
            },
            Message::User("q2".into()),
            Message::Assistant {
                text: String::new(),
                tool_calls: vec![call("1"), call("2")],
            },
            result("1"),
            result("2"),
        ];
        let req = ChatRequest {
            model: "m",
            system: None,
            messages: &msgs,
            tools: &[],
            tools_disabled: false,
            max_tokens: 5,
            temperature: None,
        };
        let out = messages(&req).unwrap();
        let roles: Vec<_> = out.iter().map(|m| m.role().clone()).collect();
        use ConversationRole::{Assistant, User};
        assert_eq!(roles, vec![User, Assistant, User, Assistant, User]);
        assert_eq!(out[1].content(), &[ContentBlock::Text(EMPTY_TEXT.into())]);
        assert_eq!(out[3].content().len(), 2);
        assert_eq!(out[4].content().len(), 2);
        let ContentBlock::ToolUse(use_block) = &out[3].content()[0] else {
            panic!()
        };
        assert_eq!(use_block.input(), &Document::Object(Default::default()));
    }
}

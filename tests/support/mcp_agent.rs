//! The `llm` agent with MCP servers on a scripted Chat Completions endpoint: building the
//! agent, scripting tool rounds, and reading what the model was offered and given back.
//! Include with `#[path = "support/mcp_agent.rs"] mod mcp_agent;` next to `sse` and `http`.
#![allow(dead_code)]

use crate::sse::{Reply, Step, call, done, finish};
use serde_json::Value;
use std::collections::HashMap;
use wsexec::llm::LlmAgent;

/// An OpenAI-compatible agent on `url` with the calculator and `MCP_SERVERS`.
pub fn agent(url: &str, mcp_servers: &str) -> LlmAgent {
    let env: HashMap<&str, String> = [
        ("LLM_PROVIDER", "openai".to_owned()),
        ("LLM_MODEL", "test-model".to_owned()),
        ("LLM_BASE_URL", url.to_owned()),
        ("LLM_TOOLS", "calculator".to_owned()),
        ("MCP_SERVERS", mcp_servers.to_owned()),
    ]
    .into_iter()
    .collect();
    LlmAgent::from_lookup(|k| env.get(k).cloned())
        .unwrap()
        .unwrap()
}

/// A round in which the model calls each `(id, name, arguments)`, in that order.
pub fn calls(list: &[(&str, &str, Value)]) -> Reply {
    let mut steps: Vec<Step> = list
        .iter()
        .enumerate()
        .map(|(i, (id, name, args))| {
            Step::Send(call(i as u64, Some(id), Some(name), &args.to_string()))
        })
        .collect();
    steps.push(Step::Send(finish("tool_calls")));
    steps.push(Step::Send(done()));
    Reply::Stream(steps)
}

/// The tool results a request carried back to the model: `(tool_call_id, content)`.
pub fn tool_results(body: &Value) -> Vec<(String, Value)> {
    body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| {
            let content = m["content"].as_str().unwrap();
            (
                m["tool_call_id"].as_str().unwrap().to_owned(),
                serde_json::from_str(content).unwrap_or(Value::String(content.into())),
            )
        })
        .collect()
}

pub fn offered(body: &Value, name: &str) -> Value {
    body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["function"]["name"] == name)
        .unwrap_or_else(|| panic!("{name} not offered: {body}"))["function"]
        .clone()
}

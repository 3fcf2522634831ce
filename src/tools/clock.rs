//! The `current_time` tool: the current UTC time as RFC 3339.

use super::{Tool, ToolError};
use async_trait::async_trait;
use serde_json::{Value, json};

/// The tool's name.
pub const NAME: &str = "current_time";

/// Tells the model what time it is (models do not know).
pub struct CurrentTime;

#[async_trait]
impl Tool for CurrentTime {
    fn name(&self) -> &str {
        NAME
    }

    fn description(&self) -> &str {
        "Returns the current date and time in UTC as an RFC 3339 timestamp."
    }

    fn parameters(&self) -> Value {
        json!({"type": "object", "properties": {}, "additionalProperties": false})
    }

    async fn call(&self, _arguments: Value) -> Result<Value, ToolError> {
        Ok(json!({"utc": crate::time::rfc3339_ms(crate::time::now_ms())}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The answer is an RFC 3339 UTC timestamp of now, whatever arguments the model passed.
    #[tokio::test]
    async fn answers_rfc3339_utc() {
        let before = crate::time::rfc3339_ms(crate::time::now_ms());
        let v = CurrentTime.call(json!({"ignored": 1})).await.unwrap();
        let utc = v["utc"].as_str().unwrap();
        assert_eq!(utc.len(), "2026-11-28T13:40:00.123Z".len());
        assert!(utc.ends_with('Z') && utc.as_bytes()[10] == b'T');
        assert!(utc >= before.as_str());
    }
}

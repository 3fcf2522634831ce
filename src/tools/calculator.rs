//! The `calculator` tool: evaluates an arithmetic expression with the `fasteval` parser (f64
//! numbers, operators, parentheses and math functions; no variables, no code).

use super::{Tool, ToolError};
use async_trait::async_trait;
use serde_json::{Value, json};

/// The tool's name.
pub const NAME: &str = "calculator";

/// The longest expression accepted: a model's arithmetic fits in a line, and the parser's work
/// (and any surprise in it) stays small.
pub const MAX_EXPRESSION_CHARS: usize = 512;

/// Evaluates arithmetic for the model (small models are bad at it).
pub struct Calculator;

/// Evaluates `expression`, or says why it cannot.
pub fn evaluate(expression: &str) -> Result<f64, ToolError> {
    let expression = expression.trim();
    if expression.is_empty() {
        return Err(ToolError::InvalidArguments(
            "the expression is empty".into(),
        ));
    }
    if expression.chars().count() > MAX_EXPRESSION_CHARS {
        return Err(ToolError::InvalidArguments(format!(
            "the expression is longer than {MAX_EXPRESSION_CHARS} characters"
        )));
    }
    // `print(...)` is fasteval's one side effect (it writes to stderr, which is the log).
    if expression.contains("print") {
        return Err(ToolError::Failed(
            "cannot evaluate: print is not arithmetic".into(),
        ));
    }
    let value = fasteval::ez_eval(expression, &mut functions)
        .map_err(|e| ToolError::Failed(format!("cannot evaluate: {e:?}")))?;
    if !value.is_finite() {
        return Err(ToolError::Failed(
            "the result is not a finite number".into(),
        ));
    }
    Ok(value)
}

/// The functions fasteval leaves out (it has `log`, `sin`, `abs`, `min`, `pi()`, … itself).
/// There are no variables: any other name is an error.
fn functions(name: &str, args: Vec<f64>) -> Option<f64> {
    let unary = |f: fn(f64) -> f64| match args.as_slice() {
        [x] => Some(f(*x)),
        _ => None,
    };
    match name {
        "sqrt" => unary(f64::sqrt),
        "cbrt" => unary(f64::cbrt),
        "ln" => unary(f64::ln),
        "exp" => unary(f64::exp),
        _ => None,
    }
}

#[async_trait]
impl Tool for Calculator {
    fn name(&self) -> &str {
        NAME
    }

    fn description(&self) -> &str {
        "Evaluates an arithmetic expression such as \"(2 + 3) * 4 / 7\" or \"sqrt(2)^3\" and returns the number."
    }

    fn parameters(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "expression": {
                    "type": "string",
                    "description": "The arithmetic expression: numbers, + - * / ^, parentheses, and functions like sqrt, sin, ln."
                }
            },
            "required": ["expression"],
            "additionalProperties": false
        })
    }

    async fn call(&self, arguments: Value) -> Result<Value, ToolError> {
        let expression = arguments
            .get("expression")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                ToolError::InvalidArguments("expected {\"expression\": \"...\"}".into())
            })?;
        let value = evaluate(expression)?;
        Ok(json!({"expression": expression, "result": value}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Arithmetic evaluates with the usual precedence; variables, garbage and overflow fail.
    #[test]
    fn evaluates_arithmetic_only() {
        assert_eq!(evaluate("(2 + 3) * 4").unwrap(), 20.0);
        assert_eq!(evaluate("2 + 3 * 4").unwrap(), 14.0);
        assert_eq!(evaluate("2^10").unwrap(), 1024.0);
        assert!((evaluate("sqrt(2)^2").unwrap() - 2.0).abs() < 1e-12);
        assert!(matches!(evaluate("x + 1"), Err(ToolError::Failed(_))));
        assert!(matches!(evaluate("rm -rf /"), Err(ToolError::Failed(_))));
        assert!(matches!(evaluate("1/0"), Err(ToolError::Failed(_))));
        assert_eq!(evaluate("7/2").unwrap(), 3.5);
        assert!((evaluate("ln(exp(3))").unwrap() - 3.0).abs() < 1e-12);
        assert!(matches!(evaluate("sqrt(1, 2)"), Err(ToolError::Failed(_))));
        assert!(matches!(evaluate("print(1)"), Err(ToolError::Failed(_))));
        assert!(matches!(
            evaluate(&("(".repeat(100) + "1" + &")".repeat(100))),
            Err(ToolError::Failed(_))
        ));
        assert!(matches!(
            evaluate("   "),
            Err(ToolError::InvalidArguments(_))
        ));
        let long = "1+".repeat(MAX_EXPRESSION_CHARS) + "1";
        assert!(matches!(
            evaluate(&long),
            Err(ToolError::InvalidArguments(_))
        ));
    }

    /// The tool reads `expression` and answers with the number; other shapes are argument errors.
    #[tokio::test]
    async fn call_shape() {
        let v = Calculator.call(json!({"expression": "6*7"})).await.unwrap();
        assert_eq!(v, json!({"expression": "6*7", "result": 42.0}));
        assert!(matches!(
            Calculator.call(json!({"expr": "1"})).await,
            Err(ToolError::InvalidArguments(_))
        ));
    }

    proptest! {
        /// Whatever a model writes from an arithmetic alphabet, evaluation returns instead of
        /// panicking (a panic aborts the Lambda process).
        #[test]
        fn never_panics(s in "[0-9a-z+*/^()., %<>=!&|\"\\-]{0,64}") {
            let _ = evaluate(&s);
        }
    }
}

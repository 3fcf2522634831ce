//! The validated per-user execution context, with the original platform's id rules.

use crate::limits::{MAX_ID_LEN, PLACEHOLDER_PREFIX_MAX_LEN};
use serde::Serialize;
use serde_json::{Map, Value};

/// Exact values that are placeholders, never real ids (compared case-insensitively).
pub const PLACEHOLDER_VALUES: [&str; 19] = [
    "registry",
    "placeholder",
    "default",
    "temp",
    "none",
    "null",
    "undefined",
    "0",
    "1",
    "xxx",
    "yyy",
    "example",
    "test",
    "demo",
    "sample",
    "template",
    "mock",
    "fake",
    "dummy",
];

/// Prefixes that mark a short value (< 20 chars) as a placeholder.
pub const PLACEHOLDER_PREFIXES: [&str; 10] = [
    "placeholder_",
    "registry_",
    "temp_",
    "example_",
    "demo_",
    "sample_",
    "template_",
    "mock_",
    "fake_",
    "default_",
];

/// Service identities that look like `default_` placeholders but are real.
pub const SERVICE_IDENTITIES: [&str; 7] = [
    "default_user",
    "default_admin",
    "default_system",
    "default_account",
    "default_service",
    "default_client",
    "default_guest",
];

/// Metadata keys that belong to the context itself and may not be overridden.
pub const RESERVED_METADATA_KEYS: [&str; 6] = [
    "user_id",
    "thread_id",
    "run_id",
    "request_id",
    "created_at",
    "connection_id",
];

/// Where validation runs: `test_` ids are accepted only in local and test mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Production,
    Local,
    Test,
}

/// Why an id or context was rejected; each is a distinct, typed failure.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ContextError {
    #[error("{field} is required")]
    Empty { field: &'static str },
    #[error("{field} is longer than {MAX_ID_LEN} characters")]
    TooLong { field: &'static str },
    #[error("{field} may only contain letters, digits and . _ : @ -")]
    InvalidCharacters { field: &'static str },
    #[error("{field} is a placeholder value")]
    Placeholder { field: &'static str },
    #[error("{field} has a placeholder prefix")]
    PlaceholderPrefix { field: &'static str },
    #[error("{field} uses the test_ prefix outside local or test mode")]
    TestPrefix { field: &'static str },
    #[error("metadata may not override the reserved key {key}")]
    ReservedMetadataKey { key: String },
}

impl ContextError {
    /// The field the error is about (`metadata` for reserved keys).
    pub fn field(&self) -> &'static str {
        match self {
            ContextError::Empty { field }
            | ContextError::TooLong { field }
            | ContextError::InvalidCharacters { field }
            | ContextError::Placeholder { field }
            | ContextError::PlaceholderPrefix { field }
            | ContextError::TestPrefix { field } => field,
            ContextError::ReservedMetadataKey { .. } => "metadata",
        }
    }

    /// Whether the value was a placeholder identity (a 403 on `$connect`), not merely malformed.
    pub fn is_placeholder(&self) -> bool {
        matches!(
            self,
            ContextError::Placeholder { .. }
                | ContextError::PlaceholderPrefix { .. }
                | ContextError::TestPrefix { .. }
        )
    }
}

fn id_char_ok(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '@' | '-')
}

/// The one id rule, for every id wherever it arrives: `[A-Za-z0-9._:@-]{1,128}`, then the
/// placeholder rules. Nothing is trimmed: an id with surrounding whitespace is refused, never
/// silently merged with the id without it. Returns the id itself.
pub fn validate_id<'a>(
    field: &'static str,
    value: &'a str,
    mode: Mode,
) -> Result<&'a str, ContextError> {
    let v = value;
    if v.trim().is_empty() {
        return Err(ContextError::Empty { field });
    }
    // Byte length bounds char count too: the charset is ASCII-only.
    if v.len() > MAX_ID_LEN {
        return Err(ContextError::TooLong { field });
    }
    if !v.chars().all(id_char_ok) {
        return Err(ContextError::InvalidCharacters { field });
    }
    let lower = v.to_ascii_lowercase();
    if PLACEHOLDER_VALUES.contains(&lower.as_str()) {
        return Err(ContextError::Placeholder { field });
    }
    if v.len() < PLACEHOLDER_PREFIX_MAX_LEN {
        if SERVICE_IDENTITIES.contains(&lower.as_str()) {
            return Ok(v);
        }
        if PLACEHOLDER_PREFIXES.iter().any(|p| lower.starts_with(p)) {
            return Err(ContextError::PlaceholderPrefix { field });
        }
        if lower.starts_with("test_") && mode == Mode::Production {
            return Err(ContextError::TestPrefix { field });
        }
    }
    Ok(v)
}

/// Validates an id that API Gateway issued (`connectionId`): base64-like, so `=` padding is
/// allowed besides the usual charset; no placeholder rules (AWS never sends placeholders).
pub fn validate_aws_id<'a>(field: &'static str, value: &'a str) -> Result<&'a str, ContextError> {
    let v = value;
    if v.is_empty() {
        return Err(ContextError::Empty { field });
    }
    if v.len() > MAX_ID_LEN {
        return Err(ContextError::TooLong { field });
    }
    if !v.chars().all(|c| id_char_ok(c) || c == '=') {
        return Err(ContextError::InvalidCharacters { field });
    }
    Ok(v)
}

/// An API Gateway `messageId` as a request id within the strict charset: padding dropped,
/// base64's `+` and `/` mapped to their URL-safe forms `-` and `_`.
pub fn request_id_from_message_id(message_id: &str) -> String {
    message_id
        .trim_end_matches('=')
        .replace('+', "-")
        .replace('/', "_")
}

/// Who runs what, where: the validated identity of one run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UserExecutionContext {
    pub user_id: String,
    pub thread_id: String,
    pub run_id: String,
    pub request_id: String,
    pub connection_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub metadata: Map<String, Value>,
}

/// The raw, unvalidated parts of a context.
#[derive(Clone, Debug, Default)]
pub struct ContextParts<'a> {
    pub user_id: &'a str,
    pub thread_id: &'a str,
    pub run_id: &'a str,
    pub request_id: &'a str,
    pub connection_id: &'a str,
    pub tenant_id: Option<&'a str>,
    pub metadata: Option<&'a Map<String, Value>>,
}

impl UserExecutionContext {
    /// Validates every part; the first failure is returned.
    pub fn new(parts: ContextParts<'_>, mode: Mode) -> Result<Self, ContextError> {
        let tenant_id = match parts.tenant_id {
            Some(t) => Some(validate_id("tenant_id", t, mode)?.to_owned()),
            None => None,
        };
        let metadata = match parts.metadata {
            Some(m) => {
                if let Some(key) = m
                    .keys()
                    .find(|k| RESERVED_METADATA_KEYS.contains(&k.to_ascii_lowercase().as_str()))
                {
                    return Err(ContextError::ReservedMetadataKey { key: key.clone() });
                }
                m.clone()
            }
            None => Map::new(),
        };
        Ok(UserExecutionContext {
            user_id: validate_id("user_id", parts.user_id, mode)?.to_owned(),
            thread_id: validate_id("thread_id", parts.thread_id, mode)?.to_owned(),
            run_id: validate_id("run_id", parts.run_id, mode)?.to_owned(),
            request_id: validate_id("request_id", parts.request_id, mode)?.to_owned(),
            connection_id: validate_aws_id("connection_id", parts.connection_id)?.to_owned(),
            tenant_id,
            metadata,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts<'a>(user: &'a str) -> ContextParts<'a> {
        ContextParts {
            user_id: user,
            thread_id: "thread-1",
            run_id: "run-1",
            request_id: "req-1",
            connection_id: "conn-1",
            ..Default::default()
        }
    }

    /// Every exact placeholder is rejected in any letter case.
    #[test]
    fn placeholder_values_rejected_case_insensitively() {
        for p in PLACEHOLDER_VALUES {
            for v in [p.to_owned(), p.to_uppercase(), format!("  {p} ")] {
                let err = validate_id("user_id", &v, Mode::Test);
                assert!(
                    matches!(
                        err,
                        Err(ContextError::Placeholder { .. })
                            | Err(ContextError::InvalidCharacters { .. })
                    ),
                    "{v:?}: {err:?}"
                );
            }
        }
    }

    /// Short values with a placeholder prefix are rejected; long ones and service ids are not.
    #[test]
    fn placeholder_prefixes_apply_below_twenty_chars_except_service_identities() {
        assert_eq!(
            validate_id("user_id", "Mock_alice", Mode::Test),
            Err(ContextError::PlaceholderPrefix { field: "user_id" })
        );
        assert!(validate_id("user_id", "mock_abcdefghijklmnopq", Mode::Production).is_ok());
        for s in SERVICE_IDENTITIES {
            assert!(validate_id("user_id", &s.to_uppercase(), Mode::Production).is_ok());
        }
        assert!(validate_id("user_id", "default_other", Mode::Production).is_err());
    }

    /// `test_` ids are accepted in local and test mode only.
    #[test]
    fn test_prefix_depends_on_mode() {
        assert_eq!(
            validate_id("user_id", "test_alice", Mode::Production),
            Err(ContextError::TestPrefix { field: "user_id" })
        );
        assert!(validate_id("user_id", "test_alice", Mode::Local).is_ok());
        assert!(validate_id("user_id", "test_alice", Mode::Test).is_ok());
    }

    /// Charset, emptiness and length are enforced on the id as sent: whitespace is refused.
    #[test]
    fn charset_and_length_enforced() {
        assert_eq!(
            validate_id("run_id", "  ", Mode::Test),
            Err(ContextError::Empty { field: "run_id" })
        );
        for bad in [
            "USER#other",
            "a/b",
            "a b",
            "é",
            "a\u{0}b",
            "ａlice",
            " r1 ",
            "th\n",
            "x\t",
        ] {
            assert_eq!(
                validate_id("run_id", bad, Mode::Test),
                Err(ContextError::InvalidCharacters { field: "run_id" }),
                "{bad:?}"
            );
        }
        assert!(validate_id("run_id", &"a".repeat(128), Mode::Test).is_ok());
        assert_eq!(
            validate_id("run_id", &"a".repeat(129), Mode::Test),
            Err(ContextError::TooLong { field: "run_id" })
        );
        assert!(validate_id("run_id", "a.b_c:d@e-f", Mode::Production).is_ok());
    }

    /// Metadata may not override reserved keys, in any letter case.
    #[test]
    fn reserved_metadata_keys_rejected() {
        let mut m = Map::new();
        m.insert("note".into(), Value::from(1));
        let mut p = parts("alice");
        p.metadata = Some(&m);
        assert!(UserExecutionContext::new(p.clone(), Mode::Production).is_ok());
        let mut m = m.clone();
        m.insert("User_Id".into(), Value::from("bob"));
        let mut p = parts("alice");
        p.metadata = Some(&m);
        assert_eq!(
            UserExecutionContext::new(p, Mode::Production),
            Err(ContextError::ReservedMetadataKey {
                key: "User_Id".into()
            })
        );
    }

    /// API Gateway's base64-like ids are accepted as connection ids and normalised as request ids.
    #[test]
    fn aws_issued_ids_are_accepted() {
        assert_eq!(
            validate_aws_id("connection_id", "L0SM9cOFvHcCIhw="),
            Ok("L0SM9cOFvHcCIhw=")
        );
        assert!(validate_aws_id("connection_id", "a/b").is_err());
        assert_eq!(request_id_from_message_id("Ab+c/d=="), "Ab-c_d");
        assert!(
            validate_id(
                "request_id",
                &request_id_from_message_id("L0SM9cOFvHcCIhw="),
                Mode::Production
            )
            .is_ok()
        );
    }

    /// A valid context keeps its ids as given, refuses padded ones; a bad part names its field.
    #[test]
    fn context_validates_every_part() {
        let ctx = UserExecutionContext::new(parts("alice"), Mode::Production).unwrap();
        assert_eq!(ctx.user_id, "alice");
        let padded = UserExecutionContext::new(parts(" alice "), Mode::Production);
        assert_eq!(
            padded,
            Err(ContextError::InvalidCharacters { field: "user_id" })
        );
        let mut p = parts("alice");
        p.thread_id = "null";
        let err = UserExecutionContext::new(p, Mode::Production).unwrap_err();
        assert_eq!(err.field(), "thread_id");
        assert!(err.is_placeholder());
    }
}

//! Fuzzes execution-context validation: every id is accepted within the rules or refused typed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};
use wsexec::context::{
    ContextParts, Mode, PLACEHOLDER_PREFIXES, PLACEHOLDER_VALUES, SERVICE_IDENTITIES,
    UserExecutionContext, request_id_from_message_id, validate_aws_id, validate_id,
};
use wsexec::limits::{MAX_ID_LEN, PLACEHOLDER_PREFIX_MAX_LEN};

const MODES: [Mode; 3] = [Mode::Production, Mode::Local, Mode::Test];

fn id_char_ok(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '@' | '-')
}

/// An accepted id is exactly the input, within the charset and length, and no placeholder.
fn check_id(value: &str, mode: Mode) {
    if let Ok(v) = validate_id("user_id", value, mode) {
        assert_eq!(v, value);
        assert!(!v.is_empty() && v.len() <= MAX_ID_LEN);
        assert!(v.chars().all(id_char_ok), "{v:?}");
        assert!(!PLACEHOLDER_VALUES.contains(&v.to_ascii_lowercase().as_str()));
        let lower = v.to_ascii_lowercase();
        if v.len() < PLACEHOLDER_PREFIX_MAX_LEN && !SERVICE_IDENTITIES.contains(&lower.as_str()) {
            assert!(
                !PLACEHOLDER_PREFIXES.iter().any(|p| lower.starts_with(p)),
                "{v:?}"
            );
            assert!(
                mode != Mode::Production || !lower.starts_with("test_"),
                "{v:?}"
            );
        }
    }
    if let Ok(v) = validate_aws_id("connection_id", value) {
        assert!(!v.is_empty() && v.len() <= MAX_ID_LEN);
        assert!(v.chars().all(|c| id_char_ok(c) || c == '='));
    }
    let rid = request_id_from_message_id(value);
    if validate_aws_id("m", value).is_ok() && !value.trim_end_matches('=').contains('=') {
        // A valid API Gateway id (base64: `=` only as trailing padding) always maps into the
        // strict charset.
        assert!(rid.chars().all(id_char_ok), "{rid:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\u{1f}');
    let mut next = || parts.next().unwrap_or("");
    let (user, thread, run, request, conn, tenant) =
        (next(), next(), next(), next(), next(), next());
    let metadata: Option<Map<String, Value>> = serde_json::from_str(next()).ok();
    for mode in MODES {
        for v in [user, thread, run, request, conn, tenant] {
            check_id(v, mode);
        }
        let ctx = UserExecutionContext::new(
            ContextParts {
                user_id: user,
                thread_id: thread,
                run_id: run,
                request_id: request,
                connection_id: conn,
                tenant_id: (!tenant.is_empty()).then_some(tenant),
                metadata: metadata.as_ref(),
            },
            mode,
        );
        match ctx {
            Ok(c) => {
                for id in [&c.user_id, &c.thread_id, &c.run_id, &c.request_id] {
                    assert!(validate_id("x", id, mode).is_ok());
                }
                assert!(!c.metadata.keys().any(|k| k.eq_ignore_ascii_case("user_id")));
            }
            Err(e) => {
                // Every refusal names its field and renders a message.
                assert!(!e.field().is_empty() && !e.to_string().is_empty());
            }
        }
    }
});

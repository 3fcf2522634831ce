//! The fuzz targets' properties as proptest properties, so that CI checks them on every change.

mod support;

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use serde_json::{Map, Value, json};
use std::sync::LazyLock;
use support::jwt::{hs256_raw, token};
use support::*;
use wsexec::auth::{JwtVerifier, extract_token};
use wsexec::context::{
    ContextParts, Mode, PLACEHOLDER_VALUES, UserExecutionContext, validate_aws_id, validate_id,
};
use wsexec::event::{EventError, Incoming, decode};
use wsexec::limits::{MAX_ID_LEN, MAX_MESSAGE_BYTES};
use wsexec::protocol::inbound::parse_frame;
use wsexec::time::now_ms;

/// Every code an `error` or `agent_error` frame may carry.
const CODES: [&str; 31] = [
    "invalid_json",
    "invalid_frame",
    "unknown_type",
    "missing_field",
    "invalid_field",
    "field_too_large",
    "message_too_large",
    "invalid_id",
    "not_found",
    "run_finished",
    "unknown_agent",
    "unauthorized",
    "agent_failed",
    "run_timeout",
    "internal",
    "conflict",
    "transaction_cancelled",
    "contention",
    "throttled",
    "storage_connection",
    "storage_timeout",
    "storage_unavailable",
    "storage_permission",
    "storage_schema",
    "storage_invalid",
    "run_dead",
    "llm_permission",
    "llm_throttled",
    "llm_unavailable",
    "llm_invalid",
    "llm_protocol",
];

/// Every `type` a direct reply may have.
const REPLY_TYPES: [&str; 6] = [
    "pong",
    "heartbeat_ack",
    "execution",
    "executions",
    "agent_cancelled",
    "error",
];

const TYPES: [&str; 10] = [
    "ping",
    "heartbeat",
    "start_agent",
    "user_message",
    "chat",
    "get_execution",
    "list_executions",
    "cancel_agent",
    "dance",
    "",
];

const KEYS: [&str; 9] = [
    "type",
    "run_id",
    "request_id",
    "thread_id",
    "agent",
    "cursor",
    "limit",
    "payload",
    "extra",
];

const PAYLOAD_KEYS: [&str; 6] = [
    "user_request",
    "message",
    "content",
    "text",
    "metadata",
    "delay_ms",
];

/// Strings a client might send: ids, hostile ids, the seeded run's id, anything.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(TYPES.to_vec()).prop_map(str::to_owned),
        "[a-zA-Z0-9._:@-]{1,20}",
        prop::sample::select(vec![
            "USER#bob-02",
            "#",
            "a/b",
            "\u{ff41}lice",
            "null",
            "test",
            "run_x\u{0}",
            " ",
            "0000000000001.run_a",
            "echo",
            "user_id",
        ])
        .prop_map(str::to_owned),
        Just(seeded_run_id()),
        any::<String>(),
    ]
}

/// JSON values of a few levels.
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (0u64..100_000).prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        text().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(text(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Frame-shaped objects: the protocol's keys with plausible and implausible values.
fn frame() -> impl Strategy<Value = Value> {
    let payload =
        prop::collection::btree_map(prop::sample::select(PAYLOAD_KEYS.to_vec()), value(), 0..4)
            .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()));
    (
        prop::sample::select(TYPES.to_vec()),
        prop::collection::btree_map(prop::sample::select(KEYS.to_vec()), value(), 0..5),
        prop::option::of(payload),
        any::<bool>(),
    )
        .prop_map(|(kind, fields, payload, typed)| {
            let mut o: Map<String, Value> =
                fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            if typed {
                o.insert("type".into(), json!(kind));
            }
            if let Some(p) = payload {
                o.insert("payload".into(), p);
            }
            Value::Object(o)
        })
}

/// A frame's text, sometimes cut short or with bytes appended.
fn frame_text() -> impl Strategy<Value = String> {
    (
        frame(),
        0usize..3,
        any::<prop::sample::Index>(),
        any::<String>(),
    )
        .prop_map(|(f, how, at, junk)| {
            let s = f.to_string();
            match how {
                0 => s,
                1 => {
                    let mut cut = at.index(s.len() + 1);
                    while !s.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    s[..cut].to_owned()
                }
                _ => s + &junk,
            }
        })
}

fn seeded_run_id() -> String {
    wsexec::run::derive_run_id("alice-01", "seed")
}

fn check_frame(body: &str) -> Result<(), TestCaseError> {
    match parse_frame(body) {
        Ok(_) => prop_assert!(body.len() <= MAX_MESSAGE_BYTES),
        Err(e) => {
            prop_assert!(CODES.contains(&e.error.code.as_str()), "{}", e.error.code);
            prop_assert!(e.request_id.as_ref().is_none_or(|r| r.len() <= MAX_ID_LEN));
        }
    }
    Ok(())
}

/// `cases` cases, failures saved beside this file (`properties.proptest-regressions`).
fn cases(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(cases(1_000))]

    /// Any string is a frame or a typed error with a known code; parsing never panics.
    #[test]
    fn any_text_parses_or_fails_typed(body in any::<String>()) {
        check_frame(&body)?;
    }

    /// Frame-shaped JSON (whole, cut short, or with junk after it) parses or fails typed.
    #[test]
    fn frame_shaped_json_parses_or_fails_typed(body in frame_text()) {
        check_frame(&body)?;
    }

    /// Any string, and sample events with any field replaced, decode to an event or a typed `EventError`.
    #[test]
    fn events_decode_or_fail_typed(
        raw in any::<String>(),
        file in prop::sample::select(vec![
            "connect-jwt-query.json", "message-start-agent.json", "disconnect.json",
            "scheduled-sweep.json", "connect-authorizer.json",
        ]),
        path in prop::sample::select(vec![
            "body", "requestContext", "isBase64Encoded", "headers", "queryStringParameters",
            "detail-type", "source",
        ]),
        inner in prop::sample::select(vec!["eventType", "connectionId", "messageId", "authorizer", "routeKey"]),
        v in value(),
    ) {
        // Text that is not JSON at all is never taken for an event, nor called a malformed one.
        if serde_json::from_str::<serde::de::IgnoredAny>(&raw).is_err() {
            prop_assert!(matches!(decode(&raw), Err(EventError::Unsupported)));
        }
        let mut e = sample(file);
        if path == "requestContext" && e[path].is_object() {
            e[path][inner] = v;
        } else {
            e[path] = v;
        }
        match decode(&e.to_string()) {
            Ok(Incoming::WebSocket(ev)) => prop_assert!(ev.request_context.connection_id.is_some()),
            Ok(Incoming::Scheduled | Incoming::Worker(_)) | Err(_) => {}
        }
    }

    /// An accepted id is exactly the input, in the charset, within length and no placeholder; a context fails naming a part that breaks the rule.
    #[test]
    fn ids_are_accepted_only_within_the_rules(
        ids in prop::collection::vec(text(), 6),
        mode in prop::sample::select(vec![Mode::Production, Mode::Local, Mode::Test]),
        metadata in prop::option::of(prop::collection::btree_map(text(), value(), 0..3)),
    ) {
        for v in &ids {
            match validate_id("run_id", v, mode) {
                Ok(ok) => {
                    prop_assert_eq!(ok, v.as_str());
                    prop_assert!(!ok.is_empty() && ok.len() <= MAX_ID_LEN);
                    prop_assert!(ok.chars().all(|c| c.is_ascii_alphanumeric() || "._:@-".contains(c)));
                    prop_assert!(!PLACEHOLDER_VALUES.contains(&ok.to_ascii_lowercase().as_str()));
                }
                Err(e) => prop_assert_eq!(e.field(), "run_id"),
            }
            let _ = validate_aws_id("connection_id", v);
        }
        let metadata: Option<Map<String, Value>> = metadata.map(|m| m.into_iter().collect());
        let parts = ContextParts {
            user_id: &ids[0],
            thread_id: &ids[1],
            run_id: &ids[2],
            request_id: &ids[3],
            connection_id: &ids[4],
            tenant_id: Some(&ids[5]),
            metadata: metadata.as_ref(),
        };
        let named = [("user_id", 0), ("thread_id", 1), ("run_id", 2), ("request_id", 3), ("tenant_id", 5)];
        match UserExecutionContext::new(parts, mode) {
            Ok(ctx) => {
                let got = [&ctx.user_id, &ctx.thread_id, &ctx.run_id, &ctx.request_id, &ctx.connection_id];
                for (i, id) in got.into_iter().enumerate() {
                    prop_assert_eq!(id, &ids[i]);
                }
            }
            Err(e) if e.field() == "metadata" => prop_assert!(metadata.is_some()),
            Err(e) if e.field() == "connection_id" => {
                prop_assert!(validate_aws_id("connection_id", &ids[4]).is_err());
            }
            Err(e) => {
                let (_, i) = named.into_iter().find(|(f, _)| *f == e.field()).unwrap();
                prop_assert!(validate_id("x", &ids[i], mode).is_err(), "{} accepted: {:?}", e.field(), ids[i]);
            }
        }
    }

    /// No arbitrary token, from any query parameter or subprotocol header, ever verifies.
    #[test]
    fn arbitrary_tokens_never_verify(query in prop::option::of(any::<String>()), protocols in prop::option::of(any::<String>()), raw in any::<String>()) {
        let v = verifier();
        prop_assert!(v.verify(&raw).is_err());
        if let Some(found) = extract_token(query.as_deref(), protocols.as_deref()) {
            prop_assert!(!found.token.is_empty());
            prop_assert!(v.verify(found.token).is_err());
        }
    }

    /// Signed tokens verify only with a non-empty `sub`, a current `exp` and the configured `iss`/`aud`; HS256 with the PEM never does.
    #[test]
    fn signed_claims_verify_only_when_valid(
        sub in prop::option::of(prop_oneof![Just(json!("alice-01")), Just(json!("")), value()]),
        exp_offset in prop::option::of(-100_000i64..100_000),
        iss in prop::option::of(prop_oneof![Just(json!("wsexec")), value()]),
        aud in prop::option::of(prop_oneof![Just(json!("chat")), Just(json!(["x", "chat"])), value()]),
    ) {
        let mut claims = Map::new();
        let now = (now_ms() / 1000) as i64;
        for (k, v) in [("sub", sub), ("iss", iss), ("aud", aud), ("exp", exp_offset.map(|o| json!(now + o)))] {
            if let Some(v) = v {
                claims.insert(k.into(), v);
            }
        }
        let claims = Value::Object(claims);
        let t = token(claims.clone(), SAMPLE_SECRET);
        let valid = claims["sub"].as_str().is_some_and(|s| !s.is_empty())
            && claims["exp"].as_i64().is_some_and(|e| e + 5 >= now)
            && claims["iss"] == "wsexec"
            && (claims["aud"] == "chat" || claims["aud"].as_array().is_some_and(|a| a.contains(&json!("chat"))));
        let verified = verifier().verify(&t);
        if claims["exp"].as_i64().is_some_and(|e| (e + 5 - now).abs() <= 1) {
            // At the leeway's edge the clock may tick between the two checks.
        } else {
            prop_assert_eq!(verified.is_ok(), valid, "{}", claims);
        }
        if let Ok(p) = verified {
            prop_assert_eq!(Some(p.user_id.as_str()), claims["sub"].as_str());
        }
        let confused = hs256_raw(r#"{"alg":"HS256"}"#, &claims.to_string(), support::jwt::RSA_PUBLIC.as_bytes());
        prop_assert!(rsa_verifier().verify(&confused).is_err());
    }
}

fn verifier() -> &'static JwtVerifier {
    static V: LazyLock<JwtVerifier> = LazyLock::new(|| {
        JwtVerifier::from_settings(Some(SAMPLE_SECRET), None, Some("wsexec"), Some("chat"))
            .unwrap()
            .unwrap()
    });
    &V
}

fn rsa_verifier() -> &'static JwtVerifier {
    static V: LazyLock<JwtVerifier> = LazyLock::new(|| {
        JwtVerifier::from_settings(None, Some(support::jwt::RSA_PUBLIC), None, None)
            .unwrap()
            .unwrap()
    });
    &V
}

/// Whitespace and control characters that may surround an id a client sends.
fn padding() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec![" ", "\t", "\n", "\r", "\u{0}", "\u{1f}", "\u{a0}"]),
        1..3,
    )
    .prop_map(|v| v.concat())
}

/// One runtime for the handler property, with time paused: an `echo` step delay costs nothing.
static RT: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
});

proptest! {
    #![proptest_config(cases(300))]

    /// Arbitrary frames through the handler: always 200 with no body or a known reply; refused frames change nothing.
    #[test]
    fn arbitrary_frames_through_the_handler(body in frame_text()) {
        RT.block_on(async {
            let h = Harness::memory();
            let conn = h.connect("alice-01").await;
            h.send_json(&conn, json!({"type": "start_agent", "request_id": "seed", "payload": {"user_request": "x"}})).await;
            let pushed_before = h.pushed(&conn).len();
            let store = h.mgr.store().unwrap();
            let before = snapshot(store, &["alice-01"], &[&conn]).await;
            let resp = h.invoke(&message_event(&conn, &body)).await;
            prop_assert_eq!(&resp["statusCode"], 200);
            let reply: Option<Value> = resp.get("body").and_then(Value::as_str).map(|b| serde_json::from_str(b).unwrap());
            match &reply {
                Some(r) => {
                    let kind = r["type"].as_str().unwrap_or("");
                    prop_assert!(REPLY_TYPES.contains(&kind), "{}", r);
                    if kind == "error" {
                        prop_assert!(CODES.contains(&r["payload"]["code"].as_str().unwrap_or("")), "{}", r);
                        prop_assert!(r["payload"]["retryable"].is_boolean());
                    }
                }
                None => {
                    let events = h.pushed(&conn)[pushed_before..].to_vec();
                    let last = events.last().map(|e| e["type"].as_str().unwrap_or("").to_owned());
                    prop_assert!(
                        matches!(last.as_deref(), Some("agent_completed" | "agent_error" | "agent_cancelled")),
                        "{:?}", types(&events)
                    );
                }
            }
            if let Err(e) = parse_frame(&body) {
                let r = reply.unwrap();
                prop_assert_eq!(&r["payload"]["code"], e.error.code.as_str());
                prop_assert_eq!(snapshot(store, &["alice-01"], &[&conn]).await, before);
                prop_assert_eq!(h.pushed(&conn).len(), pushed_before);
            } else if reply.as_ref().is_some_and(|r| r["type"] == "error") {
                // Frames refused after parsing (ids, agent, cursor) change nothing either.
                prop_assert_eq!(snapshot(store, &["alice-01"], &[&conn]).await, before);
            }
            Ok(())
        })?;
    }

    /// Every command that takes an id refuses it with surrounding whitespace or control characters, as `invalid_id` (a cursor as `invalid_field`), and changes nothing.
    #[test]
    fn padded_ids_are_refused_by_every_command(
        pad in padding(),
        at_end in any::<bool>(),
        command in 0usize..7,
    ) {
        RT.block_on(async {
            let h = Harness::memory();
            let conn = h.connect("alice-01").await;
            h.send_json(&conn, json!({"type": "start_agent", "request_id": "seed", "thread_id": "th-1", "payload": {"user_request": "x"}})).await;
            let run_id = seeded_run_id();
            let padded = |id: &str| if at_end { format!("{id}{pad}") } else { format!("{pad}{id}") };
            let (body, code) = match command {
                0 => (json!({"type": "get_execution", "run_id": padded(&run_id)}), "invalid_id"),
                1 => (json!({"type": "cancel_agent", "run_id": padded(&run_id)}), "invalid_id"),
                2 => (json!({"type": "list_executions", "thread_id": padded("th-1")}), "invalid_id"),
                3 => (json!({"type": "start_agent", "request_id": padded("r-2"), "payload": {"user_request": "x"}}), "invalid_id"),
                4 => (json!({"type": "user_message", "request_id": "r-3", "thread_id": padded("th-1"), "payload": {"message": "x"}}), "invalid_id"),
                5 => (json!({"type": "resume", "run_id": padded(&run_id)}), "invalid_id"),
                _ => (json!({"type": "list_executions", "cursor": padded(&format!("0000000000001.{run_id}"))}), "invalid_field"),
            };
            let store = h.mgr.store().unwrap();
            let before = snapshot(store, &["alice-01"], &[&conn]).await;
            let r = h.send_json(&conn, body.clone()).await.unwrap();
            prop_assert_eq!(&r["type"], "error", "{}", body);
            prop_assert_eq!(&r["payload"]["code"], code, "{}", body);
            prop_assert_eq!(snapshot(store, &["alice-01"], &[&conn]).await, before);
            Ok(())
        })?;
    }
}

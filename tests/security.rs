//! The attack catalogue of SECURITY.md, one test per row, each checking the answer, the store
//! snapshot and the captured logs.

mod support;

use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};
use std::sync::Arc;
use support::jwt::{self, EC_PUBLIC, RSA_PUBLIC, b64, es256, hs256_raw, rs256, token};
use support::logs::Logs;
use support::*;
use wsexec::config::Config;
use wsexec::context::Mode;
use wsexec::time::now_ms;

const ALICE: &str = "alice-01";
const BOB: &str = "bob-02";

fn exp() -> u64 {
    now_ms() / 1000 + 600
}

/// A configuration read from `pairs` as the environment, in test mode, without dev auth.
fn config(pairs: &[(&str, &str)]) -> Config {
    let mut c = Config::from_lookup(|k| {
        pairs
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    })
    .unwrap();
    c.mode = Mode::Test;
    c
}

/// The direct reply to `body`; every hostile frame must get one.
async fn reply(h: &Harness, conn: &str, body: &str) -> Value {
    h.send(conn, body)
        .await
        .unwrap_or_else(|| panic!("no reply to {body:.80}"))
}

fn code(frame: &Value) -> &str {
    frame["payload"]["code"].as_str().unwrap_or("")
}

/// `$connect` with a query token; returns the status code.
async fn connect_with_token(h: &Harness, t: &str) -> u64 {
    let r = h
        .invoke(&connect_event(&aws_id(), &[("token", t)], &[]))
        .await;
    r["statusCode"].as_u64().unwrap()
}

/// Alice and Bob connected, Alice with two finished runs on thread `t-alice`.
async fn two_users(h: &Harness) -> (String, String, String) {
    let alice = h.connect(ALICE).await;
    let bob = h.connect(BOB).await;
    for r in ["a-1", "a-2"] {
        h.send_json(
            &alice,
            json!({"type": "start_agent", "request_id": r, "thread_id": "t-alice", "payload": {"user_request": "private"}}),
        )
        .await;
    }
    let run_id = h.pushed(&alice)[0]["run_id"].as_str().unwrap().to_owned();
    (alice, bob, run_id)
}

/// Another user's run id, thread or cursor gets the same reply as an unknown one; their request_id starts the caller's own run.
#[tokio::test]
async fn another_users_run_answers_exactly_like_an_unknown_one() {
    let (logs, _guard) = Logs::capture();
    let h = Harness::memory();
    let (alice, bob, run_id) = two_users(&h).await;
    let store = h.mgr.store().unwrap();
    let before = snapshot(store, &[ALICE], &[&alice]).await;
    let page = reply(&h, &alice, r#"{"type":"list_executions","limit":1}"#).await;
    let alice_cursor = page["payload"]["cursor"].as_str().unwrap().to_owned();
    let pairs = [
        (
            json!({"type": "get_execution", "run_id": run_id, "request_id": "q"}),
            json!({"type": "get_execution", "run_id": "run_0123456789abcdef", "request_id": "q"}),
        ),
        (
            json!({"type": "cancel_agent", "run_id": run_id, "request_id": "q"}),
            json!({"type": "cancel_agent", "run_id": "run_0123456789abcdef", "request_id": "q"}),
        ),
        (
            json!({"type": "resume", "run_id": run_id, "request_id": "q"}),
            json!({"type": "resume", "run_id": "run_0123456789abcdef", "request_id": "q"}),
        ),
        (
            json!({"type": "list_executions", "thread_id": "t-alice", "request_id": "q"}),
            json!({"type": "list_executions", "thread_id": "t-nobody", "request_id": "q"}),
        ),
        (
            json!({"type": "list_executions", "cursor": alice_cursor, "request_id": "q"}),
            json!({"type": "list_executions", "cursor": "9999999999999.run_nobody", "request_id": "q"}),
        ),
    ];
    for (theirs, unknown) in pairs {
        let a = untimed(reply(&h, &bob, &theirs.to_string()).await);
        let b = untimed(reply(&h, &bob, &unknown.to_string()).await);
        assert_eq!(a, b, "{theirs}");
        assert!(!a.to_string().contains("private"), "{a}");
    }
    assert_eq!(snapshot(store, &[ALICE], &[&alice]).await, before);
    // Bob reusing Alice's request_id starts Bob's own run; Alice's runs are untouched.
    h.send_json(
        &bob,
        json!({"type": "start_agent", "request_id": "a-1", "payload": {"user_request": "mine"}}),
    )
    .await;
    let bobs = h.pushed(&bob);
    assert_eq!(types(&bobs), FIVE_EVENTS);
    assert_ne!(bobs[0]["run_id"], run_id.as_str());
    assert_eq!(snapshot(store, &[ALICE], &[&alice]).await, before);
    logs.assert_free_of(&[]);
}

/// Ids that try to address other keys (`USER#…`, `#`, `/`, look-alikes, control characters, 10 KB) are refused everywhere and change nothing.
#[tokio::test]
async fn ids_that_address_other_keys_are_refused_and_change_nothing() {
    let (logs, _guard) = Logs::capture();
    let h = Harness::memory();
    let (alice, bob, _) = two_users(&h).await;
    let store = h.mgr.store().unwrap();
    let huge = "a".repeat(10 * 1024);
    let long = "a".repeat(wsexec::limits::MAX_ID_LEN + 1);
    let hostile: Vec<&str> = vec![
        "USER#bob-02",
        "USER#bob-02#THREAD#t-bob",
        "RUN#run_x",
        "CONN#x",
        "#",
        "/",
        "a/b",
        "../run_x",
        "\u{ff41}lice-01",  // fullwidth a
        "\u{430}lice-01",   // Cyrillic a
        "alice-01\u{200b}", // zero-width space
        "alice\u{0}01",
        "alice\n01",
        "alice 01",
        "*",
        "%2F",
        "run_x'",
        r#"{"S":"x"}"#,
        &long,
        &huge,
    ];
    let too_large = |v: &str| v.len() > wsexec::limits::MAX_ID_FIELD_BYTES;
    let before = snapshot(store, &[ALICE, BOB], &[&alice, &bob]).await;
    let mut refused = 0;
    for v in &hostile {
        let id_code = if too_large(v) {
            "field_too_large"
        } else {
            "invalid_id"
        };
        let frames = [
            (json!({"type": "get_execution", "run_id": v}), id_code),
            (json!({"type": "cancel_agent", "run_id": v}), id_code),
            (json!({"type": "resume", "run_id": v}), id_code),
            (
                json!({"type": "start_agent", "thread_id": v, "payload": {"user_request": "x"}}),
                id_code,
            ),
            (
                json!({"type": "start_agent", "request_id": v, "payload": {"user_request": "x"}}),
                id_code,
            ),
            (json!({"type": "list_executions", "thread_id": v}), id_code),
            (
                json!({"type": "list_executions", "cursor": format!("0000000000001.{v}")}),
                if v.len() + 14 > wsexec::limits::MAX_CURSOR_LEN {
                    "field_too_large"
                } else {
                    "invalid_field"
                },
            ),
        ];
        for (frame, want) in frames {
            let r = reply(&h, &alice, &frame.to_string()).await;
            assert_eq!(
                (r["type"].as_str(), code(&r)),
                (Some("error"), want),
                "{frame:.200}"
            );
            refused += 1;
        }
        // The same values as identities: dev auth, authorizer principal, authorizer tenant.
        let conn = aws_id();
        let dev = h
            .invoke(&connect_event(&conn, &[("user_id", v)], &[]))
            .await;
        assert_eq!(dev["statusCode"], 403, "{v:.80}");
        let auth = h.invoke(&authorizer_connect_event(&conn, v)).await;
        assert_eq!(auth["statusCode"], 403, "{v:.80}");
        let mut tenant = authorizer_connect_event(&conn, ALICE);
        tenant["requestContext"]["authorizer"]["tenant_id"] = json!(v);
        assert_eq!(h.invoke(&tenant).await["statusCode"], 403, "{v:.80}");
        assert_eq!(store.get_connection(&conn).await.unwrap(), None);
        refused += 3;
    }
    assert!(
        h.pushed(&alice).len() == 10,
        "no refused frame started a run"
    );
    assert_eq!(
        snapshot(store, &[ALICE, BOB], &[&alice, &bob]).await,
        before
    );
    assert_eq!(refused, hostile.len() * 10);
    logs.assert_free_of(&[]);
}

/// HS/RS and HS/ES confusion, `alg: none`, foreign keys and forged signatures get 401; the real RSA and EC keys get 200.
#[tokio::test]
async fn algorithm_confusion_and_forged_signatures_get_401() {
    let (logs, _guard) = Logs::capture();
    let claims = json!({"sub": ALICE, "exp": exp(), "iss": "wsexec", "aud": "chat"});
    let claims_text = claims.to_string();
    let header = |alg: &str| format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#);
    let rsa_escaped = RSA_PUBLIC.replace('\n', "\\n");
    let mut used = Vec::new();
    for (name, pem) in [("rsa", RSA_PUBLIC), ("ec", EC_PUBLIC)] {
        let h = Harness::with_config(config(&[
            ("JWT_PUBLIC_KEY", pem),
            ("JWT_ISSUER", "wsexec"),
            ("JWT_AUDIENCE", "chat"),
        ]));
        let store = h.mgr.store().unwrap();
        let good = if name == "rsa" {
            rs256(claims.clone())
        } else {
            es256(claims.clone())
        };
        let other_type = if name == "rsa" {
            es256(claims.clone())
        } else {
            rs256(claims.clone())
        };
        let other_key = if name == "rsa" {
            let k = EncodingKey::from_rsa_pem(include_bytes!("fixtures/jwt-rsa-other-private.pem"));
            jwt::signed(Algorithm::RS256, &claims, &k.unwrap())
        } else {
            let k = EncodingKey::from_ec_pem(include_bytes!("fixtures/jwt-ec-other-private.pem"));
            jwt::signed(Algorithm::ES256, &claims, &k.unwrap())
        };
        let mut parts: Vec<&str> = good.split('.').collect();
        let stripped = format!("{}.{}.", parts[0], parts[1]);
        let altered_claims = b64(
            json!({"sub": BOB, "exp": exp(), "iss": "wsexec", "aud": "chat"})
                .to_string()
                .as_bytes(),
        );
        parts[1] = &altered_claims;
        let altered = parts.join(".");
        let forged = [
            (
                "hs256 signed with the pem",
                hs256_raw(&header("HS256"), &claims_text, pem.as_bytes()),
            ),
            (
                "hs256 signed with the escaped pem",
                hs256_raw(&header("HS256"), &claims_text, rsa_escaped.as_bytes()),
            ),
            (
                "alg none",
                format!(
                    "{}.{}.",
                    b64(header("none").as_bytes()),
                    b64(claims_text.as_bytes())
                ),
            ),
            (
                "alg None",
                format!(
                    "{}.{}.",
                    b64(header("None").as_bytes()),
                    b64(claims_text.as_bytes())
                ),
            ),
            (
                "hs512",
                hs256_raw(&header("HS512"), &claims_text, pem.as_bytes()),
            ),
            ("other key type", other_type),
            ("other key", other_key),
            ("signature stripped", stripped),
            ("claims altered", altered),
            (
                "embedded jwk",
                hs256_raw(
                    r#"{"alg":"HS256","jwk":{"kty":"oct","k":"eA"},"jku":"https://evil.example/k","kid":"../../k"}"#,
                    &claims_text,
                    b"x",
                ),
            ),
        ];
        let before = snapshot(store, &[ALICE, BOB], &[]).await;
        for (case, t) in &forged {
            assert_eq!(connect_with_token(&h, t).await, 401, "{name}: {case}");
            used.push(t.clone());
        }
        assert_eq!(snapshot(store, &[ALICE, BOB], &[]).await, before, "{name}");
        assert_eq!(
            connect_with_token(&h, &good).await,
            200,
            "{name}: the real key works"
        );
        used.push(good);
    }
    // Both keys configured: the PEM text is still not the HMAC secret.
    let h = Harness::with_config(config(&[
        ("JWT_SECRET", SAMPLE_SECRET),
        ("JWT_PUBLIC_KEY", RSA_PUBLIC),
    ]));
    let confused = hs256_raw(&header("HS256"), &claims_text, RSA_PUBLIC.as_bytes());
    assert_eq!(connect_with_token(&h, &confused).await, 401);
    assert_eq!(
        connect_with_token(&h, &token(claims.clone(), SAMPLE_SECRET)).await,
        200
    );
    used.push(confused);
    used.push(SAMPLE_SECRET.to_owned());
    logs.assert_free_of(&used);
}

/// With an issuer and audience configured, tokens lacking or mistyping `iss`, `aud`, `sub` or `exp` get 401.
#[tokio::test]
async fn tokens_without_the_configured_issuer_or_audience_get_401() {
    let (logs, _guard) = Logs::capture();
    let h = Harness::with_config(config(&[
        ("JWT_SECRET", SAMPLE_SECRET),
        ("JWT_ISSUER", "wsexec"),
        ("JWT_AUDIENCE", "chat"),
    ]));
    let e = exp();
    let refused = [
        json!({"sub": ALICE, "exp": e, "aud": "chat"}),
        json!({"sub": ALICE, "exp": e, "iss": 5, "aud": "chat"}),
        json!({"sub": ALICE, "exp": e, "iss": ["evil"], "aud": "chat"}),
        json!({"sub": ALICE, "exp": e, "iss": null, "aud": "chat"}),
        json!({"sub": ALICE, "exp": e, "iss": "wsexec"}),
        json!({"sub": ALICE, "exp": e, "iss": "wsexec", "aud": 7}),
        json!({"sub": ALICE, "exp": e, "iss": "wsexec", "aud": ["admin"]}),
        json!({"sub": ALICE, "exp": e, "iss": "wsexec", "aud": []}),
        json!({"sub": ALICE, "exp": e.to_string(), "iss": "wsexec", "aud": "chat"}),
        json!({"sub": "", "exp": e, "iss": "wsexec", "aud": "chat"}),
        json!({"exp": e, "iss": "wsexec", "aud": "chat"}),
        json!({"sub": 42, "exp": e, "iss": "wsexec", "aud": "chat"}),
    ];
    let mut used = vec![SAMPLE_SECRET.to_owned()];
    for claims in refused {
        let t = token(claims.clone(), SAMPLE_SECRET);
        assert_eq!(connect_with_token(&h, &t).await, 401, "{claims}");
        used.push(t);
    }
    for claims in [
        json!({"sub": ALICE, "exp": e, "iss": "wsexec", "aud": "chat"}),
        json!({"sub": ALICE, "exp": e, "iss": "wsexec", "aud": ["x", "chat"]}),
    ] {
        let t = token(claims.clone(), SAMPLE_SECRET);
        assert_eq!(connect_with_token(&h, &t).await, 200, "{claims}");
        used.push(t);
    }
    logs.assert_free_of(&used);
}

/// Identities and tenants with surrounding whitespace, and placeholder tenants, get 403 and leave no record.
#[tokio::test]
async fn padded_identities_and_placeholder_tenants_get_403() {
    let (logs, _guard) = Logs::capture();
    let mut cfg = config(&[("JWT_SECRET", SAMPLE_SECRET)]);
    cfg.mode = Mode::Production;
    cfg.dev_auth = true;
    let h = Harness::with_config(cfg);
    let store = h.mgr.store().unwrap();
    let mut used = vec![SAMPLE_SECRET.to_owned()];
    for padded in [" alice-01", "alice-01 ", "alice-01\t", "\nalice-01"] {
        let t = token(json!({"sub": padded, "exp": exp()}), SAMPLE_SECRET);
        assert_eq!(connect_with_token(&h, &t).await, 403, "jwt {padded:?}");
        used.push(t);
        let conn = aws_id();
        let r = h.invoke(&authorizer_connect_event(&conn, padded)).await;
        assert_eq!(r["statusCode"], 403, "authorizer {padded:?}");
        let r = h
            .invoke(&connect_event(&conn, &[("user_id", padded)], &[]))
            .await;
        assert_eq!(r["statusCode"], 403, "dev auth {padded:?}");
        assert_eq!(store.get_connection(&conn).await.unwrap(), None);
        let t = token(
            json!({"sub": ALICE, "exp": exp(), "tenant": padded}),
            SAMPLE_SECRET,
        );
        assert_eq!(connect_with_token(&h, &t).await, 403, "tenant {padded:?}");
        used.push(t);
    }
    for tenant in ["test", "null", "placeholder", "demo_co", "USER#x"] {
        let t = token(
            json!({"sub": ALICE, "exp": exp(), "tenant_id": tenant}),
            SAMPLE_SECRET,
        );
        assert_eq!(connect_with_token(&h, &t).await, 403, "tenant {tenant}");
        used.push(t);
    }
    assert!(snapshot(store, &[ALICE], &[]).await.user_connections[0].is_empty());
    let t = token(
        json!({"sub": ALICE, "exp": exp(), "tenant": "acme"}),
        SAMPLE_SECRET,
    );
    assert_eq!(connect_with_token(&h, &t).await, 200);
    used.push(t);
    logs.assert_free_of(&used);
}

/// Huge, nested, duplicate-key, mistyped, non-object, binary and non-UTF-8 input gets its documented error and changes nothing.
#[tokio::test]
async fn hostile_frames_get_their_documented_error() {
    let (logs, _guard) = Logs::capture();
    let h = Harness::memory();
    let (alice, bob, run_id) = two_users(&h).await;
    let store = h.mgr.store().unwrap();
    let nested = |depth: usize| format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
    let huge_type = "t".repeat(100_000);
    let cases: Vec<(String, &str)> = vec![
        (
            format!(r#"{{"type":"ping","pad":"{}"}}"#, "x".repeat(wsexec::limits::MAX_MESSAGE_BYTES)),
            "message_too_large",
        ),
        // An unclosed `[` is broken JSON, not a JSON value of the wrong kind (issue 17).
        ("[".repeat(100_000), "invalid_json"),
        (
            format!(
                r#"{{"type":"start_agent","payload":{{"user_request":"x","metadata":{}}}}}"#,
                nested(200)
            ),
            // Complete JSON, only too deep: not "invalid JSON" (issue 17).
            "invalid_frame",
        ),
        (r#"{"type":"ping","type":"start_agent"}"#.into(), "invalid_field"),
        (
            format!(r#"{{"type":"cancel_agent","run_id":"run_nobody","run_id":"{run_id}"}}"#),
            "invalid_field",
        ),
        (
            r#"{"type":"start_agent","payload":{"user_request":"x"},"payload":{"user_request":"y"}}"#.into(),
            "invalid_field",
        ),
        (r#"{"type":{"$ne":null}}"#.into(), "invalid_field"),
        (r#"{"type":"list_executions","limit":1e2}"#.into(), "invalid_field"),
        (
            r#"{"type":"list_executions","limit":18446744073709551616}"#.into(),
            "invalid_field",
        ),
        (
            r#"{"type":"start_agent","payload":{"user_request":"x","delay_ms":-1}}"#.into(),
            "invalid_field",
        ),
        (r#"{"type":"start_agent","payload":"x"}"#.into(), "invalid_field"),
        ("\u{feff}{\"type\":\"ping\"}".into(), "invalid_json"),
        (r#"{"type":"ping"} {"type":"ping"}"#.into(), "invalid_json"),
        (r#""{\"type\":\"ping\"}""#.into(), "invalid_frame"),
        ("null".into(), "invalid_frame"),
        ("\u{0}".into(), "invalid_json"),
        (format!(r#"{{"type":"{huge_type}"}}"#), "unknown_type"),
    ];
    let before = snapshot(store, &[ALICE, BOB], &[&alice, &bob]).await;
    for (body, want) in &cases {
        let r = reply(&h, &alice, body).await;
        assert_eq!(
            (r["type"].as_str(), code(&r)),
            (Some("error"), *want),
            "{body:.80}"
        );
        assert_eq!(r["payload"]["retryable"], false);
        assert!(
            r.to_string().len() < 1024,
            "the error does not echo the frame: {body:.40}"
        );
        assert_eq!(
            reply(&h, &alice, r#"{"type":"ping"}"#).await["type"],
            "pong"
        );
    }
    // Binary frames (API Gateway base64-encodes them) and a frame with no body at all.
    for (b64_flag, body) in [(true, json!("AAEC/w==")), (false, Value::Null)] {
        let mut e = message_event(&alice, "");
        e["isBase64Encoded"] = json!(b64_flag);
        e["body"] = body;
        let r = h.invoke(&e).await;
        assert_eq!(r["statusCode"], 200);
        let frame: Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
        let want = if b64_flag {
            "invalid_frame"
        } else {
            "invalid_json"
        };
        assert_eq!(code(&frame), want);
    }
    // Text that is not UTF-8 cannot arrive as a text frame (WebSocket requires UTF-8; binary
    // frames arrive base64-encoded, above): only a hand-made event can carry a lone surrogate
    // escape, and it is refused whole as a malformed event.
    let raw = message_event(&alice, "SURROGATE")
        .to_string()
        .replace("SURROGATE", "\\ud800");
    let err = wsexec::handler::handle(&raw, Ok(&h.mgr), None)
        .await
        .unwrap_err();
    assert_eq!(err.error_type, "NonRetryable.InvalidEvent");
    assert_eq!(h.pushed(&alice).len(), 10, "no hostile frame started a run");
    assert_eq!(
        snapshot(store, &[ALICE, BOB], &[&alice, &bob]).await,
        before
    );
    logs.assert_free_of(&[]);
}

/// 2,000 concurrent mixed messages on one connection are all answered, make one run per request_id, and change nothing else.
#[tokio::test]
async fn a_flood_of_mixed_messages_is_all_answered_and_state_stays_intact() {
    let (logs, _guard) = Logs::capture();
    let h = Arc::new(Harness::memory());
    let (alice, bob, _) = two_users(&h).await;
    let store = h.mgr.store().unwrap();
    let bob_before = snapshot(store, &[BOB], &[&alice, &bob]).await;
    let alice_runs_before = snapshot(store, &[ALICE], &[]).await.runs.len();
    let pushed_before = h.pushed(&alice).len();
    const N: usize = 2_000;
    let frame = |i: usize| -> (String, Option<&'static str>) {
        match i % 10 {
            0 => (r#"{"type":"ping"}"#.into(), Some("pong")),
            1 => (r#"{"type":"heartbeat"}"#.into(), Some("heartbeat_ack")),
            2 => ("not json".into(), Some("invalid_json")),
            3 => (r#"{"type":"dance"}"#.into(), Some("unknown_type")),
            // A start, then (i % 10 == 5) a retry of it: one of the two makes the run.
            4 | 5 => (
                json!({"type": "start_agent", "request_id": format!("f-{}", i / 10), "payload": {"user_request": "flood"}}).to_string(),
                None,
            ),
            6 => (r#"{"type":"get_execution","run_id":"run_nobody"}"#.into(), Some("not_found")),
            7 => (r#"{"type":"list_executions","limit":5}"#.into(), Some("executions")),
            8 => (r#"{"type":"cancel_agent","run_id":"run_nobody"}"#.into(), Some("not_found")),
            _ => (r#"{"type":"get_execution","run_id":"USER#bob-02"}"#.into(), Some("invalid_id")),
        }
    };
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..N {
        let h = h.clone();
        let alice = alice.clone();
        tasks.spawn(async move {
            let (body, _) = frame(i);
            (i, h.send(&alice, &body).await)
        });
    }
    let mut answered = 0;
    let mut deduplicated = 0;
    while let Some(t) = tasks.join_next().await {
        let (i, r) = t.unwrap();
        match (frame(i).1, r) {
            (Some(want), Some(r)) => {
                let got = if r["type"] == "error" {
                    code(&r)
                } else {
                    r["type"].as_str().unwrap()
                };
                assert_eq!(got, want, "message {i}");
                answered += 1;
            }
            (None, Some(r)) => {
                assert_eq!(
                    (r["type"].as_str(), r["payload"]["deduplicated"].as_bool()),
                    (Some("execution"), Some(true))
                );
                deduplicated += 1;
                answered += 1;
            }
            (None, None) => answered += 1,
            (Some(want), None) => panic!("message {i} ({want}) got no reply"),
        }
    }
    assert_eq!(answered, N);
    let starts = N / 10;
    assert_eq!(deduplicated, starts, "each retried start found its run");
    let pushed = h.pushed(&alice)[pushed_before..].to_vec();
    assert_eq!(pushed.len(), starts * 5, "five events per run, no more");
    let mut by_run: std::collections::BTreeMap<String, Vec<Value>> = Default::default();
    for e in pushed {
        by_run
            .entry(e["run_id"].as_str().unwrap().to_owned())
            .or_default()
            .push(e);
    }
    assert_eq!(by_run.len(), starts);
    for events in by_run.values() {
        assert_eq!(types(events), FIVE_EVENTS);
    }
    let runs = snapshot(store, &[ALICE], &[]).await.runs;
    assert_eq!(runs.len(), alice_runs_before + starts);
    assert!(
        runs.iter()
            .all(|r| r.state == wsexec::ExecutionState::Completed && r.version == 2)
    );
    assert_eq!(snapshot(store, &[BOB], &[&alice, &bob]).await, bob_before);
    logs.assert_free_of(&[]);
}

/// No token (valid, refused, unkeyed, pasted into a message) and no secret ever reaches a log line, even at `trace`.
#[tokio::test]
async fn tokens_and_secrets_never_reach_the_logs() {
    let (logs, _guard) = Logs::capture();
    let mut cfg = config(&[("JWT_SECRET", SAMPLE_SECRET), ("JWT_ISSUER", "wsexec")]);
    cfg.dev_auth = false;
    let h = Harness::with_config(cfg);
    let good = token(
        json!({"sub": ALICE, "exp": exp(), "iss": "wsexec"}),
        SAMPLE_SECRET,
    );
    let expired = token(
        json!({"sub": ALICE, "exp": 1_000, "iss": "wsexec"}),
        SAMPLE_SECRET,
    );
    let wrong = token(
        json!({"sub": ALICE, "exp": exp(), "iss": "wsexec"}),
        "guessed-secret",
    );
    let conn = aws_id();
    let r = h
        .invoke(&connect_event(&conn, &[("token", &good)], &[]))
        .await;
    assert_eq!(r["statusCode"], 200);
    let proto = format!("chat, jwt.{good}");
    let r = h
        .invoke(&connect_event(
            &aws_id(),
            &[],
            &[("Sec-WebSocket-Protocol", &proto)],
        ))
        .await;
    assert_eq!(r["statusCode"], 200);
    for t in [&expired, &wrong] {
        assert_eq!(connect_with_token(&h, t).await, 401);
        let proto = format!("jwt.{t}");
        let r = h
            .invoke(&connect_event(
                &aws_id(),
                &[],
                &[("Sec-WebSocket-Protocol", &proto)],
            ))
            .await;
        assert_eq!(r["statusCode"], 401);
    }
    // A token pasted into a chat message and into an unknown type.
    h.send_json(
        &conn,
        json!({"type": "start_agent", "request_id": "paste", "payload": {"user_request": good}}),
    )
    .await;
    assert_eq!(types(&h.pushed(&conn)), FIVE_EVENTS);
    let r = reply(&h, &conn, &json!({"type": good}).to_string()).await;
    assert_eq!(code(&r), "unknown_type");
    h.invoke(&disconnect_event(&conn)).await;
    // No key configured: the token is refused, and not logged either.
    let mut cfg = config(&[]);
    cfg.dev_auth = false;
    let unkeyed = Harness::with_config(cfg);
    assert_eq!(connect_with_token(&unkeyed, &good).await, 401);
    logs.assert_free_of(&[
        good,
        expired,
        wrong,
        SAMPLE_SECRET.to_owned(),
        "guessed-secret".to_owned(),
    ]);
}

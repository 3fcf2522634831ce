//! Fuzzes token extraction and JWT verification: only a correctly signed, current token verifies.
#![no_main]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;
use wsexec::auth::{JwtVerifier, extract_token};
use wsexec::limits::{JWT_LEEWAY, MAX_TOKEN_BYTES};

const SECRET: &str = "fuzz-secret";
const RSA_PUBLIC: &str = include_str!("../../tests/fixtures/jwt-rsa-public.pem");
const EC_PUBLIC: &str = include_str!("../../tests/fixtures/jwt-ec-public.pem");

struct Verifiers {
    /// HS256 with issuer and audience required.
    hmac: JwtVerifier,
    /// RS256 only: an HS256 token signed with the PEM text must never pass.
    rsa: JwtVerifier,
    /// ES256 and HS256 together.
    both: JwtVerifier,
}

static VERIFIERS: LazyLock<Verifiers> = LazyLock::new(|| {
    let build = |s, p, i, a| JwtVerifier::from_settings(s, p, i, a).unwrap().unwrap();
    Verifiers {
        hmac: build(Some(SECRET), None, Some("wsexec"), Some("chat")),
        rsa: build(None, Some(RSA_PUBLIC), None, None),
        both: build(Some(SECRET), Some(EC_PUBLIC), None, None),
    }
});

fn now_secs() -> i64 {
    (wsexec::time::now_ms() / 1000) as i64
}

/// A token assembled from fuzzed header and claims JSON, HS256-signed with `secret`.
fn signed(header: &str, claims: &str, secret: &[u8]) -> String {
    let msg = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let sig = jsonwebtoken::crypto::sign(
        msg.as_bytes(),
        &EncodingKey::from_secret(secret),
        Algorithm::HS256,
    )
    .unwrap();
    format!("{msg}.{sig}")
}

/// The claims the checks read; any other claim is ignored, as the verifier ignores it (a
/// number too large for `f64` in an unread claim is no reason to refuse a token).
#[derive(serde::Deserialize)]
struct Read {
    sub: String,
    exp: f64,
    nbf: Option<f64>,
    iss: Option<serde_json::Value>,
}

/// A verified token's claims really hold a subject and a current `exp` (and `nbf`).
fn check_accepted(claims: &str, user_id: &str) -> Read {
    let c: Read = serde_json::from_str(claims).expect("verified claims hold sub and exp");
    assert_eq!(c.sub, user_id);
    let leeway = JWT_LEEWAY.as_secs() as f64;
    assert!(
        c.exp + leeway >= now_secs() as f64,
        "expired token accepted"
    );
    if let Some(nbf) = c.nbf {
        assert!(nbf - leeway <= now_secs() as f64, "early token accepted");
    }
    c
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let v = &*VERIFIERS;
    match mode % 4 {
        // Any string as a token: never verifies (no valid signature can be guessed).
        0 => {
            for verifier in [&v.hmac, &v.rsa, &v.both] {
                assert!(verifier.verify(&text).is_err());
            }
        }
        // The `token` query parameter and `Sec-WebSocket-Protocol` header.
        1 => {
            let (query, protocols) = text.split_once('\u{1f}').unwrap_or((&text, ""));
            let query = (!query.is_empty()).then_some(query);
            if let Some(found) = extract_token(query, Some(protocols)) {
                assert!(!found.token.is_empty());
                match found.subprotocol {
                    // The echoed entry is exactly one entry the client offered.
                    Some(p) => {
                        assert_eq!(p, format!("jwt.{}", found.token));
                        assert!(protocols.split(',').any(|e| e.trim() == p));
                    }
                    None => assert_eq!(Some(found.token), query.map(str::trim)),
                }
                assert!(v.both.verify(found.token).is_err());
            }
        }
        // Fuzzed header and claims, correctly signed: only valid claims pass.
        2 => {
            let (header, claims) = text.split_once('\u{1f}').unwrap_or((&text, ""));
            let token = signed(header, claims, SECRET.as_bytes());
            if token.len() > MAX_TOKEN_BYTES {
                assert!(v.both.verify(&token).is_err());
                return;
            }
            if let Ok(p) = v.both.verify(&token) {
                check_accepted(claims, &p.user_id);
            }
            if let Ok(p) = v.hmac.verify(&token) {
                let c = check_accepted(claims, &p.user_id);
                let iss = c.iss.expect("the configured issuer is required");
                assert!(
                    iss == "wsexec" || iss.as_array().is_some_and(|a| a.contains(&"wsexec".into()))
                );
            }
            assert!(
                v.rsa.verify(&token).is_err(),
                "HS256 accepted by an RS256 key"
            );
        }
        // Algorithm confusion: HS256 signed with the public key's PEM text as the secret.
        _ => {
            let (header, claims) = text.split_once('\u{1f}').unwrap_or((&text, ""));
            let token = signed(header, claims, RSA_PUBLIC.as_bytes());
            assert!(v.rsa.verify(&token).is_err(), "algorithm confusion");
            assert!(v.hmac.verify(&token).is_err(), "wrong secret accepted");
        }
    }
});

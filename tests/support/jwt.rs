//! JWTs for tests: HS256 with a secret, RS256/ES256 with the keys in `tests/fixtures/` (made
//! with openssl for these tests only), and hand-assembled tokens.
#![allow(dead_code)]

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::Value;

/// RSA key pair (2048 bits), PEM.
pub const RSA_PRIVATE: &str = include_str!("../fixtures/jwt-rsa-private.pem");
pub const RSA_PUBLIC: &str = include_str!("../fixtures/jwt-rsa-public.pem");
/// EC P-256 key pair, PEM.
pub const EC_PRIVATE: &str = include_str!("../fixtures/jwt-ec-private.pem");
pub const EC_PUBLIC: &str = include_str!("../fixtures/jwt-ec-public.pem");

/// An HS256 token of `claims` signed with `secret`.
pub fn token(claims: Value, secret: &str) -> String {
    signed(
        Algorithm::HS256,
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
}

/// An RS256 token signed with the fixture RSA key.
pub fn rs256(claims: Value) -> String {
    let key = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
    signed(Algorithm::RS256, &claims, &key)
}

/// An ES256 token signed with the fixture EC key.
pub fn es256(claims: Value) -> String {
    let key = EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap();
    signed(Algorithm::ES256, &claims, &key)
}

/// A token of `claims` with `alg`, signed with `key`.
pub fn signed(alg: Algorithm, claims: &Value, key: &EncodingKey) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, key).unwrap()
}

/// A token assembled from raw header and claims JSON, HS256-signed with `secret` whatever the
/// header says (for `kid`/`jku` headers, malformed claims, algorithm confusion).
pub fn hs256_raw(header: &str, claims: &str, secret: &[u8]) -> String {
    let msg = format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()));
    let sig = jsonwebtoken::crypto::sign(
        msg.as_bytes(),
        &EncodingKey::from_secret(secret),
        Algorithm::HS256,
    )
    .unwrap();
    format!("{msg}.{sig}")
}

/// Unpadded base64url.
pub fn b64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..=chunk.len() {
            out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

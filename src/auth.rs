//! Identity on `$connect`: the authorizer's principal, or a verified JWT.

use crate::limits::{JWT_LEEWAY, MAX_TOKEN_BYTES};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::Deserialize;
use std::sync::Arc;

/// Why a token or key was refused. The message is for logs; clients only see `unauthorized`.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    #[error("token is larger than {MAX_TOKEN_BYTES} bytes")]
    TooLarge,
    #[error("token algorithm {0:?} is not accepted")]
    Algorithm(Option<Algorithm>),
    #[error("token rejected: {0}")]
    Invalid(#[source] jsonwebtoken::errors::Error),
    #[error("token has no usable sub claim")]
    NoSubject,
    #[error("JWT_PUBLIC_KEY is neither an RSA nor an EC public key in PEM")]
    BadPublicKey,
}

/// The claims wsexec reads; everything else is ignored.
#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    #[serde(default, alias = "tenant_id")]
    tenant: Option<String>,
}

/// A verified identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub user_id: String,
    pub tenant_id: Option<String>,
}

#[derive(Clone)]
struct KeyedValidation {
    key: DecodingKey,
    validation: Validation,
}

/// Verifies tokens with the configured HS256 secret and/or RS256/ES256 public key.
///
/// Each key only accepts its own algorithm, so a token signed with HS256 using the public key
/// as the secret (algorithm confusion) and `alg: none` tokens are rejected.
#[derive(Clone)]
pub struct JwtVerifier {
    hmac: Option<Arc<KeyedValidation>>,
    public: Option<Arc<KeyedValidation>>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("hmac", &self.hmac.is_some())
            .field(
                "public",
                &self
                    .public
                    .as_ref()
                    .map(|k| k.validation.algorithms.clone()),
            )
            .finish()
    }
}

fn validation(alg: Algorithm, issuer: Option<&str>, audience: Option<&str>) -> Validation {
    let mut v = Validation::new(alg);
    v.algorithms = vec![alg];
    v.validate_exp = true;
    v.validate_nbf = true;
    v.leeway = JWT_LEEWAY.as_secs();
    // `jsonwebtoken` checks `iss` and `aud` only when the token carries them (and parse as
    // strings): a configured issuer or audience must also make the claim required, or a token
    // that simply leaves it out (or sends `"iss": 5`) would pass.
    let mut required = vec!["exp", "sub"];
    if let Some(iss) = issuer {
        v.set_issuer(&[iss]);
        required.push("iss");
    }
    match audience {
        Some(aud) => {
            v.set_audience(&[aud]);
            required.push("aud");
        }
        None => v.validate_aud = false,
    }
    v.set_required_spec_claims(&required);
    v
}

impl JwtVerifier {
    /// Builds a verifier from the settings; `None` when no key is configured.
    pub fn from_settings(
        secret: Option<&str>,
        public_key_pem: Option<&str>,
        issuer: Option<&str>,
        audience: Option<&str>,
    ) -> Result<Option<JwtVerifier>, JwtError> {
        let hmac = secret.map(|s| {
            Arc::new(KeyedValidation {
                key: DecodingKey::from_secret(s.as_bytes()),
                validation: validation(Algorithm::HS256, issuer, audience),
            })
        });
        let public = match public_key_pem {
            None => None,
            Some(pem) => {
                // Environment variables often carry PEM with literal `\n`.
                let pem = pem.replace("\\n", "\n");
                let (key, alg) = if let Ok(k) = DecodingKey::from_rsa_pem(pem.as_bytes()) {
                    (k, Algorithm::RS256)
                } else if let Ok(k) = DecodingKey::from_ec_pem(pem.as_bytes()) {
                    (k, Algorithm::ES256)
                } else {
                    return Err(JwtError::BadPublicKey);
                };
                Some(Arc::new(KeyedValidation {
                    key,
                    validation: validation(alg, issuer, audience),
                }))
            }
        };
        Ok((hmac.is_some() || public.is_some()).then_some(JwtVerifier { hmac, public }))
    }

    /// Verifies signature, `exp`, `nbf` and, when configured, `iss` and `aud`.
    pub fn verify(&self, token: &str) -> Result<Principal, JwtError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(JwtError::TooLarge);
        }
        // `decode_header` rejects `alg: none` (not a known algorithm) before any key is chosen.
        let header = decode_header(token).map_err(JwtError::Invalid)?;
        let kv = [&self.hmac, &self.public]
            .into_iter()
            .flatten()
            .find(|kv| kv.validation.algorithms.contains(&header.alg))
            .ok_or(JwtError::Algorithm(Some(header.alg)))?;
        let data = decode::<Claims>(token, &kv.key, &kv.validation).map_err(JwtError::Invalid)?;
        let user_id = data
            .claims
            .sub
            .filter(|s| !s.is_empty())
            .ok_or(JwtError::NoSubject)?;
        Ok(Principal {
            user_id,
            tenant_id: data.claims.tenant,
        })
    }
}

/// Where a client's token came from on `$connect`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtractedToken<'a> {
    pub token: &'a str,
    /// The `Sec-WebSocket-Protocol` entry to echo back, when the token came from there.
    pub subprotocol: Option<&'a str>,
}

/// Finds a token in the `token` query parameter or a `jwt.<token>` subprotocol entry.
pub fn extract_token<'a>(
    query_token: Option<&'a str>,
    subprotocols: Option<&'a str>,
) -> Option<ExtractedToken<'a>> {
    if let Some(t) = query_token.map(str::trim).filter(|t| !t.is_empty()) {
        return Some(ExtractedToken {
            token: t,
            subprotocol: None,
        });
    }
    subprotocols?.split(',').map(str::trim).find_map(|p| {
        p.strip_prefix("jwt.")
            .filter(|t| !t.is_empty())
            .map(|t| ExtractedToken {
                token: t,
                subprotocol: Some(p),
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The query parameter wins; otherwise the first `jwt.` subprotocol is chosen and echoed.
    #[test]
    fn token_extraction_prefers_query_then_subprotocol() {
        assert_eq!(
            extract_token(Some("abc"), Some("jwt.def")).unwrap().token,
            "abc"
        );
        let t = extract_token(None, Some("chat, jwt.def ,jwt.ghi")).unwrap();
        assert_eq!((t.token, t.subprotocol), ("def", Some("jwt.def")));
        assert_eq!(extract_token(Some(" "), Some("chat, jwt.")), None);
        assert_eq!(extract_token(None, None), None);
    }
}

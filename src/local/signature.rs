//! The Invoke API's caller check: each gateway makes up its own credentials for the function's
//! own Lambda client, and takes only requests SigV4-signed with them, verified as Lambda does.
//!
//! The secret key never leaves the process (a signature is an HMAC of the request under it), so
//! neither a web page nor another local process can sign an invocation, and a signed request
//! cannot be altered: the body (the worker event) is part of what is signed.

use super::ids::IdGen;
use crate::sigv4::Signer;
use aws_credential_types::Credentials;
use aws_smithy_runtime_api::client::identity::Identity;
use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format;
use hyper::HeaderMap;
use hyper::http::request::Parts;
use std::time::{Duration, SystemTime};

/// The only algorithm the SDK signs `Invoke` with.
const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// The signing name of the Lambda service, the fourth part of a credential scope.
const SERVICE: &str = "lambda";

/// How far a request's `X-Amz-Date` may be from now: AWS's own window, which bounds how long
/// a request seen on the wire could be replayed.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(15 * 60);

/// How many fresh ids make up the secret key (each about 89 bits of the id generator's output).
const SECRET_IDS: usize = 3;

/// Why an `Invoke` request was not taken, each answered as Lambda answers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No `Authorization` header, or one that is not SigV4.
    #[error("missing or malformed SigV4 Authorization header")]
    Unsigned,
    /// Signed with credentials other than this gateway's.
    #[error("the security token included in the request is invalid")]
    UnknownKey,
    /// The signature does not match the request (altered, or signed with another secret).
    #[error("the request signature does not match")]
    BadSignature,
    /// `X-Amz-Date` is missing, unreadable, or outside [`MAX_CLOCK_SKEW`].
    #[error("signature expired or X-Amz-Date missing")]
    Expired,
}

impl Refusal {
    /// Lambda's error type for the refusal (`x-amzn-ErrorType`).
    pub fn error_type(self) -> &'static str {
        match self {
            Refusal::Unsigned => "MissingAuthenticationTokenException",
            Refusal::UnknownKey => "UnrecognizedClientException",
            Refusal::BadSignature | Refusal::Expired => "InvalidSignatureException",
        }
    }
}

/// The credentials one gateway gives the function's Lambda client, and checks requests against.
pub struct InvokeKey {
    credentials: Credentials,
}

/// The parts of a SigV4 `Authorization` header a check needs.
struct Authorization<'a> {
    access_key_id: &'a str,
    region: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

impl InvokeKey {
    /// Fresh credentials, unpredictable outside this process.
    pub fn generate(ids: &IdGen) -> InvokeKey {
        let id = |ids: &IdGen| ids.aws_id().trim_end_matches('=').to_owned();
        let access_key_id = format!("WSEXECLOCAL{}", id(ids).to_ascii_uppercase());
        let secret: String = (0..SECRET_IDS).map(|_| id(ids)).collect();
        InvokeKey {
            credentials: Credentials::new(access_key_id, secret, None, None, "wsexec-local"),
        }
    }

    /// The credentials the function's own Lambda client signs with.
    pub fn credentials(&self) -> Credentials {
        self.credentials.clone()
    }

    /// Whether `parts` and `body` are a request signed with these credentials, at most
    /// [`MAX_CLOCK_SKEW`] from `now`.
    pub fn verify(&self, parts: &Parts, body: &[u8], now: SystemTime) -> Result<(), Refusal> {
        verify(&self.credentials, SERVICE, parts, body, now)
    }
}

/// Whether `parts` and `body` are a request SigV4-signed for `service` (its signing name, the
/// credential scope's fourth part) with `credentials`, at most [`MAX_CLOCK_SKEW`] from `now`:
/// the check AWS makes, recomputing the signature from the request as received.
pub fn verify(
    credentials: &Credentials,
    service: &str,
    parts: &Parts,
    body: &[u8],
    now: SystemTime,
) -> Result<(), Refusal> {
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let auth = header("authorization")
        .and_then(|v| parse_authorization(v, service))
        .ok_or(Refusal::Unsigned)?;
    if auth.access_key_id != credentials.access_key_id() {
        return Err(Refusal::UnknownKey);
    }
    let time = header("x-amz-date")
        .and_then(parse_amz_date)
        .ok_or(Refusal::Expired)?;
    let skew = now
        .duration_since(time)
        .or_else(|e| Ok::<_, ()>(e.duration()));
    if skew.is_ok_and(|s| s > MAX_CLOCK_SKEW) {
        return Err(Refusal::Expired);
    }
    let expected =
        signature(credentials, service, parts, &auth, body, time).ok_or(Refusal::BadSignature)?;
    if constant_time_eq(expected.as_bytes(), auth.signature.as_bytes()) {
        Ok(())
    } else {
        Err(Refusal::BadSignature)
    }
}

/// The signature `credentials` give the request as its signer saw it: the headers it lists as
/// signed, with their received values, over the received path, query and body.
fn signature(
    credentials: &Credentials,
    service: &str,
    parts: &Parts,
    auth: &Authorization<'_>,
    body: &[u8],
    time: SystemTime,
) -> Option<String> {
    let headers = signed_headers(&parts.headers, &auth.signed_headers)?;
    let uri = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let identity = Identity::from(credentials.clone());
    let signer = Signer {
        identity: &identity,
        region: auth.region,
        service,
        time,
    };
    let headers = headers.iter().map(|(k, v)| (*k, v.as_str()));
    signer
        .sign(parts.method.as_str(), uri, headers, body)
        .ok()
        .map(|(_, signature)| signature)
}

/// The values of exactly the headers named in `SignedHeaders` (each must be present once).
fn signed_headers<'a>(headers: &HeaderMap, names: &[&'a str]) -> Option<Vec<(&'a str, String)>> {
    names
        .iter()
        .map(|name| {
            let mut values = headers.get_all(*name).iter();
            match (values.next(), values.next()) {
                (Some(v), None) => v.to_str().ok().map(|v| (*name, v.to_owned())),
                _ => None,
            }
        })
        .collect()
}

/// `AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/SERVICE/aws4_request, SignedHeaders=a;b,
/// Signature=hex` for `service`, or `None` when it is not that.
fn parse_authorization<'a>(value: &'a str, service_name: &str) -> Option<Authorization<'a>> {
    let rest = value.strip_prefix(ALGORITHM)?.strip_prefix(' ')?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (key, val) = part.trim().split_once('=')?;
        let slot = match key {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed,
            "Signature" => &mut signature,
            _ => return None,
        };
        if slot.replace(val).is_some() {
            return None;
        }
    }
    let mut scope = credential?.split('/');
    let (access_key_id, _date, region, service, terminator) = (
        scope.next()?,
        scope.next()?,
        scope.next()?,
        scope.next()?,
        scope.next()?,
    );
    let scope_ok =
        service == service_name && terminator == "aws4_request" && scope.next().is_none();
    let signed_headers: Vec<&str> = signed?.split(';').collect();
    (scope_ok && signed_headers.contains(&"x-amz-date")).then_some(Authorization {
        access_key_id,
        region,
        signed_headers,
        signature: signature?,
    })
}

/// `X-Amz-Date` (`20260101T120000Z`) as a time.
fn parse_amz_date(value: &str) -> Option<SystemTime> {
    let b = value.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    if b.len() != 16 || !digits(0..8) || b[8] != b'T' || !digits(9..15) || b[15] != b'Z' {
        return None;
    }
    let rfc3339 = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &value[0..4],
        &value[4..6],
        &value[6..8],
        &value[9..11],
        &value[11..13],
        &value[13..15]
    );
    let at = DateTime::from_str(&rfc3339, Format::DateTime).ok()?;
    SystemTime::try_from(at).ok()
}

/// Compares two signatures without an early exit, so timing tells nothing about a guess.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A well-formed header parses; any deviation from SigV4's shape is refused.
    #[test]
    fn authorization_headers_parse_strictly() {
        let ok = "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/lambda/aws4_request, \
                  SignedHeaders=host;x-amz-date, Signature=abc";
        let auth = parse_authorization(ok, SERVICE).expect("parses");
        assert_eq!((auth.access_key_id, auth.region), ("AKID", "us-east-1"));
        assert_eq!(auth.signed_headers, ["host", "x-amz-date"]);
        for bad in [
            "",
            "Bearer x",
            "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc",
            "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/lambda/aws4_request, SignedHeaders=host, Signature=abc",
            "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/lambda/aws4_request, SignedHeaders=host;x-amz-date",
            "AWS4-HMAC-SHA256 Credential=A, Credential=B, SignedHeaders=x-amz-date, Signature=abc",
        ] {
            assert!(parse_authorization(bad, SERVICE).is_none(), "{bad}");
        }
    }

    /// `X-Amz-Date` parses in its basic format only.
    #[test]
    fn amz_dates_parse() {
        let t = parse_amz_date("20260101T000001Z").expect("parses");
        let secs = t
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs();
        assert_eq!(secs, 1_767_225_601);
        for bad in [
            "",
            "2026-01-01T00:00:01Z",
            "20260101T000001",
            "20261301T000001Z",
        ] {
            assert!(parse_amz_date(bad).is_none(), "{bad}");
        }
    }

    /// A request as the SDK signs it, with `key`'s credentials at `time`.
    fn signed(key: &InvokeKey, body: &'static [u8], time: SystemTime) -> Parts {
        let path = "/2015-03-31/functions/wsexec/invocations";
        let date = DateTime::from(time).fmt(Format::DateTime).expect("formats");
        let amz_date: String = date.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
        let headers = [
            ("host", "127.0.0.1:3001"),
            ("x-amz-date", amz_date.as_str()),
        ];
        let identity = Identity::from(key.credentials());
        let signer = Signer {
            identity: &identity,
            region: "us-east-1",
            service: SERVICE,
            time,
        };
        let (instructions, _) = signer
            .sign("POST", path, headers.into_iter(), body)
            .expect("signs");
        let mut req = hyper::Request::post(path).body(()).expect("request");
        for (k, v) in headers {
            req.headers_mut().insert(k, v.parse().expect("value"));
        }
        for (k, v) in instructions.headers() {
            let name = hyper::header::HeaderName::from_bytes(k.as_bytes()).expect("name");
            req.headers_mut().insert(name, v.parse().expect("value"));
        }
        req.into_parts().0
    }

    /// A request signed with the key verifies; another body, a stale date or another key's
    /// signature does not.
    #[test]
    fn only_requests_signed_with_the_key_verify() {
        let ids = IdGen::new();
        let (key, other) = (InvokeKey::generate(&ids), InvokeKey::generate(&ids));
        let now = SystemTime::now();
        let body = br#"{"wsexec_worker":{"user_id":"alice-01","run_id":"r"}}"#;
        let parts = signed(&key, body, now);
        assert_eq!(key.verify(&parts, body, now), Ok(()));
        assert_eq!(
            key.verify(
                &parts,
                br#"{"wsexec_worker":{"user_id":"bob-02","run_id":"r"}}"#,
                now
            ),
            Err(Refusal::BadSignature)
        );
        let later = now + MAX_CLOCK_SKEW + Duration::from_secs(1);
        assert_eq!(key.verify(&parts, body, later), Err(Refusal::Expired));
        assert_eq!(other.verify(&parts, body, now), Err(Refusal::UnknownKey));
        let stolen_id = InvokeKey {
            credentials: Credentials::new(
                key.credentials().access_key_id(),
                other.credentials().secret_access_key(),
                None,
                None,
                "t",
            ),
        };
        assert_eq!(
            key.verify(&signed(&stolen_id, body, now), body, now),
            Err(Refusal::BadSignature)
        );
    }
}

//! The `@connections` notifier: API Gateway's management API, each push one SigV4-signed
//! `POST /@connections/{id}` on a pooled HTTP/1.1 client, failures classified like storage
//! errors.
//!
//! This is the request the SDK's `PostToConnection` sends (same path encoding, same signing
//! library and settings, same content type), without the SDK's per-request orchestrator
//! (interceptors, config bag, endpoint rules, identity cache, retry classifiers): a streaming
//! run posts ~110 times per answer, and that path was 12% of the function's CPU under 256
//! answers at once. Retries follow the SDK's standard mode (three attempts for 5xx, throttling
//! and failed connections, jittered exponential backoff) with a shorter base delay, all within
//! one operation time limit.

use super::{Notifier, PushError, PushErrorKind, PushTarget};
use crate::classified::Classified;
use async_trait::async_trait;
use aws_credential_types::Credentials;
use aws_smithy_runtime_api::client::identity::Identity;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::header::{CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Request, StatusCode, Uri};
use std::hash::BuildHasher;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

/// Push connect timeout: the endpoint is in-region API Gateway.
const PUSH_CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);
/// Push whole-operation timeout, every attempt included: a slow push must not eat the run's
/// time limit.
const PUSH_OPERATION_TIMEOUT: Duration = Duration::from_millis(3000);
/// Attempts per push when the failure may pass (5xx, 429, a failed connection): the SDK's
/// standard retry mode.
pub const PUSH_ATTEMPTS: u32 = 3;
/// The first retry waits up to this long, the second up to twice it (full jitter). The SDK's
/// standard mode starts at 1 s; a push holds its run's stream (later text waits behind it,
/// coalesced), so the base is shorter and the operation limit bounds the whole.
const RETRY_BASE: Duration = Duration::from_millis(100);
/// How long an idle pooled connection is kept: under the 60 s after which AWS front ends
/// close idle connections.
const POOL_IDLE: Duration = Duration::from_secs(50);
/// The most of a response body that is read (an error's JSON); the rest is dropped.
const MAX_RESPONSE_BYTES: usize = 16 * 1024;
/// The management API's signing name.
const SERVICE: &str = "execute-api";
/// What the SDK sends a `PostToConnection` body as (its `Data` is an opaque blob).
const CONTENT: &str = "application/octet-stream";

type HttpClient = crate::tls::Bounded<Full<Bytes>>;

/// Pushes through API Gateway's `PostToConnection`.
pub struct ApiGatewayNotifier {
    region: String,
    native_roots: bool,
    identity: Identity,
    /// Built on the first push: one pool for every endpoint (hyper pools per host). Not shared
    /// process-wide: a pool belongs to the tokio runtime that opened its connections.
    client: OnceLock<Result<HttpClient, String>>,
}

impl ApiGatewayNotifier {
    /// A notifier using the region and static credentials of the environment (as Lambda sets
    /// them). No client is built until the first push.
    pub fn from_env() -> ApiGatewayNotifier {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        ApiGatewayNotifier::new(
            &env("AWS_REGION")
                .or_else(|| env("AWS_DEFAULT_REGION"))
                .unwrap_or_else(|| "us-east-1".into()),
            Credentials::new(
                env("AWS_ACCESS_KEY_ID").unwrap_or_default(),
                env("AWS_SECRET_ACCESS_KEY").unwrap_or_default(),
                env("AWS_SESSION_TOKEN"),
                None,
                "environment",
            ),
        )
    }

    /// A notifier with explicit region and credentials.
    pub fn new(region: &str, credentials: Credentials) -> ApiGatewayNotifier {
        ApiGatewayNotifier {
            region: region.to_owned(),
            native_roots: crate::tls::native_roots_requested(),
            identity: Identity::from(credentials),
            client: OnceLock::new(),
        }
    }

    fn client(&self) -> Result<&HttpClient, PushError> {
        let built = self.client.get_or_init(|| {
            crate::tls::sdk_tls(self.native_roots)
                .map(|tls| {
                    let (connect, most) = (Some(PUSH_CONNECT_TIMEOUT), crate::tls::MAX_CONNECTIONS);
                    crate::tls::Bounded::new(&tls, connect, POOL_IDLE, most)
                })
                .map_err(|e| e.to_string())
        });
        built.as_ref().map_err(|e| {
            Classified::described(PushErrorKind::Unavailable, "push", format!("tls: {e}"))
        })
    }

    /// `body` posted once to `post`'s URL, signed now: `Ok` on a 2xx, else the failure and
    /// whether another attempt may pass.
    async fn attempt(
        &self,
        client: &HttpClient,
        post: &Post,
        body: &Bytes,
    ) -> Result<(), (PushError, bool)> {
        let request = self
            .signed(post, body, SystemTime::now())
            .map_err(|e| (e, false))?;
        let response = client.request(request).await.map_err(|e| {
            let fault = crate::tls::transport_fault(&e);
            let kind = match fault {
                crate::tls::TransportFault::Timeout => PushErrorKind::Timeout,
                _ => PushErrorKind::Connection,
            };
            let retry = fault != crate::tls::TransportFault::User;
            (PushError::new(kind).with_source(e), retry)
        })?;
        let status = response.status();
        // Read to the end (an empty 200, or a short error) so the connection is pooled again.
        let _ = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await;
        if status.is_success() {
            return Ok(());
        }
        let kind = status_kind(status);
        let retry = kind == PushErrorKind::Throttled || status.is_server_error();
        let error = Classified::described(kind, "push", format!("status {}", status.as_u16()));
        Err((error, retry))
    }

    /// The signed request for one attempt at `time`.
    fn signed(
        &self,
        post: &Post,
        body: &Bytes,
        time: SystemTime,
    ) -> Result<Request<Full<Bytes>>, PushError> {
        let mut request = Request::post(post.uri.clone())
            .header(HOST, post.host.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static(CONTENT))
            .body(Full::new(body.clone()))
            .map_err(|e| PushError::new(PushErrorKind::Unavailable).with_source(e))?;
        let headers = request
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)));
        let signer = crate::sigv4::Signer {
            identity: &self.identity,
            region: &self.region,
            service: SERVICE,
            time,
        };
        let (instructions, _signature) = signer
            .sign("POST", &post.text, headers, body)
            .map_err(|e| PushError::new(PushErrorKind::Unavailable).with_source(e))?;
        instructions.apply_to_request_http1x(&mut request);
        Ok(request)
    }
}

/// Where one push goes: `{endpoint}/@connections/{id}`, checked to be an absolute `http(s)`
/// URL with a host (the signer needs one).
struct Post {
    text: String,
    uri: Uri,
    host: HeaderValue,
}

impl Post {
    fn new(target: PushTarget<'_>) -> Result<Post, PushError> {
        let invalid = |what: &str| {
            Classified::described(
                PushErrorKind::Unavailable,
                "push",
                format!("invalid @connections endpoint: {what}"),
            )
        };
        if target.connection_id.is_empty() {
            return Err(invalid("empty connection id"));
        }
        let text = format!(
            "{}/@connections/{}",
            target.endpoint.trim_end_matches('/'),
            encode_label(target.connection_id)
        );
        let uri: Uri = text.parse().map_err(|_| invalid("not a URL"))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) {
            return Err(invalid("not http(s)"));
        }
        let host = uri
            .authority()
            .filter(|a| !a.host().is_empty())
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            .ok_or_else(|| invalid("no host"))?;
        Ok(Post { text, uri, host })
    }
}

/// A path label as the SDK writes one: every byte but RFC 3986's unreserved characters
/// percent-encoded (`=` in a connection id becomes `%3D`).
fn encode_label(label: &str) -> String {
    let mut out = String::with_capacity(label.len() + 6);
    for b in label.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What an error status means (API Gateway answers each of its modelled errors with its own).
fn status_kind(status: StatusCode) -> PushErrorKind {
    match status.as_u16() {
        410 => PushErrorKind::Gone,
        403 => PushErrorKind::Forbidden,
        413 => PushErrorKind::PayloadTooLarge,
        429 => PushErrorKind::Throttled,
        _ => PushErrorKind::Unavailable,
    }
}

/// The wait before retry `n` (1-based): uniformly random up to `RETRY_BASE * 2^(n-1)`.
fn backoff(n: u32) -> Duration {
    let cap = RETRY_BASE.saturating_mul(1 << n.saturating_sub(1).min(8));
    let random = std::collections::hash_map::RandomState::new().hash_one(n);
    cap.mul_f64((random >> 11) as f64 / (1u64 << 53) as f64)
}

#[async_trait]
impl Notifier for ApiGatewayNotifier {
    async fn push(&self, target: PushTarget<'_>, message: &str) -> Result<(), PushError> {
        let client = self.client()?;
        let post = Post::new(target)?;
        let body = Bytes::copy_from_slice(message.as_bytes());
        let attempts = async {
            let mut n = 1;
            loop {
                match self.attempt(client, &post, &body).await {
                    Ok(()) => return Ok(()),
                    Err((e, true)) if n < PUSH_ATTEMPTS => {
                        tracing::debug!(error = %e, attempt = n, "push retried");
                        tokio::time::sleep(backoff(n)).await;
                        n += 1;
                    }
                    Err((e, _)) => return Err(e),
                }
            }
        };
        match tokio::time::timeout(PUSH_OPERATION_TIMEOUT, attempts).await {
            Ok(result) => result,
            Err(_) => Err(Classified::described(
                PushErrorKind::Timeout,
                "push",
                format!("no answer within {} ms", PUSH_OPERATION_TIMEOUT.as_millis()),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Connection ids are encoded as the SDK's `PostToConnection` encodes its label.
    #[test]
    fn connection_ids_are_encoded_as_the_sdk_encodes_them() {
        assert_eq!(encode_label("L0SM9cOFvHcCIhw="), "L0SM9cOFvHcCIhw%3D");
        assert_eq!(encode_label("a/b+c d~e"), "a%2Fb%2Bc%20d~e");
        assert_eq!(encode_label("é"), "%C3%A9");
    }

    /// A target that is not an absolute http(s) URL with a host is refused as a typed push
    /// failure before anything is signed (the signer would panic on a URL without a host).
    #[test]
    fn malformed_endpoints_are_refused_typed() {
        for endpoint in [
            "",
            "/stage",
            "ftp://h/stage",
            "http:///stage",
            "not a url",
            "http://",
        ] {
            let target = PushTarget {
                endpoint,
                connection_id: "abc=",
            };
            let e = Post::new(target).err().expect(endpoint);
            assert_eq!(e.kind(), PushErrorKind::Unavailable, "{endpoint}");
        }
        let empty = PushTarget {
            endpoint: "https://h/stage",
            connection_id: "",
        };
        assert!(Post::new(empty).is_err());
        let ok = Post::new(PushTarget {
            endpoint: "https://abc.execute-api.eu-west-1.amazonaws.com/prod/",
            connection_id: "abc=",
        })
        .unwrap();
        assert_eq!(
            ok.text,
            "https://abc.execute-api.eu-west-1.amazonaws.com/prod/@connections/abc%3D"
        );
        assert_eq!(ok.host, "abc.execute-api.eu-west-1.amazonaws.com");
    }

    /// Retry waits grow and stay within their caps.
    #[test]
    fn backoff_is_jittered_within_its_cap() {
        for n in 1..=4 {
            let cap = RETRY_BASE * (1 << (n - 1));
            let waits: Vec<Duration> = (0..50).map(|_| backoff(n)).collect();
            assert!(waits.iter().all(|w| *w <= cap), "{n}: {waits:?}");
            assert!(waits.iter().any(|w| *w != waits[0]), "{n}: not jittered");
        }
    }
}

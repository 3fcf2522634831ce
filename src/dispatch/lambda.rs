//! The `Invoker` on Lambda's `Invoke` API: an `Event` invocation of the function itself, through
//! one lazily built client on the HTTPS stack every SDK client here shares.

use super::{DispatchError, DispatchErrorKind, Invoker};
use async_trait::async_trait;
use aws_sdk_lambda::Client;
use aws_sdk_lambda::config::{BehaviorVersion, Credentials, Region, timeout::TimeoutConfig};
use aws_sdk_lambda::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_lambda::operation::invoke::InvokeError;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use once_cell::sync::OnceCell;
use std::time::Duration;

/// Every Lambda action the invoker calls (the template's policy grants exactly these, on this
/// function only).
pub const ACTIONS: [&str; 1] = ["InvokeFunction"];

/// Connect timeout of an `Invoke`: the endpoint is in-region Lambda.
const INVOKE_CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);

/// Whole-operation timeout of an `Invoke`, retries included: an `Event` invoke only queues the
/// event, so a slow one is failing, and the route's reply must not wait for it.
const INVOKE_OPERATION_TIMEOUT: Duration = Duration::from_millis(5000);

/// Lambda's error codes that mean the caller may not invoke.
const PERMISSION_ERRORS: [&str; 5] = [
    "AccessDeniedException",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "ExpiredTokenException",
    "MissingAuthenticationTokenException",
];

/// Lambda's error codes for its own failures.
const UNAVAILABLE_ERRORS: [&str; 2] = ["ServiceException", "ResourceNotReadyException"];

/// Lambda's throttling codes.
const THROTTLING_ERRORS: [&str; 2] = ["TooManyRequestsException", "ThrottlingException"];

/// Where and as whom the client calls `Invoke`.
#[derive(Clone, Debug)]
struct Settings {
    region: String,
    credentials: Credentials,
    endpoint: Option<String>,
}

/// Invokes through the Lambda API; the client is built on the first dispatch.
pub struct LambdaInvoker {
    settings: Settings,
    client: OnceCell<Client>,
}

fn env(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.is_empty())
}

impl LambdaInvoker {
    /// The region, static credentials and `AWS_ENDPOINT_URL_LAMBDA` override of the
    /// environment, as Lambda sets them (no client is built yet).
    pub fn from_env() -> LambdaInvoker {
        let region = env("AWS_REGION")
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| "us-east-1".into());
        let credentials = Credentials::new(
            env("AWS_ACCESS_KEY_ID").unwrap_or_default(),
            env("AWS_SECRET_ACCESS_KEY").unwrap_or_default(),
            env("AWS_SESSION_TOKEN"),
            None,
            "environment",
        );
        let endpoint = env("AWS_ENDPOINT_URL_LAMBDA").or_else(|| env("AWS_ENDPOINT_URL"));
        LambdaInvoker::new(&region, credentials, endpoint.as_deref())
    }

    /// An invoker with explicit region, credentials and endpoint (the local gateway).
    pub fn new(region: &str, credentials: Credentials, endpoint: Option<&str>) -> LambdaInvoker {
        LambdaInvoker {
            settings: Settings {
                region: region.to_owned(),
                credentials,
                endpoint: endpoint.map(str::to_owned),
            },
            client: OnceCell::new(),
        }
    }

    fn client(&self) -> &Client {
        self.client.get_or_init(|| {
            let s = &self.settings;
            let mut b = aws_sdk_lambda::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new(s.region.clone()))
                .credentials_provider(s.credentials.clone())
                .http_client(crate::tls::https_client(
                    crate::tls::native_roots_requested(),
                ))
                .sleep_impl(aws_smithy_async::rt::sleep::TokioSleep::new())
                .timeout_config(
                    TimeoutConfig::builder()
                        .connect_timeout(INVOKE_CONNECT_TIMEOUT)
                        .operation_timeout(INVOKE_OPERATION_TIMEOUT)
                        .build(),
                );
            if let Some(e) = &s.endpoint {
                b = b.endpoint_url(e);
            }
            Client::from_conf(b.build())
        })
    }
}

/// Classifies an `Invoke` failure: transport first, then Lambda's codes, then the status.
pub fn classify(err: SdkError<InvokeError, HttpResponse>) -> DispatchError {
    let kind = match &err {
        SdkError::TimeoutError(_) => DispatchErrorKind::Timeout,
        SdkError::DispatchFailure(d) if d.is_timeout() => DispatchErrorKind::Timeout,
        SdkError::DispatchFailure(_) => DispatchErrorKind::Connection,
        SdkError::ServiceError(s) => {
            let code = s.err().code().unwrap_or("");
            if THROTTLING_ERRORS.contains(&code) {
                DispatchErrorKind::Throttled
            } else if PERMISSION_ERRORS.contains(&code) {
                DispatchErrorKind::Permission
            } else if UNAVAILABLE_ERRORS.contains(&code) {
                DispatchErrorKind::Unavailable
            } else {
                match s.raw().status().as_u16() {
                    429 => DispatchErrorKind::Throttled,
                    401 | 403 => DispatchErrorKind::Permission,
                    500.. => DispatchErrorKind::Unavailable,
                    _ => DispatchErrorKind::Invalid,
                }
            }
        }
        SdkError::ResponseError(r) if r.raw().status().as_u16() >= 500 => {
            DispatchErrorKind::Unavailable
        }
        _ => DispatchErrorKind::Invalid,
    };
    DispatchError::new(kind).with_source(err)
}

#[async_trait]
impl Invoker for LambdaInvoker {
    async fn invoke_async(&self, function: &str, payload: &str) -> Result<(), DispatchError> {
        self.client()
            .invoke()
            .function_name(function)
            .invocation_type(InvocationType::Event)
            .payload(Blob::new(payload.as_bytes()))
            .send()
            .await
            .map(|_| ())
            .map_err(classify)
    }
}

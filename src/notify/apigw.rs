//! The `@connections` notifier: API Gateway's management API, one lazily built client per
//! endpoint, failures classified like storage errors.

use super::{Notifier, PushError, PushErrorKind, PushTarget};
use async_trait::async_trait;
use aws_sdk_apigatewaymanagement::Client;
use aws_sdk_apigatewaymanagement::config::{
    BehaviorVersion, Credentials, Region, timeout::TimeoutConfig,
};
use aws_sdk_apigatewaymanagement::error::SdkError;
use aws_sdk_apigatewaymanagement::operation::post_to_connection::PostToConnectionError;
use aws_sdk_apigatewaymanagement::primitives::Blob;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// Push connect timeout: the endpoint is in-region API Gateway.
const PUSH_CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);
/// Push whole-operation timeout: a slow push must not eat the run's time limit.
const PUSH_OPERATION_TIMEOUT: Duration = Duration::from_millis(3000);

/// Pushes through API Gateway's `PostToConnection`.
pub struct ApiGatewayNotifier {
    region: String,
    native_roots: bool,
    credentials: Credentials,
    clients: Mutex<HashMap<String, Client>>,
}

impl ApiGatewayNotifier {
    /// A notifier using the region and static credentials of the environment (as Lambda sets
    /// them). No client is built until the first push to an endpoint.
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
            credentials,
            clients: Mutex::new(HashMap::new()),
        }
    }

    fn client(&self, endpoint: &str) -> Client {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        clients
            .entry(endpoint.to_owned())
            .or_insert_with(|| {
                let conf = aws_sdk_apigatewaymanagement::Config::builder()
                    .behavior_version(BehaviorVersion::latest())
                    .region(Region::new(self.region.clone()))
                    .credentials_provider(self.credentials.clone())
                    .endpoint_url(endpoint)
                    .http_client(crate::tls::https_client(self.native_roots))
                    .sleep_impl(aws_smithy_async::rt::sleep::TokioSleep::new())
                    .timeout_config(
                        TimeoutConfig::builder()
                            .connect_timeout(PUSH_CONNECT_TIMEOUT)
                            .operation_timeout(PUSH_OPERATION_TIMEOUT)
                            .build(),
                    )
                    .build();
                Client::from_conf(conf)
            })
            .clone()
    }
}

/// Classifies a `PostToConnection` failure: transport first, then the modelled errors.
pub fn classify(
    err: SdkError<
        PostToConnectionError,
        aws_smithy_runtime_api::client::orchestrator::HttpResponse,
    >,
) -> PushError {
    let kind = match &err {
        SdkError::TimeoutError(_) => PushErrorKind::Timeout,
        SdkError::DispatchFailure(d) if d.is_timeout() => PushErrorKind::Timeout,
        SdkError::DispatchFailure(_) => PushErrorKind::Connection,
        SdkError::ServiceError(s) => match s.err() {
            PostToConnectionError::GoneException(_) => PushErrorKind::Gone,
            PostToConnectionError::ForbiddenException(_) => PushErrorKind::Forbidden,
            PostToConnectionError::PayloadTooLargeException(_) => PushErrorKind::PayloadTooLarge,
            PostToConnectionError::LimitExceededException(_) => PushErrorKind::Throttled,
            _ => match s.raw().status().as_u16() {
                410 => PushErrorKind::Gone,
                403 => PushErrorKind::Forbidden,
                413 => PushErrorKind::PayloadTooLarge,
                429 => PushErrorKind::Throttled,
                _ => PushErrorKind::Unavailable,
            },
        },
        _ => PushErrorKind::Unavailable,
    };
    PushError::new(kind).with_source(err)
}

#[async_trait]
impl Notifier for ApiGatewayNotifier {
    async fn push(&self, target: PushTarget<'_>, message: &str) -> Result<(), PushError> {
        self.client(target.endpoint)
            .post_to_connection()
            .connection_id(target.connection_id)
            .data(Blob::new(message.as_bytes()))
            .send()
            .await
            .map(|_| ())
            .map_err(classify)
    }
}

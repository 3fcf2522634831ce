//! Building the DynamoDB SDK client: settings, timeouts, bounded retries, the request counter.

use crate::limits::{
    DYNAMODB_ATTEMPT_TIMEOUT, DYNAMODB_CONNECT_TIMEOUT, DYNAMODB_MAX_ATTEMPTS,
    DYNAMODB_OPERATION_TIMEOUT,
};
use crate::store::{StorageError, StorageErrorKind};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::{
    BehaviorVersion, Credentials, Intercept, Region, RuntimeComponents, retry::RetryConfig,
    timeout::TimeoutConfig,
};
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_types::config_bag::ConfigBag;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Client settings; [`DynamoSettings::default`] is what Lambda uses.
#[derive(Clone, Debug)]
pub struct DynamoSettings {
    pub connect_timeout: Duration,
    pub attempt_timeout: Duration,
    pub operation_timeout: Duration,
    pub max_attempts: u32,
}

impl Default for DynamoSettings {
    fn default() -> Self {
        DynamoSettings {
            connect_timeout: DYNAMODB_CONNECT_TIMEOUT,
            attempt_timeout: DYNAMODB_ATTEMPT_TIMEOUT,
            operation_timeout: DYNAMODB_OPERATION_TIMEOUT,
            max_attempts: DYNAMODB_MAX_ATTEMPTS,
        }
    }
}

/// Counts HTTP requests (attempts) sent to DynamoDB, in total and per operation. Bounded: one
/// counter per operation name the store uses, however long the instance lives.
#[derive(Debug, Default, Clone)]
pub struct RequestCounter {
    count: Arc<AtomicU64>,
    operations: Arc<std::sync::Mutex<std::collections::BTreeMap<String, u64>>>,
}

impl RequestCounter {
    /// Requests sent so far.
    pub fn get(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Requests sent so far per operation (`PutItem`, `Query`, ...).
    pub fn operations(&self) -> std::collections::BTreeMap<String, u64> {
        self.operations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Intercept for RequestCounter {
    fn name(&self) -> &'static str {
        "wsexec.RequestCounter"
    }

    fn read_before_transmit(
        &self,
        _ctx: &BeforeTransmitInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        self.count.fetch_add(1, Ordering::Relaxed);
        if let Some(m) = cfg.load::<aws_smithy_runtime_api::client::orchestrator::Metadata>() {
            let mut ops = self.operations.lock().unwrap_or_else(|p| p.into_inner());
            match ops.get_mut(m.name()) {
                Some(n) => *n += 1,
                None => {
                    ops.insert(m.name().to_owned(), 1);
                }
            }
        }
        Ok(())
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Where and as whom the client talks to DynamoDB.
#[derive(Clone, Debug)]
pub struct ClientSettings {
    pub region: String,
    pub credentials: Credentials,
    pub endpoint: Option<String>,
}

impl ClientSettings {
    /// The standard environment as Lambda provides it: region, static credentials and an
    /// optional endpoint override. No profile files, SSO or IMDS lookups: Lambda never needs
    /// them and each costs cold-start time.
    pub fn from_env() -> Result<ClientSettings, StorageError> {
        let init_err = |m: &str| StorageError::new(StorageErrorKind::Permission, "init", m);
        let region = env("AWS_REGION")
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .ok_or_else(|| {
                StorageError::new(StorageErrorKind::Invalid, "init", "AWS_REGION is not set")
            })?;
        let credentials = Credentials::new(
            env("AWS_ACCESS_KEY_ID").ok_or_else(|| init_err("AWS_ACCESS_KEY_ID is not set"))?,
            env("AWS_SECRET_ACCESS_KEY")
                .ok_or_else(|| init_err("AWS_SECRET_ACCESS_KEY is not set"))?,
            env("AWS_SESSION_TOKEN"),
            None,
            "environment",
        );
        let endpoint = env("AWS_ENDPOINT_URL_DYNAMODB").or_else(|| env("AWS_ENDPOINT_URL"));
        Ok(ClientSettings {
            region,
            credentials,
            endpoint,
        })
    }
}

/// The SDK client, counting every request it sends with `requests`.
pub fn build(at: &ClientSettings, settings: &DynamoSettings, requests: &RequestCounter) -> Client {
    let mut b = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(at.region.clone()))
        .credentials_provider(at.credentials.clone())
        .http_client(crate::tls::https_client(
            crate::tls::native_roots_requested(),
        ))
        .sleep_impl(aws_smithy_async::rt::sleep::TokioSleep::new())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(settings.connect_timeout)
                .operation_attempt_timeout(settings.attempt_timeout)
                .operation_timeout(settings.operation_timeout)
                .build(),
        )
        .retry_config(RetryConfig::standard().with_max_attempts(settings.max_attempts))
        .interceptor(requests.clone());
    if let Some(e) = &at.endpoint {
        b = b.endpoint_url(e);
    }
    Client::from_conf(b.build())
}

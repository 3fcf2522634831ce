//! The Amazon Bedrock provider: `ConverseStream` with the function's own credentials, built
//! like the DynamoDB client (static credentials, `crate::tls`, endpoint override), every stream
//! event kind handled and every failure classified.

pub mod convert;

use crate::llm::chat::{ChatProvider, ChatRequest, RoundOutput, RoundSink, ToolCall, Usage};
use crate::llm::config::AwsSettings;
use crate::llm::error::{LlmErrorKind, ProviderError};
use crate::llm::http::Timeouts;
use crate::llm::openai::stream::{MAX_TOOL_ARGUMENT_BYTES, MAX_TOOL_CALLS_PER_ROUND};
use async_trait::async_trait;
use aws_sdk_bedrockruntime::Client;
use aws_sdk_bedrockruntime::config::{
    BehaviorVersion, Credentials, Region, StalledStreamProtectionConfig,
};
use aws_sdk_bedrockruntime::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_bedrockruntime::operation::converse_stream::ConverseStreamError;
use aws_sdk_bedrockruntime::types::error::ConverseStreamOutputError;
use aws_sdk_bedrockruntime::types::{ContentBlockDelta, ContentBlockStart, ConverseStreamOutput};
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use std::collections::BTreeMap;

/// Bedrock error codes that mean rate limiting.
pub const THROTTLING_ERRORS: &[&str] = &[
    "ThrottlingException",
    "TooManyRequestsException",
    "ServiceQuotaExceededException",
];
/// Codes that mean the service or the model failed, or is not ready yet.
pub const UNAVAILABLE_ERRORS: &[&str] = &[
    "InternalServerException",
    "ServiceUnavailableException",
    "ModelStreamErrorException",
    "ModelNotReadyException",
    "ModelTimeoutException",
    "ModelErrorException",
];
/// Codes that mean the credentials or the role's policy refused the call.
pub const PERMISSION_ERRORS: &[&str] = &[
    "AccessDeniedException",
    "UnrecognizedClientException",
    "ExpiredTokenException",
    "InvalidSignatureException",
    "MissingAuthenticationTokenException",
];
/// Codes that mean the request itself was rejected (bad model id, context too long).
pub const INVALID_ERRORS: &[&str] = &[
    "ValidationException",
    "ResourceNotFoundException",
    "SerializationException",
];

/// Classifies a Bedrock error code against the tables.
pub fn kind_for_code(code: &str) -> Option<LlmErrorKind> {
    let is = |table: &[&str]| table.contains(&code);
    Some(if is(THROTTLING_ERRORS) {
        LlmErrorKind::Throttled
    } else if is(UNAVAILABLE_ERRORS) {
        LlmErrorKind::Unavailable
    } else if is(PERMISSION_ERRORS) {
        LlmErrorKind::Permission
    } else if is(INVALID_ERRORS) {
        LlmErrorKind::Invalid
    } else {
        return None;
    })
}

/// A Bedrock Runtime client and the stream's idle limit.
pub struct Bedrock {
    client: Client,
    timeouts: Timeouts,
}

impl Bedrock {
    /// A client for the AWS settings. The SDK does not retry (the agent loop retries throttling
    /// itself, only while nothing was streamed) and its stalled-stream guard is off (the idle
    /// limit here covers it, without cutting a model that thinks for a few seconds).
    pub fn new(aws: &AwsSettings, timeouts: Timeouts) -> Self {
        let credentials = Credentials::new(
            aws.access_key_id.clone(),
            aws.secret_access_key.clone(),
            aws.session_token.clone(),
            None,
            "environment",
        );
        let mut b = aws_sdk_bedrockruntime::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(aws.region.clone()))
            .credentials_provider(credentials)
            .http_client(crate::tls::https_streaming_client(
                crate::tls::native_roots_requested(),
            ))
            .sleep_impl(aws_smithy_async::rt::sleep::TokioSleep::new())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(timeouts.connect)
                    .build(),
            )
            .retry_config(RetryConfig::disabled())
            .stalled_stream_protection(StalledStreamProtectionConfig::disabled());
        if let Some(e) = &aws.endpoint {
            b = b.endpoint_url(e);
        }
        Bedrock {
            client: Client::from_conf(b.build()),
            timeouts,
        }
    }
}

#[async_trait]
impl ChatProvider for Bedrock {
    async fn round(
        &self,
        request: &ChatRequest<'_>,
        sink: &mut dyn RoundSink,
    ) -> Result<RoundOutput, ProviderError> {
        let send = self
            .client
            .converse_stream()
            .model_id(request.model)
            .set_messages(Some(convert::messages(request)?))
            .set_system(convert::system(request))
            .inference_config(convert::inference(request))
            .set_tool_config(convert::tool_config(request)?)
            .send();
        let mut output = tokio::time::timeout(self.timeouts.first_byte, send)
            .await
            .map_err(|_| ProviderError::unavailable("no response head in time"))?
            .map_err(classify)?;
        let mut round = RoundState::default();
        loop {
            let next = tokio::time::timeout(self.timeouts.idle, output.stream.recv())
                .await
                .map_err(|_| ProviderError::unavailable("stream stalled"))?
                .map_err(classify)?;
            let Some(event) = next else { break };
            if round.event(event, sink).await? {
                break;
            }
        }
        Ok(round.finish())
    }
}

#[derive(Default)]
struct PartialCall {
    id: String,
    name: String,
    input: String,
}

/// One round's stream state: tool-use blocks by content-block index, usage.
#[derive(Default)]
struct RoundState {
    calls: BTreeMap<i32, PartialCall>,
    usage: Option<Usage>,
}

impl RoundState {
    /// Handles one event; `true` once the stream is complete (the metadata event is last).
    async fn event(
        &mut self,
        event: ConverseStreamOutput,
        sink: &mut dyn RoundSink,
    ) -> Result<bool, ProviderError> {
        match event {
            ConverseStreamOutput::ContentBlockStart(e) => {
                if let Some(ContentBlockStart::ToolUse(start)) = e.start {
                    if self.calls.len() >= MAX_TOOL_CALLS_PER_ROUND {
                        return Err(ProviderError::protocol("too many tool calls in one answer"));
                    }
                    if self.calls.is_empty() {
                        sink.tool_call_started();
                    }
                    self.calls.insert(
                        e.content_block_index,
                        PartialCall {
                            id: start.tool_use_id,
                            name: start.name,
                            input: String::new(),
                        },
                    );
                }
            }
            ConverseStreamOutput::ContentBlockDelta(e) => match e.delta {
                Some(ContentBlockDelta::Text(text)) if !text.is_empty() => sink.text(&text).await?,
                Some(ContentBlockDelta::ToolUse(delta)) => {
                    let call = self.calls.get_mut(&e.content_block_index).ok_or_else(|| {
                        ProviderError::protocol("tool input for a block that never started")
                    })?;
                    if call.input.len() + delta.input.len() > MAX_TOOL_ARGUMENT_BYTES {
                        return Err(ProviderError::protocol("tool arguments too large"));
                    }
                    call.input.push_str(&delta.input);
                }
                // Reasoning, citations, images and unknown deltas are not part of the answer.
                _ => {}
            },
            ConverseStreamOutput::Metadata(e) => {
                if let Some(u) = e.usage {
                    self.usage = Some(Usage {
                        input_tokens: u64::try_from(u.input_tokens).unwrap_or(0),
                        output_tokens: u64::try_from(u.output_tokens).unwrap_or(0),
                    });
                }
                return Ok(true);
            }
            ConverseStreamOutput::MessageStart(_)
            | ConverseStreamOutput::ContentBlockStop(_)
            | ConverseStreamOutput::MessageStop(_) => {}
            _ => {} // event kinds newer than this SDK
        }
        Ok(false)
    }

    fn finish(self) -> RoundOutput {
        RoundOutput {
            tool_calls: self
                .calls
                .into_values()
                .map(|c| ToolCall {
                    id: c.id,
                    name: c.name,
                    arguments: c.input,
                })
                .collect(),
            usage: self.usage,
            model: None,
        }
    }
}

/// Classifies an SDK error: transport variants first, then the error code, then the status.
/// Only the code is kept: Bedrock's messages may quote the request.
fn classify<E, R>(err: SdkError<E, R>) -> ProviderError
where
    E: ProvideErrorMetadata + VariantCode,
{
    match &err {
        SdkError::TimeoutError(_) => ProviderError::unavailable("timed out"),
        SdkError::DispatchFailure(d) if d.is_user() => {
            ProviderError::new(LlmErrorKind::Invalid, "request could not be built")
        }
        SdkError::DispatchFailure(_) => ProviderError::unavailable("request could not be sent"),
        SdkError::ResponseError(_) => ProviderError::protocol("unreadable response"),
        SdkError::ServiceError(s) => {
            // Exception events carry their type in a frame header the metadata may not repeat.
            let code = s
                .err()
                .variant_code()
                .or(s.err().code())
                .unwrap_or("")
                .to_owned();
            let kind = kind_for_code(&code).unwrap_or(LlmErrorKind::Unavailable);
            let safe: String = code
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .take(64)
                .collect();
            ProviderError::new(kind, format!("service error: {safe}"))
        }
        SdkError::ConstructionFailure(_) => {
            ProviderError::new(LlmErrorKind::Invalid, "request could not be built")
        }
        _ => ProviderError::unavailable("unrecognised failure"),
    }
}

/// The error code a modelled error variant stands for.
trait VariantCode {
    fn variant_code(&self) -> Option<&'static str>;
}

impl VariantCode for ConverseStreamOutputError {
    fn variant_code(&self) -> Option<&'static str> {
        Some(match self {
            ConverseStreamOutputError::InternalServerException(_) => "InternalServerException",
            ConverseStreamOutputError::ModelStreamErrorException(_) => "ModelStreamErrorException",
            ConverseStreamOutputError::ValidationException(_) => "ValidationException",
            ConverseStreamOutputError::ThrottlingException(_) => "ThrottlingException",
            ConverseStreamOutputError::ServiceUnavailableException(_) => {
                "ServiceUnavailableException"
            }
            _ => return None,
        })
    }
}

impl VariantCode for ConverseStreamError {
    fn variant_code(&self) -> Option<&'static str> {
        Some(match self {
            ConverseStreamError::AccessDeniedException(_) => "AccessDeniedException",
            ConverseStreamError::InternalServerException(_) => "InternalServerException",
            ConverseStreamError::ModelErrorException(_) => "ModelErrorException",
            ConverseStreamError::ModelNotReadyException(_) => "ModelNotReadyException",
            ConverseStreamError::ModelTimeoutException(_) => "ModelTimeoutException",
            ConverseStreamError::ResourceNotFoundException(_) => "ResourceNotFoundException",
            ConverseStreamError::ServiceUnavailableException(_) => "ServiceUnavailableException",
            ConverseStreamError::ThrottlingException(_) => "ThrottlingException",
            ConverseStreamError::ValidationException(_) => "ValidationException",
            ConverseStreamError::ModelStreamErrorException(_) => "ModelStreamErrorException",
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every code in the tables classifies to its table's kind; unknown codes are `None`.
    #[test]
    fn codes_classify_by_table() {
        let tables: [(&[&str], LlmErrorKind); 4] = [
            (THROTTLING_ERRORS, LlmErrorKind::Throttled),
            (UNAVAILABLE_ERRORS, LlmErrorKind::Unavailable),
            (PERMISSION_ERRORS, LlmErrorKind::Permission),
            (INVALID_ERRORS, LlmErrorKind::Invalid),
        ];
        for (table, kind) in tables {
            for code in table {
                assert_eq!(kind_for_code(code), Some(kind), "{code}");
            }
        }
        assert_eq!(kind_for_code("SomethingNew"), None);
    }
}

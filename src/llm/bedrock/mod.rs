//! The Amazon Bedrock provider: `ConverseStream` with the function's own credentials.

use crate::llm::chat::{ChatProvider, ChatRequest, RoundOutput, RoundSink};
use crate::llm::config::AwsSettings;
use crate::llm::error::ProviderError;
use crate::llm::http::Timeouts;
use async_trait::async_trait;

/// A Bedrock Runtime client.
pub struct Bedrock {}

impl Bedrock {
    /// A client for the AWS settings.
    pub fn new(_aws: &AwsSettings, _timeouts: Timeouts) -> Self {
        Bedrock {}
    }
}

#[async_trait]
impl ChatProvider for Bedrock {
    async fn round(
        &self,
        _request: &ChatRequest<'_>,
        _sink: &mut dyn RoundSink,
    ) -> Result<RoundOutput, ProviderError> {
        Err(ProviderError::unavailable("not yet"))
    }
}

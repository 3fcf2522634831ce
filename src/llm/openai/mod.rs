//! The OpenAI-compatible provider: Chat Completions with `stream: true` over [`HttpClient`],
//! errors classified from the status and the body's error code.

pub mod request;
pub mod stream;
pub mod wtf8;

use crate::llm::chat::{ChatProvider, ChatRequest, RoundOutput, RoundSink};
use crate::llm::config::ApiKey;
use crate::llm::error::{LlmErrorKind, ProviderError, kind_for_status};
use crate::llm::http::{Endpoint, HttpClient, MAX_ERROR_BODY_BYTES, Streaming, Timeouts};
use async_trait::async_trait;
use serde_json::Value;
use std::time::Duration;
use stream::{Decoder, Piece};

/// The longest `Retry-After` read as given (a day): any longer one is as good as forever, and
/// the agent gives up on waits far shorter than this ([`crate::llm::agent::MAX_THROTTLE_WAIT`]).
pub const RETRY_AFTER_CEILING: Duration = Duration::from_secs(86_400);

/// A Chat Completions endpoint.
pub struct OpenAi {
    endpoint: Endpoint,
    api_key: Option<ApiKey>,
    http: HttpClient,
}

impl OpenAi {
    /// A provider for `base_url` (already validated), with an optional bearer key.
    pub fn new(
        base_url: &str,
        api_key: Option<ApiKey>,
        timeouts: Timeouts,
    ) -> Result<Self, ProviderError> {
        Ok(OpenAi {
            endpoint: Endpoint::parse(base_url)?,
            api_key,
            http: HttpClient::new(timeouts),
        })
    }
}

#[async_trait]
impl ChatProvider for OpenAi {
    /// Opens the connection the first round will use, when none is kept.
    async fn prepare(&self) {
        if self.http.idle_connections() == 0 {
            self.http.preconnect(&self.endpoint).await;
        }
    }

    async fn round(
        &self,
        request: &ChatRequest<'_>,
        sink: &mut dyn RoundSink,
    ) -> Result<RoundOutput, ProviderError> {
        let body = serde_json::to_vec(&request::body(request))
            .map_err(|_| ProviderError::new(LlmErrorKind::Invalid, "request not serialisable"))?;
        let mut headers = vec![("accept", "text/event-stream".to_owned())];
        if let Some(key) = &self.api_key {
            headers.push(("authorization", format!("Bearer {}", key.expose())));
        }
        let mut response = self
            .http
            .post(&self.endpoint, "/chat/completions", &headers, body)
            .await?;
        drop(headers);
        let status = response.status.as_u16();
        if let Some(kind) = kind_for_status(status) {
            return Err(error_response(kind, &mut response).await);
        }
        if !response.status.is_success() {
            return Err(ProviderError::protocol("unexpected status").with_status(status));
        }
        let round = read_stream(&mut response, sink).await?;
        // The closing chunk, so the connection is kept for the next round.
        response.finish().await;
        Ok(round)
    }
}

async fn read_stream(
    response: &mut Streaming,
    sink: &mut dyn RoundSink,
) -> Result<RoundOutput, ProviderError> {
    let mut decoder = Decoder::new();
    let mut pieces = Vec::new();
    while !decoder.is_done() {
        let Some(chunk) = response.next_chunk().await? else {
            break;
        };
        decoder.push(&chunk, &mut pieces)?;
        deliver(&mut pieces, sink).await?;
    }
    let round = decoder.finish(&mut pieces)?;
    deliver(&mut pieces, sink).await?;
    Ok(round)
}

async fn deliver(pieces: &mut Vec<Piece>, sink: &mut dyn RoundSink) -> Result<(), ProviderError> {
    for piece in pieces.drain(..) {
        match piece {
            Piece::Text(text) => sink.text(&text).await?,
            Piece::ToolCallStarted => sink.tool_call_started(),
        }
    }
    Ok(())
}

/// Classifies an error response by its status and, where it sharpens the picture, the body's
/// error code (only a short identifier from the body is ever logged, never its message).
async fn error_response(kind: LlmErrorKind, response: &mut Streaming) -> ProviderError {
    let status = response.status.as_u16();
    let retry_after = response
        .headers
        .get(hyper::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    let body = response.read_prefix(MAX_ERROR_BODY_BYTES).await;
    let error: Option<Value> = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("error").cloned());
    let code = error
        .as_ref()
        .and_then(stream::error_code)
        .map(str::to_owned);
    let detail = match &code {
        Some(c) => format!("http {status}: {c}"),
        None => format!("http {status}"),
    };
    let mut err = ProviderError::new(kind, detail).with_status(status);
    err.retry_after = retry_after;
    // A 400 that says "context length" is still `llm_invalid`; a 429 for a spent quota will not
    // clear by waiting.
    if kind == LlmErrorKind::Throttled && error.as_ref().is_some_and(stream::quota_spent) {
        err = err.never_clears();
    }
    err
}

/// `Retry-After` as delay-seconds (fractions accepted, at most [`RETRY_AFTER_CEILING`]); HTTP
/// dates are ignored (the caller backs off on its own). Never shortened: a retry before the
/// time the provider asked for is refused again, so the agent decides whether the wait fits.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let secs: f64 = value.trim().parse().ok()?;
    if !secs.is_finite() || secs < 0.0 {
        return None;
    }
    Some(Duration::from_secs_f64(
        secs.min(RETRY_AFTER_CEILING.as_secs_f64()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Delay-seconds parse as given, up to a day; dates and garbage are ignored.
    #[test]
    fn retry_after() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after("0.25"), Some(Duration::from_millis(250)));
        assert_eq!(parse_retry_after("3600"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_retry_after("1e300"), Some(RETRY_AFTER_CEILING));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }
}

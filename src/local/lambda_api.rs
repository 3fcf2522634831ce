//! Lambda's `Invoke` API (`POST /2015-03-31/functions/{name}/invocations`), so the function's
//! own SDK client dispatches worker invocations to the emulator unchanged and
//! `RUN_DISPATCH=async` runs locally exactly as deployed: an `Event` invocation is accepted
//! with 202 and runs through the same handler in its own task.
//!
//! It runs only what the function itself dispatches: a request must be SigV4-signed with the
//! credentials this gateway gave the function's Lambda client
//! ([`InvokeKey`](super::signature::InvokeKey)), and its event must be a worker event. A forged `$connect` or `$default` event, from a web page or another
//! local process, never reaches the handler (it would bypass `$connect`'s authentication).

use super::http::json_response;
use super::state::Gateway;
use crate::event::decode;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;

/// The path every `Invoke` request starts with (API version 2015-03-31).
pub const INVOKE_PREFIX: &str = "/2015-03-31/functions/";

/// Lambda's payload limit for asynchronous invocations: a larger event is refused (413).
pub const MAX_ASYNC_PAYLOAD_BYTES: usize = 256 * 1024;

/// A worker invocation's time limit: the template's function `Timeout` (Lambda's maximum).
pub const WORKER_TIMEOUT: Duration = Duration::from_secs(900);

/// Whether `path` is an `Invoke` of some function (`{prefix}{name}/invocations`).
pub fn is_invoke(path: &str) -> bool {
    path.strip_prefix(INVOKE_PREFIX)
        .and_then(|rest| rest.strip_suffix("/invocations"))
        .is_some_and(|name| !name.is_empty() && !name.contains('/'))
}

/// An error as Lambda's REST-JSON protocol spells it.
fn error(status: StatusCode, error_type: &'static str, message: &str) -> Response<Full<Bytes>> {
    let mut resp = json_response(
        status,
        serde_json::json!({ "Type": "User", "message": message }).to_string(),
    );
    resp.headers_mut().insert(
        "x-amzn-ErrorType",
        hyper::header::HeaderValue::from_static(error_type),
    );
    resp
}

/// Serves one `Invoke`: `Event` → 202 and the event runs in its own task (it holds `done`, so a
/// graceful shutdown waits for it); `RequestResponse` → the handler's output; `DryRun` → 204.
pub async fn handle(
    gw: Arc<Gateway>,
    req: Request<Incoming>,
    done: mpsc::Sender<()>,
) -> Response<Full<Bytes>> {
    if req.method() != Method::POST {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "InvalidRequestContentException",
            "Invoke is a POST",
        );
    }
    let kind = req
        .headers()
        .get("x-amz-invocation-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("RequestResponse")
        .to_owned();
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_ASYNC_PAYLOAD_BYTES).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestTooLargeException",
                "Request must be smaller than 262144 bytes for the InvokeAsync operation",
            );
        }
    };
    if let Err(refused) = gw.invoke_key.verify(&parts, &body, SystemTime::now()) {
        tracing::warn!(reason = %refused, "Invoke refused: not signed by this gateway's function");
        return error(
            StatusCode::FORBIDDEN,
            refused.error_type(),
            &refused.to_string(),
        );
    }
    let Ok(event) = String::from_utf8(body.to_vec()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContentException",
            "Could not parse request body into json",
        );
    };
    if !matches!(decode(&event), Ok(crate::event::Incoming::Worker(_))) {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContentException",
            "the local Invoke API runs only the function's own worker events",
        );
    }
    match kind.as_str() {
        "Event" => {
            tokio::spawn(async move {
                if let Err(e) = gw.invoke_raw(&event, WORKER_TIMEOUT).await {
                    tracing::warn!(error = %e, "asynchronous invocation failed");
                }
                drop(done);
            });
            let mut resp = Response::new(Full::new(Bytes::new()));
            *resp.status_mut() = StatusCode::ACCEPTED;
            resp
        }
        "DryRun" => {
            let mut resp = Response::new(Full::new(Bytes::new()));
            *resp.status_mut() = StatusCode::NO_CONTENT;
            resp
        }
        _ => match gw.invoke_raw(&event, WORKER_TIMEOUT).await {
            Ok(out) => json_response(StatusCode::OK, out),
            Err(e) => error(StatusCode::OK, "Unhandled", &e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only `/2015-03-31/functions/{name}/invocations` with one path segment as name is Invoke.
    #[test]
    fn invoke_paths_are_recognised() {
        assert!(is_invoke("/2015-03-31/functions/wsexec/invocations"));
        assert!(is_invoke(
            "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A1%3Afunction%3Ax/invocations"
        ));
        assert!(!is_invoke("/2015-03-31/functions//invocations"));
        assert!(!is_invoke("/2015-03-31/functions/a/b/invocations"));
        assert!(!is_invoke("/@connections/x"));
    }
}

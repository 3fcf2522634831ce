//! The `@connections/{connectionId}` management API (`POST`, `GET`, `DELETE`), answering like
//! API Gateway's so the function's notifier, the SDK's client and the AWS CLI work against it
//! unchanged.
//!
//! Requests are SigV4-signed by their clients; the emulator does not check signatures.

use super::MAX_MESSAGE_BYTES;
use super::codec::percent_decode;
use super::http::json_response;
use super::registry::Command;
use super::state::Gateway;
use crate::time::rfc3339_ms;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::HeaderValue;
use hyper::{Method, Request, Response, StatusCode};
use tokio_tungstenite::tungstenite::Message;

/// The path segment before a connection id; anything before it (a stage) is ignored.
const PREFIX: &str = "/@connections/";

/// What a management path names.
#[derive(Debug, PartialEq, Eq)]
pub enum Target {
    /// `/@connections/{id}`, URL-decoded: an id a connection could have.
    Connection(String),
    /// `/@connections/...` with an id no connection can have (empty, or with a `/` in it,
    /// raw or percent-encoded): the management API's own 400.
    InvalidId,
}

/// What a management path (`/@connections/{id}`, after any stage) names; `None` for any
/// other path.
pub fn target(path: &str) -> Option<Target> {
    let (_, rest) = path.split_once(PREFIX)?;
    let id = percent_decode(rest.trim_end_matches('/'));
    Some(if id.is_empty() || id.contains('/') {
        Target::InvalidId
    } else {
        Target::Connection(id)
    })
}

/// An error as API Gateway's REST-JSON protocol spells it: the type in `x-amzn-ErrorType`,
/// the text in `message`.
fn error(status: StatusCode, error_type: &'static str, message: &str) -> Response<Full<Bytes>> {
    let mut resp = json_response(
        status,
        serde_json::json!({ "message": message }).to_string(),
    );
    resp.headers_mut()
        .insert("x-amzn-ErrorType", HeaderValue::from_static(error_type));
    resp
}

/// 410 for a connection that does not exist (any more).
fn gone() -> Response<Full<Bytes>> {
    error(StatusCode::GONE, "GoneException", "Gone")
}

/// Serves one management request for `target`.
pub async fn handle(gw: &Gateway, target: Target, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let mut resp = match target {
        Target::Connection(id) => respond(gw, &id, req).await,
        // API Gateway's answer to an id it could never have issued.
        Target::InvalidId => error(
            StatusCode::BAD_REQUEST,
            "BadRequestException",
            "Invalid connectionId",
        ),
    };
    let request_id = gw.ids.aws_id();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert("x-amzn-RequestId", v);
    }
    resp
}

async fn respond(gw: &Gateway, id: &str, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let Some(conn) = gw.registry.get(id) else {
        return gone();
    };
    match *req.method() {
        Method::POST => {
            let body = match Limited::new(req.into_body(), MAX_MESSAGE_BYTES)
                .collect()
                .await
            {
                Ok(b) => b.to_bytes(),
                Err(e) if e.is::<LengthLimitError>() => {
                    return error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "PayloadTooLargeException",
                        "Message too long",
                    );
                }
                Err(_) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "BadRequestException",
                        "Unreadable body",
                    );
                }
            };
            let message = match std::str::from_utf8(&body) {
                Ok(text) => Message::text(text),
                Err(_) => Message::Binary(body),
            };
            // FIFO queue to the socket's single writer: pushes arrive in the order they were made.
            match conn.tx.send(Command::Push(message)).await {
                Ok(()) => json_response(StatusCode::OK, String::new()),
                Err(_) => gone(),
            }
        }
        Method::GET => {
            let info = &conn.info;
            let body = serde_json::json!({
                "connectedAt": rfc3339_ms(info.connected_at_ms),
                "identity": { "sourceIp": info.source_ip, "userAgent": info.user_agent },
                "lastActiveAt": rfc3339_ms(info.last_active_ms()),
            });
            json_response(StatusCode::OK, body.to_string())
        }
        Method::DELETE => match conn.tx.send(Command::Delete).await {
            Ok(()) => json_response(StatusCode::NO_CONTENT, String::new()),
            Err(_) => gone(),
        },
        _ => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowedException",
            "Method not allowed",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Management paths yield the decoded id, with or without a stage before them; an id with
    /// a slash in it, raw or encoded, or none at all, is invalid.
    #[test]
    fn paths_name_connections() {
        let id = |s: &str| Some(Target::Connection(s.to_owned()));
        assert_eq!(
            target("/@connections/L0SM9cOFvHcCIhw%3D"),
            id("L0SM9cOFvHcCIhw=")
        );
        assert_eq!(target("/local/@connections/abc="), id("abc="));
        assert_eq!(target("/@connections/abc=/"), id("abc="));
        for invalid in ["/@connections/", "/@connections/a/b", "/@connections/a%2Fb"] {
            assert_eq!(target(invalid), Some(Target::InvalidId), "{invalid}");
        }
        assert_eq!(target("/chat"), None);
    }
}

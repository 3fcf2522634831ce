//! The HTTP side of every request: the limits API Gateway puts on a request's head, and the
//! JSON responses the gateway builds itself.

use super::{MAX_HEAD_BYTES, MAX_URL_CHARS};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode, Version};

/// Refuses a request's head as API Gateway would, before anything is invoked: a URL over
/// [`MAX_URL_CHARS`] (414), a request line and header values over [`MAX_HEAD_BYTES`] (431),
/// and an HTTP/1.1 request without exactly one `Host` (400, RFC 9112 §3.2).
pub fn check_head<B>(req: &Request<B>) -> Result<(), Box<Response<Full<Bytes>>>> {
    let target = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if target > MAX_URL_CHARS {
        return Err(Box::new(json_response(
            StatusCode::URI_TOO_LONG,
            r#"{"message":"Request-URI Too Long"}"#.into(),
        )));
    }
    let line = format!("{} ", req.method()).len() + target + " HTTP/1.1\r\n".len();
    let values: usize = req.headers().values().map(HeaderValue::len).sum();
    if line + values > MAX_HEAD_BYTES {
        return Err(Box::new(json_response(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            r#"{"message":"Request Header Fields Too Large"}"#.into(),
        )));
    }
    let hosts = req.headers().get_all(header::HOST).iter().count();
    if req.version() >= Version::HTTP_11 && hosts != 1 {
        return Err(Box::new(json_response(
            StatusCode::BAD_REQUEST,
            r#"{"message":"Bad Request: exactly one Host header is required"}"#.into(),
        )));
    }
    Ok(())
}

/// A response with a JSON (or empty) body.
pub fn json_response(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

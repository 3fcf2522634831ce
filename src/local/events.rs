//! AWS-exact WebSocket events (`CONNECT`, `MESSAGE`, `DISCONNECT`), keyed exactly like the
//! files in `events/`, and API Gateway's route selection.

use super::codec::{base64, parse_query};
use super::ids::IdGen;
use crate::time::rfc3339_ms;
use serde_json::{Map, Value, json};

/// The API's route selection expression (`template.yaml`): the `type` field of a JSON body.
pub const ROUTE_SELECTION_EXPRESSION: &str = "$request.body.type";

/// The routes the API declares besides `$connect` / `$disconnect`: only `$default`, so every
/// message goes there, with its direct reply as the two-way route response.
pub const DECLARED_ROUTES: [&str; 1] = ["$default"];

/// Headers API Gateway consumes and never passes on to `$connect`.
const HOP_BY_HOP: [&str; 4] = ["connection", "upgrade", "keep-alive", "transfer-encoding"];

/// What every event of one connection shares.
#[derive(Clone, Debug)]
pub struct ConnectionContext {
    pub api_id: String,
    /// `127.0.0.1:{port}`.
    pub domain_name: String,
    pub stage: String,
    pub connection_id: String,
    pub connected_at_ms: u64,
    pub source_ip: String,
}

/// The parts of the upgrade request a `CONNECT` event carries.
#[derive(Clone, Debug, Default)]
pub struct UpgradeRequest {
    /// Headers in arrival order, names as received (hyper lowercases them).
    pub headers: Vec<(String, String)>,
    /// The raw query string, without `?`.
    pub query: Option<String>,
    pub port: u16,
}

/// A message body as API Gateway passes it: text as is, binary base64-encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    Text(String),
    Binary(Vec<u8>),
}

/// API Gateway's route selection: the route whose key equals the selection expression's value,
/// else `$default` (also when the body is not JSON or has no string `type`).
pub fn select_route(body: &Body, declared: &[&str]) -> String {
    let Body::Text(text) = body else {
        return "$default".into();
    };
    let selected = serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| v.get("type").and_then(Value::as_str).map(str::to_owned));
    match selected {
        Some(key) if declared.contains(&key.as_str()) => key,
        _ => "$default".into(),
    }
}

/// API Gateway's `requestTime` format (`28/Nov/2026:13:40:00 +0000`).
pub fn request_time(ms: u64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    // Reuses the crate's calendar arithmetic: `2026-11-28T13:40:00.123Z`.
    let iso = rfc3339_ms(ms);
    let part = |a: usize, b: usize| iso.get(a..b).unwrap_or("00");
    let month = part(5, 7)
        .parse::<usize>()
        .ok()
        .and_then(|m| MONTHS.get(m.wrapping_sub(1)))
        .copied()
        .unwrap_or("Jan");
    format!(
        "{}/{month}/{}:{} +0000",
        part(8, 10),
        part(0, 4),
        part(11, 19)
    )
}

/// A header name as clients usually spell it (`Sec-WebSocket-Key`), since hyper lowercases
/// names and API Gateway passes them as received.
pub fn canonical_header(name: &str) -> String {
    name.split('-')
        .map(|word| match word {
            "websocket" => "WebSocket".to_owned(),
            "amzn" => "Amzn".to_owned(),
            "id" => "Id".to_owned(),
            w => {
                let mut cs = w.chars();
                match cs.next() {
                    Some(first) => first.to_ascii_uppercase().to_string() + cs.as_str(),
                    None => String::new(),
                }
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// `{name: last value}` and `{name: [every value]}`, as API Gateway fills `headers` /
/// `multiValueHeaders` and the query string pair.
fn single_and_multi(pairs: &[(String, String)]) -> (Value, Value) {
    let mut single = Map::new();
    let mut multi: Map<String, Value> = Map::new();
    for (k, v) in pairs {
        single.insert(k.clone(), Value::String(v.clone()));
        match multi.get_mut(k) {
            Some(Value::Array(a)) => a.push(Value::String(v.clone())),
            _ => {
                multi.insert(k.clone(), json!([v]));
            }
        }
    }
    (Value::Object(single), Value::Object(multi))
}

/// The `requestContext` keys every event has, in the files' order.
fn request_context(
    ctx: &ConnectionContext,
    ids: &IdGen,
    route_key: &str,
    event_type: &str,
    now: u64,
) -> Map<String, Value> {
    let request_id = ids.aws_id();
    let mut rc = Map::new();
    rc.insert("routeKey".into(), route_key.into());
    rc.insert("eventType".into(), event_type.into());
    rc.insert("extendedRequestId".into(), request_id.clone().into());
    rc.insert("requestTime".into(), request_time(now).into());
    rc.insert("messageDirection".into(), "IN".into());
    rc.insert("stage".into(), ctx.stage.clone().into());
    rc.insert("connectedAt".into(), ctx.connected_at_ms.into());
    rc.insert("requestTimeEpoch".into(), now.into());
    rc.insert("identity".into(), json!({ "sourceIp": ctx.source_ip }));
    rc.insert("requestId".into(), request_id.into());
    rc.insert("domainName".into(), ctx.domain_name.clone().into());
    rc.insert("connectionId".into(), ctx.connection_id.clone().into());
    rc.insert("apiId".into(), ctx.api_id.clone().into());
    rc
}

/// The `CONNECT` event of an upgrade request.
pub fn connect(ctx: &ConnectionContext, ids: &IdGen, req: &UpgradeRequest, now: u64) -> Value {
    let mut headers: Vec<(String, String)> = req
        .headers
        .iter()
        .filter(|(k, _)| !HOP_BY_HOP.contains(&k.to_ascii_lowercase().as_str()))
        .map(|(k, v)| (canonical_header(k), v.clone()))
        .collect();
    let trace = format!("Root=1-{:08x}-{}", now / 1000, ids.hex(24));
    headers.push(("X-Amzn-Trace-Id".into(), trace));
    headers.push(("X-Forwarded-For".into(), ctx.source_ip.clone()));
    headers.push(("X-Forwarded-Port".into(), req.port.to_string()));
    headers.push(("X-Forwarded-Proto".into(), "http".into()));
    let user_agent = req
        .headers
        .iter()
        .rev()
        .find(|(k, _)| k.eq_ignore_ascii_case("user-agent"))
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let (single, multi) = single_and_multi(&headers);
    let mut event = Map::new();
    event.insert("headers".into(), single);
    event.insert("multiValueHeaders".into(), multi);
    let query = req.query.as_deref().map(parse_query).unwrap_or_default();
    if !query.is_empty() {
        let (single, multi) = single_and_multi(&query);
        event.insert("queryStringParameters".into(), single);
        event.insert("multiValueQueryStringParameters".into(), multi);
    }
    let mut rc = request_context(ctx, ids, "$connect", "CONNECT", now);
    rc.insert(
        "identity".into(),
        json!({ "sourceIp": ctx.source_ip, "userAgent": user_agent }),
    );
    event.insert("requestContext".into(), Value::Object(rc));
    event.insert("isBase64Encoded".into(), false.into());
    Value::Object(event)
}

/// The `MESSAGE` event of one client message, routed by [`select_route`].
pub fn message(ctx: &ConnectionContext, ids: &IdGen, body: &Body, now: u64) -> Value {
    let route = select_route(body, &DECLARED_ROUTES);
    let mut rc = request_context(ctx, ids, &route, "MESSAGE", now);
    rc.insert("messageId".into(), ids.aws_id().into());
    let (body, is_base64) = match body {
        Body::Text(t) => (t.clone(), false),
        Body::Binary(b) => (base64(b), true),
    };
    json!({
        "requestContext": Value::Object(rc),
        "body": body,
        "isBase64Encoded": is_base64,
    })
}

/// The `DISCONNECT` event of a closed connection.
pub fn disconnect(
    ctx: &ConnectionContext,
    ids: &IdGen,
    status: u16,
    reason: &str,
    now: u64,
) -> Value {
    // API Gateway's $disconnect carries these four headers, three of them empty.
    let headers = vec![
        ("Host".to_owned(), ctx.domain_name.clone()),
        ("x-api-key".to_owned(), String::new()),
        ("X-Forwarded-For".to_owned(), String::new()),
        ("x-restapi".to_owned(), String::new()),
    ];
    let (single, multi) = single_and_multi(&headers);
    let mut rc = request_context(ctx, ids, "$disconnect", "DISCONNECT", now);
    rc.insert("disconnectStatusCode".into(), status.into());
    rc.insert("disconnectReason".into(), reason.into());
    json!({
        "headers": single,
        "multiValueHeaders": multi,
        "requestContext": Value::Object(rc),
        "isBase64Encoded": false,
    })
}

/// The EventBridge `Scheduled Event` the template's sweep schedule sends (like
/// `events/scheduled-sweep.json`).
pub fn scheduled(ids: &IdGen, now: u64) -> Value {
    let id = format!(
        "{}-{}-{}-{}-{}",
        ids.hex(8),
        ids.hex(4),
        ids.hex(4),
        ids.hex(4),
        ids.hex(12)
    );
    let time = rfc3339_ms(now);
    json!({
        "version": "0",
        "id": id,
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": format!("{}Z", time.get(..19).unwrap_or("1970-01-01T00:00:00")),
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/wsexec-local-Sweep"],
        "detail": {},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `requestTime` uses API Gateway's format, in UTC.
    #[test]
    fn request_time_matches_api_gateway() {
        assert_eq!(
            request_time(1_795_873_200_123),
            "28/Nov/2026:13:40:00 +0000"
        );
        assert_eq!(request_time(0), "01/Jan/1970:00:00:00 +0000");
    }

    /// Only declared routes are selected; anything else, or a non-JSON body, is `$default`.
    #[test]
    fn route_selection_falls_back_to_default() {
        let text = |s: &str| Body::Text(s.to_owned());
        assert_eq!(
            select_route(&text(r#"{"type":"start_agent"}"#), &DECLARED_ROUTES),
            "$default"
        );
        assert_eq!(
            select_route(
                &text(r#"{"type":"sendmessage"}"#),
                &["$default", "sendmessage"]
            ),
            "sendmessage"
        );
        assert_eq!(
            select_route(&text("not json"), &["$default", "not json"]),
            "$default"
        );
        assert_eq!(
            select_route(&text(r#"{"type":7}"#), &DECLARED_ROUTES),
            "$default"
        );
        assert_eq!(
            select_route(&Body::Binary(vec![1]), &DECLARED_ROUTES),
            "$default"
        );
    }

    /// Header names get their usual spelling back.
    #[test]
    fn headers_get_their_usual_spelling() {
        assert_eq!(
            canonical_header("sec-websocket-protocol"),
            "Sec-WebSocket-Protocol"
        );
        assert_eq!(canonical_header("user-agent"), "User-Agent");
    }

    /// The emulated schedule's event has the sample's keys and is decoded as a sweep.
    #[test]
    fn scheduled_event_is_a_sweep() {
        let built = scheduled(&IdGen::new(), 1_795_873_260_000);
        let sample: Value =
            serde_json::from_str(include_str!("../../events/scheduled-sweep.json")).unwrap();
        let keys = |v: &Value| v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>());
        assert_eq!(keys(&built), keys(&sample));
        assert_eq!(built["time"], "2026-11-28T13:41:00Z");
        assert!(matches!(
            crate::event::decode(&built.to_string()),
            Ok(crate::event::Incoming::Scheduled)
        ));
    }
}

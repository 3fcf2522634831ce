//! `MCP_SERVERS`: the MCP servers the `llm` agent takes tools from, parsed and checked once at
//! start-up, with an error naming the entry and the rule it breaks (never a header value).

use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// The variable holding the JSON array of servers.
pub const MCP_SERVERS_VAR: &str = "MCP_SERVERS";
/// How long one `tools/call` may take when the entry sets no `timeout_ms`: a lookup in a
/// deployer's own system answers in well under a second, and the model and the client wait
/// for the slowest call of a round.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest `timeout_ms` accepted: a run's default time limit is 15 s and an inline run ends
/// within API Gateway's 29 s, so a longer call could only ever end the run, not answer.
pub const MAX_CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Servers per deployment: each is contacted at discovery on every cold instance, concurrently;
/// past a handful the tool list is too long for a model to choose well anyway.
pub const MAX_SERVERS: usize = 16;
/// The longest server name: with `__` and the tool's name it must fit 64 characters.
pub const MAX_NAME_CHARS: usize = 32;
/// Headers per server (bearer tokens and API keys need one or two).
pub const MAX_HEADERS: usize = 16;
/// The longest header value: a JWT or an API key fits with room to spare.
pub const MAX_HEADER_VALUE_BYTES: usize = 8 * 1024;
/// Tool names in one allow-list.
pub const MAX_ALLOWED_TOOLS: usize = 256;
/// The longest URL accepted.
pub const MAX_URL_CHARS: usize = 2048;
/// Headers the transport sets itself: an entry may not override them.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-type",
    "content-length",
    "accept",
    "mcp-session-id",
    "mcp-protocol-version",
    "last-event-id",
    "connection",
    "transfer-encoding",
];

/// One configured server.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// `[a-z0-9_-]{1,32}`, unique: the prefix of every tool it offers.
    pub name: String,
    /// The Streamable HTTP endpoint (the only address ever contacted for this server).
    pub url: String,
    /// Sent on every request (credentials); never logged, never in `Debug`.
    pub headers: Vec<(String, String)>,
    /// Only these tools are offered, when set.
    pub tools: Option<Vec<String>>,
    /// One `tools/call`'s time limit.
    pub timeout: Duration,
    /// Which of this server's tools wait for the user's approval before each call.
    pub require_approval: RequireApproval,
}

/// An entry's `require_approval`: which of its tools' calls wait for the user's answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum RequireApproval {
    /// Unset: the tools the server annotates `destructiveHint: true` (and not read-only).
    #[default]
    Destructive,
    /// `"always"`: every call.
    Always,
    /// `"never"`: none, whatever the server's annotations say.
    Never,
    /// A list of the server's own tool names: those, and no other.
    Tools(Vec<String>),
}

impl RequireApproval {
    /// Whether a call to the server's tool `remote_name`, annotated as `destructive` (only an
    /// explicit `destructiveHint: true` counts) and `read_only`, waits for approval.
    pub fn covers(&self, remote_name: &str, destructive: Option<bool>, read_only: bool) -> bool {
        match self {
            RequireApproval::Destructive => destructive == Some(true) && !read_only,
            RequireApproval::Always => true,
            RequireApproval::Never => false,
            RequireApproval::Tools(names) => names.iter().any(|n| n == remote_name),
        }
    }
}

impl fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header_names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("ServerConfig")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("headers", &header_names)
            .field("tools", &self.tools)
            .field("timeout", &self.timeout)
            .field("require_approval", &self.require_approval)
            .finish()
    }
}

/// Why `MCP_SERVERS` was refused: which entry (by position and, when it has one, name) and
/// which rule. Never carries a value from the variable besides the entry's name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum McpConfigError {
    #[error("MCP_SERVERS is not a JSON array of server objects")]
    NotAnArray,
    #[error("MCP_SERVERS lists more than {MAX_SERVERS} servers")]
    TooMany,
    #[error("MCP_SERVERS entry {index}{}: {rule}", name_part(.name))]
    Entry {
        /// 1-based position in the array.
        index: usize,
        name: Option<String>,
        rule: &'static str,
    },
}

fn name_part(name: &Option<String>) -> String {
    name.as_ref()
        .map(|n| format!(" ({n:?})"))
        .unwrap_or_default()
}

/// The entry as written; unknown fields are refused so a typo (`header`) is not silently
/// ignored.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    name: serde_json::Value,
    url: serde_json::Value,
    #[serde(default)]
    headers: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default)]
    tools: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    timeout_ms: Option<serde_json::Value>,
    #[serde(default)]
    require_approval: Option<serde_json::Value>,
}

/// Parses `MCP_SERVERS`. Unset or blank is no servers.
pub fn parse(value: Option<&str>) -> Result<Vec<ServerConfig>, McpConfigError> {
    let Some(text) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(Vec::new());
    };
    let entries: Vec<serde_json::Value> =
        serde_json::from_str(text).map_err(|_| McpConfigError::NotAnArray)?;
    if entries.len() > MAX_SERVERS {
        return Err(McpConfigError::TooMany);
    }
    let mut servers: Vec<ServerConfig> = Vec::with_capacity(entries.len());
    for (i, entry) in entries.into_iter().enumerate() {
        let index = i + 1;
        let name = entry
            .get("name")
            .and_then(|n| n.as_str())
            .filter(|n| valid_name(n))
            .map(str::to_owned);
        let fail = |rule: &'static str| McpConfigError::Entry {
            index,
            name: name.clone(),
            rule,
        };
        if !entry.is_object() {
            return Err(fail("an entry must be an object"));
        }
        let raw: RawEntry = serde_json::from_value(entry).map_err(|_| {
            fail("unknown or missing field (allowed: name, url, headers, tools, timeout_ms, require_approval)")
        })?;
        let Some(name) = name.clone() else {
            return Err(fail("name must match [a-z0-9_-]{1,32}"));
        };
        if servers.iter().any(|s| s.name == name) {
            return Err(fail("name is used by an earlier entry"));
        }
        let url = raw
            .url
            .as_str()
            .ok_or_else(|| fail("url must be a string"))?;
        check_url(url).map_err(fail)?;
        let headers = check_headers(raw.headers).map_err(fail)?;
        let tools = match raw.tools {
            None => None,
            Some(list) if list.len() > MAX_ALLOWED_TOOLS => {
                return Err(fail("tools lists more than 256 names"));
            }
            Some(list) => Some(
                list.into_iter()
                    .map(|t| match t {
                        serde_json::Value::String(s) if !s.is_empty() && s.len() <= 128 => Ok(s),
                        _ => Err(fail("tools must be an array of tool names")),
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        let timeout = match raw.timeout_ms {
            None => DEFAULT_CALL_TIMEOUT,
            Some(v) => v
                .as_u64()
                .filter(|ms| (1..=MAX_CALL_TIMEOUT.as_millis() as u64).contains(ms))
                .map(Duration::from_millis)
                .ok_or_else(|| fail("timeout_ms must be a whole number from 1 to 60000"))?,
        };
        let require_approval = match raw.require_approval {
            None => RequireApproval::Destructive,
            Some(serde_json::Value::String(s)) if s == "always" => RequireApproval::Always,
            Some(serde_json::Value::String(s)) if s == "never" => RequireApproval::Never,
            Some(serde_json::Value::Array(list)) if list.len() <= MAX_ALLOWED_TOOLS => {
                RequireApproval::Tools(
                    list.into_iter()
                        .map(|t| match t {
                            serde_json::Value::String(s) if !s.is_empty() && s.len() <= 128 => {
                                Ok(s)
                            }
                            _ => Err(()),
                        })
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|()| {
                            fail("require_approval must be \"always\", \"never\" or an array of tool names")
                        })?,
                )
            }
            Some(_) => {
                return Err(fail(
                    "require_approval must be \"always\", \"never\" or an array of tool names",
                ));
            }
        };
        let _ = raw.name;
        servers.push(ServerConfig {
            name,
            url: url.to_owned(),
            headers,
            tools,
            timeout,
            require_approval,
        });
    }
    Ok(servers)
}

fn valid_name(name: &str) -> bool {
    (1..=MAX_NAME_CHARS).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// `https://` anywhere, `http://` only to a loopback host (a local server in development):
/// headers carry credentials, and plain HTTP across a network would hand them to anyone on
/// the path.
fn check_url(url: &str) -> Result<(), &'static str> {
    if url.len() > MAX_URL_CHARS {
        return Err("url is longer than 2048 characters");
    }
    let uri: hyper::Uri = url.parse().map_err(|_| "url is not a URL")?;
    let host = uri
        .host()
        .filter(|h| !h.is_empty())
        .ok_or("url has no host")?;
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err("url must not carry credentials (use headers)");
    }
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if is_loopback(host) => Ok(()),
        Some("http") => Err("url must be https:// (http:// only to a loopback host)"),
        _ => Err("url must be an https:// URL"),
    }
}

/// `localhost`, 127.0.0.0/8 or `[::1]`.
pub fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn check_headers(
    raw: Option<BTreeMap<String, serde_json::Value>>,
) -> Result<Vec<(String, String)>, &'static str> {
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    if raw.len() > MAX_HEADERS {
        return Err("headers has more than 16 entries");
    }
    let mut headers = Vec::with_capacity(raw.len());
    for (name, value) in raw {
        let serde_json::Value::String(value) = value else {
            return Err("header values must be strings");
        };
        if hyper::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err("a header name is not a valid HTTP header name");
        }
        if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            return Err("a header name is one the transport sets itself");
        }
        if value.len() > MAX_HEADER_VALUE_BYTES
            || hyper::header::HeaderValue::from_str(&value).is_err()
        {
            return Err("a header value is not a valid HTTP header value (or over 8 KiB)");
        }
        headers.push((name, value));
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule_of(json: &str) -> (usize, Option<String>, &'static str) {
        match parse(Some(json)) {
            Err(McpConfigError::Entry { index, name, rule }) => (index, name, rule),
            other => panic!("{json}: {other:?}"),
        }
    }

    /// Unset and blank mean no servers; a full entry keeps every field.
    #[test]
    fn parses_entries() {
        assert_eq!(parse(None), Ok(vec![]));
        assert_eq!(parse(Some("  ")), Ok(vec![]));
        let s = parse(Some(
            r#"[{"name":"orders","url":"https://mcp.example.com/mcp","headers":{"Authorization":"Bearer s3cret"},
                "tools":["lookup"],"timeout_ms":2500},
               {"name":"local-1","url":"http://127.0.0.1:9000/mcp"}]"#,
        ))
        .unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].name, "orders");
        assert_eq!(
            s[0].headers,
            vec![("Authorization".into(), "Bearer s3cret".into())]
        );
        assert_eq!(s[0].tools.as_deref(), Some(&["lookup".to_owned()][..]));
        assert_eq!(s[0].timeout, Duration::from_millis(2500));
        assert_eq!(s[1].timeout, DEFAULT_CALL_TIMEOUT);
        assert!(!format!("{s:?}").contains("s3cret"));
    }

    /// Every broken rule is an error naming the entry (position and name) and the rule, never
    /// a header value.
    #[test]
    fn every_rule_names_entry_and_rule() {
        assert_eq!(parse(Some("{")), Err(McpConfigError::NotAnArray));
        assert_eq!(
            parse(Some(r#"{"name":"a"}"#)),
            Err(McpConfigError::NotAnArray)
        );
        let ok = r#"{"name":"a","url":"https://h/mcp"}"#;
        let cases = [
            (r#"[1]"#, 1, None, "an entry must be an object"),
            (
                r#"[{"name":"A","url":"https://h"}]"#,
                1,
                None,
                "name must match",
            ),
            (
                r#"[{"url":"https://h"}]"#,
                1,
                None,
                "unknown or missing field",
            ),
            (
                r#"[{"name":"b","url":"https://h","header":{}}]"#,
                1,
                Some("b"),
                "unknown or missing field",
            ),
            (
                &format!("[{ok},{ok}]"),
                2,
                Some("a"),
                "used by an earlier entry",
            ),
            (
                r#"[{"name":"b","url":"http://example.com/mcp"}]"#,
                1,
                Some("b"),
                "loopback",
            ),
            (
                r#"[{"name":"b","url":"ftp://h/x"}]"#,
                1,
                Some("b"),
                "https://",
            ),
            (
                r#"[{"name":"b","url":"https://u:p@h/x"}]"#,
                1,
                Some("b"),
                "credentials",
            ),
            (
                r#"[{"name":"b","url":"not a url"}]"#,
                1,
                Some("b"),
                "not a URL",
            ),
            (
                r#"[{"name":"b","url":"https://h","timeout_ms":0}]"#,
                1,
                Some("b"),
                "timeout_ms",
            ),
            (
                r#"[{"name":"b","url":"https://h","timeout_ms":60001}]"#,
                1,
                Some("b"),
                "timeout_ms",
            ),
            (
                r#"[{"name":"b","url":"https://h","tools":[3]}]"#,
                1,
                Some("b"),
                "tools must be",
            ),
            (
                r#"[{"name":"b","url":"https://h","require_approval":true}]"#,
                1,
                Some("b"),
                "require_approval must be",
            ),
            (
                r#"[{"name":"b","url":"https://h","require_approval":"sometimes"}]"#,
                1,
                Some("b"),
                "require_approval must be",
            ),
            (
                r#"[{"name":"b","url":"https://h","require_approval":[""]}]"#,
                1,
                Some("b"),
                "require_approval must be",
            ),
            (
                r#"[{"name":"b","url":"https://h","headers":{"Host":"x"}}]"#,
                1,
                Some("b"),
                "sets itself",
            ),
            (
                r#"[{"name":"b","url":"https://h","headers":{"X-Key":"line\nbreak-s3cret"}}]"#,
                1,
                Some("b"),
                "header value",
            ),
        ];
        for (json, index, name, rule) in cases {
            let (i, n, r) = rule_of(json);
            assert_eq!((i, n.as_deref()), (index, name), "{json}");
            assert!(r.contains(rule), "{json}: {r}");
            let shown = parse(Some(json)).unwrap_err().to_string();
            assert!(shown.starts_with("MCP_SERVERS entry"), "{shown}");
            assert!(!shown.contains("s3cret"), "{shown}");
        }
        let many = format!("[{}]", vec![ok; MAX_SERVERS + 1].join(","));
        assert_eq!(parse(Some(&many)), Err(McpConfigError::TooMany));
    }

    /// Loopback hosts are the only plain-HTTP exception.
    #[test]
    fn loopback_hosts() {
        for h in ["localhost", "127.0.0.1", "127.9.9.9", "[::1]", "::1"] {
            assert!(is_loopback(h), "{h}");
        }
        for h in [
            "10.0.0.1",
            "example.com",
            "localhost.example.com",
            "0.0.0.0",
        ] {
            assert!(!is_loopback(h), "{h}");
        }
    }

    /// `require_approval`: unset asks only for tools the server explicitly annotates
    /// destructive (not read-only); `always`, `never` and a list of the server's own tool names
    /// say exactly which.
    #[test]
    fn require_approval_says_which_calls_wait() {
        let entry = |v: &str| {
            let json = format!(r#"[{{"name":"b","url":"https://h"{v}}}]"#);
            parse(Some(&json)).unwrap().remove(0).require_approval
        };
        let unset = entry("");
        assert_eq!(unset, RequireApproval::Destructive);
        assert!(unset.covers("drop", Some(true), false));
        assert!(!unset.covers("drop", Some(true), true), "read-only wins");
        assert!(!unset.covers("plain", None, false), "unannotated: no");
        assert!(!unset.covers("safe", Some(false), false));
        let always = entry(r#","require_approval":"always""#);
        assert!(always.covers("lookup", Some(false), true));
        let never = entry(r#","require_approval":"never""#);
        assert!(!never.covers("drop", Some(true), false));
        let list = entry(r#","require_approval":["refund","mail"]"#);
        assert!(list.covers("mail", None, true));
        assert!(!list.covers("drop", Some(true), false), "the list is exact");
    }
}

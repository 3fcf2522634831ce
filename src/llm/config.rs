//! The `llm` agent's settings, read through a lookup function (the environment in Lambda, a
//! map in tests), with a typed error for every missing or invalid value.

use std::fmt;

/// Every variable the `llm` agent reads (the AWS ones Bedrock needs are the SDK's standard ones).
pub const ENV_VARS: &[&str] = &[
    "LLM_PROVIDER",
    "LLM_BASE_URL",
    "LLM_API_KEY",
    "LLM_MODEL",
    "LLM_SYSTEM_PROMPT",
    "LLM_MAX_TOKENS",
    "LLM_TEMPERATURE",
    "LLM_TOOLS",
    "LLM_TOOLS_APPROVAL",
    "MCP_SERVERS",
];

/// The OpenAI API itself, when `LLM_BASE_URL` is unset.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";
/// Output tokens per model request when `LLM_MAX_TOKENS` is unset: a long chat answer, while a
/// runaway generation stays far below the run's deadline.
pub const DEFAULT_MAX_TOKENS: u32 = 1024;
/// The largest `LLM_MAX_TOKENS` accepted: above every current model's output limit, so a larger
/// value is a typo rather than a wish.
pub const MAX_TOKENS_LIMIT: u32 = 200_000;
/// The largest `LLM_TEMPERATURE` accepted (OpenAI's and Bedrock's upper bound).
pub const MAX_TEMPERATURE: f32 = 2.0;
/// The longest `LLM_SYSTEM_PROMPT` accepted: it is sent with every request, so a huge one costs
/// tokens on every round (and is more likely a mistake than a prompt).
pub const MAX_SYSTEM_PROMPT_CHARS: usize = 32 * 1024;

/// Which API the agent talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider {
    /// Chat Completions (OpenAI, vLLM, llama.cpp, Ollama, LiteLLM, hosted providers).
    OpenAi,
    /// Amazon Bedrock `ConverseStream`.
    Bedrock,
}

/// An API key; its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// The key itself, for the `Authorization` header only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// What Bedrock needs from the AWS environment, read once with the other settings.
#[derive(Clone, PartialEq, Eq)]
pub struct AwsSettings {
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
    /// `AWS_ENDPOINT_URL_BEDROCK_RUNTIME` (or `AWS_ENDPOINT_URL`): a local endpoint in tests.
    pub endpoint: Option<String>,
}

impl fmt::Debug for AwsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsSettings")
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// The validated settings of the `llm` agent.
#[derive(Clone, Debug, PartialEq)]
pub struct LlmSettings {
    pub provider: Provider,
    /// Chat Completions base URL without a trailing slash (`.../v1`).
    pub base_url: String,
    pub api_key: Option<ApiKey>,
    pub model: String,
    pub system_prompt: Option<String>,
    pub max_tokens: u32,
    /// `None`: the provider's default.
    pub temperature: Option<f32>,
    /// The names of the tools offered, in `LLM_TOOLS` order.
    pub tools: Vec<&'static str>,
    /// The built-in tools whose calls wait for the user's approval (`LLM_TOOLS_APPROVAL`).
    pub tools_approval: Vec<&'static str>,
    /// Present when the provider is Bedrock.
    pub aws: Option<AwsSettings>,
    /// The MCP servers whose tools are offered too (`MCP_SERVERS`).
    pub mcp: Vec<crate::mcp::ServerConfig>,
}

/// A missing or invalid setting; `Display` names the variable, never its value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LlmConfigError {
    #[error("{0} is required when LLM_PROVIDER is set")]
    Missing(&'static str),
    #[error("{name} is invalid: {reason}")]
    Invalid {
        name: &'static str,
        reason: &'static str,
    },
    /// `MCP_SERVERS` breaks a rule; the message names the entry and the rule.
    #[error("{0}")]
    Mcp(#[from] crate::mcp::McpConfigError),
}

impl LlmConfigError {
    /// The variable at fault.
    pub fn variable(&self) -> &'static str {
        match self {
            LlmConfigError::Missing(name) | LlmConfigError::Invalid { name, .. } => name,
            LlmConfigError::Mcp(_) => crate::mcp::config::MCP_SERVERS_VAR,
        }
    }
}

fn invalid(name: &'static str, reason: &'static str) -> LlmConfigError {
    LlmConfigError::Invalid { name, reason }
}

impl LlmSettings {
    /// Reads the settings. `None` when `LLM_PROVIDER` is unset. An empty value counts as unset,
    /// so a deployment template may pass empty parameters.
    pub fn from_lookup(
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<LlmSettings>, LlmConfigError> {
        let get = |name: &str| {
            get(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let Some(provider) = get("LLM_PROVIDER") else {
            return Ok(None);
        };
        let provider = match provider.to_ascii_lowercase().as_str() {
            "openai" => Provider::OpenAi,
            "bedrock" => Provider::Bedrock,
            _ => return Err(invalid("LLM_PROVIDER", "expected openai or bedrock")),
        };
        let model = get("LLM_MODEL").ok_or(LlmConfigError::Missing("LLM_MODEL"))?;
        let base_url = match get("LLM_BASE_URL") {
            Some(url) => check_base_url(&url)?,
            None => DEFAULT_BASE_URL.to_owned(),
        };
        let max_tokens = match get("LLM_MAX_TOKENS") {
            None => DEFAULT_MAX_TOKENS,
            Some(v) => v
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=MAX_TOKENS_LIMIT).contains(n))
                .ok_or(invalid(
                    "LLM_MAX_TOKENS",
                    "expected an integer from 1 to 200000",
                ))?,
        };
        let temperature = match get("LLM_TEMPERATURE") {
            None => None,
            Some(v) => Some(
                v.parse::<f32>()
                    .ok()
                    .filter(|t| t.is_finite() && (0.0..=MAX_TEMPERATURE).contains(t))
                    .ok_or(invalid("LLM_TEMPERATURE", "expected a number from 0 to 2"))?,
            ),
        };
        let system_prompt = get("LLM_SYSTEM_PROMPT");
        if system_prompt
            .as_ref()
            .is_some_and(|p| p.chars().count() > MAX_SYSTEM_PROMPT_CHARS)
        {
            return Err(invalid("LLM_SYSTEM_PROMPT", "longer than 32768 characters"));
        }
        let tools = parse_tools(get("LLM_TOOLS").as_deref())?;
        let tools_approval = parse_approval(get("LLM_TOOLS_APPROVAL").as_deref())?;
        let mcp = crate::mcp::config::parse(get("MCP_SERVERS").as_deref())?;
        let aws = match provider {
            Provider::OpenAi => None,
            Provider::Bedrock => Some(aws_settings(&get)?),
        };
        Ok(Some(LlmSettings {
            provider,
            base_url,
            api_key: get("LLM_API_KEY").map(ApiKey),
            model,
            system_prompt,
            max_tokens,
            temperature,
            tools,
            tools_approval,
            aws,
            mcp,
        }))
    }
}

fn check_base_url(url: &str) -> Result<String, LlmConfigError> {
    let name = "LLM_BASE_URL";
    let uri: hyper::Uri = url.parse().map_err(|_| invalid(name, "not a URL"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(invalid(name, "expected an http:// or https:// URL"));
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(invalid(name, "the URL has no host"));
    }
    if uri.query().is_some() {
        return Err(invalid(name, "the URL must not have a query"));
    }
    if uri.scheme_str() == Some("http") && !uri.host().is_some_and(is_loopback) {
        return Err(invalid(
            name,
            "http:// is allowed only to a loopback host (127.0.0.1, ::1, localhost): \
             use https://, or the API key and every prompt cross the network in clear text",
        ));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

/// Whether a URL's host names this machine: plain `http://` goes no further than that.
fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn parse_tools(list: Option<&str>) -> Result<Vec<&'static str>, LlmConfigError> {
    let Some(list) = list else {
        return Ok(crate::tools::BUILTIN_NAMES.to_vec());
    };
    if list.eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    let mut tools = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let known = crate::tools::BUILTIN_NAMES
            .iter()
            .find(|b| **b == name)
            .ok_or(invalid("LLM_TOOLS", "names a tool that does not exist"))?;
        if !tools.contains(known) {
            tools.push(*known);
        }
    }
    Ok(tools)
}

/// `LLM_TOOLS_APPROVAL`: `none` (the default: built-ins are pure functions of their
/// arguments and the clock), `all`, or a comma-separated list of built-in tool names.
fn parse_approval(list: Option<&str>) -> Result<Vec<&'static str>, LlmConfigError> {
    match list.map(str::trim) {
        None => Ok(Vec::new()),
        Some(l) if l.is_empty() || l.eq_ignore_ascii_case("none") => Ok(Vec::new()),
        Some(l) if l.eq_ignore_ascii_case("all") => Ok(crate::tools::BUILTIN_NAMES.to_vec()),
        Some(l) => {
            let mut names = Vec::new();
            for name in l.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                let known = crate::tools::BUILTIN_NAMES
                    .iter()
                    .find(|b| **b == name)
                    .ok_or(invalid(
                        "LLM_TOOLS_APPROVAL",
                        "names a tool that does not exist (expected none, all, or built-in tool names)",
                    ))?;
                if !names.contains(known) {
                    names.push(*known);
                }
            }
            Ok(names)
        }
    }
}

fn aws_settings(get: &impl Fn(&str) -> Option<String>) -> Result<AwsSettings, LlmConfigError> {
    Ok(AwsSettings {
        region: get("AWS_REGION")
            .or_else(|| get("AWS_DEFAULT_REGION"))
            .ok_or(LlmConfigError::Missing("AWS_REGION"))?,
        access_key_id: get("AWS_ACCESS_KEY_ID")
            .ok_or(LlmConfigError::Missing("AWS_ACCESS_KEY_ID"))?,
        secret_access_key: get("AWS_SECRET_ACCESS_KEY")
            .ok_or(LlmConfigError::Missing("AWS_SECRET_ACCESS_KEY"))?,
        session_token: get("AWS_SESSION_TOKEN"),
        endpoint: get("AWS_ENDPOINT_URL_BEDROCK_RUNTIME").or_else(|| get("AWS_ENDPOINT_URL")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn read(pairs: &[(&str, &str)]) -> Result<Option<LlmSettings>, LlmConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        LlmSettings::from_lookup(|k| map.get(k).cloned())
    }

    /// No provider means no agent, whatever else is set.
    #[test]
    fn unset_provider_is_none() {
        assert_eq!(read(&[("LLM_MODEL", "m")]), Ok(None));
        assert_eq!(read(&[("LLM_PROVIDER", " ")]), Ok(None));
    }

    /// Defaults apply for every optional setting.
    #[test]
    fn defaults() {
        let s = read(&[("LLM_PROVIDER", "openai"), ("LLM_MODEL", "gpt")])
            .unwrap()
            .unwrap();
        assert_eq!(s.provider, Provider::OpenAi);
        assert_eq!(s.base_url, DEFAULT_BASE_URL);
        assert_eq!(s.max_tokens, DEFAULT_MAX_TOKENS);
        assert_eq!(s.temperature, None);
        assert_eq!(s.api_key, None);
        assert_eq!(s.tools, crate::tools::BUILTIN_NAMES.to_vec());
        assert!(s.aws.is_none());
    }

    /// Every invalid or missing value is a typed error naming its variable.
    #[test]
    fn invalid_values_are_typed_errors() {
        let base = [("LLM_PROVIDER", "openai"), ("LLM_MODEL", "m")];
        let cases: &[(&str, &str, &str)] = &[
            ("LLM_PROVIDER", "azure", "LLM_PROVIDER"),
            ("LLM_BASE_URL", "ftp://x", "LLM_BASE_URL"),
            ("LLM_BASE_URL", "not a url", "LLM_BASE_URL"),
            ("LLM_MAX_TOKENS", "0", "LLM_MAX_TOKENS"),
            ("LLM_MAX_TOKENS", "ten", "LLM_MAX_TOKENS"),
            ("LLM_TEMPERATURE", "2.5", "LLM_TEMPERATURE"),
            ("LLM_TEMPERATURE", "NaN", "LLM_TEMPERATURE"),
            ("LLM_TOOLS", "calculator,shell", "LLM_TOOLS"),
            ("LLM_BASE_URL", "http://api.openai.com/v1", "LLM_BASE_URL"),
            ("LLM_BASE_URL", "http://10.0.0.5:8000/v1", "LLM_BASE_URL"),
            ("LLM_BASE_URL", "http://127.0.0.1.nip.io/v1", "LLM_BASE_URL"),
            ("LLM_BASE_URL", "http://[::2]:80/v1", "LLM_BASE_URL"),
        ];
        for (name, value, at_fault) in cases {
            let mut pairs = base.to_vec();
            pairs.retain(|(k, _)| k != name);
            pairs.push((name, value));
            let err = read(&pairs).unwrap_err();
            assert_eq!(err.variable(), *at_fault, "{name}={value}");
            if value.len() > 3 {
                assert!(!err.to_string().contains(value), "{err}");
            }
        }
        assert_eq!(
            read(&[("LLM_PROVIDER", "openai")]),
            Err(LlmConfigError::Missing("LLM_MODEL"))
        );
        assert_eq!(
            read(&[("LLM_PROVIDER", "bedrock"), ("LLM_MODEL", "m")]),
            Err(LlmConfigError::Missing("AWS_REGION"))
        );
    }

    /// Plain `http://` is accepted to loopback hosts only, so a key never crosses the network
    /// in clear text; `https://` goes anywhere.
    #[test]
    fn plain_http_only_to_loopback() {
        let with = |url: &str| {
            read(&[
                ("LLM_PROVIDER", "openai"),
                ("LLM_MODEL", "m"),
                ("LLM_API_KEY", "sk-secret-123"),
                ("LLM_BASE_URL", url),
            ])
        };
        for ok in [
            "http://127.0.0.1:8081/v1",
            "http://127.8.9.10/v1",
            "http://localhost:11434/v1",
            "http://LOCALHOST/v1",
            "http://[::1]:8000/v1",
            "https://api.openai.com/v1",
            "https://10.0.0.5/v1",
        ] {
            assert!(with(ok).is_ok(), "{ok}");
        }
        let err = with("http://llm.internal:8000/v1").unwrap_err();
        assert_eq!(err.variable(), "LLM_BASE_URL");
        let text = err.to_string();
        assert!(
            text.contains("LLM_BASE_URL") && text.contains("https://"),
            "{text}"
        );
        assert!(
            !text.contains("sk-secret-123") && !text.contains("llm.internal"),
            "{text}"
        );
    }

    /// `LLM_TOOLS_APPROVAL`: unset and `none` ask for nothing, `all` for every built-in, a
    /// list for those named; a name that is no built-in is a start-up error naming the
    /// variable.
    #[test]
    fn tools_approval_list() {
        let with = |t: Option<&str>| {
            let mut env = vec![("LLM_PROVIDER", "openai"), ("LLM_MODEL", "m")];
            if let Some(t) = t {
                env.push(("LLM_TOOLS_APPROVAL", t));
            }
            read(&env).map(|s| s.unwrap().tools_approval)
        };
        assert_eq!(with(None), Ok(Vec::new()));
        assert_eq!(with(Some("none")), Ok(Vec::new()));
        assert_eq!(with(Some("all")), Ok(crate::tools::BUILTIN_NAMES.to_vec()));
        assert_eq!(
            with(Some(" calculator ,calculator")),
            Ok(vec!["calculator"])
        );
        let err = with(Some("calculator,rm")).unwrap_err();
        assert_eq!(err.variable(), "LLM_TOOLS_APPROVAL");
        assert!(err.to_string().contains("none, all"), "{err}");
    }

    /// `LLM_TOOLS` selects, orders and de-duplicates; `none` offers nothing.
    #[test]
    fn tools_list() {
        let with = |t: &str| {
            read(&[
                ("LLM_PROVIDER", "openai"),
                ("LLM_MODEL", "m"),
                ("LLM_TOOLS", t),
            ])
            .unwrap()
            .unwrap()
            .tools
        };
        assert_eq!(with("none"), Vec::<&str>::new());
        assert_eq!(
            with("current_time, calculator,current_time"),
            vec!["current_time", "calculator"]
        );
    }

    /// The key never shows in `Debug` output.
    #[test]
    fn key_is_redacted() {
        let s = read(&[
            ("LLM_PROVIDER", "openai"),
            ("LLM_MODEL", "m"),
            ("LLM_API_KEY", "sk-secret-123"),
            ("LLM_BASE_URL", "http://127.0.0.1:9/v1/"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(s.base_url, "http://127.0.0.1:9/v1");
        assert!(!format!("{s:?}").contains("sk-secret-123"));
    }
}

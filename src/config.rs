//! Settings read once per instance from the environment, each with its default.

use crate::auth::{JwtError, JwtVerifier};
use crate::context::Mode;
use crate::dispatch::Dispatch;
use crate::limits::{
    API_GATEWAY_ROUTE_LIMIT, DEFAULT_APPROVAL_TIMEOUT, DEFAULT_HANDOFF_MARGIN,
    DEFAULT_HEARTBEAT_DEADLINE, DEFAULT_RUN_TIME_LIMIT, DEFAULT_STREAM_FLUSH, MIN_ROUTE_TIME_LIMIT,
};
use crate::run::RunLimits;
use std::time::Duration;

/// Every environment variable wsexec reads (the SDK's own `AWS_*` variables aside).
pub const ENV_VARS: [&str; 20] = [
    "TABLE_NAME",
    "CONNECTIONS_ENDPOINT",
    "JWT_SECRET",
    "JWT_PUBLIC_KEY",
    "JWT_ISSUER",
    "JWT_AUDIENCE",
    "RUN_TIME_LIMIT_MS",
    "HEARTBEAT_DEADLINE_MS",
    "WSEXEC_MODE",
    "DYNAMODB_WARMUP",
    "TLS_NATIVE_ROOTS",
    "STREAM_FLUSH_MS",
    "DEFAULT_AGENT",
    "RUN_DISPATCH",
    "MAX_ACTIVE_RUNS_PER_USER",
    "HANDOFF_MARGIN_MS",
    "ROUTE_TIME_LIMIT_MS",
    "DAILY_TOKEN_BUDGET_PER_USER",
    "DAILY_TOKEN_BUDGET_PER_TENANT",
    "APPROVAL_TIMEOUT_MS",
];

/// The longest run one worker invocation can drive: Lambda's 15 minutes, less 30 s kept to
/// record the run's end. An agent's own default limit stays within it (its longest step must fit
/// one invocation: a step is never split across two).
pub const MAX_ASYNC_RUN_TIME_LIMIT: Duration = Duration::from_millis(870_000);

/// The longest `RUN_TIME_LIMIT_MS` a dispatch that continues runs (`async`, `auto`) accepts:
/// such a run outlives its invocations through hand-offs. Two hours is API Gateway's longest
/// WebSocket connection: a longer run would outlive every connection that could watch it, and
/// its replay buffer and journal only grow with it.
pub const MAX_RUN_TIME_LIMIT: Duration = Duration::from_millis(7_200_000);

/// A setting that is missing or malformed; the manager reports it and retries next invocation.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{var} is required")]
    Missing { var: &'static str },
    #[error("{var} is invalid: {reason}")]
    Invalid { var: &'static str, reason: String },
    #[error("JWT key is invalid: {0}")]
    Jwt(#[from] JwtError),
}

/// The instance's configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The DynamoDB table (`TABLE_NAME`); required only when the store is DynamoDB.
    pub table_name: Option<String>,
    /// Overrides the `@connections` endpoint derived from the event (`CONNECTIONS_ENDPOINT`).
    pub connections_endpoint: Option<String>,
    /// JWT verification; `None` when neither `JWT_SECRET` nor `JWT_PUBLIC_KEY` is set.
    pub jwt: Option<JwtVerifier>,
    /// A run's time limit (`RUN_TIME_LIMIT_MS`); `None`: each agent's own default (see
    /// [`Config::run_time_limit_for`]).
    pub run_time_limit: Option<Duration>,
    /// An alive run with no heartbeat for this long is dead (`HEARTBEAT_DEADLINE_MS`).
    pub heartbeat_deadline: Duration,
    /// `production` (default), `local` or `test` (`WSEXEC_MODE`); decides the `test_` id rule.
    pub mode: Mode,
    /// Accept `?user_id=` on `$connect`. Never read from the environment: only the local
    /// gateway's `--dev-auth` flag turns it on, so a deployed function cannot.
    pub dev_auth: bool,
    /// Open the DynamoDB connection during init (`DYNAMODB_WARMUP=1`).
    pub dynamodb_warmup: bool,
    /// Coalescing window of a run's `agent_delta` pushes (`STREAM_FLUSH_MS`).
    pub stream_flush: Duration,
    /// The agent a request without `agent` gets (`DEFAULT_AGENT`); `None`: the registry's.
    pub default_agent: Option<String>,
    /// Where runs are driven (`RUN_DISPATCH`: `inline` or `async`).
    pub dispatch: Dispatch,
    /// Alive runs one owner may have at once (`MAX_ACTIVE_RUNS_PER_USER`); `None`: no limit,
    /// and a start costs no more than without limits.
    pub max_active_runs: Option<u32>,
    /// Time kept back from an invocation's deadline to hand its run to a continuation
    /// (`HANDOFF_MARGIN_MS`).
    pub handoff_margin: Duration,
    /// How long a route may drive a run under `RUN_DISPATCH=auto` before handing it off (less
    /// `handoff_margin`): API Gateway's 28 s unless lowered (`ROUTE_TIME_LIMIT_MS`).
    pub route_limit: Duration,
    /// Tokens (input and output together) one owner may use per UTC day
    /// (`DAILY_TOKEN_BUDGET_PER_USER`); `None`: no budget.
    pub daily_token_budget_per_user: Option<u64>,
    /// Tokens all of one tenant's users together may use per UTC day
    /// (`DAILY_TOKEN_BUDGET_PER_TENANT`); `None`: no budget.
    pub daily_token_budget_per_tenant: Option<u64>,
    /// How long a run waits for the user's answer to a tool approval before it ends `timeout`
    /// (`APPROVAL_TIMEOUT_MS`; never past the run's own time limit).
    pub approval_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            table_name: None,
            connections_endpoint: None,
            jwt: None,
            run_time_limit: None,
            heartbeat_deadline: DEFAULT_HEARTBEAT_DEADLINE,
            mode: Mode::Production,
            dev_auth: false,
            dynamodb_warmup: false,
            stream_flush: DEFAULT_STREAM_FLUSH,
            default_agent: None,
            dispatch: Dispatch::Inline,
            max_active_runs: None,
            handoff_margin: DEFAULT_HANDOFF_MARGIN,
            route_limit: API_GATEWAY_ROUTE_LIMIT,
            daily_token_budget_per_user: None,
            daily_token_budget_per_tenant: None,
            approval_timeout: DEFAULT_APPROVAL_TIMEOUT,
        }
    }
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads settings through `get`, so tests need not touch the process environment.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let ms = |var: &'static str, default: Duration| -> Result<Duration, ConfigError> {
            match get(var) {
                None => Ok(default),
                Some(v) => match v.trim().parse::<u64>() {
                    Ok(n) if n > 0 => Ok(Duration::from_millis(n)),
                    _ => Err(ConfigError::Invalid {
                        var,
                        reason: "expected a positive number of milliseconds".into(),
                    }),
                },
            }
        };
        // 0 is "off", as unset: a limit of nothing at all would only lock users out.
        let limit = |var: &'static str| -> Result<Option<u64>, ConfigError> {
            match get(var).map(|v| v.trim().parse::<u64>()) {
                None | Some(Ok(0)) => Ok(None),
                Some(Ok(n)) => Ok(Some(n)),
                Some(Err(_)) => Err(ConfigError::Invalid {
                    var,
                    reason: "expected a whole number (0 or unset: no limit)".into(),
                }),
            }
        };
        let mode = match get("WSEXEC_MODE").as_deref().map(str::trim) {
            None | Some("production") => Mode::Production,
            Some("local") => Mode::Local,
            Some("test") => Mode::Test,
            Some(_) => {
                return Err(ConfigError::Invalid {
                    var: "WSEXEC_MODE",
                    reason: "expected production, local or test".into(),
                });
            }
        };
        let dispatch = match get("RUN_DISPATCH").as_deref().map(str::trim) {
            None | Some("inline") => Dispatch::Inline,
            Some("async") => Dispatch::Async,
            Some("auto") => Dispatch::Auto,
            Some(_) => {
                return Err(ConfigError::Invalid {
                    var: "RUN_DISPATCH",
                    reason: "expected inline, async or auto".into(),
                });
            }
        };
        let route_limit = ms("ROUTE_TIME_LIMIT_MS", API_GATEWAY_ROUTE_LIMIT)?;
        if !(MIN_ROUTE_TIME_LIMIT..=API_GATEWAY_ROUTE_LIMIT).contains(&route_limit) {
            return Err(ConfigError::Invalid {
                var: "ROUTE_TIME_LIMIT_MS",
                reason: format!(
                    "from {} to {} (API Gateway ends a route at 29 s)",
                    MIN_ROUTE_TIME_LIMIT.as_millis(),
                    API_GATEWAY_ROUTE_LIMIT.as_millis()
                ),
            });
        }
        let run_time_limit = match get("RUN_TIME_LIMIT_MS") {
            None => None,
            Some(_) => Some(ms("RUN_TIME_LIMIT_MS", DEFAULT_RUN_TIME_LIMIT)?),
        };
        if dispatch.continues() && run_time_limit > Some(MAX_RUN_TIME_LIMIT) {
            return Err(ConfigError::Invalid {
                var: "RUN_TIME_LIMIT_MS",
                reason: format!(
                    "at most {} with RUN_DISPATCH=async or auto",
                    MAX_RUN_TIME_LIMIT.as_millis()
                ),
            });
        }
        let approval_timeout = ms("APPROVAL_TIMEOUT_MS", DEFAULT_APPROVAL_TIMEOUT)?;
        if approval_timeout > MAX_RUN_TIME_LIMIT {
            return Err(ConfigError::Invalid {
                var: "APPROVAL_TIMEOUT_MS",
                reason: format!(
                    "must be at most {} (a run's longest time limit)",
                    MAX_RUN_TIME_LIMIT.as_millis()
                ),
            });
        }
        let jwt = JwtVerifier::from_settings(
            get("JWT_SECRET").as_deref(),
            get("JWT_PUBLIC_KEY").as_deref(),
            get("JWT_ISSUER").as_deref(),
            get("JWT_AUDIENCE").as_deref(),
        )?;
        Ok(Config {
            table_name: get("TABLE_NAME"),
            connections_endpoint: get("CONNECTIONS_ENDPOINT")
                .map(|e| e.trim_end_matches('/').to_owned()),
            jwt,
            run_time_limit,
            heartbeat_deadline: ms("HEARTBEAT_DEADLINE_MS", DEFAULT_HEARTBEAT_DEADLINE)?,
            mode,
            dev_auth: false,
            dynamodb_warmup: matches!(get("DYNAMODB_WARMUP").as_deref(), Some("1" | "true")),
            stream_flush: ms("STREAM_FLUSH_MS", DEFAULT_STREAM_FLUSH)?,
            default_agent: get("DEFAULT_AGENT").map(|a| a.trim().to_owned()),
            dispatch,
            max_active_runs: limit("MAX_ACTIVE_RUNS_PER_USER")?
                .map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
            daily_token_budget_per_user: limit("DAILY_TOKEN_BUDGET_PER_USER")?,
            daily_token_budget_per_tenant: limit("DAILY_TOKEN_BUDGET_PER_TENANT")?,
            handoff_margin: ms("HANDOFF_MARGIN_MS", DEFAULT_HANDOFF_MARGIN)?,
            route_limit,
            approval_timeout,
        })
    }

    /// Whether any usage limit is set: then starts are metered (daily counters, budgets,
    /// per-user and per-tenant overrides). With none set a start is the one `PutItem` it
    /// always was, and no counter is kept.
    pub fn metered(&self) -> bool {
        self.max_active_runs.is_some()
            || self.daily_token_budget_per_user.is_some()
            || self.daily_token_budget_per_tenant.is_some()
    }

    /// The time limit of a run whose agent needs `needed` at a slow provider's pace
    /// ([`crate::run::Executor::time_needed`]): `RUN_TIME_LIMIT_MS` when set; else what the
    /// agent needs (at least the 15 s default), within what the dispatch mode allows (API
    /// Gateway's route limit inline, a worker's 14.5 minutes async); else the default.
    pub fn run_time_limit_for(&self, needed: Option<Duration>) -> Duration {
        if let Some(set) = self.run_time_limit {
            return set;
        }
        let most = match self.dispatch {
            Dispatch::Inline => API_GATEWAY_ROUTE_LIMIT,
            Dispatch::Async | Dispatch::Auto => MAX_ASYNC_RUN_TIME_LIMIT,
        };
        needed.map_or(DEFAULT_RUN_TIME_LIMIT, |n| {
            n.max(DEFAULT_RUN_TIME_LIMIT).min(most)
        })
    }

    /// The time limits runs live by.
    pub fn run_limits(&self) -> RunLimits {
        RunLimits {
            run_time_limit: self.run_time_limit_for(None),
            heartbeat_deadline: self.heartbeat_deadline,
            stream_flush: self.stream_flush,
            handoff_margin: self.handoff_margin,
            approval_timeout: self.approval_timeout,
        }
    }

    /// `TABLE_NAME`, or a typed error when it is missing.
    pub fn require_table(&self) -> Result<&str, ConfigError> {
        self.table_name
            .as_deref()
            .ok_or(ConfigError::Missing { var: "TABLE_NAME" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| m.get(k).cloned())
    }

    /// An empty environment gives the documented defaults and no JWT auth.
    #[test]
    fn defaults_apply() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.run_time_limit_for(None), Duration::from_secs(15));
        assert_eq!(c.heartbeat_deadline, Duration::from_secs(10));
        assert!(c.jwt.is_none() && c.table_name.is_none() && !c.dev_auth);
        assert_eq!(c.dispatch, Dispatch::Inline);
        assert!(matches!(
            c.require_table(),
            Err(ConfigError::Missing { var: "TABLE_NAME" })
        ));
    }

    /// Malformed numbers, modes and keys are typed errors naming the variable.
    #[test]
    fn invalid_settings_are_typed_errors() {
        assert!(matches!(
            cfg(&[("RUN_TIME_LIMIT_MS", "soon")]),
            Err(ConfigError::Invalid {
                var: "RUN_TIME_LIMIT_MS",
                ..
            })
        ));
        assert!(matches!(
            cfg(&[("HEARTBEAT_DEADLINE_MS", "0")]),
            Err(ConfigError::Invalid {
                var: "HEARTBEAT_DEADLINE_MS",
                ..
            })
        ));
        assert!(matches!(
            cfg(&[("WSEXEC_MODE", "staging")]),
            Err(ConfigError::Invalid {
                var: "WSEXEC_MODE",
                ..
            })
        ));
        assert!(matches!(
            cfg(&[("JWT_PUBLIC_KEY", "not a pem")]),
            Err(ConfigError::Jwt(_))
        ));
        assert!(matches!(
            cfg(&[("RUN_DISPATCH", "later")]),
            Err(ConfigError::Invalid {
                var: "RUN_DISPATCH",
                ..
            })
        ));
        // A run that is continued may outlast a worker's 15 minutes, up to two hours; inline
        // runs are capped by the invocation.
        for dispatch in ["async", "auto"] {
            let set = |ms| cfg(&[("RUN_DISPATCH", dispatch), ("RUN_TIME_LIMIT_MS", ms)]);
            assert_eq!(
                set("7200000").unwrap().run_time_limit_for(None),
                MAX_RUN_TIME_LIMIT
            );
            assert!(matches!(
                set("7200001"),
                Err(ConfigError::Invalid {
                    var: "RUN_TIME_LIMIT_MS",
                    ..
                })
            ));
        }
    }

    /// Unset, a run's limit is what its agent needs, at least 15 s and at most what the dispatch
    /// mode allows (28 s inline, 870 s async); agents that state no need get 15 s.
    #[test]
    fn run_time_limit_follows_the_agent_within_the_dispatch_mode() {
        let inline = cfg(&[]).unwrap();
        let asynch = cfg(&[("RUN_DISPATCH", "async")]).unwrap();
        let min = Duration::from_secs;
        assert_eq!(inline.run_time_limit_for(Some(min(61))), min(28));
        assert_eq!(inline.run_time_limit_for(Some(min(20))), min(20));
        assert_eq!(inline.run_time_limit_for(Some(min(3))), min(15));
        assert_eq!(asynch.run_time_limit_for(Some(min(61))), min(61));
        assert_eq!(asynch.run_time_limit_for(Some(min(10_000))), min(870));
        assert_eq!(asynch.run_time_limit_for(None), min(15));
        let auto = cfg(&[("RUN_DISPATCH", "auto")]).unwrap();
        assert_eq!(auto.run_time_limit_for(Some(min(61))), min(61));
    }

    /// `APPROVAL_TIMEOUT_MS` defaults to ten minutes (API Gateway's idle timeout), may be
    /// lowered, and may not exceed a run's longest time limit.
    #[test]
    fn approval_timeout_is_bounded() {
        assert_eq!(cfg(&[]).unwrap().approval_timeout, Duration::from_secs(600));
        let lowered = cfg(&[("APPROVAL_TIMEOUT_MS", "1500")]).unwrap();
        assert_eq!(lowered.approval_timeout, Duration::from_millis(1500));
        let err = cfg(&[("APPROVAL_TIMEOUT_MS", "7200001")]).unwrap_err();
        assert!(err.to_string().contains("APPROVAL_TIMEOUT_MS"), "{err}");
        assert!(cfg(&[("APPROVAL_TIMEOUT_MS", "soon")]).is_err());
    }

    /// `RUN_DISPATCH=auto` parses; `ROUTE_TIME_LIMIT_MS` may lower the route's 28 s, never
    /// raise it; `HANDOFF_MARGIN_MS` defaults to 5 s.
    #[test]
    fn auto_dispatch_and_its_limits() {
        let auto = cfg(&[("RUN_DISPATCH", "auto")]).unwrap();
        assert_eq!(auto.dispatch, Dispatch::Auto);
        assert!(auto.dispatch.continues() && !Dispatch::Inline.continues());
        assert_eq!(auto.route_limit, Duration::from_secs(28));
        assert_eq!(auto.handoff_margin, Duration::from_secs(5));
        let lowered = cfg(&[
            ("ROUTE_TIME_LIMIT_MS", "6000"),
            ("HANDOFF_MARGIN_MS", "900"),
        ]);
        let lowered = lowered.unwrap();
        assert_eq!(lowered.route_limit, Duration::from_secs(6));
        assert_eq!(lowered.handoff_margin, Duration::from_millis(900));
        for bad in ["29000", "999", "0", "soon"] {
            assert!(cfg(&[("ROUTE_TIME_LIMIT_MS", bad)]).is_err(), "{bad}");
        }
        assert!(cfg(&[("RUN_DISPATCH", "sometimes")]).is_err());
    }

    /// Set values override defaults; the endpoint loses a trailing slash.
    #[test]
    fn values_override_defaults() {
        let c = cfg(&[
            ("RUN_TIME_LIMIT_MS", "2500"),
            ("CONNECTIONS_ENDPOINT", "http://127.0.0.1:3001/"),
            ("WSEXEC_MODE", "test"),
            ("JWT_SECRET", "s3cret"),
        ])
        .unwrap();
        assert_eq!(c.run_time_limit, Some(Duration::from_millis(2500)));
        assert_eq!(
            c.run_time_limit_for(Some(Duration::from_secs(600))),
            Duration::from_millis(2500)
        );
        assert_eq!(
            c.connections_endpoint.as_deref(),
            Some("http://127.0.0.1:3001")
        );
        assert_eq!(c.mode, Mode::Test);
        assert!(c.jwt.is_some());
    }
}

//! Who may reach the gateway from a browser: loopback `Host` names on every request (no DNS
//! rebinding), an absent, loopback or listed `Origin` on WebSocket upgrades (no foreign pages),
//! and no `Origin` at all on the APIs only SDK clients call (`@connections`, `Invoke`).

use super::http::json_response;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};

/// The host names that always mean this machine: a page that reached the gateway under any
/// other name did so through DNS the page's site controls (rebinding).
const LOOPBACK_HOSTS: [&str; 3] = ["127.0.0.1", "localhost", "[::1]"];

/// The only schemes a browser puts in a web page's `Origin`.
const ORIGIN_SCHEMES: [&str; 2] = ["http", "https"];

/// The longest port a `Host` or `Origin` can carry (65535).
const MAX_PORT_DIGITS: usize = 5;

/// What a request is for, which decides what its `Origin` may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// The chat page and the 426 answer: a page may load them from anywhere, and read nothing.
    Page,
    /// A WebSocket upgrade: `Origin` absent, loopback, or listed.
    Upgrade,
    /// `@connections` and `Invoke`: SDK clients and the AWS CLI send no `Origin`; a request
    /// with one comes from a web page.
    Api,
}

/// The gateway's browser-facing rules: loopback hosts, and the origins `--allow-origin` lists.
#[derive(Clone, Debug, Default)]
pub struct Access {
    allowed_origins: Vec<String>,
}

impl Access {
    /// Rules that also admit upgrades from each of `origins` (already checked by [`parse_origin`]).
    pub fn new(origins: impl IntoIterator<Item = String>) -> Access {
        Access {
            allowed_origins: origins.into_iter().collect(),
        }
    }

    /// Refuses `req` with 403 unless its host is loopback and its `Origin` suits `endpoint`.
    pub fn check<B>(
        &self,
        req: &Request<B>,
        endpoint: Endpoint,
    ) -> Result<(), Box<Response<Full<Bytes>>>> {
        let hosts = req.headers().get_all(header::HOST);
        let authority = req.uri().authority().map(|a| a.as_str());
        let host_ok = hosts.iter().all(|h| h.to_str().is_ok_and(is_loopback_host))
            && authority.is_none_or(is_loopback_host);
        if !host_ok {
            return Err(forbidden("Host is not a loopback name"));
        }
        let origins: Vec<&HeaderValue> = req.headers().get_all(header::ORIGIN).iter().collect();
        let origin_ok = match (endpoint, origins.as_slice()) {
            (Endpoint::Page, _) | (_, []) => true,
            (Endpoint::Upgrade, [one]) => one.to_str().is_ok_and(|o| self.admits(o)),
            _ => false,
        };
        if !origin_ok {
            let why = match endpoint {
                Endpoint::Api => "this API takes no cross-origin requests",
                _ => "Origin is not loopback nor allowed (--allow-origin)",
            };
            return Err(forbidden(why));
        }
        Ok(())
    }

    /// Whether a WebSocket upgrade from a page of `origin` is admitted.
    fn admits(&self, origin: &str) -> bool {
        is_loopback_origin(origin)
            || self
                .allowed_origins
                .iter()
                .any(|a| a.eq_ignore_ascii_case(origin))
    }
}

/// 403 with API Gateway's body shape; logged, since a refused browser shows little.
fn forbidden(why: &'static str) -> Box<Response<Full<Bytes>>> {
    tracing::info!(reason = why, "request refused");
    Box::new(json_response(
        StatusCode::FORBIDDEN,
        serde_json::json!({ "message": format!("Forbidden: {why}") }).to_string(),
    ))
}

/// Whether `host` is a loopback name with an optional numeric port (`localhost`, `[::1]:3001`).
pub fn is_loopback_host(host: &str) -> bool {
    let (name, port) = match host.rsplit_once(':') {
        // `[::1]` has colons of its own: a port follows only its closing bracket.
        Some((name, port)) if !name.starts_with('[') || name.ends_with(']') => (name, Some(port)),
        _ => (host, None),
    };
    let port_ok = port.is_none_or(|p| {
        !p.is_empty() && p.len() <= MAX_PORT_DIGITS && p.bytes().all(|b| b.is_ascii_digit())
    });
    port_ok && LOOPBACK_HOSTS.iter().any(|l| l.eq_ignore_ascii_case(name))
}

/// Whether `origin` is a page served from this machine (`http://localhost:5173`).
fn is_loopback_origin(origin: &str) -> bool {
    origin.split_once("://").is_some_and(|(scheme, host)| {
        ORIGIN_SCHEMES
            .iter()
            .any(|s| s.eq_ignore_ascii_case(scheme))
            && is_loopback_host(host)
    })
}

/// An `--allow-origin` value as browsers send it: `scheme://host[:port]` (a trailing `/` is
/// dropped), or `null` (sandboxed frames, `file:` pages). Anything with a path, query or
/// credentials could never match an `Origin` header, so it is refused as a mistake.
pub fn parse_origin(value: &str) -> Result<String, String> {
    let origin = value.trim().trim_end_matches('/');
    if origin == "null" {
        return Ok(origin.to_owned());
    }
    let Some((scheme, host)) = origin.split_once("://") else {
        return Err(format!(
            "{value:?} is not an origin: expected scheme://host[:port]"
        ));
    };
    let scheme_ok = !scheme.is_empty()
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
    if scheme_ok && host_ok {
        Ok(origin.to_owned())
    } else {
        Err(format!(
            "{value:?} is not an origin: expected scheme://host[:port], no path, query or user"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Loopback names pass with any port or none; other names, odd ports and look-alikes fail.
    #[test]
    fn loopback_hosts_are_recognised() {
        for ok in [
            "127.0.0.1",
            "127.0.0.1:3001",
            "localhost",
            "LocalHost:80",
            "[::1]",
            "[::1]:3001",
        ] {
            assert!(is_loopback_host(ok), "{ok}");
        }
        for bad in [
            "",
            "evil.example",
            "evil.example:3001",
            "127.0.0.1.nip.io",
            "localhost.",
            "127.0.0.2",
            "[::1",
            "::1",
            "localhost:",
            "localhost:123456",
            "localhost:80x",
            "0.0.0.0:3001",
            "localhost@evil.example",
        ] {
            assert!(!is_loopback_host(bad), "{bad}");
        }
    }

    /// Origins are loopback by scheme and host; listed origins must look like origins.
    #[test]
    fn origins_are_checked_and_parsed() {
        assert!(is_loopback_origin("http://localhost:5173"));
        assert!(is_loopback_origin("https://[::1]"));
        assert!(!is_loopback_origin("null"));
        assert!(!is_loopback_origin("http://evil.example"));
        assert!(!is_loopback_origin("file://localhost"));
        assert_eq!(
            parse_origin("https://app.example:8443/").as_deref(),
            Ok("https://app.example:8443")
        );
        assert_eq!(parse_origin("null").as_deref(), Ok("null"));
        for bad in [
            "app.example",
            "https://app.example/path",
            "https://u@app.example",
            "https://",
        ] {
            assert!(parse_origin(bad).is_err(), "{bad}");
        }
    }
}

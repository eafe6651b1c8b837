//! check_origin (spec §1.6): no Origin header is allowed; `true` compares only the host with
//! the endpoint's host; a list matches scheme/host/port where given, `*.` for subdomains;
//! `:conn` compares host and port with the request's own `Host`.

use crate::config::CheckOrigin;

/// Scheme, host and port of an origin or an allow-list entry; `None` matches anything.
#[derive(Debug, PartialEq, Eq)]
struct OriginParts {
    scheme: Option<String>,
    host: Option<String>,
    port: Option<u16>,
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    }
}

fn parse(origin: &str) -> OriginParts {
    let (scheme, rest) = match origin.split_once("//") {
        Some((s, rest)) => (s.strip_suffix(':').filter(|s| !s.is_empty()), rest),
        None => (None, origin),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let (host, port) = if let Some(stripped) = authority.strip_prefix('[') {
        match stripped.split_once(']') {
            Some((h, p)) => (
                h.to_string(),
                p.strip_prefix(':').and_then(|p| p.parse().ok()),
            ),
            None => (stripped.to_string(), None),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) && !p.is_empty() => {
                (h.to_string(), p.parse().ok())
            }
            _ => (authority.to_string(), None),
        }
    };
    let scheme = scheme.map(|s| s.to_ascii_lowercase());
    let port = port.or_else(|| scheme.as_deref().and_then(default_port));
    OriginParts {
        scheme,
        host: (!host.is_empty()).then(|| host.to_ascii_lowercase()),
        port,
    }
}

fn host_matches(allowed: &str, host: &str) -> bool {
    match allowed.strip_prefix("*.") {
        Some(base) => host == base || host.ends_with(&format!(".{base}")),
        None => allowed == host,
    }
}

/// Whether a request with this `Origin` header, sent to `request_host` (its `Host` header),
/// may connect.
pub fn allowed(
    check: &CheckOrigin,
    url_host: &str,
    request_host: Option<&str>,
    origin: Option<&str>,
) -> bool {
    let Some(origin) = origin else {
        return true;
    };
    let o = parse(origin);
    match check {
        CheckOrigin::Off => true,
        CheckOrigin::Conn => {
            // The Host header has no scheme: its port defaults to the origin's scheme's.
            let Some(host) = request_host else {
                return false;
            };
            let mut h = parse(&format!("//{host}"));
            h.port = h
                .port
                .or_else(|| o.scheme.as_deref().and_then(default_port));
            h.host.is_some() && h.host == o.host && h.port == o.port
        }
        CheckOrigin::Host => o.host.as_deref() == Some(&url_host.to_ascii_lowercase()),
        CheckOrigin::List(list) => list.iter().any(|entry| {
            let a = parse(entry);
            a.scheme
                .as_ref()
                .is_none_or(|s| o.scheme.as_ref() == Some(s))
                && a.host
                    .as_ref()
                    .is_none_or(|h| o.host.as_deref().is_some_and(|oh| host_matches(h, oh)))
                && a.port.is_none_or(|p| o.port == Some(p))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_mode_ignores_scheme_and_port() {
        let c = CheckOrigin::Host;
        assert!(allowed(
            &c,
            "example.com",
            None,
            Some("http://example.com:8080")
        ));
        assert!(allowed(
            &c,
            "example.com",
            None,
            Some("https://example.com")
        ));
        assert!(!allowed(&c, "example.com", None, Some("https://evil.com")));
        assert!(allowed(&c, "example.com", None, None));
    }

    #[test]
    fn list_mode() {
        let c = CheckOrigin::List(vec![
            "//other.com".into(),
            "https://*.example.com".into(),
            "http://local.test:4000".into(),
        ]);
        assert!(allowed(&c, "x", None, Some("http://other.com:99")));
        assert!(allowed(&c, "x", None, Some("https://example.com")));
        assert!(allowed(&c, "x", None, Some("https://a.example.com")));
        assert!(!allowed(&c, "x", None, Some("http://a.example.com")));
        assert!(allowed(&c, "x", None, Some("http://local.test:4000")));
        assert!(!allowed(&c, "x", None, Some("http://local.test")));
        assert!(!allowed(&c, "x", None, Some("https://evil.com")));
    }

    #[test]
    fn conn_mode_is_the_requests_own_host_and_port() {
        let c = CheckOrigin::Conn;
        let at = Some("127.0.0.1:4001");
        assert!(allowed(&c, "x", at, Some("http://127.0.0.1:4001")));
        assert!(allowed(
            &c,
            "x",
            Some("LOCALHOST:4001"),
            Some("http://localhost:4001")
        ));
        assert!(allowed(
            &c,
            "x",
            Some("example.com"),
            Some("https://example.com")
        ));
        assert!(!allowed(&c, "x", at, Some("http://127.0.0.1:4000")));
        assert!(!allowed(&c, "x", at, Some("http://evil.example")));
        assert!(!allowed(&c, "x", None, Some("http://127.0.0.1:4001")));
        assert!(allowed(&c, "x", at, None));
    }

    #[test]
    fn off_allows_all() {
        assert!(allowed(
            &CheckOrigin::Off,
            "x",
            None,
            Some("http://evil.com")
        ));
    }
}

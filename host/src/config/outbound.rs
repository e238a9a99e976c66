//! `allowed_outbound_hosts` entries, in Spin's shape: `scheme://host[:port]`
//! where the scheme is `http`, `https` or `*`; the host a name, `*.name`
//! (any subdomain of it), `*` (any host) or an IP address; the port a number,
//! `*`, or omitted (the scheme's default: 80 for http, 443 for https).
//!
//! ```
//! use bullpen::config::OutboundHost;
//! let stripe: OutboundHost = "https://*.stripe.com".parse()?;
//! assert!(stripe.allows("https", "api.stripe.com", 443));
//! assert!(!stripe.allows("https", "stripe.com", 443));
//! assert!(!stripe.allows("http", "api.stripe.com", 80));
//! assert!(!stripe.allows("https", "api.stripe.com", 8443));
//! # Ok::<(), String>(())
//! ```

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// One entry of `allowed_outbound_hosts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundHost {
    scheme: Option<Scheme>,
    host: HostPattern,
    port: PortPattern,
    text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Http,
    Https,
}

impl Scheme {
    fn parse(text: &str) -> Option<Self> {
        match text {
            "http" => Some(Scheme::Http),
            "https" => Some(Scheme::Https),
            _ => None,
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Any,
    /// `*.example.com`: stored as `.example.com`.
    Subdomains(String),
    Name(String),
    Address(IpAddr),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PortPattern {
    Any,
    /// The scheme's own port.
    Default,
    Exact(u16),
}

impl OutboundHost {
    /// Whether a request to `scheme://host:port` is allowed. `host` is a
    /// name or an IP address without brackets; case does not matter.
    pub fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        let Some(request_scheme) = Scheme::parse(scheme) else {
            return false;
        };
        if self.scheme.is_some_and(|s| s != request_scheme) {
            return false;
        }
        let port_ok = match self.port {
            PortPattern::Any => true,
            PortPattern::Default => port == request_scheme.default_port(),
            PortPattern::Exact(p) => port == p,
        };
        port_ok && self.allows_host(host)
    }

    fn allows_host(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        match &self.host {
            HostPattern::Any => true,
            HostPattern::Subdomains(suffix) => {
                host.len() > suffix.len() && host.ends_with(suffix.as_str())
            }
            HostPattern::Name(name) => *name == host,
            HostPattern::Address(ip) => host.parse::<IpAddr>().is_ok_and(|h| h == *ip),
        }
    }

    /// Whether this entry names `address` literally for a request on
    /// `scheme` and `port`: what lets a guest reach a loopback or private
    /// address (`http://127.0.0.1:8080`); a name or a wildcard never does.
    pub fn names_address(&self, scheme: &str, address: IpAddr, port: u16) -> bool {
        matches!(self.host, HostPattern::Address(ip) if ip == address)
            && self.allows(scheme, &address.to_string(), port)
    }
}

impl fmt::Display for OutboundHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for OutboundHost {
    type Err = String;

    /// Parses one entry; the error says what is wrong with it.
    fn from_str(text: &str) -> Result<Self, String> {
        let why = |reason: &str| format!("`{text}` {reason}");
        let Some((scheme, rest)) = text.split_once("://") else {
            return Err(why(
                "needs a scheme: write it as \"https://example.com\" (or \"*://example.com\" for both http and https)",
            ));
        };
        let scheme = match scheme {
            "*" => None,
            s => Some(Scheme::parse(s).ok_or_else(|| {
                why("has a scheme other than http, https or *: only HTTP(S) is granted")
            })?),
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#', '@']) {
            return Err(why(
                "has a path, query or user: an entry names only scheme, host and port",
            ));
        }
        let (host, port) = split_host_port(authority).ok_or_else(|| why("has no host"))?;
        let port = match port {
            None => PortPattern::Default,
            Some("*") => PortPattern::Any,
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p > 0 => PortPattern::Exact(p),
                _ => return Err(why("has a port that is not a number from 1 to 65535 or *")),
            },
        };
        let host = if host == "*" {
            HostPattern::Any
        } else if let Some(domain) = host.strip_prefix("*.") {
            if !valid_name(domain) {
                return Err(why("has a host that is not a domain name after `*.`"));
            }
            HostPattern::Subdomains(format!(".{}", domain.to_ascii_lowercase()))
        } else if let Ok(ip) = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host)
            .parse::<IpAddr>()
        {
            HostPattern::Address(ip)
        } else if valid_name(host) {
            HostPattern::Name(host.trim_end_matches('.').to_ascii_lowercase())
        } else {
            return Err(why(
                "has a host that is not a name, `*.name`, `*` or an IP address",
            ));
        };
        Ok(OutboundHost {
            scheme,
            host,
            port,
            text: text.to_owned(),
        })
    }
}

/// `host:port`, `[v6]:port`, `host` or `[v6]`.
fn split_host_port(authority: &str) -> Option<(&str, Option<&str>)> {
    if authority.starts_with('[') {
        let end = authority.find(']')?;
        let (host, rest) = authority.split_at(end + 1);
        return match rest {
            "" => Some((host, None)),
            _ => Some((host, Some(rest.strip_prefix(':')?))),
        };
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    (!host.is_empty()).then_some((host, port))
}

/// A DNS name: dot-separated labels of letters, digits, `-` and `_`.
fn valid_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(text: &str) -> OutboundHost {
        text.parse().unwrap()
    }

    #[test]
    fn entries_match_scheme_host_and_port() {
        let exact = host("https://hooks.example.com");
        assert!(exact.allows("https", "hooks.example.com", 443));
        assert!(exact.allows("https", "HOOKS.example.com.", 443));
        assert!(!exact.allows("https", "evil-hooks.example.com", 443));
        assert!(!exact.allows("https", "hooks.example.com.evil.net", 443));
        assert!(!exact.allows("http", "hooks.example.com", 80));

        let any_port = host("http://127.0.0.1:*");
        assert!(any_port.allows("http", "127.0.0.1", 8080));
        assert!(!any_port.allows("http", "127.0.0.2", 8080));

        let both = host("*://example.com");
        assert!(both.allows("http", "example.com", 80));
        assert!(both.allows("https", "example.com", 443));
        assert!(!both.allows("https", "example.com", 80));

        let anything = host("*://*:*");
        assert!(anything.allows("https", "a.b", 1));
        assert!(!anything.allows("ftp", "a.b", 1));

        let v6 = host("http://[::1]:8080");
        assert!(v6.allows("http", "::1", 8080));
    }

    #[test]
    fn only_a_literal_address_names_an_address() {
        let lo = "127.0.0.1".parse().unwrap();
        assert!(host("http://127.0.0.1:8080").names_address("http", lo, 8080));
        assert!(!host("http://127.0.0.1:8080").names_address("http", lo, 8081));
        assert!(!host("http://localhost:8080").names_address("http", lo, 8080));
        assert!(!host("http://*:*").names_address("http", lo, 8080));
    }

    #[test]
    fn bad_entries_say_why() {
        for (text, reason) in [
            ("example.com", "needs a scheme"),
            ("ftp://example.com", "other than http"),
            ("https://example.com/path", "has a path"),
            ("https://user@example.com", "has a path, query or user"),
            ("https://example.com:0", "port that is not a number"),
            ("https://example.com:http", "port that is not a number"),
            ("https://exa mple.com", "not a name"),
            ("https://*.", "not a domain name"),
            ("https://", "has no host"),
        ] {
            let err = text.parse::<OutboundHost>().unwrap_err();
            assert!(err.contains(reason), "{text}: {err}");
        }
    }
}

//! Target URLs: `http://` or `https://`, a host name, IPv4 or IPv6 literal, an optional port,
//! no path. Parsing only; names are resolved when a run starts (`live::transport::resolve`).

use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// A parsed target URL. WebSocket URLs derive from it (`ws://` for `http://`, `wss://` for
/// `https://`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TargetUrl {
    /// `https://`: TLS on every connection.
    pub secure: bool,
    /// Host name (lower-cased) or IP literal (IPv6 without brackets).
    pub host: String,
    /// Port (80 or 443 when the URL gives none).
    pub port: u16,
}

impl TargetUrl {
    /// Parses `http[s]://host[:port][/]`.
    ///
    /// # Errors
    /// A message naming what is wrong and what is allowed.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (secure, rest) = if let Some(rest) = text.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = text.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(format!(
                "must be an http:// or https:// URL such as \"https://api.example.com\" or \"http://127.0.0.1:8080\", got {text:?}"
            ));
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#']) {
            return Err(format!(
                "{text:?} must not contain a path or query: paths belong to each group"
            ));
        }
        if authority.contains('@') {
            return Err(format!(
                "{text:?} must not contain user info; send credentials as headers"
            ));
        }
        let (host, port) = split_host_port(authority).map_err(|why| format!("{text:?}: {why}"))?;
        let port = match port {
            Some(p) => p,
            None if secure => 443,
            None => 80,
        };
        Ok(Self { secure, host, port })
    }

    /// The host as an IP address, when it is a literal.
    #[must_use]
    pub fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }

    /// The socket address, when the host is an IP literal.
    #[must_use]
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        self.ip().map(|ip| SocketAddr::new(ip, self.port))
    }

    /// The `Host` header value: brackets around IPv6, the port only when not the scheme's
    /// default.
    #[must_use]
    pub fn host_header(&self) -> String {
        let host = self.bracketed_host();
        let default = if self.secure { 443 } else { 80 };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// The host as URLs write it: IPv6 literals in brackets.
    fn bracketed_host(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        }
    }

    /// `ws` or `wss`.
    #[must_use]
    pub fn ws_scheme(&self) -> &'static str {
        if self.secure { "wss" } else { "ws" }
    }

    /// The same server over plain HTTP at `addr` (the bundled server).
    #[must_use]
    pub fn plain(addr: SocketAddr) -> Self {
        Self {
            secure: false,
            host: addr.ip().to_string(),
            port: addr.port(),
        }
    }
}

impl fmt::Display for TargetUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.secure { "https" } else { "http" };
        write!(f, "{scheme}://{}:{}", self.bracketed_host(), self.port)
    }
}

/// Splits `host[:port]` / `[v6][:port]`; checks the host is a literal or a valid DNS name.
fn split_host_port(authority: &str) -> Result<(String, Option<u16>), String> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (v6, after) = rest
            .split_once(']')
            .ok_or("an IPv6 literal needs its closing ']'")?;
        v6.parse::<std::net::Ipv6Addr>()
            .map_err(|_| format!("[{v6}] is not an IPv6 address"))?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or("expected ':port' after ']'")?),
        };
        (v6.to_owned(), port)
    } else {
        if authority.matches(':').count() > 1 {
            return Err(
                "an IPv6 address must be written in brackets, e.g. http://[::1]:8080".to_owned(),
            );
        }
        match authority.split_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (authority.to_owned(), None),
        }
    };
    let port = port
        .map(|p| match p.parse::<u16>() {
            Ok(0) | Err(_) => Err(format!("port {p:?} is not a number from 1 to 65535")),
            Ok(n) => Ok(n),
        })
        .transpose()?;
    if host.is_empty() {
        return Err("the host is missing".to_owned());
    }
    if host.parse::<IpAddr>().is_err() && !is_dns_name(&host) {
        return Err(format!(
            "{host:?} is neither an IP address nor a host name (letters, digits, '-' and '.')"
        ));
    }
    Ok((host.to_ascii_lowercase(), port))
}

/// A DNS name: dot-separated labels of 1-63 letters, digits and inner hyphens (or `_`,
/// which some internal names use), at most 253 characters.
fn is_dns_name(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    host.len() <= 253
        && host.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// `--resolve HOST:PORT:ADDR`: connections to `HOST:PORT` go to `ADDR` (as curl's option).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvePin {
    /// Host name as in the target URL (lower-cased).
    pub host: String,
    /// Port as in the target URL.
    pub port: u16,
    /// The address to use instead of a DNS lookup.
    pub addr: IpAddr,
}

impl std::str::FromStr for ResolvePin {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "{text:?} is not HOST:PORT:ADDR (e.g. \"api.example.com:443:127.0.0.1\" or \"api.example.com:443:[::1]\")"
            )
        };
        let (host, rest) = text.split_once(':').ok_or_else(bad)?;
        let (port, addr) = rest.split_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().ok().filter(|p| *p > 0).ok_or_else(bad)?;
        let addr = addr
            .strip_prefix('[')
            .and_then(|a| a.strip_suffix(']'))
            .unwrap_or(addr);
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        if host.is_empty() || !is_dns_name(host) {
            return Err(bad());
        }
        Ok(Self {
            host: host.to_ascii_lowercase(),
            port,
            addr,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_with_names_literals_and_ports_parse() {
        let u = TargetUrl::parse("https://API.example.com").expect("valid");
        assert_eq!(
            (u.secure, u.host.as_str(), u.port),
            (true, "api.example.com", 443)
        );
        assert_eq!(u.host_header(), "api.example.com");
        assert_eq!(u.ws_scheme(), "wss");
        let u = TargetUrl::parse("http://127.0.0.1:8080/").expect("valid");
        assert_eq!(
            u.socket_addr(),
            Some("127.0.0.1:8080".parse().expect("addr"))
        );
        assert_eq!(u.host_header(), "127.0.0.1:8080");
        let u = TargetUrl::parse("http://[::1]:9000").expect("valid");
        assert_eq!(u.host, "::1");
        assert_eq!(u.host_header(), "[::1]:9000");
        assert_eq!(u.to_string(), "http://[::1]:9000");
        let u = TargetUrl::parse("http://localhost").expect("valid");
        assert_eq!((u.port, u.ip()), (80, None));
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        for (text, needle) in [
            ("ws://x", "http:// or https://"),
            ("http://x/events", "path"),
            ("http://x?a=1", "path or query"),
            ("http://u:p@x", "user info"),
            ("http://::1", "brackets"),
            ("http://[::1", "closing"),
            ("http://[zz]:1", "not an IPv6"),
            ("http://x:0", "1 to 65535"),
            ("http://x:99999", "1 to 65535"),
            ("http://", "missing"),
            ("http://bad host", "neither"),
            ("http://-x.com", "neither"),
        ] {
            let err = TargetUrl::parse(text).expect_err(text);
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn resolve_pins_parse_like_curl() {
        let p: ResolvePin = "Api.example.com:443:127.0.0.2".parse().expect("valid");
        assert_eq!(p.host, "api.example.com");
        assert_eq!(p.port, 443);
        assert_eq!(p.addr, "127.0.0.2".parse::<IpAddr>().expect("ip"));
        let p: ResolvePin = "h:1:[::1]".parse().expect("valid");
        assert_eq!(p.addr, "::1".parse::<IpAddr>().expect("ip"));
        for bad in [
            "h:443",
            "h:x:1.2.3.4",
            "h:443:nope",
            ":443:1.2.3.4",
            "h:0:1.2.3.4",
        ] {
            assert!(bad.parse::<ResolvePin>().is_err(), "{bad}");
        }
    }
}

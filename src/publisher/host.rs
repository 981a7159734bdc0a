//! Which host names the page answers to: the guard against DNS rebinding.
//!
//! A page on another site can make a visitor's browser resolve a name it
//! controls (`rebind.attacker.test`) to 127.0.0.1 and then read whatever
//! answers there: to the browser it is that page's own origin. The request
//! still names the attacker's host in its `Host` header (and in `Origin`),
//! so a server that answers only to the names it is known by is out of
//! reach. Without a token, icewatch answers only to:
//!
//! - `localhost` and names under `.localhost` (RFC 6761 keeps them for
//!   loopback: no public DNS record can point them elsewhere, and browsers
//!   resolve them to loopback themselves);
//! - loopback addresses, `127.0.0.0/8` and `[::1]`;
//! - the address it listens on; on every address (`0.0.0.0`, `[::]`), any
//!   IP address: an address typed into a browser is not looked up, so no
//!   page can rebind it;
//! - the names given with `--allowed-host`.
//!
//! The port is not looked at: a rebinding page has to use the real one.
//! The rules are in `docs/http.md`.

use std::net::IpAddr;

/// The host names and addresses requests may name.
#[derive(Clone, Debug)]
pub struct AllowedHosts {
    /// The address listened on (any IP is allowed if it is unspecified).
    listen: Option<IpAddr>,
    /// `--allowed-host` names, lower case, without a trailing dot.
    names: Vec<String>,
    /// `--allowed-host` addresses.
    ips: Vec<IpAddr>,
}

impl AllowedHosts {
    /// The hosts allowed for a server listening on `listen`, plus `names`
    /// (host names or IP addresses, as given to `--allowed-host`).
    pub fn new(listen: Option<IpAddr>, names: &[String]) -> AllowedHosts {
        let (ips, names): (Vec<_>, Vec<_>) = names.iter().partition(|n| parse_ip(n).is_some());
        AllowedHosts {
            listen,
            names: names.iter().map(|n| normal_name(n)).collect(),
            ips: ips.iter().filter_map(|n| parse_ip(n)).collect(),
        }
    }

    /// Whether a request naming `authority` (a `Host` header: `host`,
    /// `host:port`, `[v6]:port`) may be answered.
    pub fn allows(&self, authority: &str) -> bool {
        match split_host(authority) {
            Some(Host::Ip(ip)) => self.allows_ip(ip),
            Some(Host::Name(name)) => {
                let name = normal_name(name);
                name == "localhost" || name.ends_with(".localhost") || self.names.contains(&name)
            }
            None => false,
        }
    }

    fn allows_ip(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_loopback()
            || self
                .listen
                .is_some_and(|l| l.is_unspecified() || l.to_canonical() == ip)
            || self.ips.contains(&ip)
    }
}

/// The host part of an authority.
#[derive(Debug, PartialEq, Eq)]
enum Host<'a> {
    Ip(IpAddr),
    Name(&'a str),
}

/// `host`, `host:port`, `[v6]` or `[v6]:port` → the host; `None` for
/// anything else (an empty host, a bad port, brackets around a name).
fn split_host(authority: &str) -> Option<Host<'_>> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        let ip: std::net::Ipv6Addr = inside.parse().ok()?;
        (Host::Ip(IpAddr::V6(ip)), port)
    } else {
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        let host = match host.parse::<std::net::Ipv4Addr>() {
            Ok(ip) => Host::Ip(IpAddr::V4(ip)),
            Err(_) if valid_name(host) => Host::Name(host),
            Err(_) => return None,
        };
        (host, port)
    };
    match port {
        Some(p) if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) => None,
        _ => Some(host),
    }
}

/// A DNS name: letters, digits, `-`, `_` and dots, not empty.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// Lower case, without the trailing dot of a fully qualified name.
fn normal_name(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// An IP address, bare or in brackets.
fn parse_ip(s: &str) -> Option<IpAddr> {
    let bare = s
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(s);
    bare.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

/// The host and port a browser's `Origin` names (`scheme://host[:port]`),
/// or `None` for `null` and anything that is not an origin.
pub fn origin_authority(origin: &str) -> Option<&str> {
    let (scheme, rest) = origin.split_once("://")?;
    if scheme.is_empty() || rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
        return None;
    }
    Some(rest)
}

/// Checks a value for `--allowed-host`: a host name or an IP address,
/// without a scheme or a port.
pub fn check_allowed_host(value: &str) -> Result<String, String> {
    if parse_ip(value).is_some() {
        return Ok(value.to_owned());
    }
    if valid_name(value) && !value.starts_with('.') {
        return Ok(value.to_owned());
    }
    Err(format!(
        "{value:?} is not a host name or an IP address (give it without a scheme or a port, \
         as in --allowed-host icewatch.example.org)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback() -> AllowedHosts {
        AllowedHosts::new(Some("127.0.0.1".parse().unwrap()), &[])
    }

    #[test]
    fn loopback_names_and_addresses_are_allowed_with_or_without_a_port() {
        let hosts = loopback();
        for ok in [
            "localhost",
            "localhost:8080",
            "LocalHost:8080",
            "localhost.:8080",
            "page.localhost:8080",
            "127.0.0.1",
            "127.0.0.1:8080",
            "127.8.9.10:1",
            "[::1]",
            "[::1]:8080",
            "[::ffff:127.0.0.1]:8080",
        ] {
            assert!(hosts.allows(ok), "{ok}");
        }
    }

    #[test]
    fn other_names_and_addresses_are_refused() {
        let hosts = loopback();
        for refused in [
            "evil.example",
            "evil.example:8080",
            "rebind.attacker.test",
            "localhost.evil.example",
            "evillocalhost",
            "10.0.0.5:8080",
            "0.0.0.0:8080",
            "[::]:8080",
            "[fe80::1]",
            "",
            ":8080",
            "localhost:",
            "localhost:80:80",
            "localhost:http",
            "[::1",
            "[localhost]:80",
            "local host",
            "localhost/x",
            "user@localhost",
        ] {
            assert!(!hosts.allows(refused), "{refused:?}");
        }
    }

    #[test]
    fn allowed_hosts_are_added_by_name_or_address() {
        let names = [
            "Icewatch.Example.ORG".to_owned(),
            "[2001:db8::1]".to_owned(),
        ];
        let hosts = AllowedHosts::new(Some("127.0.0.1".parse().unwrap()), &names);
        assert!(hosts.allows("icewatch.example.org"));
        assert!(hosts.allows("ICEWATCH.example.org.:443"));
        assert!(hosts.allows("[2001:db8::1]:8080"));
        assert!(!hosts.allows("sub.icewatch.example.org"));
        assert!(!hosts.allows("example.org"));
    }

    #[test]
    fn the_listen_address_is_allowed_and_any_address_when_listening_on_all() {
        let lan = AllowedHosts::new(Some("192.0.2.7".parse().unwrap()), &[]);
        assert!(lan.allows("192.0.2.7:8080"));
        assert!(!lan.allows("192.0.2.8:8080"));
        assert!(!lan.allows("buildbox.lan:8080"));
        let all = AllowedHosts::new(Some("0.0.0.0".parse().unwrap()), &[]);
        assert!(all.allows("192.0.2.8:8080") && all.allows("[2001:db8::2]:80"));
        assert!(all.allows("localhost:8080"));
        assert!(!all.allows("buildbox.lan:8080"));
    }

    #[test]
    fn an_origin_gives_its_authority() {
        assert_eq!(
            origin_authority("http://localhost:8080"),
            Some("localhost:8080")
        );
        assert_eq!(origin_authority("https://[::1]"), Some("[::1]"));
        for bad in [
            "null",
            "localhost:8080",
            "http://",
            "http://a/b",
            "http://u@a",
        ] {
            assert_eq!(origin_authority(bad), None, "{bad}");
        }
    }

    #[test]
    fn allowed_host_values_are_names_or_addresses() {
        assert!(check_allowed_host("icewatch.example.org").is_ok());
        assert!(check_allowed_host("192.0.2.7").is_ok());
        assert!(check_allowed_host("[2001:db8::1]").is_ok());
        for bad in ["", "http://x", "x:8080", "a b", ".example.org", "*"] {
            assert!(check_allowed_host(bad).is_err(), "{bad:?}");
        }
    }
}

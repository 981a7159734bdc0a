//! Where the scheduler is: an address given by the user, the
//! `ICECC_SCHEDULER` / `USE_SCHEDULER` environment variables as icecream's
//! own tools read them, or discovery by UDP broadcast for a network name.

use crate::protocol::discovery::{discovery_request, parse_discovery_reply};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::time::{timeout_at, Instant};

/// The scheduler's port, for TCP and for discovery.
pub const DEFAULT_PORT: u16 = 8765;
/// The network name icecream uses when none is given.
pub const DEFAULT_NETNAME: &str = "ICECREAM";
/// How long discovery listens for answers.
pub const DEFAULT_DISCOVERY_WAIT: Duration = Duration::from_secs(2);

/// How to reach the scheduler.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A host name or IP address and a port.
    Address {
        /// Host name or IP address.
        host: String,
        /// TCP port.
        port: u16,
    },
    /// Ask by UDP broadcast which scheduler serves `netname`.
    Discover {
        /// The network name (compared case-insensitively, as icecream does).
        netname: String,
        /// The port to broadcast to.
        port: u16,
    },
}

/// Why the scheduler's address could not be found.
#[derive(Debug, thiserror::Error)]
pub enum LocateError {
    /// The host name does not resolve.
    #[error("cannot resolve scheduler address {target}: {source}")]
    Resolve {
        /// The address as given.
        target: String,
        /// The resolver's error.
        source: std::io::Error,
    },
    /// The host name resolves to nothing.
    #[error("scheduler address {0} resolves to no address")]
    NoAddress(String),
    /// No scheduler answered the discovery broadcast.
    #[error("no scheduler of network {netname:?} answered on port {port} within {wait:?} (give its address, or set USE_SCHEDULER=host[:port])")]
    NotFound {
        /// The network name asked for.
        netname: String,
        /// The port asked on.
        port: u16,
        /// How long we listened.
        wait: Duration,
    },
    /// The discovery socket failed.
    #[error("cannot broadcast for a scheduler: {0}")]
    Discovery(#[source] std::io::Error),
}

/// An address the user gave that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// The host part is empty.
    #[error("{source_name} gives no scheduler host in {value:?}")]
    EmptyHost {
        /// Where the address came from.
        source_name: &'static str,
        /// What it said.
        value: String,
    },
    /// The port is not a number from 1 to 65535.
    #[error("{source_name} has an invalid port in {value:?} (expected HOST[:PORT] with PORT from 1 to 65535)")]
    BadPort {
        /// Where the address came from.
        source_name: &'static str,
        /// What it said.
        value: String,
    },
    /// `HOST:PORT` and a separate port disagree.
    #[error("the port is given twice: {value:?} and {port}")]
    TwoPorts {
        /// The `HOST:PORT` argument.
        value: String,
        /// The separate port.
        port: u16,
    },
}

impl Target {
    /// Where to connect: `host` as `HOST[:PORT]` (or `HOST` plus `port`,
    /// default 8765); without a host, `ICECC_SCHEDULER` or `USE_SCHEDULER`
    /// (`host[:port]`, read as icecream reads them); else discovery of
    /// `netname` (default `ICECREAM`) on `port`.
    pub fn resolve(
        host: Option<&str>,
        port: Option<u16>,
        netname: &str,
    ) -> Result<Target, TargetError> {
        let var = |name: &'static str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .map(|v| (name, v))
        };
        let env = var("ICECC_SCHEDULER").or_else(|| var("USE_SCHEDULER"));
        Target::from_parts(
            host,
            port,
            netname,
            env.as_ref().map(|(n, v)| (*n, v.as_str())),
        )
    }

    /// [`Target::resolve`] with the environment given: `env` is the name and
    /// value of the variable that names the scheduler, if any.
    pub fn from_parts(
        host: Option<&str>,
        port: Option<u16>,
        netname: &str,
        env: Option<(&'static str, &str)>,
    ) -> Result<Target, TargetError> {
        if let Some(arg) = host {
            let (host, own_port) = split_host_port("the scheduler address", arg)?;
            let port = match (own_port, port) {
                (Some(a), Some(b)) if a != b => {
                    return Err(TargetError::TwoPorts {
                        value: arg.to_owned(),
                        port: b,
                    })
                }
                (a, b) => a.or(b).unwrap_or(DEFAULT_PORT),
            };
            return Ok(Target::Address { host, port });
        }
        if let Some((name, value)) = env {
            let (host, own_port) = split_host_port(name, value)?;
            let port = own_port.or(port).unwrap_or(DEFAULT_PORT);
            return Ok(Target::Address { host, port });
        }
        let netname = if netname.is_empty() {
            DEFAULT_NETNAME
        } else {
            netname
        };
        Ok(Target::Discover {
            netname: netname.to_owned(),
            port: port.unwrap_or(DEFAULT_PORT),
        })
    }

    /// The addresses to try, in order: a name lookup, or discovery (which
    /// listens for `discovery_wait` and offers `protocol` in its request).
    pub async fn locate(
        &self,
        protocol: u32,
        discovery_wait: Duration,
    ) -> Result<Vec<SocketAddr>, LocateError> {
        match self {
            Target::Address { host, port } => {
                let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), *port))
                    .await
                    .map_err(|source| LocateError::Resolve {
                        target: self.to_string(),
                        source,
                    })?
                    .collect();
                if addrs.is_empty() {
                    return Err(LocateError::NoAddress(self.to_string()));
                }
                Ok(addrs)
            }
            Target::Discover { netname, port } => {
                discover(netname, *port, protocol, discovery_wait)
                    .await
                    .map(|a| vec![a])
            }
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Address { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Target::Address { host, port } => write!(f, "{host}:{port}"),
            Target::Discover { netname, port } => {
                write!(
                    f,
                    "the scheduler of network {netname} (broadcast to port {port})"
                )
            }
        }
    }
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`, or a bare IPv6 address.
fn split_host_port(
    source_name: &'static str,
    value: &str,
) -> Result<(String, Option<u16>), TargetError> {
    let bad_port = || TargetError::BadPort {
        source_name,
        value: value.to_owned(),
    };
    let (host, port) = if let Some(rest) = value.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(bad_port)?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':').ok_or_else(bad_port)?)),
        }
    } else if value.matches(':').count() == 1 {
        let (host, port) = value.split_once(':').ok_or_else(bad_port)?;
        (host, Some(port))
    } else {
        (value, None)
    };
    if host.is_empty() {
        return Err(TargetError::EmptyHost {
            source_name,
            value: value.to_owned(),
        });
    }
    let port = match port {
        None => None,
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(bad_port)?,
        ),
    };
    Ok((host.to_owned(), port))
}

/// Finds the scheduler serving `netname` the way icecream's clients do:
/// one datagram (our protocol version) to the broadcast address of every
/// IPv4 interface but loopback and point-to-point links, then the best
/// answer within `wait`: the newest protocol, then the longest running.
///
/// With `ICECC_TESTS` set (icecream's own switch for its tests), it asks
/// only 127.0.0.1, so a test cluster in a private namespace needs no
/// broadcast at all.
pub async fn discover(
    netname: &str,
    port: u16,
    protocol: u32,
    wait: Duration,
) -> Result<SocketAddr, LocateError> {
    let dests: Vec<SocketAddr> = if std::env::var_os("ICECC_TESTS").is_some() {
        vec![SocketAddr::from((Ipv4Addr::LOCALHOST, port))]
    } else {
        if_addrs::get_if_addrs()
            .map_err(LocateError::Discovery)?
            .into_iter()
            .filter(|i| !i.is_loopback() && !i.is_p2p())
            .filter_map(|i| match i.addr {
                if_addrs::IfAddr::V4(v4) => v4.broadcast,
                if_addrs::IfAddr::V6(_) => None,
            })
            .map(|b| SocketAddr::from((b, port)))
            .collect()
    };
    discover_at(&dests, netname, port, protocol, wait).await
}

/// Asks `dests` (broadcast or plain addresses) for the scheduler of
/// `netname`; listens for `wait`, or until every address asked has answered
/// (which only plain addresses can do).
pub async fn discover_at(
    dests: &[SocketAddr],
    netname: &str,
    port: u16,
    protocol: u32,
    wait: Duration,
) -> Result<SocketAddr, LocateError> {
    let not_found = || LocateError::NotFound {
        netname: netname.to_owned(),
        port,
        wait,
    };
    let socket = UdpSocket::bind((IpAddr::from(Ipv4Addr::UNSPECIFIED), 0))
        .await
        .map_err(LocateError::Discovery)?;
    socket.set_broadcast(true).map_err(LocateError::Discovery)?;
    let request = u8::try_from(protocol).unwrap_or(u8::MAX);
    let mut sent = false;
    for dest in dests {
        match socket.send_to(&discovery_request(request), dest).await {
            Ok(_) => sent = true,
            Err(e) => tracing::debug!(%dest, "discovery request not sent: {e}"),
        }
    }
    if !sent {
        return Err(not_found());
    }
    let deadline = Instant::now() + wait;
    let mut best: Option<(u32, u64, SocketAddr)> = None;
    let mut unanswered: Vec<SocketAddr> = dests.to_vec();
    let mut buf = [0u8; 512];
    while !unanswered.is_empty() {
        let Ok(received) = timeout_at(deadline, socket.recv_from(&mut buf)).await else {
            break;
        };
        let Ok((len, from)) = received else { break };
        unanswered.retain(|&d| d != from);
        let Ok(info) = parse_discovery_reply(&buf[..len], request) else {
            tracing::debug!(%from, len, "ignoring a datagram that is no discovery reply");
            continue;
        };
        if !info.netname.eq_ignore_ascii_case(netname.as_bytes()) {
            tracing::debug!(%from, netname = %String::from_utf8_lossy(info.netname), "ignoring a scheduler of another network");
            continue;
        }
        if !(1..128).contains(&info.version) {
            continue;
        }
        let better = match best {
            None => true,
            Some((v, start, _)) => {
                info.version > v || (info.version == v && info.start_time < start)
            }
        };
        if better {
            best = Some((info.version, info.start_time, from));
        }
    }
    best.map(|(_, _, addr)| addr).ok_or_else(not_found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::discovery::{discovery_reply, parse_discovery_request, SchedulerInfo};

    #[test]
    fn an_address_argument_wins_over_the_environment() {
        let t = Target::from_parts(Some("sched"), None, "", Some(("USE_SCHEDULER", "other:1")));
        assert_eq!(
            t,
            Ok(Target::Address {
                host: "sched".into(),
                port: 8765
            })
        );
        let t = Target::from_parts(Some("sched:9000"), None, "", None);
        assert_eq!(
            t,
            Ok(Target::Address {
                host: "sched".into(),
                port: 9000
            })
        );
        let t = Target::from_parts(Some("sched"), Some(9001), "", None);
        assert_eq!(
            t,
            Ok(Target::Address {
                host: "sched".into(),
                port: 9001
            })
        );
        assert!(matches!(
            Target::from_parts(Some("sched:9000"), Some(9001), "", None),
            Err(TargetError::TwoPorts { .. })
        ));
    }

    #[test]
    fn use_scheduler_is_read_as_host_and_optional_port() {
        let t = Target::from_parts(
            None,
            None,
            "",
            Some(("USE_SCHEDULER", "build-master:10245")),
        );
        assert_eq!(
            t,
            Ok(Target::Address {
                host: "build-master".into(),
                port: 10245
            })
        );
        let t = Target::from_parts(None, None, "", Some(("USE_SCHEDULER", "build-master")));
        assert_eq!(t.unwrap().to_string(), "build-master:8765");
        let err = Target::from_parts(None, None, "", Some(("USE_SCHEDULER", "host:http")));
        assert_eq!(
            err.unwrap_err().to_string(),
            "USE_SCHEDULER has an invalid port in \"host:http\" (expected HOST[:PORT] with PORT from 1 to 65535)"
        );
    }

    #[test]
    fn ipv6_addresses_keep_their_colons() {
        let t = Target::from_parts(Some("[::1]:9000"), None, "", None).unwrap();
        assert_eq!(t.to_string(), "[::1]:9000");
        let t = Target::from_parts(Some("fe80::1"), None, "", None).unwrap();
        assert_eq!(
            t,
            Target::Address {
                host: "fe80::1".into(),
                port: 8765
            }
        );
        assert!(Target::from_parts(Some(":9000"), None, "", None).is_err());
    }

    #[test]
    fn without_an_address_the_netname_is_discovered() {
        let t = Target::from_parts(None, Some(9999), "", None).unwrap();
        assert_eq!(
            t,
            Target::Discover {
                netname: "ICECREAM".into(),
                port: 9999
            }
        );
        let t = Target::from_parts(None, None, "lab", None).unwrap();
        assert_eq!(
            t.to_string(),
            "the scheduler of network lab (broadcast to port 8765)"
        );
    }

    /// A scheduler's discovery socket on loopback (plain unicast, no broadcast).
    async fn responder(netname: &'static [u8], version: u32, start_time: u64) -> SocketAddr {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 16];
            let (len, from) = socket.recv_from(&mut buf).await.unwrap();
            let request = parse_discovery_request(&buf[..len]).unwrap();
            let info = SchedulerInfo {
                version,
                start_time,
                netname,
            };
            socket
                .send_to(&discovery_reply(request, &info), from)
                .await
                .unwrap();
        });
        addr
    }

    #[tokio::test]
    async fn discovery_picks_the_newest_then_oldest_scheduler_of_the_netname() {
        let other_net = responder(b"OTHER", 44, 1).await;
        let old = responder(b"icecream", 42, 1).await;
        let young = responder(b"ICECREAM", 43, 500).await;
        let best = responder(b"ICECREAM", 43, 100).await;
        let dests = [other_net, old, young, best];
        let found = discover_at(&dests, "ICECREAM", 8765, 44, Duration::from_secs(600))
            .await
            .unwrap();
        assert_eq!(found, best);
    }

    #[tokio::test(start_paused = true)]
    async fn discovery_without_an_answer_names_the_netname() {
        let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let dest = silent.local_addr().unwrap();
        let err = discover_at(&[dest], "LAB", 8765, 44, Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("\"LAB\""), "{err}");
    }
}

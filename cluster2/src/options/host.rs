//! Where a port binds: an IP address, or a host name that the master looks up once, when it
//! starts, and binds every address of ([`Options::addresses`]).
//!
//! `localhost` is not looked up: it is the loopback addresses, 127.0.0.1 and ::1 (the second
//! where the machine has IPv6), as RFC 6761 asks and as curl and browsers read it, whatever
//! `/etc/hosts` says. Any other name is resolved by the system (`getaddrinfo`), which is how
//! servers usually read a host name they are given.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::Options;
use crate::error::{Error, Result};

/// What [`Options::host`] and [`Options::mon_host`] name: an IP address, or a host name.
///
/// Written as text: `0.0.0.0`, `::1`, `localhost`, `api.internal`. A name is resolved once,
/// when the master starts, and the port is bound on every address it resolves to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host(Kind);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    Ip(IpAddr),
    Name(String),
}

impl Host {
    /// The address, when the host is written as one.
    pub fn ip(&self) -> Option<IpAddr> {
        match &self.0 {
            Kind::Ip(ip) => Some(*ip),
            Kind::Name(_) => None,
        }
    }

    /// The host name, when the host is written as one.
    pub fn name(&self) -> Option<&str> {
        match &self.0 {
            Kind::Ip(_) => None,
            Kind::Name(name) => Some(name),
        }
    }

    /// Reads an address or a name that the schema has accepted.
    fn parse(text: &str) -> Option<Self> {
        if let Ok(ip) = text.parse() {
            return Some(Self(Kind::Ip(ip)));
        }
        cluster2_options_schema::is_host(text).then(|| Self(Kind::Name(text.to_owned())))
    }

    fn is_localhost(&self) -> bool {
        self.name().is_some_and(|name| {
            name.strip_suffix('.')
                .unwrap_or(name)
                .eq_ignore_ascii_case("localhost")
        })
    }

    /// Whether every address of this host is a loopback address, when that is known without
    /// looking the name up: for an address, and for `localhost`.
    pub(crate) fn is_loopback(&self) -> Option<bool> {
        match &self.0 {
            Kind::Ip(ip) => Some(ip.to_canonical().is_loopback()),
            Kind::Name(_) => self.is_localhost().then_some(true),
        }
    }

    /// The addresses this host stands for, with port 0: the address itself, the loopback
    /// addresses for `localhost`, or what the system resolves a name to, in its order and
    /// without repeats.
    pub(crate) fn lookup(&self) -> std::io::Result<Vec<SocketAddr>> {
        let name = match &self.0 {
            Kind::Ip(ip) => return Ok(vec![SocketAddr::new(*ip, 0)]),
            _ if self.is_localhost() => {
                return Ok(vec![
                    SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
                    SocketAddr::from((Ipv6Addr::LOCALHOST, 0)),
                ]);
            }
            Kind::Name(name) => name,
        };
        let mut addrs: Vec<SocketAddr> = Vec::new();
        for addr in (name.as_str(), 0).to_socket_addrs()? {
            if !addrs.contains(&addr) {
                addrs.push(addr);
            }
        }
        Ok(addrs)
    }
}

impl From<IpAddr> for Host {
    fn from(ip: IpAddr) -> Self {
        Self(Kind::Ip(ip))
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Kind::Ip(ip) => ip.fmt(f),
            Kind::Name(name) => f.write_str(name),
        }
    }
}

impl Serialize for Host {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Host {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Host::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!("`{text}` is neither an IP address nor a host name"))
        })
    }
}

/// The most addresses one port is bound on. A name that resolves to more is refused rather
/// than bound on some of them.
pub(crate) const MAX_ADDRESSES: usize = 16;

/// The addresses the master binds, each with port 0, in the order of the lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Addresses {
    /// Of the application port.
    pub(crate) app: Vec<SocketAddr>,
    /// Of the monitor.
    pub(crate) monitor: Vec<SocketAddr>,
}

impl Options {
    /// Looks the hosts up, once: the master binds what this returns, and `--check` calls it to
    /// report a name that does not resolve. The monitor's rule on tokens is checked again on
    /// the addresses a name resolved to, which [`Options::validate`] could not know.
    pub(crate) fn addresses(&self) -> Result<Addresses> {
        let app = lookup("host", &self.host)?;
        let monitor = lookup("mon_host", &self.mon_host)?;
        let loopback = monitor.iter().all(|a| a.ip().to_canonical().is_loopback());
        if let Err(problem) = self.monitor_exposure(loopback) {
            return Err(Error::config(format!(
                "invalid value `{}` for {}: it resolves to {}, not only loopback: {}",
                self.mon_host,
                super::cli::flag_name(problem.key),
                list(&monitor),
                problem.message
            )));
        }
        Ok(Addresses { app, monitor })
    }
}

fn lookup(key: &str, host: &Host) -> Result<Vec<SocketAddr>> {
    let invalid = |why: String| {
        Error::config(format!(
            "invalid value `{host}` for {}: {why}",
            super::cli::flag_name(key)
        ))
    };
    let addrs = host
        .lookup()
        .map_err(|e| invalid(format!("the host name does not resolve ({e})")))?;
    if addrs.is_empty() {
        return Err(invalid("the host name resolves to no address".to_owned()));
    }
    if addrs.len() > MAX_ADDRESSES {
        return Err(invalid(format!(
            "the host name resolves to {} addresses, more than the {MAX_ADDRESSES} a port is \
             bound on: name an address",
            addrs.len()
        )));
    }
    Ok(addrs)
}

/// Addresses as a person reads them: `127.0.0.1, ::1`.
fn list(addrs: &[SocketAddr]) -> String {
    let ips: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
    ips.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(text: &str) -> Host {
        Host::parse(text).unwrap()
    }

    #[test]
    fn addresses_and_names_read_and_write_as_text() {
        assert_eq!(host("::1").ip(), Some(IpAddr::V6(Ipv6Addr::LOCALHOST)));
        assert_eq!(host("api.internal").name(), Some("api.internal"));
        assert_eq!(Host::parse("my host"), None);
        for text in ["0.0.0.0", "::", "localhost", "api.internal"] {
            let json = serde_json::to_value(host(text)).unwrap();
            assert_eq!(json, text);
            assert_eq!(serde_json::from_value::<Host>(json).unwrap(), host(text));
            let bytes = postcard::to_stdvec(&host(text)).unwrap();
            assert_eq!(postcard::from_bytes::<Host>(&bytes).unwrap(), host(text));
        }
    }

    #[test]
    fn localhost_is_both_loopback_addresses_without_a_lookup() {
        for name in ["localhost", "LocalHost", "localhost."] {
            let addrs = host(name).lookup().unwrap();
            let ips: Vec<IpAddr> = addrs.iter().map(SocketAddr::ip).collect();
            assert_eq!(
                ips,
                [
                    "127.0.0.1".parse::<IpAddr>().unwrap(),
                    "::1".parse().unwrap()
                ]
            );
            assert_eq!(host(name).is_loopback(), Some(true));
        }
        assert_eq!(host("127.0.0.2").is_loopback(), Some(true));
        assert_eq!(host("0.0.0.0").is_loopback(), Some(false));
        assert_eq!(host("api.internal").is_loopback(), None);
    }

    #[test]
    fn a_name_that_does_not_resolve_names_the_flag_and_the_name() {
        // `.invalid` never resolves (RFC 2606).
        let options = Options {
            host: host("no-such-host.invalid"),
            ..Options::default()
        };
        let err = options.addresses().unwrap_err().to_string();
        assert!(
            err.starts_with(
                "invalid value `no-such-host.invalid` for --host: the host name does not resolve"
            ),
            "{err}"
        );
    }
}

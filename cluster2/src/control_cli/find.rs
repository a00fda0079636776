//! Where the running master's monitor answers. With `--pids=DIR`, from `DIR/master.pid`, once
//! it is proven to name this cluster's live master (the proof `stop` uses: a directory only
//! its owner writes to, the file this user's, the lock held, the start time, the owner), whose
//! third line, in the same read, is the monitor's address: the token goes nowhere else. Otherwise from
//! `--mon-host` and `--mon-port`. A monitor bound on every address (`0.0.0.0`, `::`) is
//! reached on loopback.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

use super::Failure;
use crate::master::pidfile::{MASTER_FILE, NotMaster, prove_master};
use crate::options::Options;

/// The monitor to talk to, and what to say about where it was found.
#[derive(Debug, Clone)]
pub(crate) struct Monitor {
    /// The addresses to try, in order.
    pub(crate) addrs: Vec<SocketAddr>,
    /// How it was found, for messages: `the master (pid 41) found in /run/app/master.pid`.
    pub(crate) found: String,
    /// The token to send, when one is given.
    pub(crate) token: Option<String>,
}

pub(crate) fn monitor(options: &Options) -> Result<Monitor, Failure> {
    let token = options.mon.token.as_ref().map(|t| t.expose().to_owned());
    let Some(dir) = options.pids.as_deref() else {
        return from_options(options, token);
    };
    let path = Path::new(dir).join(MASTER_FILE);
    let proven = match prove_master(&path) {
        Ok(proven) => proven,
        Err(NotMaster::Missing) => {
            return Err(Failure::NoMaster(format!(
                "no master found: no {MASTER_FILE} in {dir} (--pids): no cluster runs from there"
            )));
        }
        Err(NotMaster::Stale { pid }) => {
            let named = pid.map_or(String::new(), |pid| format!(" (it named pid {pid})"));
            return Err(Failure::NoMaster(format!(
                "no master found: {} is stale{named}: the master that wrote it is gone",
                path.display()
            )));
        }
        Err(NotMaster::Refused(why)) => {
            return Err(Failure::NoMaster(format!("no master found: {why}")));
        }
    };
    let master = proven.process;
    let Some(addr) = proven.monitor else {
        return Err(Failure::NoMaster(format!(
            "{} names the master (pid {}) but not its monitor's address: a master of an older \
             version wrote it; give --mon-port (and --mon-host) instead of --pids",
            path.display(),
            master.pid
        )));
    };
    Ok(Monitor {
        addrs: vec![reachable(addr)],
        found: format!(
            "the master (pid {}) of {}, at {}",
            master.pid,
            path.display(),
            reachable(addr)
        ),
        token,
    })
}

fn from_options(options: &Options, token: Option<String>) -> Result<Monitor, Failure> {
    if options.mon_port == 0 {
        return Err(Failure::Usage(
            "no way to find the master: give --pids=DIR (where it writes its pid file) or \
             --mon-port (its monitor's port; 0 picks a port the command cannot guess)"
                .to_owned(),
        ));
    }
    let addrs: Vec<SocketAddr> = options
        .mon_host
        .lookup()
        .map_err(|e| {
            Failure::Usage(format!(
                "invalid value `{}` for --mon-host: the host name does not resolve ({e})",
                options.mon_host
            ))
        })?
        .into_iter()
        .map(|a| reachable(SocketAddr::new(a.ip(), options.mon_port)))
        .collect();
    if addrs.is_empty() {
        return Err(Failure::Usage(format!(
            "invalid value `{}` for --mon-host: it resolves to no address",
            options.mon_host
        )));
    }
    Ok(Monitor {
        found: format!(
            "the monitor at {} (--mon-host {}, --mon-port {})",
            addrs[0], options.mon_host, options.mon_port
        ),
        addrs,
        token,
    })
}

/// Where to connect to reach a monitor bound on `addr`: loopback for a wildcard address.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), addr.port())
        }
        _ => addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wildcard_monitor_is_reached_on_loopback() {
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert_eq!(reachable(at("0.0.0.0:81")), at("127.0.0.1:81"));
        assert_eq!(reachable(at("[::]:81")), at("[::1]:81"));
        assert_eq!(reachable(at("10.1.2.3:81")), at("10.1.2.3:81"));
    }
}

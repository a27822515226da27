//! UDP ports for peer connections: each conference has a range (its placement's, or the
//! configured default); every peer connection binds one free port of it.
//!
//! webrtc-rs has no port-range setting, so the SFU picks a port, checks it is free by binding
//! it, and hands the address to the peer connection. Ports are leased and returned on drop.
//!
//! A port of the range that cannot be bound although no lease of this process holds it is
//! *unusable*: another process on the node holds it (a second SFU pod on the node's network,
//! a node daemon), or the bind address is wrong. The pool remembers such ports until a bind
//! succeeds again, so that the SFU can say which ports are lost instead of skipping them
//! silently: [`check_range`] at start and per room, [`Leased::newly_unusable`] per lease.

use std::collections::{BTreeSet, HashSet};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;

use parking_lot::Mutex;
use proto::UdpPorts;

/// The ports in use by this process, and those found unusable.
#[derive(Debug, Default, Clone)]
pub struct PortPool {
    used: Arc<Mutex<HashSet<u16>>>,
    unusable: Arc<Mutex<BTreeSet<u16>>>,
}

/// One port, returned to the pool when dropped.
#[derive(Debug)]
pub struct PortLease {
    port: u16,
    used: Arc<Mutex<HashSet<u16>>>,
}

impl PortLease {
    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for PortLease {
    fn drop(&mut self) {
        self.used.lock().remove(&self.port);
    }
}

/// What [`PortPool::lease`] found.
#[derive(Debug)]
pub struct Leased {
    /// The port leased, if any was free.
    pub lease: Option<PortLease>,
    /// Ports it could not bind that were not known as unusable before.
    pub newly_unusable: Vec<u16>,
    /// How many binds failed on the way (known unusable ports are tried again).
    pub bind_failures: u32,
}

/// What [`PortPool::check`] found in a range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeCheck {
    /// Ports of the range that cannot be bound, none of them leased by this process.
    pub unusable: Vec<u16>,
    /// Ports that were not known as unusable before.
    pub newly_unusable: Vec<u16>,
    /// The error of the first failed bind, for the log.
    pub first_error: Option<String>,
}

impl PortPool {
    /// Leases a port of `range` that no other lease holds and that `ip` can bind now.
    /// `skip` ports (known to fail for this caller) are not tried. Ports that cannot be bound
    /// are remembered as unusable and reported in the answer.
    pub fn lease(&self, range: UdpPorts, ip: IpAddr, skip: &HashSet<u16>) -> Leased {
        let mut used = self.used.lock();
        let mut newly_unusable = Vec::new();
        let mut bind_failures = 0;
        for port in range.first..=range.last {
            if used.contains(&port) || skip.contains(&port) {
                continue;
            }
            if UdpSocket::bind(SocketAddr::new(ip, port)).is_err() {
                bind_failures += 1;
                if self.unusable.lock().insert(port) {
                    newly_unusable.push(port);
                }
                continue;
            }
            self.unusable.lock().remove(&port);
            used.insert(port);
            return Leased {
                lease: Some(PortLease {
                    port,
                    used: Arc::clone(&self.used),
                }),
                newly_unusable,
                bind_failures,
            };
        }
        Leased {
            lease: None,
            newly_unusable,
            bind_failures,
        }
    }

    /// Tries to bind every port of `range` on `ip` that no lease holds, and records the
    /// answer: the ports that failed become unusable, the others usable again.
    pub fn check(&self, range: UdpPorts, ip: IpAddr) -> RangeCheck {
        let used = self.used.lock().clone();
        let found = check_range(range, ip, &used);
        let mut unusable = self.unusable.lock();
        let mut newly_unusable = Vec::new();
        for port in range.first..=range.last {
            if used.contains(&port) {
                continue;
            }
            if found.unusable.binary_search(&port).is_ok() {
                if unusable.insert(port) {
                    newly_unusable.push(port);
                }
            } else {
                unusable.remove(&port);
            }
        }
        RangeCheck {
            newly_unusable,
            ..found
        }
    }

    /// Ports leased now.
    pub fn in_use(&self) -> usize {
        self.used.lock().len()
    }

    /// Ports known to be unusable now.
    pub fn unusable(&self) -> usize {
        self.unusable.lock().len()
    }

    /// The ports of `range` known to be unusable now.
    pub fn unusable_in(&self, range: UdpPorts) -> Vec<u16> {
        self.unusable
            .lock()
            .range(range.first..=range.last)
            .copied()
            .collect()
    }
}

/// Binds (and releases at once) every port of `range` on `ip` except `skip`; answers the ones
/// that fail, in order.
pub fn check_range(range: UdpPorts, ip: IpAddr, skip: &HashSet<u16>) -> RangeCheck {
    let mut unusable = Vec::new();
    let mut first_error = None;
    for port in range.first..=range.last {
        if skip.contains(&port) {
            continue;
        }
        if let Err(err) = UdpSocket::bind(SocketAddr::new(ip, port)) {
            first_error.get_or_insert_with(|| err.to_string());
            unusable.push(port);
        }
    }
    RangeCheck {
        newly_unusable: unusable.clone(),
        unusable,
        first_error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    #[test]
    fn leases_are_distinct_and_returned_on_drop() {
        let pool = PortPool::default();
        let range = UdpPorts {
            first: 47_100,
            last: 47_101,
        };
        let a = pool
            .lease(range, LOCALHOST, &HashSet::new())
            .lease
            .expect("first");
        let b = pool
            .lease(range, LOCALHOST, &HashSet::new())
            .lease
            .expect("second");
        assert_ne!(a.port(), b.port());
        let exhausted = pool.lease(range, LOCALHOST, &HashSet::new());
        assert!(exhausted.lease.is_none(), "range exhausted");
        // Our own leases are not unusable ports.
        assert!(exhausted.newly_unusable.is_empty());
        assert_eq!(pool.unusable(), 0);
        drop(a);
        assert!(
            pool.lease(range, LOCALHOST, &HashSet::new())
                .lease
                .is_some()
        );
    }

    #[test]
    fn a_port_another_process_holds_is_reported_once_and_forgotten_when_free() {
        let pool = PortPool::default();
        let range = UdpPorts {
            first: 47_110,
            last: 47_112,
        };
        // Someone else binds the first port.
        let squatter = UdpSocket::bind((LOCALHOST, 47_110)).expect("bind the first port");
        let first = pool.lease(range, LOCALHOST, &HashSet::new());
        assert_eq!(first.lease.as_ref().map(PortLease::port), Some(47_111));
        assert_eq!(first.newly_unusable, vec![47_110]);
        assert_eq!(first.bind_failures, 1);
        assert_eq!(pool.unusable_in(range), vec![47_110]);
        // Seen before: counted as a failure, not reported again.
        let second = pool.lease(range, LOCALHOST, &HashSet::new());
        assert_eq!(second.lease.as_ref().map(PortLease::port), Some(47_112));
        assert!(second.newly_unusable.is_empty());
        assert_eq!(second.bind_failures, 1);
        // The other process lets go: the port is usable again.
        drop(squatter);
        let check = pool.check(range, LOCALHOST);
        assert!(check.unusable.is_empty(), "{check:?}");
        assert_eq!(pool.unusable(), 0);
        drop((first, second));
    }

    #[test]
    fn a_range_check_names_the_ports_that_cannot_be_bound() {
        let range = UdpPorts {
            first: 47_120,
            last: 47_124,
        };
        let _a = UdpSocket::bind((LOCALHOST, 47_121)).expect("bind");
        let _b = UdpSocket::bind((LOCALHOST, 47_122)).expect("bind");
        let pool = PortPool::default();
        let check = pool.check(range, LOCALHOST);
        assert_eq!(check.unusable, vec![47_121, 47_122]);
        assert_eq!(check.newly_unusable, vec![47_121, 47_122]);
        assert!(check.first_error.is_some());
        assert!(pool.check(range, LOCALHOST).newly_unusable.is_empty());
        // An address that is not this host's: nothing can be bound.
        let elsewhere = check_range(
            range,
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            &HashSet::new(),
        );
        assert_eq!(elsewhere.unusable.len(), 5);
    }
}

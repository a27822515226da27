//! UDP ports for peer connections: each conference has a range (its placement's, or the
//! configured default); every peer connection binds one free port of it.
//!
//! webrtc-rs has no port-range setting, so the SFU picks a port, checks it is free by binding
//! it, and hands the address to the peer connection. Ports are leased and returned on drop.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;

use parking_lot::Mutex;
use proto::UdpPorts;

/// The ports in use by this process.
#[derive(Debug, Default, Clone)]
pub struct PortPool {
    used: Arc<Mutex<HashSet<u16>>>,
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

impl PortPool {
    /// Leases a port of `range` that no other lease holds and that `ip` can bind now.
    /// `skip` ports (known to fail) are not tried.
    pub fn lease(&self, range: UdpPorts, ip: IpAddr, skip: &HashSet<u16>) -> Option<PortLease> {
        let mut used = self.used.lock();
        for port in range.first..=range.last {
            if used.contains(&port) || skip.contains(&port) {
                continue;
            }
            if UdpSocket::bind(SocketAddr::new(ip, port)).is_err() {
                continue;
            }
            used.insert(port);
            return Some(PortLease {
                port,
                used: Arc::clone(&self.used),
            });
        }
        None
    }

    /// Ports leased now.
    pub fn in_use(&self) -> usize {
        self.used.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn leases_are_distinct_and_returned_on_drop() {
        let pool = PortPool::default();
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let range = UdpPorts {
            first: 47_100,
            last: 47_101,
        };
        let a = pool.lease(range, ip, &HashSet::new()).expect("first");
        let b = pool.lease(range, ip, &HashSet::new()).expect("second");
        assert_ne!(a.port(), b.port());
        assert!(
            pool.lease(range, ip, &HashSet::new()).is_none(),
            "range exhausted"
        );
        drop(a);
        assert!(pool.lease(range, ip, &HashSet::new()).is_some());
    }
}

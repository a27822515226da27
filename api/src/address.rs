//! Client addresses behind proxies: which `X-Forwarded-For` hop is the client's own (the
//! rightmost one no trusted proxy added), and how addresses are grouped for throttling (one
//! IPv6 customer usually holds a whole /64, so a /64 counts as one address).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// A network in CIDR notation (`10.0.0.0/8`, `fd00::/8`), or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` lies in this network (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (ip, prefix) = text.split_once('/').unwrap_or((text, ""));
        let network: IpAddr = ip
            .parse()
            .map_err(|_| format!("{text:?} is not an address or a network like 10.0.0.0/8"))?;
        let network = canonical(network);
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = if prefix.is_empty() {
            max
        } else {
            prefix
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{text:?} has a prefix length above {max}"))?
        };
        Ok(Cidr { network, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// The networks `--trust-forwarded-for` trusts: loopback and the private ranges, where
/// Ingress controllers and load balancers inside a cluster live.
pub const PRIVATE_NETWORKS: [&str; 7] = [
    "127.0.0.0/8",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "::1/128",
    "fc00::/7",
    "fe80::/10",
];

/// The proxies whose `X-Forwarded-For` entries are believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<Cidr>);

impl TrustedProxies {
    /// Proxies in these networks.
    pub fn new(networks: Vec<Cidr>) -> Self {
        Self(networks)
    }

    /// Loopback and the private ranges ([`PRIVATE_NETWORKS`]).
    pub fn private_networks() -> Self {
        Self(
            PRIVATE_NETWORKS
                .iter()
                .filter_map(|n| n.parse().ok())
                .collect(),
        )
    }

    /// Whether no proxy is trusted (the peer is the client).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|n| n.contains(ip))
    }

    /// The client's address: walking from the peer back through `X-Forwarded-For` (every
    /// header value, in order), the first address no trusted proxy vouches for. A hop that does
    /// not parse ends the walk at the last trusted proxy's peer — an attacker may write anything
    /// left of the hop our own proxy appended.
    pub fn client(&self, peer: IpAddr, forwarded_for: &[&str]) -> IpAddr {
        let mut client = canonical(peer);
        if !self.trusts(client) {
            return client;
        }
        let hops: Vec<&str> = forwarded_for
            .iter()
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .filter(|hop| !hop.is_empty())
            .collect();
        for hop in hops.iter().rev() {
            let Some(ip) = parse_hop(hop) else { break };
            client = ip;
            if !self.trusts(ip) {
                break;
            }
        }
        client
    }
}

/// One `X-Forwarded-For` entry: an address, possibly `[v6]:port` or `v4:port`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Ok(socket) = hop.parse::<std::net::SocketAddr>() {
        return Some(canonical(socket.ip()));
    }
    None
}

/// IPv4-mapped IPv6 addresses as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// How an address counts for throttling: IPv4 as it is, IPv6 by its /64.
pub fn throttle_group(ip: IpAddr) -> String {
    // The client network the SFU and exclusions count by; loopback (a local proxy or a test)
    // stands for itself.
    proto::client_network(ip).unwrap_or_else(|| canonical(ip).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    }

    fn proxies(list: &[&str]) -> TrustedProxies {
        TrustedProxies::new(list.iter().filter_map(|n| n.parse().ok()).collect())
    }

    #[test]
    fn without_trusted_proxies_the_peer_is_the_client() {
        let none = TrustedProxies::default();
        assert_eq!(none.client(ip("10.0.0.5"), &["1.2.3.4"]), ip("10.0.0.5"));
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let trusted = proxies(&["10.0.0.0/8"]);
        // The client wrote "6.6.6.6" itself; the ingress appended the address it saw.
        assert_eq!(
            trusted.client(ip("10.0.0.5"), &["6.6.6.6, 203.0.113.7"]),
            ip("203.0.113.7")
        );
        // Two trusted proxies in a row.
        assert_eq!(
            trusted.client(ip("10.0.0.5"), &["6.6.6.6", "203.0.113.7, 10.1.1.1"]),
            ip("203.0.113.7")
        );
        // A peer that is no trusted proxy cannot forward anything.
        assert_eq!(
            trusted.client(ip("198.51.100.1"), &["203.0.113.7"]),
            ip("198.51.100.1")
        );
        // Garbage stops the walk at the last address a trusted proxy vouched for.
        assert_eq!(
            trusted.client(ip("10.0.0.5"), &["203.0.113.7, nonsense, 10.2.2.2"]),
            ip("10.2.2.2")
        );
        assert_eq!(
            trusted.client(ip("10.0.0.5"), &["[2001:db8::1]:4711"]),
            ip("2001:db8::1")
        );
    }

    #[test]
    fn networks_parse_and_match() {
        let net: Cidr = "172.16.0.0/12".parse().unwrap_or(Cidr {
            network: ip("0.0.0.0"),
            prefix: 32,
        });
        assert!(net.contains(ip("172.31.255.1")));
        assert!(!net.contains(ip("172.32.0.1")));
        assert!(net.contains(ip("::ffff:172.16.0.1")));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("fd00::/8".parse::<Cidr>().is_ok());
        assert!(
            "0.0.0.0/0"
                .parse::<Cidr>()
                .is_ok_and(|n| n.contains(ip("8.8.8.8")))
        );
        assert_eq!(
            TrustedProxies::private_networks().0.len(),
            PRIVATE_NETWORKS.len()
        );
    }

    #[test]
    fn ipv6_addresses_count_by_their_64() {
        assert_eq!(
            throttle_group(ip("2001:db8:1:2:aaaa::1")),
            throttle_group(ip("2001:db8:1:2:bbbb::9"))
        );
        assert_ne!(
            throttle_group(ip("2001:db8:1:2::1")),
            throttle_group(ip("2001:db8:1:3::1"))
        );
        assert_eq!(throttle_group(ip("::ffff:192.0.2.1")), "192.0.2.1");
    }
}

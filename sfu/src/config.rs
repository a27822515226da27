//! The SFU's configuration: one clap struct, every field a flag and an environment variable.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use proto::UdpPorts;

/// Configuration of `conclave sfu` (and of the SFU embedded in `conclave standalone`).
///
/// Flags are prefixed `sfu-` so that the standalone command can flatten this next to the
/// API's configuration.
#[derive(Clone, clap::Args)]
pub struct Config {
    /// Address of the signaling websocket (`/rtc`) and of `/healthz`, `/readyz`, `/metrics`.
    #[arg(
        id = "sfu-listen",
        long = "sfu-listen",
        env = "CONCLAVE_SFU_LISTEN",
        default_value = "0.0.0.0:7880"
    )]
    pub listen: SocketAddr,
    /// Address of a second listener for `/metrics` (and the probes), reachable only inside the
    /// cluster. When set, the main listener no longer serves `/metrics`.
    #[arg(
        id = "sfu-internal-listen",
        long = "sfu-internal-listen",
        env = "CONCLAVE_SFU_INTERNAL_LISTEN"
    )]
    pub internal_listen: Option<SocketAddr>,
    /// File holding the secret shared with the API that signs join tokens and service tokens
    /// (32 bytes or more). The CONCLAVE_JOIN_TOKEN_SECRET variable works too; there is no flag
    /// for the secret itself, as flags show in `ps`.
    #[arg(
        id = "sfu-join-token-secret-file",
        long = "sfu-join-token-secret-file",
        env = "CONCLAVE_JOIN_TOKEN_SECRET_FILE"
    )]
    pub join_token_secret_file: Option<PathBuf>,
    /// The secret itself, when embedding (see [`Config::for_loopback`]); `conclave sfu` fills it
    /// from the environment or the file ([`Config::resolve_secret`]).
    #[arg(skip)]
    pub join_token_secret: String,
    /// UDP ports for conferences whose token carries no assigned range (`FIRST-LAST`).
    #[arg(
        id = "sfu-udp-ports",
        long = "sfu-udp-ports",
        env = "CONCLAVE_SFU_UDP_PORTS",
        default_value = "40000-40999",
        value_parser = parse_ports
    )]
    pub udp_ports: UdpPorts,
    /// Local address the peer connections bind to (`0.0.0.0`: every interface but loopback).
    #[arg(
        id = "sfu-bind-ip",
        long = "sfu-bind-ip",
        env = "CONCLAVE_SFU_BIND_IP",
        default_value = "0.0.0.0"
    )]
    pub bind_ip: IpAddr,
    /// Addresses announced in ICE candidates instead of the local ones (NAT 1:1, e.g. the
    /// node's public IP); comma-separated.
    #[arg(
        id = "sfu-announced-ips",
        long = "sfu-announced-ips",
        env = "CONCLAVE_SFU_ANNOUNCED_IPS",
        value_delimiter = ','
    )]
    pub announced_ips: Vec<IpAddr>,
    /// Base URL of the conference service that receives room reports (joins, leaves, end);
    /// without it reports are only logged.
    #[arg(id = "sfu-api-url", long = "sfu-api-url", env = "CONCLAVE_SFU_API_URL")]
    pub api_url: Option<String>,
    /// This pod's name; reports are signed as `sfu:<pod>`.
    #[arg(
        id = "sfu-pod-name",
        long = "sfu-pod-name",
        env = "POD_NAME",
        default_value = "sfu-0"
    )]
    pub pod_name: String,
    /// Participants this SFU serves at most, over all its rooms.
    #[arg(
        id = "sfu-max-participants",
        long = "sfu-max-participants",
        env = "CONCLAVE_SFU_MAX_PARTICIPANTS",
        default_value_t = 500
    )]
    pub max_participants: u32,
    /// Participants per room when the join token sets no maximum.
    #[arg(
        id = "sfu-room-max-participants",
        long = "sfu-room-max-participants",
        env = "CONCLAVE_SFU_ROOM_MAX_PARTICIPANTS",
        default_value_t = 100
    )]
    pub room_max_participants: u32,
    /// Seconds given to rooms to drain on shutdown before connections are closed.
    #[arg(
        id = "sfu-drain-seconds",
        long = "sfu-drain-seconds",
        env = "CONCLAVE_SFU_DRAIN_SECONDS",
        default_value_t = 20
    )]
    pub drain_seconds: u64,
    /// Seconds without an answer to ICE checks after which a participant's media connection
    /// counts as failed: the participant is told why and their page reconnects.
    #[arg(
        id = "sfu-ice-failed-seconds",
        long = "sfu-ice-failed-seconds",
        env = "CONCLAVE_SFU_ICE_FAILED_SECONDS",
        default_value_t = 25,
        value_parser = clap::value_parser!(u64).range(2..=600)
    )]
    pub ice_failed_seconds: u64,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("internal_listen", &self.internal_listen)
            .field("join_token_secret", &"<redacted>")
            .field("join_token_secret_file", &self.join_token_secret_file)
            .field("udp_ports", &self.udp_ports)
            .field("bind_ip", &self.bind_ip)
            .field("announced_ips", &self.announced_ips.len())
            .field("api_url", &self.api_url)
            .field("pod_name", &self.pod_name)
            .field("max_participants", &self.max_participants)
            .field("room_max_participants", &self.room_max_participants)
            .field("drain_seconds", &self.drain_seconds)
            .field("ice_failed_seconds", &self.ice_failed_seconds)
            .finish()
    }
}

impl Config {
    /// A configuration for tests and embedding: loopback everywhere, the given secret.
    pub fn for_loopback(secret: impl Into<String>, udp_ports: UdpPorts) -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            internal_listen: None,
            join_token_secret: secret.into(),
            join_token_secret_file: None,
            udp_ports,
            bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            announced_ips: Vec::new(),
            api_url: None,
            pod_name: "sfu-test".into(),
            max_participants: 500,
            room_max_participants: 100,
            drain_seconds: 2,
            ice_failed_seconds: 25,
        }
    }
}

/// The environment variable holding the join-token secret.
pub const JOIN_TOKEN_SECRET_ENV: &str = "CONCLAVE_JOIN_TOKEN_SECRET";

impl Config {
    /// Fills [`Config::join_token_secret`] when it is empty: from CONCLAVE_JOIN_TOKEN_SECRET,
    /// else from `--sfu-join-token-secret-file` (surrounding whitespace trimmed).
    ///
    /// # Errors
    /// A message for people when neither is set or the file cannot be read.
    pub fn resolve_secret(&mut self) -> Result<(), String> {
        if !self.join_token_secret.is_empty() {
            return Ok(());
        }
        if let Ok(secret) = std::env::var(JOIN_TOKEN_SECRET_ENV) {
            self.join_token_secret = secret;
            return Ok(());
        }
        let Some(path) = &self.join_token_secret_file else {
            return Err(format!(
                "the SFU needs the join-token secret the API signs with: set {JOIN_TOKEN_SECRET_ENV} or --sfu-join-token-secret-file"
            ));
        };
        let text = std::fs::read_to_string(path).map_err(|err| {
            format!(
                "cannot read the join-token secret file {}: {err}",
                path.display()
            )
        })?;
        self.join_token_secret = text.trim().to_owned();
        Ok(())
    }
}

fn parse_ports(value: &str) -> Result<UdpPorts, String> {
    let (first, last) = value
        .split_once('-')
        .ok_or_else(|| "expected FIRST-LAST, e.g. 40000-40999".to_owned())?;
    let first: u16 = first
        .trim()
        .parse()
        .map_err(|e| format!("first port: {e}"))?;
    let last: u16 = last.trim().parse().map_err(|e| format!("last port: {e}"))?;
    if first == 0 || last < first {
        return Err("the range must be 1..=65535 with FIRST <= LAST".into());
    }
    Ok(UdpPorts { first, last })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_ranges_parse_and_refuse_inversions() {
        assert_eq!(
            parse_ports("40000-40010"),
            Ok(UdpPorts {
                first: 40000,
                last: 40010
            })
        );
        assert!(parse_ports("5-1").is_err());
        assert!(parse_ports("x").is_err());
    }
}

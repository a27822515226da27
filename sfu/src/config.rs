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
    /// Where recordings go: a local folder (default `/var/lib/conclave/files`) or an
    /// S3-compatible bucket shared with the API.
    #[command(flatten)]
    pub files: files::FilesArgs,
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
    /// UDP ports of each pod, `POD=FIRST-LAST`, comma-separated (pods that need ports of their
    /// own, e.g. behind NodePort Services); this pod's entry (by `--sfu-pod-name`) replaces
    /// `--sfu-udp-ports`, and a list without it is an error.
    #[arg(
        id = "sfu-udp-ports-by-pod",
        long = "sfu-udp-ports-by-pod",
        env = "CONCLAVE_SFU_UDP_PORTS_BY_POD",
        value_delimiter = ',',
        value_parser = parse_pod_ports
    )]
    pub udp_ports_by_pod: Vec<PodPorts>,
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
    /// Addresses announced by some pods only, comma-separated: `node/NODE=IP` for every pod on
    /// node NODE (e.g. its public address when the node's own is private), `pod/POD=IP` for one
    /// pod (e.g. the address of its own load balancer); one entry per address. The entries
    /// that name this pod or its node (`--sfu-node-name`) replace `--sfu-announced-ips`.
    #[arg(
        id = "sfu-announced-ip-map",
        long = "sfu-announced-ip-map",
        env = "CONCLAVE_SFU_ANNOUNCED_IP_MAP",
        value_delimiter = ',',
        value_parser = parse_announced_for
    )]
    pub announced_ip_map: Vec<AnnouncedFor>,
    /// The node this pod runs on (the chart passes `spec.nodeName`), for the `node/…` entries
    /// of `--sfu-announced-ip-map`.
    #[arg(
        id = "sfu-node-name",
        long = "sfu-node-name",
        env = "CONCLAVE_SFU_NODE_NAME"
    )]
    pub node_name: Option<String>,
    /// TCP port for ICE over TCP (passive candidates, RFC 6544), the fallback of clients whose
    /// network blocks UDP: every peer connection is reachable through this one port on the bind
    /// address and announces it beside its UDP candidates. Unset: UDP only.
    #[arg(
        id = "sfu-ice-tcp-port",
        long = "sfu-ice-tcp-port",
        env = "CONCLAVE_SFU_ICE_TCP_PORT"
    )]
    pub ice_tcp_port: Option<u16>,
    /// Single-port mode: every peer connection of this SFU on this one UDP port of the bind
    /// address, told apart by the client's address and ICE username (like a TURN server's one
    /// port). The port ranges (`--sfu-udp-ports`, `--sfu-udp-ports-by-pod`, placements) are then
    /// not used. Needs a specific `--sfu-bind-ip` or `0.0.0.0`/`::` (replies leave from the
    /// address the client reached). Unset: one port of the range per peer connection.
    #[arg(
        id = "sfu-udp-port",
        long = "sfu-udp-port",
        env = "CONCLAVE_SFU_UDP_PORT",
        value_parser = clap::value_parser!(u16).range(1..)
    )]
    pub udp_port: Option<u16>,
    /// Kernel buffer asked for each media UDP socket, each way, in bytes (the shared port in
    /// single-port mode, every peer connection's socket otherwise). It holds the publishers'
    /// packets while the SFU is short of CPU: a keyframe arrives as a burst of ~100 packets.
    /// The kernel grants at most `net.core.rmem_max` / `wmem_max` (a warning at start says
    /// when it granted less). 0 keeps the kernel's default.
    #[arg(
        id = "sfu-udp-buffer-bytes",
        long = "sfu-udp-buffer-bytes",
        env = "CONCLAVE_SFU_UDP_BUFFER_BYTES",
        default_value_t = DEFAULT_UDP_BUFFER_BYTES,
        value_parser = clap::value_parser!(u32).range(0..=1 << 30)
    )]
    pub udp_buffer_bytes: u32,
    /// Whether the SFU protects and sends forwarded media itself on subscriber connections
    /// (about 2.6 times the packets per CPU-second of webrtc-rs' per-connection path; see
    /// docs/sfu.md "Direct media"). Off, every packet goes through webrtc-rs. A connection whose
    /// ICE picked TCP uses webrtc-rs' path either way.
    #[arg(
        id = "sfu-direct-media",
        long = "sfu-direct-media",
        env = "CONCLAVE_SFU_DIRECT_MEDIA",
        default_value_t = true,
        action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub direct_media: bool,
    /// Base URL of the conference service that receives room reports (joins, leaves, end);
    /// without it reports are only logged.
    #[arg(id = "sfu-api-url", long = "sfu-api-url", env = "CONCLAVE_SFU_API_URL")]
    pub api_url: Option<String>,
    /// This pod's name: reports and requests to the API are signed as `sfu:<pod>`, and a join
    /// token naming another pod is refused (`wrongPod`).
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
    /// Seconds running meetings go on after SIGTERM (readiness turns off at once, so nothing
    /// new is placed here; meetings the operator moves meanwhile are told `moved` then); when
    /// they are up, or when no session is left, everyone left is told `moved` and the process
    /// ends. Keep it below the pod's terminationGracePeriodSeconds (the chart sets it 10 less).
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
    /// What one participant or one address may do: tracks, rates, queues, idle time and
    /// connections before `join`.
    #[command(flatten)]
    pub limits: Limits,
}

/// Limits that keep one participant or one address from taking an SFU down; docs/security.md
/// explains each. `conclave standalone` takes the same flags for its embedded SFU.
#[derive(Debug, Clone, clap::Args)]
pub struct Limits {
    /// Tracks one participant may announce at once (microphone, camera, screen and screen
    /// sound are four); an offer may carry no more media sections than this either.
    #[arg(
        long = "sfu-max-tracks-per-participant",
        env = "CONCLAVE_SFU_MAX_TRACKS_PER_PARTICIPANT",
        default_value_t = 8,
        value_parser = clap::value_parser!(u32).range(1..=64)
    )]
    pub max_tracks_per_participant: u32,
    /// Chat messages per second one participant may send on average (0: no limit).
    #[arg(
        long = "sfu-chat-rate",
        env = "CONCLAVE_SFU_CHAT_RATE",
        default_value_t = 5.0
    )]
    pub chat_rate: f64,
    /// Chat messages one participant may send at once after a quiet spell.
    #[arg(
        long = "sfu-chat-burst",
        env = "CONCLAVE_SFU_CHAT_BURST",
        default_value_t = 10
    )]
    pub chat_burst: u32,
    /// Publish, unpublish, mute and moderation actions per second one participant may take on
    /// average (0: no limit); each reaches everyone, and publishing renegotiates everyone's
    /// connection.
    #[arg(
        long = "sfu-control-rate",
        env = "CONCLAVE_SFU_CONTROL_RATE",
        default_value_t = 5.0
    )]
    pub control_rate: f64,
    /// Publish, unpublish, mute and moderation actions one participant may take at once.
    #[arg(
        long = "sfu-control-burst",
        env = "CONCLAVE_SFU_CONTROL_BURST",
        default_value_t = 20
    )]
    pub control_burst: u32,
    /// Guest seats (waiting or admitted) one client network (an IPv4 address, an IPv6 /64) may
    /// hold in one room; 0: no limit.
    #[arg(
        long = "sfu-guest-seats-per-client",
        env = "CONCLAVE_SFU_GUEST_SEATS_PER_CLIENT",
        default_value_t = 20
    )]
    pub guest_seats_per_client: u32,
    /// Messages queued for one participant's websocket; a participant whose queue fills is
    /// disconnected (reason `tooSlow`) instead of buffered without end.
    #[arg(
        long = "sfu-session-queue",
        env = "CONCLAVE_SFU_SESSION_QUEUE",
        default_value_t = 1024,
        value_parser = clap::value_parser!(u32).range(16..)
    )]
    pub session_queue: u32,
    /// Seconds a write to a participant's websocket may take before the participant is
    /// disconnected (reason `tooSlow`).
    #[arg(
        long = "sfu-send-timeout-seconds",
        env = "CONCLAVE_SFU_SEND_TIMEOUT_SECONDS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(1..=300)
    )]
    pub send_timeout_seconds: u64,
    /// Seconds between websocket pings to each participant.
    #[arg(
        long = "sfu-ping-seconds",
        env = "CONCLAVE_SFU_PING_SECONDS",
        default_value_t = 15,
        value_parser = clap::value_parser!(u64).range(1..=600)
    )]
    pub ping_seconds: u64,
    /// Seconds without any frame from a participant (pongs count) after which the session is
    /// closed (reason `unresponsive`).
    #[arg(
        long = "sfu-idle-timeout-seconds",
        env = "CONCLAVE_SFU_IDLE_TIMEOUT_SECONDS",
        default_value_t = 45,
        value_parser = clap::value_parser!(u64).range(2..=3600)
    )]
    pub idle_timeout_seconds: u64,
    /// Websockets that have not joined yet (they have 10 seconds to), over all addresses;
    /// beyond it new connections are answered 503.
    #[arg(
        long = "sfu-max-pending-connections",
        env = "CONCLAVE_SFU_MAX_PENDING_CONNECTIONS",
        default_value_t = 512,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub max_pending_connections: u32,
    /// Websockets that have not joined yet from one client network (loopback peers, i.e. a
    /// local proxy, count in the total only); beyond it new connections from there are
    /// answered 429.
    #[arg(
        long = "sfu-max-pending-per-address",
        env = "CONCLAVE_SFU_MAX_PENDING_PER_ADDRESS",
        default_value_t = 64,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub max_pending_per_address: u32,
    /// Proxies (IP addresses or CIDR ranges, comma-separated) whose X-Forwarded-For header is
    /// believed: the client is the rightmost hop that is not one of them. Empty: the peer
    /// address is the client.
    #[arg(
        id = "sfu_trusted_proxies",
        long = "sfu-trusted-proxies",
        env = "CONCLAVE_SFU_TRUSTED_PROXIES",
        value_delimiter = ',',
        value_parser = parse_network
    )]
    pub trusted_proxies: Vec<Network>,
    /// Rooms with more admitted participants than this are large: everyone hears only the
    /// microphones of the `--sfu-audible-speakers` who spoke last (0: no room is large).
    #[arg(
        long = "sfu-large-room-size",
        env = "CONCLAVE_SFU_LARGE_ROOM_SIZE",
        default_value_t = 50
    )]
    pub large_room_size: u32,
    /// In a large room, how many microphones everyone hears: those that carried speech most
    /// recently.
    #[arg(
        long = "sfu-audible-speakers",
        env = "CONCLAVE_SFU_AUDIBLE_SPEAKERS",
        default_value_t = 3,
        value_parser = clap::value_parser!(u32).range(1..=32)
    )]
    pub audible_speakers: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_tracks_per_participant: 8,
            chat_rate: 5.0,
            chat_burst: 10,
            control_rate: 5.0,
            control_burst: 20,
            guest_seats_per_client: 20,
            session_queue: 1024,
            send_timeout_seconds: 10,
            ping_seconds: 15,
            idle_timeout_seconds: 45,
            max_pending_connections: 512,
            max_pending_per_address: 64,
            trusted_proxies: Vec::new(),
            large_room_size: 50,
            audible_speakers: 3,
        }
    }
}

pub use proto::net::{Network, parse_network};

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("internal_listen", &self.internal_listen)
            .field("join_token_secret", &"<redacted>")
            .field("join_token_secret_file", &self.join_token_secret_file)
            .field("udp_ports", &self.udp_ports)
            .field("udp_ports_by_pod", &self.udp_ports_by_pod)
            .field("bind_ip", &self.bind_ip)
            .field("announced_ips", &self.announced_ips.len())
            .field("announced_ip_map", &self.announced_ip_map.len())
            .field("node_name", &self.node_name)
            .field("ice_tcp_port", &self.ice_tcp_port)
            .field("udp_port", &self.udp_port)
            .field("udp_buffer_bytes", &self.udp_buffer_bytes)
            .field("direct_media", &self.direct_media)
            .field("api_url", &self.api_url)
            .field("pod_name", &self.pod_name)
            .field("max_participants", &self.max_participants)
            .field("room_max_participants", &self.room_max_participants)
            .field("drain_seconds", &self.drain_seconds)
            .field("ice_failed_seconds", &self.ice_failed_seconds)
            .field("limits", &self.limits)
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
            udp_ports_by_pod: Vec::new(),
            bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            announced_ips: Vec::new(),
            announced_ip_map: Vec::new(),
            node_name: None,
            ice_tcp_port: None,
            udp_port: None,
            udp_buffer_bytes: DEFAULT_UDP_BUFFER_BYTES,
            direct_media: true,
            api_url: None,
            pod_name: "sfu-test".into(),
            max_participants: 500,
            room_max_participants: 100,
            drain_seconds: 2,
            ice_failed_seconds: 25,
            limits: Limits::default(),
            files: files::FilesArgs::default(),
        }
    }
}

/// `--sfu-udp-buffer-bytes` by default: 4 MiB, as `net.core.rmem_max` is set on the nodes of
/// most WebRTC deployments (LiveKit asks for 5 MB).
pub const DEFAULT_UDP_BUFFER_BYTES: u32 = 4 << 20;

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

/// One pod's UDP ports, an entry of `--sfu-udp-ports-by-pod`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodPorts {
    /// The pod.
    pub pod: String,
    /// Its range.
    pub ports: UdpPorts,
}

/// Whom an entry of `--sfu-announced-ip-map` is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnnouncedScope {
    /// Every pod on this node.
    Node(String),
    /// This pod.
    Pod(String),
}

/// An entry of `--sfu-announced-ip-map`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnouncedFor {
    /// Whom it is for.
    pub scope: AnnouncedScope,
    /// The address they announce.
    pub ip: IpAddr,
}

impl Config {
    /// The UDP ports of this pod: its entry of `--sfu-udp-ports-by-pod`, else `--sfu-udp-ports`.
    ///
    /// # Errors
    /// A message for people when the list names other pods only.
    pub fn ports_here(&self) -> Result<UdpPorts, String> {
        if self.udp_ports_by_pod.is_empty() {
            return Ok(self.udp_ports);
        }
        self.udp_ports_by_pod
            .iter()
            .find(|entry| entry.pod == self.pod_name)
            .map(|entry| entry.ports)
            .ok_or_else(|| {
                format!(
                    "--sfu-udp-ports-by-pod has no entry for this pod ({}): add {}=FIRST-LAST (the chart writes one per replica; did sfu.replicas change without a new rollout?)",
                    self.pod_name, self.pod_name
                )
            })
    }

    /// The addresses this pod announces in ICE candidates: the entries of
    /// `--sfu-announced-ip-map` for this pod or its node, else `--sfu-announced-ips`.
    pub fn announced_here(&self) -> Vec<IpAddr> {
        let mine: Vec<IpAddr> = self
            .announced_ip_map
            .iter()
            .filter(|entry| match &entry.scope {
                AnnouncedScope::Pod(pod) => *pod == self.pod_name,
                AnnouncedScope::Node(node) => self.node_name.as_ref() == Some(node),
            })
            .map(|entry| entry.ip)
            .collect();
        if mine.is_empty() {
            self.announced_ips.clone()
        } else {
            mine
        }
    }
}

fn parse_pod_ports(value: &str) -> Result<PodPorts, String> {
    let (pod, ports) = value
        .split_once('=')
        .ok_or_else(|| format!("{value}: expected POD=FIRST-LAST, e.g. sfu-0=30000-30099"))?;
    let pod = pod.trim();
    if pod.is_empty() {
        return Err(format!("{value}: the pod name is empty"));
    }
    Ok(PodPorts {
        pod: pod.to_owned(),
        ports: parse_ports(ports).map_err(|e| format!("{value}: {e}"))?,
    })
}

fn parse_announced_for(value: &str) -> Result<AnnouncedFor, String> {
    let usage = || format!("{value}: expected node/NODE=IP or pod/POD=IP");
    let (who, ip) = value.trim().split_once('=').ok_or_else(usage)?;
    let scope = match who.split_once('/') {
        Some(("node", node)) if !node.is_empty() => AnnouncedScope::Node(node.to_owned()),
        Some(("pod", pod)) if !pod.is_empty() => AnnouncedScope::Pod(pod.to_owned()),
        _ => return Err(usage()),
    };
    let ip = ip
        .trim()
        .parse()
        .map_err(|e| format!("{value}: not an IP address ({e})"))?;
    Ok(AnnouncedFor { scope, ip })
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

    #[test]
    fn a_pod_takes_its_own_ports_of_a_per_pod_list() {
        let mut config = Config::for_loopback(
            "s",
            UdpPorts {
                first: 40000,
                last: 40999,
            },
        );
        assert_eq!(
            config.ports_here(),
            Ok(UdpPorts {
                first: 40000,
                last: 40999
            })
        );
        config.udp_ports_by_pod = ["sfu-0=30000-30099", "sfu-1=30100-30199"]
            .iter()
            .map(|entry| parse_pod_ports(entry).expect("an entry"))
            .collect();
        config.pod_name = "sfu-1".into();
        assert_eq!(
            config.ports_here(),
            Ok(UdpPorts {
                first: 30100,
                last: 30199
            })
        );
        config.pod_name = "sfu-2".into();
        let missing = config.ports_here().expect_err("no entry");
        assert!(missing.contains("sfu-2=FIRST-LAST"), "{missing}");
        assert!(parse_pod_ports("30000-30099").is_err());
        assert!(parse_pod_ports("sfu-0=30099-30000").is_err());
    }

    #[test]
    fn a_pod_announces_its_nodes_or_its_own_address_from_the_map() {
        let mut config = Config::for_loopback(
            "s",
            UdpPorts {
                first: 40000,
                last: 40999,
            },
        );
        config.announced_ips = vec!["198.51.100.1".parse().expect("ip")];
        config.announced_ip_map = [
            "node/node-a=203.0.113.1",
            "node/node-a=2001:db8::1",
            "node/node-b=203.0.113.2",
            "pod/sfu-9=192.0.2.9",
        ]
        .iter()
        .map(|entry| parse_announced_for(entry).expect("an entry"))
        .collect();
        config.pod_name = "sfu-0".into();
        config.node_name = Some("node-a".into());
        let ips: Vec<String> = config
            .announced_here()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(ips, ["203.0.113.1", "2001:db8::1"]);
        // A node the map does not name: the static list.
        config.node_name = Some("node-c".into());
        assert_eq!(config.announced_here(), config.announced_ips);
        // A pod's own entry (its load balancer).
        config.pod_name = "sfu-9".into();
        let ips: Vec<String> = config
            .announced_here()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(ips, ["192.0.2.9"]);
        for bad in [
            "203.0.113.1",
            "host/x=203.0.113.1",
            "node/=203.0.113.1",
            "pod/sfu-0=nope",
        ] {
            assert!(parse_announced_for(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn trusted_proxy_ranges_match_their_addresses_only() {
        let net = parse_network("10.0.0.0/8").expect("v4");
        assert!(net.contains("10.1.2.3".parse().expect("ip")));
        assert!(net.contains("::ffff:10.1.2.3".parse().expect("ip")));
        assert!(!net.contains("11.0.0.1".parse().expect("ip")));
        let one = parse_network("127.0.0.1").expect("single");
        assert!(one.contains("127.0.0.1".parse().expect("ip")));
        assert!(!one.contains("127.0.0.2".parse().expect("ip")));
        let v6 = parse_network("fd00::/8").expect("v6");
        assert!(v6.contains("fd12::1".parse().expect("ip")));
        assert!(!v6.contains("10.0.0.1".parse().expect("ip")));
        assert!(
            parse_network("0.0.0.0/0")
                .expect("all")
                .contains("8.8.8.8".parse().expect("ip"))
        );
        assert!(parse_network("10.0.0.0/33").is_err());
        assert!(parse_network("nonsense").is_err());
    }

    #[test]
    fn the_default_limits_match_the_flags_defaults() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            limits: Limits,
        }
        let parsed = Cli::parse_from(["sfu"]).limits;
        let default = Limits::default();
        assert_eq!(format!("{parsed:?}"), format!("{default:?}"));
    }
}

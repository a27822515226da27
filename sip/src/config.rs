//! The gateway's configuration: one clap struct, every field a flag and an environment variable.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use proto::UdpPorts;

/// Configuration of `conclave sip` (and of the gateway embedded in `conclave standalone`).
///
/// Flags are prefixed `sip-` so that the standalone command can flatten this next to the
/// API's and the SFU's configuration.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Address the SIP endpoint listens on, UDP and TCP alike.
    #[arg(
        id = "sip-listen",
        long = "sip-listen",
        env = "CONCLAVE_SIP_LISTEN",
        default_value = "0.0.0.0:5060"
    )]
    pub listen: SocketAddr,
    /// Address of `/healthz`, `/readyz` and `/metrics` (HTTP, for the cluster; not for callers).
    #[arg(
        id = "sip-http-listen",
        long = "sip-http-listen",
        env = "CONCLAVE_SIP_HTTP_LISTEN",
        default_value = "0.0.0.0:9060"
    )]
    pub http_listen: SocketAddr,
    /// UDP ports for the calls' RTP (`FIRST-LAST`); each call takes one.
    #[arg(
        id = "sip-rtp-ports",
        long = "sip-rtp-ports",
        env = "CONCLAVE_SIP_RTP_PORTS",
        default_value = "41000-41999",
        value_parser = parse_ports
    )]
    pub rtp_ports: UdpPorts,
    /// A folder of WAV files that replace the built-in English prompts one by one (file names
    /// as in sip/prompts/, e.g. `welcome.wav`; 8000 Hz, mono, 16-bit PCM). A missing file keeps
    /// the built-in prompt; a file in another format stops the start with a message.
    #[arg(
        id = "sip-prompts-dir",
        long = "sip-prompts-dir",
        env = "CONCLAVE_SIP_PROMPTS_DIR"
    )]
    pub prompts_dir: Option<PathBuf>,
    /// The address callers send media to, written in SDP and Contact (e.g. the node's public IP
    /// behind NAT). Unset: the listen address, or when that is unspecified the local address
    /// that routes to each caller.
    #[arg(
        id = "sip-public-address",
        long = "sip-public-address",
        env = "CONCLAVE_SIP_PUBLIC_ADDRESS"
    )]
    pub public_address: Option<IpAddr>,
    /// SIP trunks (a carrier's or a PBX's addresses, `IP` or `IP/PREFIX`, comma-separated)
    /// whose calls are always accepted and not rate-limited per source.
    #[arg(
        id = "sip-trunk-from",
        long = "sip-trunk-from",
        env = "CONCLAVE_SIP_TRUNK_FROM",
        value_delimiter = ',',
        value_parser = parse_network
    )]
    pub trunk_from: Vec<Network>,
    /// Callers accepted besides the trunks (`IP` or `IP/PREFIX`, comma-separated, e.g. an
    /// office network), rate-limited per source like any caller.
    #[arg(
        id = "sip-allow-from",
        long = "sip-allow-from",
        env = "CONCLAVE_SIP_ALLOW_FROM",
        value_delimiter = ',',
        value_parser = parse_network
    )]
    pub allow_from: Vec<Network>,
    /// Accept calls from any address (a public SIP address); without it, calls from outside
    /// `--sip-trunk-from` and `--sip-allow-from` are answered 403.
    #[arg(id = "sip-open", long = "sip-open", env = "CONCLAVE_SIP_OPEN")]
    pub open: bool,
    /// New calls per minute one source address may start (trunks excepted); more are
    /// answered 503 with Retry-After.
    #[arg(
        id = "sip-calls-per-minute",
        long = "sip-calls-per-minute",
        env = "CONCLAVE_SIP_CALLS_PER_MINUTE",
        default_value_t = 10,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub calls_per_minute: u32,
    /// Calls this gateway carries at once; more are answered 503.
    #[arg(
        id = "sip-max-calls",
        long = "sip-max-calls",
        env = "CONCLAVE_SIP_MAX_CALLS",
        default_value_t = 200
    )]
    pub max_calls: u32,
    /// Base URL of the conference service, which checks meeting IDs and passwords
    /// (`POST /api/v1/join`, as for guests).
    #[arg(
        id = "sip-api-url",
        long = "sip-api-url",
        env = "CONCLAVE_SIP_API_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub api_url: String,
    /// File holding the secret shared with the API and the SFU that signs join and service
    /// tokens (32 bytes or more): the gateway asks the API to join for phone callers with a
    /// service token signed with it. The CONCLAVE_JOIN_TOKEN_SECRET variable works too; there
    /// is no flag for the secret itself, as flags show in `ps`.
    #[arg(
        id = "sip-join-token-secret-file",
        long = "sip-join-token-secret-file",
        env = "CONCLAVE_JOIN_TOKEN_SECRET_FILE"
    )]
    pub join_token_secret_file: Option<PathBuf>,
    /// The secret itself, when embedding; `conclave sip` fills it from the environment or the
    /// file ([`Config::resolve_secret`]).
    #[arg(skip)]
    pub join_token_secret: Secret,
    /// Seconds a caller has to type the next digit before the question is asked again.
    #[arg(
        id = "sip-digit-timeout-seconds",
        long = "sip-digit-timeout-seconds",
        env = "CONCLAVE_SIP_DIGIT_TIMEOUT_SECONDS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(1..=120)
    )]
    pub digit_timeout_seconds: u64,
    /// Milliseconds a call rings (180) before it is answered; 0 answers at once.
    #[arg(
        id = "sip-answer-delay-ms",
        long = "sip-answer-delay-ms",
        env = "CONCLAVE_SIP_ANSWER_DELAY_MS",
        default_value_t = 0,
        value_parser = clap::value_parser!(u64).range(0..=10_000)
    )]
    pub answer_delay_ms: u64,
}

impl Config {
    /// A configuration for tests and embedding: listening on `listen`, RTP on `rtp_ports`,
    /// open to every caller, checking with the API at `api_url`.
    pub fn for_loopback(listen: SocketAddr, rtp_ports: UdpPorts, api_url: &str) -> Config {
        Config {
            listen,
            http_listen: SocketAddr::new(listen.ip(), 0),
            rtp_ports,
            prompts_dir: None,
            public_address: None,
            trunk_from: Vec::new(),
            allow_from: Vec::new(),
            open: true,
            calls_per_minute: 10,
            max_calls: 200,
            api_url: api_url.to_owned(),
            join_token_secret_file: None,
            join_token_secret: Secret::default(),
            digit_timeout_seconds: 10,
            answer_delay_ms: 0,
        }
    }

    /// Fills [`Config::join_token_secret`] when it is empty: from CONCLAVE_JOIN_TOKEN_SECRET,
    /// else from `--sip-join-token-secret-file` (surrounding whitespace trimmed).
    ///
    /// # Errors
    /// A message for people when neither is set or the file cannot be read.
    pub fn resolve_secret(&mut self) -> Result<(), String> {
        if !self.join_token_secret.expose().is_empty() {
            return Ok(());
        }
        if let Ok(secret) = std::env::var(JOIN_TOKEN_SECRET_ENV) {
            self.join_token_secret = secret.into();
            return Ok(());
        }
        let Some(path) = &self.join_token_secret_file else {
            return Err(format!(
                "the gateway needs the join-token secret the API signs with: set {JOIN_TOKEN_SECRET_ENV} or --sip-join-token-secret-file"
            ));
        };
        let text = std::fs::read_to_string(path).map_err(|err| {
            format!(
                "cannot read the join-token secret file {}: {err}",
                path.display()
            )
        })?;
        self.join_token_secret = text.trim().into();
        Ok(())
    }

    /// Whether a call from `source` is accepted at all (a trunk, an allowed network, or an
    /// open gateway).
    pub fn accepts(&self, source: IpAddr) -> bool {
        self.open || self.is_trunk(source) || self.allow_from.iter().any(|net| net.contains(source))
    }

    /// Whether `source` is one of the configured trunks.
    pub fn is_trunk(&self, source: IpAddr) -> bool {
        self.trunk_from.iter().any(|net| net.contains(source))
    }
}

/// Loopback and the private networks (RFC 1918, IPv6 unique local): who may call the gateway
/// embedded in `conclave standalone` by default, a machine and its LAN.
pub const LOCAL_NETWORKS: &str = "127.0.0.0/8,::1,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7";

/// The gateway's options in `conclave standalone`: the flags of `conclave sip` that mean
/// something in one process, with the same names and variables. The conference service is the
/// one in the process, and the gateway's metrics are on the process's `/metrics`, so
/// `--sip-api-url` and `--sip-http-listen` do not exist here.
#[derive(Debug, Clone, clap::Args)]
pub struct Embedded {
    /// Address the SIP gateway listens on, UDP and TCP alike, or `off` to run without dial-in.
    /// Default: the IP address of --listen, port 5060.
    #[arg(
        id = "sip-listen",
        long = "sip-listen",
        env = "CONCLAVE_SIP_LISTEN",
        value_parser = parse_listen
    )]
    pub listen: Option<Listen>,
    /// UDP ports for the calls' RTP (`FIRST-LAST`); each call takes one.
    #[arg(
        id = "sip-rtp-ports",
        long = "sip-rtp-ports",
        env = "CONCLAVE_SIP_RTP_PORTS",
        default_value = "41000-41999",
        value_parser = parse_ports
    )]
    pub rtp_ports: UdpPorts,
    /// A folder of WAV files that replace the built-in English prompts one by one (file names
    /// as in sip/prompts/, e.g. `welcome.wav`; 8000 Hz, mono, 16-bit PCM).
    #[arg(
        id = "sip-prompts-dir",
        long = "sip-prompts-dir",
        env = "CONCLAVE_SIP_PROMPTS_DIR"
    )]
    pub prompts_dir: Option<PathBuf>,
    /// The address callers send media to, written in SDP and Contact (e.g. the machine's
    /// public IP behind NAT). Unset: the listen address, or when that is unspecified the local
    /// address that routes to each caller.
    #[arg(
        id = "sip-public-address",
        long = "sip-public-address",
        env = "CONCLAVE_SIP_PUBLIC_ADDRESS"
    )]
    pub public_address: Option<IpAddr>,
    /// SIP trunks (`IP` or `IP/PREFIX`, comma-separated) whose calls are always accepted and
    /// not rate-limited per source.
    #[arg(
        id = "sip-trunk-from",
        long = "sip-trunk-from",
        env = "CONCLAVE_SIP_TRUNK_FROM",
        value_delimiter = ',',
        value_parser = parse_network
    )]
    pub trunk_from: Vec<Network>,
    /// Callers accepted besides the trunks (`IP` or `IP/PREFIX`, comma-separated),
    /// rate-limited per source. Default: this machine and the private networks.
    #[arg(
        id = "sip-allow-from",
        long = "sip-allow-from",
        env = "CONCLAVE_SIP_ALLOW_FROM",
        value_delimiter = ',',
        default_value = LOCAL_NETWORKS,
        value_parser = parse_network
    )]
    pub allow_from: Vec<Network>,
    /// Accept calls from any address; without it, calls from outside `--sip-trunk-from` and
    /// `--sip-allow-from` are answered 403.
    #[arg(id = "sip-open", long = "sip-open", env = "CONCLAVE_SIP_OPEN")]
    pub open: bool,
    /// New calls per minute one source address may start (trunks excepted).
    #[arg(
        id = "sip-calls-per-minute",
        long = "sip-calls-per-minute",
        env = "CONCLAVE_SIP_CALLS_PER_MINUTE",
        default_value_t = 10,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub calls_per_minute: u32,
    /// Calls the gateway carries at once; more are answered 503.
    #[arg(
        id = "sip-max-calls",
        long = "sip-max-calls",
        env = "CONCLAVE_SIP_MAX_CALLS",
        default_value_t = 200
    )]
    pub max_calls: u32,
    /// Seconds a caller has to type the next digit before the question is asked again.
    #[arg(
        id = "sip-digit-timeout-seconds",
        long = "sip-digit-timeout-seconds",
        env = "CONCLAVE_SIP_DIGIT_TIMEOUT_SECONDS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(1..=120)
    )]
    pub digit_timeout_seconds: u64,
    /// Milliseconds a call rings (180) before it is answered; 0 answers at once.
    #[arg(
        id = "sip-answer-delay-ms",
        long = "sip-answer-delay-ms",
        env = "CONCLAVE_SIP_ANSWER_DELAY_MS",
        default_value_t = 0,
        value_parser = clap::value_parser!(u64).range(0..=10_000)
    )]
    pub answer_delay_ms: u64,
}

/// `--sip-listen` of `conclave standalone`: an address, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listen {
    /// No gateway.
    Off,
    /// The gateway on this address.
    At(SocketAddr),
}

impl Embedded {
    /// The gateway's configuration, or `None` with `--sip-listen off`. `listen_ip` is the
    /// process's own listen address (the default SIP address is on it, port 5060) and
    /// `api_url` the conference service in the process.
    pub fn config(&self, listen_ip: IpAddr, api_url: &str) -> Option<Config> {
        let listen = match self.listen {
            Some(Listen::Off) => return None,
            Some(Listen::At(address)) => address,
            None => SocketAddr::new(listen_ip, 5060),
        };
        Some(Config {
            listen,
            // Not bound: the process serves the gateway's metrics on its own /metrics.
            http_listen: SocketAddr::new(listen.ip(), 0),
            rtp_ports: self.rtp_ports,
            prompts_dir: self.prompts_dir.clone(),
            public_address: self.public_address,
            trunk_from: self.trunk_from.clone(),
            allow_from: self.allow_from.clone(),
            open: self.open,
            calls_per_minute: self.calls_per_minute,
            max_calls: self.max_calls,
            api_url: api_url.to_owned(),
            digit_timeout_seconds: self.digit_timeout_seconds,
            answer_delay_ms: self.answer_delay_ms,
            // The process's own secret, set by `conclave standalone`.
            join_token_secret_file: None,
            join_token_secret: Secret::default(),
        })
    }
}

/// The environment variable holding the join-token secret (shared with the API and the SFU).
pub const JOIN_TOKEN_SECRET_ENV: &str = "CONCLAVE_JOIN_TOKEN_SECRET";

/// A secret that never shows in `Debug` output.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret's text, to sign with.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret(value.to_owned())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() {
            "<unset>"
        } else {
            "<redacted>"
        })
    }
}

fn parse_listen(value: &str) -> Result<Listen, String> {
    if value.trim().eq_ignore_ascii_case("off") {
        return Ok(Listen::Off);
    }
    value
        .trim()
        .parse()
        .map(Listen::At)
        .map_err(|e| format!("{value}: expected IP:PORT (e.g. 0.0.0.0:5060) or off ({e})"))
}

pub use proto::net::{Network, parse_network};

fn parse_ports(value: &str) -> Result<UdpPorts, String> {
    let (first, last) = value
        .split_once('-')
        .ok_or_else(|| "expected FIRST-LAST, e.g. 41000-41999".to_owned())?;
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
    use clap::Parser;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        sip: Config,
    }

    #[test]
    fn defaults_listen_on_5060_and_close_the_door_to_strangers() {
        let config = Cli::parse_from(["sip"]).sip;
        assert_eq!(config.listen.port(), 5060);
        assert!(!config.open);
        assert!(!config.accepts("198.51.100.7".parse().expect("ip")));
    }

    #[test]
    fn trunks_are_accepted_and_open_gateways_accept_everyone() {
        let config = Cli::parse_from([
            "sip",
            "--sip-trunk-from",
            "10.0.0.0/8,2001:db8::1",
            "--sip-rtp-ports",
            "30000-30010",
        ])
        .sip;
        assert!(config.accepts("10.2.3.4".parse().expect("ip")));
        assert!(config.accepts("::ffff:10.2.3.4".parse().expect("ip")));
        assert!(config.accepts("2001:db8::1".parse().expect("ip")));
        assert!(!config.accepts("2001:db8::2".parse().expect("ip")));
        assert!(!config.accepts("11.0.0.1".parse().expect("ip")));
        assert_eq!(config.rtp_ports.first, 30000);
        let open = Cli::parse_from(["sip", "--sip-open"]).sip;
        assert!(open.accepts("11.0.0.1".parse().expect("ip")));
        assert!(!open.is_trunk("11.0.0.1".parse().expect("ip")));
    }

    #[derive(clap::Parser)]
    struct Standalone {
        #[command(flatten)]
        sip: Embedded,
    }

    #[test]
    fn the_embedded_gateway_listens_beside_the_portal_and_lets_this_machine_and_the_lan_call() {
        let options = Standalone::parse_from(["standalone"]).sip;
        let config = options
            .config("127.0.0.1".parse().expect("ip"), "http://127.0.0.1:8080")
            .expect("on by default");
        assert_eq!(config.listen, SocketAddr::from(([127, 0, 0, 1], 5060)));
        assert_eq!(config.api_url, "http://127.0.0.1:8080");
        assert!(!config.open);
        for caller in [
            "127.0.0.1",
            "::1",
            "10.1.2.3",
            "172.31.0.9",
            "192.168.1.20",
            "fd00::7",
        ] {
            let ip: IpAddr = caller.parse().expect("ip");
            assert!(config.accepts(ip), "{caller}");
            assert!(!config.is_trunk(ip), "{caller} is rate-limited");
        }
        for stranger in ["198.51.100.7", "172.32.0.1", "2001:db8::1"] {
            assert!(!config.accepts(stranger.parse().expect("ip")), "{stranger}");
        }
    }

    #[test]
    fn the_embedded_gateway_can_be_moved_narrowed_opened_or_turned_off() {
        let parse = |args: &[&str]| {
            let mut all = vec!["standalone"];
            all.extend_from_slice(args);
            Standalone::try_parse_from(all).map(|s| s.sip)
        };
        let off = parse(&["--sip-listen", "off"]).expect("off parses");
        assert!(off.config("127.0.0.1".parse().expect("ip"), "x").is_none());
        let moved = parse(&[
            "--sip-listen",
            "0.0.0.0:5070",
            "--sip-allow-from",
            "192.168.7.0/24",
            "--sip-rtp-ports",
            "42000-42009",
        ])
        .expect("parses")
        .config("127.0.0.1".parse().expect("ip"), "x")
        .expect("on");
        assert_eq!(moved.listen.port(), 5070);
        assert_eq!(moved.rtp_ports.last, 42009);
        assert!(moved.accepts("192.168.7.9".parse().expect("ip")));
        assert!(!moved.accepts("10.0.0.1".parse().expect("ip")));
        let open = parse(&["--sip-open"]).expect("parses");
        assert!(
            open.config("0.0.0.0".parse().expect("ip"), "x")
                .expect("on")
                .accepts("198.51.100.7".parse().expect("ip"))
        );
        let err = parse(&["--sip-listen", "5060"]).expect_err("a port alone is refused");
        assert!(err.to_string().contains("IP:PORT"), "{err}");
    }

    #[test]
    fn the_secret_comes_from_a_file_and_never_shows() {
        let dir = std::env::temp_dir().join(format!("sip-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("secret");
        std::fs::write(&file, "a-secret-of-at-least-thirty-two-bytes\n").expect("write");
        let mut config = Cli::parse_from([
            "sip",
            "--sip-join-token-secret-file",
            file.to_str().expect("utf-8 path"),
        ])
        .sip;
        // The variable wins over the file when set; this test's environment leaves it unset.
        if std::env::var(JOIN_TOKEN_SECRET_ENV).is_err() {
            config.resolve_secret().expect("the file is read");
            assert_eq!(
                config.join_token_secret.expose(),
                "a-secret-of-at-least-thirty-two-bytes"
            );
        }
        assert!(!format!("{config:?}").contains("thirty-two"));
        let _ = std::fs::remove_dir_all(&dir);
        let mut missing = Cli::parse_from(["sip"]).sip;
        if std::env::var(JOIN_TOKEN_SECRET_ENV).is_err() {
            let err = missing.resolve_secret().expect_err("no secret");
            assert!(err.contains("--sip-join-token-secret-file"), "{err}");
        }
    }

    #[test]
    fn bad_ranges_are_refused() {
        assert!(parse_network("10.0.0.0/33").is_err());
        assert!(parse_network("nonsense").is_err());
        assert!(parse_ports("5-1").is_err());
        assert!(
            parse_network("0.0.0.0/0").is_ok_and(|n| n.contains("8.8.8.8".parse().expect("ip")))
        );
    }
}

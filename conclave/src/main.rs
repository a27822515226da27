//! `conclave`: the one binary. It only parses the command line and hands the configuration to
//! the component it names; `standalone` (the default) composes the API, the embedded SFU and
//! the SIP gateway in one process.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use proto::RoomReport;
use tokio::sync::mpsc;

/// Conclave: video conferencing that runs natively on Kubernetes.
#[derive(Debug, Parser)]
#[command(name = "conclave", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    /// How log lines look: `text` for people, `json` (one object per line) for a cluster's log
    /// collector. The filter is `RUST_LOG` (tracing env-filter syntax).
    #[arg(long, env = "CONCLAVE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
}

/// The format of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line: timestamp, level, target, fields, and the spans (request
    /// with its request ID, session, conference).
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Everything in one process: API and portal, SQLite, local files, the embedded SFU and the
    /// SIP dial-in gateway (default).
    Standalone(Box<Standalone>),
    /// The stateless conference service (API and portal) for a cluster, usually on PostgreSQL.
    Api(Box<api::Config>),
    /// A WebRTC SFU pod: the signaling websocket /rtc and media for the conferences placed on it.
    Sfu(Box<sfu::Config>),
    /// The SIP gateway: phone callers dial in and enter the meeting ID and password by keypad.
    Sip(sip::Config),
    /// The Kubernetes operator: places Conference resources on SFU pods.
    Operator(operator::Config),
    /// Prints the Conference CustomResourceDefinition as YAML (`conclave crdgen > crds/conference.yaml`).
    Crdgen,
    /// Writes the sources of the portal's TypeScript types: the API's OpenAPI document and the
    /// signaling JSON Schema (`npm run gen` in web/ turns them into TypeScript).
    Schemas(Schemas),
}

/// Options of `conclave schemas`.
#[derive(Debug, Args)]
struct Schemas {
    /// Folder the two files go into.
    #[arg(default_value = "web/src/generated")]
    out: std::path::PathBuf,

    /// Write nothing; exit with status 1 when the files in the folder are not what this binary
    /// would write (a stale-check for CI).
    #[arg(long)]
    check: bool,
}

impl Schemas {
    /// The files and their contents.
    fn files() -> [(&'static str, String); 2] {
        use api::http::ApiDoc;
        use utoipa::OpenApi;
        let openapi = ApiDoc::openapi()
            .to_pretty_json()
            .expect("the OpenAPI document serializes");
        let signal = serde_json::to_string_pretty(&proto::signal::schema())
            .expect("the signaling schema serializes");
        [
            ("openapi.json", openapi + "\n"),
            ("signal.schema.json", signal + "\n"),
        ]
    }

    fn run(&self) -> anyhow::Result<()> {
        let mut stale = Vec::new();
        for (name, content) in Self::files() {
            let path = self.out.join(name);
            if self.check {
                if std::fs::read_to_string(&path).ok().as_deref() != Some(content.as_str()) {
                    stale.push(path.display().to_string());
                }
            } else {
                std::fs::create_dir_all(&self.out)?;
                std::fs::write(&path, content)?;
            }
        }
        if !stale.is_empty() {
            anyhow::bail!(
                "stale: {} (regenerate with `cargo run -- schemas {}`)",
                stale.join(", "),
                self.out.display()
            );
        }
        Ok(())
    }
}

/// Options of `conclave standalone`.
#[derive(Debug, Args)]
struct Standalone {
    #[command(flatten)]
    api: api::Config,

    /// Local address the embedded SFU's peer connections bind to. Default: the IP of --listen
    /// (127.0.0.1 keeps media on this machine; 0.0.0.0 serves other machines).
    #[arg(long = "sfu-bind-ip", env = "CONCLAVE_SFU_BIND_IP")]
    sfu_bind_ip: Option<IpAddr>,

    /// Addresses announced in ICE candidates instead of the local ones (NAT 1:1), comma-separated.
    #[arg(
        long = "sfu-announced-ips",
        env = "CONCLAVE_SFU_ANNOUNCED_IPS",
        value_delimiter = ','
    )]
    sfu_announced_ips: Vec<IpAddr>,

    /// TCP port of the embedded SFU for ICE over TCP, the fallback of clients whose network
    /// blocks UDP (on --sfu-bind-ip). Unset: UDP only.
    #[arg(long = "sfu-ice-tcp-port", env = "CONCLAVE_SFU_ICE_TCP_PORT")]
    sfu_ice_tcp_port: Option<u16>,

    /// Single-port mode of the embedded SFU: every peer connection on this one UDP port (on
    /// --sfu-bind-ip) instead of one port of --sfu-udp-ports each. Unset: the range.
    #[arg(
        long = "sfu-udp-port",
        env = "CONCLAVE_SFU_UDP_PORT",
        value_parser = clap::value_parser!(u16).range(1..)
    )]
    sfu_udp_port: Option<u16>,

    /// Kernel buffer asked for each of the embedded SFU's media UDP sockets, each way, in
    /// bytes: it holds publishers' bursts while the machine is busy; `net.core.rmem_max` /
    /// `wmem_max` cap it. 0: the kernel's default.
    #[arg(
        long = "sfu-udp-buffer-bytes",
        env = "CONCLAVE_SFU_UDP_BUFFER_BYTES",
        default_value_t = sfu::config::DEFAULT_UDP_BUFFER_BYTES,
        value_parser = clap::value_parser!(u32).range(0..=1 << 30)
    )]
    sfu_udp_buffer_bytes: u32,

    /// Whether the embedded SFU protects and sends forwarded media itself, at well under half
    /// the CPU per packet (see `conclave sfu --help`); `false` sends every packet through
    /// webrtc-rs.
    #[arg(
        long = "sfu-direct-media",
        env = "CONCLAVE_SFU_DIRECT_MEDIA",
        default_value_t = true,
        action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    sfu_direct_media: bool,

    /// What one participant or one address may do in the embedded SFU (the same flags as
    /// `conclave sfu`).
    #[command(flatten)]
    sfu_limits: sfu::config::Limits,

    /// The SIP dial-in gateway (the flags of `conclave sip`; its metrics are on /metrics).
    #[command(flatten)]
    sip: sip::config::Embedded,

    /// Seconds given to meetings to drain on shutdown.
    #[arg(
        long = "drain-seconds",
        env = "CONCLAVE_DRAIN_SECONDS",
        default_value_t = 10
    )]
    drain_seconds: u64,
}

impl Standalone {
    /// Defaults and environment only (`conclave` without a subcommand).
    fn from_env() -> Self {
        use clap::FromArgMatches;
        let command = Standalone::augment_args(clap::Command::new("conclave").no_binary_name(true));
        let matches = command
            .try_get_matches_from(Vec::<String>::new())
            .unwrap_or_else(|err| err.exit());
        Standalone::from_arg_matches(&matches).unwrap_or_else(|err| err.exit())
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        // rsipstack logs every SIP message at info, raw: caller IDs and addresses, which
        // must not reach the logs by default.
        tracing_subscriber::EnvFilter::new(
            "info,sqlx=warn,tower_http=warn,webrtc=warn,rtc=warn,rsipstack=warn",
        )
    });
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(true)
            .init(),
    }
}

/// Resolves on Ctrl-C or SIGTERM (the pod's stop signal).
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
}

/// Hands the embedded SFU's reports to the conference service in order, without blocking the
/// media path.
#[derive(Debug)]
struct InProcessReporter(mpsc::UnboundedSender<RoomReport>);

impl sfu::Reporter for InProcessReporter {
    fn report(&self, report: RoomReport) {
        if self.0.send(report).is_err() {
            tracing::warn!("room report dropped: the conference service has stopped");
        }
    }
}

/// The embedded SFU follows the conference service's revocations (accounts changed, people
/// excluded, meetings ended) straight from its database, as a pod asks the API over HTTP.
struct InProcessRevocations(api::state::AppState);

impl sfu::RevocationSource for InProcessRevocations {
    fn fetch(&self) -> sfu::revocation::Fetch<'_> {
        Box::pin(async move {
            let state = &self.0;
            api::revocation::recent(
                &state.db,
                state.clock.now(),
                api::lifecycle::token_window(state),
            )
            .await
            .map_err(|err| err.to_string())
        })
    }
}

async fn standalone(options: Standalone) -> anyhow::Result<()> {
    let mut config = options.api;
    config.print_admin_password = true;
    // Invitations and the portal show the embedded gateway's address unless told another.
    if config.sip_address.is_none()
        && let Some(sip) = options.sip.config(config.listen.ip(), "")
    {
        config.sip_address = embedded_sip_address(&sip);
    }
    let registry = prometheus::Registry::new();
    let state = api::build_with_registry(
        config.clone(),
        Arc::new(api::clock::SystemClock),
        registry.clone(),
    )
    .await?;

    let udp = config.sfu_udp_ports()?;
    let mut sfu_config = sfu::Config::for_loopback(
        api::token_secret(&config)?,
        proto::UdpPorts {
            first: udp.first,
            last: udp.last,
        },
    );
    sfu_config.listen = config.listen;
    sfu_config.bind_ip = options.sfu_bind_ip.unwrap_or_else(|| config.listen.ip());
    sfu_config.announced_ips = options.sfu_announced_ips;
    sfu_config.ice_tcp_port = options.sfu_ice_tcp_port;
    sfu_config.udp_port = options.sfu_udp_port;
    sfu_config.udp_buffer_bytes = options.sfu_udp_buffer_bytes;
    sfu_config.direct_media = options.sfu_direct_media;
    sfu_config.max_participants = config.sfu_capacity;
    sfu_config.room_max_participants = config.default_max_participants;
    sfu_config.pod_name = "embedded".to_owned();
    sfu_config.drain_seconds = options.drain_seconds;
    sfu_config.limits = options.sfu_limits;

    let (reports, mut incoming) = mpsc::unbounded_channel::<RoomReport>();
    let sfu_state =
        sfu::SfuState::new(&sfu_config, Arc::new(InProcessReporter(reports)), &registry)?;
    // The embedded SFU stores recordings where the API reads them: the API's file store.
    sfu_state.set_files(config.files()?)?;
    let gateway = match options
        .sip
        .config(config.listen.ip(), &in_process_url(config.listen))
    {
        Some(mut sip_config) => {
            sip_config.join_token_secret = api::token_secret(&config)?.into();
            Some(start_gateway(sip_config, &registry).await?)
        }
        None => {
            tracing::info!("SIP gateway off (--sip-listen off)");
            None
        }
    };
    sfu_state.follow_revocations(Arc::new(InProcessRevocations(state.clone())));
    let applier = state.clone();
    tokio::spawn(async move {
        while let Some(report) = incoming.recv().await {
            if let Err(err) = api::lifecycle::apply_report(&applier, &report).await {
                tracing::warn!(conference = %report.conference, cause = %err, "room report not applied");
            }
        }
    });

    // API routes first; whatever they do not match goes to the SFU (/rtc), and what the SFU
    // does not match is the portal's.
    let portal = api::http::portal::router(&config.portal_dir);
    let app = api::http::app(state.clone())
        .fallback_service(sfu::router(sfu_state.clone()).fallback_service(portal));
    let grace = Duration::from_secs(options.drain_seconds);
    tracing::info!(udp_ports = ?udp, bind_ip = %sfu_config.bind_ip, "embedded SFU ready");
    let served = api::serve(state, app, async move {
        shutdown_signal().await;
        sfu_state.drain(grace).await;
        // Recordings stopped by the drain store their last segments before the process ends.
        if !sfu_state.recordings_stored(Duration::from_secs(10)).await {
            tracing::warn!("recordings were still storing their last segments at shutdown");
        }
    })
    .await;
    if let Some(gateway) = gateway {
        gateway.stop().await;
    }
    served?;
    Ok(())
}

/// The SIP address people dial for the embedded gateway: `conference@<address>[:<port>]`, the
/// public address when one is given; `None` for an unspecified listen address without one
/// (there is no telling which address callers reach).
fn embedded_sip_address(sip: &sip::Config) -> Option<String> {
    let ip = sip.public_address.unwrap_or(sip.listen.ip());
    if ip.is_unspecified() {
        return None;
    }
    let host = match ip {
        IpAddr::V6(v6) => format!("[{v6}]"),
        IpAddr::V4(v4) => v4.to_string(),
    };
    Some(match sip.listen.port() {
        5060 => format!("conference@{host}"),
        port => format!("conference@{host}:{port}"),
    })
}

/// The URL at which this process reaches its own conference service.
fn in_process_url(listen: std::net::SocketAddr) -> String {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", std::net::SocketAddr::new(ip, listen.port()))
}

/// Starts the embedded SIP gateway, its metrics in the process's registry. A failure to bind
/// says which option moves or turns off the gateway.
async fn start_gateway(
    config: sip::Config,
    registry: &prometheus::Registry,
) -> anyhow::Result<sip::Gateway> {
    let listen = config.listen;
    let rtp = config.rtp_ports;
    match sip::start(config, registry).await {
        Ok(gateway) => {
            tracing::info!(address = %gateway.local, rtp_ports = ?rtp, "embedded SIP gateway ready (UDP and TCP)");
            Ok(gateway)
        }
        Err(err @ (sip::Error::Prompt(_) | sip::Error::Metrics(_))) => Err(err.into()),
        Err(err) => Err(anyhow::anyhow!(
            "the SIP gateway cannot listen on {listen} (UDP and TCP): {err}; give it another \
             address with --sip-listen (CONCLAVE_SIP_LISTEN), e.g. --sip-listen 127.0.0.1:5070, \
             or run without dial-in with --sip-listen off"
        )),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Crdgen) = cli.command {
        print!("{}", crds::conference_crd_yaml());
        return Ok(());
    }
    if let Some(Command::Schemas(schemas)) = &cli.command {
        return schemas.run();
    }
    init_tracing(cli.log_format);
    match cli
        .command
        .unwrap_or_else(|| Command::Standalone(Box::new(Standalone::from_env())))
    {
        Command::Standalone(options) => standalone(*options).await?,
        Command::Api(config) => api::run(*config, shutdown_signal()).await?,
        Command::Sfu(config) => sfu::run(*config).await?,
        Command::Sip(config) => sip::run(config, shutdown_signal()).await?,
        Command::Operator(config) => operator::run(config).await?,
        Command::Crdgen | Command::Schemas(_) => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_gateways_address_is_what_callers_dial() {
        let config = |listen: &str, public: Option<&str>| {
            let mut sip = sip::Config::for_loopback(
                listen.parse().expect("address"),
                proto::UdpPorts {
                    first: 41000,
                    last: 41999,
                },
                "http://127.0.0.1:8080",
            );
            sip.public_address = public.map(|p| p.parse().expect("address"));
            sip
        };
        let address = |listen, public| embedded_sip_address(&config(listen, public));
        assert_eq!(
            address("127.0.0.1:5060", None).as_deref(),
            Some("conference@127.0.0.1")
        );
        assert_eq!(
            address("192.168.1.10:5070", None).as_deref(),
            Some("conference@192.168.1.10:5070")
        );
        assert_eq!(
            address("0.0.0.0:5060", Some("198.51.100.7")).as_deref(),
            Some("conference@198.51.100.7")
        );
        assert_eq!(
            address("[::1]:5062", None).as_deref(),
            Some("conference@[::1]:5062")
        );
        assert_eq!(
            address("0.0.0.0:5060", None),
            None,
            "no telling which address"
        );
    }
}

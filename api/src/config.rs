//! The API's configuration: one clap struct, every field a `--flag` and an environment
//! variable. Secrets come only from the environment or from files, never from flags.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::address::{Cidr, TrustedProxies};
use crate::{Error, Result};

/// Environment variable holding the first administrator's password.
pub const ADMIN_PASSWORD_ENV: &str = "CONCLAVE_ADMIN_PASSWORD";
/// Environment variable holding the join-token signing secret shared with SFU pods.
pub const JOIN_TOKEN_SECRET_ENV: &str = "CONCLAVE_JOIN_TOKEN_SECRET";
/// Environment variable holding the SMTP user name.
pub const SMTP_USERNAME_ENV: &str = "CONCLAVE_SMTP_USERNAME";
/// Environment variable holding the SMTP password.
pub const SMTP_PASSWORD_ENV: &str = "CONCLAVE_SMTP_PASSWORD";

/// Where conference definitions and their runtime state live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ConferenceStoreKind {
    /// The SQL database; the API places conferences on the embedded SFU itself.
    Sql,
    /// `Conference` resources in a cluster; the operator places them.
    Kubernetes,
}

/// Configuration of the conference service (`conclave api`, and the API part of standalone).
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Address and port the HTTP server (API and portal) listens on.
    #[arg(long, env = "CONCLAVE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Address of a second listener for what only the cluster may reach: `/metrics`,
    /// `/api/v1/internal/*` (SFU room reports), `/healthz` and `/readyz`. When set, the public
    /// listener answers 404 for `/metrics` and `/api/v1/internal/*`; without it, one listener
    /// serves everything (fine on loopback, as standalone runs by default).
    #[arg(long, env = "CONCLAVE_INTERNAL_LISTEN")]
    pub internal_listen: Option<SocketAddr>,

    /// Folder for the SQLite database, generated keys and local files; created when missing.
    #[arg(long, env = "CONCLAVE_DATA_DIR", default_value = "conclave-data")]
    pub data_dir: PathBuf,

    /// Database URL, `sqlite://PATH` or `postgres://USER@HOST/DB`. Default: `conclave.db` in the data folder.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,

    /// Base URL people reach the portal at, used in join links and calendar events. Default: http://LISTEN.
    #[arg(long, env = "CONCLAVE_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// File holding the password of the `admin` account created on first start. The
    /// CONCLAVE_ADMIN_PASSWORD variable works too; with neither, one is generated and printed once.
    #[arg(long, env = "CONCLAVE_ADMIN_PASSWORD_FILE")]
    pub admin_password_file: Option<PathBuf>,

    /// File holding the secret (32 bytes or more) that signs join tokens; SFU pods need the same.
    /// The CONCLAVE_JOIN_TOKEN_SECRET variable works too; with neither, standalone mode generates
    /// one into the data folder.
    #[arg(long, env = "CONCLAVE_JOIN_TOKEN_SECRET_FILE")]
    pub join_token_secret_file: Option<PathBuf>,

    /// Hours a login session lasts.
    #[arg(long, env = "CONCLAVE_SESSION_HOURS", default_value_t = 168)]
    pub session_hours: u32,

    /// Seconds a join token stays valid (it is used once, to enter the room).
    #[arg(long, env = "CONCLAVE_JOIN_TOKEN_SECONDS", default_value_t = 300)]
    pub join_token_seconds: u32,

    /// Seconds a join that names the SFU pod the client just lost (`lostPod`) waits, at most,
    /// for the operator to place the conference on another pod, when its assignment still names
    /// the lost one; it answers as soon as the assignment changes, else what is current. 0:
    /// never wait.
    #[arg(long, env = "CONCLAVE_JOIN_MOVE_WAIT_SECONDS", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(0..=60))]
    pub join_move_wait_seconds: u32,

    /// Where presentations and recordings are kept: a local folder or an S3-compatible bucket.
    #[command(flatten)]
    pub files: files::FilesArgs,

    /// Days recordings are kept; older ones are deleted with their files. 0 keeps them.
    #[arg(long, env = "CONCLAVE_RECORDING_RETENTION_DAYS", default_value_t = 0)]
    pub recording_retention_days: u32,

    /// Seconds without a sign of life from the SFU pod writing a recording after which the
    /// pod counts as lost and what it wrote is composed.
    #[arg(long, env = "CONCLAVE_RECORDING_LOST_SECONDS", default_value_t = 120,
          value_parser = clap::value_parser!(u32).range(30..))]
    pub recording_lost_seconds: u32,

    /// The ffmpeg program that composes recordings (ffprobe is taken from beside it).
    #[arg(long, env = "CONCLAVE_FFMPEG", default_value = "ffmpeg")]
    pub ffmpeg: PathBuf,

    /// Minutes before its start that a conference is placed and may be joined.
    #[arg(long, env = "CONCLAVE_LEAD_TIME_MINUTES", default_value_t = 5)]
    pub lead_time_minutes: u32,

    /// Minutes a conference may run past its end while people are still in it.
    #[arg(long, env = "CONCLAVE_END_GRACE_MINUTES", default_value_t = 30)]
    pub end_grace_minutes: u32,

    /// The signaling URL clients of the embedded SFU connect to. Default: ws://LISTEN/rtc
    /// (wss:// when the public URL is https).
    #[arg(long, env = "CONCLAVE_SFU_ENDPOINT")]
    pub sfu_endpoint: Option<String>,

    /// UDP ports the embedded SFU hands out to conferences, as FIRST-LAST.
    #[arg(long, env = "CONCLAVE_SFU_UDP_PORTS", default_value = "40000-40999")]
    pub sfu_udp_ports: String,

    /// Participants the embedded SFU serves at most, across all conferences.
    #[arg(long, env = "CONCLAVE_SFU_CAPACITY", default_value_t = 500)]
    pub sfu_capacity: u32,

    /// Participants reserved for a conference that sets no maximum.
    #[arg(long, env = "CONCLAVE_DEFAULT_MAX_PARTICIPANTS", default_value_t = 50)]
    pub default_max_participants: u32,

    /// UDP ports reserved per participant when placing a conference.
    #[arg(long, env = "CONCLAVE_PORTS_PER_PARTICIPANT", default_value_t = 2)]
    pub ports_per_participant: u16,

    /// Proxies (addresses or CIDR networks, comma-separated) whose X-Forwarded-For entries are
    /// believed: the client is the rightmost hop none of them added. Empty: the peer is the client.
    #[arg(long, env = "CONCLAVE_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<Cidr>,

    /// Trust X-Forwarded-For from proxies on loopback and private networks (10/8, 172.16/12,
    /// 192.168/16, fc00::/7, fe80::/10), as an Ingress controller in the cluster is; shorthand
    /// for listing those in --trusted-proxies.
    #[arg(long, env = "CONCLAVE_TRUST_FORWARDED_FOR")]
    pub trust_forwarded_for: bool,

    /// Argon2 password checks (logins, password changes) running at once, about 19 MiB each;
    /// a check that finds no slot within a second is answered 503 with Retry-After.
    #[arg(long, env = "CONCLAVE_MAX_PASSWORD_CHECKS", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_password_checks: u32,

    /// Mails one account may queue per 24 hours (invitations, updates, address-change notices);
    /// beyond it the request is answered 429 `mailLimit`.
    #[arg(long, env = "CONCLAVE_MAIL_PER_ACCOUNT_PER_DAY", default_value_t = 500)]
    pub mail_per_account_per_day: u32,

    /// Mails queued for one conference per 24 hours (its invitations and updates together).
    #[arg(
        long,
        env = "CONCLAVE_MAIL_PER_CONFERENCE_PER_DAY",
        default_value_t = 600
    )]
    pub mail_per_conference_per_day: u32,

    /// Addresses one `POST /conferences/{id}/invitations` may name.
    #[arg(long, env = "CONCLAVE_MAIL_INVITEES_PER_REQUEST", default_value_t = 200,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub mail_invitees_per_request: u32,

    /// Days delivered and failed mails stay in the outbox (each conference's newest invitation
    /// is kept while it lives, to tell what changed); 0 keeps them forever.
    #[arg(long, env = "CONCLAVE_OUTBOX_RETENTION_DAYS", default_value_t = 30)]
    pub outbox_retention_days: u32,

    /// SMTP server for invitations: `smtp://HOST:587` (STARTTLS when offered), `smtps://HOST:465`
    /// (TLS), `smtp://HOST:25?tls=none` (plain, e.g. a local relay). Credentials come from
    /// CONCLAVE_SMTP_USERNAME and CONCLAVE_SMTP_PASSWORD. Without it, mails are written as .eml
    /// files into the data folder's `outbox`.
    #[arg(long, env = "CONCLAVE_SMTP_URL")]
    pub smtp_url: Option<String>,

    /// The sender of invitations, e.g. `Conclave <meetings@example.org>`.
    #[arg(
        long,
        env = "CONCLAVE_MAIL_FROM",
        default_value = "Conclave <conclave@localhost>"
    )]
    pub mail_from: String,

    /// Phone number for dial-in (a SIP trunk routes it to `conclave sip`), shown in invitations,
    /// calendar events and the portal when set (e.g. `+49 30 1234567`).
    #[arg(long, env = "CONCLAVE_DIAL_IN_NUMBER")]
    pub dial_in_number: Option<String>,

    /// SIP address of the dial-in gateway (`conclave sip`), e.g. `conference@conclave.example.org`;
    /// shown in invitations, calendar events and the portal with a `sip:<meetingId>*<password>@host`
    /// link that skips the gateway's questions.
    #[arg(long, env = "CONCLAVE_SIP_ADDRESS")]
    pub sip_address: Option<String>,

    /// Where conferences live: `sql` (the database) or `kubernetes` (Conference resources in
    /// --kube-namespace, placed by the operator; accounts and the archive stay in the database).
    #[arg(
        long,
        env = "CONCLAVE_CONFERENCE_STORE",
        value_enum,
        default_value_t = ConferenceStoreKind::Sql
    )]
    pub conference_store: ConferenceStoreKind,

    /// The namespace of the Conference resources with `--conference-store kubernetes`.
    #[arg(long, env = "CONCLAVE_KUBE_NAMESPACE", default_value = "default")]
    pub kube_namespace: String,

    /// In a cluster (`--conference-store kubernetes`), answer `/join` with
    /// `<public URL>/rtc/<pod>` (ws:// or wss:// after the public URL's scheme) instead of the SFU
    /// pod's own endpoint: this service relays the signaling websocket to the pod over the
    /// cluster network, so people need one host name and one certificate. The pods' endpoints
    /// (`conclave.dev/endpoint`) must then be ws:// URLs this service reaches, e.g.
    /// `ws://{podIP}:7880/rtc`. Standalone serves `/rtc` on its own address and ignores it.
    #[arg(long, env = "CONCLAVE_SFU_SIGNALING_VIA_API")]
    pub sfu_signaling_via_api: bool,

    /// Seconds the relay of `/rtc/{pod}` waits for the SFU pod to accept the websocket before
    /// answering 502 `sfuUnreachable`.
    #[arg(long, env = "CONCLAVE_RTC_PROXY_CONNECT_TIMEOUT_SECONDS", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..=60))]
    pub rtc_proxy_connect_timeout_seconds: u64,

    /// Seconds a relayed client may send nothing (not even the pong to the SFU's ping) before
    /// the relay closes both sides (1008 `unresponsive`); keep above the SFU's ping interval.
    #[arg(long, env = "CONCLAVE_RTC_PROXY_IDLE_SECONDS", default_value_t = 45,
          value_parser = clap::value_parser!(u64).range(2..=3600))]
    pub rtc_proxy_idle_seconds: u64,

    /// Relayed signaling websockets this replica carries at once; beyond, `/rtc/{pod}` answers
    /// 503 `busy` with `Retry-After`.
    #[arg(long, env = "CONCLAVE_RTC_PROXY_MAX_SESSIONS", default_value_t = 5000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub rtc_proxy_max_sessions: u32,

    /// Seconds relayed websockets go on after a shutdown signal (the listener no longer takes
    /// new ones); those still open then are closed with 1012 `apiShutdown` and their clients
    /// reconnect through another replica. Keep below the pod's termination grace period.
    #[arg(long, env = "CONCLAVE_RTC_PROXY_DRAIN_SECONDS", default_value_t = 20)]
    pub rtc_proxy_drain_seconds: u64,

    /// Folder holding the built web portal (`npm run build` in `web/` writes `web/dist`).
    #[arg(long, env = "CONCLAVE_PORTAL_DIR", default_value = "web/dist")]
    pub portal_dir: PathBuf,

    /// Print a generated `admin` password on standard output (standalone, started by a person)
    /// instead of writing it to `DATA_DIR/admin-password` (a service, whose output is logged).
    #[arg(skip)]
    pub print_admin_password: bool,

    /// Largest request body accepted, in bytes (presentation uploads have their own limit).
    #[arg(long, env = "CONCLAVE_MAX_BODY_BYTES", default_value_t = 65_536)]
    pub max_body_bytes: usize,

    /// Presentation uploads and their conversion.
    #[command(flatten)]
    pub presentations: PresentationConfig,

    /// How often the company directory is asked again about accounts with live sessions, in
    /// minutes: an account it no longer knows or has disabled loses its sessions then.
    #[arg(long, env = "CONCLAVE_DIRECTORY_CHECK_MINUTES", default_value_t = 15,
          value_parser = clap::value_parser!(u32).range(1..=1440))]
    pub directory_check_minutes: u32,

    /// LDAP / Active Directory login.
    #[command(flatten)]
    pub ldap: crate::directory::ldap::LdapConfig,

    /// OpenID Connect login.
    #[command(flatten)]
    pub oidc: crate::directory::oidc::OidcConfig,
}

/// How presentations are accepted and converted (docs/presentations.md).
#[derive(Debug, Clone, clap::Args)]
pub struct PresentationConfig {
    /// Largest presentation upload, in bytes.
    #[arg(
        long = "presentation-max-bytes",
        env = "CONCLAVE_PRESENTATION_MAX_BYTES",
        default_value_t = 50_000_000
    )]
    pub max_bytes: u64,

    /// Most pages a presentation may have.
    #[arg(
        long = "presentation-max-pages",
        env = "CONCLAVE_PRESENTATION_MAX_PAGES",
        default_value_t = 300
    )]
    pub max_pages: u32,

    /// Longer side of a page image, in pixels (1280: a 16:9 slide becomes 1280×720).
    #[arg(long = "presentation-page-pixels", env = "CONCLAVE_PRESENTATION_PAGE_PIXELS", default_value_t = 1280,
          value_parser = clap::value_parser!(u32).range(100..=4096))]
    pub page_pixels: u32,

    /// Wall-clock seconds one conversion may take (LibreOffice and poppler together); then its
    /// processes are killed and the upload refused with `conversionTimeout`.
    #[arg(
        long = "presentation-timeout-seconds",
        env = "CONCLAVE_PRESENTATION_TIMEOUT_SECONDS",
        default_value_t = 120
    )]
    pub timeout_seconds: u64,

    /// Address space of poppler's tools (pdfinfo, pdftoppm), in MiB.
    #[arg(
        long = "presentation-memory-mb",
        env = "CONCLAVE_PRESENTATION_MEMORY_MB",
        default_value_t = 1024
    )]
    pub memory_mb: u64,

    /// Address space of LibreOffice converting PowerPoint and ODP, in MiB (it maps far more
    /// than it uses).
    #[arg(
        long = "presentation-office-memory-mb",
        env = "CONCLAVE_PRESENTATION_OFFICE_MEMORY_MB",
        default_value_t = 4096
    )]
    pub office_memory_mb: u64,

    /// Conversions running at once; more uploads wait (up to the timeout, then 503 `busy`).
    #[arg(
        long = "presentation-conversions",
        env = "CONCLAVE_PRESENTATION_CONVERSIONS",
        default_value_t = 2
    )]
    pub conversions: usize,

    /// LibreOffice's `soffice`, which converts PowerPoint and ODP to PDF. Default: `soffice`
    /// from PATH when installed (Debian: libreoffice-impress-nogui); `off`: PDF only.
    #[arg(long = "presentation-soffice", env = "CONCLAVE_PRESENTATION_SOFFICE")]
    pub soffice: Option<String>,
}

impl PresentationConfig {
    /// The converter these settings describe.
    pub fn converter(&self) -> crate::presentation::Converter {
        use crate::presentation::{Converter, Limits, convert::find_program};
        let soffice = match self.soffice.as_deref() {
            Some("off") => None,
            Some(path) => Some(PathBuf::from(path)),
            None => find_program("soffice"),
        };
        let limits = Limits {
            max_bytes: self.max_bytes,
            max_pages: self.max_pages,
            page_pixels: self.page_pixels,
            timeout: std::time::Duration::from_secs(self.timeout_seconds.max(1)),
            memory_bytes: self.memory_mb.saturating_mul(1024 * 1024),
            office_memory_bytes: self.office_memory_mb.saturating_mul(1024 * 1024),
            // A page image at 4096 pixels is far below this; a PDF from LibreOffice too.
            max_output_bytes: self.max_bytes.max(64 * 1024 * 1024),
        };
        Converter::new(limits, soffice, self.conversions)
    }
}

impl Config {
    /// A configuration from the environment and defaults alone (no flags), e.g. for
    /// `conclave` run without a subcommand.
    pub fn parse_from_env_only() -> Self {
        use clap::{Args, FromArgMatches};
        let command = Config::augment_args(clap::Command::new("conclave").no_binary_name(true));
        let matches = command
            .try_get_matches_from(Vec::<String>::new())
            .unwrap_or_else(|err| err.exit());
        Config::from_arg_matches(&matches).unwrap_or_else(|err| err.exit())
    }

    /// A configuration with every default and `data_dir`, for tests and embedding.
    pub fn with_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        let mut config = Self::parse_from_env_only();
        config.data_dir = data_dir.into();
        config
    }

    /// The file store in force: the S3 bucket when one is set, else `--files-dir`, else `files`
    /// in the data folder.
    ///
    /// # Errors
    /// When the folder cannot be made or the S3 settings are incomplete.
    pub fn files(&self) -> Result<files::Files> {
        files::Files::from_args(&self.files, &self.data_dir.join("files"))
            .map_err(|err| Error::Internal(format!("file store: {err}")))
    }

    /// The database URL in force.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("conclave.db").display()
            ),
        }
    }

    /// The public base URL without a trailing slash.
    pub fn public_url(&self) -> String {
        let url = match &self.public_url {
            Some(url) => url.clone(),
            None => format!("http://{}", self.listen),
        };
        url.trim_end_matches('/').to_owned()
    }

    /// The embedded SFU's signaling URL.
    pub fn sfu_endpoint(&self) -> String {
        if let Some(endpoint) = &self.sfu_endpoint {
            return endpoint.clone();
        }
        let public = self.public_url();
        let ws = public
            .replacen("https://", "wss://", 1)
            .replacen("http://", "ws://", 1);
        format!("{ws}/rtc")
    }

    /// The embedded SFU's UDP port range.
    ///
    /// # Errors
    /// A validation error when the value is not FIRST-LAST with FIRST ≤ LAST.
    pub fn sfu_udp_ports(&self) -> Result<placement::PortRange> {
        let invalid = || {
            Error::invalid(
                "sfuUdpPorts",
                format!("{:?} is not a range like 40000-40999", self.sfu_udp_ports),
            )
        };
        let (first, last) = self.sfu_udp_ports.split_once('-').ok_or_else(invalid)?;
        let first: u16 = first.trim().parse().map_err(|_| invalid())?;
        let last: u16 = last.trim().parse().map_err(|_| invalid())?;
        if first == 0 || last < first {
            return Err(invalid());
        }
        Ok(placement::PortRange { first, last })
    }

    /// How to dial in to `meeting_id`, when a SIP address or a number is configured;
    /// `password` only for those who may see it.
    pub fn dial_in(
        &self,
        meeting_id: &str,
        password: Option<&str>,
    ) -> Option<crate::phone::DialIn> {
        crate::phone::DialIn::of(
            self.sip_address.as_deref(),
            self.dial_in_number.as_deref(),
            meeting_id,
            password,
        )
    }

    /// The proxies whose X-Forwarded-For entries are believed.
    pub fn trusted_proxies(&self) -> TrustedProxies {
        let mut networks = self.trusted_proxies.clone();
        if self.trust_forwarded_for {
            networks.extend(
                crate::address::PRIVATE_NETWORKS
                    .iter()
                    .filter_map(|n| n.parse::<Cidr>().ok()),
            );
        }
        TrustedProxies::new(networks)
    }

    /// The lifecycle policy.
    pub fn lifecycle_policy(&self) -> placement::Policy {
        placement::Policy {
            lead_time: chrono::Duration::minutes(i64::from(self.lead_time_minutes)),
            end_grace: chrono::Duration::minutes(i64::from(self.end_grace_minutes)),
        }
    }
}

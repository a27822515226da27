//! Conclave's SFU side by side with Janus (the Debian package `janus`, its VideoRoom plugin)
//! under the same load, on the same machine: each server alone on one core, the load
//! generator (webrtc-rs peers from `loadgen`, the same for both servers) on the other.
//!
//! Scenarios, each a ladder of N stopped one step after the first with ≥ 1 % loss (so the
//! table also shows how each server degrades past its knee):
//! - *fan-out*: one publisher (Opus at 50 packets/s + VP8 at ~1 Mbps, 30 fps) to N
//!   subscribers;
//! - *mesh*: N participants each publishing Opus + 500 kbps VP8 to all others.
//!
//! A fresh server process per step, pinned with `taskset -c 1`; this process pins itself to
//! CPU 0. Per step, over a measurement window: loss (the larger of packets received against
//! packets sent × copies, and sequence gaps at the receivers — the first misses losses while a
//! backlog drains into the window), forwarded packets (what the subscribers received) per
//! server CPU-second (utime + stime of the server process from `/proc/<pid>/stat`), the
//! server's and the generator's CPU in cores, end-to-end forwarding latency p50/p99 (send
//! stamps in the payloads; for Conclave also its own histogram), and the server's VmRSS per
//! participant. A step also says when its figures are not the server's alone: the generator
//! used ≥ 0.9 of its core, the publishers sent < 95 % of their nominal rate, or other
//! processes took ≥ 0.1 of a pinned core (from `/proc/stat`).
//!
//! Janus cannot gather ICE candidates on `lo`, so the namespace (`loadgen::netns::isolate`)
//! gets a veth pair, `j0` with 10.78.0.1 for Janus (`ice_enforce_list`, ICE-lite) whose other
//! end `j1` only gives it a carrier; Janus' clients bind 10.78.0.1 too and the kernel carries
//! the traffic over `lo` as for Conclave's clients on 127.0.0.1. Janus gets a configuration
//! folder of its own: only the VideoRoom plugin and the HTTP transport on 127.0.0.1:8088,
//! ICE-lite, no STUN/TURN/NAT mapping, warnings-only logging, one room (1234) without
//! bitrate cap or periodic FIR, `event_loops` from `CONCLAVE_BENCH_JANUS_EVENT_LOOPS`.
//!
//! ```sh
//! apt-get install -y janus
//! export CARGO_TARGET_DIR=/root/.cache/conclave/target
//! cargo bench -p sfu --bench side_by_side     # as root (network namespace, taskset)
//! ```
//! Knobs: `CONCLAVE_BENCH_SERVERS` (`conclave,janus`), `CONCLAVE_BENCH_SCENARIOS`
//! (`fanout,mesh`), `CONCLAVE_BENCH_FANOUT` and `CONCLAVE_BENCH_MESH` (comma-separated
//! ladders), `CONCLAVE_BENCH_WINDOW_SECONDS` (5), `CONCLAVE_BENCH_BUDGET_SECONDS` (no new step
//! after this many seconds per server and scenario, 300), `CONCLAVE_BENCH_JANUS_EVENT_LOOPS`
//! (1: one media thread, as fits one core; 0 is Janus' default of a thread per handle),
//! `CONCLAVE_BENCH_PERF` (a folder: each window is also recorded with
//! `perf record --call-graph dwarf` on the server process into it), `CONCLAVE_BENCH_UDP_PORT`
//! (a port: Conclave in single-port mode, every peer connection on that one UDP port),
//! `CONCLAVE_BENCH_ICE_TCP_PORT` (a port: Conclave with ICE over TCP on it too; the generator
//! stays on UDP),
//! `CONCLAVE_BENCH_UDP_BUFFER_BYTES` (Conclave's `--sfu-udp-buffer-bytes`; 0: the kernel's
//! default), `CONCLAVE_BENCH_DIRECT_MEDIA` (`false`: Conclave's `--sfu-direct-media=false`,
//! webrtc-rs' own path for subscribers' media),
//! `CONCLAVE_BENCH_SERVER_CPU_LIMIT` (a fraction of its core, e.g. 0.5: the server process is
//! held to it by the kernel's CFS bandwidth control, as a Kubernetes CPU limit holds a pod —
//! its knee moves down to where the generator is not yet the limit, so the steps past it show
//! how the server degrades).
//! Results: `$CARGO_TARGET_DIR/bench-results/side-by-side.json` and a markdown table on stdout.

#[allow(dead_code)] // shared with `sfu.rs`, which uses other parts
mod support;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use loadgen::janus::{Publisher, Session, Subscriber};
use loadgen::{Client, MediaPlan};
use proto::signal::TrackSource;
use proto::{ConferenceId, TokenKey};
use serde_json::{Value, json};
use support::{
    Metrics, ROLE, Receipts, Room, SECRET, SfuProcess, ladder, percentile, seconds, serve_sfu,
};

const LOSS_LIMIT: f64 = 0.01;
const FANOUT_VIDEO_BPS: u32 = 1_000_000;
const MESH_VIDEO_BPS: u32 = 500_000;
/// The core each server runs on alone.
const SERVER_CPU: usize = 1;
/// The core of the load generator (this process).
const GENERATOR_CPU: usize = 0;
/// Where the generator counts itself saturated.
const SATURATED: f64 = 0.9;
const JANUS_IP: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 1);
const JANUS_HTTP: &str = "127.0.0.1:8088";
const JANUS_ROOM: u64 = 1234;
/// How many participants join (or subscribe) at once while a step sets up.
const SETUP_CONCURRENCY: usize = 32;

fn main() -> Result<()> {
    if std::env::var_os(ROLE).is_some() {
        return serve_sfu();
    }
    let servers = servers()?;
    if servers.contains(&Kind::Janus) {
        janus_library().context("Janus is needed for this benchmark: apt-get install -y janus")?;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // CPUs 0 and 1: one for the server, one for the generator.
    if cores < 2 {
        bail!(
            "the side-by-side benchmark needs CPUs {GENERATOR_CPU} and {SERVER_CPU}; this process may use {cores}"
        );
    }
    if !loadgen::netns::isolate() {
        return Ok(());
    }
    pin(std::process::id(), GENERATOR_CPU)?;
    run(
        "ip",
        &["link", "add", "j0", "type", "veth", "peer", "name", "j1"],
    )?;
    run(
        "ip",
        &["addr", "add", &format!("{JANUS_IP}/24"), "dev", "j0"],
    )?;
    run("ip", &["link", "set", "j0", "up"])?;
    run("ip", &["link", "set", "j1", "up"])?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(bench(&servers))
}

fn run(program: &str, args: &[&str]) -> Result<()> {
    let status = Command::new(program)
        .args(args)
        .status()
        .with_context(|| format!("{program} (is it installed?)"))?;
    if !status.success() {
        bail!("{program} {} failed: {status}", args.join(" "));
    }
    Ok(())
}

/// Pins every thread of `pid` (this process before its runtime starts: its one thread) to `cpu`.
fn pin(pid: u32, cpu: usize) -> Result<()> {
    let status = Command::new("taskset")
        .args(["-a", "-p", "-c", &cpu.to_string(), &pid.to_string()])
        .stdout(Stdio::null())
        .status()
        .context("taskset (util-linux) is needed to pin the processes to cores")?;
    if !status.success() {
        bail!("taskset could not pin {pid} to CPU {cpu}: {status}");
    }
    Ok(())
}

// ---------------------------------------------------------------- the servers

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Conclave,
    Janus,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::Conclave => "conclave",
            Self::Janus => "janus",
        }
    }
}

fn servers() -> Result<Vec<Kind>> {
    let list = std::env::var("CONCLAVE_BENCH_SERVERS").unwrap_or_else(|_| "conclave,janus".into());
    list.split(',')
        .map(|name| match name.trim() {
            "conclave" => Ok(Kind::Conclave),
            "janus" => Ok(Kind::Janus),
            other => bail!("CONCLAVE_BENCH_SERVERS: unknown server {other:?} (conclave, janus)"),
        })
        .collect()
}

/// Janus' library folder (`…/janus` holding `plugins/` and `transports/`).
fn janus_library() -> Result<PathBuf> {
    let which = Command::new("sh")
        .args(["-c", "command -v janus"])
        .output()?;
    if !which.status.success() {
        bail!("no `janus` on PATH");
    }
    for entry in std::fs::read_dir("/usr/lib")? {
        let folder = entry?.path().join("janus");
        if folder.join("plugins/libjanus_videoroom.so").exists()
            && folder.join("transports/libjanus_http.so").exists()
        {
            return Ok(folder);
        }
    }
    bail!("no /usr/lib/*/janus with the VideoRoom plugin and the HTTP transport")
}

/// Janus in a child process with a configuration folder of its own.
struct JanusProcess {
    child: Child,
    dir: tempfile::TempDir,
}

impl JanusProcess {
    async fn start(event_loops: usize) -> Result<Self> {
        let library = janus_library()?;
        let dir = tempfile::tempdir()?;
        let path = dir.path();
        for (folder, file) in [
            ("plugins", "libjanus_videoroom.so"),
            ("transports", "libjanus_http.so"),
        ] {
            std::fs::create_dir(path.join(folder))?;
            std::os::unix::fs::symlink(
                library.join(folder).join(file),
                path.join(folder).join(file),
            )?;
        }
        for folder in ["events", "loggers"] {
            std::fs::create_dir(path.join(folder))?;
        }
        let folder = path.display();
        let loops = if event_loops > 0 {
            format!("event_loops = {event_loops}")
        } else {
            String::new()
        };
        std::fs::write(
            path.join("janus.jcfg"),
            format!(
                r#"general: {{
	configs_folder = "{folder}"
	plugins_folder = "{folder}/plugins"
	transports_folder = "{folder}/transports"
	events_folder = "{folder}/events"
	loggers_folder = "{folder}/loggers"
	debug_level = 3
	debug_colors = false
	session_timeout = 0
	{loops}
}}
media: {{
	rtp_port_range = "20000-29999"
}}
nat: {{
	nice_debug = false
	ice_lite = true
	ice_enforce_list = "j0"
}}
plugins: {{
}}
transports: {{
}}
events: {{
}}
"#
            ),
        )?;
        let (ip, port) = JANUS_HTTP.split_once(':').context("JANUS_HTTP")?;
        std::fs::write(
            path.join("janus.transport.http.jcfg"),
            format!(
                "general: {{\n\tjson = \"compact\"\n\tbase_path = \"/janus\"\n\thttp = true\n\tport = {port}\n\tip = \"{ip}\"\n\thttps = false\n}}\nadmin: {{\n\tadmin_http = false\n}}\n"
            ),
        )?;
        std::fs::write(
            path.join("janus.plugin.videoroom.jcfg"),
            format!(
                "general: {{\n}}\nroom-{JANUS_ROOM}: {{\n\tdescription = \"bench\"\n\tpublishers = 100\n\tbitrate = 0\n\tfir_freq = 0\n\taudiocodec = \"opus\"\n\tvideocodec = \"vp8\"\n}}\n"
            ),
        )?;
        let child = Command::new("taskset")
            .arg("-c")
            .arg(SERVER_CPU.to_string())
            .arg("janus")
            .arg("-F")
            .arg(path)
            .arg("-C")
            .arg(path.join("janus.jcfg"))
            .arg("-N")
            .arg("-L")
            .arg(path.join("janus.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting janus")?;
        let mut janus = Self { child, dir };
        janus.ready().await?;
        Ok(janus)
    }

    fn base(&self) -> String {
        format!("http://{JANUS_HTTP}/janus")
    }

    /// Waits until the HTTP API answers `info` (a readiness probe: Janus says nothing else
    /// when it is ready at this log level), or fails with the log's tail when Janus exited.
    async fn ready(&mut self) -> Result<()> {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("janus exited at start ({status}): {}", self.log_tail());
            }
            if let Ok(response) = http.get(format!("{}/info", self.base())).send().await
                && response.status().is_success()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("janus did not answer within 20 s: {}", self.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("janus.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for JanusProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

enum Server {
    Conclave(SfuProcess),
    Janus(JanusProcess),
}

impl Server {
    async fn start(kind: Kind, janus_event_loops: usize) -> Result<Self> {
        Ok(match kind {
            Kind::Conclave => Self::Conclave(SfuProcess::spawn_on(Some(SERVER_CPU))?),
            Kind::Janus => Self::Janus(JanusProcess::start(janus_event_loops).await?),
        })
    }

    fn pid(&self) -> u32 {
        match self {
            Self::Conclave(sfu) => sfu.child.id(),
            Self::Janus(janus) => janus.child.id(),
        }
    }

    /// Conclave's own metrics (its forwarding-latency histogram).
    async fn metrics(&self) -> Result<Option<Metrics>> {
        match self {
            Self::Conclave(sfu) => Ok(Some(sfu.metrics().await?)),
            Self::Janus(_) => Ok(None),
        }
    }
}

/// Holds every thread of `pid` to `limit` of a core (CFS bandwidth control: at most
/// `limit` × 100 ms of CPU in every 100 ms), in a cgroup of its own — v2's `cpu.max` where the
/// unified hierarchy has the cpu controller, v1's `cpu.cfs_quota_us` otherwise.
fn limit_cpu(pid: u32, limit: f64) -> Result<()> {
    const PERIOD_US: u64 = 100_000;
    let quota = (limit * PERIOD_US as f64).round() as u64;
    let v2 = Path::new("/sys/fs/cgroup");
    let v2_cpu = std::fs::read_to_string(v2.join("cgroup.controllers"))
        .is_ok_and(|c| c.split_whitespace().any(|c| c == "cpu"));
    let write = |path: PathBuf, value: String| {
        std::fs::write(&path, &value)
            .with_context(|| format!("writing {value:?} to {}", path.display()))
    };
    let dir = if v2_cpu {
        write(v2.join("cgroup.subtree_control"), "+cpu".into())?;
        let dir = v2.join("conclave-bench");
        std::fs::create_dir_all(&dir)?;
        write(dir.join("cpu.max"), format!("{quota} {PERIOD_US}"))?;
        dir
    } else {
        let dir = v2.join("cpu/conclave-bench");
        std::fs::create_dir_all(&dir).with_context(|| {
            format!(
                "{}: CONCLAVE_BENCH_SERVER_CPU_LIMIT needs the cgroup cpu controller (v2, or v1 at /sys/fs/cgroup/cpu)",
                dir.display()
            )
        })?;
        write(dir.join("cpu.cfs_period_us"), PERIOD_US.to_string())?;
        write(dir.join("cpu.cfs_quota_us"), quota.to_string())?;
        dir
    };
    write(dir.join("cgroup.procs"), pid.to_string())
}

/// CPU seconds (user + system, all threads) of `pid` so far.
fn cpu_seconds(pid: u32, ticks: f64) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses: state is field 3, utime 14,
    // stime 15.
    let rest = stat.rsplit_once(')').context("/proc/<pid>/stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11).context("utime")?.parse()?;
    let stime: f64 = fields.get(12).context("stime")?.parse()?;
    Ok((utime + stime) / ticks)
}

fn rss_kib(pid: u32) -> u64 {
    support::rss_kib_in(&format!("/proc/{pid}/status"))
}

/// Busy seconds (everything but idle and iowait) of core `cpu` so far, whoever ran there.
fn core_busy_seconds(cpu: usize, ticks: f64) -> Result<f64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let name = format!("cpu{cpu}");
    let fields: Vec<f64> = stat
        .lines()
        .find_map(|l| l.strip_prefix(&name).filter(|rest| rest.starts_with(' ')))
        .with_context(|| format!("{name} in /proc/stat"))?
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let busy: f64 = fields.iter().take(8).sum::<f64>() - fields[3] - fields[4];
    Ok(busy / ticks)
}

fn clock_ticks() -> Result<f64> {
    let out = Command::new("getconf").arg("CLK_TCK").output()?;
    Ok(String::from_utf8(out.stdout)?.trim().parse()?)
}

// ---------------------------------------------------------------- the load

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Fanout,
    Mesh,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Self::Fanout => "fanout",
            Self::Mesh => "mesh",
        }
    }

    fn plan(self) -> MediaPlan {
        MediaPlan {
            video_bps: match self {
                Self::Fanout => FANOUT_VIDEO_BPS,
                Self::Mesh => MESH_VIDEO_BPS,
            },
            simulcast: false,
            keyframe_every: None,
        }
    }

    /// Packets per second the publishers should send: Opus every 20 ms, VP8 30 frames a
    /// second of `video_bps / 240` bytes in packets of at most 1100 bytes (loadgen's
    /// generator), without the keyframes asked for.
    fn nominal_packets_per_second(self, n: usize) -> f64 {
        let frame = self.plan().video_bps as usize / 8 / 30;
        let per_publisher = 50 + 30 * frame.div_ceil(1100).max(1);
        let publishers = match self {
            Self::Fanout => 1,
            Self::Mesh => n,
        };
        (publishers * per_publisher) as f64
    }

    fn participants(self, n: usize) -> usize {
        match self {
            Self::Fanout => n + 1,
            Self::Mesh => n,
        }
    }
}

/// One step's participants, whichever the server.
struct Load {
    /// Each publisher's count of packets sent.
    sent: Vec<Arc<AtomicU64>>,
    /// What each receiving connection got.
    receipts: Vec<Receipts>,
    /// How many receivers each published packet should reach.
    copies: u64,
    /// Tracks each receiver should get.
    tracks: usize,
    members: Members,
}

enum Members {
    Conclave(Vec<Client>),
    Janus(Arc<Session>, Vec<Publisher>, Vec<Subscriber>),
}

impl Load {
    fn sent(&self) -> u64 {
        self.sent.iter().map(|s| s.load(Ordering::Relaxed)).sum()
    }

    fn receipts(&self) -> Vec<&Receipts> {
        self.receipts.iter().collect()
    }

    async fn leave(self) {
        self.members.leave().await;
    }
}

impl Members {
    async fn leave(self) {
        match self {
            Self::Conclave(clients) => leave_all(clients).await,
            Self::Janus(session, publishers, subscribers) => {
                futures::future::join_all(subscribers.into_iter().map(Subscriber::close)).await;
                futures::future::join_all(publishers.into_iter().map(Publisher::close)).await;
                session.destroy().await;
            }
        }
    }
}

/// Runs `make(i)` for `0..count`, [`SETUP_CONCURRENCY`] at a time, in order: every
/// participant made, or the first error and those made (to be closed: a webrtc-rs peer
/// connection that is only dropped keeps its tasks running in the generator).
async fn all<T, F>(
    count: usize,
    make: impl Fn(usize) -> F,
) -> std::result::Result<Vec<T>, (anyhow::Error, Vec<T>)>
where
    F: std::future::Future<Output = Result<T>>,
{
    let results: Vec<Result<T>> = futures::stream::iter((0..count).map(make))
        .buffered(SETUP_CONCURRENCY)
        .collect()
        .await;
    let mut made = Vec::new();
    let mut first_error = None;
    for result in results {
        match result {
            Ok(item) => made.push(item),
            Err(err) => {
                first_error.get_or_insert(err);
            }
        }
    }
    match first_error {
        None => Ok(made),
        Some(err) => Err((err, made)),
    }
}

async fn leave_all(clients: Vec<Client>) {
    futures::future::join_all(clients.into_iter().map(Client::leave)).await;
}

async fn conclave_load(sfu: &SfuProcess, scenario: Scenario, n: usize) -> Result<Load> {
    let room = Room {
        addr: sfu.addr,
        key: TokenKey::new(SECRET.as_bytes())?,
        conference: ConferenceId::from(format!("{}-{n}", scenario.name()).as_str()),
    };
    let sources = [TrackSource::Microphone, TrackSource::Camera];
    let room = &room;
    let clients = match scenario {
        Scenario::Fanout => {
            let publisher = room.join("publisher", true).await?;
            if let Err(err) = publisher.publish(&sources, scenario.plan()).await {
                publisher.leave().await;
                return Err(err);
            }
            let made = all(n, |i| async move {
                room.join(&format!("subscriber{i}"), false).await
            })
            .await;
            let mut clients = match made {
                Ok(clients) => clients,
                Err((err, made)) => {
                    leave_all(made).await;
                    publisher.leave().await;
                    return Err(err);
                }
            };
            clients.insert(0, publisher);
            clients
        }
        Scenario::Mesh => {
            let clients = match all(n, |i| async move {
                room.join(&format!("member{i}"), i == 0).await
            })
            .await
            {
                Ok(clients) => clients,
                Err((err, made)) => {
                    leave_all(made).await;
                    return Err(err);
                }
            };
            for client in &clients {
                if let Err(err) = client.publish(&sources, scenario.plan()).await {
                    leave_all(clients).await;
                    return Err(err);
                }
            }
            clients
        }
    };
    let receivers = match scenario {
        Scenario::Fanout => &clients[1..],
        Scenario::Mesh => &clients[..],
    };
    Ok(Load {
        sent: clients.iter().map(|c| Arc::clone(&c.sent)).collect(),
        receipts: receivers.iter().map(|c| Arc::clone(&c.received)).collect(),
        copies: match scenario {
            Scenario::Fanout => n as u64,
            Scenario::Mesh => n as u64 - 1,
        },
        tracks: match scenario {
            Scenario::Fanout => 2,
            Scenario::Mesh => 2 * (n - 1),
        },
        members: Members::Conclave(clients),
    })
}

async fn janus_load(janus: &JanusProcess, scenario: Scenario, n: usize) -> Result<Load> {
    let session = Session::create(&janus.base()).await?;
    let local = SocketAddr::new(IpAddr::V4(JANUS_IP), 0);
    let session_ref = &session;
    let publishers = match scenario {
        Scenario::Fanout => Publisher::publish(&session, JANUS_ROOM, local, scenario.plan())
            .await
            .map(|publisher| vec![publisher])
            .map_err(|err| (err, Vec::new())),
        Scenario::Mesh => {
            all(n, |i| async move {
                Publisher::publish(session_ref, JANUS_ROOM, local, scenario.plan())
                    .await
                    .with_context(|| format!("publisher {i}"))
            })
            .await
        }
    };
    let publishers = match publishers {
        Ok(publishers) => publishers,
        Err((err, made)) => {
            Members::Janus(session, made, Vec::new()).leave().await;
            return Err(err);
        }
    };
    let feeds: Vec<u64> = publishers.iter().map(|p| p.feed).collect();
    let feeds = &feeds;
    let made = all(n, |i| async move {
        let wanted: Vec<u64> = match scenario {
            Scenario::Fanout => feeds.clone(),
            Scenario::Mesh => feeds
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .map(|(_, &feed)| feed)
                .collect(),
        };
        Subscriber::subscribe(session_ref, JANUS_ROOM, &wanted, local)
            .await
            .with_context(|| format!("subscriber {i}"))
    })
    .await;
    let subscribers = match made {
        Ok(subscribers) => subscribers,
        Err((err, made)) => {
            Members::Janus(session, publishers, made).leave().await;
            return Err(err);
        }
    };
    Ok(Load {
        sent: publishers.iter().map(|p| Arc::clone(&p.sent)).collect(),
        receipts: subscribers
            .iter()
            .map(|s| Arc::clone(&s.received))
            .collect(),
        copies: match scenario {
            Scenario::Fanout => n as u64,
            Scenario::Mesh => n as u64 - 1,
        },
        tracks: match scenario {
            Scenario::Fanout => 2,
            Scenario::Mesh => 2 * (n - 1),
        },
        members: Members::Janus(session, publishers, subscribers),
    })
}

// ---------------------------------------------------------------- measuring

/// One measured step.
#[derive(Debug, Clone)]
struct Step {
    n: usize,
    participants: usize,
    loss: f64,
    count_loss: f64,
    gap_loss: f64,
    forwarded: u64,
    seconds: f64,
    server_cores: f64,
    generator_cores: f64,
    /// What else ran on the server's and the generator's cores, in cores.
    others_on_server_core: f64,
    others_on_generator_core: f64,
    sent_per_second: f64,
    nominal_sent_per_second: f64,
    packets_per_cpu_second: Option<f64>,
    /// `perf stat` counts per forwarded packet, when recorded.
    per_packet: Vec<(String, f64)>,
    e2e_p50_ms: Option<f64>,
    e2e_p99_ms: Option<f64>,
    server_p50_ms: Option<f64>,
    server_p99_ms: Option<f64>,
    /// Conclave's whole delay per copy on the direct path: from the publisher's packet reaching
    /// the pod to the copy's send call returning.
    copy_p50_ms: Option<f64>,
    copy_p99_ms: Option<f64>,
    audio_copy_p99_ms: Option<f64>,
    /// How Conclave's counters of shed load grew during the window.
    server_counters: BTreeMap<String, f64>,
    /// How the kernel's UDP error counters grew during the window (the whole machine).
    kernel_udp: BTreeMap<String, u64>,
    rss_kib: u64,
    notes: Vec<String>,
}

impl Step {
    fn passed(&self) -> bool {
        self.loss < LOSS_LIMIT && self.notes.iter().all(|n| !n.starts_with("not every"))
    }

    fn rss_per_participant_kib(&self) -> f64 {
        self.rss_kib as f64 / self.participants as f64
    }

    fn generator_saturated(&self) -> bool {
        self.generator_cores >= SATURATED
    }

    fn json(&self) -> Value {
        json!({
            "n": self.n,
            "participants": self.participants,
            "loss": self.loss,
            "lossReceivedAgainstSent": self.count_loss,
            "lossFromSequenceGaps": self.gap_loss,
            "packetsForwarded": self.forwarded,
            "windowSeconds": self.seconds,
            "forwardedPacketsPerSecond": self.forwarded as f64 / self.seconds,
            "forwardedPacketsPerServerCpuSecond": self.packets_per_cpu_second,
            "perfCountsPerForwardedPacket": self.per_packet.iter().map(|(event, count)| (event.clone(), json!(count))).collect::<serde_json::Map<String, Value>>(),
            "serverCores": self.server_cores,
            "generatorCores": self.generator_cores,
            "generatorSaturated": self.generator_saturated(),
            "otherProcessesOnServerCore": self.others_on_server_core,
            "otherProcessesOnGeneratorCore": self.others_on_generator_core,
            "publishedPacketsPerSecond": self.sent_per_second,
            "nominalPublishedPacketsPerSecond": self.nominal_sent_per_second,
            "endToEndLatencyMs": {"p50": self.e2e_p50_ms, "p99": self.e2e_p99_ms},
            "serverForwardingLatencyMs": {"p50": self.server_p50_ms, "p99": self.server_p99_ms},
            "serverCopyDelayMs": {"p50": self.copy_p50_ms, "p99": self.copy_p99_ms, "audioP99": self.audio_copy_p99_ms},
            "serverCountersInWindow": self.server_counters,
            "kernelUdpErrorsInWindow": self.kernel_udp,
            "serverRssKiB": self.rss_kib,
            "serverRssPerParticipantKiB": self.rss_per_participant_kib(),
            "notes": self.notes,
        })
    }

    fn print(&self, server: Kind, scenario: Scenario) {
        let ms = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.2}"));
        println!(
            "{:>8} {:>6} N={:<3} loss {:>6.3}%  {:>6.0} pkts/s fwd  {:>7} pkts/server-CPU-s  server {:.2} cores  generator {:.2} cores  e2e p50 {} p99 {} ms  server arrival->sent p50 {} p99 {} ms (audio p99 {})  RSS/participant {:.0} KiB{}",
            server.name(),
            scenario.name(),
            self.n,
            self.loss * 100.0,
            self.forwarded as f64 / self.seconds,
            self.packets_per_cpu_second
                .map_or("-".into(), |v| format!("{v:.0}")),
            self.server_cores,
            self.generator_cores,
            ms(self.e2e_p50_ms),
            ms(self.e2e_p99_ms),
            ms(self.copy_p50_ms),
            ms(self.copy_p99_ms),
            ms(self.audio_copy_p99_ms),
            self.rss_per_participant_kib(),
            if self.notes.is_empty() {
                String::new()
            } else {
                format!("  ({})", self.notes.join("; "))
            },
        );
    }
}

struct Sample {
    at: Instant,
    server_cpu: f64,
    generator_cpu: f64,
    server_core_busy: f64,
    generator_core_busy: f64,
    sent: u64,
    received: u64,
    lost: u64,
    metrics: Option<Metrics>,
    kernel_udp: BTreeMap<String, u64>,
}

async fn sample(server: &Server, load: &Load, ticks: f64) -> Result<Sample> {
    Ok(Sample {
        at: Instant::now(),
        server_cpu: cpu_seconds(server.pid(), ticks)?,
        generator_cpu: cpu_seconds(std::process::id(), ticks)?,
        server_core_busy: core_busy_seconds(SERVER_CPU, ticks)?,
        generator_core_busy: core_busy_seconds(GENERATOR_CPU, ticks)?,
        sent: load.sent(),
        received: support::received_packets(&load.receipts()),
        lost: support::lost_packets(&load.receipts()),
        metrics: server.metrics().await?,
        kernel_udp: kernel_udp_counters(),
    })
}

/// The kernel's UDP counters that tell where datagrams were lost on this machine (IPv4 and
/// IPv6 summed; every process on the machine, server and generator alike): `RcvbufErrors` a
/// receive buffer was full, `SndbufErrors` a send buffer, `InErrors` every receive error.
fn kernel_udp_counters() -> BTreeMap<String, u64> {
    const WANTED: [&str; 3] = ["InErrors", "RcvbufErrors", "SndbufErrors"];
    let mut counters = BTreeMap::new();
    // /proc/net/snmp: a line of names and a line of values, each starting with "Udp:".
    if let Ok(snmp) = std::fs::read_to_string("/proc/net/snmp") {
        let udp: Vec<&str> = snmp.lines().filter(|l| l.starts_with("Udp:")).collect();
        if let [names, values] = udp[..] {
            for (name, value) in names.split_whitespace().zip(values.split_whitespace()) {
                if let (true, Ok(value)) = (WANTED.contains(&name), value.parse::<u64>()) {
                    *counters.entry(name.to_owned()).or_default() += value;
                }
            }
        }
    }
    // /proc/net/snmp6: "Udp6RcvbufErrors 0" per line.
    if let Ok(snmp6) = std::fs::read_to_string("/proc/net/snmp6") {
        for line in snmp6.lines() {
            let mut fields = line.split_whitespace();
            if let (Some(name), Some(Ok(value))) =
                (fields.next(), fields.next().map(str::parse::<u64>))
                && let Some(name) = name.strip_prefix("Udp6").filter(|n| WANTED.contains(n))
            {
                *counters.entry(name.to_owned()).or_default() += value;
            }
        }
    }
    counters
}

/// What `perf stat` counts in the server process during a recorded window.
const PERF_EVENTS: &[&str] = &[
    "raw_syscalls:sys_enter",
    "context-switches",
    "syscalls:sys_enter_sendmsg",
    "syscalls:sys_enter_sendmmsg",
    "syscalls:sys_enter_sendto",
    "syscalls:sys_enter_recvmsg",
    "syscalls:sys_enter_recvmmsg",
    "syscalls:sys_enter_recvfrom",
    "syscalls:sys_enter_epoll_wait",
    "syscalls:sys_enter_futex",
];

/// `perf record` (call graphs) and `perf stat` (syscalls, context switches) of the server
/// process for `window`, into `folder`.
fn perf(folder: &Path, name: &str, pid: u32, window: Duration) -> Result<[Child; 2]> {
    std::fs::create_dir_all(folder)?;
    let perf = |args: &[&str], out: PathBuf| {
        Command::new("perf")
            .args(args)
            .arg("-p")
            .arg(pid.to_string())
            .arg("-o")
            .arg(out)
            .args(["--", "sleep"])
            .arg(window.as_secs_f64().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("perf (Debian linux-perf) for CONCLAVE_BENCH_PERF")
    };
    let events = PERF_EVENTS.join(",");
    Ok([
        perf(
            &["record", "--call-graph", "dwarf,32768", "-F", "400"],
            folder.join(format!("{name}.data")),
        )?,
        perf(
            &["stat", "-x", ",", "-e", &events],
            folder.join(format!("{name}.stat")),
        )?,
    ])
}

/// The counts of a `perf stat -x ,` output, by event.
fn perf_counts(path: &Path) -> Vec<(String, f64)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            Some((fields.get(2)?.to_string(), fields.first()?.parse().ok()?))
        })
        .collect()
}

async fn step(
    kind: Kind,
    scenario: Scenario,
    n: usize,
    window: Duration,
    knobs: &Knobs,
) -> Result<Step> {
    let server = Server::start(kind, knobs.janus_event_loops).await?;
    if let Some(limit) = knobs.cpu_limit {
        limit_cpu(server.pid(), limit)?;
    }
    let load = match &server {
        Server::Conclave(sfu) => conclave_load(sfu, scenario, n).await?,
        Server::Janus(janus) => janus_load(janus, scenario, n)
            .await
            .map_err(|err| err.context(format!("janus.log ends: {}", janus.log_tail())))?,
    };
    let mut notes = Vec::new();
    if !support::wait_flowing(&load.receipts(), load.tracks, Duration::from_secs(30)).await {
        let missing = support::missing_tracks(&load.receipts(), load.tracks);
        notes.push(format!(
            "not every receiver got every track within 30 s ({} tracks never arrived, {} video \
             tracks flowed without a keyframe)",
            missing.absent, missing.without_keyframe
        ));
    }
    // Let the joins' keyframes and retransmissions pass before measuring steady state.
    tokio::time::sleep(Duration::from_secs(1)).await;
    support::clear_latencies(&load.receipts());
    let name = format!("{}-{}-{n}", kind.name(), scenario.name());
    let recording = knobs
        .perf
        .as_deref()
        .map(|folder| perf(folder, &name, server.pid(), window))
        .transpose()?;
    let before = sample(&server, &load, knobs.ticks).await?;
    tokio::time::sleep(window).await;
    let after = sample(&server, &load, knobs.ticks).await?;
    for mut perf in recording.into_iter().flatten() {
        perf.wait()?;
    }
    let rss_kib = rss_kib(server.pid());
    let seconds = after.at.duration_since(before.at).as_secs_f64();
    let expected = (after.sent - before.sent) * load.copies;
    let forwarded = after.received - before.received;
    // Two views of loss; the larger counts. Received against sent × copies misses losses
    // while a backlog that built up before the window drains into it; sequence gaps at the
    // receivers miss packets that were never sent, or lost at the end of the window.
    let count_loss = if expected == 0 {
        1.0
    } else {
        (1.0 - forwarded as f64 / expected as f64).max(0.0)
    };
    // Missing packets can fall as late retransmissions fill their holes.
    let gaps = after.lost.saturating_sub(before.lost);
    let gap_loss = gaps as f64 / (gaps + forwarded).max(1) as f64;
    let loss = count_loss.max(gap_loss);
    let per_packet = knobs
        .perf
        .as_deref()
        .map(|folder| perf_counts(&folder.join(format!("{name}.stat"))))
        .unwrap_or_default()
        .into_iter()
        .map(|(event, count)| (event, count / forwarded.max(1) as f64))
        .collect();
    let server_cpu = after.server_cpu - before.server_cpu;
    let generator_cores = (after.generator_cpu - before.generator_cpu) / seconds;
    let e2e = support::latencies(&load.receipts());
    // A quantile of one of Conclave's histograms over the window, in milliseconds.
    let quantile = |of: fn(&Metrics, &Metrics, f64) -> Option<f64>, q: f64| {
        after
            .metrics
            .as_ref()
            .zip(before.metrics.as_ref())
            .and_then(|(a, b)| of(a, b, q))
            .map(|s| s * 1000.0)
    };
    let server_cores = server_cpu / seconds;
    // `perf` (when recording) runs on the generator's core too; it is counted as other.
    let others_on_server_core =
        ((after.server_core_busy - before.server_core_busy) / seconds - server_cores).max(0.0);
    let others_on_generator_core =
        ((after.generator_core_busy - before.generator_core_busy) / seconds - generator_cores)
            .max(0.0);
    let sent_per_second = (after.sent - before.sent) as f64 / seconds;
    let nominal_sent_per_second = scenario.nominal_packets_per_second(n);
    if generator_cores >= SATURATED {
        notes.push(format!(
            "load generator saturated ({generator_cores:.2} of its core)"
        ));
    }
    if sent_per_second < 0.95 * nominal_sent_per_second {
        notes.push(format!(
            "publishers sent {:.0} % of their nominal rate (the generator falls behind)",
            100.0 * sent_per_second / nominal_sent_per_second
        ));
    }
    let kernel_udp: BTreeMap<String, u64> = after
        .kernel_udp
        .iter()
        .map(|(name, value)| {
            let since = value.saturating_sub(before.kernel_udp.get(name).copied().unwrap_or(0));
            (name.clone(), since)
        })
        .collect();
    for (counter, buffer) in [("RcvbufErrors", "receive"), ("SndbufErrors", "send")] {
        if let Some(&dropped) = kernel_udp.get(counter).filter(|&&d| d > 0) {
            notes.push(format!(
                "the kernel dropped {dropped} datagrams at full UDP {buffer} buffers (whole machine)"
            ));
        }
    }
    for (others, core) in [
        (others_on_server_core, "server's"),
        (others_on_generator_core, "generator's"),
    ] {
        if others >= 0.1 {
            notes.push(format!(
                "other processes took {others:.2} of the {core} core"
            ));
        }
    }
    let step = Step {
        n,
        participants: scenario.participants(n),
        loss,
        count_loss,
        gap_loss,
        forwarded,
        seconds,
        server_cores,
        generator_cores,
        others_on_server_core,
        others_on_generator_core,
        sent_per_second,
        nominal_sent_per_second,
        packets_per_cpu_second: (server_cpu > 0.0).then(|| forwarded as f64 / server_cpu),
        per_packet,
        e2e_p50_ms: percentile(&e2e, 0.5),
        e2e_p99_ms: percentile(&e2e, 0.99),
        server_p50_ms: quantile(Metrics::latency_quantile, 0.5),
        server_p99_ms: quantile(Metrics::latency_quantile, 0.99),
        copy_p50_ms: quantile(Metrics::copy_delay_quantile, 0.5),
        copy_p99_ms: quantile(Metrics::copy_delay_quantile, 0.99),
        audio_copy_p99_ms: quantile(Metrics::audio_copy_delay_quantile, 0.99),
        server_counters: after
            .metrics
            .as_ref()
            .zip(before.metrics.as_ref())
            .map(|(a, b)| a.counters_since(b))
            .unwrap_or_default(),
        kernel_udp,
        rss_kib,
        notes,
    };
    load.leave().await;
    drop(server);
    Ok(step)
}

struct Knobs {
    window: Duration,
    /// The share of its core the server may use (`CONCLAVE_BENCH_SERVER_CPU_LIMIT`).
    cpu_limit: Option<f64>,
    budget: Duration,
    janus_event_loops: usize,
    perf: Option<PathBuf>,
    ticks: f64,
}

/// One server's ladder in one scenario.
struct Ladder {
    steps: Vec<Step>,
    knee: Option<usize>,
    stopped: Option<String>,
}

impl Ladder {
    fn at(&self, n: Option<usize>) -> Option<&Step> {
        self.steps.iter().find(|s| Some(s.n) == n)
    }

    /// The passing step nearest to half the knee.
    fn half_load(&self) -> Option<&Step> {
        let knee = self.knee?;
        self.steps
            .iter()
            .filter(|s| s.passed())
            .min_by_key(|s| s.n.abs_diff(knee / 2))
    }

    fn best_rate(&self) -> Option<f64> {
        self.steps
            .iter()
            .filter(|s| s.passed())
            .filter_map(|s| s.packets_per_cpu_second)
            .max_by(f64::total_cmp)
    }

    fn json(&self) -> Value {
        json!({
            "largestNBelowOnePercentLoss": self.knee,
            "forwardedPacketsPerServerCpuSecondBelowOnePercentLoss": self.best_rate(),
            "atKnee": self.at(self.knee).map(Step::json),
            "atHalfKnee": self.half_load().map(Step::json),
            "steps": self.steps.iter().map(Step::json).collect::<Vec<_>>(),
            "stopped": self.stopped,
        })
    }
}

async fn climb(kind: Kind, scenario: Scenario, knobs: &Knobs) -> Ladder {
    let rungs = match scenario {
        Scenario::Fanout => ladder(
            "CONCLAVE_BENCH_FANOUT",
            &[25, 50, 100, 150, 200, 250, 300, 400],
        ),
        Scenario::Mesh => ladder("CONCLAVE_BENCH_MESH", &[4, 8, 12, 14, 15, 16, 20, 24]),
    };
    let started = Instant::now();
    let mut result = Ladder {
        steps: Vec::new(),
        knee: None,
        stopped: None,
    };
    let mut failed = 0;
    for n in rungs {
        if started.elapsed() > knobs.budget {
            result.stopped = Some(format!(
                "time budget of {:?} spent before N={n}",
                knobs.budget
            ));
            break;
        }
        let measured = match step(kind, scenario, n, knobs.window, knobs).await {
            Ok(measured) => measured,
            Err(err) => {
                result.stopped = Some(format!("N={n} failed: {err:#}"));
                break;
            }
        };
        measured.print(kind, scenario);
        let passed = measured.passed();
        result.steps.push(measured);
        if passed && failed == 0 {
            result.knee = Some(n);
        } else if !passed {
            failed += 1;
            // One step past the knee shows how the server degrades; then stop.
            if failed == 2 {
                result.stopped = Some(format!("loss ≥ 1 % at two steps (last N={n})"));
                break;
            }
        }
    }
    result
}

fn table(results: &[(Kind, Scenario, Ladder)]) -> String {
    let ms = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.2}"));
    let mut out = String::from(
        "| server | scenario | knee (largest N < 1 % loss) | forwarded packets per server CPU-second (best step < 1 % loss) | server cores at knee | loss at knee | e2e latency p50 / p99, half knee | the server's own delay per copy p50 / p99 (arrival → sent), half knee | e2e latency p50 / p99, knee | RSS per participant at knee | generator cores at knee | past the knee | notes at knee |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for (kind, scenario, ladder) in results {
        let knee = ladder.at(ladder.knee);
        let half = ladder.half_load();
        let past = ladder
            .steps
            .iter()
            .find(|s| !s.passed())
            .map_or("-".into(), |s| {
                format!(
                    "N={}: {:.1} % loss, {:.0} pkts/s fwd, p99 {} ms{}",
                    s.n,
                    s.loss * 100.0,
                    s.forwarded as f64 / s.seconds,
                    ms(s.e2e_p99_ms),
                    if s.generator_saturated() {
                        " (generator saturated)"
                    } else {
                        ""
                    }
                )
            });
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            kind.name(),
            scenario.name(),
            ladder.knee.map_or("none".into(), |n| n.to_string()),
            ladder
                .best_rate()
                .map_or("-".into(), |r| format!("{:.1} k", r / 1000.0)),
            knee.map_or("-".into(), |s| format!("{:.2}", s.server_cores)),
            knee.map_or("-".into(), |s| format!("{:.2} %", s.loss * 100.0)),
            half.map_or("-".into(), |s| format!(
                "{} / {} ms (N={})",
                ms(s.e2e_p50_ms),
                ms(s.e2e_p99_ms),
                s.n
            )),
            half.map_or("-".into(), |s| match (s.copy_p50_ms, s.copy_p99_ms) {
                (None, None) => "-".into(),
                (p50, p99) => format!("{} / {} ms", ms(p50), ms(p99)),
            }),
            knee.map_or("-".into(), |s| format!(
                "{} / {} ms",
                ms(s.e2e_p50_ms),
                ms(s.e2e_p99_ms)
            )),
            knee.map_or("-".into(), |s| format!(
                "{:.0} KiB",
                s.rss_per_participant_kib()
            )),
            knee.map_or("-".into(), |s| format!("{:.2}", s.generator_cores)),
            past,
            knee.map_or(String::new(), |s| s.notes.join("; ")),
        ));
    }
    out
}

fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Datagrams the ceiling probe sends, and their size (a forwarded VP8 packet's).
const CEILING_DATAGRAMS: u32 = 300_000;
const CEILING_DATAGRAM_BYTES: usize = 1100;

/// This machine's ceiling for a server that sends each copy with its own system call: how
/// many 1100-byte datagrams one `sendto` each, and nothing else, sends per CPU-second on
/// loopback from the server's core to a receiver on the generator's (the kernel's work for
/// the receiver's end is charged to the sender on loopback, as it is for the servers). The
/// same forwarding code is 3× faster on some of these machines than on others; this says
/// which kind of machine a table comes from.
fn sendto_ceiling() -> Result<f64> {
    let receiver = std::net::UdpSocket::bind("127.0.0.1:0")?;
    receiver.set_read_timeout(Some(Duration::from_millis(200)))?;
    let target = receiver.local_addr()?;
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let draining = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let mut buffer = [0u8; 2048];
            while !done.load(Ordering::Relaxed) {
                let _ = receiver.recv(&mut buffer);
            }
        })
    };
    let sending = std::thread::spawn(move || -> Result<f64> {
        let tid: u32 = std::fs::read_link("/proc/thread-self")?
            .file_name()
            .and_then(|t| t.to_str())
            .context("/proc/thread-self")?
            .parse()?;
        let status = Command::new("taskset")
            .args(["-p", "-c", &SERVER_CPU.to_string(), &tid.to_string()])
            .stdout(Stdio::null())
            .status()?;
        if !status.success() {
            bail!("taskset could not pin the ceiling probe to CPU {SERVER_CPU}");
        }
        let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
        let datagram = [7u8; CEILING_DATAGRAM_BYTES];
        let thread_cpu = || support::cpu_seconds(nix::sys::resource::UsageWho::RUSAGE_THREAD);
        let before = thread_cpu()?;
        for i in 0..CEILING_DATAGRAMS {
            let _ = socket.send_to(&datagram, target);
            // In bursts, as a forwarder sends a packet's copies: the receiver keeps up.
            if i % 50 == 49 {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        let cpu = thread_cpu()? - before;
        Ok(f64::from(CEILING_DATAGRAMS) / cpu.max(1e-3))
    });
    let ceiling = sending
        .join()
        .map_err(|_| anyhow::anyhow!("the ceiling probe panicked"))?;
    done.store(true, Ordering::Relaxed);
    let _ = draining.join();
    ceiling
}

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        });
    json!({
        "cpu": cpu,
        // This process is pinned to one core, so `available_parallelism` would say 1.
        "cores": std::fs::read_to_string("/proc/cpuinfo")
            .map_or(0, |info| info.lines().filter(|l| l.starts_with("processor")).count()),
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").ok().map(|k| k.trim().to_owned()),
        "janus": output("dpkg-query", &["-W", "-f=${Version}", "janus"]),
        "conclaveCommit": output("git", &["rev-parse", "--short", "HEAD"]),
    })
}

async fn bench(servers: &[Kind]) -> Result<()> {
    let knobs = Knobs {
        window: seconds("CONCLAVE_BENCH_WINDOW_SECONDS", 5),
        cpu_limit: match std::env::var("CONCLAVE_BENCH_SERVER_CPU_LIMIT") {
            Ok(limit) => Some(
                limit
                    .parse::<f64>()
                    .ok()
                    .filter(|l| *l > 0.01 && *l <= 1.0)
                    .context("CONCLAVE_BENCH_SERVER_CPU_LIMIT: a fraction of a core, 0.01 to 1")?,
            ),
            Err(_) => None,
        },
        budget: seconds("CONCLAVE_BENCH_BUDGET_SECONDS", 300),
        janus_event_loops: ladder("CONCLAVE_BENCH_JANUS_EVENT_LOOPS", &[1])[0],
        perf: std::env::var_os("CONCLAVE_BENCH_PERF").map(PathBuf::from),
        ticks: clock_ticks()?,
    };
    let scenarios =
        std::env::var("CONCLAVE_BENCH_SCENARIOS").unwrap_or_else(|_| "fanout,mesh".into());
    let scenarios: Vec<Scenario> = scenarios
        .split(',')
        .map(|s| match s.trim() {
            "fanout" => Ok(Scenario::Fanout),
            "mesh" => Ok(Scenario::Mesh),
            other => bail!("CONCLAVE_BENCH_SCENARIOS: unknown scenario {other:?} (fanout, mesh)"),
        })
        .collect::<Result<_>>()?;
    let ceiling = sendto_ceiling()?;
    println!(
        "this machine: {:.0} k datagrams of {CEILING_DATAGRAM_BYTES} bytes per CPU-second, one sendto each on loopback — the ceiling for one system call per copy",
        ceiling / 1000.0
    );
    let started = Instant::now();
    let mut results = Vec::new();
    for &scenario in &scenarios {
        for &kind in servers {
            let ladder = climb(kind, scenario, &knobs).await;
            println!(
                "{} {}: largest N with < 1 % loss: {}{}",
                kind.name(),
                scenario.name(),
                ladder.knee.map_or("none".into(), |n| n.to_string()),
                ladder
                    .stopped
                    .as_ref()
                    .map_or(String::new(), |s| format!(" ({s})"))
            );
            results.push((kind, scenario, ladder));
        }
    }
    let table = table(&results);
    let mut by_server = serde_json::Map::new();
    for (kind, scenario, ladder) in &results {
        let entry = by_server.entry(kind.name()).or_insert_with(|| json!({}));
        entry[scenario.name()] = ladder.json();
    }
    let document = json!({
        "benchmark": "side-by-side",
        "date": chrono::Utc::now().to_rfc3339(),
        "machine": machine(),
        "sendtoCeilingPerCpuSecond": ceiling,
        "knobs": {
            "windowSeconds": knobs.window.as_secs(),
            "serverCpu": SERVER_CPU,
            "generatorCpu": GENERATOR_CPU,
            "janusEventLoops": knobs.janus_event_loops,
            "serverCpuLimit": knobs.cpu_limit,
            "udpPort": std::env::var("CONCLAVE_BENCH_UDP_PORT").ok(),
            "iceTcpPort": std::env::var("CONCLAVE_BENCH_ICE_TCP_PORT").ok(),
            "udpBufferBytes": std::env::var("CONCLAVE_BENCH_UDP_BUFFER_BYTES").ok(),
            "directMedia": std::env::var("CONCLAVE_BENCH_DIRECT_MEDIA").ok(),
            "fanoutVideoBps": FANOUT_VIDEO_BPS,
            "meshVideoBps": MESH_VIDEO_BPS,
            "lossLimit": LOSS_LIMIT,
        },
        "runSeconds": started.elapsed().as_secs_f64(),
        "results": by_server,
        "table": table,
    });
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| PathBuf::from("target"), PathBuf::from)
        .join("bench-results");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("side-by-side.json");
    std::fs::write(&path, serde_json::to_string_pretty(&document)?)?;
    println!("\n{table}");
    println!("written to {}", path.display());
    Ok(())
}

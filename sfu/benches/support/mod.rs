//! What the SFU's benchmarks share: the Conclave SFU in a child process (this bench binary
//! again, with `CONCLAVE_BENCH_ROLE=sfu`), join tokens for its rooms, what clients received,
//! percentiles and the knobs' parsing. `sfu.rs` and `side_by_side.rs` each use a part, hence
//! `allow(dead_code)` at their `mod support;`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use chrono::Utc;
use loadgen::Client;
use parking_lot::Mutex;
use proto::token::JOIN_AUDIENCE;
use proto::{ConferenceId, JoinClaims, Media, MeetingId, Role, RoomSettings, TokenKey, UdpPorts};

/// Set in the SFU child process' environment.
pub const ROLE: &str = "CONCLAVE_BENCH_ROLE";
/// The join-token key the SFU child and the clients share.
pub const SECRET: &str = "bench-secret-bench-secret-bench-secret";

// ---------------------------------------------------------------- the SFU process

/// Runs the SFU on 127.0.0.1, prints `addr <addr>`, and answers `usage` lines on stdin with
/// `usage <cpu seconds> <rss KiB>` until stdin closes.
pub fn serve_sfu() -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let addr = runtime.block_on(async {
        let mut config = sfu::Config::for_loopback(
            SECRET,
            UdpPorts {
                first: 40_000,
                last: 44_999,
            },
        );
        config.room_max_participants = 2000;
        // Every subscriber gets every track, as in Janus' VideoRoom: no room counts as large
        // (where only the last speakers' microphones are forwarded).
        config.limits.large_room_size = 0;
        config.max_participants = 2000;
        // Single-port mode when asked (`CONCLAVE_BENCH_UDP_PORT`): every connection on one port.
        if let Ok(port) = std::env::var("CONCLAVE_BENCH_UDP_PORT") {
            config.udp_port = Some(port.parse().context("CONCLAVE_BENCH_UDP_PORT: a port")?);
        }
        // ICE over TCP on that port beside UDP when asked (`CONCLAVE_BENCH_ICE_TCP_PORT`), as a
        // pod serving networks that block UDP runs: the generator's clients still use UDP.
        if let Ok(port) = std::env::var("CONCLAVE_BENCH_ICE_TCP_PORT") {
            config.ice_tcp_port = Some(
                port.parse()
                    .context("CONCLAVE_BENCH_ICE_TCP_PORT: a port")?,
            );
        }
        // The media sockets' kernel buffers (`CONCLAVE_BENCH_UDP_BUFFER_BYTES`, 0: the kernel's
        // default), to compare with the SFU's own default.
        if let Ok(bytes) = std::env::var("CONCLAVE_BENCH_UDP_BUFFER_BYTES") {
            config.udp_buffer_bytes = bytes
                .parse()
                .context("CONCLAVE_BENCH_UDP_BUFFER_BYTES: a number of bytes")?;
        }
        // webrtc-rs' own path for subscribers' media instead of the direct one
        // (`CONCLAVE_BENCH_DIRECT_MEDIA=false`), to measure what the direct path saves.
        if let Ok(direct) = std::env::var("CONCLAVE_BENCH_DIRECT_MEDIA") {
            config.direct_media = direct
                .parse()
                .context("CONCLAVE_BENCH_DIRECT_MEDIA: true or false")?;
        }
        let registry = prometheus::Registry::new();
        let state = sfu::SfuState::new(&config, Arc::new(sfu::LogReporter), &registry)?;
        let app = sfu::router(state).merge(sfu::metrics_router(registry));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move { axum::serve(listener, app).await });
        anyhow::Ok(addr)
    })?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "addr {addr}")?;
    out.flush()?;
    for line in std::io::stdin().lock().lines() {
        if line?.trim() == "usage" {
            let cpu = cpu_seconds(nix::sys::resource::UsageWho::RUSAGE_SELF)?;
            writeln!(out, "usage {cpu} {}", rss_kib())?;
            out.flush()?;
        }
    }
    drop(runtime);
    Ok(())
}

/// CPU seconds (user + system) `who` (this process, or this thread) has used.
pub fn cpu_seconds(who: nix::sys::resource::UsageWho) -> Result<f64> {
    let usage = nix::sys::resource::getrusage(who)?;
    let seconds = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    Ok(seconds(usage.user_time()) + seconds(usage.system_time()))
}

pub fn rss_kib() -> u64 {
    rss_kib_in("/proc/self/status")
}

/// VmRSS in KiB from a `/proc/<pid>/status` file (0 when it cannot be read).
pub fn rss_kib_in(status: &str) -> u64 {
    std::fs::read_to_string(status)
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

pub struct SfuProcess {
    pub child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    pub addr: SocketAddr,
    http: reqwest::Client,
}

#[derive(Debug, Clone, Copy)]
pub struct Usage {
    pub cpu_seconds: f64,
    pub rss_kib: u64,
}

impl SfuProcess {
    pub fn spawn() -> Result<Self> {
        Self::spawn_on(None)
    }

    /// Starts the SFU process, on CPU `cpu` alone when given (`taskset -c`; its runtime then
    /// has one worker thread).
    pub fn spawn_on(cpu: Option<usize>) -> Result<Self> {
        let mut command = match cpu {
            Some(cpu) => {
                let mut command = Command::new("taskset");
                command
                    .arg("-c")
                    .arg(cpu.to_string())
                    .arg(std::env::current_exe()?);
                command
            }
            None => Command::new(std::env::current_exe()?),
        };
        let mut child = command
            .env(ROLE, "sfu")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the SFU process")?;
        let stdin = child.stdin.take().context("stdin")?;
        let mut stdout = BufReader::new(child.stdout.take().context("stdout")?);
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        let addr = line
            .trim()
            .strip_prefix("addr ")
            .ok_or_else(|| anyhow!("the SFU process said {line:?}"))?
            .parse()?;
        Ok(Self {
            child,
            stdin,
            stdout,
            addr,
            http: reqwest::Client::new(),
        })
    }

    pub fn usage(&mut self) -> Result<Usage> {
        writeln!(self.stdin, "usage")?;
        self.stdin.flush()?;
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        let mut parts = line.split_whitespace().skip(1);
        Ok(Usage {
            cpu_seconds: parts.next().context("cpu")?.parse()?,
            rss_kib: parts.next().context("rss")?.parse()?,
        })
    }

    pub async fn metrics(&self) -> Result<Metrics> {
        let text = self
            .http
            .get(format!("http://{}/metrics", self.addr))
            .send()
            .await?
            .text()
            .await?;
        Ok(Metrics::parse(&text))
    }
}

impl Drop for SfuProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the benchmark reads from `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    pub packets_out: f64,
    /// Cumulative forwarding-latency buckets (upper bound in seconds → count), all kinds:
    /// from the forwarder's receipt to its hand-over of every copy.
    pub latency: Vec<(f64, f64)>,
    /// Cumulative buckets of the pod's whole delay per copy on the direct path, all kinds: from
    /// the publisher's packet reaching the pod to the copy's send call returning.
    pub copy_delay: Vec<(f64, f64)>,
    /// The same for the audio copies alone.
    pub audio_copy_delay: Vec<(f64, f64)>,
    /// The counters that tell how a pod sheds load (series with labels → value): NACKs,
    /// keyframe requests, copies dropped, time copies waited for their connection, packets
    /// lost on the way in.
    pub counters: std::collections::BTreeMap<String, f64>,
}

/// The series [`Metrics::counters`] keeps.
const COUNTERS: &[&str] = &[
    "conclave_sfu_nacks_received_total",
    "conclave_sfu_nacks_ignored_total",
    "conclave_sfu_keyframe_requests_total",
    "conclave_sfu_rtp_packets_dropped_total",
    "conclave_sfu_subscriber_queue_seconds_sum",
    "conclave_sfu_subscriber_queue_seconds_count",
    "conclave_sfu_receive_wait_seconds_sum",
    "conclave_sfu_receive_wait_seconds_count",
    // Lost on the way in: publishers' packets missing before retransmission, datagrams the
    // kernel dropped at the media sockets (read every 5 s), and those the shared port dropped.
    "conclave_sfu_inbound_packets_lost_total",
    "conclave_sfu_udp_kernel_drops_total",
    "conclave_sfu_udp_mux_datagrams_dropped_total",
    // How many datagrams of the direct paths a system call carried.
    "conclave_sfu_direct_datagrams_total",
    "conclave_sfu_direct_send_calls_total",
];

impl Metrics {
    pub fn parse(text: &str) -> Self {
        let mut packets_out = 0.0;
        let mut buckets: HashMap<String, f64> = HashMap::new();
        let mut copy_buckets: HashMap<String, f64> = HashMap::new();
        let mut audio_copy_buckets: HashMap<String, f64> = HashMap::new();
        let mut counters = std::collections::BTreeMap::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((name, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            if COUNTERS.iter().any(|c| {
                name.strip_prefix(c)
                    .is_some_and(|r| r.is_empty() || r.starts_with('{'))
            }) {
                counters.insert(name.to_owned(), value);
            }
            let le = |prefix: &str| {
                name.strip_prefix(prefix)
                    .and_then(|rest| rest.split("le=\"").nth(1))
                    .and_then(|l| l.split('"').next())
                    .map(str::to_owned)
            };
            if name.starts_with("conclave_sfu_rtp_packets_total{")
                && name.contains("direction=\"out\"")
            {
                packets_out += value;
            } else if let Some(le) = le("conclave_sfu_forwarding_latency_seconds_bucket{") {
                *buckets.entry(le).or_default() += value;
            } else if let Some(le) = le("conclave_sfu_copy_delay_seconds_bucket{") {
                if name.contains("kind=\"audio\"") {
                    *audio_copy_buckets.entry(le.clone()).or_default() += value;
                }
                *copy_buckets.entry(le).or_default() += value;
            }
        }
        let sorted = |buckets: HashMap<String, f64>| {
            let mut sorted: Vec<(f64, f64)> = buckets
                .into_iter()
                .map(|(le, count)| (le.parse().unwrap_or(f64::INFINITY), count))
                .collect();
            sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
            sorted
        };
        Self {
            packets_out,
            latency: sorted(buckets),
            copy_delay: sorted(copy_buckets),
            audio_copy_delay: sorted(audio_copy_buckets),
            counters,
        }
    }

    /// How much each counter grew since `before`, those that did.
    pub fn counters_since(&self, before: &Metrics) -> std::collections::BTreeMap<String, f64> {
        self.counters
            .iter()
            .map(|(name, value)| {
                (
                    name.clone(),
                    value - before.counters.get(name).copied().unwrap_or(0.0),
                )
            })
            .filter(|(_, grew)| *grew > 0.0)
            .collect()
    }

    /// The `q` quantile of the forwarding latency observed between `before` and `self`,
    /// interpolated linearly inside its bucket (as Prometheus' `histogram_quantile`).
    pub fn latency_quantile(&self, before: &Metrics, q: f64) -> Option<f64> {
        quantile(&self.latency, &before.latency, q)
    }

    /// The `q` quantile of the pod's delay per copy observed between `before` and `self`.
    pub fn copy_delay_quantile(&self, before: &Metrics, q: f64) -> Option<f64> {
        quantile(&self.copy_delay, &before.copy_delay, q)
    }

    /// The same for the audio copies alone.
    pub fn audio_copy_delay_quantile(&self, before: &Metrics, q: f64) -> Option<f64> {
        quantile(&self.audio_copy_delay, &before.audio_copy_delay, q)
    }
}

/// The `q` quantile of what cumulative buckets `now` counted since `before`, interpolated
/// linearly inside its bucket.
fn quantile(now: &[(f64, f64)], before: &[(f64, f64)], q: f64) -> Option<f64> {
    let delta: Vec<(f64, f64)> = now
        .iter()
        .map(|&(le, count)| {
            let earlier = before
                .iter()
                .find(|(l, _)| *l == le)
                .map_or(0.0, |(_, c)| *c);
            (le, count - earlier)
        })
        .collect();
    let total = delta.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &(le, count) in &delta {
        if count >= rank {
            if le.is_infinite() {
                return Some(lower.0);
            }
            let width = count - lower.1;
            let fraction = if width > 0.0 {
                (rank - lower.1) / width
            } else {
                1.0
            };
            return Some(lower.0 + (le - lower.0) * fraction);
        }
        lower = (le, count);
    }
    None
}

// ---------------------------------------------------------------- the clients

pub struct Room {
    pub addr: SocketAddr,
    pub key: TokenKey,
    pub conference: ConferenceId,
}

impl Room {
    /// A signed join token for `sub` (a moderator when `owner`).
    pub fn token(&self, sub: &str, owner: bool) -> Result<String> {
        let now = Utc::now().timestamp();
        let claims = JoinClaims {
            sub: sub.into(),
            name: sub.into(),
            conf: self.conference.clone(),
            mid: MeetingId::from("987654321"),
            role: if owner {
                Role::Moderator
            } else {
                Role::Listener
            },
            level: None,
            owner,
            room: RoomSettings {
                max_participants: Some(2000),
                allow_join_without_owner: true,
                media: Media::AudioVideo,
                udp_ports: None,
                revision: 0,
                recording_allowed: true,
                topic: None,
            },
            aud: JOIN_AUDIENCE.into(),
            iat: now,
            exp: now + 3600,
            jti: format!("jti-{sub}-{}", rand::random::<u32>()),
            rid: None,
            ep: 0,
            cli: None,
            pod: None,
        };
        Ok(self.key.sign_join(&claims)?)
    }

    pub async fn join(&self, sub: &str, owner: bool) -> Result<Client> {
        let token = self.token(sub, owner)?;
        let client = Client::join(self.addr, &token, &self.conference).await?;
        if client.id().is_none() {
            bail!("{sub} was not admitted: {:?}", client.first);
        }
        Ok(client)
    }
}

pub fn percentile(sorted: &[u64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    Some(sorted[index.min(sorted.len() - 1)] as f64 / 1000.0)
}

pub fn ladder(var: &str, default: &[usize]) -> Vec<usize> {
    std::env::var(var)
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .filter(|v: &Vec<usize>| !v.is_empty())
        .unwrap_or_else(|| default.to_vec())
}

pub fn seconds(var: &str, default: u64) -> Duration {
    Duration::from_secs(
        std::env::var(var)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default),
    )
}

/// What one client received, by track (`loadgen::Client::received`, and the same in
/// `loadgen::janus::Subscriber::received`).
pub type Receipts = Arc<Mutex<HashMap<String, loadgen::Received>>>;

/// RTP packets received by all of `receipts`.
pub fn received_packets(receipts: &[&Receipts]) -> u64 {
    receipts
        .iter()
        .flat_map(|r| r.lock().values().map(|r| r.packets).collect::<Vec<_>>())
        .sum()
}

/// Sequence gaps (packets that never came) seen by all of `receipts`.
pub fn lost_packets(receipts: &[&Receipts]) -> u64 {
    receipts
        .iter()
        .flat_map(|r| {
            r.lock()
                .values()
                .map(loadgen::Received::lost)
                .collect::<Vec<_>>()
        })
        .sum()
}

/// Waits until every one of `receipts` receives `tracks` tracks, video with a keyframe.
pub async fn wait_flowing(receipts: &[&Receipts], tracks: usize, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let ready = receipts.iter().all(|r| {
            r.lock()
                .values()
                .filter(|r| r.packets > 0 && (!r.video || r.keyframes > 0))
                .count()
                >= tracks
        });
        if ready {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What [`wait_flowing`] waited for in vain.
#[derive(Debug, Default, Clone, Copy)]
pub struct MissingTracks {
    /// Tracks a receiver should have and never got a packet of.
    pub absent: usize,
    /// Video tracks whose packets arrive but no keyframe did (the receiver cannot decode).
    pub without_keyframe: usize,
}

/// How far `receipts` are from `tracks` flowing tracks each.
pub fn missing_tracks(receipts: &[&Receipts], tracks: usize) -> MissingTracks {
    let mut missing = MissingTracks::default();
    for receipt in receipts {
        let receipt = receipt.lock();
        let flowing = receipt.values().filter(|r| r.packets > 0).count();
        missing.absent += tracks.saturating_sub(flowing);
        missing.without_keyframe += receipt
            .values()
            .filter(|r| r.video && r.packets > 0 && r.keyframes == 0)
            .count();
    }
    missing
}

/// Forgets the latency samples so far (a measurement window starts).
pub fn clear_latencies(receipts: &[&Receipts]) {
    for receipt in receipts {
        for received in receipt.lock().values_mut() {
            received.latencies_us.clear();
        }
    }
}

/// Every end-to-end latency sample in microseconds, sorted.
pub fn latencies(receipts: &[&Receipts]) -> Vec<u64> {
    let mut all: Vec<u64> = receipts
        .iter()
        .flat_map(|r| {
            r.lock()
                .values()
                .flat_map(|r| r.latencies_us.clone())
                .collect::<Vec<_>>()
        })
        .collect();
    all.sort_unstable();
    all
}

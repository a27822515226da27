//! Leader change: the leader is killed (its task aborted, the Lease not given up, as `kill -9`
//! leaves it) → the standby takes the Lease → the first placement by the new leader.
//!
//! `cargo bench -p operator --bench leader_change` (set `RUNS` to change the runs per profile,
//! `CONFERENCES` the conferences placed before the kill). Two profiles: the chart's defaults
//! (Lease 15 s, renew deadline 10 s, retry 2 s) and a short Lease (3 s / 2 s / 1 s). Each run
//! uses a fresh in-process fake API server and the real clock. Results go to
//! `<target dir>/bench-results/operator-leader-change.json` and stdout.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use crds::{Conference, annotations, labels};
use fakekube::FakeApi;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams, PostParams};
use operator::{Config, Operator, SystemClock};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const NS: &str = "conclave";
const CONFERENCES: &str = "conclave.dev/conferences";
const WAIT: Duration = Duration::from_secs(120);

fn main() -> Result<()> {
    if std::env::args().any(|a| a == "--list") {
        // `cargo test --benches` asks benches to list their tests.
        return Ok(());
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(bench())
}

struct Profile {
    name: &'static str,
    lease: u64,
    renew_deadline: u64,
    retry: u64,
}

const PROFILES: [Profile; 2] = [
    Profile {
        name: "chart defaults",
        lease: 15,
        renew_deadline: 10,
        retry: 2,
    },
    Profile {
        name: "short lease",
        lease: 3,
        renew_deadline: 2,
        retry: 1,
    },
];

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0 * 10.0).round() / 10.0
}

fn summary(mut samples: Vec<Duration>) -> Value {
    samples.sort();
    json!({
        "p50": ms(percentile(&samples, 0.5)),
        "min": ms(percentile(&samples, 0.0)),
        "max": ms(percentile(&samples, 1.0)),
    })
}

async fn bench() -> Result<()> {
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let conferences: usize = std::env::var("CONFERENCES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let mut results = Vec::new();
    for profile in &PROFILES {
        let (mut takeovers, mut placements) = (Vec::new(), Vec::new());
        for run in 0..runs {
            let (takeover, placement) = one_run(profile, conferences)
                .await
                .with_context(|| format!("{} run {run}", profile.name))?;
            eprintln!(
                "{}: run {run}: took over after {} ms, first placement after {} ms",
                profile.name,
                ms(takeover),
                ms(placement)
            );
            takeovers.push(takeover);
            placements.push(placement);
        }
        results.push(json!({
            "profile": profile.name,
            "lease_duration_seconds": profile.lease,
            "renew_deadline_seconds": profile.renew_deadline,
            "retry_seconds": profile.retry,
            "runs": runs,
            "kill_to_new_leader_ms": summary(takeovers),
            "kill_to_first_placement_ms": summary(placements),
        }));
    }
    let result = json!({ "conferences_placed_before_the_kill": conferences, "profiles": results });
    let text = serde_json::to_string_pretty(&result)?;
    println!("{text}");
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let dir = std::path::Path::new(&target).join("bench-results");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("operator-leader-change.json"), text)?;
    Ok(())
}

fn permanent(name: &str, meeting_id: usize) -> Result<Conference> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "conclave.dev/v1alpha1", "kind": "Conference",
        "metadata": { "name": name, "namespace": NS },
        "spec": {
            "topic": name, "owner": "ada",
            "meetingId": format!("{}", 100_000_000 + meeting_id),
            "schedule": { "permanent": true },
            "maxParticipants": 10,
        },
    }))?)
}

fn start(
    fake: &FakeApi,
    identity: &str,
    profile: &Profile,
) -> Result<(
    tokio::task::JoinHandle<operator::Result<()>>,
    tokio::sync::watch::Receiver<bool>,
    CancellationToken,
)> {
    let operator = Operator::new(
        fake.client_as(identity),
        Config {
            namespace: NS.into(),
            lease_namespace: NS.into(),
            identity: identity.into(),
            lease_duration_seconds: profile.lease,
            lease_renew_deadline_seconds: profile.renew_deadline,
            lease_retry_seconds: profile.retry,
            concurrency: 32,
            ..Config::default()
        },
        Arc::new(SystemClock),
    )?;
    let leading = operator.leadership();
    let stop = CancellationToken::new();
    Ok((tokio::spawn(operator.run(stop.clone())), leading, stop))
}

/// One leader change; answers (kill → new leader, kill → first placement by it).
async fn one_run(profile: &Profile, count: usize) -> Result<(Duration, Duration)> {
    let fake = FakeApi::start().await;
    fake.record_calls(true);
    let client = fake.client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    for i in 0..2 {
        let name = format!("sfu-{i}");
        let pod: Pod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": name,
                "labels": { labels::COMPONENT: labels::COMPONENT_SFU },
                "annotations": {
                    annotations::CAPACITY: "10000",
                    annotations::UDP_PORTS: "20000-59999",
                    annotations::ENDPOINT: "wss://{pod}.sfu.example.com",
                },
            },
            "spec": { "containers": [{ "name": "sfu", "image": "conclave" }] },
        }))?;
        pods.create(&PostParams::default(), &pod).await?;
        pods.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": { "podIP": "10.0.0.1",
                "conditions": [{ "type": "Ready", "status": "True" }] } })),
        )
        .await?;
    }
    let (a_task, mut a_leading, _a_stop) = start(&fake, "operator-a", profile)?;
    tokio::time::timeout(WAIT, a_leading.wait_for(|l| *l)).await??;
    let conference_api: Api<Conference> = Api::namespaced(client.clone(), NS);
    for i in 0..count {
        conference_api
            .create(&PostParams::default(), &permanent(&format!("c-{i:04}"), i)?)
            .await?;
    }
    fake.wait_for("every conference placed", WAIT, |f| {
        let placed = f
            .list(CONFERENCES)
            .iter()
            .filter(|c| c.pointer("/status/assignment").is_some())
            .count();
        (placed == count).then_some(())
    })
    .await;
    let (b_task, mut b_leading, b_stop) = start(&fake, "operator-b", profile)?;
    // The standby has looked at the Lease at least once.
    fake.wait_for("the standby looking at the lease", WAIT, |f| {
        f.calls()
            .iter()
            .any(|c| c.user == "operator-b" && c.path.contains("/leases/"))
            .then_some(())
    })
    .await;

    // Kill the leader (no release) and ask for a placement at once.
    a_task.abort();
    let killed = Instant::now();
    conference_api
        .create(&PostParams::default(), &permanent("after-the-kill", count)?)
        .await?;
    tokio::time::timeout(WAIT, b_leading.wait_for(|l| *l)).await??;
    let takeover = killed.elapsed();
    fake.wait_for("the first placement by the new leader", WAIT, |f| {
        f.get(CONFERENCES, NS, "after-the-kill")
            .filter(|c| c.pointer("/status/assignment").is_some())
    })
    .await;
    let placement = killed.elapsed();

    // No two conferences share ports on a pod.
    let mut ranges: Vec<(String, u64, u64)> = fake
        .list(CONFERENCES)
        .iter()
        .filter_map(|c| {
            let a = c.pointer("/status/assignment")?;
            Some((
                a["pod"].as_str()?.to_owned(),
                a["udpPorts"]["first"].as_u64()?,
                a["udpPorts"]["last"].as_u64()?,
            ))
        })
        .collect();
    ranges.sort();
    for pair in ranges.windows(2) {
        if pair[0].0 == pair[1].0 && pair[1].1 <= pair[0].2 {
            bail!("ports shared after the leader change: {pair:?}");
        }
    }
    b_stop.cancel();
    b_task.await??;
    Ok((takeover, placement))
}

//! 10,000 conferences against the fake API server: time from create to `status.assignment`,
//! reconciles per second, the operator's memory, and a failover of one SFU pod.
//!
//! `cargo bench -p operator --bench ten_thousand` (set `CONFERENCES` to change the count).
//! The fake API server runs in a child process (this binary with `--serve-fake`) so the memory
//! measured is the operator's (plus the small load generator), not the fake's object store.
//! Results go to `<target dir>/bench-results/operator-ten-thousand.json` and stdout.

use fakekube as fake_api;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use crds::{Conference, annotations, labels};
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use operator::{Config, Operator, SystemClock};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const NS: &str = "conclave";
const PODS: usize = 20;

fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

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

fn main() -> Result<()> {
    if std::env::args().any(|a| a == "--serve-fake") {
        return serve_fake();
    }
    if std::env::args().any(|a| a == "--list") {
        // `cargo test --benches` asks benches to list their tests.
        return Ok(());
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(bench())
}

fn serve_fake() -> Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let fake = fake_api::FakeApi::start().await;
            fake.record_calls(false);
            fake.set_history_limit(400_000);
            println!("{}", fake.addr);
            // Serve until the parent closes stdin.
            let _ = tokio::task::spawn_blocking(|| {
                let mut line = String::new();
                let _ = std::io::stdin().read_line(&mut line);
            })
            .await;
            Ok(())
        })
}

async fn bench() -> Result<()> {
    let count: usize = std::env::var("CONFERENCES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let mut child = Command::new(std::env::current_exe()?)
        .arg("--serve-fake")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("start the fake API server")?;
    let mut first_line = String::new();
    BufReader::new(child.stdout.take().context("child stdout")?).read_line(&mut first_line)?;
    let addr = first_line.trim().to_owned();
    let url: http::Uri = format!("http://{addr}").parse()?;
    let mut kube_config = kube::Config::new(url);
    kube_config.default_namespace = NS.into();
    kube_config.read_timeout = Some(Duration::from_secs(300));
    let client = kube::Client::try_from(kube_config)?;

    // The fleet: 20 SFU pods of 10,000 participants and 20,000 UDP ports each.
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    for i in 0..PODS {
        let name = format!("sfu-{i}");
        let pod: Pod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": name,
                "labels": { labels::COMPONENT: labels::COMPONENT_SFU },
                "annotations": {
                    annotations::CAPACITY: "10000",
                    annotations::UDP_PORTS: "20000-39999",
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

    let rss_before = rss_kib("VmRSS:");
    let operator = Operator::new(
        client.clone(),
        Config {
            namespace: NS.into(),
            leader_election: false,
            concurrency: 32,
            ..Config::default()
        },
        Arc::new(SystemClock),
    )?;
    let metrics = operator.metrics();
    let stop = CancellationToken::new();
    let running = tokio::spawn(operator.run(stop.clone()));

    // The observer: a raw watch noting when each conference first shows an assignment.
    let conferences: Api<Conference> = Api::namespaced(client.clone(), NS);
    let (seen_tx, mut seen_rx) =
        tokio::sync::mpsc::unbounded_channel::<(String, String, Instant)>();
    let watch_api = conferences.clone();
    let observer = tokio::spawn(async move {
        let mut rv = "0".to_owned();
        loop {
            let Ok(stream) = watch_api
                .watch(&WatchParams::default().timeout(290), &rv)
                .await
            else {
                continue;
            };
            let mut stream = std::pin::pin!(stream);
            while let Ok(Some(event)) = stream.try_next().await {
                match event {
                    WatchEvent::Added(c) | WatchEvent::Modified(c) => {
                        rv = c.metadata.resource_version.clone().unwrap_or(rv);
                        if let Some(a) = c.status.as_ref().and_then(|s| s.assignment.as_ref()) {
                            let name = c.metadata.name.clone().unwrap_or_default();
                            if seen_tx.send((name, a.pod.clone(), Instant::now())).is_err() {
                                return;
                            }
                        }
                    }
                    WatchEvent::Error(_) => rv = "0".into(),
                    _ => {}
                }
            }
        }
    });

    let now = chrono::Utc::now();
    let start = (now - chrono::Duration::minutes(1)).to_rfc3339();
    let begun = Instant::now();
    let created: HashMap<String, Instant> = stream::iter(0..count)
        .map(|i| {
            let conferences = conferences.clone();
            let start = start.clone();
            async move {
                let name = format!("conf-{i:05}");
                let conference: Conference = serde_json::from_value(json!({
                    "apiVersion": "conclave.dev/v1alpha1", "kind": "Conference",
                    "metadata": { "name": name, "namespace": NS },
                    "spec": {
                        "topic": format!("Meeting {i}"), "owner": "ada",
                        "meetingId": format!("{}", 100_000_000 + i),
                        "schedule": { "start": start, "duration": "1h" },
                        "maxParticipants": 10,
                    },
                }))?;
                let at = Instant::now();
                conferences
                    .create(&PostParams::default(), &conference)
                    .await?;
                anyhow::Ok((name, at))
            }
        })
        .buffer_unordered(32)
        .try_collect()
        .await?;
    let all_created = begun.elapsed();

    let mut latencies = Vec::with_capacity(count);
    let mut placed_on: HashMap<String, String> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(600);
    while placed_on.len() < count {
        let Ok(Some((name, pod, at))) =
            tokio::time::timeout_at(deadline.into(), seen_rx.recv()).await
        else {
            bail!(
                "only {} of {count} conferences placed in time",
                placed_on.len()
            );
        };
        if placed_on.contains_key(&name) {
            continue;
        }
        if let Some(created_at) = created.get(&name) {
            latencies.push(at.saturating_duration_since(*created_at));
        }
        placed_on.insert(name, pod);
    }
    let all_placed = begun.elapsed();
    let reconciles_done = metrics.reconciles.with_label_values(&["ok"]).get();
    latencies.sort();
    let rss_placed = rss_kib("VmRSS:");

    // Failover: delete the pod holding the most conferences and time until all moved.
    let mut per_pod: HashMap<&str, usize> = HashMap::new();
    for pod in placed_on.values() {
        *per_pod.entry(pod.as_str()).or_default() += 1;
    }
    let (lost_pod, on_lost) = per_pod
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(p, n)| ((*p).to_owned(), *n))
        .unwrap_or_default();
    let failover_begun = Instant::now();
    pods.delete(&lost_pod, &DeleteParams::default()).await?;
    let mut moved = 0usize;
    let mut moved_names = std::collections::HashSet::new();
    while moved < on_lost {
        let Ok(Some((name, pod, _))) =
            tokio::time::timeout_at(deadline.into(), seen_rx.recv()).await
        else {
            bail!("only {moved} of {on_lost} conferences failed over in time");
        };
        if placed_on.get(&name).is_some_and(|p| *p == lost_pod)
            && pod != lost_pod
            && moved_names.insert(name)
        {
            moved += 1;
        }
    }
    let failover = failover_begun.elapsed();
    let rss_peak = rss_kib("VmHWM:");

    stop.cancel();
    let _ = running.await;
    observer.abort();
    drop(child.stdin.take());
    let _ = child.wait();

    let reconciles_per_second = reconciles_done as f64 / all_placed.as_secs_f64();
    let result = json!({
        "conferences": count,
        "sfu_pods": PODS,
        "create_all_seconds": all_created.as_secs_f64(),
        "all_placed_seconds": all_placed.as_secs_f64(),
        "create_to_assignment_ms": {
            "p50": ms(percentile(&latencies, 0.50)),
            "p90": ms(percentile(&latencies, 0.90)),
            "p99": ms(percentile(&latencies, 0.99)),
            "max": ms(percentile(&latencies, 1.0)),
        },
        "reconciles_ok_until_all_placed": reconciles_done,
        "reconciles_per_second": (reconciles_per_second * 10.0).round() / 10.0,
        "failover": { "pod": lost_pod, "conferences": on_lost, "seconds": failover.as_secs_f64() },
        "memory_kib": {
            "rss_before_operator": rss_before,
            "rss_all_placed": rss_placed,
            "peak_rss": rss_peak,
            "operator_and_load_generator_delta": rss_placed.saturating_sub(rss_before),
        },
    });
    let text = serde_json::to_string_pretty(&result)?;
    println!("{text}");
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let dir = std::path::Path::new(&target).join("bench-results");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("operator-ten-thousand.json"), text)?;
    Ok(())
}

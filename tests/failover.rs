//! Meetings survive the cluster (see `cluster_box.rs` for the box): a killed SFU pod's meeting
//! moves with everyone in it (loadgen attendees and two Chromium pages of the portal), a rollout
//! drains a pod and its meeting moves at the handoff, a readiness probe that fails for a moment
//! moves nothing, and two operator replicas fence each other so that a stopped leader's late
//! writes cannot hand out ports twice.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster_box;

use std::collections::BTreeMap;
use std::time::Duration;

use cluster_box::*;
use serde_json::{Value, json};

/// Runs `scenario` inside a network namespace of its own, with PostgreSQL relayed into it.
fn in_a_box<F>(scenario: impl FnOnce() -> F)
where
    F: std::future::Future<Output = ()>,
{
    require_tools();
    let _relay = (std::env::var_os("CONCLAVE_NETNS").is_none()).then(PostgresRelay::start);
    if !loadgen::netns::isolate() {
        return;
    }
    // CONCLAVE_TEST_LOGS=<folder> with RUST_LOG: the attendees' own logs go to <folder>/test.log.
    if let (Some(folder), Ok(filter)) = (
        std::env::var_os("CONCLAVE_TEST_LOGS"),
        tracing_subscriber::EnvFilter::try_from_default_env(),
    ) {
        let folder = std::path::PathBuf::from(folder);
        std::fs::create_dir_all(&folder).unwrap();
        let file = std::fs::File::create(folder.join("test.log")).unwrap();
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(file))
            .init();
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(scenario());
}

/// `count` ad hoc conferences `burst-<n>` as one YAML stream.
fn burst(count: usize, max_participants: u32) -> String {
    (0..count)
        .map(|n| {
            format!(
                "apiVersion: conclave.dev/v1alpha1\nkind: Conference\nmetadata:\n  name: burst-{n}\n  namespace: {NAMESPACE}\nspec:\n  topic: Burst {n}\n  owner: admin\n  adHoc: true\n  maxParticipants: {max_participants}\n"
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

/// The Lease's holder.
fn leader(cluster: &ClusterBox) -> Option<String> {
    cluster
        .fake
        .get("coordination.k8s.io/leases", NAMESPACE, "conclave-operator")?
        .pointer("/spec/holderIdentity")?
        .as_str()
        .map(str::to_owned)
}

/// Each placed conference's (pod, first port, last port), by name.
type Placed = BTreeMap<String, (String, u64, u64)>;

/// Every placed conference's (pod, first port, last port), and what is not settled: a
/// conference whose `sfu-pod` label does not name its status's pod (between the operator's
/// writes they may differ for a moment, never once it is idle).
fn placements(cluster: &ClusterBox) -> (Placed, Vec<String>) {
    let mut placed = BTreeMap::new();
    let mut unsettled = Vec::new();
    for c in cluster.fake.list("conclave.dev/conferences") {
        let name = c["metadata"]["name"].as_str().unwrap().to_owned();
        let label = c
            .pointer("/metadata/labels/conclave.dev~1sfu-pod")
            .and_then(Value::as_str);
        let pod = c.pointer("/status/assignment/pod").and_then(Value::as_str);
        if label != pod {
            unsettled.push(format!("{name}: label {label:?}, status {pod:?}"));
        }
        let Some(assignment) = c.pointer("/status/assignment") else {
            continue;
        };
        placed.insert(
            name,
            (
                assignment["pod"].as_str().unwrap().to_owned(),
                assignment["udpPorts"]["first"].as_u64().unwrap(),
                assignment["udpPorts"]["last"].as_u64().unwrap(),
            ),
        );
    }
    (placed, unsettled)
}

/// Panics when two conferences on one node (each SFU pod here is alone on its node and uses
/// hostNetwork) share a UDP port.
fn assert_no_shared_ports(placed: &BTreeMap<String, (String, u64, u64)>) {
    let all: Vec<(&String, &(String, u64, u64))> = placed.iter().collect();
    for (i, (a, (pod_a, first_a, last_a))) in all.iter().enumerate() {
        for (b, (pod_b, first_b, last_b)) in &all[i + 1..] {
            assert!(
                pod_a != pod_b || last_a < first_b || last_b < first_a,
                "{a} and {b} share UDP ports on {pod_a}: {first_a}-{last_a} and {first_b}-{last_b}"
            );
        }
    }
}

/// `kubectl apply --server-side -f file`, as a platform team applies Conferences.
async fn apply(cluster: &ClusterBox, file: &std::path::Path) {
    cluster
        .kubectl
        .run(&[
            "apply".as_ref(),
            "--server-side".as_ref(),
            "-f".as_ref(),
            file.as_os_str(),
        ])
        .await;
}

/// Waits until `count` of the `burst-<n>` conferences have an assignment in status.
async fn all_bursts_placed(cluster: &ClusterBox, count: usize) {
    cluster
        .fake
        .wait_for(
            &format!("{count} burst conferences placed"),
            Duration::from_secs(30),
            |_| {
                let placed = placements(cluster).0;
                (placed.keys().filter(|k| k.starts_with("burst-")).count() == count).then_some(())
            },
        )
        .await;
}

#[test]
fn two_operators_fence_each_other_and_a_stopped_leader_writes_nothing_late() {
    in_a_box(|| async {
        let cluster = ClusterBox::start(Options {
            operators: 2,
            operator_env: vec![
                (
                    "CONCLAVE_OPERATOR_LEASE_DURATION_SECONDS".into(),
                    "4".into(),
                ),
                ("CONCLAVE_OPERATOR_LEASE_RETRY_SECONDS".into(), "1".into()),
                (
                    "CONCLAVE_OPERATOR_LEASE_RENEW_DEADLINE_SECONDS".into(),
                    "3".into(),
                ),
            ],
            ..Options::default()
        })
        .await;
        let first = cluster
            .fake
            .wait_for("a leader", Duration::from_secs(20), |_| leader(&cluster))
            .await;
        let stopped = cluster
            .operators
            .iter()
            .position(|o| o.name == first)
            .unwrap_or_else(|| panic!("the Lease names {first}, no replica of the box"));
        cluster.mark("a leader elected");

        // Twenty conferences at once; the leader is stopped while it places them.
        let file = cluster.dir.path().join("burst.yaml");
        std::fs::write(&file, burst(20, 10)).unwrap();
        apply(&cluster, &file).await;
        cluster
            .fake
            .wait_for("the first placement", Duration::from_secs(20), |_| {
                (!placements(&cluster).0.is_empty()).then_some(())
            })
            .await;
        cluster.operators[stopped].process.signal("STOP");
        let stopped_at = cluster.fake.calls().len();
        cluster.mark("leader stopped mid-placement");

        let second = cluster
            .fake
            .wait_for(
                "another replica to take the Lease",
                Duration::from_secs(20),
                |_| leader(&cluster).filter(|l| *l != first),
            )
            .await;
        all_bursts_placed(&cluster, 20).await;
        cluster.mark("the new leader placed the rest");

        // The old leader wakes up long after its Lease expired: it must not write.
        let resumed_at = cluster.fake.calls().len();
        cluster.operators[stopped].process.signal("CONT");
        let metrics = format!(
            "http://127.0.0.1:{}/metrics",
            cluster.operators[stopped].port
        );
        wait_until(
            "the old leader to report it follows",
            Duration::from_secs(20),
            || {
                let url = metrics.clone();
                async move {
                    let Ok(reply) = reqwest::get(&url).await else {
                        return false;
                    };
                    reply
                        .text()
                        .await
                        .is_ok_and(|t| t.lines().any(|l| l == "conclave_operator_leader 0"))
                }
            },
        )
        .await;
        // A few more placements by the new leader while the old one is awake.
        std::fs::write(&file, burst(24, 10)).unwrap();
        apply(&cluster, &file).await;
        all_bursts_placed(&cluster, 24).await;
        let late: Vec<String> = cluster.fake.calls()[stopped_at..]
            .iter()
            .enumerate()
            .filter(|(i, c)| {
                c.user == first
                    && c.path.contains("/conferences/")
                    && matches!(c.method.as_str(), "PATCH" | "PUT" | "POST" | "DELETE")
                    && (200..300).contains(&c.status)
                    && stopped_at + i >= resumed_at
            })
            .map(|(_, c)| format!("{} {}?{} -> {}", c.method, c.path, c.query, c.status))
            .collect();
        assert!(
            late.is_empty(),
            "the deposed leader wrote after it woke up: {late:#?}"
        );
        // The sfu-pod label follows the status write: wait until every conference is settled.
        let placed = cluster
            .fake
            .wait_for(
                "every label to match its status",
                Duration::from_secs(10),
                |_| {
                    let (placed, unsettled) = placements(&cluster);
                    unsettled.is_empty().then_some(placed)
                },
            )
            .await;
        assert_no_shared_ports(&placed);
        assert_eq!(leader(&cluster).as_deref(), Some(second.as_str()));
        cluster.mark("no late writes, no shared ports");

        // A conference larger than any pod: the condition, the Event and the join say so.
        std::fs::write(
            &file,
            format!(
                "apiVersion: conclave.dev/v1alpha1\nkind: Conference\nmetadata:\n  name: all-hands\n  namespace: {NAMESPACE}\nspec:\n  topic: All hands\n  owner: admin\n  meetingId: \"555000111\"\n  adHoc: true\n  maxParticipants: 900\n"
            ),
        )
        .unwrap();
        apply(&cluster, &file).await;
        let condition = cluster
            .fake
            .wait_for(
                "all-hands to be refused as too large",
                Duration::from_secs(20),
                |f| {
                    let c = f.get("conclave.dev/conferences", NAMESPACE, "all-hands")?;
                    c.pointer("/status/conditions")?
                        .as_array()?
                        .iter()
                        .find(|c| c["type"] == "Placed" && c["reason"] == "TooLarge")
                        .cloned()
                },
            )
            .await;
        assert_eq!(condition["status"], "False", "{condition}");
        cluster
            .fake
            .wait_for("a TooLarge Event", Duration::from_secs(10), |f| {
                f.list("events.k8s.io/events")
                    .iter()
                    .any(|e| e["reason"] == "TooLarge" && e["regarding"]["name"] == "all-hands")
                    .then_some(())
            })
            .await;
        let admin = cluster.admin_session().await;
        let (status, answer) = post(
            &cluster.http,
            &format!("{}/api/v1/join", cluster.base()),
            Some(&admin),
            json!({"meetingId": "555000111"}),
        )
        .await;
        assert_eq!(status, 409, "{answer}");
        assert_eq!(answer["error"]["code"], "conferenceTooLarge", "{answer}");
        cluster.finish().await;
    });
}

#[test]
fn two_portal_pages_follow_their_meeting_to_another_pod_when_its_sfu_is_killed() {
    in_a_box(|| async {
        let chromium = system_tests::portal_chromium();
        let mut cluster = ClusterBox::start(Options::default()).await;
        let admin = cluster.admin_session().await;
        let (meeting, assignment) = placed_meeting(&cluster, &admin, "Failover").await;
        let held_by = cluster.sfu_index(assignment["pod"].as_str().unwrap());
        let web = system_tests::repository().join("web");
        let artifacts = web.join("e2e/artifacts/failover");
        let _ = std::fs::remove_dir_all(&artifacts);
        std::fs::create_dir_all(&artifacts).unwrap();
        let mut script = std::process::Command::new("node")
            .arg(web.join("e2e/failover.mjs"))
            .current_dir(&web)
            .env("CONCLAVE_URL", cluster.base())
            .env("CONCLAVE_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("CONCLAVE_ARTIFACTS", &artifacts)
            .env("CHROMIUM", &chromium)
            .env("CONCLAVE_CONFERENCE_ID", meeting["id"].as_str().unwrap())
            .env(
                "CONCLAVE_MEETING_ID",
                meeting["meetingId"].as_str().unwrap(),
            )
            .env(
                "CONCLAVE_MEETING_PASSWORD",
                meeting["password"].as_str().unwrap(),
            )
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("node (Node.js) must be installed");
        let mut stdin = script.stdin.take().unwrap();
        let (said, mut hear) = tokio::sync::mpsc::unbounded_channel::<String>();
        let stdout = script.stdout.take().unwrap();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                eprintln!("failover.mjs: {line}");
                if said.send(line).is_err() {
                    break;
                }
            }
        });
        let mut expect = async |word: &str| loop {
            let line = tokio::time::timeout(Duration::from_secs(120), hear.recv())
                .await
                .unwrap_or_else(|_| panic!("failover.mjs said no {word} within 2 minutes"))
                .unwrap_or_else(|| {
                    panic!(
                        "failover.mjs ended before {word}; see {}",
                        artifacts.display()
                    )
                });
            if let Some(rest) = line.strip_prefix(&format!("{word} ")) {
                break rest.to_owned();
            }
        };
        let ready = expect("READY").await;
        assert_eq!(ready, meeting["id"].as_str().unwrap());
        cluster.mark("two Chromium pages in the meeting");
        cluster.kill_sfu(held_by).await;
        {
            use std::io::Write;
            writeln!(stdin, "KILLED").unwrap();
        }
        let back: u64 = expect("BACK").await.parse().unwrap();
        cluster.mark(&format!(
            "both pages back with media {back} ms after the kill"
        ));
        let status = tokio::task::spawn_blocking(move || script.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(
            status.success(),
            "failover.mjs failed ({status}); screenshots are in {}",
            artifacts.display()
        );
        let moved = cluster.conference(meeting["id"].as_str().unwrap());
        assert_ne!(
            moved["status"]["assignment"]["pod"], assignment["pod"],
            "the meeting stayed on the killed pod: {moved}"
        );
        cluster.finish().await;
    });
}

#[test]
fn a_killed_sfu_moves_its_meeting_with_everyone_and_a_flapping_probe_moves_nothing() {
    in_a_box(|| async {
        let mut cluster = ClusterBox::start(Options::default()).await;
        let admin = cluster.admin_session().await;
        let (meeting, assignment) = placed_meeting(&cluster, &admin, "Kill").await;
        let id = meeting["id"].as_str().unwrap().to_owned();
        let pod = assignment["pod"].as_str().unwrap().to_owned();
        let mut attendees = two_attendees(&cluster, &admin, &meeting);
        all_in(&mut attendees, &pod).await;
        cluster.mark("two attendees in the meeting");

        // The readiness probe fails for two seconds while the SFU runs: nothing moves.
        cluster.set_ready(&pod, false).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        cluster.set_ready(&pod, true).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let after_flap = cluster.conference(&id);
        assert_eq!(
            after_flap["status"]["assignment"]["pod"],
            pod.as_str(),
            "{after_flap}"
        );
        for attendee in &attendees {
            let connections = attendee.connections();
            assert_eq!(
                connections.len(),
                1,
                "a flapping probe made a client move: {connections:?}"
            );
        }
        assert!(
            !cluster
                .fake
                .list("events.k8s.io/events")
                .iter()
                .any(|e| { e["regarding"]["name"] == id.as_str() && e["reason"] == "Failover" }),
            "a flapping probe caused a failover"
        );
        cluster.mark("a flapping readiness probe moved nothing");

        // The SFU process holding the meeting is killed: everyone is back on the other pod
        // with media, without doing anything.
        let killed = std::time::Instant::now();
        cluster.kill_sfu(cluster.sfu_index(&pod)).await;
        let (new_pod, times) =
            all_back(&mut attendees, killed, &pod, Duration::from_secs(30)).await;
        cluster.mark(&format!(
            "both back on {new_pod} with media after {times:?}"
        ));
        let moved = cluster.conference(&id);
        assert_eq!(
            moved["status"]["assignment"]["pod"],
            new_pod.as_str(),
            "{moved}"
        );
        for attendee in attendees {
            attendee.stop().await.unwrap();
        }
        cluster.finish().await;
    });
}

#[test]
fn a_rollout_drains_an_sfu_pod_and_its_meeting_moves_at_the_handoff() {
    in_a_box(|| async {
        const GRACE: u64 = 14;
        const HANDOFF: u64 = 8;
        let mut cluster = ClusterBox::start(Options {
            operator_env: vec![(
                "CONCLAVE_OPERATOR_DRAIN_HANDOFF_SECONDS".into(),
                HANDOFF.to_string(),
            )],
            // What the chart derives from terminationGracePeriodSeconds.
            sfu_env: vec![("CONCLAVE_SFU_DRAIN_SECONDS".into(), (GRACE - 3).to_string())],
            ..Options::default()
        })
        .await;
        let admin = cluster.admin_session().await;
        let (meeting, assignment) = placed_meeting(&cluster, &admin, "Rollout").await;
        let id = meeting["id"].as_str().unwrap().to_owned();
        let pod = assignment["pod"].as_str().unwrap().to_owned();
        let index = cluster.sfu_index(&pod);
        let mut attendees = two_attendees(&cluster, &admin, &meeting);
        all_in(&mut attendees, &pod).await;
        cluster.mark("two attendees in the meeting");

        let terminated = std::time::Instant::now();
        cluster.terminate_sfu(index, GRACE).await;
        let readyz = format!("http://{}/readyz", cluster.sfus[index].addr());
        wait_until(
            "the draining SFU's /readyz to answer 503",
            Duration::from_secs(5),
            || {
                let url = readyz.clone();
                async move {
                    reqwest::get(&url)
                        .await
                        .is_ok_and(|r| r.status().as_u16() == 503)
                }
            },
        )
        .await;
        // A meeting made now goes to the other pod.
        let (_, other) = placed_meeting(&cluster, &admin, "After the rollout began").await;
        assert_ne!(
            other["pod"],
            pod.as_str(),
            "a draining pod took a new meeting: {other}"
        );
        // The running meeting goes on where it is until the handoff.
        // The operator hands the meeting over at deletionTimestamp - HANDOFF.
        while terminated.elapsed() < Duration::from_secs(GRACE - HANDOFF - 2) {
            for attendee in &attendees {
                let connections = attendee.connections();
                assert_eq!(
                    connections.len(),
                    1,
                    "moved before the handoff: {connections:?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        cluster.mark("the meeting went on during the grace period");
        let (new_pod, times) = all_back(
            &mut attendees,
            terminated,
            &pod,
            Duration::from_secs(GRACE + 10),
        )
        .await;
        assert!(
            times
                .iter()
                .all(|t| *t >= Duration::from_secs(GRACE - HANDOFF - 1)),
            "the meeting moved before the handoff: {times:?}"
        );
        cluster.mark(&format!(
            "both moved to {new_pod}: media back {times:?} after SIGTERM"
        ));
        let moved = cluster.conference(&id);
        let placed = moved["status"]["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "Placed"))
            .cloned()
            .unwrap_or_default();
        assert_eq!(placed["reason"], "Drained", "{moved}");
        let took = cluster
            .finish_termination(index, Duration::from_secs(GRACE + 5))
            .await;
        cluster.mark(&format!(
            "the drained SFU exited {took:?} after the meeting left"
        ));
        for attendee in attendees {
            attendee.stop().await.unwrap();
        }
        cluster.finish().await;
    });
}

//! Cluster in a box: everything a cluster runs, as real processes, around the fake Kubernetes
//! API server of the operator's tests (`fakekube`) served over HTTP through kubeconfig files.
//!
//! - the chart (`charts/conclave`, defaults plus `conferenceStore=kubernetes`) rendered by the
//!   renderer of `tests/chart.rs`: each process gets the environment its container gets there
//!   (values, downward API, Secret keys), each SFU pod the template's labels and annotations;
//!   only listen ports, folders and the API's in-cluster URL (no Service DNS here) differ;
//! - the fake API server (in this process), reached by `conclave operator`, `conclave api`
//!   (on a fresh PostgreSQL database) and `kubectl`, each with its own bearer token so their
//!   requests are told apart;
//! - two `conclave sfu` processes standing in for the StatefulSet's pods with `hostNetwork`:
//!   each in its own network namespace (a "node") joined to the test's namespace by a veth
//!   pair, with its own address, registered as a Pod and marked Ready once its `/readyz`
//!   answers (the kubelet's readiness probe);
//! - `kubectl apply --server-side -f crds/examples/`, the operator placing the examples, people
//!   joining through the API and exchanging media through the pod a conference was placed on,
//!   `kubectl get conferences` showing the CRD's printer columns from the fake's Table answer,
//!   and a failover when a node goes away.
//!
//! The whole test runs in a network namespace with only `lo` (`loadgen::netns::isolate`);
//! nothing leaves the namespaces it makes. PostgreSQL (`CONCLAVE_TEST_POSTGRES`) is outside
//! that namespace, so the outer process relays a Unix socket to it (Unix sockets live in the
//! file system, which the namespaces share).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use fakekube as fake_api;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fake_api::FakeApi;
use proto::ConferenceId;
use proto::signal::TrackSource;
use serde_json::{Value, json};

const NAMESPACE: &str = "conclave";
/// The chart's default release: objects are `conclave-<component>`.
const RELEASE: &str = "conclave";
const JOIN_SECRET: &str = "cluster-in-a-box-join-token-secret-0123456789";
const ADMIN_PASSWORD: &str = "cluster-admin-1";
/// The SFU port and UDP range of the chart's defaults (`sfu.port`, `sfu.udpPorts`).
const SFU_PORT: u16 = 7880;
const SFU_UDP_PORTS: &str = "40000-40999";
/// The bearer tokens the components identify with (their service accounts); the fake knows
/// kubectl by its User-Agent, as kubectl sends no token over plain HTTP.
const OPERATOR_USER: &str = "operator";
const API_USER: &str = "api";
const KUBECTL_USER: &str = "kubectl";

#[test]
fn a_cluster_in_a_box_places_the_examples_and_two_people_hear_each_other_through_the_placed_pod() {
    require_tools();
    // Outside the namespace: relay PostgreSQL to a Unix socket the inner run finds by our PID.
    let _relay = (std::env::var_os("CONCLAVE_NETNS").is_none()).then(PostgresRelay::start);
    if !loadgen::netns::isolate() {
        return;
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(scenario());
}

async fn scenario() {
    let started = Instant::now();
    let mark = |what: &str| {
        eprintln!(
            "cluster in a box: {what} at {:.1}s",
            started.elapsed().as_secs_f64()
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let logs = Logs::new(dir.path());
    let chart = Chart::render(dir.path());
    let fake = FakeApi::start().await;

    // The platform team's side: kubeconfigs, a database, the components.
    let kubeconfig = |user: &str| {
        let path = dir.path().join(format!("{user}.kubeconfig"));
        std::fs::write(&path, kubeconfig(fake.addr, user)).unwrap();
        path
    };
    let (operator_config, api_config, kubectl_config) = (
        kubeconfig(OPERATOR_USER),
        kubeconfig(API_USER),
        kubeconfig(KUBECTL_USER),
    );
    let database = Database::create().await;
    // The Secrets the chart's workloads read, as a platform team would have made them.
    let secret = |name: &str, key: &str| match (name.strip_prefix(&format!("{RELEASE}-")), key) {
        (Some("join-token"), _) => JOIN_SECRET.to_owned(),
        (Some("admin"), "password") => ADMIN_PASSWORD.to_owned(),
        (Some("database"), "url") => database.url.clone(),
        _ => panic!("the chart reads a Secret the test does not make: {name} {key}"),
    };

    // Two nodes, one SFU pod each (hostNetwork: the pod's IP is its node's).
    let api_port = system_tests::free_port();
    // The API's internal listener (metrics, SFU reports): the chart's Service for it is
    // `<api>-internal`; here it is a port of the test's namespace.
    let api_internal_port = system_tests::free_port();
    let sfu_template = chart.template("StatefulSet", &format!("{RELEASE}-sfu"));
    let mut sfus: Vec<Sfu> = (0..2)
        .map(|ordinal| Sfu::start(ordinal, sfu_template, secret, api_internal_port, &logs))
        .collect();
    for sfu in &sfus {
        register_pod(&fake, sfu, sfu_template).await;
    }

    let operator_port = system_tests::free_port();
    let fullname = RELEASE; // the chart's "<release>" when the release is called "conclave"
    let operator_env = container_env(
        chart.template("Deployment", &format!("{fullname}-operator")),
        &PodFacts {
            name: &format!("{fullname}-operator-0"),
            ip: "127.0.0.1",
            node: "node-0",
        },
        secret,
    );
    let _operator = Proc::spawn(
        "operator",
        &logs,
        Command::new(system_tests::conclave_bin())
            .arg("operator")
            .envs(operator_env)
            .env(
                "CONCLAVE_OPERATOR_LISTEN",
                format!("127.0.0.1:{operator_port}"),
            )
            .env("KUBECONFIG", &operator_config)
            .env_remove("HOME"),
    );
    let api_env = container_env(
        chart.template("Deployment", &format!("{fullname}-api")),
        &PodFacts {
            name: &format!("{fullname}-api-0"),
            ip: "127.0.0.1",
            node: "node-0",
        },
        secret,
    );
    let _api = Proc::spawn(
        "api",
        &logs,
        Command::new(system_tests::conclave_bin())
            .arg("api")
            .envs(api_env)
            .env("CONCLAVE_LISTEN", format!("0.0.0.0:{api_port}"))
            .env(
                "CONCLAVE_INTERNAL_LISTEN",
                format!("0.0.0.0:{api_internal_port}"),
            )
            .env("CONCLAVE_DATA_DIR", dir.path().join("api-data"))
            .env(
                "CONCLAVE_PORTAL_DIR",
                system_tests::repository().join("web/dist"),
            )
            .env("KUBECONFIG", &api_config)
            .env_remove("HOME"),
    );
    for (what, port) in [("operator", operator_port), ("API", api_port)] {
        let url = format!("http://127.0.0.1:{port}/readyz");
        wait_until(
            &format!("the {what}'s /readyz answers 200"),
            Duration::from_secs(30),
            || answers_ok(&url),
        )
        .await;
    }

    // What the Ingress reaches (the public listener) serves no metrics and no SFU reports;
    // the internal listener does.
    let status = |url: String| async move {
        reqwest::Client::new()
            .request(
                if url.ends_with("room-events") {
                    reqwest::Method::POST
                } else {
                    reqwest::Method::GET
                },
                &url,
            )
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .expect("the API answers")
            .status()
            .as_u16()
    };
    let public = format!("http://127.0.0.1:{api_port}");
    let internal = format!("http://127.0.0.1:{api_internal_port}");
    assert_eq!(status(format!("{public}/metrics")).await, 404);
    assert_eq!(
        status(format!("{public}/api/v1/internal/room-events")).await,
        404
    );
    assert_eq!(status(format!("{internal}/metrics")).await, 200);
    // Without a service token: refused, but there.
    assert_eq!(
        status(format!("{internal}/api/v1/internal/room-events")).await,
        401
    );
    mark("components ready");
    // A platform team applies the examples as GitOps would.
    let kubectl = Kubectl {
        fake: fake.clone(),
        config: kubectl_config,
        cache: dir.path().join("kubectl-cache"),
    };
    let examples = system_tests::repository().join("crds/examples");
    let applied = kubectl
        .run(&[
            "apply".as_ref(),
            "--server-side".as_ref(),
            "-f".as_ref(),
            examples.as_os_str(),
        ])
        .await;
    for name in ["lobby", "quick-huddle", "q3-planning", "team-standup"] {
        assert!(
            applied.contains(&format!(
                "conference.conclave.dev/{name} serverside-applied"
            )),
            "kubectl apply did not apply {name}:\n{applied}"
        );
    }

    // Server-side apply, validated by the server: kubectl learnt from the fake's OpenAPI v3
    // that it may leave validation to it.
    let patches: Vec<fake_api::Call> = fake
        .calls()
        .into_iter()
        .filter(|c| c.user == KUBECTL_USER && c.method == "PATCH")
        .collect();
    assert_eq!(patches.len(), 4, "{patches:#?}");
    for call in &patches {
        assert!(
            call.content_type
                .starts_with("application/apply-patch+yaml")
                && call.query.contains("fieldManager=kubectl")
                && call.query.contains("fieldValidation=Strict"),
            "not a strictly validated server-side apply: {call:?}"
        );
    }
    mark("examples applied");
    // The operator places what starts now on a ready pod, with a port range inside the pod's.
    let lobby = placed_by_name(&fake, "lobby").await;
    let huddle = placed_by_name(&fake, "quick-huddle").await;
    let pod_names: Vec<String> = sfus.iter().map(|s| s.pod.clone()).collect();
    for assignment in [&lobby, &huddle] {
        assert!(
            pod_names.iter().any(|p| assignment["pod"] == p.as_str()),
            "placed on a pod that is not an SFU pod: {assignment}"
        );
        let (first, last) = (
            assignment["udpPorts"]["first"].as_u64().unwrap(),
            assignment["udpPorts"]["last"].as_u64().unwrap(),
        );
        assert!(
            40000 <= first && first <= last && last <= 40999,
            "{assignment}"
        );
    }
    if lobby["pod"] == huddle["pod"] {
        let (a, b) = (&lobby["udpPorts"], &huddle["udpPorts"]);
        assert!(
            a["last"].as_u64() < b["first"].as_u64() || b["last"].as_u64() < a["first"].as_u64(),
            "two conferences on one pod share ports: {a} {b}"
        );
    }
    let lobby_sfu = sfus
        .iter()
        .find(|s| lobby["pod"] == s.pod.as_str())
        .unwrap();
    assert_eq!(
        lobby["endpoint"],
        format!("ws://{}:{SFU_PORT}/rtc", lobby_sfu.ip),
        "the endpoint is the chart's template filled in with the pod's IP"
    );
    // The one-off meeting is over (July 2026) and the stand-up waits for its lead time.
    for name in ["q3-planning", "team-standup"] {
        let c = fake
            .get("conclave.dev/conferences", NAMESPACE, name)
            .unwrap();
        assert!(
            c.pointer("/status/assignment").is_none(),
            "{name} is placed though it is not due: {c}"
        );
    }

    mark("examples placed");
    // Two people join the lobby through the API: its owner, `admin`, and a guest with the
    // meeting ID alone (the Conference names no password Secret).
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{api_port}");
    let (status, login) = post(
        &http,
        &format!("{base}/api/v1/auth/login"),
        None,
        json!({"login": "admin", "password": ADMIN_PASSWORD}),
    )
    .await;
    assert_eq!(status, 200, "{login}");
    let admin = login["sessionToken"].as_str().unwrap().to_owned();
    let join_lobby = |session: Option<String>| {
        let (http, url) = (http.clone(), format!("{base}/api/v1/join"));
        async move {
            let body = match session {
                Some(_) => json!({"meetingId": "100200300"}),
                None => json!({"meetingId": "100200300", "displayName": "Ada"}),
            };
            let (status, answer) = post(&http, &url, session.as_deref(), body).await;
            assert_eq!(status, 200, "join of the lobby: {answer}");
            assert_eq!(answer["conference"]["id"], "lobby", "{answer}");
            answer
        }
    };
    let mut answers = Vec::new();
    for (session, role) in [(Some(admin.clone()), "moderator"), (None, "listener")] {
        let answer = join_lobby(session).await;
        assert_eq!(answer["endpoint"], lobby["endpoint"], "{answer}");
        assert_eq!(answer["role"], role, "{answer}");
        answers.push(answer);
    }
    let sfu_addr: SocketAddr = format!("{}:{SFU_PORT}", lobby_sfu.ip).parse().unwrap();
    let lobby_id = ConferenceId("lobby".into());
    let mut clients = Vec::new();
    for answer in &answers {
        let token = answer["token"].as_str().unwrap();
        let client = loadgen::Client::join(sfu_addr, token, &lobby_id)
            .await
            .unwrap();
        assert!(client.id().is_some(), "not admitted: {:?}", client.first);
        clients.push(client);
    }
    for client in &clients {
        client
            .publish(&[TrackSource::Microphone], loadgen::MediaPlan::default())
            .await
            .unwrap();
    }
    for (client, other) in clients.iter().zip(["the guest", "the admin"]) {
        client
            .wait_received(Duration::from_secs(20), |r| {
                r.values().any(|t| !t.video && t.packets >= 50)
            })
            .await
            .unwrap_or_else(|e| panic!("{other}'s audio did not arrive: {e}"));
    }

    mark("media through the lobby");
    // The SFU pod reports both to the API, which writes them into the Conference's status.
    fake.wait_for(
        "the lobby's status to count 2 participants",
        Duration::from_secs(20),
        |f| {
            let c = f.get("conclave.dev/conferences", NAMESPACE, "lobby")?;
            (c.pointer("/status/participants")?.as_i64()? == 2).then_some(())
        },
    )
    .await;
    // The pod tried the lobby's ports when its room opened, the API wrote what it found, and
    // the operator shows it: every port usable.
    let media_ports = fake
        .wait_for(
            "the lobby's MediaPorts condition",
            Duration::from_secs(20),
            |f| {
                let c = f.get("conclave.dev/conferences", NAMESPACE, "lobby")?;
                c.pointer("/status/conditions")?
                    .as_array()?
                    .iter()
                    .find(|c| c["type"] == "MediaPorts")
                    .cloned()
            },
        )
        .await;
    assert_eq!(
        (&media_ports["status"], &media_ports["reason"]),
        (&json!("True"), &json!("PortsUsable")),
        "{media_ports}"
    );

    // kubectl shows the printer columns, as the API server renders them.
    let table = kubectl.run(&["get".as_ref(), "conferences".as_ref()]).await;
    let rows = parse_columns(&table);
    assert_eq!(
        rows[0],
        [
            "NAME",
            "TOPIC",
            "MEETING ID",
            "PHASE",
            "START",
            "SFU POD",
            "PARTICIPANTS",
            "AGE"
        ],
        "{table}"
    );
    let row = |name: &str| {
        rows.iter()
            .find(|r| r[0] == name)
            .unwrap_or_else(|| panic!("no row for {name}:\n{table}"))
            .clone()
    };
    let lobby_row = row("lobby");
    assert_eq!(
        lobby_row[1..7],
        [
            "The lobby",
            "100200300",
            "Active",
            "", // a permanent room has no occurrence to start
            lobby_sfu.pod.as_str(),
            "2"
        ],
        "{table}"
    );
    assert!(
        lobby_row[7].ends_with('s') || lobby_row[7].ends_with('m'),
        "{table}"
    );
    let standup = row("team-standup");
    assert_eq!(standup[3], "Scheduled", "{table}");
    assert_eq!(standup[5], "", "not placed: {table}");
    let huddle_row = row("quick-huddle");
    assert_eq!(huddle_row[5], huddle["pod"].as_str().unwrap(), "{table}");
    let huddle_start = fake
        .get("conclave.dev/conferences", NAMESPACE, "quick-huddle")
        .unwrap()
        .pointer("/status/currentOccurrence/start")
        .cloned()
        .unwrap();
    assert_eq!(huddle_row[3], "Ready", "{table}");
    assert_eq!(huddle_row[4], huddle_start.as_str().unwrap(), "{table}");
    let q3 = row("q3-planning");
    assert_eq!(
        q3[1..6],
        ["Q3 planning", "482913570", "Ended", "", ""],
        "{table}"
    );
    assert!(
        huddle_row[2].len() == 9 && huddle_row[2].bytes().all(|b| b.is_ascii_digit()),
        "the operator gives the ad hoc meeting a meeting ID: {table}"
    );

    mark("kubectl get conferences");
    // A meeting made in the portal becomes a Conference and a password Secret; the operator
    // places it, and a guest gets in with its meeting ID and the password the Secret holds.
    // The request's ID (as an ingress controller sets it) reaches the operator's Events.
    let reply = http
        .post(format!("{base}/api/v1/conferences/adhoc"))
        .bearer_auth(&admin)
        .header("x-request-id", "portal-meeting-1")
        .json(&json!({"topic": "Portal meeting"}))
        .send()
        .await
        .unwrap();
    let status = reply.status().as_u16();
    let meeting: Value = reply.json().await.unwrap_or_default();
    assert_eq!(status, 201, "{meeting}");
    let id = meeting["id"].as_str().unwrap().to_owned();
    let secret = fake
        .get("secrets", NAMESPACE, &format!("{id}-password"))
        .unwrap_or_else(|| panic!("the API wrote no password Secret for {id}"));
    let password = secret["data"]["password"].as_str().map(|p| {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD.decode(p).unwrap();
        String::from_utf8(bytes).unwrap()
    });
    let password = password.unwrap_or_else(|| panic!("no password in the Secret: {secret}"));
    assert_eq!(password, meeting["password"].as_str().unwrap());
    let resource = fake
        .get("conclave.dev/conferences", NAMESPACE, &id)
        .unwrap();
    assert_eq!(
        resource["spec"]["passwordSecretRef"]["name"],
        format!("{id}-password"),
        "{resource}"
    );
    let portal = placed_by_name(&fake, &id).await;
    assert_eq!(
        resource["metadata"]["annotations"]["conclave.dev/request-id"], "portal-meeting-1",
        "{resource}"
    );
    let placed_event = fake
        .wait_for(
            "a Placed Event about the portal meeting",
            Duration::from_secs(10),
            |f| {
                f.list("events.k8s.io/events")
                    .into_iter()
                    .find(|e| e["reason"] == "Placed" && e["regarding"]["name"] == id.as_str())
            },
        )
        .await;
    assert!(
        placed_event["note"]
            .as_str()
            .is_some_and(|n| n.ends_with("(API request portal-meeting-1)")),
        "{placed_event}"
    );
    let portal_sfu = sfus
        .iter()
        .find(|s| portal["pod"] == s.pod.as_str())
        .unwrap();
    let guest_join = |password: String| {
        let (http, url, meeting_id) = (
            http.clone(),
            format!("{base}/api/v1/join"),
            meeting["meetingId"].clone(),
        );
        async move {
            post(
                &http,
                &url,
                None,
                json!({"meetingId": meeting_id, "password": password, "displayName": "Guest"}),
            )
            .await
        }
    };
    let (status, refused) = guest_join(format!("{password}x")).await;
    assert_eq!(status, 403, "a wrong password lets a guest in: {refused}");
    let (status, guest) = guest_join(password).await;
    assert_eq!(status, 200, "the guest's join: {guest}");
    assert_eq!(guest["endpoint"], portal["endpoint"], "{guest}");
    assert_eq!(guest["role"], "listener", "{guest}");
    let (status, owner) = post(
        &http,
        &format!("{base}/api/v1/join"),
        Some(&admin),
        json!({"meetingId": meeting["meetingId"]}),
    )
    .await;
    assert_eq!(status, 200, "the owner's join: {owner}");
    let portal_addr: SocketAddr = format!("{}:{SFU_PORT}", portal_sfu.ip).parse().unwrap();
    let portal_id = ConferenceId(id.clone());
    let mut people = Vec::new();
    for answer in [&guest, &owner] {
        let token = answer["token"].as_str().unwrap();
        let client = loadgen::Client::join(portal_addr, token, &portal_id)
            .await
            .unwrap();
        assert!(client.id().is_some(), "not admitted: {:?}", client.first);
        client
            .publish(
                &[TrackSource::Microphone, TrackSource::Camera],
                // Periodic keyframes: what is tested here is the path through the cluster,
                // not keyframe requests (the SFU's own tests cover those).
                loadgen::MediaPlan {
                    keyframe_every: Some(Duration::from_secs(1)),
                    ..loadgen::MediaPlan::default()
                },
            )
            .await
            .unwrap();
        people.push(client);
    }
    for (client, other) in people.iter().zip(["the owner", "the guest"]) {
        client
            .wait_received(Duration::from_secs(20), |r| {
                r.values().any(|t| !t.video && t.packets >= 50)
                    && r.values()
                        .any(|t| t.video && t.keyframes >= 1 && t.packets >= 50)
            })
            .await
            .unwrap_or_else(|e| panic!("{other}'s audio and video did not arrive: {e}"));
    }

    mark("a guest with a password, media both ways");
    for client in people {
        client.leave().await;
    }

    // The lobby's node fails: its SFU dies and its pod is deleted. The operator moves the
    // lobby to the other pod, and people who join again are sent there and hear each other.
    for client in clients {
        client.vanish().await;
    }
    let dead = sfus
        .iter()
        .position(|s| lobby["pod"] == s.pod.as_str())
        .unwrap();
    let dead_pod = sfus[dead].pod.clone();
    sfus[dead].stop();
    let alive = &sfus[1 - dead];
    let reply = http
        .delete(format!(
            "http://{}/api/v1/namespaces/{NAMESPACE}/pods/{dead_pod}",
            fake.addr
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(
        reply.status().as_u16(),
        200,
        "{}",
        reply.text().await.unwrap()
    );
    let moved = fake
        .wait_for(
            "the lobby to move off the failed pod",
            Duration::from_secs(30),
            |f| {
                let c = f.get("conclave.dev/conferences", NAMESPACE, "lobby")?;
                let assignment = c.pointer("/status/assignment")?;
                (assignment["pod"] == alive.pod.as_str()).then(|| c.clone())
            },
        )
        .await;
    assert_eq!(
        moved["status"]["assignment"]["endpoint"],
        format!("ws://{}:{SFU_PORT}/rtc", alive.ip),
        "{moved}"
    );
    let placed_condition = moved["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Placed"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(placed_condition["status"], "True", "{moved}");
    assert_eq!(placed_condition["reason"], "Failover", "{moved}");
    fake.wait_for(
        "a Failover Event about the lobby",
        Duration::from_secs(10),
        |f| {
            f.list("events.k8s.io/events")
                .iter()
                .any(|e| e["reason"] == "Failover" && e["regarding"]["name"] == "lobby")
                .then_some(())
        },
    )
    .await;
    let alive_addr: SocketAddr = format!("{}:{SFU_PORT}", alive.ip).parse().unwrap();
    let mut rejoined = Vec::new();
    for session in [Some(admin.clone()), None] {
        let answer = join_lobby(session).await;
        assert_eq!(
            answer["endpoint"], moved["status"]["assignment"]["endpoint"],
            "{answer}"
        );
        let token = answer["token"].as_str().unwrap();
        let client = loadgen::Client::join(alive_addr, token, &lobby_id)
            .await
            .unwrap();
        assert!(client.id().is_some(), "not admitted: {:?}", client.first);
        client
            .publish(&[TrackSource::Microphone], loadgen::MediaPlan::default())
            .await
            .unwrap();
        rejoined.push(client);
    }
    for (client, other) in rejoined.iter().zip(["the guest", "the admin"]) {
        client
            .wait_received(Duration::from_secs(20), |r| {
                r.values().any(|t| !t.video && t.packets >= 50)
            })
            .await
            .unwrap_or_else(|e| panic!("after the failover, {other}'s audio did not arrive: {e}"));
    }
    let table = kubectl
        .run(&["get".as_ref(), "conference".as_ref(), "lobby".as_ref()])
        .await;
    let rows = parse_columns(&table);
    assert_eq!(
        rows[1][5], alive.pod,
        "the SFU POD column follows the move: {table}"
    );
    mark("failover");

    // What the real binaries asked for is what the chart's Roles grant (the files the chart
    // tests compare the Roles with).
    for (user, file) in [
        (OPERATOR_USER, "operator/tests/rbac-observed.json"),
        (API_USER, "api/tests/rbac-observed.json"),
    ] {
        let granted = committed_requests(file);
        let asked: BTreeSet<String> = fake_api::rbac::observed(&fake, user)
            .iter()
            .map(|r| serde_json::to_string(r).unwrap())
            .collect();
        assert!(
            asked.len() >= 3,
            "the {user}'s requests were not told apart: {asked:?}"
        );
        let beyond: Vec<&String> = asked.difference(&granted).collect();
        assert!(
            beyond.is_empty(),
            "the {user} made requests {file} does not list (so the chart does not grant them): {beyond:?}"
        );
    }

    for client in rejoined {
        client.leave().await;
    }
    database.drop_now().await;
    eprintln!(
        "cluster in a box: done in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    logs.passed();
}

/// The assignment of the conference `name` once the operator has placed it (phase Ready).
async fn placed_by_name(fake: &FakeApi, name: &str) -> Value {
    fake.wait_for(
        &format!("{name} to be placed"),
        Duration::from_secs(30),
        |f| {
            let c = f.get("conclave.dev/conferences", NAMESPACE, name)?;
            (c.pointer("/status/phase")? == "Ready").then_some(())?;
            c.pointer("/status/assignment").cloned()
        },
    )
    .await
}

/// `POST url` with a JSON body, as `session` when given: the status and the JSON answer.
async fn post(
    http: &reqwest::Client,
    url: &str,
    session: Option<&str>,
    body: Value,
) -> (u16, Value) {
    let mut request = http.post(url).json(&body);
    if let Some(session) = session {
        request = request.bearer_auth(session);
    }
    let reply = request.send().await.unwrap();
    let status = reply.status().as_u16();
    (status, reply.json().await.unwrap_or_default())
}

/// The requests a committed `rbac-observed.json` lists, each as compact JSON.
fn committed_requests(file: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(system_tests::repository().join(file)).unwrap();
    let document: Value = serde_json::from_str(&text).unwrap();
    document["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            // Keys in the order `rbac::Request` serializes them (serde_json sorts them).
            json!({
                "group": r["group"], "resource": r["resource"],
                "subresource": r["subresource"], "verb": r["verb"],
            })
            .to_string()
        })
        .collect()
}

/// kubectl's column output, each cell cut at the offsets of the header's labels (labels are
/// separated by two or more spaces; an empty cell is an empty string).
fn parse_columns(text: &str) -> Vec<Vec<String>> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header = lines.next().unwrap_or_default();
    let mut starts = vec![0];
    let bytes = header.as_bytes();
    for i in 2..bytes.len() {
        if bytes[i] != b' ' && bytes[i - 1] == b' ' && bytes[i - 2] == b' ' {
            starts.push(i);
        }
    }
    std::iter::once(header)
        .chain(lines)
        .map(|line| {
            starts
                .iter()
                .enumerate()
                .map(|(n, &from)| {
                    let to = starts
                        .get(n + 1)
                        .copied()
                        .unwrap_or(line.len())
                        .min(line.len());
                    line.get(from.min(to)..to).unwrap_or("").trim().to_owned()
                })
                .collect()
        })
        .collect()
}

fn kubeconfig(server: SocketAddr, user: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: box
  cluster:
    server: http://{server}
users:
- name: {user}
  user:
    token: {user}
contexts:
- name: box
  context:
    cluster: box
    user: {user}
    namespace: {NAMESPACE}
current-context: box
"
    )
}

struct Kubectl {
    fake: FakeApi,
    config: PathBuf,
    cache: PathBuf,
}

impl Kubectl {
    /// Runs kubectl against the fake (off this thread, which serves the fake); its standard
    /// output, or a panic with what it said and what it asked.
    async fn run(&self, args: &[&std::ffi::OsStr]) -> String {
        let mut command = Command::new("kubectl");
        command
            .arg("--kubeconfig")
            .arg(&self.config)
            .arg("--cache-dir")
            .arg(&self.cache)
            .args(args);
        let output = tokio::task::spawn_blocking(move || command.output())
            .await
            .unwrap()
            .expect("kubectl runs");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if !output.status.success() {
            let calls: Vec<String> = self
                .fake
                .calls()
                .into_iter()
                .filter(|c| c.user == KUBECTL_USER)
                .map(|c| format!("{} {}?{} -> {}", c.method, c.path, c.query, c.status))
                .collect();
            panic!(
                "kubectl {args:?} failed: {}\n{stdout}\nits requests:\n{}",
                String::from_utf8_lossy(&output.stderr),
                calls.join("\n")
            );
        }
        stdout
    }
}

/// Fails with the command that installs what is missing.
fn require_tools() {
    for (tool, install) in [
        ("kubectl", "apt-get install -y kubernetes-client"),
        ("ip", "apt-get install -y iproute2"),
        ("unshare", "apt-get install -y util-linux"),
        ("nsenter", "apt-get install -y util-linux"),
    ] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(found, "{tool} is missing; install it with `{install}`");
    }
}

/// Whether `GET url` answers 2xx within 2 s.
async fn answers_ok(url: &str) -> bool {
    reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

/// Waits until `check` holds, re-checking every 50 ms; panics after `within`.
async fn wait_until<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Where the processes' output goes; printed when the test fails.
struct Logs {
    dir: PathBuf,
    names: std::sync::Mutex<Vec<String>>,
    passed: std::sync::atomic::AtomicBool,
}

impl Logs {
    fn new(dir: &Path) -> Logs {
        Logs {
            dir: dir.to_path_buf(),
            names: Default::default(),
            passed: Default::default(),
        }
    }

    fn file(&self, name: &str) -> std::fs::File {
        self.names.lock().unwrap().push(name.to_owned());
        std::fs::File::create(self.dir.join(format!("{name}.log"))).unwrap()
    }

    fn passed(&self) {
        self.passed
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Drop for Logs {
    fn drop(&mut self) {
        if self.passed.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        for name in self.names.lock().unwrap().iter() {
            let text =
                std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            eprintln!("----- {name} (last {} lines) -----", tail.len());
            for line in tail {
                eprintln!("{line}");
            }
        }
    }
}

/// A child process, killed when dropped.
struct Proc {
    child: Child,
}

impl Proc {
    fn spawn(name: &str, logs: &Logs, command: &mut Command) -> Proc {
        let out = logs.file(name);
        let err = out.try_clone().unwrap();
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("{name} does not start: {e}"));
        Proc { child }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a command to completion; panics with its output when it fails.
fn run(program: &str, args: &[&str]) {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} does not run: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// An SFU pod of the chart's StatefulSet (`hostNetwork`), alone on its "node": a network
/// namespace whose address is 10.89.<ordinal>.2, joined to the test's namespace (10.89.<ordinal>.1)
/// by a veth pair. A shell holds the namespace until its network is set up, then becomes
/// `conclave sfu` with the environment the chart gives the container.
struct Sfu {
    pod: String,
    ip: String,
    holder: Child,
}

impl Sfu {
    fn start(
        ordinal: u8,
        template: &Value,
        secret: impl Fn(&str, &str) -> String,
        api_port: u16,
        logs: &Logs,
    ) -> Sfu {
        let pod = format!("{RELEASE}-sfu-{ordinal}");
        let (ip, gateway) = (format!("10.89.{ordinal}.2"), format!("10.89.{ordinal}.1"));
        let log = logs.file(&pod);
        let env = container_env(
            template,
            &PodFacts {
                name: &pod,
                ip: &ip,
                // As register_pod schedules it.
                node: &format!("node-{ordinal}"),
            },
            secret,
        );
        let listen = env.iter().find(|(k, _)| k == "CONCLAVE_SFU_LISTEN");
        assert_eq!(
            listen.map(|(_, v)| v.as_str()),
            Some(format!("0.0.0.0:{SFU_PORT}").as_str()),
            "the test expects the chart's default SFU port"
        );
        // `unshare -n` execs the shell in the new namespace; "up" tells that it is in there.
        let mut holder = Command::new("unshare")
            .args([
                "-n",
                "sh",
                "-c",
                "echo up; read go; ip link set lo up && exec \"$0\" \"$@\" 1>&2",
            ])
            .arg(system_tests::conclave_bin())
            .arg("sfu")
            .envs(env)
            // No Service or cluster DNS here: the API's address as seen from the node.
            .env(
                "CONCLAVE_SFU_API_URL",
                format!("http://{gateway}:{api_port}"),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("unshare starts");
        let mut up = String::new();
        BufReader::new(holder.stdout.as_mut().unwrap())
            .read_line(&mut up)
            .unwrap();
        assert_eq!(up.trim(), "up", "the node's namespace did not come up");
        let pid = holder.id().to_string();
        let host_end = format!("node{ordinal}");
        run(
            "ip",
            &[
                "link", "add", &host_end, "type", "veth", "peer", "name", "eth0", "netns", &pid,
            ],
        );
        run(
            "ip",
            &["addr", "add", &format!("{gateway}/24"), "dev", &host_end],
        );
        run("ip", &["link", "set", &host_end, "up"]);
        let inside = |args: &[&str]| {
            let mut all = vec!["-t", pid.as_str(), "-n", "ip"];
            all.extend_from_slice(args);
            run("nsenter", &all);
        };
        inside(&["addr", "add", &format!("{ip}/24"), "dev", "eth0"]);
        inside(&["link", "set", "eth0", "up"]);
        inside(&["route", "add", "default", "via", &gateway]);
        // The SFU's output goes on to its log after the exec.
        let mut go = holder.stdin.take().unwrap();
        writeln!(go, "go").unwrap();
        Sfu { pod, ip, holder }
    }
}

impl Sfu {
    /// Kills the SFU, as when its node goes away.
    fn stop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

impl Drop for Sfu {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Registers the pod as the StatefulSet controller and the kubelet would: the chart's labels
/// and annotations first, then (once `/readyz` answers, the readiness probe) a Running status
/// with its IP and `Ready=True`.
async fn register_pod(fake: &FakeApi, sfu: &Sfu, template: &Value) {
    let http = reqwest::Client::new();
    let base = format!("http://{}/api/v1/namespaces/{NAMESPACE}/pods", fake.addr);
    let mut labels = template["metadata"]["labels"].clone();
    labels["statefulset.kubernetes.io/pod-name"] = json!(sfu.pod);
    let annotations = template["metadata"]["annotations"].clone();
    assert_eq!(
        annotations["conclave.dev/udp-ports"], SFU_UDP_PORTS,
        "the test expects the chart's default UDP range"
    );
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": sfu.pod,
            "labels": labels,
            "annotations": annotations,
        },
        "spec": {
            "hostNetwork": true,
            "nodeName": format!("node-{}", sfu.pod.rsplit('-').next().unwrap()),
            "containers": [{"name": "sfu", "image": "conclave:0.1.0", "args": ["sfu"]}],
        },
    });
    let reply = http.post(&base).json(&pod).send().await.unwrap();
    assert_eq!(
        reply.status().as_u16(),
        201,
        "{}",
        reply.text().await.unwrap()
    );
    let readyz = format!("http://{}:{SFU_PORT}/readyz", sfu.ip);
    wait_until(
        &format!("{}'s /readyz answers 200", sfu.pod),
        Duration::from_secs(30),
        || answers_ok(&readyz),
    )
    .await;
    let status = json!({"status": {
        "phase": "Running",
        "hostIP": sfu.ip,
        "podIP": sfu.ip,
        "podIPs": [{"ip": sfu.ip}],
        "conditions": [
            {"type": "PodScheduled", "status": "True"},
            {"type": "Initialized", "status": "True"},
            {"type": "ContainersReady", "status": "True"},
            {"type": "Ready", "status": "True"},
        ],
    }});
    let reply = http
        .patch(format!("{base}/{}/status", sfu.pod))
        .header("content-type", "application/merge-patch+json")
        .body(status.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(
        reply.status().as_u16(),
        200,
        "{}",
        reply.text().await.unwrap()
    );
}

/// The chart rendered with its defaults and `conferenceStore=kubernetes`, by the renderer of
/// `tests/chart.rs` (Go's text/template with sprig, as Helm renders): the processes get the
/// environment and the pods the labels and annotations the chart gives them.
struct Chart {
    objects: Vec<Value>,
}

const GO_PACKAGES: &str = "apt-get install -y golang-go golang-github-masterminds-sprig-dev \
     golang-gopkg-yaml.v3-dev golang-github-xeipuuv-gojsonschema-dev";

impl Chart {
    fn render(dir: &Path) -> Chart {
        let repository = system_tests::repository();
        let bin = dir.join("render");
        let cache = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| dir.to_path_buf())
            .join("go-build-cache");
        let built = Command::new("go")
            .args(["build", "-o"])
            .arg(&bin)
            .arg(".")
            .current_dir(repository.join("tests/chart/render"))
            .env("GO111MODULE", "off")
            .env("GOPATH", "/usr/share/gocode")
            .env("GOCACHE", cache)
            .output()
            .unwrap_or_else(|e| panic!("go does not run ({e}); install it with `{GO_PACKAGES}`"));
        assert!(
            built.status.success(),
            "building the chart renderer failed (install the Go libraries: `{GO_PACKAGES}`):\n{}",
            String::from_utf8_lossy(&built.stderr)
        );
        let rendered = Command::new(&bin)
            .args(["--name", RELEASE, "--namespace", NAMESPACE])
            .args(["--set", "conferenceStore=kubernetes"])
            .arg(repository.join("charts/conclave"))
            .output()
            .unwrap();
        assert!(
            rendered.status.success(),
            "the chart does not render: {}",
            String::from_utf8_lossy(&rendered.stderr)
        );
        let text = String::from_utf8(rendered.stdout).unwrap();
        let objects = serde_yaml::Deserializer::from_str(&text)
            .filter_map(|doc| {
                let value: Value = serde::Deserialize::deserialize(doc).ok()?;
                value.is_object().then_some(value)
            })
            .collect();
        Chart { objects }
    }

    /// The pod template of the workload `kind`/`name`.
    fn template(&self, kind: &str, name: &str) -> &Value {
        self.objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .map(|o| &o["spec"]["template"])
            .unwrap_or_else(|| panic!("the chart renders no {kind} {name}"))
    }
}

/// What the downward API and Secrets give a container.
struct PodFacts<'a> {
    name: &'a str,
    ip: &'a str,
    /// `spec.nodeName`.
    node: &'a str,
}

/// The environment of the template's first container as the kubelet sets it: values (with
/// `$(VAR)` of earlier variables expanded), the downward API, and Secret keys from `secret`.
fn container_env(
    template: &Value,
    pod: &PodFacts,
    secret: impl Fn(&str, &str) -> String,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = Vec::new();
    let entries = template["spec"]["containers"][0]["env"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for entry in entries {
        let name = entry["name"].as_str().unwrap().to_owned();
        let value = if let Some(value) = entry["value"].as_str() {
            let mut value = value.to_owned();
            for (earlier, its) in &env {
                value = value.replace(&format!("$({earlier})"), its);
            }
            value
        } else if let Some(field) = entry.pointer("/valueFrom/fieldRef/fieldPath") {
            match field.as_str().unwrap() {
                "metadata.name" => pod.name.to_owned(),
                "metadata.namespace" => NAMESPACE.to_owned(),
                "status.podIP" | "status.hostIP" => pod.ip.to_owned(),
                "spec.nodeName" => pod.node.to_owned(),
                other => panic!("the chart uses a downward API field the test lacks: {other}"),
            }
        } else if let Some(reference) = entry.pointer("/valueFrom/secretKeyRef") {
            secret(
                reference["name"].as_str().unwrap(),
                reference["key"].as_str().unwrap(),
            )
        } else {
            panic!("an environment variable the test cannot set: {entry}");
        };
        env.push((name, value));
    }
    env
}

/// The admin URL of the PostgreSQL server the tests create databases on.
fn postgres_admin_url() -> reqwest::Url {
    let url = std::env::var("CONCLAVE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    reqwest::Url::parse(&url).unwrap_or_else(|e| panic!("CONCLAVE_TEST_POSTGRES={url}: {e}"))
}

/// The folder of the relay's socket: named after the outer process, the inner run's parent.
fn relay_dir(outer_pid: u32) -> PathBuf {
    std::env::temp_dir().join(format!("conclave-cluster-pg-{outer_pid}"))
}

/// `url` pointed at the relay's socket folder (libpq's and sqlx's `host=/folder`).
fn through_relay(url: &reqwest::Url, database: &str) -> String {
    let dir = relay_dir(std::os::unix::process::parent_id());
    let user = url.username();
    let port = url.port().unwrap_or(5432);
    format!(
        "postgres://{user}@localhost:{port}/{database}?host={}",
        dir.display()
    )
}

/// A fresh PostgreSQL database, reached through the relay's Unix socket, dropped at the end.
struct Database {
    url: String,
    admin: String,
    name: String,
}

impl Database {
    async fn create() -> Database {
        use sqlx::Connection;
        let admin_url = postgres_admin_url();
        let admin = through_relay(&admin_url, admin_url.path().trim_start_matches('/'));
        // The prefix scripts/test.sh sweeps at its start.
        let name = format!("conclave_t_cluster_{}", std::process::id());
        let mut connection = sqlx::PgConnection::connect(&admin).await.unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is required and is not reachable at {admin_url} (through {admin}): {e}; \
                 scripts/test.sh starts it (pg_ctlcluster 15 main start)"
            )
        });
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut connection)
        .await
        .unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut connection)
            .await
            .unwrap();
        Database {
            url: through_relay(&admin_url, &name),
            admin,
            name,
        }
    }

    async fn drop_now(self) {
        use sqlx::Connection;
        if let Ok(mut connection) = sqlx::PgConnection::connect(&self.admin).await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            )))
            .execute(&mut connection)
            .await;
        }
    }
}

/// Relays connections on a Unix socket (`.s.PGSQL.<port>` in [`relay_dir`]) to the PostgreSQL
/// server of `CONCLAVE_TEST_POSTGRES`, for the run inside the network namespace. Threads of
/// the outer process; the folder goes when the relay is dropped.
struct PostgresRelay {
    dir: PathBuf,
}

impl PostgresRelay {
    fn start() -> PostgresRelay {
        let url = postgres_admin_url();
        let host = url.host_str().unwrap_or("127.0.0.1").to_owned();
        let port = url.port().unwrap_or(5432);
        let dir = relay_dir(std::process::id());
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let listener =
            std::os::unix::net::UnixListener::bind(dir.join(format!(".s.PGSQL.{port}"))).unwrap();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = std::net::TcpStream::connect((host.as_str(), port)) else {
                    continue;
                };
                let (mut client_read, mut server_write) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (mut server_read, mut client_write) = (server, client);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut client_read, &mut server_write);
                    let _ = server_write.shutdown(std::net::Shutdown::Write);
                });
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut server_read, &mut client_write);
                    let _ = client_write.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        PostgresRelay { dir }
    }
}

impl Drop for PostgresRelay {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

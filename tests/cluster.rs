//! Cluster in a box (see `cluster_box.rs`): `kubectl apply --server-side -f crds/examples/`,
//! the operator placing the examples, people joining through the API and exchanging media
//! through the pod a conference was placed on, `kubectl get conferences` showing the CRD's
//! printer columns from the fake's Table answer, and a failover when a node goes away.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster_box;

use std::collections::BTreeSet;
use std::time::Duration;

use cluster_box::*;
use fakekube as fake_api;
use proto::ConferenceId;
use proto::signal::TrackSource;
use serde_json::{Value, json};

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
    let mut cluster = ClusterBox::start(Options::default()).await;
    let (fake, sfus, api_port, api_internal_port) = (
        &cluster.fake,
        &cluster.sfus,
        cluster.api_port,
        cluster.api_internal_port,
    );
    let mark = |what: &str| cluster.mark(what);
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
    let kubectl = &cluster.kubectl;
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
    let lobby = placed_by_name(fake, "lobby").await;
    let huddle = placed_by_name(fake, "quick-huddle").await;
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
        // Signaling goes through the API's public address, relayed to the placed pod.
        assert_eq!(
            answer["endpoint"],
            format!(
                "ws://127.0.0.1:{api_port}/rtc/{}",
                lobby["pod"].as_str().unwrap()
            ),
            "{answer}"
        );
        assert_eq!(answer["pod"], lobby["pod"], "{answer}");
        assert_eq!(answer["role"], role, "{answer}");
        answers.push(answer);
    }
    let lobby_id = ConferenceId("lobby".into());
    let mut clients = Vec::new();
    for answer in &answers {
        let token = answer["token"].as_str().unwrap();
        let client =
            loadgen::Client::join_url(answer["endpoint"].as_str().unwrap(), token, &lobby_id)
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
    let portal = placed_by_name(fake, &id).await;
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
    assert!(
        sfus.iter().any(|s| portal["pod"] == s.pod.as_str()),
        "placed on a pod that is not an SFU pod: {portal}"
    );
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
    assert_eq!(
        guest["endpoint"],
        format!(
            "ws://127.0.0.1:{api_port}/rtc/{}",
            portal["pod"].as_str().unwrap()
        ),
        "{guest}"
    );
    assert_eq!(guest["role"], "listener", "{guest}");
    let (status, owner) = post(
        &http,
        &format!("{base}/api/v1/join"),
        Some(&admin),
        json!({"meetingId": meeting["meetingId"]}),
    )
    .await;
    assert_eq!(status, 200, "the owner's join: {owner}");
    let portal_id = ConferenceId(id.clone());
    let mut people = Vec::new();
    for answer in [&guest, &owner] {
        let token = answer["token"].as_str().unwrap();
        let client =
            loadgen::Client::join_url(answer["endpoint"].as_str().unwrap(), token, &portal_id)
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
    cluster.sfus[dead].stop();
    // Deleted with grace 0, as after its node is gone (`kubectl delete --force`): a graceful
    // delete would make it a draining pod whose conferences stay until the handoff.
    cluster.delete_pod_now(&dead_pod).await;
    let (fake, kubectl) = (&cluster.fake, &cluster.kubectl);
    let alive = &cluster.sfus[1 - dead];
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
    let mut rejoined = Vec::new();
    for session in [Some(admin.clone()), None] {
        let answer = join_lobby(session).await;
        assert_eq!(
            answer["endpoint"],
            format!("ws://127.0.0.1:{api_port}/rtc/{}", alive.pod),
            "{answer}"
        );
        let token = answer["token"].as_str().unwrap();
        let client =
            loadgen::Client::join_url(answer["endpoint"].as_str().unwrap(), token, &lobby_id)
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
    cluster.mark("failover");

    // What the real binaries asked for is what the chart's Roles grant (the files the chart
    // tests compare the Roles with).
    for (user, file) in [
        (OPERATOR_USER, "operator/tests/rbac-observed.json"),
        (API_USER, "api/tests/rbac-observed.json"),
    ] {
        let granted = committed_requests(file);
        let asked: BTreeSet<String> = fake_api::rbac::observed(fake, user)
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
    cluster.mark("failover and RBAC");
    cluster.finish().await;
}

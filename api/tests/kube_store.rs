//! The Kubernetes conference store against the operator's in-process fake API server: what the
//! API schedules becomes Conference resources with a password Secret, the operator's status
//! becomes the runtime, and conferences applied with kubectl show up in their owner's list.

#![allow(clippy::unwrap_used)]

use fakekube as fake_api;
mod support;

use api::conference::{Conference, Definition, Kind, Runtime};
use api::store::ConferenceStore;
use api::store_kube::{KubeConferenceStore, annotations, password_secret_name};
use chrono::{DateTime, Duration, Utc};
use fake_api::FakeApi;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use placement::{Phase, PortRange};
use proto::{AccountId, ConferenceId, Media, MeetingId};
use serde_json::json;
use support::{Backend, TestApp};

const CONFERENCES: &str = "conclave.dev/conferences";

struct Cluster {
    fake: FakeApi,
    store: KubeConferenceStore,
    app: TestApp,
    ada: AccountId,
}

/// The API's calls carry this identity, as its ServiceAccount's token would.
const API_USER: &str = "api";

async fn cluster(fake: FakeApi) -> Cluster {
    let app = TestApp::new(Backend::Sqlite).await;
    let (ada, _) = app.user("ada", "moderator").await;
    let store = KubeConferenceStore::new(fake.client_as(API_USER), "default", app.state.db.clone());
    Cluster {
        fake,
        store,
        app,
        ada: AccountId(ada),
    }
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

fn weekly(owner: &AccountId, meeting_id: &str) -> Conference {
    let start = at("2026-12-07T09:00:00Z");
    Conference {
        id: ConferenceId(uuid::Uuid::new_v4().to_string()),
        owner: owner.clone(),
        definition: Definition {
            topic: "Weekly planning".into(),
            kind: Kind::Scheduled,
            start: Some(start),
            end: Some(start + Duration::minutes(45)),
            time_zone: chrono_tz::Europe::Berlin,
            recurrence: Some("FREQ=WEEKLY;BYDAY=MO".into()),
            max_participants: Some(20),
            allow_join_without_owner: false,
            media: Media::AudioVideo,
            recording_allowed: false,
            meeting_id: MeetingId(meeting_id.into()),
            password: "424242".into(),
            invitees: vec!["bob@example.org".into()],
        },
        sequence: 0,
        runtime: Runtime {
            phase: Phase::Scheduled,
            occurrence: None,
            started_early: None,
            ended: None,
            participants: 0,
            placed: None,
            not_placed: None,
        },
        created_at: at("2026-06-01T08:00:00Z"),
        updated_at: at("2026-06-01T08:00:00Z"),
    }
}

#[tokio::test]
async fn a_scheduled_conference_becomes_a_resource_with_a_password_secret() {
    a_scheduled_conference_becomes_a_resource_with_a_password_secret_on(FakeApi::start().await)
        .await;
}

async fn a_scheduled_conference_becomes_a_resource_with_a_password_secret_on(fake: FakeApi) {
    let cluster = cluster(fake).await;
    let conference = weekly(&cluster.ada, "123456789");
    cluster.store.insert(&conference).await.unwrap();

    let object = cluster
        .fake
        .get(CONFERENCES, "default", conference.id.as_str())
        .unwrap();
    assert_eq!(object["metadata"]["labels"]["conclave.dev/owner"], "ada");
    assert_eq!(object["spec"]["owner"], "ada");
    assert_eq!(object["spec"]["topic"], "Weekly planning");
    assert_eq!(object["spec"]["meetingId"], "123456789");
    assert_eq!(
        object["metadata"]["labels"]["conclave.dev/meeting-id"],
        "123456789"
    );
    assert_eq!(
        object["spec"]["schedule"]["recurrence"],
        "FREQ=WEEKLY;BYDAY=MO"
    );
    assert_eq!(object["spec"]["schedule"]["timeZone"], "Europe/Berlin");
    assert_eq!(object["spec"]["maxParticipants"], 20);
    assert_eq!(object["spec"]["allowJoinWithoutOwner"], false);
    assert_eq!(object["spec"]["recording"]["allowed"], false);
    assert_eq!(
        object["metadata"]["annotations"][annotations::SEQUENCE],
        "0"
    );
    assert_eq!(
        object["metadata"]["annotations"][annotations::INVITEES],
        r#"["bob@example.org"]"#
    );
    assert!(!object.to_string().contains("424242"), "{object}");

    let secret_name = password_secret_name(&conference.id);
    assert_eq!(object["spec"]["passwordSecretRef"]["name"], secret_name);
    let secret = cluster
        .fake
        .get("secrets", "default", &secret_name)
        .unwrap();
    assert_eq!(secret["data"]["password"], "NDI0MjQy"); // base64 of 424242
    assert_eq!(
        secret["metadata"]["ownerReferences"][0]["name"],
        conference.id.as_str()
    );
    assert_eq!(
        secret["metadata"]["ownerReferences"][0]["kind"],
        "Conference"
    );

    let back = cluster.store.get(&conference.id).await.unwrap().unwrap();
    assert_eq!(back, conference);
    let found = cluster
        .store
        .find_by_meeting_id(&MeetingId("123456789".into()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, conference.id);
    assert!(
        cluster
            .store
            .find_by_meeting_id(&MeetingId("999999999".into()))
            .await
            .unwrap()
            .is_none()
    );
    let listed = cluster.store.list(Some(&cluster.ada)).await.unwrap();
    assert_eq!(listed, vec![conference.clone()]);
    assert_eq!(cluster.store.list(None).await.unwrap().len(), 1);
    let (bob, _) = cluster.app.user("bob", "moderator").await;
    assert!(
        cluster
            .store
            .list(Some(&AccountId(bob)))
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_meeting_id_in_use_is_a_conflict() {
    a_meeting_id_in_use_is_a_conflict_on(FakeApi::start().await).await;
}

async fn a_meeting_id_in_use_is_a_conflict_on(fake: FakeApi) {
    let cluster = cluster(fake).await;
    cluster
        .store
        .insert(&weekly(&cluster.ada, "555555555"))
        .await
        .unwrap();
    let err = cluster
        .store
        .insert(&weekly(&cluster.ada, "555555555"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            api::Error::Conflict {
                code: "meetingIdTaken",
                ..
            }
        ),
        "{err:?}"
    );

    let mut other = weekly(&cluster.ada, "666666666");
    cluster.store.insert(&other).await.unwrap();
    other.definition.meeting_id = MeetingId("555555555".into());
    let err = cluster.store.update_definition(&other).await.unwrap_err();
    assert!(
        matches!(
            err,
            api::Error::Conflict {
                code: "meetingIdTaken",
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_edit_replaces_the_spec_and_bumps_the_sequence() {
    an_edit_replaces_the_spec_and_bumps_the_sequence_on(FakeApi::start().await).await;
}

async fn an_edit_replaces_the_spec_and_bumps_the_sequence_on(fake: FakeApi) {
    let cluster = cluster(fake).await;
    let mut conference = weekly(&cluster.ada, "123123123");
    cluster.store.insert(&conference).await.unwrap();

    conference.definition.topic = "Retrospective".into();
    conference.definition.recurrence = None;
    conference.definition.password = "777777".into();
    conference.definition.invitees = vec![];
    conference.sequence = 1;
    conference.updated_at = at("2026-06-02T08:00:00Z");
    cluster.store.update_definition(&conference).await.unwrap();

    let object = cluster
        .fake
        .get(CONFERENCES, "default", conference.id.as_str())
        .unwrap();
    assert_eq!(
        object["metadata"]["annotations"][annotations::SEQUENCE],
        "1"
    );
    assert_eq!(object["spec"]["topic"], "Retrospective");
    assert!(object["spec"]["schedule"].get("recurrence").is_none());
    assert_eq!(
        cluster.store.get(&conference.id).await.unwrap().unwrap(),
        conference
    );

    let mut gone = weekly(&cluster.ada, "");
    gone.sequence = 1;
    let err = cluster.store.update_definition(&gone).await.unwrap_err();
    assert!(matches!(err, api::Error::NotFound(_)), "{err:?}");
}

#[tokio::test]
async fn the_operators_status_is_the_runtime() {
    the_operators_status_is_the_runtime_on(FakeApi::start().await).await;
}

async fn the_operators_status_is_the_runtime_on(fake: FakeApi) {
    let cluster = cluster(fake).await;
    let conference = weekly(&cluster.ada, "321321321");
    cluster.store.insert(&conference).await.unwrap();

    // What the operator applies once the lead time has come.
    let api: Api<crds::Conference> = Api::namespaced(cluster.fake.client(), "default");
    let status = json!({
        "apiVersion": "conclave.dev/v1alpha1",
        "kind": "Conference",
        "status": {
            "phase": "Ready",
            "currentOccurrence": { "start": "2026-12-07T09:00:00Z", "end": "2026-12-07T09:45:00Z" },
            "assignment": {
                "pod": "sfu-1",
                "endpoint": "wss://sfu-1.example.org",
                "udpPorts": { "first": 40100, "last": 40139 },
                "reserved": 20
            }
        }
    });
    api.patch_status(
        conference.id.as_str(),
        &PatchParams::apply("conclave-operator").force(),
        &Patch::Apply(&status),
    )
    .await
    .unwrap();

    // What the conference service reports itself.
    cluster
        .store
        .set_started_early(&conference.id, at("2026-12-07T09:00:00Z"))
        .await
        .unwrap();
    cluster
        .store
        .set_participants(&conference.id, 3)
        .await
        .unwrap();

    let runtime = cluster
        .store
        .get(&conference.id)
        .await
        .unwrap()
        .unwrap()
        .runtime;
    assert_eq!(runtime.phase, Phase::Ready);
    assert_eq!(
        runtime.occurrence.map(|o| (o.start, o.end)),
        Some((at("2026-12-07T09:00:00Z"), at("2026-12-07T09:45:00Z")))
    );
    let placed = runtime.placed.unwrap();
    assert_eq!(placed.pod, "sfu-1");
    assert_eq!(placed.endpoint, "wss://sfu-1.example.org");
    assert_eq!(
        placed.udp_ports,
        PortRange {
            first: 40100,
            last: 40139
        }
    );
    assert_eq!(runtime.participants, 3);
    assert_eq!(runtime.started_early, Some(at("2026-12-07T09:00:00Z")));

    let object = cluster
        .fake
        .get(CONFERENCES, "default", conference.id.as_str())
        .unwrap();
    assert_eq!(object["status"]["participants"], 3);
    assert_eq!(object["status"]["startedEarly"], "2026-12-07T09:00:00Z");
    assert_eq!(object["status"]["assignment"]["pod"], "sfu-1");

    // The SFU pod's finding about the ports goes into status for the operator's condition,
    // beside the operator's fields.
    cluster
        .store
        .set_media_ports(
            &conference.id,
            &api::store::MediaPorts {
                pod: "sfu-1".into(),
                udp_ports: PortRange {
                    first: 40100,
                    last: 40139,
                },
                unusable: vec![40101, 40102],
                checked_at: at("2026-12-07T09:01:00Z"),
            },
        )
        .await
        .unwrap();
    let object = cluster
        .fake
        .get(CONFERENCES, "default", conference.id.as_str())
        .unwrap();
    assert_eq!(
        object["status"]["mediaPorts"],
        json!({
            "pod": "sfu-1",
            "udpPorts": { "first": 40100, "last": 40139 },
            "unusable": [40101, 40102],
            "checkedAt": "2026-12-07T09:01:00Z",
        })
    );
    assert_eq!(object["status"]["assignment"]["pod"], "sfu-1");

    // The operator decides placement; the API's lifecycle writes change nothing.
    assert!(cluster.store.placed_by_operator());
    cluster
        .store
        .set_lifecycle(&conference.id, Phase::Ended, None, None)
        .await
        .unwrap();
    assert_eq!(
        cluster
            .store
            .get(&conference.id)
            .await
            .unwrap()
            .unwrap()
            .runtime
            .phase,
        Phase::Ready
    );
}

#[tokio::test]
async fn a_conference_applied_with_kubectl_appears_in_its_owners_list() {
    a_conference_applied_with_kubectl_appears_in_its_owners_list_on(FakeApi::start().await).await;
}

async fn a_conference_applied_with_kubectl_appears_in_its_owners_list_on(fake: FakeApi) {
    let cluster = cluster(fake).await;
    let api: Api<crds::Conference> = Api::namespaced(cluster.fake.client(), "default");
    let applied: crds::Conference = serde_json::from_value(json!({
        "apiVersion": "conclave.dev/v1alpha1",
        "kind": "Conference",
        "metadata": { "name": "team-standup" },
        "spec": {
            "topic": "Team stand-up",
            "owner": "ada",
            "meetingId": "246813579",
            "schedule": {
                "start": "2026-12-07T08:30:00Z",
                "duration": "15m",
                "timeZone": "Europe/Berlin",
                "recurrence": "FREQ=DAILY"
            }
        }
    }))
    .unwrap();
    api.create(&PostParams::default(), &applied).await.unwrap();
    // The operator labels it with its owner and its meeting ID.
    let label = json!({
        "apiVersion": "conclave.dev/v1alpha1",
        "kind": "Conference",
        "metadata": { "name": "team-standup", "labels": {
            "conclave.dev/owner": "ada", "conclave.dev/meeting-id": "246813579" } }
    });
    api.patch(
        "team-standup",
        &PatchParams::apply("conclave-operator").force(),
        &Patch::Apply(&label),
    )
    .await
    .unwrap();

    let listed = cluster.store.list(Some(&cluster.ada)).await.unwrap();
    assert_eq!(listed.len(), 1);
    let standup = &listed[0];
    // Found by its meeting ID through the operator's label.
    let found = cluster
        .store
        .find_by_meeting_id(&MeetingId("246813579".into()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id.as_str(), "team-standup");
    assert_eq!(standup.id, ConferenceId("team-standup".into()));
    assert_eq!(standup.owner, cluster.ada);
    assert_eq!(standup.definition.topic, "Team stand-up");
    assert_eq!(standup.definition.kind, Kind::Scheduled);
    assert_eq!(standup.definition.start, Some(at("2026-12-07T08:30:00Z")));
    assert_eq!(standup.definition.end, Some(at("2026-12-07T08:45:00Z")));
    assert_eq!(standup.definition.recurrence.as_deref(), Some("FREQ=DAILY"));
    assert_eq!(standup.definition.max_participants, Some(100));
    assert_eq!(standup.definition.password, "");
    assert_eq!(standup.sequence, 0);

    // An owner no account has: listed for administrators only, under a placeholder owner.
    // An edit in the API keeps what only the resource has (recording, dial-in).
    let patch = json!({ "spec": { "recording": { "allowed": true } } });
    api.patch(
        "team-standup",
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .unwrap();
    let mut edited = standup.clone();
    edited.definition.topic = "Daily stand-up".into();
    edited.sequence = 1;
    cluster.store.update_definition(&edited).await.unwrap();
    let object = cluster
        .fake
        .get(CONFERENCES, "default", "team-standup")
        .unwrap();
    assert_eq!(object["spec"]["topic"], "Daily stand-up");
    assert_eq!(object["spec"]["recording"]["allowed"], true);
    assert_eq!(object["metadata"]["labels"]["conclave.dev/owner"], "ada");

    let mut stranger = applied.clone();
    stranger.metadata.name = Some("strangers".into());
    stranger.spec.owner = "nobody".into();
    stranger.spec.meeting_id = None;
    api.create(&PostParams::default(), &stranger).await.unwrap();
    let all = cluster.store.list(None).await.unwrap();
    assert_eq!(all.len(), 2);
    let strangers = all.iter().find(|c| c.id.as_str() == "strangers").unwrap();
    assert_eq!(strangers.owner, api::store_kube::unknown_owner("nobody"));
    assert_eq!(strangers.definition.meeting_id.as_str(), "");

    // A password Secret that is missing fails closed: no guest can know the password.
    let mut locked = applied.clone();
    locked.metadata.name = Some("locked".into());
    locked.spec.meeting_id = Some("864209753".into());
    locked.spec.password_secret_ref = Some(crds::SecretKeyRef {
        name: "not-there".into(),
        key: None,
    });
    api.create(&PostParams::default(), &locked).await.unwrap();
    let locked = cluster
        .store
        .get(&ConferenceId("locked".into()))
        .await
        .unwrap()
        .unwrap();
    assert!(locked.definition.password.len() > 20);
}

/// What a join's lookup costs: the requests a known meeting ID made, without users and bodies.
fn lookup_requests(fake: &FakeApi, since: usize) -> Vec<(String, String)> {
    fake.calls()[since..]
        .iter()
        .filter(|call| call.user == API_USER)
        .map(|call| {
            // Names differ between the two lookups; the kind of request is what must not.
            let kind = call
                .path
                .split('/')
                .rev()
                .nth(1)
                .unwrap_or_default()
                .to_owned();
            (
                format!("{} {kind}", call.method),
                call.query.contains("labelSelector").to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn an_unknown_meeting_id_costs_what_a_known_one_costs_and_lists_nothing_unfiltered() {
    let fake = FakeApi::start().await;
    let cluster = cluster(fake).await;
    let mut conference = weekly(&cluster.ada, "135792468");
    cluster.store.insert(&conference).await.unwrap();
    let before = cluster.fake.calls().len();
    let known = cluster
        .store
        .find_by_meeting_id(&MeetingId("135792468".into()))
        .await
        .unwrap();
    assert!(known.is_some());
    let known_requests = lookup_requests(&cluster.fake, before);
    let before = cluster.fake.calls().len();
    let unknown = cluster
        .store
        .find_by_meeting_id(&MeetingId("975318642".into()))
        .await
        .unwrap();
    assert!(unknown.is_none());
    let unknown_requests = lookup_requests(&cluster.fake, before);
    assert_eq!(known_requests, unknown_requests);
    // Every LIST of conferences is narrowed by the meeting-ID label.
    let lists: Vec<_> = cluster
        .fake
        .calls()
        .into_iter()
        .filter(|c| c.method == "GET" && c.path.ends_with("/conferences"))
        .collect();
    assert!(!lists.is_empty());
    assert!(
        lists.iter().all(|c| c.query.contains("labelSelector")),
        "{:?}",
        lists.iter().map(|c| &c.query).collect::<Vec<_>>()
    );
    // A new meeting ID moves the label along: the conference is found by it at once.
    conference.definition.meeting_id = MeetingId("864213579".into());
    conference.sequence = 1;
    cluster.store.update_definition(&conference).await.unwrap();
    let moved = cluster
        .store
        .find_by_meeting_id(&MeetingId("864213579".into()))
        .await
        .unwrap();
    assert_eq!(moved.map(|c| c.id), Some(conference.id.clone()));
    assert!(
        cluster
            .store
            .find_by_meeting_id(&MeetingId("135792468".into()))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn delete_removes_the_conference_and_its_secret() {
    delete_removes_the_conference_and_its_secret_on(FakeApi::start().await).await;
}

async fn delete_removes_the_conference_and_its_secret_on(fake: FakeApi) {
    let cluster = cluster(fake).await;
    let conference = weekly(&cluster.ada, "135791357");
    cluster.store.insert(&conference).await.unwrap();
    assert!(cluster.store.delete(&conference.id).await.unwrap());
    assert!(
        cluster
            .fake
            .get(CONFERENCES, "default", conference.id.as_str())
            .is_none()
    );
    assert!(
        cluster
            .fake
            .get("secrets", "default", &password_secret_name(&conference.id))
            .is_none()
    );
    assert!(cluster.store.get(&conference.id).await.unwrap().is_none());
    assert!(!cluster.store.delete(&conference.id).await.unwrap());
    // Writes to a conference that is gone change nothing and do not fail.
    cluster
        .store
        .set_participants(&conference.id, 1)
        .await
        .unwrap();
}

#[tokio::test]
async fn in_a_cluster_the_api_schedules_resources_and_joins_where_the_operator_placed_them() {
    in_a_cluster_the_api_schedules_resources_and_joins_where_the_operator_placed_them_on(
        FakeApi::start().await,
    )
    .await;
}

async fn in_a_cluster_the_api_schedules_resources_and_joins_where_the_operator_placed_them_on(
    fake: FakeApi,
) {
    let app = TestApp::in_cluster(fake.client_as(API_USER)).await;
    let (_, ada) = app.user("ada", "moderator").await;
    let c = app.schedule(&ada, 60, 30, json!({})).await;
    let id = c["id"].as_str().unwrap().to_owned();
    let object = fake.get(CONFERENCES, "default", &id).unwrap();
    assert_eq!(object["spec"]["owner"], "ada");
    assert_eq!(object["spec"]["meetingId"], c["meetingId"]);

    // Applied with kubectl and labelled by the operator: in ada's list too.
    let api: Api<crds::Conference> = Api::namespaced(fake.client(), "default");
    let applied: crds::Conference = serde_json::from_value(json!({
        "apiVersion": "conclave.dev/v1alpha1",
        "kind": "Conference",
        "metadata": { "name": "gitops-review", "labels": { "conclave.dev/owner": "ada" } },
        "spec": { "topic": "GitOps review", "owner": "ada", "schedule": { "permanent": true } }
    }))
    .unwrap();
    api.create(&PostParams::default(), &applied).await.unwrap();
    let listed = app
        .get("/api/v1/conferences", &ada)
        .await
        .expect(axum::http::StatusCode::OK);
    let topics: Vec<&str> = listed.body["conferences"]
        .as_array()
        .or(listed.body.as_array())
        .unwrap()
        .iter()
        .filter_map(|c| c["topic"].as_str())
        .collect();
    assert!(topics.contains(&"GitOps review"), "{topics:?}");
    assert!(topics.contains(&"Planning"), "{topics:?}");

    // The owner starts it early; until the operator has placed it, joins are asked to retry.
    let join = json!({"meetingId": c["meetingId"]});
    let early = app.post("/api/v1/join", Some(&ada), join.clone()).await;
    assert_eq!(early.status, axum::http::StatusCode::CONFLICT);
    assert_eq!(early.code(), "notPlacedYet");
    assert_eq!(early.body["error"]["retryAfter"], 2);
    assert_eq!(early.headers["retry-after"], "2");
    let object = fake.get(CONFERENCES, "default", &id).unwrap();
    assert!(object["status"]["startedEarly"].is_string(), "{object}");
    // The API's lifecycle pass leaves placement to the operator.
    app.tick().await;
    assert!(fake.get(CONFERENCES, "default", &id).unwrap()["status"]["assignment"].is_null());

    let status = json!({
        "apiVersion": "conclave.dev/v1alpha1",
        "kind": "Conference",
        "status": {
            "phase": "Ready",
            "assignment": {
                "pod": "sfu-1",
                "endpoint": "wss://sfu-1.example.org",
                "udpPorts": { "first": 40100, "last": 40139 },
                "reserved": 20
            }
        }
    });
    api.patch_status(
        &id,
        &PatchParams::apply("conclave-operator").force(),
        &Patch::Apply(&status),
    )
    .await
    .unwrap();
    let joined = app
        .post("/api/v1/join", Some(&ada), join)
        .await
        .expect(axum::http::StatusCode::OK);
    assert_eq!(joined.body["endpoint"], "wss://sfu-1.example.org");
    let claims = app
        .state
        .tokens
        .verify_join(
            joined.body["token"].as_str().unwrap(),
            app.now().timestamp(),
        )
        .unwrap();
    let ports = claims.room.udp_ports.unwrap();
    assert_eq!((ports.first, ports.last), (40100, 40139));

    // Deleting through the API removes the resource.
    app.delete(&format!("/api/v1/conferences/{id}"), &ada)
        .await
        .expect(axum::http::StatusCode::NO_CONTENT);
    assert!(fake.get(CONFERENCES, "default", &id).is_none());
}

#[tokio::test]
async fn a_guest_joins_a_conference_without_a_password_secret_by_its_meeting_id_alone() {
    let fake = FakeApi::start().await;
    let app = TestApp::in_cluster(fake.client_as(API_USER)).await;
    let api: Api<crds::Conference> = Api::namespaced(fake.client(), "default");
    let placed = json!({
        "apiVersion": "conclave.dev/v1alpha1",
        "kind": "Conference",
        "status": {
            "phase": "Ready",
            "assignment": {
                "pod": "sfu-0",
                "endpoint": "wss://sfu-0.example.org/rtc",
                "udpPorts": { "first": 40000, "last": 40099 },
                "reserved": 50
            }
        }
    });
    for (name, meeting_id, secret) in [
        ("lobby", "100200300", None),
        ("locked", "864209753", Some("not-there")),
    ] {
        let mut spec = json!({
            "topic": "A room", "owner": "admin", "meetingId": meeting_id,
            "schedule": { "permanent": true }
        });
        if let Some(secret) = secret {
            spec["passwordSecretRef"] = json!({ "name": secret });
        }
        let applied: crds::Conference = serde_json::from_value(json!({
            "apiVersion": "conclave.dev/v1alpha1",
            "kind": "Conference",
            // As the operator labels it.
            "metadata": { "name": name, "labels": { "conclave.dev/meeting-id": meeting_id } },
            "spec": spec,
        }))
        .unwrap();
        api.create(&PostParams::default(), &applied).await.unwrap();
        api.patch_status(
            name,
            &PatchParams::apply("conclave-operator").force(),
            &Patch::Apply(&placed),
        )
        .await
        .unwrap();
    }
    let guest = |meeting_id: &str| json!({"meetingId": meeting_id, "displayName": "Guest"});
    let joined = app
        .post("/api/v1/join", None, guest("100200300"))
        .await
        .expect(axum::http::StatusCode::OK);
    assert_eq!(joined.body["endpoint"], "wss://sfu-0.example.org/rtc");
    assert_eq!(joined.body["role"], "listener");
    // A password Secret that is missing still fails closed.
    let refused = app.post("/api/v1/join", None, guest("864209753")).await;
    assert_eq!(refused.status, axum::http::StatusCode::FORBIDDEN);
}

/// The operator's placement of a conference on `pod`: the pod label and the status assignment.
async fn place_on(api: &Api<crds::Conference>, name: &str, pod: &str) {
    let labels = json!({
        "apiVersion": "conclave.dev/v1alpha1",
        "kind": "Conference",
        "metadata": { "name": name, "labels": { "conclave.dev/sfu-pod": pod } },
    });
    api.patch(
        name,
        &PatchParams::apply("conclave-operator").force(),
        &Patch::Apply(&labels),
    )
    .await
    .unwrap();
    let status = json!({
        "apiVersion": "conclave.dev/v1alpha1",
        "kind": "Conference",
        "status": {
            "phase": "Active",
            "assignment": {
                "pod": pod,
                "endpoint": format!("wss://{pod}.example.org/rtc"),
                "udpPorts": { "first": 40000, "last": 40099 },
                "reserved": 50
            }
        }
    });
    api.patch_status(
        name,
        &PatchParams::apply("conclave-operator").force(),
        &Patch::Apply(&status),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn tokens_name_the_pod_and_a_client_that_lost_it_is_answered_when_the_meeting_moved() {
    tokens_name_the_pod_and_a_client_that_lost_it_is_answered_when_the_meeting_moved_on(
        FakeApi::start().await,
    )
    .await;
}

async fn tokens_name_the_pod_and_a_client_that_lost_it_is_answered_when_the_meeting_moved_on(
    fake: FakeApi,
) {
    const WAIT_SECONDS: u32 = 3;
    let app = TestApp::in_cluster_with(fake.client_as(API_USER), |config| {
        config.join_move_wait_seconds = WAIT_SECONDS;
    })
    .await;
    let api: Api<crds::Conference> = Api::namespaced(fake.client(), "default");
    let room: crds::Conference = serde_json::from_value(json!({
        "apiVersion": "conclave.dev/v1alpha1",
        "kind": "Conference",
        "metadata": { "name": "standup", "labels": { "conclave.dev/meeting-id": "100200300" } },
        "spec": { "topic": "Stand-up", "owner": "admin", "meetingId": "100200300",
                  "schedule": { "permanent": true } },
    }))
    .unwrap();
    api.create(&PostParams::default(), &room).await.unwrap();
    place_on(&api, "standup", "sfu-1").await;
    let join = |lost: Option<&str>| {
        let mut body = json!({"meetingId": "100200300", "displayName": "Gus"});
        if let Some(lost) = lost {
            body["lostPod"] = json!(lost);
        }
        app.post("/api/v1/join", None, body)
    };

    let joined = join(None).await.expect(axum::http::StatusCode::OK);
    assert_eq!(joined.body["pod"], "sfu-1");
    assert_eq!(joined.body["endpoint"], "wss://sfu-1.example.org/rtc");
    let claims = app
        .state
        .tokens
        .verify_join(
            joined.body["token"].as_str().unwrap(),
            app.now().timestamp(),
        )
        .unwrap();
    assert_eq!(claims.pod.as_deref(), Some("sfu-1"));

    // Each SFU pod asks what it holds, with its own service token.
    let app = &app;
    let held = |pod: &str| {
        let token = app.service_token_of(&format!("sfu:{pod}"));
        async move {
            app.get("/api/v1/internal/placements", &token)
                .await
                .expect(axum::http::StatusCode::OK)
                .body
        }
    };
    let sfu1 = held("sfu-1").await;
    assert_eq!(sfu1["pod"], "sfu-1");
    assert_eq!(sfu1["conferences"], json!(["standup"]));
    assert_eq!(sfu1["holdsEverything"], false);
    assert_eq!(held("sfu-2").await["conferences"], json!([]));
    let not_a_pod = app
        .get(
            "/api/v1/internal/placements",
            &app.service_token_of("operator"),
        )
        .await;
    assert_eq!(not_a_pod.status, axum::http::StatusCode::FORBIDDEN);

    // The client lost sfu-1; its join waits until the operator has moved the meeting.
    let mover = async {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while app.state.relocations.waiting() == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the join never waited"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        place_on(&api, "standup", "sfu-2").await;
    };
    let (moved, ()) = tokio::join!(join(Some("sfu-1")), mover);
    let moved = moved.expect(axum::http::StatusCode::OK);
    assert_eq!(moved.body["pod"], "sfu-2");
    assert_eq!(moved.body["endpoint"], "wss://sfu-2.example.org/rtc");
    assert_eq!(held("sfu-1").await["conferences"], json!([]));
    assert_eq!(held("sfu-2").await["conferences"], json!(["standup"]));

    // A pod the meeting is no longer on is answered at once.
    let started = std::time::Instant::now();
    let at_once = join(Some("sfu-1")).await.expect(axum::http::StatusCode::OK);
    assert_eq!(at_once.body["pod"], "sfu-2");
    assert!(started.elapsed() < std::time::Duration::from_secs(u64::from(WAIT_SECONDS)));

    // Nothing moves (the client's own network failed): after the bound, what is current.
    let started = std::time::Instant::now();
    let current = join(Some("sfu-2")).await.expect(axum::http::StatusCode::OK);
    assert_eq!(current.body["pod"], "sfu-2");
    assert!(started.elapsed() >= std::time::Duration::from_secs(u64::from(WAIT_SECONDS)));
}

/// Every request the Kubernetes store made over the tests above, as RBAC sees it, is what
/// `api/tests/rbac-observed.json` lists; the chart's API Role is checked against that file
/// (`tests/chart.rs`). `CONCLAVE_UPDATE_RBAC=1` rewrites it.
#[tokio::test]
async fn the_kubernetes_stores_api_requests_are_the_committed_rbac_list() {
    let mut requests = std::collections::BTreeSet::new();
    let fake = FakeApi::start().await;
    a_scheduled_conference_becomes_a_resource_with_a_password_secret_on(fake.clone()).await;
    requests.extend(fake_api::rbac::observed(&fake, API_USER));
    let fake = FakeApi::start().await;
    a_meeting_id_in_use_is_a_conflict_on(fake.clone()).await;
    requests.extend(fake_api::rbac::observed(&fake, API_USER));
    let fake = FakeApi::start().await;
    an_edit_replaces_the_spec_and_bumps_the_sequence_on(fake.clone()).await;
    requests.extend(fake_api::rbac::observed(&fake, API_USER));
    let fake = FakeApi::start().await;
    the_operators_status_is_the_runtime_on(fake.clone()).await;
    requests.extend(fake_api::rbac::observed(&fake, API_USER));
    let fake = FakeApi::start().await;
    a_conference_applied_with_kubectl_appears_in_its_owners_list_on(fake.clone()).await;
    requests.extend(fake_api::rbac::observed(&fake, API_USER));
    let fake = FakeApi::start().await;
    delete_removes_the_conference_and_its_secret_on(fake.clone()).await;
    requests.extend(fake_api::rbac::observed(&fake, API_USER));
    let fake = FakeApi::start().await;
    in_a_cluster_the_api_schedules_resources_and_joins_where_the_operator_placed_them_on(
        fake.clone(),
    )
    .await;
    requests.extend(fake_api::rbac::observed(&fake, API_USER));
    let fake = FakeApi::start().await;
    tokens_name_the_pod_and_a_client_that_lost_it_is_answered_when_the_meeting_moved_on(
        fake.clone(),
    )
    .await;
    requests.extend(fake_api::rbac::observed(&fake, API_USER));
    fake_api::rbac::check_committed(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rbac-observed.json"),
        "api",
        "api/tests/kube_store.rs",
        &requests,
    );
}

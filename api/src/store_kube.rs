//! The Kubernetes backend of [`ConferenceStore`]: every conference is a `Conference` resource
//! (`conclave.dev/v1alpha1`) in one namespace, so what people schedule in the portal and what
//! platform teams apply with kubectl are the same objects, and the operator places both.
//!
//! The mapping (also in `docs/api.md`, "In a cluster"):
//! - `metadata.name` is the conference ID (a UUID, a valid DNS label).
//! - `spec.owner` is the owner's **login name**, the account name the CRD documents, and the
//!   `conclave.dev/owner` label carries the same value (the operator keeps it in line with
//!   `spec.owner`, so conferences applied with kubectl get it too). Reading maps the login back
//!   to the account ID; an owner no account has becomes `login:<name>`, which only
//!   administrators manage.
//! - The definition is the spec (topic, meetingId, schedule, adHoc, maxParticipants,
//!   allowJoinWithoutOwner, media, recording.allowed — written only when false, absent means
//!   allowed). An unlimited `maxParticipants` is written as the CRD's
//!   default, since the operator reserves a size on an SFU pod for every conference.
//! - The meeting password lives in a Secret `<id>-password` (key `password`) named by
//!   `spec.passwordSecretRef`, owned by the Conference so it is garbage-collected with it.
//! - Invitees, the sequence and the API's timestamps are annotations ([`annotations`]).
//! - The runtime comes from status: the operator's `phase`, `currentOccurrence` (or
//!   `nextOccurrence`) and `assignment`; this service's `participants`, `startedEarly` and
//!   `endedOccurrence`, which it writes with merge patches of the status subresource.
//! - Placement belongs to the operator: [`ConferenceStore::set_lifecycle`] is a no-op here.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use chrono::{DateTime, Utc};
use crds::{
    AssignmentStatus, ConferencePhase, ConferenceSpec, ConferenceStatus, MediaPortsStatus,
    ScheduleSpec, SecretKeyRef, UdpPortRange,
};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use placement::{Occurrence, Phase, PortRange};
use proto::{AccountId, ConferenceId, Media, MeetingId};
use serde_json::json;

use crate::conference::{AD_HOC_DURATION, Conference, Definition, Kind, Placed, Runtime};
use crate::db::Db;
use crate::store::{BoxFut, ConferenceStore, MediaPorts};
use crate::{Error, Result, account};

/// The annotations the conference service keeps on a `Conference`.
pub mod annotations {
    /// The invited e-mail addresses, a JSON array of strings.
    pub const INVITEES: &str = "conclave.dev/invitees";
    /// The calendar SEQUENCE, bumped by every edit.
    pub const SEQUENCE: &str = "conclave.dev/sequence";
    /// When the conference was scheduled in the API (RFC 3339); else `creationTimestamp`.
    pub const CREATED_AT: &str = "conclave.dev/created-at";
    /// When its definition last changed in the API (RFC 3339).
    pub const UPDATED_AT: &str = "conclave.dev/updated-at";
    /// The ID of the API request that last wrote the definition (quoted in the operator's
    /// Events).
    pub const REQUEST_ID: &str = crds::annotations::REQUEST_ID;
}

/// The label carrying a conference's meeting ID: the API sets it on what it creates and edits,
/// the operator on conferences applied with kubectl. Meetings are found by this label alone, so
/// an unknown meeting ID never makes the API list the whole namespace.
pub const MEETING_ID_LABEL: &str = crds::labels::MEETING_ID;

/// The key of the password in a conference's Secret (the CRD's default).
const PASSWORD_KEY: &str = "password";
/// How often a replace is retried after a conflicting write (e.g. the operator's).
const REPLACE_ATTEMPTS: usize = 5;

/// The Secret holding a conference's meeting password.
pub fn password_secret_name(id: &ConferenceId) -> String {
    format!("{id}-password")
}

/// Whether `value` may be a label value (63 characters at most, alphanumerics and `-_.`, starting
/// and ending alphanumeric) — the same rule the operator applies before setting the owner label.
pub fn is_label_value(value: &str) -> bool {
    value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && value
            .bytes()
            .next()
            .is_none_or(|b| b.is_ascii_alphanumeric())
        && value
            .bytes()
            .last()
            .is_none_or(|b| b.is_ascii_alphanumeric())
}

/// The account ID for an owner no account has (only administrators manage such conferences).
pub fn unknown_owner(login: &str) -> AccountId {
    AccountId(format!("login:{login}"))
}

/// Conferences as `Conference` resources in one namespace.
#[derive(Clone)]
pub struct KubeConferenceStore {
    conferences: Api<crds::Conference>,
    secrets: Api<Secret>,
    namespace: String,
    db: Db,
}

impl fmt::Debug for KubeConferenceStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubeConferenceStore")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

fn is_code(err: &kube::Error, code: u16) -> bool {
    matches!(err, kube::Error::Api(status) if status.code == code)
}

fn meeting_id_taken(meeting_id: &MeetingId) -> Error {
    Error::conflict(
        "meetingIdTaken",
        format!(
            "the meeting ID {meeting_id} is in use by another conference; pick another or leave it empty"
        ),
    )
}

/// A refusal of the API server's validation (CEL rules such as the immutable meeting ID)
/// becomes a 422; anything else stays a 500.
fn refused(err: kube::Error) -> Error {
    match err {
        kube::Error::Api(status) if status.code == 422 => Error::Validation {
            field: None,
            message: status.message,
        },
        err => err.into(),
    }
}

/// The spec for a definition owned by `owner_login`.
pub fn spec_of(id: &ConferenceId, d: &Definition, owner_login: &str) -> ConferenceSpec {
    let recurrence = d
        .recurrence
        .as_deref()
        .map(|r| r.strip_prefix("RRULE:").unwrap_or(r).to_owned());
    let time_zone = d.time_zone.name().to_owned();
    let (schedule, ad_hoc) = match d.kind {
        Kind::Permanent => (
            Some(ScheduleSpec {
                permanent: true,
                time_zone,
                ..ScheduleSpec::default()
            }),
            false,
        ),
        Kind::AdHoc => (
            Some(ScheduleSpec {
                start: d.start,
                end: d.end,
                time_zone,
                ..ScheduleSpec::default()
            }),
            true,
        ),
        Kind::Scheduled => (
            Some(ScheduleSpec {
                start: d.start,
                end: d.end,
                time_zone,
                recurrence,
                ..ScheduleSpec::default()
            }),
            false,
        ),
    };
    ConferenceSpec {
        topic: d.topic.clone(),
        owner: owner_login.to_owned(),
        meeting_id: Some(d.meeting_id.as_str().to_owned()).filter(|m| !m.is_empty()),
        password_secret_ref: Some(SecretKeyRef {
            name: password_secret_name(id),
            key: Some(PASSWORD_KEY.to_owned()),
        }),
        schedule,
        ad_hoc,
        max_participants: d.max_participants.unwrap_or(crds::DEFAULT_MAX_PARTICIPANTS),
        allow_join_without_owner: d.allow_join_without_owner,
        media: match d.media {
            Media::AudioOnly => crds::Media::AudioOnly,
            _ => crds::Media::AudioVideo,
        },
        // Allowed is the default: only a refusal is written.
        recording: (!d.recording_allowed).then_some(crds::RecordingSpec { allowed: false }),
        dial_in: None,
    }
}

/// The API's annotations for a conference.
fn annotations_of(c: &Conference) -> BTreeMap<String, String> {
    let mut all = BTreeMap::from([
        (
            annotations::INVITEES.to_owned(),
            serde_json::Value::from(c.definition.invitees.clone()).to_string(),
        ),
        (annotations::SEQUENCE.to_owned(), c.sequence.to_string()),
        (
            annotations::CREATED_AT.to_owned(),
            c.created_at.to_rfc3339(),
        ),
        (
            annotations::UPDATED_AT.to_owned(),
            c.updated_at.to_rfc3339(),
        ),
    ]);
    if let Some(id) = crate::http::current_request_id() {
        all.insert(annotations::REQUEST_ID.to_owned(), id);
    }
    all
}

/// The resource for a new conference owned by `owner_login`.
pub fn resource_of(c: &Conference, owner_login: &str) -> crds::Conference {
    let mut labels = BTreeMap::new();
    if is_label_value(owner_login) {
        labels.insert(crds::labels::OWNER.to_owned(), owner_login.to_owned());
    }
    if !c.definition.meeting_id.as_str().is_empty() {
        labels.insert(
            MEETING_ID_LABEL.to_owned(),
            c.definition.meeting_id.as_str().to_owned(),
        );
    }
    crds::Conference {
        metadata: ObjectMeta {
            name: Some(c.id.as_str().to_owned()),
            labels: Some(labels),
            annotations: Some(annotations_of(c)),
            ..ObjectMeta::default()
        },
        spec: spec_of(&c.id, &c.definition, owner_login),
        status: None,
    }
}

fn phase_of(phase: Option<ConferencePhase>) -> Phase {
    match phase {
        Some(ConferencePhase::Ready) => Phase::Ready,
        Some(ConferencePhase::Active) => Phase::Active,
        Some(ConferencePhase::Ended) => Phase::Ended,
        Some(ConferencePhase::Scheduled | ConferencePhase::Failed) | None => Phase::Scheduled,
    }
}

fn placed_of(assignment: &AssignmentStatus) -> Placed {
    Placed {
        pod: assignment.pod.clone(),
        endpoint: assignment.endpoint.clone(),
        udp_ports: PortRange {
            first: assignment.udp_ports.first,
            last: assignment.udp_ports.last,
        },
    }
}

/// The runtime state the operator and this service wrote into status.
pub fn runtime_of(status: Option<&ConferenceStatus>) -> Runtime {
    let status = status.cloned().unwrap_or_default();
    Runtime {
        phase: phase_of(status.phase),
        occurrence: status
            .current_occurrence
            .or(status.next_occurrence)
            .map(|o| Occurrence {
                start: o.start,
                end: o.end,
            }),
        started_early: status.started_early,
        ended: status.ended_occurrence,
        participants: status.participants.unwrap_or(0),
        placed: status.assignment.as_ref().map(placed_of),
        not_placed: status
            .conditions
            .iter()
            .find(|c| {
                c.type_ == crds::conditions::PLACED && c.status == crds::ConditionStatus::False
            })
            .map(|c| (c.reason.clone(), c.message.clone())),
    }
}

fn annotation_time(object: &crds::Conference, key: &str) -> Option<DateTime<Utc>> {
    object
        .annotations()
        .get(key)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// The conference a resource describes, given its owner's account and its password.
///
/// # Errors
/// 500 when the resource has no name or an unknown time zone slipped past validation.
pub fn conference_of(
    object: &crds::Conference,
    owner: AccountId,
    password: String,
) -> Result<Conference> {
    let name = object
        .metadata
        .name
        .clone()
        .ok_or_else(|| Error::Internal("a Conference without a name".into()))?;
    let spec = &object.spec;
    let created = object
        .metadata
        .creation_timestamp
        .as_ref()
        .and_then(|t| DateTime::<Utc>::from_timestamp(t.0.as_second(), 0));
    let created_at = annotation_time(object, annotations::CREATED_AT)
        .or(created)
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
    let schedule = spec.schedule.clone().unwrap_or_default();
    let time_zone = schedule
        .time_zone
        .parse()
        .map_err(|_| Error::Internal(format!("Conference {name} has an unknown time zone")))?;
    let kind = if spec.ad_hoc {
        Kind::AdHoc
    } else if schedule.permanent || schedule.start.is_none() {
        Kind::Permanent
    } else {
        Kind::Scheduled
    };
    let (start, end) = match kind {
        Kind::Permanent => (None, None),
        Kind::AdHoc | Kind::Scheduled => {
            let start = schedule.start.unwrap_or(created_at);
            let end = schedule.end.or_else(|| {
                schedule
                    .duration()
                    .or((kind == Kind::AdHoc).then_some(AD_HOC_DURATION))
                    .map(|d| start + d)
            });
            (Some(start), end)
        }
    };
    let invitees = object
        .annotations()
        .get(annotations::INVITEES)
        .and_then(|json| serde_json::from_str(json).ok())
        .unwrap_or_default();
    // The API raises the annotation with each of its edits; the resource's generation (1 when
    // created) rises with every change of the spec, also one applied with kubectl or GitOps.
    // The larger of the two counts rises with every edit either way: calendars and the SFU
    // (which applies a token's room settings only when they are newer) both need that.
    let edits = object.metadata.generation.unwrap_or(1) - 1;
    let sequence = object
        .annotations()
        .get(annotations::SEQUENCE)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
        .max(edits);
    Ok(Conference {
        id: ConferenceId(name),
        owner,
        definition: Definition {
            topic: spec.topic.clone(),
            kind,
            start,
            end,
            time_zone,
            recurrence: schedule.recurrence.clone(),
            max_participants: Some(spec.max_participants),
            allow_join_without_owner: spec.allow_join_without_owner,
            media: match spec.media {
                crds::Media::AudioOnly => Media::AudioOnly,
                crds::Media::AudioVideo => Media::AudioVideo,
            },
            recording_allowed: spec.recording.as_ref().is_none_or(|r| r.allowed),
            meeting_id: MeetingId(spec.meeting_id.clone().unwrap_or_default()),
            password,
            invitees,
        },
        sequence,
        runtime: runtime_of(object.status.as_ref()),
        created_at,
        updated_at: annotation_time(object, annotations::UPDATED_AT).unwrap_or(created_at),
    })
}

impl KubeConferenceStore {
    /// A store over the `Conference` resources of `namespace`; owners are resolved against the
    /// accounts in `db`.
    pub fn new(client: Client, namespace: &str, db: Db) -> Self {
        Self {
            conferences: Api::namespaced(client.clone(), namespace),
            secrets: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
            db,
        }
    }

    /// The login name of an account, as written into `spec.owner`.
    async fn login_of(&self, id: &AccountId) -> Result<String> {
        account::get(&self.db, id)
            .await?
            .map(|a| a.login)
            .ok_or_else(|| Error::Internal(format!("no account {id} owns this conference")))
    }

    /// The account ID of the login name in `spec.owner`.
    async fn owner_of(
        &self,
        login: &str,
        cache: &mut HashMap<String, AccountId>,
    ) -> Result<AccountId> {
        if let Some(id) = cache.get(login) {
            return Ok(id.clone());
        }
        let id = account::find_by_login(&self.db, login)
            .await?
            .map_or_else(|| unknown_owner(login), |(a, _)| a.id);
        cache.insert(login.to_owned(), id.clone());
        Ok(id)
    }

    /// The password the spec's Secret holds; empty without `passwordSecretRef` (guests need
    /// none). A reference to a missing Secret or key fails closed: the password becomes a
    /// random value nobody knows, so only the owner and moderators get in until it is fixed.
    async fn password_of(&self, spec: &ConferenceSpec) -> Result<String> {
        let Some(reference) = &spec.password_secret_ref else {
            return Ok(String::new());
        };
        let key = reference.key.as_deref().unwrap_or(PASSWORD_KEY);
        let secret = self.secrets.get_opt(&reference.name).await?;
        let password = secret
            .and_then(|s| s.data)
            .and_then(|mut data| data.remove(key))
            .and_then(|ByteString(bytes)| String::from_utf8(bytes).ok());
        Ok(password.unwrap_or_else(|| {
            tracing::warn!(secret = %reference.name, key, "the meeting password Secret or key is missing");
            format!("unset-{}", uuid::Uuid::new_v4())
        }))
    }

    async fn load(
        &self,
        object: &crds::Conference,
        cache: &mut HashMap<String, AccountId>,
    ) -> Result<Conference> {
        let owner = self.owner_of(&object.spec.owner, cache).await?;
        let password = self.password_of(&object.spec).await?;
        conference_of(object, owner, password)
    }

    async fn all(&self, params: &ListParams) -> Result<Vec<crds::Conference>> {
        Ok(self.conferences.list(params).await?.items)
    }

    /// The conferences labelled with `meeting_id` whose spec says so too (a label lags behind
    /// a kubectl edit of the spec until the operator catches up; the spec decides).
    async fn by_meeting_id(&self, meeting_id: &MeetingId) -> Result<Vec<crds::Conference>> {
        if !is_label_value(meeting_id.as_str()) {
            return Ok(Vec::new());
        }
        let labelled =
            ListParams::default().labels(&format!("{MEETING_ID_LABEL}={}", meeting_id.as_str()));
        let mut found = self.all(&labelled).await?;
        found.retain(|c| c.spec.meeting_id.as_deref() == Some(meeting_id.as_str()));
        Ok(found)
    }

    /// The calls [`Self::load`] makes, for a meeting ID that names nothing: an owner lookup and
    /// a Secret read that find nothing, so a known and an unknown meeting ID cost the same
    /// requests and take about the same time.
    async fn load_nothing(&self) -> Result<()> {
        account::find_by_login(&self.db, "").await?;
        self.secrets
            .get_opt(&password_secret_name(&ConferenceId("absent".into())))
            .await?;
        Ok(())
    }

    /// 409 when another conference than `id` uses `meeting_id`.
    ///
    /// Checked by the meeting-ID label, so two writes at the same moment can both pass; the
    /// operator's `Degraded` condition is where such a clash would then show.
    async fn check_meeting_id(&self, id: &ConferenceId, meeting_id: &MeetingId) -> Result<()> {
        if meeting_id.as_str().is_empty() {
            return Ok(());
        }
        let taken = self.by_meeting_id(meeting_id).await?.iter().any(|c| {
            c.spec.meeting_id.as_deref() == Some(meeting_id.as_str())
                && c.metadata.name.as_deref() != Some(id.as_str())
        });
        if taken {
            return Err(meeting_id_taken(meeting_id));
        }
        Ok(())
    }

    /// Creates or updates the password Secret, owned by `conference`.
    async fn write_password(&self, conference: &crds::Conference, password: &str) -> Result<()> {
        let id = conference.name_any();
        let name = password_secret_name(&ConferenceId(id.clone()));
        let owner = conference
            .controller_owner_ref(&())
            .map(|mut r: OwnerReference| {
                r.controller = Some(false);
                r
            });
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(BTreeMap::from([("conclave.dev/conference".to_owned(), id)])),
                owner_references: owner.map(|r| vec![r]),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([(
                PASSWORD_KEY.to_owned(),
                ByteString(password.as_bytes().to_vec()),
            )])),
            type_: Some("Opaque".to_owned()),
            ..Secret::default()
        };
        match self.secrets.create(&PostParams::default(), &secret).await {
            Ok(_) => Ok(()),
            Err(err) if is_code(&err, 409) => {
                let patch =
                    json!({ "data": { PASSWORD_KEY: ByteString(password.as_bytes().to_vec()) } });
                self.secrets
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
                Ok(())
            }
            Err(err) => Err(err.into()),
        }
    }

    async fn patch_status(&self, id: &ConferenceId, status: serde_json::Value) -> Result<()> {
        let patch = json!({ "status": status });
        match self
            .conferences
            .patch_status(id.as_str(), &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            // Like an UPDATE that matches no row: the conference is gone.
            Err(err) if is_code(&err, 404) => Ok(()),
            Err(err) => Err(err.into()),
        }
    }
}

impl ConferenceStore for KubeConferenceStore {
    fn insert<'a>(&'a self, c: &'a Conference) -> BoxFut<'a, ()> {
        Box::pin(async move {
            self.check_meeting_id(&c.id, &c.definition.meeting_id)
                .await?;
            let login = self.login_of(&c.owner).await?;
            let created = self
                .conferences
                .create(&PostParams::default(), &resource_of(c, &login))
                .await
                .map_err(refused)?;
            if let Err(err) = self.write_password(&created, &c.definition.password).await {
                // Without its password the conference is unusable; take it back.
                let _ = self
                    .conferences
                    .delete(c.id.as_str(), &DeleteParams::default())
                    .await;
                return Err(err);
            }
            Ok(())
        })
    }

    fn get<'a>(&'a self, id: &'a ConferenceId) -> BoxFut<'a, Option<Conference>> {
        Box::pin(async move {
            if !is_label_value(id.as_str()) {
                return Ok(None);
            }
            match self.conferences.get_opt(id.as_str()).await? {
                Some(object) => Ok(Some(self.load(&object, &mut HashMap::new()).await?)),
                None => Ok(None),
            }
        })
    }

    fn runtime<'a>(&'a self, id: &'a ConferenceId) -> BoxFut<'a, Option<Runtime>> {
        Box::pin(async move {
            if !is_label_value(id.as_str()) {
                return Ok(None);
            }
            // The status alone: no owner lookup, no password Secret.
            Ok(self
                .conferences
                .get_opt(id.as_str())
                .await?
                .map(|object| runtime_of(object.status.as_ref())))
        })
    }

    fn placed_on<'a>(&'a self, pod: &'a str) -> BoxFut<'a, Vec<ConferenceId>> {
        Box::pin(async move {
            if !is_label_value(pod) {
                return Ok(Vec::new());
            }
            // The operator labels each placed conference with its pod, so a pod's list is one
            // filtered LIST; the status decides (a label can lag behind a move for a moment).
            let params = ListParams::default().labels(&format!("{}={pod}", crds::labels::SFU_POD));
            let mut held: Vec<ConferenceId> = self
                .all(&params)
                .await?
                .into_iter()
                .filter(|object| {
                    object
                        .status
                        .as_ref()
                        .and_then(|status| status.assignment.as_ref())
                        .is_some_and(|assignment| assignment.pod == pod)
                })
                .filter_map(|object| object.metadata.name.map(ConferenceId))
                .collect();
            held.sort_by(|a, b| a.as_str().cmp(b.as_str()));
            Ok(held)
        })
    }

    fn find_by_meeting_id<'a>(
        &'a self,
        meeting_id: &'a MeetingId,
    ) -> BoxFut<'a, Option<Conference>> {
        Box::pin(async move {
            match self.by_meeting_id(meeting_id).await?.first() {
                Some(object) => Ok(Some(self.load(object, &mut HashMap::new()).await?)),
                None => {
                    self.load_nothing().await?;
                    Ok(None)
                }
            }
        })
    }

    fn list<'a>(&'a self, owner: Option<&'a AccountId>) -> BoxFut<'a, Vec<Conference>> {
        Box::pin(async move {
            let objects = match owner {
                Some(owner) => {
                    let Some(login) = account::get(&self.db, owner).await?.map(|a| a.login) else {
                        return Ok(Vec::new());
                    };
                    let params = if is_label_value(&login) {
                        ListParams::default().labels(&format!("{}={login}", crds::labels::OWNER))
                    } else {
                        ListParams::default()
                    };
                    // The label may lag behind an edit of spec.owner; the spec decides.
                    let mut objects = self.all(&params).await?;
                    objects.retain(|c| c.spec.owner == login);
                    objects
                }
                None => self.all(&ListParams::default()).await?,
            };
            let mut cache = HashMap::new();
            let mut conferences = Vec::with_capacity(objects.len());
            for object in &objects {
                conferences.push(self.load(object, &mut cache).await?);
            }
            // By next start like the SQL store: unscheduled last, then by topic.
            conferences.sort_by(|a, b| {
                let key = |c: &Conference| c.runtime.occurrence.map(|o| o.start);
                (key(a).is_none(), key(a), &a.definition.topic).cmp(&(
                    key(b).is_none(),
                    key(b),
                    &b.definition.topic,
                ))
            });
            Ok(conferences)
        })
    }

    fn update_definition<'a>(&'a self, c: &'a Conference) -> BoxFut<'a, ()> {
        Box::pin(async move {
            self.check_meeting_id(&c.id, &c.definition.meeting_id)
                .await?;
            let mut attempt = 0;
            let updated = loop {
                attempt += 1;
                let Some(mut object) = self.conferences.get_opt(c.id.as_str()).await? else {
                    return Err(Error::not_found("no such conference"));
                };
                // The owner stays who the resource names (edits never change ownership).
                let login = object.spec.owner.clone();
                // What the API does not edit (dial-in) stays as applied; an applied
                // `recording: {allowed: true}` stays written out while recording is allowed.
                let recording = if c.definition.recording_allowed {
                    object
                        .spec
                        .recording
                        .take()
                        .map(|_| crds::RecordingSpec { allowed: true })
                } else {
                    Some(crds::RecordingSpec { allowed: false })
                };
                let spec = ConferenceSpec {
                    dial_in: object.spec.dial_in.take(),
                    recording,
                    ..spec_of(&c.id, &c.definition, &login)
                };
                object.spec = spec;
                // The label follows a new meeting ID at once (joins find meetings by it).
                if c.definition.meeting_id.as_str().is_empty() {
                    object.labels_mut().remove(MEETING_ID_LABEL);
                } else {
                    object.labels_mut().insert(
                        MEETING_ID_LABEL.to_owned(),
                        c.definition.meeting_id.as_str().to_owned(),
                    );
                }
                object.annotations_mut().remove(annotations::REQUEST_ID);
                object.annotations_mut().extend(annotations_of(c));
                match self
                    .conferences
                    .replace(c.id.as_str(), &PostParams::default(), &object)
                    .await
                {
                    Ok(updated) => break updated,
                    Err(err) if is_code(&err, 409) && attempt < REPLACE_ATTEMPTS => continue,
                    Err(err) if is_code(&err, 404) => {
                        return Err(Error::not_found("no such conference"));
                    }
                    Err(err) => return Err(refused(err)),
                }
            };
            self.write_password(&updated, &c.definition.password).await
        })
    }

    fn set_lifecycle<'a>(
        &'a self,
        _id: &'a ConferenceId,
        _phase: Phase,
        _occurrence: Option<Occurrence>,
        _placed: Option<&'a Placed>,
    ) -> BoxFut<'a, ()> {
        // The operator decides phase, occurrence and placement and writes them into status.
        Box::pin(async { Ok(()) })
    }

    fn placed_by_operator(&self) -> bool {
        true
    }

    fn assigned_to<'a>(&'a self, pod: &'a str) -> BoxFut<'a, Vec<(ConferenceId, Placed)>> {
        Box::pin(async move {
            // Found by the operator's label alone (never a list of the whole namespace, whatever
            // name a client asks for); the label may lag behind status, which decides.
            if !is_label_value(pod) {
                return Ok(Vec::new());
            }
            let labelled =
                ListParams::default().labels(&format!("{}={pod}", crds::labels::SFU_POD));
            let assigned = self
                .all(&labelled)
                .await?
                .into_iter()
                .filter_map(|object| {
                    let assignment = object.status.as_ref()?.assignment.as_ref()?;
                    if assignment.pod != pod {
                        return None;
                    }
                    let placed = placed_of(assignment);
                    Some((ConferenceId(object.metadata.name?), placed))
                })
                .collect();
            Ok(assigned)
        })
    }

    fn set_participants<'a>(&'a self, id: &'a ConferenceId, participants: u32) -> BoxFut<'a, ()> {
        Box::pin(self.patch_status(id, json!({ "participants": participants })))
    }

    fn set_started_early<'a>(
        &'a self,
        id: &'a ConferenceId,
        start: DateTime<Utc>,
    ) -> BoxFut<'a, ()> {
        Box::pin(self.patch_status(id, json!({ "startedEarly": start })))
    }

    fn set_ended<'a>(&'a self, id: &'a ConferenceId, start: DateTime<Utc>) -> BoxFut<'a, ()> {
        Box::pin(self.patch_status(id, json!({ "endedOccurrence": start })))
    }

    fn set_media_ports<'a>(
        &'a self,
        id: &'a ConferenceId,
        found: &'a MediaPorts,
    ) -> BoxFut<'a, ()> {
        let status = MediaPortsStatus {
            pod: found.pod.clone(),
            udp_ports: UdpPortRange {
                first: found.udp_ports.first,
                last: found.udp_ports.last,
            },
            unusable: found.unusable.clone(),
            checked_at: found.checked_at,
        };
        Box::pin(self.patch_status(id, json!({ "mediaPorts": status })))
    }

    fn delete<'a>(&'a self, id: &'a ConferenceId) -> BoxFut<'a, bool> {
        Box::pin(async move {
            if !is_label_value(id.as_str()) {
                return Ok(false);
            }
            let existed = match self
                .conferences
                .delete(id.as_str(), &DeleteParams::default())
                .await
            {
                Ok(_) => true,
                Err(err) if is_code(&err, 404) => false,
                Err(err) => return Err(err.into()),
            };
            // Garbage collection removes the Secret through its owner reference; deleting it
            // here as well covers clusters (and fakes) without the collector.
            match self
                .secrets
                .delete(&password_secret_name(id), &DeleteParams::default())
                .await
            {
                Ok(_) => {}
                Err(err) if is_code(&err, 404) => {}
                Err(err) => return Err(err.into()),
            }
            Ok(existed)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operators_reason_for_not_placing_reaches_the_runtime() {
        let condition = |type_: &str, status, reason: &str| crds::Condition {
            type_: type_.into(),
            status,
            reason: reason.into(),
            message: format!("{reason} message"),
            last_transition_time: Utc::now(),
            observed_generation: None,
        };
        let status = ConferenceStatus {
            conditions: vec![
                condition("Placed", crds::ConditionStatus::False, "TooLarge"),
                condition("Degraded", crds::ConditionStatus::True, "TooLarge"),
            ],
            ..ConferenceStatus::default()
        };
        assert_eq!(
            runtime_of(Some(&status)).not_placed,
            Some(("TooLarge".to_owned(), "TooLarge message".to_owned()))
        );
        let placed = ConferenceStatus {
            conditions: vec![condition("Placed", crds::ConditionStatus::True, "Placed")],
            ..ConferenceStatus::default()
        };
        assert_eq!(runtime_of(Some(&placed)).not_placed, None);
        assert_eq!(runtime_of(None).not_placed, None);
    }

    fn conference(kind: Kind) -> Conference {
        let start = DateTime::parse_from_rfc3339("2026-12-01T09:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default();
        let permanent = kind == Kind::Permanent;
        Conference {
            id: ConferenceId("6f1c2a9e-1d2b-4c3d-9e8f-0a1b2c3d4e5f".into()),
            owner: AccountId("a1".into()),
            definition: Definition {
                topic: "Weekly".into(),
                kind,
                start: (!permanent).then_some(start),
                end: (!permanent).then_some(start + chrono::Duration::minutes(45)),
                time_zone: chrono_tz::Europe::Berlin,
                recurrence: (kind == Kind::Scheduled).then(|| "FREQ=WEEKLY;BYDAY=MO".into()),
                max_participants: Some(20),
                allow_join_without_owner: false,
                media: Media::AudioOnly,
                recording_allowed: false,
                meeting_id: MeetingId("123456789".into()),
                password: "424242".into(),
                invitees: vec!["bob@example.com".into()],
            },
            sequence: 3,
            runtime: runtime_of(None),
            created_at: start - chrono::Duration::days(1),
            updated_at: start - chrono::Duration::hours(1),
        }
    }

    #[test]
    fn a_definition_survives_the_trip_through_a_resource() {
        for kind in [Kind::Scheduled, Kind::AdHoc, Kind::Permanent] {
            let c = conference(kind);
            let object = resource_of(&c, "ada");
            assert_eq!(
                object.labels().get(crds::labels::OWNER).map(String::as_str),
                Some("ada")
            );
            assert_eq!(object.spec.owner, "ada");
            let back = conference_of(&object, c.owner.clone(), "424242".into())
                .unwrap_or_else(|err| panic!("{err}"));
            assert_eq!(back, c, "{kind:?}");
        }
    }

    #[test]
    fn the_password_is_only_referenced_from_the_spec() {
        let c = conference(Kind::Scheduled);
        let json = serde_json::to_string(&resource_of(&c, "ada")).unwrap_or_default();
        assert!(!json.contains("424242"));
        assert!(json.contains(&password_secret_name(&c.id)));
    }

    #[test]
    fn an_owner_that_is_no_label_value_gets_no_label() {
        let object = resource_of(&conference(Kind::AdHoc), "ada lovelace@example.com");
        assert!(object.labels().get(crds::labels::OWNER).is_none());
    }

    #[test]
    fn an_edit_with_kubectl_raises_the_sequence_too() {
        let c = conference(Kind::Scheduled);
        let mut object = resource_of(&c, "ada");
        // The API's annotation says 3 (its three edits: generation 4); two more edits with
        // kubectl moved the generation to 6.
        object.metadata.generation = Some(6);
        let back = conference_of(&object, c.owner.clone(), "424242".into())
            .unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(back.sequence, 5);
        object.metadata.generation = Some(1);
        let back = conference_of(&object, c.owner.clone(), "424242".into())
            .unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(back.sequence, 3, "the API's own count when it is higher");
    }

    #[test]
    fn failed_and_missing_phases_read_as_scheduled() {
        assert_eq!(phase_of(None), Phase::Scheduled);
        assert_eq!(phase_of(Some(ConferencePhase::Failed)), Phase::Scheduled);
        assert_eq!(phase_of(Some(ConferencePhase::Active)), Phase::Active);
    }
}

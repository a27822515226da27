//! The Kubernetes resource types of Conclave: the `Conference` custom resource
//! (`conclave.dev/v1alpha1`, namespaced, short name `conf`).
//!
//! Platform teams apply `Conference` objects (also by GitOps: a recurring meeting is a YAML file);
//! the operator places each one on an SFU pod and writes the placement into its status; the API
//! reads and writes the same objects as its conference store in a cluster.
//!
//! The CRD manifest in `crds/conference.yaml` at the repository root is generated from these types
//! with [`conference_crd_yaml`] (`conclave crdgen`); a test fails when the committed file is stale.
//! Validation lives in the schema: OpenAPI bounds and patterns, and CEL rules
//! (`x-kubernetes-validations`) for what crosses fields, listed in `docs/crd.md`.
//!
//! # Layout
//! - [`Conference`] / [`ConferenceSpec`]: what people ask for (topic, owner, schedule, sizing).
//! - [`ConferenceStatus`]: what the operator and the SFU report (phase, conditions, assignment).
//! - [`labels`], [`annotations`], [`conditions`]: the well-known names shared with the operator,
//!   the API and the SFU.

use std::fmt;

use chrono::{DateTime, Utc};
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group of Conclave's resources.
pub const GROUP: &str = "conclave.dev";
/// The version of the `Conference` resource.
pub const VERSION: &str = "v1alpha1";

/// Labels Conclave puts on its objects.
pub mod labels {
    /// On a `Conference`: the SFU pod it is placed on, so an SFU pod can watch only its own
    /// conferences with a label selector. Absent while the conference holds no assignment.
    pub const SFU_POD: &str = "conclave.dev/sfu-pod";
    /// On a `Conference`: the owner's account name, so the API lists an owner's conferences with
    /// a label selector.
    pub const OWNER: &str = "conclave.dev/owner";
    /// On a `Conference`: its meeting ID, so the API finds a meeting with a label selector
    /// instead of listing the namespace. The API sets it on what it writes; the operator keeps
    /// it in line with `spec.meetingId` on conferences applied with kubectl.
    pub const MEETING_ID: &str = "conclave.dev/meeting-id";
    /// On SFU pods: the component label the operator selects them by.
    pub const COMPONENT: &str = "app.kubernetes.io/component";
    /// The value of [`COMPONENT`] on SFU pods.
    pub const COMPONENT_SFU: &str = "sfu";
}

/// Annotations SFU pods carry to tell the operator what placement needs (see `docs/operator.md`).
pub mod annotations {
    /// How many participants the pod serves at most, e.g. `"500"`.
    pub const CAPACITY: &str = "conclave.dev/capacity";
    /// The UDP ports the pod may hand out, inclusive, e.g. `"40000-40999"`.
    pub const UDP_PORTS: &str = "conclave.dev/udp-ports";
    /// The signaling websocket URL clients open, e.g. `"wss://{pod}.sfu.conclave.example.com/rtc"`
    /// (`{pod}`, `{namespace}` and `{podIP}` are filled in per pod).
    pub const ENDPOINT: &str = "conclave.dev/endpoint";
    /// On a `Conference`: the ID (`x-request-id`) of the API request that last wrote its
    /// definition; the operator quotes it in its Events. Absent after a write of the API's own.
    pub const REQUEST_ID: &str = "conclave.dev/request-id";
}

/// Condition types in [`ConferenceStatus::conditions`].
pub mod conditions {
    /// The conference holds an SFU assignment (or, when `False`, why not).
    pub const PLACED: &str = "Placed";
    /// The conference can be joined now.
    pub const READY: &str = "Ready";
    /// Something is wrong that needs attention (a lost pod, no capacity, a bad schedule).
    pub const DEGRADED: &str = "Degraded";
    /// Whether the SFU pod can bind every UDP port of the assignment (`False`, reason
    /// `PortInUse`: another process on the node holds some); absent until the pod tried them.
    pub const MEDIA_PORTS: &str = "MediaPorts";
}

/// What a conference is: who owns it, when it happens, how big it may get.
///
/// A conference has either a `schedule` (a start with an end or a duration, optionally an RRULE,
/// or `permanent: true`) or `adHoc: true` (it starts when created, 30 minutes by default).
// Several printer columns share a type; clippy mistakes that for a repeated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "conclave.dev",
    version = "v1alpha1",
    kind = "Conference",
    plural = "conferences",
    singular = "conference",
    shortname = "conf",
    namespaced,
    status = "ConferenceStatus",
    derive = "PartialEq",
    doc = "A meeting: its schedule and sizing (spec) and where it runs (status).",
    printcolumn(name = "Topic", type_ = "string", json_path = ".spec.topic"),
    printcolumn(name = "Meeting ID", type_ = "string", json_path = ".spec.meetingId"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Start",
        type_ = "string",
        format = "date-time",
        json_path = ".status.currentOccurrence.start"
    ),
    printcolumn(
        name = "SFU Pod",
        type_ = "string",
        json_path = ".status.assignment.pod"
    ),
    printcolumn(
        name = "Participants",
        type_ = "integer",
        json_path = ".status.participants"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(
    validation = Rule::new("has(self.schedule) || (has(self.adHoc) && self.adHoc)")
        .message("a conference needs a schedule or adHoc: true"),
    validation = Rule::new("(has(self.adHoc) && self.adHoc) || !has(self.schedule) || (has(self.schedule.permanent) && self.schedule.permanent) || (has(self.schedule.start) && (has(self.schedule.end) || has(self.schedule.duration)))")
        .message("a scheduled conference needs schedule.start and schedule.end or schedule.duration"),
    validation = Rule::new("!(has(self.adHoc) && self.adHoc) || !has(self.schedule) || !has(self.schedule.recurrence)")
        .message("an ad hoc conference does not repeat"),
    validation = Rule::new("!(has(self.adHoc) && self.adHoc) || !has(self.schedule) || !(has(self.schedule.permanent) && self.schedule.permanent)")
        .message("a conference is either ad hoc or permanent")
)]
#[serde(rename_all = "camelCase")]
pub struct ConferenceSpec {
    /// What the meeting is about; shown in the portal and in invitations.
    #[schemars(length(min = 1, max = 200))]
    pub topic: String,
    /// The account name of the owner (a moderator in every occurrence).
    #[schemars(length(min = 1, max = 253))]
    pub owner: String,
    /// The phone-friendly meeting number people type in: 6 to 12 digits, unique. Generated when
    /// empty; it cannot change once set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 6, max = 12), regex(pattern = r"^[0-9]{6,12}$"))]
    #[x_kube(
        validation = Rule::new("self.matches('^[0-9]{6,12}$')").message("meetingId is 6 to 12 digits"),
        validation = Rule::new("self == oldSelf").message("meetingId cannot change once set")
    )]
    pub meeting_id: Option<String>,
    /// A Secret holding the meeting password guests must give; the API keeps only a hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeyRef>,
    /// When the conference happens. Absent only for an ad hoc conference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<ScheduleSpec>,
    /// Started at once (at `schedule.start` or the resource's creation), lasting
    /// `schedule.duration` or 30 minutes.
    #[serde(default, skip_serializing_if = "is_false")]
    pub ad_hoc: bool,
    /// Participants reserved for the conference on its SFU pod; more are refused.
    #[serde(default = "default_max_participants")]
    #[schemars(range(min = 2, max = 1000))]
    pub max_participants: u32,
    /// Whether people may join while the owner is absent (otherwise they wait).
    #[serde(default = "default_true")]
    pub allow_join_without_owner: bool,
    /// Audio and video, or audio only.
    #[serde(default)]
    pub media: Media,
    /// Recording settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording: Option<RecordingSpec>,
    /// Phone dial-in settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dial_in: Option<DialInSpec>,
}

/// The participants reserved when `maxParticipants` is not given.
pub const DEFAULT_MAX_PARTICIPANTS: u32 = 100;

fn default_max_participants() -> u32 {
    DEFAULT_MAX_PARTICIPANTS
}

fn default_true() -> bool {
    true
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// A key in a Secret of the conference's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// The Secret's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The key in the Secret (default `password`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub key: Option<String>,
}

/// When a conference happens: a timed window (optionally repeated) or always.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[x_kube(
    validation = Rule::new("!(has(self.permanent) && self.permanent) || (!has(self.start) && !has(self.end) && !has(self.duration) && !has(self.recurrence))")
        .message("a permanent room has no start, end, duration or recurrence"),
    validation = Rule::new("!has(self.end) || !has(self.duration)")
        .message("give either end or duration, not both"),
    validation = Rule::new("!has(self.start) || !has(self.end) || self.end > self.start")
        .message("end must be after start"),
    validation = Rule::new("!has(self.start) || !has(self.end) || self.end - self.start <= duration('24h')")
        .message("a conference lasts at most 24 hours"),
    validation = Rule::new("!has(self.duration) || (self.duration > duration('0s') && self.duration <= duration('24h'))")
        .message("duration must be more than 0s and at most 24h")
)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleSpec {
    /// The first occurrence's start (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<DateTime<Utc>>,
    /// The first occurrence's end (RFC 3339); or give `duration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<DateTime<Utc>>,
    /// How long each occurrence lasts, as a Go duration such as `45m` or `1h30m`; or give `end`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        extend("format" = "duration"),
        length(min = 2, max = 32),
        regex(pattern = r"^([0-9]+(\.[0-9]+)?(h|m|s))+$")
    )]
    pub duration: Option<String>,
    /// The IANA time zone the recurrence is expanded in (a 09:00 meeting stays at 09:00 local
    /// time across daylight-saving changes).
    #[serde(default = "default_time_zone")]
    #[schemars(length(min = 1, max = 64))]
    pub time_zone: String,
    /// An RFC 5545 RRULE without the `RRULE:` prefix, e.g. `FREQ=WEEKLY;BYDAY=MO`; daily at most.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    #[x_kube(validation = Rule::new("!self.contains('FREQ=SECONDLY') && !self.contains('FREQ=MINUTELY') && !self.contains('FREQ=HOURLY')")
        .message("conferences repeat daily at most often"))]
    pub recurrence: Option<String>,
    /// An always-available room: no start, end or recurrence.
    #[serde(default, skip_serializing_if = "is_false")]
    pub permanent: bool,
}

fn default_time_zone() -> String {
    "UTC".into()
}

impl Default for ScheduleSpec {
    fn default() -> Self {
        Self {
            start: None,
            end: None,
            duration: None,
            time_zone: default_time_zone(),
            recurrence: None,
            permanent: false,
        }
    }
}

/// What media a conference carries.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Media {
    /// Microphones, cameras and screens.
    #[default]
    AudioVideo,
    /// Microphones only.
    AudioOnly,
}

/// Recording settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RecordingSpec {
    /// Whether moderators of level `moderatorPlus` may record.
    #[serde(default)]
    pub allowed: bool,
}

/// Phone dial-in settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct DialInSpec {
    /// Whether phone callers may dial in with the meeting ID.
    #[serde(default)]
    pub enabled: bool,
}

/// What the operator and the SFU report about a conference.
///
/// Field ownership (server-side apply): the operator owns `phase`, `conditions`,
/// `observedGeneration`, `currentOccurrence`, `nextOccurrence` and `assignment`; the conference
/// service (fed by the SFU's room reports) owns `participants`, `startedEarly`,
/// `endedOccurrence` and `mediaPorts`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ConferenceStatus {
    /// Where the conference is in its lifecycle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<ConferencePhase>,
    /// `Placed`, `Ready`, `Degraded` and `MediaPorts`, Kubernetes style, with reasons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The occurrence running now or opened for joining.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_occurrence: Option<OccurrenceStatus>,
    /// The next occurrence that has not started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_occurrence: Option<OccurrenceStatus>,
    /// The SFU pod and UDP ports the conference runs on; absent while not placed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignment: Option<AssignmentStatus>,
    /// Participants in the room now, as reported by the SFU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub participants: Option<u32>,
    /// The start of the occurrence its owner started early, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_early: Option<DateTime<Utc>>,
    /// The start of the occurrence a moderator ended, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_occurrence: Option<DateTime<Utc>>,
    /// What the SFU pod last found of the conference's UDP ports; the operator turns it into
    /// the `MediaPorts` condition while it concerns the current assignment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_ports: Option<MediaPortsStatus>,
}

/// The SFU pod's finding about a conference's UDP ports: which of them it cannot bind.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct MediaPortsStatus {
    /// The SFU pod that tried them.
    pub pod: String,
    /// The range tried.
    pub udp_ports: UdpPortRange,
    /// Ports of the range held by another process on the pod's node (they cannot be bound);
    /// empty when every port could be bound.
    #[serde(default)]
    #[schemars(length(max = 1024))]
    pub unusable: Vec<u16>,
    /// When the pod tried them.
    pub checked_at: DateTime<Utc>,
}

impl ConferenceStatus {
    /// The condition of `type_`, if present.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }
}

/// The lifecycle phase of a conference.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConferencePhase {
    /// Waiting for its lead time before the start.
    Scheduled,
    /// Placed on an SFU pod and joinable; nobody in it yet.
    Ready,
    /// People are in it.
    Active,
    /// Over, with no occurrence left.
    Ended,
    /// The spec cannot be acted on (e.g. an unknown time zone); see the `Degraded` condition.
    Failed,
}

impl ConferencePhase {
    /// Every phase, in lifecycle order.
    pub const ALL: [ConferencePhase; 5] = [
        ConferencePhase::Scheduled,
        ConferencePhase::Ready,
        ConferencePhase::Active,
        ConferencePhase::Ended,
        ConferencePhase::Failed,
    ];

    /// The name as written in status.
    pub fn as_str(self) -> &'static str {
        match self {
            ConferencePhase::Scheduled => "Scheduled",
            ConferencePhase::Ready => "Ready",
            ConferencePhase::Active => "Active",
            ConferencePhase::Ended => "Ended",
            ConferencePhase::Failed => "Failed",
        }
    }
}

impl fmt::Display for ConferencePhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A Kubernetes-style condition.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Placed`, `Ready`, `Degraded` or `MediaPorts`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: ConditionStatus,
    /// A CamelCase reason, e.g. `NoCapacity`, `PodLost`.
    pub reason: String,
    /// A human-readable explanation.
    #[serde(default)]
    pub message: String,
    /// When `status` last changed.
    pub last_transition_time: DateTime<Utc>,
    /// The `metadata.generation` the condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// The status of a [`Condition`].
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConditionStatus {
    /// It holds.
    True,
    /// It does not hold.
    False,
    /// Not known yet.
    Unknown,
}

/// One occurrence's window.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct OccurrenceStatus {
    /// When it starts.
    pub start: DateTime<Utc>,
    /// When it ends.
    pub end: DateTime<Utc>,
}

/// Where a conference runs.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AssignmentStatus {
    /// The SFU pod's name.
    pub pod: String,
    /// The base URL clients connect to (the pod's signaling websocket).
    pub endpoint: String,
    /// The conference's UDP ports on that pod.
    pub udp_ports: UdpPortRange,
    /// Participants reserved on that pod.
    pub reserved: u32,
}

/// An inclusive UDP port range.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[x_kube(validation = Rule::new("self.last >= self.first").message("last must not be below first"))]
#[serde(rename_all = "camelCase")]
pub struct UdpPortRange {
    /// The first port.
    #[schemars(range(min = 1, max = 65535))]
    pub first: u16,
    /// The last port (inclusive).
    #[schemars(range(min = 1, max = 65535))]
    pub last: u16,
}

/// The CustomResourceDefinition of [`Conference`] as YAML, as committed in `crds/conference.yaml`
/// and printed by `conclave crdgen`.
pub fn conference_crd_yaml() -> String {
    let crd = Conference::crd();
    // A CRD is plain data (strings, numbers, maps and lists with string keys), which YAML
    // always represents, so serialization cannot fail.
    let yaml = serde_yaml::to_string(&crd).expect("BUG: a CRD always serializes to YAML");
    format!(
        "# Generated by `conclave crdgen` from the crds crate; do not edit.\n---\n{}",
        yaml.trim_start_matches("---\n")
    )
}

/// How long an ad hoc conference lasts when `schedule.duration` is not given.
pub const AD_HOC_DURATION: chrono::Duration = chrono::Duration::minutes(30);

impl ScheduleSpec {
    /// `duration` parsed, when present and well formed (see [`parse_duration`]).
    pub fn duration(&self) -> Option<chrono::Duration> {
        self.duration.as_deref().and_then(parse_duration)
    }
}

/// Parses a Go-style duration made of hours, minutes and seconds (`45m`, `1h30m`, `1.5h`), the
/// format Kubernetes' CEL `duration()` understands; `None` when it is not one.
pub fn parse_duration(text: &str) -> Option<chrono::Duration> {
    let mut total_ms: f64 = 0.0;
    let mut number = String::new();
    let mut any = false;
    for c in text.chars() {
        match c {
            '0'..='9' | '.' => number.push(c),
            'h' | 'm' | 's' => {
                let value: f64 = number.parse().ok()?;
                number.clear();
                let unit = match c {
                    'h' => 3_600_000.0,
                    'm' => 60_000.0,
                    _ => 1_000.0,
                };
                total_ms += value * unit;
                any = true;
            }
            _ => return None,
        }
    }
    if !number.is_empty() || !any || !total_ms.is_finite() || total_ms > 1e15 {
        return None;
    }
    // Bounded above, so the cast cannot overflow; sub-millisecond parts are dropped.
    Some(chrono::Duration::milliseconds(total_ms as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse_into_minutes_and_hours() {
        assert_eq!(parse_duration("45m"), Some(chrono::Duration::minutes(45)));
        assert_eq!(parse_duration("1h30m"), Some(chrono::Duration::minutes(90)));
        assert_eq!(parse_duration("1.5h"), Some(chrono::Duration::minutes(90)));
        assert_eq!(parse_duration("90s"), Some(chrono::Duration::seconds(90)));
        assert_eq!(parse_duration("PT1H"), None);
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration(""), None);
    }
}

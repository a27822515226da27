//! The SFU fleet as placement sees it, read from the pods themselves.
//!
//! An SFU pod (label `app.kubernetes.io/component=sfu`) advertises what placement needs in
//! annotations, usually set in the StatefulSet's pod template (see `docs/operator.md`):
//! - `conclave.dev/capacity`: participants it serves at most, e.g. `500`;
//! - `conclave.dev/udp-ports`: its UDP port range, inclusive, e.g. `40000-40999`, or one range
//!   per pod, `sfu-0=30000-30099,sfu-1=30100-30199` (a pod takes its own entry; the chart
//!   writes this form when every pod needs ports of its own, as NodePort Services do);
//! - `conclave.dev/endpoint`: the signaling websocket URL clients open; `{pod}`, `{namespace}`
//!   and `{podIP}` are replaced, so one template serves every replica
//!   (`wss://{pod}.sfu.conclave.example.com/rtc`).
//!
//! Each pod is in one [`PodState`]: **Ready** (takes new conferences and keeps its own),
//! **Suspect** (its `Ready` condition is False but its `sfu` container still runs: it keeps its
//! conferences and takes no new ones, for at most the pod grace), **Draining** (being deleted:
//! it keeps its conferences until the handoff, `deletion - drain handoff`, and takes no new
//! ones) or **Lost** (its container is not running, or it was not ready for longer than the
//! grace: its conferences are placed anew). The states are pure functions of the pod, of what
//! the operator saw of it before ([`Sighting`], times by the operator's own clock) and of `now`.
//!
//! A pod whose annotations are missing or malformed takes none and is counted as misconfigured.
//!
//! Ports are handed out per *port scope* (see [`port_scope`]): a pod on its node's network
//! (`hostNetwork`, or `hostPort`s in its media range) shares its node's ports with every other
//! such pod there, so its scope is the node; any other pod has ports of its own.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use crds::annotations;
use k8s_openapi::api::core::v1::Pod as KubePod;
use placement::{Pod, PortRange};

/// The name of the SFU's container in its pod (the chart's StatefulSet names it so).
pub const SFU_CONTAINER: &str = "sfu";

/// Why a pod cannot take conferences whatever its readiness.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Misconfigured {
    /// An annotation is absent.
    #[error("annotation {0} is missing")]
    Missing(&'static str),
    /// An annotation does not parse.
    #[error("annotation {name} is malformed: {value:?}")]
    Malformed {
        /// The annotation.
        name: &'static str,
        /// Its value.
        value: String,
    },
    /// The pod has no name.
    #[error("pod has no name")]
    Unnamed,
}

/// How long the operator bears with a pod that is not ready or is being deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How long a pod may stay not ready, its container running, before it counts as lost
    /// (`--pod-grace-seconds`).
    pub pod_grace: chrono::Duration,
    /// How long before a draining pod's deletion time its conferences move elsewhere
    /// (`--drain-handoff-seconds`).
    pub drain_handoff: chrono::Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            pod_grace: chrono::Duration::seconds(10),
            drain_handoff: chrono::Duration::seconds(15),
        }
    }
}

/// What the operator saw of one pod before, by its own clock.
///
/// A grace is measured from the operator's own observation, not from the pod's
/// `lastTransitionTime` (written by the kubelet with the node's clock): the clocks of nodes and
/// operator may disagree, and a kubelet that lost its node cannot write at all. A new leader
/// therefore starts a pod's grace anew when it first sees the pod not ready (at most one grace
/// more before a failover).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sighting {
    /// The pod's UID, so that a pod recreated under the same name starts afresh.
    pub uid: Option<String>,
    /// Since when the pod is seen not ready (with its container running); cleared once ready.
    pub not_ready_since: Option<DateTime<Utc>>,
    /// When its deletion (`metadata.deletionTimestamp`) was first seen.
    pub deletion_seen: Option<DateTime<Utc>>,
}

/// Where a pod stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodState {
    /// Ready and running: takes new conferences, keeps its own.
    Ready,
    /// Not ready, but its `sfu` container runs: keeps its conferences until `since + grace`,
    /// takes no new ones.
    Suspect {
        /// When the operator first saw it not ready.
        since: DateTime<Utc>,
    },
    /// Being deleted: keeps its conferences until `handoff_at`, takes no new ones.
    Draining {
        /// When its conferences move elsewhere (earlier when its container stopped).
        handoff_at: DateTime<Utc>,
    },
    /// Its conferences are placed anew.
    Lost(Lost),
}

/// Why a pod is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lost {
    /// Its `sfu` container is not running (terminated, waiting, or the pod finished).
    NotRunning,
    /// Not ready for longer than the grace.
    NotReady {
        /// Since when.
        since: DateTime<Utc>,
    },
}

impl PodState {
    /// Whether it keeps the conferences assigned to it at `now`.
    pub fn keeps(&self, now: DateTime<Utc>) -> bool {
        match self {
            PodState::Ready | PodState::Suspect { .. } => true,
            PodState::Draining { handoff_at } => now < *handoff_at,
            PodState::Lost(_) => false,
        }
    }

    /// The next moment its state changes by time alone (a grace or a handoff ending), so the
    /// conferences on it are evaluated again exactly then.
    pub fn changes_at(&self, timing: &Timing, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            PodState::Suspect { since } => Some(*since + timing.pod_grace),
            PodState::Draining { handoff_at } => Some(*handoff_at),
            PodState::Ready | PodState::Lost(_) => None,
        }
        .filter(|at| *at > now)
    }

    /// The metric label of the state.
    pub fn label(&self) -> &'static str {
        match self {
            PodState::Ready => "ready",
            PodState::Suspect { .. } => "suspect",
            PodState::Draining { .. } => "draining",
            PodState::Lost(_) => "not_ready",
        }
    }
}

/// What the operator knows of a pod after seeing it (again) at `now`.
pub fn observe(pod: &KubePod, previous: Option<&Sighting>, now: DateTime<Utc>) -> Sighting {
    let uid = pod.metadata.uid.clone();
    let previous = previous
        .filter(|p| p.uid == uid)
        .cloned()
        .unwrap_or_default();
    Sighting {
        uid,
        not_ready_since: if is_ready(pod) {
            None
        } else {
            previous.not_ready_since.or(Some(now))
        },
        deletion_seen: match pod.metadata.deletion_timestamp {
            Some(_) => previous.deletion_seen.or(Some(now)),
            None => None,
        },
    }
}

/// The pod's state at `now`, given what was seen of it.
///
/// A draining pod's handoff is `deletionTimestamp - drain_handoff`, but never later than the
/// operator's own sighting of the deletion plus `deletionGracePeriodSeconds` minus the handoff:
/// an operator whose clock runs behind the API server's still moves the conferences before the
/// kubelet stops the pod.
pub fn classify(
    pod: &KubePod,
    sighting: &Sighting,
    now: DateTime<Utc>,
    timing: &Timing,
) -> PodState {
    let running = container_running(pod);
    if let Some(deletion) = &pod.metadata.deletion_timestamp {
        let by_server = to_utc(deletion).unwrap_or(now);
        let grace = pod.metadata.deletion_grace_period_seconds.unwrap_or(0);
        let by_us = sighting.deletion_seen.unwrap_or(now) + chrono::Duration::seconds(grace);
        let mut handoff_at = by_server.min(by_us) - timing.drain_handoff;
        if running == Some(false) {
            // The SFU left early (it held no session any more): nothing left to wait for.
            handoff_at = handoff_at.min(now);
        }
        return PodState::Draining { handoff_at };
    }
    if running == Some(false) {
        return PodState::Lost(Lost::NotRunning);
    }
    if is_ready(pod) {
        return PodState::Ready;
    }
    let since = sighting.not_ready_since.unwrap_or(now);
    if now >= since + timing.pod_grace {
        PodState::Lost(Lost::NotReady { since })
    } else {
        PodState::Suspect { since }
    }
}

/// Whether the pod's `sfu` container runs: `Some(true)` when its status says `running`,
/// `Some(false)` when it says terminated or waiting, or the pod finished; `None` when the
/// kubelet reported nothing yet (judged by readiness alone).
pub fn container_running(pod: &KubePod) -> Option<bool> {
    let status = pod.status.as_ref()?;
    if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
        return Some(false);
    }
    let statuses = status.container_statuses.as_ref()?;
    let container = statuses
        .iter()
        .find(|c| c.name == SFU_CONTAINER)
        .or_else(|| (statuses.len() == 1).then(|| &statuses[0]))?;
    Some(
        container
            .state
            .as_ref()
            .is_some_and(|s| s.running.is_some()),
    )
}

fn to_utc(time: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(time.0.as_millisecond())
}

/// The pod as placement sees it in `state` at `now`, or why it is unusable.
///
/// # Errors
/// [`Misconfigured`] when the pod does not advertise capacity, ports and endpoint.
pub fn sfu_pod(pod: &KubePod, state: &PodState, now: DateTime<Utc>) -> Result<Pod, Misconfigured> {
    let name = pod.metadata.name.clone().ok_or(Misconfigured::Unnamed)?;
    let annotation = |key: &'static str| {
        pod.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(key))
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
            .ok_or(Misconfigured::Missing(key))
    };
    let malformed = |name: &'static str, value: &str| Misconfigured::Malformed {
        name,
        value: value.to_owned(),
    };
    let capacity_text = annotation(annotations::CAPACITY)?;
    let capacity: u32 = capacity_text
        .parse()
        .map_err(|_| malformed(annotations::CAPACITY, capacity_text))?;
    let ports_text = annotation(annotations::UDP_PORTS)?;
    let udp_ports = port_range_of(&name, ports_text)
        .ok_or_else(|| malformed(annotations::UDP_PORTS, ports_text))?;
    let template = annotation(annotations::ENDPOINT)?;
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let pod_ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.as_deref())
        .unwrap_or_default();
    let endpoint = template
        .replace("{pod}", &name)
        .replace("{namespace}", namespace)
        .replace("{podIP}", pod_ip);
    let scope = port_scope(pod, &name, udp_ports);
    // Not addressable yet (no pod IP for the endpoint, or on the node's network without a
    // node): it takes nothing new, like a pod that is not ready.
    let no_address = template.contains("{podIP}") && pod_ip.is_empty();
    let no_node = matches!(scope, Scope::NodeUnknown);
    let addressable = !no_address && !no_node;
    Ok(Pod {
        ready: addressable && *state == PodState::Ready,
        port_scope: scope.name(&name),
        name,
        endpoint,
        keeps: state.keeps(now),
        capacity,
        udp_ports,
    })
}

/// Where a pod's media ports live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// On the node's network: shared with every such pod on the node.
    Node(String),
    /// On the node's network, but not scheduled yet (no `spec.nodeName`).
    NodeUnknown,
    /// On the pod's own network.
    Pod,
}

impl Scope {
    /// The ledger's name of the scope: `node/<node>` or `pod/<pod>`.
    pub fn name(&self, pod: &str) -> String {
        match self {
            Scope::Node(node) => format!("node/{node}"),
            Scope::NodeUnknown | Scope::Pod => format!("pod/{pod}"),
        }
    }
}

/// The port scope of `pod` (named `name`, media ports `udp_ports`): its node when it uses the
/// node's network (`hostNetwork`) or maps any of its media ports on the node (a UDP `hostPort`
/// in `udp_ports`), else the pod itself.
pub fn port_scope(pod: &KubePod, name: &str, udp_ports: PortRange) -> Scope {
    let Some(spec) = pod.spec.as_ref() else {
        return Scope::Pod;
    };
    let host_network = spec.host_network.unwrap_or(false);
    let host_ports = spec
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .any(|port| {
            port.protocol.as_deref().unwrap_or("TCP") == "UDP"
                && port.host_port.is_some_and(|host| {
                    u16::try_from(host)
                        .is_ok_and(|host| host >= udp_ports.first && host <= udp_ports.last)
                })
        });
    if !(host_network || host_ports) {
        return Scope::Pod;
    }
    match spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        Some(node) => Scope::Node(node.to_owned()),
        None => {
            tracing::debug!(pod = %name, "on the node's network but not scheduled yet");
            Scope::NodeUnknown
        }
    }
}

/// The range `text` gives pod `name`: `first-last` for every pod, or the pod's own entry of
/// `pod=first-last,pod=first-last`.
pub fn port_range_of(name: &str, text: &str) -> Option<PortRange> {
    if !text.contains('=') {
        return parse_port_range(text);
    }
    text.split(',').find_map(|entry| {
        let (pod, range) = entry.split_once('=')?;
        (pod.trim() == name).then(|| parse_port_range(range))?
    })
}

/// The `Ready` condition is True and the pod is not terminating.
pub fn is_ready(pod: &KubePod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|conditions| {
                conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            })
}

/// `first-last`, inclusive, `first <= last`.
pub fn parse_port_range(text: &str) -> Option<PortRange> {
    let (first, last) = text.split_once('-')?;
    let range = PortRange {
        first: first.trim().parse().ok()?,
        last: last.trim().parse().ok()?,
    };
    (range.first > 0 && !range.is_empty()).then_some(range)
}

/// Counts of the fleet by state, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FleetCounts {
    /// Pods taking conferences.
    pub ready: i64,
    /// Pods not ready whose container runs, within the grace.
    pub suspect: i64,
    /// Pods being deleted.
    pub draining: i64,
    /// Pods lost: container not running, or not ready beyond the grace.
    pub not_ready: i64,
    /// Pods whose annotations are missing or malformed.
    pub misconfigured: i64,
}

/// The fleet at one moment: the usable pods as placement sees them, each pod's state, counts.
#[derive(Debug, Clone, Default)]
pub struct Fleet {
    /// Usable pods (annotations in order), sorted by name.
    pub pods: Vec<Pod>,
    /// The state of each usable pod, by name.
    pub states: HashMap<String, PodState>,
    /// Counts by state.
    pub counts: FleetCounts,
}

impl Fleet {
    /// The state of the pod named `name`; `None` when it is gone (or unusable).
    pub fn state(&self, name: &str) -> Option<&PodState> {
        self.states.get(name)
    }
}

/// The fleet made of `pods`, each classified with its sighting (`sighting_of`) at `now`.
pub fn survey<'a>(
    pods: impl IntoIterator<Item = &'a KubePod>,
    mut sighting_of: impl FnMut(&KubePod) -> Sighting,
    now: DateTime<Utc>,
    timing: &Timing,
) -> Fleet {
    let mut fleet = Fleet::default();
    for pod in pods {
        let state = classify(pod, &sighting_of(pod), now, timing);
        match sfu_pod(pod, &state, now) {
            Ok(usable) => {
                match state {
                    PodState::Ready if usable.ready => fleet.counts.ready += 1,
                    PodState::Ready | PodState::Lost(_) => fleet.counts.not_ready += 1,
                    PodState::Suspect { .. } => fleet.counts.suspect += 1,
                    PodState::Draining { .. } => fleet.counts.draining += 1,
                }
                fleet.states.insert(usable.name.clone(), state);
                fleet.pods.push(usable);
            }
            Err(_) => fleet.counts.misconfigured += 1,
        }
    }
    fleet.pods.sort_by(|a, b| a.name.cmp(&b.name));
    fleet
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
        ContainerStatus, PodCondition, PodStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use std::collections::BTreeMap;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().expect("rfc3339")
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        utc("2026-03-02T10:00:00Z") + chrono::Duration::seconds(seconds)
    }

    fn pod(annotations: &[(&str, &str)], ready: bool) -> KubePod {
        let mut pod = KubePod::default();
        pod.metadata.name = Some("sfu-0".into());
        pod.metadata.namespace = Some("conclave".into());
        pod.metadata.uid = Some("uid-1".into());
        pod.metadata.annotations = Some(
            annotations
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>(),
        );
        pod.status = Some(PodStatus {
            pod_ip: Some("10.0.0.7".into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                ..PodCondition::default()
            }]),
            ..PodStatus::default()
        });
        pod
    }

    fn with_container(mut pod: KubePod, state: ContainerState) -> KubePod {
        if let Some(status) = pod.status.as_mut() {
            status.container_statuses = Some(vec![ContainerStatus {
                name: SFU_CONTAINER.into(),
                state: Some(state),
                ..ContainerStatus::default()
            }]);
        }
        pod
    }

    fn running() -> ContainerState {
        ContainerState {
            running: Some(ContainerStateRunning::default()),
            ..ContainerState::default()
        }
    }

    fn deleting(mut pod: KubePod, deletion: DateTime<Utc>, grace: i64) -> KubePod {
        pod.metadata.deletion_timestamp = Some(Time(
            k8s_openapi::jiff::Timestamp::from_millisecond(deletion.timestamp_millis())
                .expect("in range"),
        ));
        pod.metadata.deletion_grace_period_seconds = Some(grace);
        pod
    }

    const GOOD: [(&str, &str); 3] = [
        (annotations::CAPACITY, "500"),
        (annotations::UDP_PORTS, "40000-40999"),
        (
            annotations::ENDPOINT,
            "wss://{pod}.sfu.{namespace}.example.com/rtc",
        ),
    ];

    /// The state of `pod` at `now` after the operator saw it at each of `seen` (in order).
    fn state_after(pod: &KubePod, seen: &[DateTime<Utc>], now: DateTime<Utc>) -> PodState {
        let mut sighting = None;
        for when in seen {
            sighting = Some(observe(pod, sighting.as_ref(), *when));
        }
        let sighting = observe(pod, sighting.as_ref(), now);
        classify(pod, &sighting, now, &Timing::default())
    }

    #[test]
    fn a_pod_advertises_capacity_ports_and_endpoint_in_annotations() {
        let parsed = sfu_pod(&pod(&GOOD, true), &PodState::Ready, at(0)).expect("usable");
        assert_eq!(parsed.capacity, 500);
        assert_eq!(
            parsed.udp_ports,
            PortRange {
                first: 40000,
                last: 40999
            }
        );
        assert_eq!(parsed.endpoint, "wss://sfu-0.sfu.conclave.example.com/rtc");
        assert!(parsed.ready && parsed.keeps);
    }

    #[test]
    fn a_ready_pod_with_its_container_running_is_ready() {
        let ready = with_container(pod(&GOOD, true), running());
        assert_eq!(state_after(&ready, &[], at(0)), PodState::Ready);
        // Before the kubelet reports containers, readiness alone decides.
        assert_eq!(state_after(&pod(&GOOD, true), &[], at(0)), PodState::Ready);
    }

    #[test]
    fn a_pod_not_ready_with_its_container_running_is_suspect_until_the_grace_ends() {
        let flapping = with_container(pod(&GOOD, false), running());
        // First seen not ready at 0: suspect, it keeps its conferences but takes no new one.
        let state = state_after(&flapping, &[at(0)], at(9));
        assert_eq!(state, PodState::Suspect { since: at(0) });
        assert!(state.keeps(at(9)));
        let usable = sfu_pod(&flapping, &state, at(9)).expect("usable");
        assert!(!usable.ready && usable.keeps);
        // The moment the grace ends is when its conferences are looked at again.
        assert_eq!(state.changes_at(&Timing::default(), at(9)), Some(at(10)));
        // Ten seconds of continuous not-ready: lost.
        assert_eq!(
            state_after(&flapping, &[at(0), at(5)], at(10)),
            PodState::Lost(Lost::NotReady { since: at(0) })
        );
    }

    #[test]
    fn readiness_back_within_the_grace_starts_the_next_grace_afresh() {
        let flapping = with_container(pod(&GOOD, false), running());
        let ready = with_container(pod(&GOOD, true), running());
        let mut sighting = observe(&flapping, None, at(0));
        sighting = observe(&ready, Some(&sighting), at(8));
        assert_eq!(sighting.not_ready_since, None);
        sighting = observe(&flapping, Some(&sighting), at(9));
        assert_eq!(
            classify(&flapping, &sighting, at(15), &Timing::default()),
            PodState::Suspect { since: at(9) }
        );
    }

    #[test]
    fn a_container_that_is_not_running_makes_the_pod_lost_at_once() {
        let terminated = ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: 137,
                ..ContainerStateTerminated::default()
            }),
            ..ContainerState::default()
        };
        let waiting = ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some("CrashLoopBackOff".into()),
                ..ContainerStateWaiting::default()
            }),
            ..ContainerState::default()
        };
        for state in [terminated, waiting] {
            let dead = with_container(pod(&GOOD, false), state);
            assert_eq!(
                state_after(&dead, &[], at(0)),
                PodState::Lost(Lost::NotRunning)
            );
            assert!(
                !sfu_pod(&dead, &state_after(&dead, &[], at(0)), at(0))
                    .expect("usable")
                    .keeps
            );
        }
        let mut finished = pod(&GOOD, false);
        if let Some(status) = finished.status.as_mut() {
            status.phase = Some("Failed".into());
        }
        assert_eq!(
            state_after(&finished, &[], at(0)),
            PodState::Lost(Lost::NotRunning)
        );
    }

    #[test]
    fn a_deleted_pod_drains_until_the_handoff_before_its_deletion_time() {
        // Deleted at 0 with a grace of 60 s: the kubelet stops it at 60, conferences move at 45.
        let draining = deleting(with_container(pod(&GOOD, false), running()), at(60), 60);
        let state = state_after(&draining, &[at(0)], at(30));
        assert_eq!(state, PodState::Draining { handoff_at: at(45) });
        assert!(state.keeps(at(44)) && !state.keeps(at(45)));
        assert_eq!(state.changes_at(&Timing::default(), at(30)), Some(at(45)));
        let usable = sfu_pod(&draining, &state, at(30)).expect("usable");
        assert!(!usable.ready && usable.keeps);
        // Its container stopped early (no session left): the handoff is now.
        let stopped = deleting(
            with_container(
                pod(&GOOD, false),
                ContainerState {
                    terminated: Some(ContainerStateTerminated::default()),
                    ..ContainerState::default()
                },
            ),
            at(60),
            60,
        );
        assert!(!state_after(&stopped, &[at(0)], at(30)).keeps(at(30)));
    }

    #[test]
    fn an_operator_clock_behind_the_api_servers_still_hands_off_in_time() {
        // The API server says the pod stops at 60 by its clock; this operator's clock runs 100 s
        // behind, so it saw the deletion at -100 by its own: it hands off 45 s after that.
        let draining = deleting(with_container(pod(&GOOD, false), running()), at(60), 60);
        assert_eq!(
            state_after(&draining, &[at(-100)], at(-90)),
            PodState::Draining {
                handoff_at: at(-55)
            }
        );
    }

    #[test]
    fn a_pod_recreated_under_the_same_name_starts_afresh() {
        let old = deleting(with_container(pod(&GOOD, false), running()), at(60), 60);
        let seen = observe(&old, None, at(0));
        let mut new = with_container(pod(&GOOD, false), running());
        new.metadata.uid = Some("uid-2".into());
        let fresh = observe(&new, Some(&seen), at(100));
        assert_eq!(fresh.deletion_seen, None);
        assert_eq!(fresh.not_ready_since, Some(at(100)));
    }

    #[test]
    fn missing_or_malformed_annotations_make_a_pod_misconfigured() {
        assert_eq!(
            sfu_pod(&pod(&GOOD[..2], true), &PodState::Ready, at(0)),
            Err(Misconfigured::Missing(annotations::ENDPOINT))
        );
        let bad = [GOOD[0], (annotations::UDP_PORTS, "41000-40000"), GOOD[2]];
        assert!(matches!(
            sfu_pod(&pod(&bad, true), &PodState::Ready, at(0)),
            Err(Misconfigured::Malformed { .. })
        ));
        let suspect = with_container(pod(&GOOD, false), running());
        let fleet = survey(
            [&pod(&GOOD, true), &pod(&bad, true), &suspect],
            |p| observe(p, None, at(0)),
            at(0),
            &Timing::default(),
        );
        assert_eq!(fleet.pods.len(), 2);
        assert_eq!(
            fleet.counts,
            FleetCounts {
                ready: 1,
                suspect: 1,
                misconfigured: 1,
                ..FleetCounts::default()
            }
        );
    }

    fn with_spec(mut pod: KubePod, spec: serde_json::Value) -> KubePod {
        pod.spec = Some(serde_json::from_value(spec).expect("pod spec"));
        pod
    }

    #[test]
    fn a_pod_on_the_nodes_network_shares_its_nodes_port_scope() {
        let host_network = with_spec(
            pod(&GOOD, true),
            serde_json::json!({
                "hostNetwork": true,
                "nodeName": "node-a",
                "containers": [{ "name": "sfu" }],
            }),
        );
        let parsed = sfu_pod(&host_network, &PodState::Ready, at(0)).expect("usable");
        assert_eq!(parsed.port_scope, "node/node-a");
        assert!(parsed.ready);

        // hostPorts inside the media range put the pod on the node's ports too.
        let host_ports = with_spec(
            pod(&GOOD, true),
            serde_json::json!({
                "nodeName": "node-b",
                "containers": [{ "name": "sfu", "ports": [
                    { "containerPort": 7880, "hostPort": 7880, "protocol": "TCP" },
                    { "containerPort": 40000, "hostPort": 40000, "protocol": "UDP" },
                ] }],
            }),
        );
        assert_eq!(
            sfu_pod(&host_ports, &PodState::Ready, at(0))
                .expect("usable")
                .port_scope,
            "node/node-b"
        );

        // A TCP hostPort (signaling) or a UDP one outside the range does not.
        let other_ports = with_spec(
            pod(&GOOD, true),
            serde_json::json!({
                "nodeName": "node-b",
                "containers": [{ "name": "sfu", "ports": [
                    { "containerPort": 7880, "hostPort": 7880, "protocol": "TCP" },
                    { "containerPort": 3478, "hostPort": 3478, "protocol": "UDP" },
                ] }],
            }),
        );
        assert_eq!(
            sfu_pod(&other_ports, &PodState::Ready, at(0))
                .expect("usable")
                .port_scope,
            "pod/sfu-0"
        );
        // Nor does a pod on the cluster network.
        assert_eq!(
            sfu_pod(&pod(&GOOD, true), &PodState::Ready, at(0))
                .expect("usable")
                .port_scope,
            "pod/sfu-0"
        );
    }

    #[test]
    fn a_pod_on_the_nodes_network_without_a_node_yet_takes_no_conference() {
        let unscheduled = with_spec(
            pod(&GOOD, true),
            serde_json::json!({ "hostNetwork": true, "containers": [{ "name": "sfu" }] }),
        );
        let parsed = sfu_pod(&unscheduled, &PodState::Ready, at(0)).expect("usable");
        assert!(!parsed.ready);
        assert_eq!(
            port_scope(&unscheduled, "sfu-0", parsed.udp_ports),
            Scope::NodeUnknown
        );
    }

    #[test]
    fn each_pod_takes_its_own_entry_of_a_per_pod_port_annotation() {
        let per_pod = "sfu-0=30000-30099, sfu-1=30100-30199";
        assert_eq!(
            port_range_of("sfu-1", per_pod),
            Some(PortRange {
                first: 30100,
                last: 30199
            })
        );
        assert_eq!(port_range_of("sfu-2", per_pod), None);
        let annotations = [GOOD[0], (annotations::UDP_PORTS, per_pod), GOOD[2]];
        assert_eq!(
            sfu_pod(&pod(&annotations, true), &PodState::Ready, at(0))
                .expect("usable")
                .udp_ports,
            PortRange {
                first: 30000,
                last: 30099
            }
        );
        let elsewhere = [
            GOOD[0],
            (annotations::UDP_PORTS, "sfu-7=30000-30099"),
            GOOD[2],
        ];
        assert!(matches!(
            sfu_pod(&pod(&elsewhere, true), &PodState::Ready, at(0)),
            Err(Misconfigured::Malformed { .. })
        ));
    }
}

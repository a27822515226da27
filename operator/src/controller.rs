//! The IO shell around the pure core: the kube-runtime Controller for `Conference`, its
//! `reconcile` (wrapped in a finalizer), `error_policy`, and the SFU pod watch that triggers
//! failover.
//!
//! Writes are fenced: each checks the leader's [`Fence`] first, carries the resourceVersion of
//! the object it was computed from (a deposed leader's late write fails 409 Conflict) and gives
//! up after the API timeout. The status, which holds the assignment, is written before the
//! `conclave.dev/sfu-pod` label, an index derived from it: a crash in between leaves a label that
//! the next reconcile corrects from the status, never ports that only a label knows.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use crds::{Conference, ConferencePhase, labels};
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::Pod as KubePod;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::{self, Action};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use placement::{Ledger, Policy, Request, Sizing, evaluate};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::clock::Clock;
use crate::conference::{
    Notice, Outcome, Placement, PodLoss, Severity, desired_status, notices, observed,
    same_owned_fields, schedule_of,
};
use crate::error::{Error, Result};
use crate::fleet::{self, Fleet, Lost, PodState, Sighting, Timing};
use crate::leader::Fence;
use crate::metrics::Metrics;

/// The finalizer that makes deletion release the assignment first.
pub const FINALIZER: &str = "conclave.dev/placement";
/// The field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "conclave-operator";
/// How many conferences waiting for capacity are retried when capacity frees up.
const WAKE_AT_MOST: usize = 256;
/// Retry a failed placement at least this often even without a fleet change.
const PLACEMENT_RETRY: Duration = Duration::from_secs(60);
/// Retry a write refused as a conflict this soon (the watch brings the newer version).
const CONFLICT_RETRY: Duration = Duration::from_millis(200);

/// What the operator's shell is told at start.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Pod grace and drain handoff.
    pub timing: Timing,
    /// How long one API call may take.
    pub api_timeout: Duration,
    /// Namespace of conferences and SFU pods; all namespaces when `None`.
    pub namespace: Option<String>,
    /// Label selector of SFU pods.
    pub sfu_selector: String,
    /// Lead time and end grace.
    pub policy: Policy,
    /// Ports per participant.
    pub sizing: Sizing,
    /// How many conferences reconcile at once.
    pub concurrency: u16,
    /// This replica's identity (Events' reporting instance).
    pub identity: String,
}

/// What every reconcile shares. Locks are never held across an `.await`.
pub struct Context {
    client: Client,
    clock: Arc<dyn Clock>,
    policy: Policy,
    sizing: Sizing,
    timing: Timing,
    api_timeout: Duration,
    /// This replica's right to write.
    fence: Fence,
    /// What the operator saw of each SFU pod before (by name), by its own clock.
    sightings: Mutex<HashMap<String, Sighting>>,
    /// The authoritative record of assignments while this replica leads.
    ledger: Mutex<Ledger>,
    pods: Store<KubePod>,
    conferences: Store<Conference>,
    /// Conferences that want an assignment but found no room.
    waiting: Mutex<HashSet<ObjectRef<Conference>>>,
    /// What placement saw of each pod last time, to react only to changes that matter.
    fleet_seen: Mutex<HashMap<String, placement::Pod>>,
    triggers: mpsc::UnboundedSender<ObjectRef<Conference>>,
    recorder: Recorder,
    metrics: Arc<Metrics>,
    phases: Mutex<HashMap<ObjectRef<Conference>, ConferencePhase>>,
    failures: Mutex<HashMap<ObjectRef<Conference>, u32>>,
    issued_meeting_ids: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("policy", &self.policy)
            .field("sizing", &self.sizing)
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind; carry on with it.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The ledger's key of a conference: `namespace/name`.
fn ledger_key(oref: &ObjectRef<Conference>) -> String {
    format!(
        "{}/{}",
        oref.namespace.as_deref().unwrap_or_default(),
        oref.name
    )
}

fn oref_from_key(key: &str) -> Option<ObjectRef<Conference>> {
    let (namespace, name) = key.split_once('/')?;
    let oref = ObjectRef::new(name);
    Some(if namespace.is_empty() {
        oref
    } else {
        oref.within(namespace)
    })
}

fn to_utc(time: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(time.0.as_millisecond())
}

/// Whether `value` may be a label value (63 characters, alphanumerics with `-_.` inside).
fn is_label_value(value: &str) -> bool {
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

/// Aborts a spawned task when dropped, so that nothing outlives the term it served (also when
/// the operator's own task is aborted, as a killed process would be).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Context {
    /// One fenced API call: refused with [`Error::LeadershipLost`] once this replica may no
    /// longer write, abandoned with [`Error::Timeout`] after the API timeout.
    async fn call<T>(
        &self,
        what: &'static str,
        call: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T> {
        self.fence.check()?;
        match tokio::time::timeout(self.api_timeout, call).await {
            Ok(answer) => Ok(answer?),
            Err(_) => Err(Error::Timeout {
                what,
                seconds: self.api_timeout.as_secs_f64(),
            }),
        }
    }

    /// The fleet now: every SFU pod classified with what was seen of it before (the sighting is
    /// recorded, so a pod first seen here starts its grace here).
    fn fleet(&self, now: DateTime<Utc>) -> Fleet {
        let pods = self.pods.state();
        let mut sightings = lock(&self.sightings);
        fleet::survey(
            pods.iter().map(|p| p.as_ref()),
            |pod| {
                let name = pod.name_any();
                let seen = fleet::observe(pod, sightings.get(&name), now);
                sightings.insert(name, seen.clone());
                seen
            },
            now,
            &self.timing,
        )
    }

    /// Retries conferences waiting for capacity (some was freed or a pod came).
    fn wake_waiting(&self) {
        let waiting: Vec<ObjectRef<Conference>> = lock(&self.waiting)
            .iter()
            .take(WAKE_AT_MOST)
            .cloned()
            .collect();
        for oref in waiting {
            let _ = self.triggers.send(oref);
        }
    }

    /// Reacts to a pod watch event: when what placement sees of a pod changed, the pod's
    /// conferences are re-evaluated (a suspect pod keeps them, a lost one loses them, a draining
    /// one keeps them until its handoff) and, when it can take conferences, the waiting ones are
    /// retried. After a (re-)list, pods that vanished meanwhile count as deleted.
    fn pod_event(&self, event: &watcher::Event<KubePod>) {
        match event {
            watcher::Event::Apply(pod) | watcher::Event::InitApply(pod) => {
                let now = self.clock.now();
                let name = pod.name_any();
                let seen = {
                    let mut sightings = lock(&self.sightings);
                    let seen = fleet::observe(pod, sightings.get(&name), now);
                    sightings.insert(name.clone(), seen.clone());
                    seen
                };
                let state = fleet::classify(pod, &seen, now, &self.timing);
                let usable = fleet::sfu_pod(pod, &state, now).ok();
                self.pod_changed(&name, usable, Some(state));
            }
            watcher::Event::Delete(pod) => {
                let name = pod.name_any();
                lock(&self.sightings).remove(&name);
                self.pod_changed(&name, None, None);
            }
            watcher::Event::Init => {}
            watcher::Event::InitDone => {
                let listed: HashSet<String> =
                    self.pods.state().iter().map(|p| p.name_any()).collect();
                let vanished: Vec<String> = lock(&self.fleet_seen)
                    .keys()
                    .filter(|name| !listed.contains(*name))
                    .cloned()
                    .collect();
                for name in vanished {
                    lock(&self.sightings).remove(&name);
                    self.pod_changed(&name, None, None);
                }
            }
        }
    }

    fn pod_changed(&self, name: &str, now_seen: Option<placement::Pod>, state: Option<PodState>) {
        let before = {
            let mut seen = lock(&self.fleet_seen);
            match &now_seen {
                Some(p) => seen.insert(name.to_owned(), p.clone()),
                None => seen.remove(name),
            }
        };
        if before == now_seen {
            return;
        }
        let on_pod: Vec<ObjectRef<Conference>> = lock(&self.ledger)
            .assignments()
            .filter(|a| a.pod == name)
            .filter_map(|a| oref_from_key(&a.conference))
            .collect();
        let state_label = match (&now_seen, &state) {
            (None, _) => "gone",
            (Some(_), Some(state)) => state.label(),
            (Some(_), None) => "misconfigured",
        };
        let until = state.and_then(|s| s.changes_at(&self.timing, self.clock.now()));
        info!(
            pod = %name,
            state = state_label,
            takes_new = now_seen.as_ref().is_some_and(|p| p.ready),
            keeps_its_own = now_seen.as_ref().is_some_and(|p| p.ready || p.keeps),
            until = ?until.map(|t| t.to_rfc3339()),
            conferences = on_pod.len(),
            "SFU pod changed"
        );
        for oref in on_pod {
            let _ = self.triggers.send(oref);
        }
        if now_seen.as_ref().is_some_and(|p| p.ready) {
            self.wake_waiting();
        }
        self.observe_fleet();
    }

    /// Updates the fleet gauges.
    fn observe_fleet(&self) {
        let Fleet {
            pods: usable,
            counts,
            ..
        } = self.fleet(self.clock.now());
        let ledger = lock(&self.ledger);
        let (mut used, mut free) = (0i64, 0i64);
        for pod in usable.iter().filter(|p| p.ready) {
            let reserved = ledger.reserved_on(&pod.name).min(pod.capacity);
            used += i64::from(reserved);
            free += i64::from(pod.capacity - reserved);
        }
        drop(ledger);
        self.metrics.observe_fleet(counts, used, free);
    }

    /// A meeting ID for a conference without one: nine digits derived from its UID, unique
    /// among the conferences this operator knows.
    fn meeting_id_for(&self, conference: &Conference) -> String {
        let seed = conference.uid().unwrap_or_else(|| conference.name_any());
        let mut issued = lock(&self.issued_meeting_ids);
        let mut candidate = String::new();
        for attempt in 0u64..1000 {
            // FNV-1a over the seed and the attempt number.
            let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
            for byte in seed.bytes().chain(attempt.to_le_bytes()) {
                hash ^= u64::from(byte);
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
            candidate = format!("{}", 100_000_000 + hash % 900_000_000);
            let taken = issued.contains(&candidate)
                || self
                    .conferences
                    .find(|c| c.spec.meeting_id.as_deref() == Some(candidate.as_str()))
                    .is_some();
            if !taken {
                break;
            }
        }
        issued.insert(candidate.clone());
        candidate
    }

    async fn publish(&self, conference: &Conference, mut notice: Notice) {
        // A deposed leader tells nothing: the new one tells what it decides.
        if self.fence.check().is_err() {
            return;
        }
        // What a person did through the API carries that request's ID, so that the Event, the
        // API's log line and the person's report meet (not for what the cluster did).
        if !matches!(notice.action, "Failover" | "Drain")
            && let Some(id) = conference.annotations().get(crds::annotations::REQUEST_ID)
        {
            notice.note = format!("{} (API request {id})", notice.note);
        }
        let event = KubeEvent {
            type_: match notice.severity {
                Severity::Normal => EventType::Normal,
                Severity::Warning => EventType::Warning,
            },
            reason: notice.reason.clone(),
            note: Some(notice.note.clone()),
            action: notice.action.to_owned(),
            secondary: None,
        };
        let published = tokio::time::timeout(
            self.api_timeout,
            self.recorder.publish(&event, &conference.object_ref(&())),
        )
        .await;
        // Events are best effort: the status carries the same facts.
        match published {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                warn!(cause = %err, reason = %notice.reason, "publishing an event failed");
            }
            Err(_) => warn!(reason = %notice.reason, "publishing an event timed out"),
        }
    }
}

/// Reconciles one conference: places or releases it and reports the result in its status.
///
/// It stops at once, with [`Error::LeadershipLost`], when this replica's fence is revoked, and
/// gives up after a bound even if a call inside kube-runtime's finalizer helper hangs.
///
/// # Errors
/// [`Error`] when the API server refuses a write; the controller retries with backoff.
pub async fn reconcile(conference: Arc<Conference>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let oref = ObjectRef::from_obj(conference.as_ref());
    let span = info_span!("reconcile", conference = %ledger_key(&oref));
    let work = async {
        let namespace = conference
            .namespace()
            .ok_or(Error::MissingMetadata("namespace"))?;
        let api: Api<Conference> = Api::namespaced(ctx.client.clone(), &namespace);
        let (api_ref, ctx_ref) = (&api, ctx.as_ref());
        finalizer(&api, FINALIZER, conference, |event| async move {
            match event {
                FinalizerEvent::Apply(conference) => apply(conference, api_ref, ctx_ref).await,
                FinalizerEvent::Cleanup(conference) => cleanup(conference, ctx_ref).await,
            }
        })
        .await
        .map_err(|err| Error::Finalizer(Box::new(err)))
    };
    // A reconcile makes a handful of calls, each bounded by the API timeout; this bounds the
    // finalizer helper's own calls too.
    let bound = ctx.api_timeout.saturating_mul(4);
    let result = async {
        tokio::select! {
            () = ctx.fence.revoked() => Err(Error::LeadershipLost),
            done = tokio::time::timeout(bound, work) => done.unwrap_or(Err(Error::Timeout {
                what: "reconcile",
                seconds: bound.as_secs_f64(),
            })),
        }
    }
    .instrument(span)
    .await;
    ctx.metrics
        .reconcile_duration
        .observe(started.elapsed().as_secs_f64());
    let label = match &result {
        Ok(_) => "ok",
        Err(err) => err.metric_label(),
    };
    ctx.metrics.reconciles.with_label_values(&[label]).inc();
    if result.is_ok() {
        lock(&ctx.failures).remove(&oref);
    }
    ctx.observe_fleet();
    result
}

/// Logs, counts (in [`reconcile`]) and backs off exponentially per conference: 1 s, 2 s, 4 s, …
/// up to 5 minutes. A conflict (someone wrote the conference since it was read) is retried
/// shortly without backing off: the watch brings the newer version meanwhile.
pub fn error_policy(conference: Arc<Conference>, err: &Error, ctx: Arc<Context>) -> Action {
    let oref = ObjectRef::from_obj(conference.as_ref());
    if err.is_leadership_lost() {
        debug!(conference = %ledger_key(&oref), "not retried: leadership lost");
        return Action::await_change();
    }
    if err.is_conflict() {
        debug!(conference = %ledger_key(&oref), "written meanwhile; retrying with the newer version");
        return Action::requeue(CONFLICT_RETRY);
    }
    let failures = {
        let mut failures = lock(&ctx.failures);
        let n = failures.entry(oref.clone()).or_insert(0);
        *n = n.saturating_add(1);
        *n
    };
    let delay = Duration::from_secs(1u64 << failures.min(9).saturating_sub(1))
        .min(Duration::from_secs(300));
    warn!(conference = %ledger_key(&oref), cause = %err, failures, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// `metadata` carrying the resourceVersion a write is based on: the API server refuses the
/// write with 409 Conflict when the object changed since (for apply and merge patches alike).
fn precondition(version: Option<&str>) -> serde_json::Map<String, serde_json::Value> {
    let mut metadata = serde_json::Map::new();
    if let Some(version) = version {
        metadata.insert("resourceVersion".into(), json!(version));
    }
    metadata
}

/// [`precondition`] with the object's name, as an apply body names it.
fn named(name: &str, version: Option<&str>) -> serde_json::Map<String, serde_json::Value> {
    let mut metadata = precondition(version);
    metadata.insert("name".into(), json!(name));
    metadata
}

/// The assignment a conference's status records, as the ledger holds it.
fn recorded_assignment(
    key: &str,
    conference: &Conference,
    pods: &[placement::Pod],
) -> Option<placement::Assignment> {
    let assignment = conference.status.as_ref()?.assignment.clone()?;
    // In the port scope its pod has now; a pod that is gone binds nothing on any node.
    let port_scope = pods
        .iter()
        .find(|pod| pod.name == assignment.pod)
        .map_or_else(
            || fleet::Scope::Pod.name(&assignment.pod),
            |pod| pod.port_scope.clone(),
        );
    Some(placement::Assignment {
        conference: key.to_owned(),
        pod: assignment.pod,
        endpoint: assignment.endpoint,
        udp_ports: placement::PortRange {
            first: assignment.udp_ports.first,
            last: assignment.udp_ports.last,
        },
        port_scope,
        reserved: assignment.reserved,
    })
}

/// Why the conferences of `pod` are not held there any more, as the fleet says now.
fn loss_of(fleet: &Fleet, pod: &str, now: DateTime<Utc>) -> PodLoss {
    match fleet.state(pod) {
        None => PodLoss::Gone,
        Some(PodState::Lost(Lost::NotRunning)) => PodLoss::NotRunning,
        Some(PodState::Lost(Lost::NotReady { since })) => PodLoss::NotReadyFor {
            seconds: (now - *since).num_seconds(),
        },
        Some(PodState::Draining { .. }) => PodLoss::Drained,
        Some(PodState::Ready | PodState::Suspect { .. }) => PodLoss::None,
    }
}

async fn apply(
    conference: Arc<Conference>,
    api: &Api<Conference>,
    ctx: &Context,
) -> Result<Action> {
    let now = ctx.clock.now();
    let name = conference.name_any();
    let oref = ObjectRef::from_obj(conference.as_ref());
    let key = ledger_key(&oref);
    let old = conference.status.as_ref();
    let generation = conference.metadata.generation;
    let spec = &conference.spec;
    // Every write below is conditional on the version this decision was made from.
    let mut version = conference.resource_version();

    if spec.meeting_id.is_none() {
        let id = ctx.meeting_id_for(&conference);
        info!(meeting_id = %id, "generated a meeting ID");
        // A merge patch, not an apply: the field then stays when the operator stops sending it.
        ctx.call(
            "write the meeting ID",
            api.patch(
                &name,
                &PatchParams {
                    field_manager: Some(FIELD_MANAGER.into()),
                    ..PatchParams::default()
                },
                &Patch::Merge(json!({
                    "metadata": precondition(version.as_deref()),
                    "spec": { "meetingId": id },
                })),
            ),
        )
        .await?;
        // The change comes back through the watch and reconciles again.
        return Ok(Action::await_change());
    }

    let fleet = ctx.fleet(now);
    let created = conference
        .metadata
        .creation_timestamp
        .as_ref()
        .and_then(to_utc);
    let previous_pod = old
        .and_then(|s| s.assignment.as_ref())
        .map(|a| a.pod.clone());
    let loss = previous_pod
        .as_deref()
        .map_or(PodLoss::None, |pod| loss_of(&fleet, pod, now));
    let outcome = match schedule_of(spec, created, now) {
        Err(invalid) => {
            if lock(&ctx.ledger).release(&key).is_some() {
                ctx.wake_waiting();
            }
            Outcome::Invalid(invalid)
        }
        Ok(schedule) => {
            let decision = evaluate(&schedule, &ctx.policy, &observed(old), now);
            let next = decision.occurrence.and_then(|current| {
                schedule
                    .occurrences_ending_after(current.end, 2)
                    .into_iter()
                    .find(|o| o.start >= current.end)
            });
            let placement = if decision.placed {
                let request = Request {
                    conference: key.clone(),
                    participants: spec.max_participants,
                };
                let placed = {
                    let mut ledger = lock(&ctx.ledger);
                    // An assignment in status that the ledger does not know (written after this
                    // term's ledger was built, e.g. late by a previous leader) is adopted when
                    // its ports are free, so that it is neither handed out twice nor moved.
                    if ledger.get(&key).is_none()
                        && let Some(recorded) = recorded_assignment(&key, &conference, &fleet.pods)
                        && let Err(conflict) = ledger.insert(recorded)
                    {
                        warn!(cause = %conflict, "the assignment in status clashes; placing anew");
                    }
                    let before = ledger.get(&key).map(|a| a.pod.clone());
                    ledger
                        .place(&request, &fleet.pods, &ctx.sizing)
                        .map(|assignment| (before, assignment))
                };
                match placed {
                    Ok((before, assignment)) => {
                        // The ledger, not the cached status (which may not show this
                        // operator's last write yet), tells whether the conference moved: a
                        // second reconcile before the status comes back counts no new move.
                        if let Some(from) = before.filter(|pod| *pod != assignment.pod) {
                            match loss_of(&fleet, &from, now) {
                                PodLoss::Drained => ctx.metrics.drained.inc(),
                                _ => ctx.metrics.failovers.inc(),
                            }
                        }
                        lock(&ctx.waiting).remove(&oref);
                        Placement::Held(assignment)
                    }
                    Err(err) => {
                        lock(&ctx.waiting).insert(oref.clone());
                        ctx.metrics
                            .placement_failures
                            .with_label_values(&[err.reason()])
                            .inc();
                        Placement::Failed(err)
                    }
                }
            } else {
                lock(&ctx.waiting).remove(&oref);
                if lock(&ctx.ledger).release(&key).is_some() {
                    ctx.wake_waiting();
                }
                Placement::NotWanted
            };
            Outcome::Evaluated {
                decision,
                next,
                placement,
            }
        }
    };
    let desired = desired_status(old, generation, now, &outcome, &loss);

    // The status first: it holds the assignment (the authority the ledger is rebuilt from).
    if !same_owned_fields(old, &desired) {
        let body = json!({
            "apiVersion": "conclave.dev/v1alpha1",
            "kind": "Conference",
            "metadata": named(&name, version.as_deref()),
            "status": desired,
        });
        let written = ctx
            .call(
                "write the status",
                api.patch_status(
                    &name,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(&body),
                ),
            )
            .await?;
        version = written.resource_version();
        debug!(phase = ?desired.phase, pod = ?desired.assignment.as_ref().map(|a| &a.pod), "status applied");
    }

    // Then the labels, derived from it: the pod (so an SFU pod watches only its conferences) and
    // the owner (so the API lists an owner's conferences), both owned by the operator's field
    // manager. A crash before this write leaves the old label, corrected here next time.
    let mut want_labels = serde_json::Map::new();
    if let Some(assignment) = &desired.assignment {
        want_labels.insert(labels::SFU_POD.into(), json!(assignment.pod));
    }
    if is_label_value(&spec.owner) {
        want_labels.insert(labels::OWNER.into(), json!(spec.owner));
    }
    // The meeting ID, so the API's join finds it with a label selector (no namespace LIST).
    if let Some(meeting_id) = spec.meeting_id.as_deref().filter(|m| is_label_value(m)) {
        want_labels.insert(labels::MEETING_ID.into(), json!(meeting_id));
    }
    let have = conference.labels();
    let labels_differ = want_labels
        .iter()
        .any(|(k, v)| have.get(k).map(|h| json!(h)) != Some(v.clone()))
        || (have.contains_key(labels::SFU_POD) && !want_labels.contains_key(labels::SFU_POD));
    if labels_differ {
        let mut metadata = named(&name, version.as_deref());
        metadata.insert("labels".into(), serde_json::Value::Object(want_labels));
        let body = json!({
            "apiVersion": "conclave.dev/v1alpha1",
            "kind": "Conference",
            "metadata": metadata,
        });
        ctx.call(
            "write the labels",
            api.patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&body),
            ),
        )
        .await?;
    }

    for notice in notices(old, &desired, &outcome) {
        info!(reason = %notice.reason, note = %notice.note, "conference event");
        ctx.publish(&conference, notice).await;
    }

    let previous_phase =
        lock(&ctx.phases).insert(oref, desired.phase.unwrap_or(ConferencePhase::Scheduled));
    ctx.metrics.move_phase(previous_phase, desired.phase);

    let mut requeue = match &outcome {
        Outcome::Evaluated { decision, .. } => decision
            .wake_at
            .map(|at| (at - now).to_std().unwrap_or(Duration::ZERO)),
        Outcome::Invalid(_) => None,
    };
    if matches!(
        outcome,
        Outcome::Evaluated {
            placement: Placement::Failed(_),
            ..
        }
    ) {
        requeue = Some(requeue.map_or(PLACEMENT_RETRY, |d| d.min(PLACEMENT_RETRY)));
    }
    // A suspect pod's grace or a draining pod's handoff ends: look again exactly then.
    if let Some(at) = desired
        .assignment
        .as_ref()
        .and_then(|a| fleet.state(&a.pod))
        .and_then(|state| state.changes_at(&ctx.timing, now))
    {
        let after = (at - now).to_std().unwrap_or(Duration::ZERO);
        requeue = Some(requeue.map_or(after, |d| d.min(after)));
    }
    Ok(match requeue {
        // Never spin: a wake-up due now comes back after a tenth of a second at the earliest.
        Some(after) => Action::requeue(after.max(Duration::from_millis(100))),
        None => Action::await_change(),
    })
}

/// Releases the assignment of a conference being deleted. Idempotent, and fine when apply
/// never ran.
async fn cleanup(conference: Arc<Conference>, ctx: &Context) -> Result<Action> {
    // The finalizer's removal that follows is a write as well.
    ctx.fence.check()?;
    let oref = ObjectRef::from_obj(conference.as_ref());
    let key = ledger_key(&oref);
    let released = lock(&ctx.ledger).release(&key);
    lock(&ctx.waiting).remove(&oref);
    let previous_phase = lock(&ctx.phases).remove(&oref);
    ctx.metrics.move_phase(previous_phase, None);
    if let Some(assignment) = released {
        info!(pod = %assignment.pod, "released on deletion");
        ctx.publish(
            &conference,
            Notice {
                severity: Severity::Normal,
                reason: "Released".into(),
                action: "Release",
                note: format!(
                    "deleted; released {} UDP ports {}-{}",
                    assignment.pod, assignment.udp_ports.first, assignment.udp_ports.last
                ),
            },
        )
        .await;
        ctx.wake_waiting();
    }
    Ok(Action::await_change())
}

/// How many conferences one page of the initial list holds.
const SEED_PAGE: u32 = 500;

/// The ledger of a new term, built from the `status.assignment` of every conference (also one
/// whose label was never written, or that is being deleted): no port an earlier leader handed
/// out is handed out again. Each assignment is held in the port scope its pod has now among
/// `pods` (the same node's ports for pods on the node's network). Two recorded assignments
/// that overlap keep the first; the other conference is placed anew when reconciled.
async fn seed_ledger(
    conferences: &Api<Conference>,
    settings: &Settings,
    pods: &[placement::Pod],
) -> Result<Ledger> {
    let mut ledger = Ledger::new();
    let mut params = ListParams::default().limit(SEED_PAGE);
    loop {
        let page = tokio::time::timeout(settings.api_timeout, conferences.list(&params))
            .await
            .map_err(|_| Error::Timeout {
                what: "list the conferences",
                seconds: settings.api_timeout.as_secs_f64(),
            })??;
        record_all(&mut ledger, &page.items, pods);
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => break,
        }
    }
    Ok(ledger)
}

/// Records the assignment in the status of each of `conferences` (see [`seed_ledger`]).
fn record_all(ledger: &mut Ledger, conferences: &[Conference], pods: &[placement::Pod]) {
    for conference in conferences {
        let key = ledger_key(&ObjectRef::from_obj(conference));
        let Some(assignment) = recorded_assignment(&key, conference, pods) else {
            continue;
        };
        if let Err(conflict) = ledger.insert(assignment) {
            warn!(conference = %key, cause = %conflict, "assignment in status conflicts; it will be placed anew");
        }
    }
}

/// The SFU pods as placement sees them now, for the port scopes of the recorded assignments.
async fn pods_now(
    pods: &Api<KubePod>,
    settings: &Settings,
    now: DateTime<Utc>,
) -> Result<Vec<placement::Pod>> {
    let listed = tokio::time::timeout(
        settings.api_timeout,
        pods.list(&ListParams::default().labels(&settings.sfu_selector)),
    )
    .await
    .map_err(|_| Error::Timeout {
        what: "list the SFU pods",
        seconds: settings.api_timeout.as_secs_f64(),
    })??;
    // Only the port scope matters here, which does not depend on the pod's state.
    Ok(listed
        .items
        .iter()
        .filter_map(|pod| fleet::sfu_pod(pod, &fleet::PodState::Ready, now).ok())
        .collect())
}

/// Runs the controller until `stop` is cancelled or `fence` is revoked: builds the ledger from
/// the assignments in status (before anything is placed), watches SFU pods and reconciles every
/// conference.
///
/// # Errors
/// [`Error::Kube`] or [`Error::Timeout`] when the initial list fails;
/// [`Error::LeadershipLost`] when the fence was revoked (the Lease lost): leading stopped.
pub async fn lead(
    client: Client,
    watch_client: Client,
    settings: &Settings,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    fence: Fence,
    stop: CancellationToken,
) -> Result<()> {
    let conferences: Api<Conference> = match &settings.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let watched_conferences: Api<Conference> = match &settings.namespace {
        Some(ns) => Api::namespaced(watch_client.clone(), ns),
        None => Api::all(watch_client.clone()),
    };
    let pods_api: Api<KubePod> = match &settings.namespace {
        Some(ns) => Api::namespaced(watch_client.clone(), ns),
        None => Api::all(watch_client),
    };
    // Leading ends on shutdown or when the fence is revoked, whichever comes first.
    let term = stop.child_token();
    let _revoked = AbortOnDrop(tokio::spawn({
        let (fence, term) = (fence.clone(), term.clone());
        async move {
            fence.revoked().await;
            term.cancel();
        }
    }));

    let sfu_pods: Api<KubePod> = match &settings.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let ledger = tokio::select! {
        () = term.cancelled() => return ended(&fence),
        ledger = async {
            let pods = pods_now(&sfu_pods, settings, clock.now()).await?;
            seed_ledger(&conferences, settings, &pods).await
        } => ledger?,
    };
    info!(
        assignments = ledger.len(),
        "leading: ledger built from the status of every conference"
    );

    let (pod_store, pod_writer) = reflector::store();
    let pod_events = watcher(
        pods_api,
        watcher::Config::default().labels(&settings.sfu_selector),
    )
    .default_backoff()
    .reflect(pod_writer);

    let (conference_store, conference_writer) = reflector::store();
    let conference_events = watcher(watched_conferences, watcher::Config::default())
        .default_backoff()
        .reflect(conference_writer)
        .touched_objects();
    let (triggers, trigger_rx) = mpsc::unbounded_channel();
    let ctx = Arc::new(Context {
        client: client.clone(),
        clock: clock.clone(),
        policy: settings.policy,
        sizing: settings.sizing,
        timing: settings.timing,
        api_timeout: settings.api_timeout,
        fence: fence.clone(),
        sightings: Mutex::new(HashMap::new()),
        ledger: Mutex::new(ledger),
        pods: pod_store.clone(),
        conferences: conference_store.clone(),
        waiting: Mutex::new(HashSet::new()),
        fleet_seen: Mutex::new(HashMap::new()),
        triggers,
        recorder: Recorder::new(
            client,
            Reporter {
                controller: FIELD_MANAGER.into(),
                instance: Some(settings.identity.clone()),
            },
        ),
        metrics,
        phases: Mutex::new(HashMap::new()),
        failures: Mutex::new(HashMap::new()),
        issued_meeting_ids: Mutex::new(HashSet::new()),
    });

    // The pod watch runs beside the controller and turns fleet changes into triggers.
    let pod_ctx = ctx.clone();
    let pod_stop = term.clone();
    let _pod_task = AbortOnDrop(tokio::spawn(async move {
        let mut pod_events = std::pin::pin!(pod_events);
        loop {
            tokio::select! {
                () = pod_stop.cancelled() => break,
                next = pod_events.next() => match next {
                    Some(Ok(event)) => pod_ctx.pod_event(&event),
                    Some(Err(err)) => warn!(cause = %err, "SFU pod watch failed; retrying"),
                    None => break,
                },
            }
        }
    }));
    // Placing before the fleet is known would report every conference as unplaceable.
    tokio::select! {
        () = term.cancelled() => return ended(&fence),
        ready = pod_store.wait_until_ready() => {
            if ready.is_err() {
                warn!("SFU pod watch ended before it listed the pods");
            }
        }
    }
    ctx.observe_fleet();

    // What makes a conference reconcile: its own changes, the pod watch (failover) and freed
    // capacity through `triggers`, and every conference when the clock jumps (virtual time).
    let own = conference_events.map_ok(|conference: Conference| ObjectRef::from_obj(&conference));
    let triggered = stream::unfold(trigger_rx, |mut rx| async move {
        let oref: ObjectRef<Conference> = rx.recv().await?;
        Some((Ok(oref), rx))
    });
    let store = conference_store.clone();
    let jumps = clock.jumps().flat_map(move |()| {
        let all: Vec<Result<ObjectRef<Conference>, watcher::Error>> = store
            .state()
            .iter()
            .map(|c| Ok(ObjectRef::from_obj(c.as_ref())))
            .collect();
        stream::iter(all)
    });
    let queue = stream::select_all([own.boxed(), triggered.boxed(), jumps.boxed()])
        .take_until(term.clone().cancelled_owned());
    controller::applier(
        |conference, ctx| Box::pin(reconcile(conference, ctx)),
        error_policy,
        ctx.clone(),
        conference_store,
        queue,
        controller::Config::default().concurrency(settings.concurrency),
    )
    .for_each(|result| async move {
        match result {
            Ok((oref, action)) => debug!(conference = %oref, ?action, "reconciled"),
            Err(err) => debug!(cause = %err, "controller event"),
        }
    })
    .await;
    info!("stopped leading");
    ended(&fence)
}

/// How leading ended: [`Error::LeadershipLost`] when the fence was revoked, else a shutdown.
fn ended(fence: &Fence) -> Result<()> {
    if fence.is_revoked() {
        Err(Error::LeadershipLost)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placed(name: &str, pod: &str, first: u16, last: u16) -> Conference {
        serde_json::from_value(json!({
            "apiVersion": "conclave.dev/v1alpha1",
            "kind": "Conference",
            "metadata": { "name": name, "namespace": "conclave" },
            "spec": { "topic": "t", "owner": "ada", "adHoc": true },
            "status": { "assignment": {
                "pod": pod,
                "endpoint": format!("wss://{pod}"),
                "udpPorts": { "first": first, "last": last },
                "reserved": 5,
            } },
        }))
        .expect("a conference")
    }

    fn pod(name: &str, scope: &str) -> placement::Pod {
        placement::Pod {
            name: name.into(),
            endpoint: format!("wss://{name}"),
            ready: true,
            keeps: true,
            capacity: 100,
            udp_ports: placement::PortRange {
                first: 40000,
                last: 40019,
            },
            port_scope: scope.into(),
        }
    }

    #[test]
    fn the_seeded_ledger_holds_each_assignment_in_its_pods_node() {
        let pods = [pod("sfu-0", "node/n1"), pod("sfu-1", "node/n1")];
        let conferences = [
            placed("a", "sfu-0", 40000, 40009),
            // Written by a leader that thought the pods had ports of their own: it clashes.
            placed("b", "sfu-1", 40005, 40014),
            // On a pod that is gone: it holds no port on any node.
            placed("c", "sfu-9", 40010, 40019),
        ];
        let mut ledger = Ledger::new();
        record_all(&mut ledger, &conferences, &pods);
        assert_eq!(ledger.len(), 2);
        assert!(ledger.get("conclave/b").is_none(), "b is placed anew");
        assert_eq!(
            ledger.get("conclave/a").map(|a| a.port_scope.as_str()),
            Some("node/n1")
        );
        assert_eq!(
            ledger.get("conclave/c").map(|a| a.port_scope.as_str()),
            Some("pod/sfu-9")
        );
        // The next conference on the node gets the ports a does not hold, on either pod.
        let next = ledger
            .place(
                &Request {
                    conference: "conclave/d".into(),
                    participants: 5,
                },
                &pods,
                &Sizing::default(),
            )
            .expect("placed");
        assert_eq!(
            next.udp_ports,
            placement::PortRange {
                first: 40010,
                last: 40019
            }
        );
    }
}

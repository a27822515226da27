//! The pure part of reconciling one conference: its spec and status plus the fleet's answer
//! become the status the operator wants and the Events worth telling. No IO and no clock: `now`
//! comes in, so this is tested on virtual time.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use crds::{
    AD_HOC_DURATION, AssignmentStatus, Condition, ConditionStatus, ConferencePhase, ConferenceSpec,
    ConferenceStatus, OccurrenceStatus, UdpPortRange, conditions,
};
use placement::{Assignment, Decision, Observed, Occurrence, Phase, PlacementError, Schedule};

/// The spec cannot be acted on (what the CRD's CEL rules cannot see, e.g. an unknown time zone).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidSpec(pub String);

/// The conference's schedule as the lifecycle core sees it.
///
/// An ad hoc conference starts at `schedule.start`, else at its creation (`created`), else `now`,
/// and lasts `schedule.end`, `schedule.duration` or 30 minutes.
///
/// # Errors
/// [`InvalidSpec`] naming what is wrong.
pub fn schedule_of(
    spec: &ConferenceSpec,
    created: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<Schedule, InvalidSpec> {
    let given = spec.schedule.clone().unwrap_or_default();
    if given.permanent && !spec.ad_hoc {
        return Ok(Schedule::Permanent);
    }
    let zone_name = match given.time_zone.trim() {
        "" => "UTC",
        name => name,
    };
    let time_zone = chrono_tz::Tz::from_str(zone_name)
        .map_err(|_| InvalidSpec(format!("unknown time zone {:?}", given.time_zone)))?;
    if given.duration.is_some() && given.duration().is_none() {
        return Err(InvalidSpec(format!(
            "schedule.duration {:?} is not a duration like 45m or 1h30m",
            given.duration.unwrap_or_default()
        )));
    }
    let start = match (given.start, spec.ad_hoc) {
        (Some(start), _) => start,
        (None, true) => created.unwrap_or(now),
        (None, false) => return Err(InvalidSpec("schedule.start is missing".into())),
    };
    let end = match (given.end, given.duration()) {
        (Some(end), _) => end,
        (None, Some(duration)) => start + duration,
        (None, None) if spec.ad_hoc => start + AD_HOC_DURATION,
        (None, None) => {
            return Err(InvalidSpec("give schedule.end or schedule.duration".into()));
        }
    };
    let recurrence = if spec.ad_hoc {
        None
    } else {
        given.recurrence.as_deref()
    };
    Schedule::timed(start, end, time_zone, recurrence).map_err(|err| InvalidSpec(err.to_string()))
}

/// What the SFU and the conference service reported, as the lifecycle core takes it.
pub fn observed(status: Option<&ConferenceStatus>) -> Observed {
    Observed {
        participants: status.and_then(|s| s.participants).unwrap_or(0),
        started_early: status.and_then(|s| s.started_early),
        ended: status.and_then(|s| s.ended_occurrence),
    }
}

/// What placement answered for a conference that was evaluated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// It should hold no assignment now.
    NotWanted,
    /// It holds this assignment.
    Held(Assignment),
    /// It should hold one but none could be found.
    Failed(PlacementError),
}

/// Everything the reconcile learnt about one conference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The spec cannot be acted on.
    Invalid(InvalidSpec),
    /// The lifecycle was evaluated and placement asked when needed.
    Evaluated {
        /// The lifecycle decision.
        decision: Decision,
        /// The occurrence after the current one, if any.
        next: Option<Occurrence>,
        /// Placement's answer.
        placement: Placement,
    },
}

/// Why the pod of an earlier assignment no longer serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodLoss {
    /// The pod no longer exists.
    Gone,
    /// The pod's `sfu` container is not running.
    NotRunning,
    /// The pod was not ready for longer than the pod grace.
    NotReadyFor {
        /// How long, in whole seconds.
        seconds: i64,
    },
    /// The pod is being deleted (a rollout, a drain) and its handoff came: a planned move, not
    /// a failure.
    Drained,
    /// The pod is healthy; the conference moved for another reason (its ports clashed).
    None,
}

impl PodLoss {
    fn describe(&self, pod: &str) -> String {
        match self {
            PodLoss::Gone => format!("pod {pod} is gone"),
            PodLoss::NotRunning => format!("the sfu container of pod {pod} is not running"),
            PodLoss::NotReadyFor { seconds } => {
                format!("pod {pod} was not ready for {seconds} s")
            }
            PodLoss::Drained => format!("pod {pod} is draining (being deleted)"),
            PodLoss::None => format!("its ports on pod {pod} clashed"),
        }
    }

    /// The `Placed` condition's reason (and the Event's) when a conference moves for this loss.
    pub fn move_reason(&self) -> &'static str {
        match self {
            PodLoss::Drained => "Drained",
            _ => "Failover",
        }
    }
}

/// The phase shown in status.
pub fn phase_of(outcome: &Outcome) -> ConferencePhase {
    match outcome {
        Outcome::Invalid(_) => ConferencePhase::Failed,
        Outcome::Evaluated {
            decision,
            placement,
            ..
        } => match (decision.phase, placement) {
            (Phase::Scheduled, _) => ConferencePhase::Scheduled,
            // Joinable only once placed.
            (Phase::Ready, Placement::Held(_)) => ConferencePhase::Ready,
            (Phase::Ready, _) => ConferencePhase::Scheduled,
            (Phase::Active, _) => ConferencePhase::Active,
            (Phase::Ended, _) => ConferencePhase::Ended,
        },
    }
}

/// The status fields the operator owns, as they should be now.
pub fn desired_status(
    old: Option<&ConferenceStatus>,
    generation: Option<i64>,
    now: DateTime<Utc>,
    outcome: &Outcome,
    loss: &PodLoss,
) -> ConferenceStatus {
    let previous = old.and_then(|s| s.assignment.as_ref());
    let condition = |type_: &str, status: ConditionStatus, reason: &str, message: String| {
        let last_transition_time = old
            .and_then(|s| s.condition(type_))
            .filter(|c| c.status == status)
            .map_or(now, |c| c.last_transition_time);
        Condition {
            type_: type_.to_owned(),
            status,
            reason: reason.to_owned(),
            message,
            last_transition_time,
            observed_generation: generation,
        }
    };
    let phase = phase_of(outcome);
    let mut status = ConferenceStatus {
        phase: Some(phase),
        observed_generation: generation,
        ..ConferenceStatus::default()
    };
    let (placed, ready, degraded) = match outcome {
        Outcome::Invalid(why) => (
            condition(
                conditions::PLACED,
                ConditionStatus::False,
                "InvalidSpec",
                why.to_string(),
            ),
            condition(
                conditions::READY,
                ConditionStatus::False,
                "InvalidSpec",
                why.to_string(),
            ),
            condition(
                conditions::DEGRADED,
                ConditionStatus::True,
                "InvalidSpec",
                why.to_string(),
            ),
        ),
        Outcome::Evaluated {
            decision,
            next,
            placement,
        } => {
            let (current, upcoming) = match phase {
                ConferencePhase::Ready | ConferencePhase::Active => (decision.occurrence, *next),
                _ => (None, decision.occurrence),
            };
            status.current_occurrence = current.map(occurrence_status);
            status.next_occurrence = upcoming.map(occurrence_status);
            let as_expected = || {
                condition(
                    conditions::DEGRADED,
                    ConditionStatus::False,
                    "AsExpected",
                    String::new(),
                )
            };
            match placement {
                Placement::Held(assignment) => {
                    status.assignment = Some(assignment_status(assignment));
                    let placed = match previous {
                        // Same pod as before: keep the reason (e.g. why it failed over) as it was.
                        Some(before) if before.pod == assignment.pod => old
                            .and_then(|s| s.condition(conditions::PLACED))
                            .filter(|c| c.status == ConditionStatus::True)
                            .cloned()
                            .map(|mut c| {
                                c.observed_generation = generation;
                                c
                            }),
                        _ => None,
                    }
                    .unwrap_or_else(|| match previous {
                        Some(before) if before.pod != assignment.pod => condition(
                            conditions::PLACED,
                            ConditionStatus::True,
                            loss.move_reason(),
                            format!(
                                "moved from {} to {} because {}",
                                before.pod,
                                assignment.pod,
                                loss.describe(&before.pod)
                            ),
                        ),
                        _ => condition(
                            conditions::PLACED,
                            ConditionStatus::True,
                            "Placed",
                            placed_message(assignment),
                        ),
                    });
                    (
                        placed,
                        condition(
                            conditions::READY,
                            ConditionStatus::True,
                            "Joinable",
                            format!("clients connect to {}", assignment.endpoint),
                        ),
                        as_expected(),
                    )
                }
                Placement::NotWanted => {
                    let (reason, message) = match phase {
                        ConferencePhase::Ended => ("Ended", "no occurrence is left".to_owned()),
                        _ => (
                            "AwaitingLeadTime",
                            decision.wake_at.map_or_else(String::new, |at| {
                                format!("placed from {}", at.to_rfc3339())
                            }),
                        ),
                    };
                    (
                        condition(
                            conditions::PLACED,
                            ConditionStatus::False,
                            reason,
                            message.clone(),
                        ),
                        condition(conditions::READY, ConditionStatus::False, reason, message),
                        as_expected(),
                    )
                }
                Placement::Failed(err) => {
                    let message = match previous {
                        Some(before) => format!("{}; {err}", loss.describe(&before.pod)),
                        None => err.to_string(),
                    };
                    (
                        condition(
                            conditions::PLACED,
                            ConditionStatus::False,
                            err.reason(),
                            message.clone(),
                        ),
                        condition(
                            conditions::READY,
                            ConditionStatus::False,
                            "NotPlaced",
                            message.clone(),
                        ),
                        condition(
                            conditions::DEGRADED,
                            ConditionStatus::True,
                            err.reason(),
                            message,
                        ),
                    )
                }
            }
        }
    };
    status.conditions = vec![placed, ready, degraded];
    if let Some(media) = media_ports_condition(old, status.assignment.as_ref(), condition) {
        status.conditions.push(media);
    }
    status
}

/// The `MediaPorts` condition: what the assigned pod last reported of the assignment's ports
/// (through the conference service, in `status.mediaPorts`); none while it reported nothing
/// about this pod and range.
fn media_ports_condition(
    old: Option<&ConferenceStatus>,
    assignment: Option<&AssignmentStatus>,
    condition: impl Fn(&str, ConditionStatus, &str, String) -> Condition,
) -> Option<Condition> {
    let assignment = assignment?;
    let report = old
        .and_then(|s| s.media_ports.as_ref())
        .filter(|r| r.pod == assignment.pod && r.udp_ports == assignment.udp_ports)?;
    let range = format!(
        "{}-{}",
        assignment.udp_ports.first, assignment.udp_ports.last
    );
    Some(if report.unusable.is_empty() {
        condition(
            conditions::MEDIA_PORTS,
            ConditionStatus::True,
            "PortsUsable",
            format!("{} binds every UDP port of {range}", assignment.pod),
        )
    } else {
        let count = report.unusable.len();
        condition(
            conditions::MEDIA_PORTS,
            ConditionStatus::False,
            "PortInUse",
            format!(
                "UDP ports {} of {range} are held by another process on the node of {} (another SFU on the node's network, a node daemon): the conference has {count} port{} fewer than it reserved, and joiners get no media once the rest are taken; free them on the node, or move sfu.udpPorts away from them",
                proto::describe_ports(&report.unusable, 8),
                assignment.pod,
                if count == 1 { "" } else { "s" },
            ),
        )
    })
}

fn occurrence_status(occurrence: Occurrence) -> OccurrenceStatus {
    OccurrenceStatus {
        start: occurrence.start,
        end: occurrence.end,
    }
}

fn assignment_status(assignment: &Assignment) -> AssignmentStatus {
    AssignmentStatus {
        pod: assignment.pod.clone(),
        endpoint: assignment.endpoint.clone(),
        udp_ports: UdpPortRange {
            first: assignment.udp_ports.first,
            last: assignment.udp_ports.last,
        },
        reserved: assignment.reserved,
    }
}

fn placed_message(assignment: &Assignment) -> String {
    format!(
        "on {} with UDP ports {}-{} for {} participants",
        assignment.pod, assignment.udp_ports.first, assignment.udp_ports.last, assignment.reserved
    )
}

/// Whether the operator-owned fields of two statuses agree (others' fields are ignored).
pub fn same_owned_fields(current: Option<&ConferenceStatus>, desired: &ConferenceStatus) -> bool {
    let Some(current) = current else {
        return false;
    };
    current.phase == desired.phase
        && current.conditions == desired.conditions
        && current.observed_generation == desired.observed_generation
        && current.current_occurrence == desired.current_occurrence
        && current.next_occurrence == desired.next_occurrence
        && current.assignment == desired.assignment
}

/// Whether an Event is routine or needs attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Routine.
    Normal,
    /// Needs attention.
    Warning,
}

/// An Event worth publishing about a conference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// Normal or Warning.
    pub severity: Severity,
    /// CamelCase reason: `Placed`, `Released`, `Failover`, `Drained`, `NoCapacity`, …
    pub reason: String,
    /// What the operator did: `Place`, `Release`, `Failover`, `Drain`, `Validate`.
    pub action: &'static str,
    /// The human-readable note.
    pub note: String,
}

/// The Events a change from `old` to `new` deserves; none when nothing changed that matters.
pub fn notices(
    old: Option<&ConferenceStatus>,
    new: &ConferenceStatus,
    outcome: &Outcome,
) -> Vec<Notice> {
    let mut out = Vec::new();
    let before = old.and_then(|s| s.assignment.as_ref());
    let after = new.assignment.as_ref();
    let notice = |severity, reason: &str, action, note: String| Notice {
        severity,
        reason: reason.to_owned(),
        action,
        note,
    };
    match (before, after) {
        (None, Some(a)) => out.push(notice(
            Severity::Normal,
            "Placed",
            "Place",
            format!(
                "placed on {} with UDP ports {}-{}",
                a.pod, a.udp_ports.first, a.udp_ports.last
            ),
        )),
        (Some(b), Some(a)) if b.pod != a.pod => {
            let placed = new.condition(conditions::PLACED);
            let message = placed.map_or_else(String::new, |c| c.message.clone());
            // A drained pod's conferences move as planned; anything else is a failure.
            out.push(if placed.is_some_and(|c| c.reason == "Drained") {
                notice(Severity::Normal, "Drained", "Drain", message)
            } else {
                notice(Severity::Warning, "Failover", "Failover", message)
            });
        }
        (Some(b), Some(a)) if b.udp_ports != a.udp_ports => out.push(notice(
            Severity::Normal,
            "Placed",
            "Place",
            format!(
                "moved to UDP ports {}-{} on {}",
                a.udp_ports.first, a.udp_ports.last, a.pod
            ),
        )),
        (Some(b), None)
            if !matches!(
                outcome,
                Outcome::Evaluated {
                    placement: Placement::Failed(_),
                    ..
                }
            ) =>
        {
            out.push(notice(
                Severity::Normal,
                "Released",
                "Release",
                format!(
                    "released {} UDP ports {}-{}",
                    b.pod, b.udp_ports.first, b.udp_ports.last
                ),
            ));
        }
        _ => {}
    }
    let reason_changed = |type_: &str| {
        let was = old
            .and_then(|s| s.condition(type_))
            .map(|c| (c.status, c.reason.as_str()));
        let is = new.condition(type_).map(|c| (c.status, c.reason.as_str()));
        was != is
    };
    match outcome {
        Outcome::Evaluated {
            placement: Placement::Failed(err),
            ..
        } if reason_changed(conditions::PLACED) => out.push(notice(
            Severity::Warning,
            err.reason(),
            "Place",
            new.condition(conditions::PLACED)
                .map_or_else(|| err.to_string(), |c| c.message.clone()),
        )),
        Outcome::Invalid(why) if reason_changed(conditions::DEGRADED) => out.push(notice(
            Severity::Warning,
            "InvalidSpec",
            "Validate",
            why.to_string(),
        )),
        _ => {}
    }
    if reason_changed(conditions::MEDIA_PORTS)
        && let Some(media) = new.condition(conditions::MEDIA_PORTS)
    {
        let was_in_use = old
            .and_then(|s| s.condition(conditions::MEDIA_PORTS))
            .is_some_and(|c| c.status == ConditionStatus::False);
        match media.status {
            ConditionStatus::False => out.push(notice(
                Severity::Warning,
                &media.reason,
                "CheckPorts",
                media.message.clone(),
            )),
            // Only worth telling after a warning.
            ConditionStatus::True if was_in_use => out.push(notice(
                Severity::Normal,
                &media.reason,
                "CheckPorts",
                media.message.clone(),
            )),
            _ => {}
        }
    }
    if new.phase == Some(ConferencePhase::Ended)
        && old.and_then(|s| s.phase) != Some(ConferencePhase::Ended)
    {
        out.push(notice(
            Severity::Normal,
            "Ended",
            "Release",
            "the last occurrence is over".into(),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crds::ScheduleSpec;
    use placement::{Policy, PortRange, evaluate};

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().expect("rfc3339")
    }

    fn spec(schedule: ScheduleSpec, ad_hoc: bool) -> ConferenceSpec {
        ConferenceSpec {
            topic: "t".into(),
            owner: "ada".into(),
            meeting_id: None,
            password_secret_ref: None,
            schedule: Some(schedule),
            ad_hoc,
            max_participants: 10,
            allow_join_without_owner: true,
            media: crds::Media::AudioVideo,
            recording: None,
            dial_in: None,
        }
    }

    fn timed(start: &str, duration: &str) -> ScheduleSpec {
        ScheduleSpec {
            start: Some(utc(start)),
            duration: Some(duration.into()),
            time_zone: "Europe/Berlin".into(),
            ..ScheduleSpec::default()
        }
    }

    fn assignment(pod: &str) -> Assignment {
        Assignment {
            conference: "ns/c".into(),
            pod: pod.into(),
            endpoint: format!("wss://{pod}"),
            udp_ports: PortRange {
                first: 40000,
                last: 40019,
            },
            port_scope: format!("pod/{pod}"),
            reserved: 10,
        }
    }

    fn outcome(schedule: &Schedule, now: &str, placement: Placement) -> Outcome {
        let decision = evaluate(schedule, &Policy::default(), &Observed::default(), utc(now));
        Outcome::Evaluated {
            decision,
            next: None,
            placement,
        }
    }

    #[test]
    fn an_ad_hoc_conference_lasts_thirty_minutes_from_its_creation() {
        let spec = ConferenceSpec {
            schedule: None,
            ..spec(ScheduleSpec::default(), true)
        };
        let created = utc("2026-03-02T10:00:00Z");
        let schedule =
            schedule_of(&spec, Some(created), utc("2026-03-02T10:01:00Z")).expect("valid");
        let occurrence = schedule.occurrence_ending_after(created).expect("one");
        assert_eq!(occurrence.start, created);
        assert_eq!(occurrence.end, utc("2026-03-02T10:30:00Z"));
    }

    #[test]
    fn a_duration_gives_the_end_and_an_unknown_time_zone_is_invalid() {
        let schedule = schedule_of(
            &spec(timed("2026-03-02T10:00:00Z", "1h30m"), false),
            None,
            utc("2026-03-01T00:00:00Z"),
        )
        .expect("valid");
        assert_eq!(
            schedule
                .occurrence_ending_after(utc("2026-03-01T00:00:00Z"))
                .map(|o| o.end),
            Some(utc("2026-03-02T11:30:00Z"))
        );
        let mut mars = timed("2026-03-02T10:00:00Z", "1h");
        mars.time_zone = "Mars/Olympus_Mons".into();
        assert_eq!(
            schedule_of(&spec(mars, false), None, utc("2026-03-01T00:00:00Z")),
            Err(InvalidSpec(
                "unknown time zone \"Mars/Olympus_Mons\"".into()
            ))
        );
    }

    #[test]
    fn a_placed_conference_is_ready_with_a_placed_condition() {
        let schedule = schedule_of(
            &spec(timed("2026-03-02T10:00:00Z", "1h"), false),
            None,
            utc("2026-03-02T09:00:00Z"),
        )
        .expect("valid");
        let out = outcome(
            &schedule,
            "2026-03-02T09:56:00Z",
            Placement::Held(assignment("sfu-0")),
        );
        let status = desired_status(
            None,
            Some(1),
            utc("2026-03-02T09:56:00Z"),
            &out,
            &PodLoss::None,
        );
        assert_eq!(status.phase, Some(ConferencePhase::Ready));
        let placed = status.condition(conditions::PLACED).expect("placed");
        assert_eq!(
            (placed.status, placed.reason.as_str()),
            (ConditionStatus::True, "Placed")
        );
        assert_eq!(
            status.assignment.as_ref().map(|a| a.pod.as_str()),
            Some("sfu-0")
        );
        let notes = notices(None, &status, &out);
        assert_eq!(notes.len(), 1);
        assert_eq!(notes[0].reason, "Placed");
        // Nothing changed: same status, same transition times, no Event.
        let again = desired_status(
            Some(&status),
            Some(1),
            utc("2026-03-02T09:58:00Z"),
            &out,
            &PodLoss::None,
        );
        assert!(same_owned_fields(Some(&status), &again));
        assert!(notices(Some(&status), &again, &out).is_empty());
    }

    #[test]
    fn a_failover_says_why_in_a_condition_and_an_event() {
        let schedule = schedule_of(
            &spec(timed("2026-03-02T10:00:00Z", "1h"), false),
            None,
            utc("2026-03-02T09:00:00Z"),
        )
        .expect("valid");
        let first = outcome(
            &schedule,
            "2026-03-02T10:00:00Z",
            Placement::Held(assignment("sfu-0")),
        );
        let before = desired_status(
            None,
            Some(1),
            utc("2026-03-02T10:00:00Z"),
            &first,
            &PodLoss::None,
        );
        let moved = outcome(
            &schedule,
            "2026-03-02T10:05:00Z",
            Placement::Held(assignment("sfu-1")),
        );
        let after = desired_status(
            Some(&before),
            Some(1),
            utc("2026-03-02T10:05:00Z"),
            &moved,
            &PodLoss::Gone,
        );
        let placed = after.condition(conditions::PLACED).expect("placed");
        assert_eq!(placed.reason, "Failover");
        assert_eq!(
            placed.message,
            "moved from sfu-0 to sfu-1 because pod sfu-0 is gone"
        );
        // The transition time stays: it was placed all along.
        assert_eq!(placed.last_transition_time, utc("2026-03-02T10:00:00Z"));
        let notes = notices(Some(&before), &after, &moved);
        assert_eq!(notes[0].reason, "Failover");
        assert_eq!(notes[0].severity, Severity::Warning);
        // The reason survives the next reconcile on the same pod.
        let later = desired_status(
            Some(&after),
            Some(1),
            utc("2026-03-02T10:06:00Z"),
            &moved,
            &PodLoss::None,
        );
        assert_eq!(
            later
                .condition(conditions::PLACED)
                .map(|c| c.reason.as_str()),
            Some("Failover")
        );
    }

    #[test]
    fn a_drained_pods_conference_moves_with_a_normal_drained_event() {
        let schedule = schedule_of(
            &spec(timed("2026-03-02T10:00:00Z", "1h"), false),
            None,
            utc("2026-03-02T09:00:00Z"),
        )
        .expect("valid");
        let first = outcome(
            &schedule,
            "2026-03-02T10:00:00Z",
            Placement::Held(assignment("sfu-0")),
        );
        let before = desired_status(
            None,
            Some(1),
            utc("2026-03-02T10:00:00Z"),
            &first,
            &PodLoss::None,
        );
        let moved = outcome(
            &schedule,
            "2026-03-02T10:05:00Z",
            Placement::Held(assignment("sfu-1")),
        );
        let after = desired_status(
            Some(&before),
            Some(1),
            utc("2026-03-02T10:05:00Z"),
            &moved,
            &PodLoss::Drained,
        );
        let placed = after.condition(conditions::PLACED).expect("placed");
        assert_eq!(placed.reason, "Drained");
        assert_eq!(
            placed.message,
            "moved from sfu-0 to sfu-1 because pod sfu-0 is draining (being deleted)"
        );
        let notes = notices(Some(&before), &after, &moved);
        assert_eq!(notes.len(), 1);
        assert_eq!(notes[0].reason, "Drained");
        assert_eq!(notes[0].severity, Severity::Normal);
    }

    #[test]
    fn no_capacity_degrades_the_conference_with_the_placement_message() {
        let schedule = schedule_of(
            &spec(timed("2026-03-02T10:00:00Z", "1h"), false),
            None,
            utc("2026-03-02T09:00:00Z"),
        )
        .expect("valid");
        let out = outcome(
            &schedule,
            "2026-03-02T10:00:00Z",
            Placement::Failed(PlacementError::NoCapacity { participants: 300 }),
        );
        let status = desired_status(
            None,
            Some(1),
            utc("2026-03-02T10:00:00Z"),
            &out,
            &PodLoss::None,
        );
        assert_eq!(status.phase, Some(ConferencePhase::Scheduled));
        let degraded = status.condition(conditions::DEGRADED).expect("degraded");
        assert_eq!(degraded.status, ConditionStatus::True);
        assert_eq!(degraded.message, "no SFU pod has room for 300 participants");
        let notes = notices(None, &status, &out);
        assert_eq!(notes[0].reason, "NoCapacity");
        assert!(notices(Some(&status), &status, &out).is_empty());
    }

    #[test]
    fn release_at_the_end_is_told_once() {
        let schedule = schedule_of(
            &spec(timed("2026-03-02T10:00:00Z", "1h"), false),
            None,
            utc("2026-03-02T09:00:00Z"),
        )
        .expect("valid");
        let running = outcome(
            &schedule,
            "2026-03-02T10:30:00Z",
            Placement::Held(assignment("sfu-0")),
        );
        let before = desired_status(
            None,
            Some(1),
            utc("2026-03-02T10:30:00Z"),
            &running,
            &PodLoss::None,
        );
        let over = outcome(&schedule, "2026-03-02T11:00:00Z", Placement::NotWanted);
        let after = desired_status(
            Some(&before),
            Some(1),
            utc("2026-03-02T11:00:00Z"),
            &over,
            &PodLoss::None,
        );
        assert_eq!(after.phase, Some(ConferencePhase::Ended));
        assert_eq!(after.assignment, None);
        let reasons: Vec<String> = notices(Some(&before), &after, &over)
            .into_iter()
            .map(|n| n.reason)
            .collect();
        assert_eq!(reasons, ["Released", "Ended"]);
    }

    #[test]
    fn ports_the_pod_cannot_bind_become_a_media_ports_condition_and_a_warning() {
        let schedule = schedule_of(
            &spec(timed("2026-03-02T10:00:00Z", "1h"), false),
            None,
            utc("2026-03-02T09:00:00Z"),
        )
        .expect("valid");
        let now = utc("2026-03-02T09:56:00Z");
        let out = outcome(
            &schedule,
            "2026-03-02T09:56:00Z",
            Placement::Held(assignment("sfu-0")),
        );
        let placed = desired_status(None, Some(1), now, &out, &PodLoss::None);
        assert!(
            placed.condition(conditions::MEDIA_PORTS).is_none(),
            "not checked yet"
        );
        let report = |pod: &str, unusable: Vec<u16>| crds::MediaPortsStatus {
            pod: pod.into(),
            udp_ports: UdpPortRange {
                first: 40000,
                last: 40019,
            },
            unusable,
            checked_at: now,
        };
        // The pod found two ports held by someone else.
        let reported = ConferenceStatus {
            media_ports: Some(report("sfu-0", vec![40003, 40004])),
            ..placed.clone()
        };
        let status = desired_status(Some(&reported), Some(1), now, &out, &PodLoss::None);
        let media = status
            .condition(conditions::MEDIA_PORTS)
            .expect("a condition");
        assert_eq!(
            (media.status, media.reason.as_str()),
            (ConditionStatus::False, "PortInUse")
        );
        assert!(
            media
                .message
                .starts_with("UDP ports 40003-40004 of 40000-40019 are held by another process on the node of sfu-0"),
            "{}",
            media.message
        );
        assert!(media.message.contains("2 ports fewer"), "{}", media.message);
        let notes = notices(Some(&reported), &status, &out);
        assert_eq!(
            notes
                .iter()
                .map(|n| (n.severity, n.reason.as_str()))
                .collect::<Vec<_>>(),
            vec![(Severity::Warning, "PortInUse")]
        );
        assert!(!same_owned_fields(Some(&reported), &status));
        // The ports are free again: the condition turns True and says so once.
        let freed = ConferenceStatus {
            media_ports: Some(report("sfu-0", Vec::new())),
            ..status.clone()
        };
        let fine = desired_status(Some(&freed), Some(1), now, &out, &PodLoss::None);
        let media = fine
            .condition(conditions::MEDIA_PORTS)
            .expect("a condition");
        assert_eq!(
            (media.status, media.reason.as_str()),
            (ConditionStatus::True, "PortsUsable")
        );
        assert_eq!(notices(Some(&freed), &fine, &out).len(), 1);
        // A report about another pod (before a failover) says nothing about this assignment.
        let stale = ConferenceStatus {
            media_ports: Some(report("sfu-1", vec![40003])),
            ..placed
        };
        let status = desired_status(Some(&stale), Some(1), now, &out, &PodLoss::None);
        assert!(status.condition(conditions::MEDIA_PORTS).is_none());
    }
}

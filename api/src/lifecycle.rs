//! The IO shell around the pure lifecycle and placement core: it evaluates every conference,
//! archives occurrences that ended, deletes conferences with nothing left, places and releases
//! SFU assignments, and applies what the SFU reports. In standalone mode (and for `conclave api`
//! on SQL) a loop runs [`tick`] at the next moment that matters.

use chrono::{DateTime, Utc};
use placement::{Decision, Phase, PortRange, Succession};
use proto::{Revoked, RoomEvent, RoomReport};

use crate::archive;
use crate::conference::{Conference, Placed};
use crate::revocation;
use crate::state::AppState;
use crate::store::MediaPorts;
use crate::{Error, Result};

/// Unusable media ports kept in a conference's status (the CRD's limit).
const MEDIA_PORTS_KEPT: usize = 1024;

/// The longest the loop sleeps without a wake-up (a safety net, not the schedule).
const MAX_SLEEP: std::time::Duration = std::time::Duration::from_secs(60);

/// Evaluates a conference now, without side effects.
pub fn decide(state: &AppState, conference: &Conference, now: DateTime<Utc>) -> Decision {
    placement::evaluate(
        &conference.definition.schedule(),
        &state.policy,
        &conference.observed(),
        now,
    )
}

/// Places `conference` on the fleet (keeping a valid assignment).
///
/// # Errors
/// 409 `noCapacity` when no SFU can take it now, `conferenceTooLarge` when none ever could;
/// database errors.
pub async fn place(state: &AppState, conference: &Conference) -> Result<Placed> {
    let others = state.store.list(None).await?;
    let existing: Vec<placement::Assignment> = others
        .iter()
        .filter_map(|c| {
            c.runtime.placed.as_ref().map(|p| placement::Assignment {
                conference: c.id.to_string(),
                pod: p.pod.clone(),
                endpoint: p.endpoint.clone(),
                udp_ports: p.udp_ports,
                // One SFU per fleet in standalone mode: its pod is the scope.
                port_scope: p.pod.clone(),
                reserved: c
                    .definition
                    .max_participants
                    .unwrap_or(state.config.default_max_participants),
            })
        })
        .collect();
    let request = placement::Request {
        conference: conference.id.to_string(),
        participants: conference
            .definition
            .max_participants
            .unwrap_or(state.config.default_max_participants),
    };
    let assignment =
        placement::place(&request, &state.fleet, &existing, &state.sizing).map_err(|err| {
            let code = match err {
                placement::PlacementError::TooLarge { .. } => "conferenceTooLarge",
                _ => "noCapacity",
            };
            Error::conflict(code, format!("the conference cannot start: {err}"))
        })?;
    Ok(Placed {
        pod: assignment.pod,
        endpoint: assignment.endpoint,
        udp_ports: assignment.udp_ports,
    })
}

/// Brings one conference's stored state in line with the decision at `now`; returns the
/// decision, whose `wake_at` says when it next needs attention.
///
/// # Errors
/// Database errors.
pub async fn reconcile(
    state: &AppState,
    conference: &Conference,
    now: DateTime<Utc>,
) -> Result<Decision> {
    let decision = decide(state, conference, now);
    if let Some(stored) = conference.runtime.occurrence {
        match placement::succession(stored, decision.occurrence, now) {
            Succession::Unchanged => {}
            // An edit moved the meeting (extended a running one, say): it goes on, and its
            // attendance and early start follow it; it is archived once, when really over.
            Succession::Moved { from, to } => {
                if from.start != to.start {
                    archive::move_occurrence(&state.db, &conference.id, from.start, to.start)
                        .await?;
                    crate::revocation::move_exclusions(
                        &state.db,
                        &conference.id,
                        from.start,
                        to.start,
                    )
                    .await?;
                    if conference.runtime.started_early == Some(from.start) {
                        state
                            .store
                            .set_started_early(&conference.id, to.start)
                            .await?;
                    }
                }
                tracing::info!(conference = %conference.id, start = %to.start, end = %to.end, "occurrence moved");
            }
            Succession::Over(over) => {
                archive::archive_occurrence(
                    &state.db,
                    conference,
                    over.start,
                    over.end.min(now),
                    now,
                )
                .await?;
                crate::revocation::forget_exclusions(&state.db, &conference.id, Some(over.start))
                    .await?;
                tracing::info!(conference = %conference.id, start = %over.start, "occurrence archived");
            }
        }
    }
    if state.store.placed_by_operator() {
        // In a cluster the operator decides phase and placement and writes them into status;
        // an ended Conference stays until its owner (or GitOps) deletes it.
        return Ok(decision);
    }
    if decision.phase == Phase::Ended {
        state.store.delete(&conference.id).await?;
        archive::forget_unarchived(&state.db.pool, &conference.id).await?;
        crate::revocation::forget_conference(&state.db, &conference.id).await?;
        tracing::info!(conference = %conference.id, "conference ended");
        return Ok(decision);
    }
    let placed = if decision.placed {
        match &conference.runtime.placed {
            Some(placed)
                if state
                    .fleet
                    .iter()
                    .any(|pod| pod.ready && pod.name == placed.pod) =>
            {
                Some(placed.clone())
            }
            _ => match place(state, conference).await {
                Ok(placed) => Some(placed),
                Err(err) => {
                    tracing::warn!(conference = %conference.id, cause = %err, "placement failed");
                    None
                }
            },
        }
    } else {
        None
    };
    if decision.phase != conference.runtime.phase
        || decision.occurrence != conference.runtime.occurrence
        || placed != conference.runtime.placed
    {
        state
            .store
            .set_lifecycle(
                &conference.id,
                decision.phase,
                decision.occurrence,
                placed.as_ref(),
            )
            .await?;
    }
    Ok(decision)
}

/// One pass over every conference; returns the earliest moment one needs attention.
///
/// # Errors
/// Database errors.
pub async fn tick(state: &AppState) -> Result<Option<DateTime<Utc>>> {
    let now = state.clock.now();
    let mut next: Option<DateTime<Utc>> = None;
    let mut phases = std::collections::HashMap::<&'static str, i64>::new();
    for conference in state.store.list(None).await? {
        match reconcile(state, &conference, now).await {
            Ok(decision) => {
                if let Some(wake) = decision.wake_at {
                    next = Some(next.map_or(wake, |n| n.min(wake)));
                }
                *phases.entry(decision.phase.as_str()).or_default() += 1;
            }
            Err(err) => {
                tracing::error!(conference = %conference.id, cause = %err, "lifecycle step failed")
            }
        }
    }
    for phase in [Phase::Scheduled, Phase::Ready, Phase::Active] {
        state
            .metrics
            .conferences
            .with_label_values(&[phase.as_str()])
            .set(*phases.get(phase.as_str()).unwrap_or(&0));
    }
    crate::session::purge_expired(&state.db, now).await?;
    crate::http::internal::reports::purge(&state.db, now).await?;
    crate::revocation::purge(&state.db, now, token_window(state)).await?;
    crate::throttle::purge(&state.db, now).await?;
    if state.config.outbox_retention_days > 0 {
        let retention = chrono::Duration::days(i64::from(state.config.outbox_retention_days));
        crate::mail::purge(&state.db, now, retention).await?;
    }
    Ok(next)
}

/// Runs [`tick`] whenever something changes or a conference's next moment comes, until
/// `shutdown` resolves.
pub async fn run_loop(state: AppState, shutdown: impl std::future::Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        let sleep = match tick(&state).await {
            Ok(Some(at)) => (at - state.clock.now())
                .to_std()
                .unwrap_or_default()
                .min(MAX_SLEEP),
            Ok(None) => MAX_SLEEP,
            Err(err) => {
                tracing::error!(cause = %err, "lifecycle pass failed");
                std::time::Duration::from_secs(5)
            }
        };
        tokio::select! {
            () = &mut shutdown => return,
            () = state.lifecycle_wake.notified() => {}
            () = tokio::time::sleep(sleep.max(std::time::Duration::from_millis(200))) => {}
        }
    }
}

/// How long a join token lives: the window of revocations the SFU pods must know.
pub fn token_window(state: &AppState) -> chrono::Duration {
    chrono::Duration::seconds(i64::from(state.config.join_token_seconds))
}

/// Applies what an SFU reports about a room.
///
/// # Errors
/// 404 for an unknown conference, 422 for a bad time or port list; database errors.
pub async fn apply_report(state: &AppState, report: &RoomReport) -> Result<()> {
    let at = DateTime::parse_from_rfc3339(&report.at)
        .map_err(|_| Error::invalid("at", "give the time as RFC 3339"))?
        .with_timezone(&Utc);
    let conference = state
        .store
        .get(&report.conference)
        .await?
        .ok_or_else(|| Error::not_found(format!("no conference {}", report.conference)))?;
    match &report.event {
        RoomEvent::Joined {
            identity,
            display_name,
        } => {
            let occurrence = decide(state, &conference, at).occurrence.map(|o| o.start);
            archive::joined(
                &state.db,
                &conference.id,
                occurrence,
                identity,
                display_name,
                at,
            )
            .await?;
        }
        RoomEvent::Left { identity } => {
            archive::left(&state.db, &conference.id, identity, at).await?
        }
        RoomEvent::Excluded { identity, address } => {
            // Kept for the rest of the occurrence, whatever happens to the SFU pod.
            let occurrence = decide(state, &conference, at).occurrence.map(|o| o.start);
            let address = address
                .as_deref()
                .filter(|_| identity.starts_with("guest:"));
            revocation::exclude(&state.db, &conference.id, occurrence, identity, address, at)
                .await?;
            revocation::record(
                &state.db,
                &Revoked::Excluded {
                    conference: conference.id.clone(),
                    identity: identity.clone(),
                },
                at,
            )
            .await?;
            tracing::info!(conference = %conference.id, "a participant was excluded");
        }
        RoomEvent::MediaPorts {
            pod,
            first,
            last,
            unusable,
        } => {
            let udp_ports = PortRange {
                first: *first,
                last: *last,
            };
            if udp_ports.is_empty()
                || unusable
                    .iter()
                    .any(|port| !(udp_ports.first..=udp_ports.last).contains(port))
            {
                return Err(Error::invalid(
                    "event.unusable",
                    "give the unusable ports inside first..=last",
                ));
            }
            if !unusable.is_empty() {
                tracing::warn!(
                    conference = %conference.id,
                    %pod,
                    first,
                    last,
                    unusable = unusable.len(),
                    "the SFU cannot bind some of the conference's media ports (another process holds them)"
                );
            }
            let mut unusable = unusable.clone();
            unusable.sort_unstable();
            unusable.dedup();
            // The status keeps the first ones; the count is what matters beyond.
            unusable.truncate(MEDIA_PORTS_KEPT);
            state
                .store
                .set_media_ports(
                    &conference.id,
                    &MediaPorts {
                        pod: pod.clone(),
                        udp_ports,
                        unusable,
                        checked_at: at,
                    },
                )
                .await?;
        }
        RoomEvent::RecordingStarted {
            recording,
            identity,
            display_name,
        } => {
            let occurrence = decide(state, &conference, at).occurrence.map(|o| o.start);
            crate::recording::started(
                &state.db,
                recording.as_str(),
                &conference.id,
                &conference.owner,
                &conference.definition.topic,
                occurrence,
                identity,
                display_name,
                at,
            )
            .await?;
            tracing::info!(conference = %conference.id, %recording, "a recording started");
        }
        RoomEvent::RecordingStopped { recording } => {
            crate::recording::stopped(&state.db, recording.as_str(), at).await?;
            state.recording_wake.notify_one();
            tracing::info!(conference = %conference.id, %recording, "a recording stopped; composing it");
        }
        RoomEvent::Ended => {
            match decide(state, &conference, at).occurrence {
                Some(occurrence) => {
                    state
                        .store
                        .set_ended(&conference.id, occurrence.start)
                        .await?;
                }
                // A permanent room stays closed until its owner or a moderator opens it again;
                // the next meeting in it starts without the last one's exclusions.
                None if conference.definition.kind == crate::conference::Kind::Permanent => {
                    revocation::close_room(&state.db, &conference.id, at).await?;
                    revocation::forget_exclusions(&state.db, &conference.id, None).await?;
                }
                None => {}
            }
            revocation::record(
                &state.db,
                &Revoked::Ended {
                    conference: conference.id.clone(),
                },
                at,
            )
            .await?;
            archive::close_all(&state.db, &conference.id, at).await?;
        }
    }
    state
        .store
        .set_participants(&conference.id, report.participants)
        .await?;
    state.lifecycle_wake.notify_one();
    Ok(())
}

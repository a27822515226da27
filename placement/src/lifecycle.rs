//! A conference's lifecycle phase at a moment, and the next moment at which it changes.
//!
//! `Scheduled` → `Ready` (placed; from the lead time before start, at once when permanent or
//! started early by the owner) → `Active` (participants present) → `Ended` (end passed and
//! nobody left, the grace period over, or ended by a moderator). A recurring conference then
//! moves on to its next occurrence; the caller archives the one that ended.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::schedule::{Occurrence, Schedule};

/// Timing knobs of the lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// How long before its start a conference is placed and may be joined.
    pub lead_time: Duration,
    /// How long a conference may run past its end while people are still in it.
    pub end_grace: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            lead_time: Duration::minutes(5),
            end_grace: Duration::minutes(30),
        }
    }
}

/// The lifecycle phase, as in the Conference resource's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Phase {
    /// Waiting for its lead time.
    Scheduled,
    /// Placed and joinable; nobody in it yet.
    Ready,
    /// People are in it.
    Active,
    /// Over, with no occurrence left.
    Ended,
}

impl Phase {
    /// The name used in status and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Scheduled => "Scheduled",
            Phase::Ready => "Ready",
            Phase::Active => "Active",
            Phase::Ended => "Ended",
        }
    }

    /// Parses the name; `None` for anything else.
    pub fn parse(value: &str) -> Option<Self> {
        [Phase::Scheduled, Phase::Ready, Phase::Active, Phase::Ended]
            .into_iter()
            .find(|phase| phase.as_str() == value)
    }
}

/// What is known about the conference besides its schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Observed {
    /// Participants the SFU reports right now.
    pub participants: u32,
    /// The start of the occurrence the owner started early, if any.
    pub started_early: Option<DateTime<Utc>>,
    /// The start of the occurrence a moderator ended, if any.
    pub ended: Option<DateTime<Utc>>,
}

/// The lifecycle decision at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// The phase now.
    pub phase: Phase,
    /// The occurrence the conference is about now (running, or the next one); `None` when
    /// permanent or when no occurrence is left.
    pub occurrence: Option<Occurrence>,
    /// Whether it should hold an SFU assignment now.
    pub placed: bool,
    /// The next moment the decision can change by time alone (participants changing also
    /// changes it); `None` when only observations can change it.
    pub wake_at: Option<DateTime<Utc>>,
}

impl Decision {
    /// Whether the conference log shows it `online`: running or able to start at any moment.
    pub fn online(&self) -> bool {
        matches!(self.phase, Phase::Ready | Phase::Active)
    }
}

/// Evaluates the lifecycle of `schedule` at `now`.
pub fn evaluate(
    schedule: &Schedule,
    policy: &Policy,
    observed: &Observed,
    now: DateTime<Utc>,
) -> Decision {
    if matches!(schedule, Schedule::Permanent) {
        let phase = if observed.participants > 0 {
            Phase::Active
        } else {
            Phase::Ready
        };
        return Decision {
            phase,
            occurrence: None,
            placed: true,
            wake_at: None,
        };
    }
    // Occurrences not yet past their grace, earliest first. Occurrences repeat daily at most
    // often, so besides the next one at most one can be in its grace and one ended early.
    let candidates = schedule.occurrences_ending_after(now - policy.end_grace, 4);
    for occurrence in candidates {
        if observed.ended == Some(occurrence.start) {
            continue;
        }
        if now >= occurrence.end {
            // Overtime: it lives on only while people are in it, until the grace is over.
            if observed.participants > 0 {
                return Decision {
                    phase: Phase::Active,
                    occurrence: Some(occurrence),
                    placed: true,
                    wake_at: Some(occurrence.end + policy.end_grace),
                };
            }
            continue;
        }
        let opens = occurrence.start - policy.lead_time;
        let opened = now >= opens || observed.started_early == Some(occurrence.start);
        return if observed.participants > 0 {
            Decision {
                phase: Phase::Active,
                occurrence: Some(occurrence),
                placed: true,
                wake_at: Some(occurrence.end),
            }
        } else if opened {
            Decision {
                phase: Phase::Ready,
                occurrence: Some(occurrence),
                placed: true,
                wake_at: Some(occurrence.end),
            }
        } else {
            Decision {
                phase: Phase::Scheduled,
                occurrence: Some(occurrence),
                placed: false,
                wake_at: Some(opens),
            }
        };
    }
    Decision {
        phase: Phase::Ended,
        occurrence: None,
        placed: false,
        wake_at: None,
    }
}

/// What became of the occurrence a conference was about (`stored`) once a new decision names
/// `decided` — after time passed, or after an edit of the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Succession {
    /// Still the same occurrence with the same times; or one that had not begun, replaced by
    /// another: nothing to record.
    Unchanged,
    /// The same meeting with new times: an edit moved its start or end (extending a running
    /// meeting is the common case). It goes on; what was recorded under `from` belongs to
    /// `to` now.
    Moved {
        /// The occurrence as it was.
        from: Occurrence,
        /// The occurrence as it is now.
        to: Occurrence,
    },
    /// It began and is over (its end passed, a moderator ended it, or an edit moved the
    /// meeting to a time that does not overlap it): archive it, once.
    Over(Occurrence),
}

/// Tells what became of `stored` when the decision at `now` names `decided`. Two occurrences
/// that overlap in time are the same meeting (occurrences of one schedule never overlap, so
/// only an edit makes an overlapping one); one that does not overlap is another occurrence.
pub fn succession(
    stored: Occurrence,
    decided: Option<Occurrence>,
    now: DateTime<Utc>,
) -> Succession {
    match decided {
        Some(decided) if decided == stored => Succession::Unchanged,
        Some(decided) if decided.start < stored.end && stored.start < decided.end => {
            Succession::Moved {
                from: stored,
                to: decided,
            }
        }
        _ if stored.start <= now => Succession::Over(stored),
        _ => Succession::Unchanged,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().expect("rfc3339")
    }

    fn daily() -> Schedule {
        Schedule::timed(
            utc("2026-03-02T10:00:00Z"),
            utc("2026-03-02T11:00:00Z"),
            chrono_tz::UTC,
            Some("FREQ=DAILY;COUNT=3"),
        )
        .expect("valid")
    }

    fn at(schedule: &Schedule, observed: Observed, now: &str) -> Decision {
        evaluate(schedule, &Policy::default(), &observed, utc(now))
    }

    #[test]
    fn a_conference_is_placed_a_lead_time_before_it_starts() {
        let schedule = daily();
        let early = at(&schedule, Observed::default(), "2026-03-02T09:50:00Z");
        assert_eq!(early.phase, Phase::Scheduled);
        assert!(!early.placed && !early.online());
        assert_eq!(early.wake_at, Some(utc("2026-03-02T09:55:00Z")));
        let ready = at(&schedule, Observed::default(), "2026-03-02T09:55:00Z");
        assert_eq!(ready.phase, Phase::Ready);
        assert!(ready.placed && ready.online());
        assert_eq!(ready.wake_at, Some(utc("2026-03-02T11:00:00Z")));
    }

    #[test]
    fn participants_make_it_active_and_keep_it_alive_through_the_grace() {
        let schedule = daily();
        let busy = Observed {
            participants: 2,
            ..Observed::default()
        };
        assert_eq!(
            at(&schedule, busy, "2026-03-02T10:30:00Z").phase,
            Phase::Active
        );
        let overtime = at(&schedule, busy, "2026-03-02T11:10:00Z");
        assert_eq!(overtime.phase, Phase::Active);
        assert_eq!(
            overtime.occurrence.map(|o| o.start),
            Some(utc("2026-03-02T10:00:00Z"))
        );
        assert_eq!(overtime.wake_at, Some(utc("2026-03-02T11:30:00Z")));
        // Nobody left after the end: on to the next day's occurrence.
        let next = at(&schedule, Observed::default(), "2026-03-02T11:10:00Z");
        assert_eq!(next.phase, Phase::Scheduled);
        assert_eq!(
            next.occurrence.map(|o| o.start),
            Some(utc("2026-03-03T10:00:00Z"))
        );
        // Grace over: the next occurrence even with people still in the room.
        let late = at(&schedule, busy, "2026-03-02T11:31:00Z");
        assert_eq!(
            late.occurrence.map(|o| o.start),
            Some(utc("2026-03-03T10:00:00Z"))
        );
    }

    #[test]
    fn the_owner_may_start_early_and_a_moderator_may_end() {
        let schedule = daily();
        let early = Observed {
            started_early: Some(utc("2026-03-02T10:00:00Z")),
            ..Observed::default()
        };
        assert_eq!(
            at(&schedule, early, "2026-03-02T08:00:00Z").phase,
            Phase::Ready
        );
        let ended = Observed {
            ended: Some(utc("2026-03-02T10:00:00Z")),
            ..Observed::default()
        };
        let after = at(&schedule, ended, "2026-03-02T10:20:00Z");
        assert_eq!(
            after.occurrence.map(|o| o.start),
            Some(utc("2026-03-03T10:00:00Z"))
        );
    }

    #[test]
    fn the_last_occurrence_ends_the_conference() {
        let decision = at(&daily(), Observed::default(), "2026-03-04T11:00:00Z");
        assert_eq!(decision.phase, Phase::Ended);
        assert!(!decision.placed);
        assert_eq!(decision.wake_at, None);
    }

    #[test]
    fn a_permanent_room_is_always_ready() {
        let decision = at(
            &Schedule::Permanent,
            Observed::default(),
            "2030-01-01T00:00:00Z",
        );
        assert_eq!(decision.phase, Phase::Ready);
        assert!(decision.placed);
    }

    fn occurrence(start: &str, end: &str) -> Occurrence {
        Occurrence {
            start: utc(start),
            end: utc(end),
        }
    }

    #[test]
    fn extending_or_moving_a_running_meeting_keeps_it_going() {
        let running = occurrence("2026-03-02T10:00:00Z", "2026-03-02T11:00:00Z");
        let now = utc("2026-03-02T10:40:00Z");
        for edited in [
            occurrence("2026-03-02T10:00:00Z", "2026-03-02T12:00:00Z"),
            occurrence("2026-03-02T10:00:00Z", "2026-03-02T10:30:00Z"),
            occurrence("2026-03-02T10:15:00Z", "2026-03-02T11:15:00Z"),
            occurrence("2026-03-02T10:50:00Z", "2026-03-02T11:50:00Z"),
        ] {
            assert_eq!(
                succession(running, Some(edited), now),
                Succession::Moved {
                    from: running,
                    to: edited
                },
                "{edited:?}"
            );
        }
        assert_eq!(
            succession(running, Some(running), now),
            Succession::Unchanged
        );
    }

    #[test]
    fn a_begun_occurrence_is_over_when_the_next_one_or_none_follows() {
        let running = occurrence("2026-03-02T10:00:00Z", "2026-03-02T11:00:00Z");
        let next = occurrence("2026-03-03T10:00:00Z", "2026-03-03T11:00:00Z");
        let now = utc("2026-03-02T11:00:00Z");
        assert_eq!(
            succession(running, Some(next), now),
            Succession::Over(running)
        );
        assert_eq!(succession(running, None, now), Succession::Over(running));
        // Back to back (a day-long daily meeting): touching is not overlapping.
        let long = occurrence("2026-03-02T10:00:00Z", "2026-03-03T10:00:00Z");
        assert_eq!(
            succession(long, Some(next), utc("2026-03-03T10:00:00Z")),
            Succession::Over(long)
        );
    }

    #[test]
    fn an_occurrence_that_never_began_leaves_nothing_to_archive() {
        let upcoming = occurrence("2026-03-02T10:00:00Z", "2026-03-02T11:00:00Z");
        let elsewhere = occurrence("2026-03-05T10:00:00Z", "2026-03-05T11:00:00Z");
        let now = utc("2026-03-02T09:00:00Z");
        assert_eq!(
            succession(upcoming, Some(elsewhere), now),
            Succession::Unchanged
        );
        assert_eq!(succession(upcoming, None, now), Succession::Unchanged);
    }
}

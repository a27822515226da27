//! Occurrences of a conference: a start and end in UTC, a time zone, and an optional RFC 5545
//! RRULE expanded in that time zone so that a 09:00 weekly meeting stays at 09:00 local time
//! across daylight-saving changes.

use chrono::{DateTime, Duration, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

/// The longest a single occurrence may last.
pub const MAX_DURATION: Duration = Duration::hours(24);
/// How many occurrences ahead the iterator looks before giving up on a sparse rule.
const SEARCH_LIMIT: u16 = 1_000;

/// Why a schedule was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScheduleError {
    /// The end is not after the start.
    #[error("the end must be after the start")]
    EndBeforeStart,
    /// An occurrence would last longer than [`MAX_DURATION`].
    #[error("a conference lasts at most 24 hours")]
    TooLong,
    /// The RRULE does not parse or is not allowed.
    #[error("invalid recurrence rule: {0}")]
    InvalidRecurrence(String),
}

/// A validated RRULE (the part after `RRULE:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recurrence(String);

impl Recurrence {
    /// The rule text, without the `RRULE:` prefix, e.g. `FREQ=WEEKLY;BYDAY=MO`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One occurrence of a conference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Occurrence {
    /// When it starts.
    pub start: DateTime<Utc>,
    /// When it ends.
    pub end: DateTime<Utc>,
}

/// When a conference happens.
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    /// Always available, no occurrences.
    Permanent,
    /// A first occurrence, optionally repeated by an RRULE in `time_zone`.
    Timed {
        /// The first occurrence's start.
        start: DateTime<Utc>,
        /// The first occurrence's end.
        end: DateTime<Utc>,
        /// The IANA time zone the recurrence is expanded in.
        time_zone: Tz,
        /// The recurrence, if any.
        recurrence: Option<Recurrence>,
    },
}

impl Schedule {
    /// A timed schedule, validated: end after start, at most 24 hours, a usable RRULE.
    ///
    /// # Errors
    /// The [`ScheduleError`] that says what is wrong.
    pub fn timed(
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        time_zone: Tz,
        recurrence: Option<&str>,
    ) -> Result<Schedule, ScheduleError> {
        if end <= start {
            return Err(ScheduleError::EndBeforeStart);
        }
        if end - start > MAX_DURATION {
            return Err(ScheduleError::TooLong);
        }
        let recurrence = match recurrence.map(str::trim).filter(|rule| !rule.is_empty()) {
            None => None,
            Some(rule) => Some(validate_rule(rule, start, time_zone)?),
        };
        Ok(Schedule::Timed {
            start,
            end,
            time_zone,
            recurrence,
        })
    }

    /// A timed schedule read back from a definition that [`Schedule::timed`] validated when it
    /// was written: the rule is only parsed, not checked again (checking it expands hundreds of
    /// occurrences, far more than evaluating it, and a conference is evaluated on every list
    /// and join).
    pub fn stored(
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        time_zone: Tz,
        recurrence: Option<&str>,
    ) -> Schedule {
        let recurrence = recurrence
            .map(|rule| rule.trim())
            .map(|rule| rule.strip_prefix("RRULE:").unwrap_or(rule).trim())
            .map(str::to_ascii_uppercase)
            // Should a stored rule stop parsing, the first occurrence is kept.
            .filter(|rule| !rule.is_empty() && rule_set(rule, start, time_zone).is_ok())
            .map(Recurrence);
        Schedule::Timed {
            start,
            end,
            time_zone,
            recurrence,
        }
    }

    /// The first occurrence that has not ended at `t` (it may be running at `t`).
    pub fn occurrence_ending_after(&self, t: DateTime<Utc>) -> Option<Occurrence> {
        self.occurrences_ending_after(t, 1).into_iter().next()
    }

    /// Up to `limit` occurrences, in order, that have not ended at `t`.
    pub fn occurrences_ending_after(&self, t: DateTime<Utc>, limit: usize) -> Vec<Occurrence> {
        let Schedule::Timed {
            start,
            end,
            time_zone,
            recurrence,
        } = self
        else {
            return Vec::new();
        };
        let duration = *end - *start;
        let Some(rule) = recurrence else {
            return if *end > t {
                vec![Occurrence {
                    start: *start,
                    end: *end,
                }]
            } else {
                Vec::new()
            };
        };
        let Ok(set) = rule_set(rule.as_str(), *start, *time_zone) else {
            // Validated on construction; a rule that stops parsing yields no occurrences.
            return Vec::new();
        };
        // Occurrences starting after `t - duration` are the ones still running or to come.
        let from = (t - duration).with_timezone(&rrule::Tz::Tz(*time_zone));
        set.after(from)
            .into_iter()
            .take(SEARCH_LIMIT as usize)
            .map(|local| {
                let start = local.with_timezone(&Utc);
                Occurrence {
                    start,
                    end: start + duration,
                }
            })
            .filter(|occurrence| occurrence.end > t)
            .take(limit)
            .collect()
    }
}

fn validate_rule(rule: &str, start: DateTime<Utc>, tz: Tz) -> Result<Recurrence, ScheduleError> {
    let rule = rule.strip_prefix("RRULE:").unwrap_or(rule).trim();
    if rule.contains(['\r', '\n']) {
        return Err(ScheduleError::InvalidRecurrence(
            "it must be a single line".into(),
        ));
    }
    let upper = rule.to_ascii_uppercase();
    if upper.contains("DTSTART") {
        return Err(ScheduleError::InvalidRecurrence(
            "give the start as `start`, not inside the rule".into(),
        ));
    }
    let set = rule_set(&upper, start, tz)?;
    // What the rule produces decides, not how it is written: `FREQ=DAILY;BYHOUR=0,1,…` or a
    // BYSETPOS trick repeats hourly whatever its FREQ says.
    let starts: Vec<NaiveDateTime> = set
        .all(DAILY_CHECK_OCCURRENCES)
        .dates
        .iter()
        .map(|t| t.naive_local())
        .collect();
    // The rule must produce at least one occurrence.
    if starts.is_empty() {
        return Err(ScheduleError::InvalidRecurrence(
            "it produces no occurrence".into(),
        ));
    }
    if !repeats_at_most_daily(&starts) {
        return Err(ScheduleError::InvalidRecurrence(
            "conferences repeat daily at most often".into(),
        ));
    }
    Ok(Recurrence(upper))
}

/// Occurrences of a rule checked for repeating at most daily: a year of a daily rule, and
/// enough for any pattern of BY… parts to show itself.
const DAILY_CHECK_OCCURRENCES: u16 = 500;
/// The shortest gap in local wall time between two occurrences: a day, less the hour a
/// daylight-saving change may move an occurrence that falls into the skipped hour.
const MIN_GAP_LOCAL: Duration = Duration::hours(23);

/// Whether consecutive local starts lie at least about a day apart.
fn repeats_at_most_daily(starts: &[NaiveDateTime]) -> bool {
    starts
        .windows(2)
        .all(|pair| pair[1] - pair[0] >= MIN_GAP_LOCAL)
}

fn rule_set(rule: &str, start: DateTime<Utc>, tz: Tz) -> Result<rrule::RRuleSet, ScheduleError> {
    let local: NaiveDateTime = tz.from_utc_datetime(&start.naive_utc()).naive_local();
    let text = format!(
        "DTSTART;TZID={}:{}\nRRULE:{}",
        tz.name(),
        local.format("%Y%m%dT%H%M%S"),
        rule
    );
    text.parse::<rrule::RRuleSet>()
        .map_err(|err| ScheduleError::InvalidRecurrence(err.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_schedule_evaluates_like_the_validated_one_without_checking_again() {
        let (start, end) = (utc("2026-03-02T09:00:00Z"), utc("2026-03-02T10:00:00Z"));
        let tz: Tz = "Europe/Berlin".parse().expect("zone");
        let rule = "FREQ=WEEKLY;BYDAY=MO,TH";
        let validated = Schedule::timed(start, end, tz, Some(rule)).expect("valid");
        let stored = Schedule::stored(start, end, tz, Some("RRULE:freq=weekly;byday=MO,TH"));
        let t = utc("2026-04-01T00:00:00Z");
        assert_eq!(
            stored.occurrences_ending_after(t, 5),
            validated.occurrences_ending_after(t, 5)
        );
        // A stored rule that no longer parses keeps the first occurrence.
        let broken = Schedule::stored(start, end, tz, Some("FREQ=NEVER"));
        assert_eq!(
            broken.occurrences_ending_after(utc("2026-01-01T00:00:00Z"), 5),
            vec![Occurrence { start, end }]
        );
    }

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().expect("rfc3339")
    }

    #[test]
    fn a_rule_that_expands_to_more_than_one_a_day_is_refused_whatever_its_freq() {
        let start = utc("2026-10-19T07:00:00Z");
        let end = utc("2026-10-19T08:00:00Z");
        let tz = chrono_tz::Europe::Berlin;
        let hourly_by_parts =
            "FREQ=DAILY;BYHOUR=0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23";
        let refused = [
            "FREQ=HOURLY",
            hourly_by_parts,
            "FREQ=WEEKLY;BYDAY=MO;BYHOUR=9,10",
            "FREQ=DAILY;BYMINUTE=0,30",
            // Monday 23:00 and Tuesday 01:00: different days, two hours apart.
            "FREQ=WEEKLY;BYDAY=MO,TU;BYHOUR=1,23;BYSETPOS=2,3",
        ];
        for rule in refused {
            assert_eq!(
                Schedule::timed(start, end, tz, Some(rule)).err(),
                Some(ScheduleError::InvalidRecurrence(
                    "conferences repeat daily at most often".into()
                )),
                "{rule}"
            );
        }
        for allowed in [
            "FREQ=DAILY",
            "FREQ=DAILY;BYHOUR=9",
            "FREQ=WEEKLY;BYDAY=MO,WE,FR",
            "FREQ=HOURLY;INTERVAL=24",
            "FREQ=MONTHLY;BYDAY=1MO",
        ] {
            assert!(
                Schedule::timed(start, end, tz, Some(allowed)).is_ok(),
                "{allowed}"
            );
        }
    }

    #[test]
    fn weekly_meeting_keeps_local_time_across_dst() {
        // 09:00 in Berlin: UTC+2 in summer, UTC+1 after 25 October 2026.
        let schedule = Schedule::timed(
            utc("2026-10-19T07:00:00Z"),
            utc("2026-10-19T08:00:00Z"),
            chrono_tz::Europe::Berlin,
            Some("FREQ=WEEKLY;BYDAY=MO"),
        )
        .expect("valid");
        let next = schedule.occurrences_ending_after(utc("2026-10-19T09:00:00Z"), 2);
        assert_eq!(next[0].start, utc("2026-10-26T08:00:00Z"));
        assert_eq!(next[0].end, utc("2026-10-26T09:00:00Z"));
        assert_eq!(next[1].start, utc("2026-11-02T08:00:00Z"));
    }

    #[test]
    fn a_running_occurrence_is_returned_until_it_ends() {
        let schedule = Schedule::timed(
            utc("2026-01-05T10:00:00Z"),
            utc("2026-01-05T11:00:00Z"),
            chrono_tz::UTC,
            Some("RRULE:FREQ=DAILY;COUNT=3"),
        )
        .expect("valid");
        let during = schedule.occurrence_ending_after(utc("2026-01-06T10:30:00Z"));
        assert_eq!(during.map(|o| o.start), Some(utc("2026-01-06T10:00:00Z")));
        assert_eq!(
            schedule.occurrence_ending_after(utc("2026-01-07T11:00:00Z")),
            None
        );
    }

    #[test]
    fn one_off_has_one_occurrence() {
        let schedule = Schedule::timed(
            utc("2026-01-05T10:00:00Z"),
            utc("2026-01-05T11:00:00Z"),
            chrono_tz::UTC,
            None,
        )
        .expect("valid");
        assert!(
            schedule
                .occurrence_ending_after(utc("2026-01-05T10:59:59Z"))
                .is_some()
        );
        assert!(
            schedule
                .occurrence_ending_after(utc("2026-01-05T11:00:00Z"))
                .is_none()
        );
        assert!(
            Schedule::Permanent
                .occurrence_ending_after(utc("2026-01-05T11:00:00Z"))
                .is_none()
        );
    }

    #[test]
    fn bad_schedules_are_refused_with_reasons() {
        let start = utc("2026-01-05T10:00:00Z");
        let tz = chrono_tz::UTC;
        assert_eq!(
            Schedule::timed(start, start, tz, None),
            Err(ScheduleError::EndBeforeStart)
        );
        assert_eq!(
            Schedule::timed(start, start + Duration::hours(25), tz, None),
            Err(ScheduleError::TooLong)
        );
        for rule in [
            "FREQ=FORTNIGHTLY",
            "FREQ=MINUTELY",
            "FREQ=DAILY\nX",
            "DTSTART:2020",
            "BYDAY=MO",
        ] {
            assert!(
                matches!(
                    Schedule::timed(start, start + Duration::hours(1), tz, Some(rule)),
                    Err(ScheduleError::InvalidRecurrence(_))
                ),
                "{rule} should be refused"
            );
        }
    }
}

//! Conferences: their definition (what people schedule), their runtime state (phase,
//! occurrence, placement, participants), and the rules that turn a request into a valid
//! definition.

use chrono::{DateTime, Duration, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use placement::{Occurrence, Phase, PortRange, Schedule};
use proto::{AccountId, AccountLevel, ConferenceId, Media, MeetingId};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use crate::account::Account;
use crate::{Error, Result, validate};

/// How long an ad hoc conference lasts.
pub const AD_HOC_DURATION: Duration = Duration::minutes(30);
/// The topic of an ad hoc conference when none is given.
pub const AD_HOC_TOPIC: &str = "Ad hoc conference";
/// How far ahead a conference may be scheduled.
const MAX_AHEAD: Duration = Duration::days(5 * 366);
/// How far in the past a start may lie (typing takes time).
const PAST_SLACK: Duration = Duration::minutes(1);
/// Most invitees per conference.
const MAX_INVITEES: usize = 200;

/// How a conference came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ConferenceKind)]
pub enum Kind {
    /// Scheduled with a start and an end (maybe recurring).
    Scheduled,
    /// Started now for 30 minutes.
    AdHoc,
    /// Always available, no schedule.
    Permanent,
}

impl Kind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Scheduled => "scheduled",
            Kind::AdHoc => "adHoc",
            Kind::Permanent => "permanent",
        }
    }

    /// Parses the stored name.
    pub fn parse(value: &str) -> Option<Kind> {
        [Kind::Scheduled, Kind::AdHoc, Kind::Permanent]
            .into_iter()
            .find(|k| k.as_str() == value)
    }
}

/// What people schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct Definition {
    /// The topic.
    pub topic: String,
    /// Scheduled, ad hoc or permanent.
    pub kind: Kind,
    /// The first occurrence's start (`None` when permanent).
    pub start: Option<DateTime<Utc>>,
    /// The first occurrence's end (`None` when permanent).
    pub end: Option<DateTime<Utc>>,
    /// The time zone the schedule is expressed in.
    pub time_zone: Tz,
    /// An RFC 5545 RRULE, validated.
    pub recurrence: Option<String>,
    /// Most participants, if limited.
    pub max_participants: Option<u32>,
    /// Whether people may be admitted while the owner is absent.
    pub allow_join_without_owner: bool,
    /// Audio and video, or audio only.
    pub media: Media,
    /// Whether moderators of level moderatorPlus may record it (`recording.allowed`).
    pub recording_allowed: bool,
    /// The meeting ID people type.
    pub meeting_id: MeetingId,
    /// The meeting password (digits, so phone callers can type it).
    pub password: String,
    /// Invited e-mail addresses.
    pub invitees: Vec<String>,
}

impl Definition {
    /// The schedule as the placement core sees it.
    pub fn schedule(&self) -> Schedule {
        match (self.kind, self.start, self.end) {
            (Kind::Permanent, _, _) | (_, None, _) | (_, _, None) => Schedule::Permanent,
            // Validated when written; evaluating it must not expand the rule to check it again.
            (_, Some(start), Some(end)) => {
                Schedule::stored(start, end, self.time_zone, self.recurrence.as_deref())
            }
        }
    }

    /// The room settings carried in join tokens; `revision` is the conference's sequence, so
    /// that the SFU applies only settings newer than those it holds.
    pub fn room_settings(
        &self,
        udp_ports: Option<PortRange>,
        revision: i64,
    ) -> proto::RoomSettings {
        proto::RoomSettings {
            revision,
            max_participants: self.max_participants,
            allow_join_without_owner: self.allow_join_without_owner,
            media: self.media,
            recording_allowed: self.recording_allowed,
            topic: Some(self.topic.clone()),
            udp_ports: udp_ports.map(|p| proto::UdpPorts {
                first: p.first,
                last: p.last,
            }),
        }
    }
}

/// Where a conference runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    /// The SFU pod.
    pub pod: String,
    /// The signaling URL clients connect to.
    pub endpoint: String,
    /// Its UDP ports on that pod.
    pub udp_ports: PortRange,
}

/// The state the lifecycle and the SFU keep.
#[derive(Debug, Clone, PartialEq)]
pub struct Runtime {
    /// The phase last decided.
    pub phase: Phase,
    /// The occurrence it is about (running or next).
    pub occurrence: Option<Occurrence>,
    /// The start of the occurrence the owner started early.
    pub started_early: Option<DateTime<Utc>>,
    /// The start of the occurrence a moderator ended.
    pub ended: Option<DateTime<Utc>>,
    /// Participants the SFU reports.
    pub participants: u32,
    /// Where it runs, when placed.
    pub placed: Option<Placed>,
    /// Why the operator could not place it (its `Placed=False` condition: reason, message);
    /// `None` when placed, or not tried yet.
    pub not_placed: Option<(String, String)>,
}

/// A conference: definition plus runtime state.
#[derive(Debug, Clone, PartialEq)]
pub struct Conference {
    /// Its ID.
    pub id: ConferenceId,
    /// Who owns it.
    pub owner: AccountId,
    /// What was scheduled.
    pub definition: Definition,
    /// Bumped by every edit; calendar invitations carry it as SEQUENCE.
    pub sequence: i64,
    /// Lifecycle state.
    pub runtime: Runtime,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When its definition last changed.
    pub updated_at: DateTime<Utc>,
}

impl Conference {
    /// What the lifecycle core needs besides the schedule.
    pub fn observed(&self) -> placement::Observed {
        placement::Observed {
            participants: self.runtime.participants,
            started_early: self.runtime.started_early,
            ended: self.runtime.ended,
        }
    }

    /// Whether `account` may see and change it (its owner, or an administrator).
    pub fn is_managed_by(&self, account: &Account) -> bool {
        self.owner == account.id || account.level == AccountLevel::Admin
    }
}

/// Deserializes a field that may be missing (`None`), `null` (`Some(None)`) or a value.
fn nullable<'de, D, T>(deserializer: D) -> std::result::Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// The body of `POST /conferences` and `PATCH /conferences/{id}`. On PATCH every field is
/// optional and only the fields given change; `null` clears `recurrence` and `maxParticipants`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConferenceInput {
    /// What the meeting is about (at most 200 characters).
    pub topic: Option<String>,
    /// RFC 3339 (`2026-12-01T10:00:00+01:00`) or local time in `timeZone` (`2026-12-01T10:00`).
    pub start: Option<String>,
    /// Like `start`; give `end` or `durationMinutes`.
    pub end: Option<String>,
    /// 1 to 1440 minutes; give `end` or `durationMinutes`.
    pub duration_minutes: Option<u32>,
    /// IANA time zone; default: the owner's.
    pub time_zone: Option<String>,
    /// An RFC 5545 RRULE such as `FREQ=WEEKLY;BYDAY=MO,WE`.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub recurrence: Option<Option<String>>,
    /// An always-available room without schedule (levels moderator and up).
    pub permanent: Option<bool>,
    /// 2 to 1000.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<u32>)]
    pub max_participants: Option<Option<u32>>,
    /// Default true.
    pub allow_join_without_owner: Option<bool>,
    /// `audioVideo` (default) or `audioOnly`.
    #[schema(value_type = Option<String>, example = "audioVideo")]
    pub media: Option<Media>,
    /// Whether moderators of level moderatorPlus may record the meeting; default true.
    pub recording_allowed: Option<bool>,
    /// 6 to 12 digits; generated (9 digits) when empty.
    pub meeting_id: Option<String>,
    /// 4 to 16 digits; generated (6 digits) when empty.
    pub password: Option<String>,
    /// E-mail addresses to invite.
    pub invitees: Option<Vec<String>>,
    /// An archive entry this schedules again; it leaves the archive once scheduled.
    pub repeat_of: Option<String>,
}

/// Parses a time given as RFC 3339 or as a local time in `tz`.
///
/// # Errors
/// 422 naming `field`.
pub fn parse_time(field: &str, value: &str, tz: Tz) -> Result<DateTime<Utc>> {
    let value = value.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Ok(t.with_timezone(&Utc));
    }
    let naive = [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
    ]
    .iter()
    .find_map(|format| NaiveDateTime::parse_from_str(value, format).ok())
    .ok_or_else(|| {
        Error::invalid(
            field,
            format!("{value:?} is not a time like 2026-12-01T10:00 or 2026-12-01T10:00:00+01:00"),
        )
    })?;
    match tz.from_local_datetime(&naive) {
        chrono::LocalResult::Single(t) => Ok(t.with_timezone(&Utc)),
        chrono::LocalResult::Ambiguous(first, _) => Ok(first.with_timezone(&Utc)),
        chrono::LocalResult::None => Err(Error::invalid(
            field,
            format!(
                "{value} does not exist in {} (the clocks skip it); pick another time",
                tz.name()
            ),
        )),
    }
}

/// A random string of `len` digits, not starting with 0.
pub fn random_digits(len: usize) -> String {
    let mut digits = String::with_capacity(len);
    digits.push(char::from(b'1' + rand::random_range(0..9u8)));
    for _ in 1..len {
        digits.push(char::from(b'0' + rand::random_range(0..10u8)));
    }
    digits
}

/// Context for turning an input into a definition.
#[derive(Debug, Clone, Copy)]
pub struct Resolve<'a> {
    /// Who schedules (the owner on create, the editor on edit).
    pub account: &'a Account,
    /// The moment of the request.
    pub now: DateTime<Utc>,
}

/// Builds the definition of a new scheduled (or permanent) conference.
///
/// # Errors
/// 422 for invalid values, 403 when a permanent room is asked for below level moderator.
pub fn definition_for_create(input: &ConferenceInput, ctx: Resolve<'_>) -> Result<Definition> {
    let permanent = input.permanent.unwrap_or(false);
    if permanent && ctx.account.level < AccountLevel::Moderator {
        return Err(Error::forbidden(
            "only moderators and administrators create permanent rooms",
        ));
    }
    let time_zone = match &input.time_zone {
        Some(tz) => validate::time_zone("timeZone", tz)?,
        None => ctx.account.tz(),
    };
    let topic = validate::text("topic", input.topic.as_deref().unwrap_or(""), 200)?;
    let (kind, start, end, recurrence) = if permanent {
        if input.start.is_some() || input.end.is_some() || input.duration_minutes.is_some() {
            return Err(Error::invalid(
                "permanent",
                "a permanent room has no start, end or duration",
            ));
        }
        if matches!(input.recurrence, Some(Some(_))) {
            return Err(Error::invalid(
                "recurrence",
                "a permanent room does not recur",
            ));
        }
        (Kind::Permanent, None, None, None)
    } else {
        let start_text = input
            .start
            .as_deref()
            .ok_or_else(|| Error::invalid("start", "give a start time"))?;
        let start = parse_time("start", start_text, time_zone)?;
        let end = resolve_end(
            input.end.as_deref(),
            input.duration_minutes,
            start,
            time_zone,
        )?
        .ok_or_else(|| Error::invalid("end", "give an end time or durationMinutes"))?;
        check_start(start, ctx.now)?;
        let recurrence = input.recurrence.clone().flatten();
        (Kind::Scheduled, Some(start), Some(end), recurrence)
    };
    let mut definition = Definition {
        topic,
        kind,
        start,
        end,
        time_zone,
        recurrence,
        max_participants: None,
        allow_join_without_owner: input.allow_join_without_owner.unwrap_or(true),
        media: input.media.unwrap_or_default(),
        recording_allowed: input.recording_allowed.unwrap_or(true),
        meeting_id: MeetingId(String::new()),
        password: random_digits(6),
        invitees: Vec::new(),
    };
    apply_common(&mut definition, input)?;
    validate_schedule(&mut definition)?;
    Ok(definition)
}

/// Builds the definition of an ad hoc conference: now, for 30 minutes.
///
/// # Errors
/// 422 for an invalid topic.
pub fn definition_for_ad_hoc(topic: Option<&str>, ctx: Resolve<'_>) -> Result<Definition> {
    let topic = match topic.map(str::trim).filter(|t| !t.is_empty()) {
        Some(topic) => validate::text("topic", topic, 200)?,
        None => AD_HOC_TOPIC.to_owned(),
    };
    Ok(Definition {
        topic,
        kind: Kind::AdHoc,
        start: Some(ctx.now),
        end: Some(ctx.now + AD_HOC_DURATION),
        time_zone: ctx.account.tz(),
        recurrence: None,
        max_participants: None,
        allow_join_without_owner: true,
        media: Media::AudioVideo,
        recording_allowed: true,
        meeting_id: MeetingId(random_digits(9)),
        password: random_digits(6),
        invitees: Vec::new(),
    })
}

/// Applies a PATCH to an existing definition.
///
/// # Errors
/// 422 for invalid values, 403 when a permanent room is asked for below level moderator.
pub fn definition_for_edit(
    current: &Definition,
    input: &ConferenceInput,
    ctx: Resolve<'_>,
) -> Result<Definition> {
    let mut next = current.clone();
    if let Some(topic) = &input.topic {
        next.topic = validate::text("topic", topic, 200)?;
    }
    if let Some(tz) = &input.time_zone {
        next.time_zone = validate::time_zone("timeZone", tz)?;
    }
    match input.permanent {
        Some(true) if current.kind != Kind::Permanent => {
            if ctx.account.level < AccountLevel::Moderator {
                return Err(Error::forbidden(
                    "only moderators and administrators create permanent rooms",
                ));
            }
            next.kind = Kind::Permanent;
            next.start = None;
            next.end = None;
            next.recurrence = None;
        }
        Some(false) if current.kind == Kind::Permanent => {
            next.kind = Kind::Scheduled;
            if input.start.is_none() {
                return Err(Error::invalid("start", "give a start time"));
            }
        }
        _ => {}
    }
    let timing_changed =
        input.start.is_some() || input.end.is_some() || input.duration_minutes.is_some();
    if next.kind == Kind::Permanent {
        if timing_changed {
            return Err(Error::invalid(
                "permanent",
                "a permanent room has no start, end or duration",
            ));
        }
    } else if timing_changed || next.start.is_none() {
        let old_duration = match (current.start, current.end) {
            (Some(start), Some(end)) => Some(end - start),
            _ => None,
        };
        let start = match &input.start {
            Some(text) => {
                let start = parse_time("start", text, next.time_zone)?;
                check_start(start, ctx.now)?;
                start
            }
            None => next
                .start
                .ok_or_else(|| Error::invalid("start", "give a start time"))?,
        };
        let end = match resolve_end(
            input.end.as_deref(),
            input.duration_minutes,
            start,
            next.time_zone,
        )? {
            Some(end) => end,
            None => old_duration
                .map(|duration| start + duration)
                .ok_or_else(|| Error::invalid("end", "give an end time or durationMinutes"))?,
        };
        next.start = Some(start);
        next.end = Some(end);
        if next.kind == Kind::AdHoc && input.start.is_some() {
            next.kind = Kind::Scheduled;
        }
    }
    if let Some(recurrence) = &input.recurrence {
        if next.kind == Kind::Permanent && recurrence.is_some() {
            return Err(Error::invalid(
                "recurrence",
                "a permanent room does not recur",
            ));
        }
        next.recurrence = recurrence.clone();
    }
    if let Some(allow) = input.allow_join_without_owner {
        next.allow_join_without_owner = allow;
    }
    if let Some(media) = input.media {
        next.media = media;
    }
    if let Some(allowed) = input.recording_allowed {
        next.recording_allowed = allowed;
    }
    apply_common(&mut next, input)?;
    validate_schedule(&mut next)?;
    Ok(next)
}

fn resolve_end(
    end: Option<&str>,
    duration_minutes: Option<u32>,
    start: DateTime<Utc>,
    tz: Tz,
) -> Result<Option<DateTime<Utc>>> {
    match (end, duration_minutes) {
        (Some(_), Some(_)) => Err(Error::invalid(
            "durationMinutes",
            "give an end time or durationMinutes, not both",
        )),
        (Some(end), None) => Ok(Some(parse_time("end", end, tz)?)),
        (None, Some(minutes)) => {
            if !(1..=24 * 60).contains(&minutes) {
                return Err(Error::invalid(
                    "durationMinutes",
                    "a conference lasts 1 to 1440 minutes",
                ));
            }
            Ok(Some(start + Duration::minutes(i64::from(minutes))))
        }
        (None, None) => Ok(None),
    }
}

fn check_start(start: DateTime<Utc>, now: DateTime<Utc>) -> Result<()> {
    if start < now - PAST_SLACK {
        return Err(Error::invalid(
            "start",
            "the start lies in the past; pick a later time or start an ad hoc conference",
        ));
    }
    if start > now + MAX_AHEAD {
        return Err(Error::invalid(
            "start",
            "a conference is scheduled at most five years ahead",
        ));
    }
    Ok(())
}

/// Applies the fields create and edit share: meeting ID, password, limits, invitees.
fn apply_common(definition: &mut Definition, input: &ConferenceInput) -> Result<()> {
    if let Some(max) = input.max_participants {
        if let Some(n) = max
            && !(2..=1000).contains(&n)
        {
            return Err(Error::invalid(
                "maxParticipants",
                "allow 2 to 1000 participants",
            ));
        }
        definition.max_participants = max;
    }
    if let Some(media) = input.media {
        definition.media = media;
    }
    match input.meeting_id.as_deref().map(str::trim) {
        Some(id) if !id.is_empty() => {
            if !MeetingId::is_well_formed(id) {
                return Err(Error::invalid(
                    "meetingId",
                    "a meeting ID has 6 to 12 digits and nothing else",
                ));
            }
            definition.meeting_id = MeetingId(id.to_owned());
        }
        _ if definition.meeting_id.as_str().is_empty() => {
            definition.meeting_id = MeetingId(random_digits(9));
        }
        _ => {}
    }
    match input.password.as_deref().map(str::trim) {
        Some(password) if !password.is_empty() => {
            if !(4..=16).contains(&password.len()) || !password.bytes().all(|b| b.is_ascii_digit())
            {
                return Err(Error::invalid(
                    "password",
                    "a meeting password has 4 to 16 digits, so that phone callers can type it",
                ));
            }
            definition.password = password.to_owned();
        }
        Some(_) => definition.password = random_digits(6),
        None => {}
    }
    if let Some(invitees) = &input.invitees {
        if invitees.len() > MAX_INVITEES {
            return Err(Error::invalid(
                "invitees",
                format!("invite at most {MAX_INVITEES} addresses at once"),
            ));
        }
        let mut clean: Vec<String> = Vec::with_capacity(invitees.len());
        for address in invitees {
            let address = validate::email("invitees", address)?;
            if !clean
                .iter()
                .any(|known| known.eq_ignore_ascii_case(&address))
            {
                clean.push(address);
            }
        }
        definition.invitees = clean;
    }
    Ok(())
}

/// Checks end after start, duration and the RRULE, normalising the rule.
fn validate_schedule(definition: &mut Definition) -> Result<()> {
    let (Some(start), Some(end)) = (definition.start, definition.end) else {
        return Ok(());
    };
    let schedule = Schedule::timed(
        start,
        end,
        definition.time_zone,
        definition.recurrence.as_deref(),
    )
    .map_err(|err| {
        let field = match err {
            placement::ScheduleError::EndBeforeStart => "end",
            placement::ScheduleError::TooLong => "durationMinutes",
            placement::ScheduleError::InvalidRecurrence(_) => "recurrence",
        };
        Error::invalid(field, err.to_string())
    })?;
    if let Schedule::Timed { recurrence, .. } = schedule {
        definition.recurrence = recurrence.map(|rule| rule.as_str().to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(level: AccountLevel) -> Account {
        Account {
            id: AccountId::from("a1"),
            login: "ada".into(),
            display_name: "Ada".into(),
            email: "ada@example.org".into(),
            level,
            time_zone: "Europe/Berlin".into(),
            disabled: false,
            created_at: Utc::now(),
            source: crate::directory::Source::Local,
        }
    }

    fn now() -> DateTime<Utc> {
        "2026-06-01T08:00:00Z".parse().expect("time")
    }

    #[test]
    fn local_times_are_read_in_the_given_zone() {
        let t = parse_time("start", "2026-06-02T10:00", chrono_tz::Europe::Berlin).expect("time");
        assert_eq!(
            t,
            "2026-06-02T08:00:00Z"
                .parse::<DateTime<Utc>>()
                .expect("time")
        );
        let err =
            parse_time("start", "2026-03-29T02:30", chrono_tz::Europe::Berlin).expect_err("gap");
        assert!(err.to_string().contains("does not exist"), "{err}");
    }

    #[test]
    fn create_fills_in_meeting_id_password_and_defaults() {
        let input = ConferenceInput {
            topic: Some("Weekly".into()),
            start: Some("2026-06-02T10:00".into()),
            duration_minutes: Some(60),
            ..Default::default()
        };
        let account = account(AccountLevel::Audience);
        let definition = definition_for_create(
            &input,
            Resolve {
                account: &account,
                now: now(),
            },
        )
        .expect("valid");
        assert_eq!(definition.meeting_id.as_str().len(), 9);
        assert_eq!(definition.password.len(), 6);
        assert!(definition.allow_join_without_owner);
        assert_eq!(definition.time_zone, chrono_tz::Europe::Berlin);
        assert_eq!(
            definition.end.zip(definition.start).map(|(e, s)| e - s),
            Some(Duration::hours(1))
        );
    }

    #[test]
    fn audience_cannot_create_permanent_rooms() {
        let input = ConferenceInput {
            topic: Some("Room".into()),
            permanent: Some(true),
            ..Default::default()
        };
        let audience = account(AccountLevel::Audience);
        assert!(matches!(
            definition_for_create(
                &input,
                Resolve {
                    account: &audience,
                    now: now()
                }
            ),
            Err(Error::Forbidden(_))
        ));
        let moderator = account(AccountLevel::Moderator);
        let room = definition_for_create(
            &input,
            Resolve {
                account: &moderator,
                now: now(),
            },
        )
        .expect("valid");
        assert_eq!(room.kind, Kind::Permanent);
        assert_eq!(room.schedule(), Schedule::Permanent);
    }

    #[test]
    fn edits_keep_the_duration_when_only_the_start_moves() {
        let account = account(AccountLevel::Audience);
        let ctx = Resolve {
            account: &account,
            now: now(),
        };
        let input = ConferenceInput {
            topic: Some("Weekly".into()),
            start: Some("2026-06-02T10:00".into()),
            duration_minutes: Some(90),
            ..Default::default()
        };
        let current = definition_for_create(&input, ctx).expect("valid");
        let moved = definition_for_edit(
            &current,
            &ConferenceInput {
                start: Some("2026-06-03T09:00".into()),
                ..Default::default()
            },
            ctx,
        )
        .expect("valid");
        assert_eq!(
            moved.end.zip(moved.start).map(|(e, s)| e - s),
            Some(Duration::minutes(90))
        );
        assert_eq!(moved.meeting_id, current.meeting_id);
    }
}

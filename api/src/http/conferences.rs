//! Conferences: the log (`GET /conferences`), scheduling, ad hoc and permanent rooms, viewing,
//! editing, deleting, the archive, repeating, and the `.ics` download.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, FixedOffset, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use proto::{AccountId, AccountLevel, ConferenceId, Media};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::ErrorBody;
use super::extract::{ApiJson, ApiQuery, CurrentUser};
use crate::account::{self, Account};
use crate::archive::{self, Entry};
use crate::conference::{self, Conference, ConferenceInput, Definition, Kind, Resolve, Runtime};
use crate::ics;
use crate::lifecycle;
use crate::mail;
use crate::phone::{self, DialIn};
use crate::settings;
use crate::state::AppState;
use crate::throttle;
use crate::{Error, Result};

/// Routes under `/conferences`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/conferences", get(list).post(create))
        .route("/conferences/adhoc", post(ad_hoc))
        .route("/conferences/{id}", get(show).patch(edit).delete(remove))
        .route("/conferences/{id}/repeat", post(repeat))
        .route("/conferences/{id}/calendar.ics", get(calendar))
        .route(
            "/conferences/{id}/invitations",
            get(invitation_log).post(invite),
        )
        .route("/conferences/{id}/notify", post(notify))
}

/// Who owns a conference.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OwnerView {
    /// Account ID.
    #[schema(value_type = String)]
    pub id: AccountId,
    /// Login name.
    pub login: String,
    /// Display name.
    pub display_name: String,
}

/// One occurrence.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OccurrenceView {
    /// Start, in the viewer's time zone.
    #[schema(value_type = String, format = DateTime)]
    pub start: DateTime<FixedOffset>,
    /// End, in the viewer's time zone.
    #[schema(value_type = String, format = DateTime)]
    pub end: DateTime<FixedOffset>,
}

/// A conference as its owner sees it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConferenceView {
    /// Conference ID.
    #[schema(value_type = String)]
    pub id: ConferenceId,
    /// Topic.
    pub topic: String,
    /// `scheduled`, `adHoc` or `permanent`.
    pub kind: Kind,
    /// The meeting ID people type.
    pub meeting_id: String,
    /// The meeting password.
    pub password: String,
    /// First occurrence's start, in the viewer's time zone (absent for permanent rooms).
    #[schema(value_type = Option<String>, format = DateTime)]
    pub start: Option<DateTime<FixedOffset>>,
    /// First occurrence's end.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub end: Option<DateTime<FixedOffset>>,
    /// Length of an occurrence in minutes.
    pub duration_minutes: Option<i64>,
    /// The schedule's IANA time zone.
    pub time_zone: String,
    /// RFC 5545 RRULE when recurring.
    pub recurrence: Option<String>,
    /// Participant limit.
    pub max_participants: Option<u32>,
    /// Whether people are admitted while the owner is absent.
    pub allow_join_without_owner: bool,
    /// `audioVideo` or `audioOnly`.
    #[schema(value_type = String)]
    pub media: Media,
    /// Whether moderators of level moderatorPlus may record the meeting.
    pub recording_allowed: bool,
    /// Invited addresses.
    pub invitees: Vec<String>,
    /// The owner.
    pub owner: OwnerView,
    /// `online` (running or can start at any moment) or `offline`.
    pub status: &'static str,
    /// `Scheduled`, `Ready`, `Active` or `Ended`.
    pub phase: &'static str,
    /// The current or next occurrence.
    pub occurrence: Option<OccurrenceView>,
    /// Participants in it now.
    pub participants: u32,
    /// Edit counter (calendar SEQUENCE).
    pub sequence: i64,
    /// How to dial in (SIP address and link, phone number, keys to type); `null` when the
    /// service has neither `--sip-address` nor `--dial-in-number`.
    pub dial_in: Option<DialIn>,
    /// Link to the join page.
    pub join_url: String,
    /// The link invitations carry: the join page with the password in its fragment
    /// (`#pwd=…`, never sent to a server), so guests only type a name.
    pub invitation_url: String,
    /// Always false here (archive entries say true).
    pub archived: bool,
    /// Created at.
    pub created_at: DateTime<Utc>,
    /// Definition last changed at.
    pub updated_at: DateTime<Utc>,
}

/// Someone's presence in an archived occurrence.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttendanceView {
    /// Display name.
    pub display_name: String,
    /// `account` or `guest` (phone callers are guests).
    pub kind: String,
    /// `phone` for a caller through the SIP gateway, `web` for everyone else (the portal or
    /// another WebRTC client).
    pub via: &'static str,
    /// Admitted at.
    #[schema(value_type = String, format = DateTime)]
    pub joined_at: DateTime<FixedOffset>,
    /// Left at.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub left_at: Option<DateTime<FixedOffset>>,
    /// Minutes present.
    pub minutes: i64,
}

/// A past occurrence in the archive.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArchiveView {
    /// Archive entry ID (use it with GET, DELETE and repeat).
    pub id: String,
    /// The conference it came from.
    #[schema(value_type = String)]
    pub conference_id: ConferenceId,
    /// Topic.
    pub topic: String,
    /// Meeting ID it had.
    pub meeting_id: String,
    /// Start, in the viewer's time zone.
    #[schema(value_type = String, format = DateTime)]
    pub start: DateTime<FixedOffset>,
    /// End, in the viewer's time zone.
    #[schema(value_type = String, format = DateTime)]
    pub end: DateTime<FixedOffset>,
    /// Length in minutes.
    pub duration_minutes: i64,
    /// Its time zone.
    pub time_zone: String,
    /// Its recurrence.
    pub recurrence: Option<String>,
    /// The owner.
    pub owner: OwnerView,
    /// Who attended.
    pub attendance: Vec<AttendanceView>,
    /// Its recordings the viewer may see.
    pub recordings: Vec<super::recordings::RecordingView>,
    /// Always true.
    pub archived: bool,
}

/// Either a conference or an archive entry.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(untagged)]
pub enum AnyView {
    /// A scheduled or running conference.
    Conference(Box<ConferenceView>),
    /// A past occurrence.
    Archived(Box<ArchiveView>),
}

/// Which list.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum ListView {
    /// Scheduled and running conferences (the default).
    #[default]
    Scheduled,
    /// Past occurrences.
    Archive,
}

/// Query of `GET /conferences`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// `scheduled` (default) or `archive`.
    #[param(inline)]
    pub view: Option<ListView>,
    /// Administrators: everyone's conferences, not only their own.
    pub all: Option<bool>,
}

/// The body of `POST /conferences/adhoc`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AdHocInput {
    /// Topic; "Ad hoc conference" when empty.
    pub topic: Option<String>,
}

/// Values to schedule a conference again, prefilled.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RepeatDraft {
    /// Post this (changed as wished) to `POST /conferences`.
    pub draft: ConferenceInput,
}

fn at(t: DateTime<Utc>, tz: Tz) -> DateTime<FixedOffset> {
    t.with_timezone(&tz).fixed_offset()
}

fn owner_view(account: Option<&Account>, id: &AccountId) -> OwnerView {
    match account {
        Some(a) => OwnerView {
            id: a.id.clone(),
            login: a.login.clone(),
            display_name: a.display_name.clone(),
        },
        None => OwnerView {
            id: id.clone(),
            login: String::new(),
            display_name: String::new(),
        },
    }
}

/// The link people open to join.
pub fn join_url(state: &AppState, meeting_id: &str) -> String {
    format!("{}/join/{meeting_id}", state.config.public_url())
}

/// The link invitations carry: the join page with the password in the fragment
/// (`/join/{meetingId}#pwd=…`), so guests only type a name. Browsers never send a fragment —
/// not in the request, so not in any server's or proxy's log, and not in `Referer` — and the
/// join page removes it from the address bar once read.
pub fn invitation_url(state: &AppState, meeting_id: &str, password: &str) -> String {
    format!(
        "{}#pwd={}",
        join_url(state, meeting_id),
        fragment_value(password)
    )
}

/// Percent-encodes everything but RFC 3986's unreserved characters, so the value reads back
/// unchanged with `URLSearchParams`.
fn fragment_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn view(
    state: &AppState,
    c: &Conference,
    owner: Option<&Account>,
    viewer: &Account,
    now: DateTime<Utc>,
) -> ConferenceView {
    let tz = viewer.tz();
    let d = &c.definition;
    let decision = lifecycle::decide(state, c, now);
    ConferenceView {
        id: c.id.clone(),
        topic: d.topic.clone(),
        kind: d.kind,
        meeting_id: d.meeting_id.to_string(),
        password: d.password.clone(),
        start: d.start.map(|t| at(t, tz)),
        end: d.end.map(|t| at(t, tz)),
        duration_minutes: d.start.zip(d.end).map(|(s, e)| (e - s).num_minutes()),
        time_zone: d.time_zone.name().to_owned(),
        recurrence: d.recurrence.clone(),
        max_participants: d.max_participants,
        allow_join_without_owner: d.allow_join_without_owner,
        media: d.media,
        recording_allowed: d.recording_allowed,
        invitees: d.invitees.clone(),
        owner: owner_view(owner, &c.owner),
        status: if decision.online() {
            "online"
        } else {
            "offline"
        },
        phase: decision.phase.as_str(),
        occurrence: decision.occurrence.map(|o| OccurrenceView {
            start: at(o.start, tz),
            end: at(o.end, tz),
        }),
        participants: c.runtime.participants,
        sequence: c.sequence,
        // The owner (and administrators) see the password, so its keys too.
        dial_in: state
            .config
            .dial_in(d.meeting_id.as_str(), Some(&d.password)),
        join_url: join_url(state, d.meeting_id.as_str()),
        invitation_url: invitation_url(state, d.meeting_id.as_str(), &d.password),
        archived: false,
        created_at: c.created_at,
        updated_at: c.updated_at,
    }
}

async fn archive_view(
    state: &AppState,
    e: &Entry,
    owner: Option<&Account>,
    viewer: &Account,
) -> Result<ArchiveView> {
    let tz = viewer.tz();
    let attendance = archive::attendance(&state.db, &e.id)
        .await?
        .into_iter()
        .map(|a| AttendanceView {
            minutes: (a.left_at.unwrap_or(e.end) - a.joined_at)
                .num_minutes()
                .max(0),
            kind: if a.identity.starts_with("account:") {
                "account"
            } else {
                "guest"
            }
            .to_owned(),
            via: if phone::is_phone_identity(&a.identity) {
                "phone"
            } else {
                "web"
            },
            display_name: a.display_name,
            joined_at: at(a.joined_at, tz),
            left_at: a.left_at.map(|t| at(t, tz)),
        })
        .collect();
    Ok(ArchiveView {
        id: e.id.clone(),
        conference_id: e.conference.clone(),
        topic: e.topic.clone(),
        meeting_id: e.meeting_id.clone(),
        start: at(e.start, tz),
        end: at(e.end, tz),
        duration_minutes: (e.end - e.start).num_minutes(),
        time_zone: e.time_zone.clone(),
        recurrence: e.recurrence.clone(),
        owner: owner_view(owner, &e.owner),
        attendance,
        recordings: super::recordings::of_archive(state, &e.id, viewer).await?,
        archived: true,
    })
}

async fn owners(
    state: &AppState,
    viewer: &Account,
    all: bool,
) -> Result<HashMap<AccountId, Account>> {
    if all {
        Ok(account::list(&state.db)
            .await?
            .into_iter()
            .map(|a| (a.id.clone(), a))
            .collect())
    } else {
        Ok(HashMap::from([(viewer.id.clone(), viewer.clone())]))
    }
}

/// The conference log or the archive: one's own, or everyone's for administrators with `all=true`.
#[utoipa::path(get, path = "/api/v1/conferences", tag = "conferences", params(ListQuery),
    responses((status = 200, description = "the conferences (or archive entries), by next start", body = [AnyView]), (status = 401, description = "not logged in", body = ErrorBody), (status = 403, description = "all=true without level admin", body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<Vec<AnyView>>> {
    let all = query.all.unwrap_or(false);
    if all && user.account.level != AccountLevel::Admin {
        return Err(Error::forbidden(
            "only administrators list everyone's conferences",
        ));
    }
    let owner_filter = (!all).then_some(&user.account.id);
    let owners = owners(&state, &user.account, all).await?;
    let now = state.clock.now();
    let views = match query.view.unwrap_or_default() {
        ListView::Scheduled => state
            .store
            .list(owner_filter)
            .await?
            .iter()
            .map(|c| {
                AnyView::Conference(Box::new(view(
                    &state,
                    c,
                    owners.get(&c.owner),
                    &user.account,
                    now,
                )))
            })
            .collect(),
        ListView::Archive => {
            let mut views = Vec::new();
            for entry in archive::list(&state.db, owner_filter).await? {
                views.push(AnyView::Archived(Box::new(
                    archive_view(&state, &entry, owners.get(&entry.owner), &user.account).await?,
                )));
            }
            views
        }
    };
    Ok(Json(views))
}

async fn check_may_schedule(state: &AppState, account: &Account) -> Result<()> {
    if account.level == AccountLevel::Audience
        && !settings::load(&state.db).await?.audience_may_schedule
    {
        return Err(Error::forbidden(
            "scheduling is reserved to moderators here; ask an administrator",
        ));
    }
    Ok(())
}

/// Meeting IDs an account may choose before it is slowed down. Whether a chosen ID is refused
/// as `meetingIdTaken` tells whether a meeting uses it, so such probes count like guesses; a
/// choice that is not refused hands its count back.
const MEETING_ID_CHOICES: throttle::Limit = throttle::Limit {
    free: 10,
    max_wait: chrono::Duration::minutes(15),
};

/// Runs `write` (which stores a definition), throttled when `input` chooses a meeting ID other
/// than `before`.
async fn choosing_meeting_id<T>(
    state: &AppState,
    account: &Account,
    input: &ConferenceInput,
    before: Option<&proto::MeetingId>,
    write: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    let chosen = input
        .meeting_id
        .as_deref()
        .map(str::trim)
        .is_some_and(|id| !id.is_empty() && before.is_none_or(|b| b.as_str() != id));
    if !chosen {
        return write.await;
    }
    let key = format!("meetingId:account:{}", account.id);
    throttle::reserve(&state.db, &key, MEETING_ID_CHOICES, state.clock.now()).await?;
    let result = write.await;
    if !matches!(
        &result,
        Err(Error::Conflict {
            code: "meetingIdTaken",
            ..
        })
    ) {
        throttle::refund(&state.db, &key).await?;
    }
    result
}

/// Stores a new conference with its initial lifecycle state.
async fn store_new(
    state: &AppState,
    owner: &Account,
    definition: Definition,
) -> Result<Conference> {
    let conference = new_conference(state, owner, definition)?;
    state.store.insert(&conference).await?;
    state.lifecycle_wake.notify_one();
    tracing::info!(conference = %conference.id, owner = %owner.id, "conference scheduled");
    Ok(conference)
}

/// A new conference with its initial lifecycle state, not stored yet.
///
/// # Errors
/// 422 when the schedule has no occurrence left.
fn new_conference(state: &AppState, owner: &Account, definition: Definition) -> Result<Conference> {
    let now = state.clock.now();
    let mut conference = Conference {
        id: ConferenceId(uuid::Uuid::new_v4().to_string()),
        owner: owner.id.clone(),
        definition,
        sequence: 0,
        runtime: Runtime {
            phase: placement::Phase::Scheduled,
            occurrence: None,
            started_early: None,
            ended: None,
            participants: 0,
            placed: None,
            not_placed: None,
        },
        created_at: now,
        updated_at: now,
    };
    let decision = lifecycle::decide(state, &conference, now);
    conference.runtime.phase = decision.phase;
    conference.runtime.occurrence = decision.occurrence;
    if decision.phase == placement::Phase::Ended {
        return Err(Error::invalid(
            "recurrence",
            "this schedule has no occurrence left",
        ));
    }
    Ok(conference)
}

/// Schedules a conference (or a permanent room), optionally repeating an archive entry.
#[utoipa::path(post, path = "/api/v1/conferences", tag = "conferences", request_body = ConferenceInput,
    responses((status = 201, description = "scheduled; invitees given are invited at once", body = ConferenceView), (status = 400, description = "the body is not JSON", body = ErrorBody),
              (status = 403, description = "scheduling is reserved to moderators here", body = ErrorBody), (status = 409, description = "meeting ID in use", body = ErrorBody),
              (status = 413, description = "the body is too large", body = ErrorBody), (status = 422, description = "a field is not acceptable (`field` names it)", body = ErrorBody),
              (status = 429, description = "too many chosen meeting IDs were taken (`tooManyAttempts`), or a mail limit for the invitees (`mailLimit`, with Retry-After)", body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(input): ApiJson<ConferenceInput>,
) -> Result<(StatusCode, Json<ConferenceView>)> {
    check_may_schedule(&state, &user.account).await?;
    let now = state.clock.now();
    let repeated = match &input.repeat_of {
        Some(id) => Some(
            archive::get(&state.db, id)
                .await?
                .filter(|e| e.owner == user.account.id || user.account.level == AccountLevel::Admin)
                .ok_or_else(|| Error::invalid("repeatOf", "no such archive entry"))?,
        ),
        None => None,
    };
    let definition = conference::definition_for_create(
        &input,
        Resolve {
            account: &user.account,
            now,
        },
    )?;
    let conference = new_conference(&state, &user.account, definition)?;
    // Invitees given when scheduling are invited at once (permanent rooms have no date).
    // Composed before anything is written, so a mail that cannot be composed writes nothing.
    let invitations = if conference.definition.kind != Kind::Permanent {
        mail::compose_invitations(
            &state,
            &conference,
            &user.account,
            &conference.definition.invitees,
            mail::Kind::Invitation,
            &[],
        )?
    } else {
        Vec::new()
    };
    choosing_meeting_id(&state, &user.account, &input, None, async {
        state.store.insert(&conference).await
    })
    .await?;
    // The repeated archive entry leaves and the invitations are queued together; when that
    // fails, the new conference goes again: nothing is left half-done.
    let finished = async {
        let mut tx = state.db.pool.begin().await?;
        if let Some(entry) = &repeated {
            archive::delete_in(&mut tx, &entry.id).await?;
        }
        let queued = mail::enqueue_in(
            &mut tx,
            &state,
            invitations,
            &user.account.id,
            mail::Limits::Enforce,
        )
        .await?;
        tx.commit().await?;
        Ok::<_, Error>(queued)
    }
    .await;
    match finished {
        Ok(queued) => {
            if queued > 0 {
                state.mail_wake.notify_one();
            }
        }
        Err(err) => {
            undo(state.store.delete(&conference.id).await, &conference.id);
            return Err(err);
        }
    }
    state.lifecycle_wake.notify_one();
    tracing::info!(conference = %conference.id, owner = %user.account.id, "conference scheduled");
    Ok((
        StatusCode::CREATED,
        Json(view(
            &state,
            &conference,
            Some(&user.account),
            &user.account,
            now,
        )),
    ))
}

/// Starts a conference now, for 30 minutes.
#[utoipa::path(post, path = "/api/v1/conferences/adhoc", tag = "conferences", request_body = AdHocInput,
    responses((status = 201, description = "started: it runs from now for 30 minutes", body = ConferenceView), (status = 403, description = "scheduling is reserved to moderators here", body = ErrorBody),
              (status = 422, description = "the topic is not acceptable", body = ErrorBody)))]
pub async fn ad_hoc(
    State(state): State<AppState>,
    user: CurrentUser,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<ConferenceView>)> {
    check_may_schedule(&state, &user.account).await?;
    let now = state.clock.now();
    // The body is optional: empty means "no topic".
    let input: AdHocInput = if body.iter().all(u8::is_ascii_whitespace) {
        AdHocInput::default()
    } else {
        serde_json::from_slice(&body).map_err(|err| match err.classify() {
            serde_json::error::Category::Data => Error::Validation {
                field: None,
                message: err.to_string(),
            },
            _ => Error::MalformedBody(format!("the body is not valid JSON: {err}")),
        })?
    };
    // A generated meeting ID may collide with a live one: draw again a few times.
    for _ in 0..5 {
        let definition = conference::definition_for_ad_hoc(
            input.topic.as_deref(),
            Resolve {
                account: &user.account,
                now,
            },
        )?;
        match store_new(&state, &user.account, definition).await {
            Ok(conference) => {
                return Ok((
                    StatusCode::CREATED,
                    Json(view(
                        &state,
                        &conference,
                        Some(&user.account),
                        &user.account,
                        now,
                    )),
                ));
            }
            Err(Error::Conflict {
                code: "meetingIdTaken",
                ..
            }) => continue,
            Err(err) => return Err(err),
        }
    }
    Err(Error::Internal("no free meeting ID found".into()))
}

enum Found {
    Live(Conference),
    Archived(Entry),
}

/// Logs a compensating write that failed too (the request answers with the first error).
fn undo(result: Result<impl Sized>, conference: &ConferenceId) {
    if let Err(err) = result {
        tracing::error!(conference = %conference, cause = %err, "undoing a half-done change failed");
    }
}

/// Finds a conference or archive entry the user manages; 404 otherwise (never 403, so IDs of
/// others' conferences are not confirmed).
async fn find(state: &AppState, user: &Account, id: &str) -> Result<Found> {
    if let Some(c) = state.store.get(&ConferenceId::from(id)).await?
        && c.is_managed_by(user)
    {
        return Ok(Found::Live(c));
    }
    if let Some(e) = archive::get(&state.db, id).await?
        && (e.owner == user.id || user.level == AccountLevel::Admin)
    {
        return Ok(Found::Archived(e));
    }
    Err(Error::not_found(format!(
        "no conference {id} (or it is not yours)"
    )))
}

/// A conference or an archive entry.
#[utoipa::path(get, path = "/api/v1/conferences/{id}", tag = "conferences", params(("id" = String, Path)),
    responses((status = 200, description = "the conference, or the archive entry", body = AnyView), (status = 404, description = "no such conference, or not yours", body = ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<AnyView>> {
    let now = state.clock.now();
    Ok(Json(match find(&state, &user.account, &id).await? {
        Found::Live(c) => {
            let owner = account::get(&state.db, &c.owner).await?;
            AnyView::Conference(Box::new(view(
                &state,
                &c,
                owner.as_ref(),
                &user.account,
                now,
            )))
        }
        Found::Archived(e) => {
            let owner = account::get(&state.db, &e.owner).await?;
            AnyView::Archived(Box::new(
                archive_view(&state, &e, owner.as_ref(), &user.account).await?,
            ))
        }
    }))
}

/// Edits a conference; every change raises its sequence.
#[utoipa::path(patch, path = "/api/v1/conferences/{id}", tag = "conferences", params(("id" = String, Path)),
    request_body = ConferenceInput,
    responses((status = 200, description = "the conference after the edit", body = ConferenceView), (status = 404, description = "no such conference, or not yours", body = ErrorBody),
              (status = 409, description = "meeting ID in use, or an archive entry (repeat it instead)", body = ErrorBody), (status = 422, description = "a field is not acceptable (`field` names it)", body = ErrorBody),
              (status = 429, description = "too many chosen meeting IDs were taken (`tooManyAttempts`)", body = ErrorBody)))]
pub async fn edit(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<ConferenceInput>,
) -> Result<Json<ConferenceView>> {
    if input.repeat_of.is_some() {
        return Err(Error::invalid(
            "repeatOf",
            "repeatOf is only for POST /conferences",
        ));
    }
    let Found::Live(mut conference) = find(&state, &user.account, &id).await? else {
        return Err(Error::conflict(
            "archived",
            "an archived occurrence cannot be edited; repeat it instead",
        ));
    };
    let now = state.clock.now();
    let definition = conference::definition_for_edit(
        &conference.definition,
        &input,
        Resolve {
            account: &user.account,
            now,
        },
    )?;
    if definition != conference.definition {
        let before = conference.definition.meeting_id.clone();
        conference.definition = definition;
        conference.sequence += 1;
        conference.updated_at = now;
        choosing_meeting_id(
            &state,
            &user.account,
            &input,
            Some(&before),
            state.store.update_definition(&conference),
        )
        .await?;
        lifecycle::reconcile(&state, &conference, now).await?;
        state.lifecycle_wake.notify_one();
        tracing::info!(conference = %conference.id, sequence = conference.sequence, "conference edited");
    }
    let conference = state
        .store
        .get(&conference.id)
        .await?
        .ok_or_else(|| Error::not_found("the conference has ended"))?;
    let owner = account::get(&state.db, &conference.owner).await?;
    Ok(Json(view(
        &state,
        &conference,
        owner.as_ref(),
        &user.account,
        now,
    )))
}

/// Query of `DELETE /conferences/{id}`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeleteQuery {
    /// Send a cancellation (iCalendar CANCEL) to the invitees.
    pub notify: Option<bool>,
}

/// Deletes a conference (optionally cancelling it for its invitees), or an archive entry.
#[utoipa::path(delete, path = "/api/v1/conferences/{id}", tag = "conferences", params(("id" = String, Path), DeleteQuery),
    responses((status = 204, description = "deleted (with `notify=true`, the cancellations are queued)"), (status = 404, description = "no such conference, or not yours", body = ErrorBody)))]
pub async fn remove(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<DeleteQuery>,
) -> Result<StatusCode> {
    match find(&state, &user.account, &id).await? {
        Found::Live(c) => {
            // The cancellations are composed first, queued together with forgetting the
            // attendance once the conference is gone; when that fails, the conference comes
            // back: nobody is told of a cancellation that did not happen, or not told of one
            // that did.
            let cancellations = if query.notify.unwrap_or(false)
                && c.definition.kind != Kind::Permanent
                && !c.definition.invitees.is_empty()
            {
                let owner = account::get(&state.db, &c.owner)
                    .await?
                    .unwrap_or_else(|| user.account.clone());
                mail::compose_invitations(
                    &state,
                    &c,
                    &owner,
                    &c.definition.invitees,
                    mail::Kind::Cancellation,
                    &[],
                )?
            } else {
                Vec::new()
            };
            state.store.delete(&c.id).await?;
            let finished = async {
                let mut tx = state.db.pool.begin().await?;
                archive::forget_unarchived(&mut *tx, &c.id).await?;
                let queued = mail::enqueue_in(
                    &mut tx,
                    &state,
                    cancellations,
                    &user.account.id,
                    mail::Limits::CountOnly,
                )
                .await?;
                tx.commit().await?;
                Ok::<_, Error>(queued)
            }
            .await;
            match finished {
                Ok(queued) if queued > 0 => state.mail_wake.notify_one(),
                Ok(_) => {}
                Err(err) => {
                    undo(state.store.insert(&c).await, &c.id);
                    return Err(err);
                }
            }
            crate::revocation::forget_conference(&state.db, &c.id).await?;
            tracing::info!(conference = %c.id, by = %user.account.id, "conference deleted");
        }
        Found::Archived(e) => {
            let recordings = crate::recording::of_archive(&state.db, &e.id).await?;
            archive::delete(&state.db, &e.id).await?;
            for recording in &recordings {
                crate::recording::delete_row(&state.db, &recording.id).await?;
                crate::recording::delete_files(&state.files, &recording.id).await?;
            }
            tracing::info!(archive = %e.id, by = %user.account.id, recordings = recordings.len(), "archive entry deleted");
        }
    }
    state.lifecycle_wake.notify_one();
    Ok(StatusCode::NO_CONTENT)
}

/// Moves a local start forward by whole weeks until it lies after `now`, keeping the wall time.
fn next_same_weekday(start: DateTime<Utc>, tz: Tz, now: DateTime<Utc>) -> NaiveDateTime {
    let mut local = tz.from_utc_datetime(&start.naive_utc()).naive_local();
    while tz
        .from_local_datetime(&local)
        .earliest()
        .is_none_or(|t| t.with_timezone(&Utc) <= now)
    {
        local += chrono::Duration::weeks(1);
    }
    local
}

/// An occurrence's length as a duration `POST /conferences` accepts: whole minutes rounded
/// up, 1 to 1440 (a meeting ended after 30 seconds is repeated as a one-minute meeting, not
/// refused as zero minutes).
fn draft_minutes(length: chrono::Duration) -> u32 {
    let minutes = (length.num_seconds() + 59).div_euclid(60);
    u32::try_from(minutes.clamp(1, 24 * 60)).unwrap_or(60)
}

/// The values to schedule a conference or an archived occurrence again, prefilled with the
/// next start on the same weekday and time. Posting the draft moves an archive entry back to
/// the scheduled list.
#[utoipa::path(post, path = "/api/v1/conferences/{id}/repeat", tag = "conferences", params(("id" = String, Path)),
    responses((status = 200, description = "the draft; post it (changed as wished) to `POST /conferences`", body = RepeatDraft), (status = 404, description = "no such conference, or not yours", body = ErrorBody)))]
pub async fn repeat(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<RepeatDraft>> {
    let now = state.clock.now();
    let (d, repeat_of) = match find(&state, &user.account, &id).await? {
        Found::Live(c) => (c.definition, None),
        Found::Archived(e) => (e.definition(), Some(e.id)),
    };
    let mut recurrence = d.recurrence;
    let (start, duration) = match d.start.zip(d.end) {
        Some((start, end)) => {
            let local = next_same_weekday(start, d.time_zone, now);
            let minutes = draft_minutes(end - start);
            // A rule whose UNTIL has passed has no occurrence from the new start, and
            // `POST /conferences` would refuse it: the draft repeats the meeting once instead.
            if let Some(first) = d.time_zone.from_local_datetime(&local).earliest() {
                let first = first.with_timezone(&Utc);
                let end = first + chrono::Duration::minutes(i64::from(minutes));
                if placement::Schedule::timed(first, end, d.time_zone, recurrence.as_deref())
                    .map_or(true, |s| s.occurrence_ending_after(now).is_none())
                {
                    recurrence = None;
                }
            }
            (
                Some(local.format("%Y-%m-%dT%H:%M").to_string()),
                Some(minutes),
            )
        }
        None => (None, None),
    };
    Ok(Json(RepeatDraft {
        draft: ConferenceInput {
            topic: Some(d.topic),
            start,
            end: None,
            duration_minutes: duration,
            time_zone: Some(d.time_zone.name().to_owned()),
            recurrence: Some(recurrence),
            permanent: Some(d.kind == Kind::Permanent),
            max_participants: Some(d.max_participants),
            allow_join_without_owner: Some(d.allow_join_without_owner),
            media: Some(d.media),
            recording_allowed: Some(d.recording_allowed),
            meeting_id: None,
            password: None,
            invitees: Some(d.invitees),
            repeat_of,
        },
    }))
}

/// The conference as an RFC 5545 calendar event (`text/calendar`).
#[utoipa::path(get, path = "/api/v1/conferences/{id}/calendar.ics", tag = "conferences", params(("id" = String, Path)),
    responses((status = 200, description = "the iCalendar object (METHOD:PUBLISH)", content_type = "text/calendar", body = String), (status = 404, description = "no such conference, or not yours", body = ErrorBody),
              (status = 409, description = "a permanent room has no date", body = ErrorBody)))]
pub async fn calendar(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<Response> {
    let Found::Live(c) = find(&state, &user.account, &id).await? else {
        return Err(Error::not_found(format!("no scheduled conference {id}")));
    };
    let owner = account::get(&state.db, &c.owner)
        .await?
        .ok_or_else(|| Error::Internal("owner vanished".into()))?;
    let body = calendar_event(&state, &c, &owner, ics::Method::Publish)?;
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/calendar; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"conference.ics\""),
    );
    Ok((headers, body).into_response())
}

/// Renders a conference as a calendar object with `method`.
///
/// # Errors
/// 409 for permanent rooms, which have no date.
pub fn calendar_event(
    state: &AppState,
    c: &Conference,
    owner: &Account,
    method: ics::Method,
) -> Result<String> {
    let d = &c.definition;
    let (Some(start), Some(end)) = (d.start, d.end) else {
        return Err(Error::conflict(
            "permanentRoom",
            "a permanent room has no date to put in a calendar",
        ));
    };
    let url = invitation_url(state, d.meeting_id.as_str(), &d.password);
    // A calendar event goes to invitees, who are told the password.
    let dial_in = state
        .config
        .dial_in(d.meeting_id.as_str(), Some(&d.password));
    let phone_facts = dial_in.as_ref().map(DialIn::facts).unwrap_or_default();
    let mut facts = vec![
        ("Join", url.as_str()),
        ("Meeting ID", d.meeting_id.as_str()),
        ("Password", d.password.as_str()),
    ];
    facts.extend(phone_facts.iter().map(|(k, v)| (*k, v.as_str())));
    let description = ics::description(&facts);
    let keypad = dial_in.as_ref().map(DialIn::keypad_text);
    let sip_label = keypad
        .as_ref()
        .map(|k| format!("Call by SIP (or call the gateway and {k})"));
    let tel_label = keypad.as_ref().map(|k| format!("Dial in, then {k}"));
    let tel = dial_in.as_ref().and_then(DialIn::tel_uri);
    let mut access = vec![ics::Access {
        uri: &url,
        features: "AUDIO,VIDEO,CHAT,SCREEN",
        label: "Join in the browser",
    }];
    if let (Some(uri), Some(label)) = (
        dial_in.as_ref().and_then(|d| d.sip_uri.as_deref()),
        &sip_label,
    ) {
        access.push(ics::Access {
            uri,
            features: "AUDIO",
            label,
        });
    }
    if let (Some(uri), Some(label)) = (&tel, &tel_label) {
        access.push(ics::Access {
            uri,
            features: "PHONE",
            label,
        });
    }
    let uid = format!("{}@conclave", c.id);
    Ok(ics::render(
        method,
        &ics::Event {
            uid: &uid,
            sequence: c.sequence,
            stamp: state.clock.now(),
            start,
            end,
            time_zone: d.time_zone,
            recurrence: d.recurrence.as_deref(),
            summary: &d.topic,
            description: &description,
            url: &url,
            organizer: Some((&owner.display_name, &owner.email)),
            attendees: &d.invitees,
            access: &access,
        },
    ))
}

/// The body of `POST /conferences/{id}/invitations`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InvitationRequest {
    /// Addresses to invite (they join the conference's invitees).
    pub emails: Vec<String>,
}

/// What was queued, and how it leaves.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InvitationsQueued {
    /// Mails queued.
    pub queued: usize,
    /// `smtp`, or `folder` when no SMTP server is configured and mails are written as .eml
    /// files into `outbox`.
    pub delivery: &'static str,
    /// The folder .eml files are written to (delivery `folder` only).
    pub outbox: Option<String>,
    /// The conference's invitation log after queueing.
    pub log: Vec<mail::LogEntry>,
}

async fn queued(
    state: &AppState,
    conference: &Conference,
    queued: usize,
) -> Result<InvitationsQueued> {
    Ok(InvitationsQueued {
        queued,
        delivery: state.mail.name(),
        outbox: match &state.mail {
            mail::Delivery::Folder(path) => Some(path.display().to_string()),
            mail::Delivery::Smtp(_) => None,
        },
        log: mail::log(&state.db, conference.id.as_str()).await?,
    })
}

async fn live_with_owner(
    state: &AppState,
    user: &Account,
    id: &str,
) -> Result<(Conference, Account)> {
    let Found::Live(c) = find(state, user, id).await? else {
        return Err(Error::conflict(
            "archived",
            "an archived occurrence takes no invitations; repeat it first",
        ));
    };
    if c.definition.kind == Kind::Permanent {
        return Err(Error::conflict(
            "permanentRoom",
            "a permanent room has no date to invite to; share its join link",
        ));
    }
    let owner = account::get(&state.db, &c.owner)
        .await?
        .ok_or_else(|| Error::Internal("owner vanished".into()))?;
    Ok((c, owner))
}

/// Invites addresses by e-mail: plain text, HTML and an iCalendar REQUEST each.
#[utoipa::path(post, path = "/api/v1/conferences/{id}/invitations", tag = "invitations", params(("id" = String, Path)),
    request_body = InvitationRequest,
    responses((status = 202, description = "the invitations are queued; the addresses are invitees now", body = InvitationsQueued), (status = 404, description = "no such conference, or not yours", body = ErrorBody),
              (status = 409, description = "an archive entry or a permanent room", body = ErrorBody), (status = 422, description = "an address is not acceptable, or more than `--mail-invitees-per-request`; nothing was stored or queued", body = ErrorBody),
              (status = 429, description = "a mail limit per account or conference (`mailLimit`, with Retry-After)", body = ErrorBody)))]
pub async fn invite(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<InvitationRequest>,
) -> Result<(StatusCode, Json<InvitationsQueued>)> {
    let (mut conference, owner) = live_with_owner(&state, &user.account, &id).await?;
    if body.emails.is_empty() {
        return Err(Error::invalid("emails", "give at least one address"));
    }
    let mut addresses: Vec<String> = Vec::new();
    for email in &body.emails {
        let email = crate::validate::email("emails", email)?;
        if !addresses
            .iter()
            .any(|known| known.eq_ignore_ascii_case(&email))
        {
            addresses.push(email);
        }
    }
    let cap = usize::try_from(state.config.mail_invitees_per_request).unwrap_or(usize::MAX);
    if addresses.len() > cap {
        return Err(Error::invalid(
            "emails",
            format!("invite at most {cap} addresses at once (--mail-invitees-per-request)"),
        ));
    }
    // Refused before the invitees are stored, not after.
    mail::check_limits(
        &state,
        &user.account.id,
        Some(conference.id.as_str()),
        addresses.len(),
    )
    .await?;
    // They become invitees (later updates reach them); adding invitees is not an edit of the
    // meeting itself, so the sequence stays.
    let mut invitees = conference.definition.invitees.clone();
    for address in &addresses {
        if !invitees
            .iter()
            .any(|known| known.eq_ignore_ascii_case(address))
        {
            invitees.push(address.clone());
        }
    }
    // Composed first (a mail that cannot be composed stores nothing); then the invitees are
    // stored and the mails queued, and when queueing fails the invitees are put back.
    let before = conference.definition.clone();
    conference.definition.invitees = invitees;
    let mails = mail::compose_invitations(
        &state,
        &conference,
        &owner,
        &addresses,
        mail::Kind::Invitation,
        &[],
    )?;
    // A mail limit refuses before anything is stored.
    mail::check_limits(
        &state,
        &user.account.id,
        Some(conference.id.as_str()),
        mails.len(),
    )
    .await?;
    let changed = conference.definition != before;
    if changed {
        state.store.update_definition(&conference).await?;
    }
    let count = match mail::enqueue(&state, mails, &user.account.id, mail::Limits::Enforce).await {
        Ok(count) => count,
        Err(err) => {
            if changed {
                let mut restored = conference.clone();
                restored.definition = before;
                undo(
                    state.store.update_definition(&restored).await,
                    &conference.id,
                );
            }
            return Err(err);
        }
    };
    Ok((
        StatusCode::ACCEPTED,
        Json(queued(&state, &conference, count).await?),
    ))
}

/// Sends the updated invitation (same UID, higher SEQUENCE, what changed in the text) to every
/// invitee.
#[utoipa::path(post, path = "/api/v1/conferences/{id}/notify", tag = "invitations", params(("id" = String, Path)),
    responses((status = 202, description = "the updates are queued", body = InvitationsQueued), (status = 404, description = "no such conference, or not yours", body = ErrorBody),
              (status = 409, description = "no invitees, or a permanent room", body = ErrorBody),
              (status = 429, description = "a mail limit per account or conference (`mailLimit`, with Retry-After)", body = ErrorBody)))]
pub async fn notify(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<InvitationsQueued>)> {
    let (conference, owner) = live_with_owner(&state, &user.account, &id).await?;
    if conference.definition.invitees.is_empty() {
        return Err(Error::conflict(
            "noInvitees",
            "this conference has no invitees to notify; invite someone first",
        ));
    }
    let changed = match mail::last_snapshot(&state.db, conference.id.as_str()).await? {
        Some(before) => mail::changes(
            &before,
            &mail::Snapshot::of(&conference),
            conference.definition.time_zone,
        ),
        None => Vec::new(),
    };
    let count = mail::send_invitations(
        &state,
        &conference,
        &owner,
        &conference.definition.invitees,
        mail::Kind::Update,
        &changed,
        &user.account.id,
    )
    .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(queued(&state, &conference, count).await?),
    ))
}

/// The conference's invitation log: who, when, which sequence, delivered or the last error.
#[utoipa::path(get, path = "/api/v1/conferences/{id}/invitations", tag = "invitations", params(("id" = String, Path)),
    responses((status = 200, description = "the invitation log, newest first", body = [mail::LogEntry]), (status = 404, description = "no such conference, or not yours", body = ErrorBody)))]
pub async fn invitation_log(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<Vec<mail::LogEntry>>> {
    let Found::Live(conference) = find(&state, &user.account, &id).await? else {
        return Err(Error::not_found(format!("no scheduled conference {id}")));
    };
    Ok(Json(mail::log(&state.db, conference.id.as_str()).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_draft_rounds_its_duration_up_to_whole_minutes_within_the_limits() {
        let minutes = |seconds| draft_minutes(chrono::Duration::seconds(seconds));
        assert_eq!(minutes(0), 1);
        assert_eq!(minutes(30), 1);
        assert_eq!(minutes(60), 1);
        assert_eq!(minutes(61), 2);
        assert_eq!(minutes(45 * 60), 45);
        assert_eq!(minutes(25 * 3600), 1440);
        assert_eq!(minutes(-5), 1);
    }

    #[test]
    fn a_fragment_value_reads_back_unchanged() {
        assert_eq!(fragment_value("482913"), "482913");
        assert_eq!(fragment_value("a b+#&c~"), "a%20b%2B%23%26c~");
        assert_eq!(fragment_value("pä"), "p%C3%A4");
    }
}

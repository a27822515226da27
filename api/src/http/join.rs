//! `POST /join`: an account or a guest asks to enter a meeting — or the SIP gateway, with its
//! service token, for a phone caller; the answer is the role, a short-lived signed join token
//! and the SFU endpoint — or a clear state saying why not yet.

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use chrono::{DateTime, Duration, Utc};
use placement::Phase;
use proto::token::JOIN_AUDIENCE;
use proto::{AccountLevel, ConferenceId, JoinClaims, Media, MeetingId, Role};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ErrorBody;
use super::extract::{ApiJson, ClientAddr, CurrentUser, session_token};
use crate::archive;
use crate::lifecycle;
use crate::phone;
use crate::relocation;
use crate::revocation;
use crate::state::AppState;
use crate::throttle::{self, Limit};
use crate::{Error, Result, validate};

/// Failed passwords tolerated per meeting ID before slowing down (a 6-digit password must not
/// be guessable by spreading attempts over many addresses).
const PER_MEETING: Limit = Limit {
    free: 10,
    max_wait: Duration::minutes(15),
};
/// Seconds a client waits before asking again while the operator places the conference.
const NOT_PLACED_RETRY_SECONDS: u64 = 2;

/// Routes under `/join`.
pub fn router() -> Router<AppState> {
    Router::new().route("/join", post(join))
}

/// A request to join.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JoinRequest {
    /// The meeting ID (digits).
    pub meeting_id: String,
    /// The meeting password; not needed by the owner and accounts of level moderator and up.
    pub password: Option<String>,
    /// The name to show; required for guests, defaults to the account's display name.
    pub display_name: Option<String>,
    /// A guest's own stable ID (a UUID the browser keeps), so that reconnecting replaces the
    /// old session instead of adding a second one.
    pub guest_id: Option<String>,
    /// The SFU pod the client just lost (the `pod` of its last join: its websocket closed, its
    /// media failed, or the SFU said `moved` or `wrongPod`). While the conference's assignment
    /// still names that pod, the answer waits (at most `--join-move-wait-seconds`) for the
    /// operator to place it elsewhere, then names whatever is current.
    pub lost_pod: Option<String>,
    /// A phone caller the SIP gateway joins for; only with the gateway's service token
    /// (`Authorization: Bearer`, subject `sip:…`). The API then names the caller ("Phone ···1234"),
    /// makes them a listener and throttles guesses by the caller's address, not the gateway's.
    pub phone: Option<PhoneCaller>,
}

/// The phone caller of a gateway's join.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PhoneCaller {
    /// The caller ID (the SIP From user part, e.g. `+4930123451234`); its last four digits name
    /// the caller in the meeting. Absent or without digits (withheld): "Phone".
    pub caller_id: Option<String>,
    /// The address the call comes from (the caller's, or its SIP trunk's): failed guesses are
    /// counted on it, and it stands for the caller's network as a guest's address does.
    #[schema(value_type = String, example = "203.0.113.9")]
    pub address: std::net::IpAddr,
}

/// Who asks to join: a guest, an account (session), the SIP gateway (service token) — or a
/// bearer token that is neither.
#[derive(Debug)]
pub enum Joiner {
    /// No credentials.
    Guest,
    /// A logged-in account.
    Account(Box<CurrentUser>),
    /// A component with a valid service token; its subject says which.
    Service(proto::ServiceClaims),
    /// A token that is no valid session and no valid service token; why the service token
    /// was refused.
    Invalid(proto::TokenError),
}

impl axum::extract::FromRequestParts<AppState> for Joiner {
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        state: &AppState,
    ) -> Result<Self> {
        let Some(token) = session_token(parts) else {
            return Ok(Joiner::Guest);
        };
        let refused = match state
            .tokens
            .verify_service(&token, state.clock.now().timestamp())
        {
            Ok(claims) => return Ok(Joiner::Service(claims)),
            Err(err) => err,
        };
        match CurrentUser::from_request_parts(parts, state).await {
            Ok(user) => Ok(Joiner::Account(Box::new(user))),
            Err(Error::Unauthenticated) => Ok(Joiner::Invalid(refused)),
            Err(err) => Err(err),
        }
    }
}

/// Checks who may send `phone`: only the SIP gateway, and it only with `phone`.
fn authorize(joiner: Joiner, caller: Option<&PhoneCaller>) -> Result<Option<CurrentUser>> {
    match (joiner, caller) {
        (Joiner::Guest, None) => Ok(None),
        (Joiner::Account(user), None) => Ok(Some(*user)),
        (Joiner::Invalid(_), None) => Err(Error::Unauthenticated),
        (Joiner::Service(_), None) => Err(Error::invalid(
            "phone",
            "a service token joins only for a phone caller: send `phone`",
        )),
        (Joiner::Service(claims), Some(_))
            if claims.sub.starts_with(phone::GATEWAY_SUBJECT_PREFIX) =>
        {
            Ok(None)
        }
        (Joiner::Service(_) | Joiner::Account(_), Some(_)) => Err(Error::NotTheSipGateway(
            "only the SIP gateway joins for phone callers; its service token's subject is sip:<name>"
                .to_owned(),
        )),
        (Joiner::Guest, Some(_)) => Err(Error::ServiceTokenRequired(
            "a phone join needs the SIP gateway's service token (Authorization: Bearer), signed with the join-token secret"
                .to_owned(),
        )),
        (Joiner::Invalid(why), Some(_)) => Err(Error::ServiceTokenRequired(format!(
            "a phone join needs the SIP gateway's valid service token, signed with the join-token secret the API uses: {why}"
        ))),
    }
}

/// What the joining client needs to know about the conference.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JoinConference {
    /// Conference ID.
    #[schema(value_type = String)]
    pub id: ConferenceId,
    /// Topic.
    pub topic: String,
    /// Meeting ID.
    #[schema(value_type = String)]
    pub meeting_id: MeetingId,
    /// `audioVideo` or `audioOnly`.
    #[schema(value_type = String)]
    pub media: Media,
    /// The current occurrence's end, if scheduled.
    pub ends_at: Option<DateTime<Utc>>,
}

/// Admission to a meeting.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JoinResponse {
    /// The join token for the SFU's signaling websocket.
    pub token: String,
    /// The signaling websocket URL to open: the SFU pod's own endpoint, or with
    /// `--sfu-signaling-via-api` in a cluster this service's `<public URL>/rtc/<pod>`, which
    /// relays to the pod.
    pub endpoint: String,
    /// The SFU pod the token is for (the conference's assignment); send it as `lostPod` when
    /// joining again after losing the connection. `null` in standalone mode (one embedded SFU).
    pub pod: Option<String>,
    /// `listener`, `speaker` or `moderator`.
    #[schema(value_type = String)]
    pub role: Role,
    /// `ready`, or `waitingForOwner` when the owner must arrive first (the SFU keeps the
    /// participant in the waiting room until then).
    pub state: &'static str,
    /// The identity in the room (`account:…`, `guest:…`, or `phone:…` for a phone caller).
    pub identity: String,
    /// The name shown to others.
    pub display_name: String,
    /// When the token expires.
    pub expires_at: DateTime<Utc>,
    /// The conference.
    pub conference: JoinConference,
}

fn same_password(given: &str, expected: &str) -> bool {
    // Compare in time independent of where the first difference is.
    let (a, b) = (given.as_bytes(), expected.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Joins a meeting as an account or a guest, or (the SIP gateway) for a phone caller.
#[utoipa::path(post, path = "/api/v1/join", tag = "join", request_body = JoinRequest,
    responses((status = 200, description = "admitted: the SFU's address and a join token", body = JoinResponse),
              (status = 401, description = "`unauthenticated`: a bearer token that is no valid session; `serviceTokenRequired`: `phone` without the SIP gateway's valid service token", body = ErrorBody),
              (status = 403, description = "meeting ID or password wrong (never says which), or `excluded`: a moderator removed this identity (or a guest on the same network) from the meeting, or `notTheSipGateway`: `phone` from an account or another component", body = ErrorBody),
              (status = 409, description = "not started yet (`conferenceNotStarted` with `startsAt`, `opensAt`), ended, no SFU capacity, or in a cluster not placed by the operator yet (`notPlacedYet` with `retryAfter`); a permanent room a moderator ended answers `conferenceEnded` until its owner or a moderator joins"),
              (status = 422, description = "a field is not acceptable (`field` names it)", body = ErrorBody), (status = 429, description = "too many failed attempts (`tooManyAttempts` with `retryAfter`)", body = ErrorBody)))]
pub async fn join(
    State(state): State<AppState>,
    joiner: Joiner,
    addr: ClientAddr,
    headers: http::HeaderMap,
    ApiJson(body): ApiJson<JoinRequest>,
) -> Result<Json<JoinResponse>> {
    let user = authorize(joiner, body.phone.as_ref())?;
    let phone_caller = body.phone.as_ref();
    if phone_caller.is_some() && (body.display_name.is_some() || body.guest_id.is_some()) {
        return Err(Error::invalid(
            "phone",
            "a phone join names the caller itself: send `phone` without displayName and guestId",
        ));
    }
    // A phone caller is throttled, excluded and counted per network by the caller's address,
    // as a guest is by theirs; the gateway's own address stands for no one.
    let addr = match phone_caller {
        Some(caller) => ClientAddr(Some(caller.address)),
        None => addr,
    };
    let now = state.clock.now();
    let meeting_id = body.meeting_id.trim().replace([' ', '-'], "");
    if !MeetingId::is_well_formed(&meeting_id) {
        return Err(Error::invalid(
            "meetingId",
            "a meeting ID has 6 to 12 digits",
        ));
    }
    let lost_pod = body
        .lost_pod
        .as_deref()
        .map(|pod| validate::pod_name("lostPod", pod))
        .transpose()?;
    let meeting_key = format!("join:meeting:{meeting_id}");
    let addr_key = addr.key("join");
    // While the address is being slowed down, nothing is looked up or compared.
    throttle::check(&state.db, &addr_key, throttle::PER_ADDRESS, now).await?;

    let account = user.as_ref().map(|u| &u.account);
    let conference = state
        .store
        .find_by_meeting_id(&MeetingId(meeting_id.clone()))
        .await?;
    let is_owner = |c: &crate::conference::Conference| account.is_some_and(|a| a.id == c.owner);
    let privileged = |c: &crate::conference::Conference| {
        is_owner(c) || account.is_some_and(|a| a.level >= AccountLevel::Moderator)
    };
    // Owners and moderators need no password, so guesses against the meeting cannot lock
    // them out of it; everyone else waits while the meeting is being guessed at.
    let is_privileged = conference.as_ref().is_some_and(privileged);
    let password = body
        .password
        .as_deref()
        .map(str::trim)
        .filter(|p| !p.is_empty());
    // Only a password counts as a guess: accounts following an invite link are asked
    // without one first, and that must not lock the meeting for everyone.
    let guess = password.is_some() && !is_privileged;
    if guess {
        throttle::check(&state.db, &meeting_key, PER_MEETING, now).await?;
    }
    let admitted = match (&conference, password) {
        (Some(_), _) if is_privileged => true,
        // Only a Conference resource that names no password Secret has no password (the API
        // gives every meeting it makes one): guests join it by its meeting ID alone.
        (Some(c), _) if c.definition.password.is_empty() => true,
        (Some(c), Some(password)) => same_password(password, &c.definition.password),
        _ => false,
    };
    // A wrong password is counted atomically, on the address and on the meeting, and answered
    // 429 instead of 403 once it goes beyond the free attempts: a burst of concurrent guesses
    // learns no more than a sequence of them. Right ones are not counted at all, so a crowd
    // joining one meeting at once (from behind one NAT, too) is not held back; and a success
    // never clears earlier failures (one's own meeting would reset them).
    if !admitted && guess {
        throttle::reserve(&state.db, &addr_key, throttle::PER_ADDRESS, now).await?;
        throttle::reserve(&state.db, &meeting_key, PER_MEETING, now).await?;
    }
    let Some(mut conference) = conference.filter(|_| admitted) else {
        state.metrics.joins.with_label_values(&["refused"]).inc();
        return Err(Error::WrongMeetingCredentials);
    };
    let owner = is_owner(&conference);
    // A client that lost its SFU pod waits (bounded) for the conference to move off it.
    // (Standalone: the one embedded SFU holds everything; nothing moves.)
    if let Some(lost) = lost_pod
        && state.store.placed_by_operator()
    {
        relocation::follow_move(
            &state.relocations,
            &state.store,
            &mut conference,
            &lost,
            std::time::Duration::from_secs(u64::from(state.config.join_move_wait_seconds)),
        )
        .await?;
    }

    let (identity, display_name) = match account {
        _ if phone_caller.is_some() => (
            phone::new_identity(),
            phone::display_name(phone_caller.and_then(|p| p.caller_id.as_deref())),
        ),
        Some(a) => (
            a.identity(),
            match &body.display_name {
                Some(name) if !name.trim().is_empty() => validate::text("displayName", name, 64)?,
                _ => a.display_name.clone(),
            },
        ),
        None => {
            let name = validate::text(
                "displayName",
                body.display_name.as_deref().unwrap_or(""),
                64,
            )
            .map_err(|_| {
                Error::invalid("displayName", "guests give a name of 1 to 64 characters")
            })?;
            let guest = match body.guest_id.as_deref() {
                Some(id) => uuid::Uuid::parse_str(id)
                    .map_err(|_| Error::invalid("guestId", "a guest ID is a UUID"))?
                    .to_string(),
                None => uuid::Uuid::new_v4().to_string(),
            };
            (format!("guest:{guest}"), name)
        }
    };

    let mut decision = lifecycle::decide(&state, &conference, now);
    if decision.phase == Phase::Scheduled
        && let Some(occurrence) = decision.occurrence
    {
        if !owner {
            state.metrics.joins.with_label_values(&["notStarted"]).inc();
            return Err(Error::NotStarted {
                starts_at: occurrence.start,
                opens_at: occurrence.start - state.policy.lead_time,
            });
        }
        // The owner starts it early.
        state
            .store
            .set_started_early(&conference.id, occurrence.start)
            .await?;
        conference.runtime.started_early = Some(occurrence.start);
        decision = lifecycle::decide(&state, &conference, now);
        tracing::info!(conference = %conference.id, "started early by its owner");
    }
    if decision.phase == Phase::Ended {
        return Err(Error::conflict(
            "conferenceEnded",
            "this conference has ended",
        ));
    }
    // A permanent room a moderator ended opens again only for its owner or a moderator.
    if decision.occurrence.is_none() && revocation::room_closed(&state.db, &conference.id).await? {
        if !is_privileged {
            state.metrics.joins.with_label_values(&["ended"]).inc();
            return Err(Error::conflict(
                "conferenceEnded",
                "a moderator ended this meeting; it opens again when its owner or a moderator joins",
            ));
        }
        revocation::reopen_room(&state.db, &conference.id).await?;
        tracing::info!(conference = %conference.id, "permanent room opened again");
    }
    // Exclusions outlive the SFU pod: a guest cannot come back under another guest ID from
    // the same network.
    let network = account.is_none().then(|| addr.network()).flatten();
    let occurrence_start = decision.occurrence.map(|o| o.start);
    if let Some(excluded) = revocation::excluded(
        &state.db,
        &conference.id,
        occurrence_start,
        &identity,
        network.as_deref(),
    )
    .await?
    {
        state.metrics.joins.with_label_values(&["excluded"]).inc();
        return Err(Error::Excluded(
            match excluded {
                revocation::Excluded::Identity => {
                    "a moderator removed you from this meeting; you cannot join it again"
                }
                revocation::Excluded::Network => {
                    "a moderator removed a guest on your network from this meeting; log in with your account to join"
                }
            }
            .to_owned(),
        ));
    }
    let epoch = match account {
        Some(a) => revocation::token_epoch(&state.db, &a.id).await?,
        None => 0,
    };
    let placed = match &conference.runtime.placed {
        // In a cluster the operator places it (at once when started early) and writes the
        // assignment into status; until then the client retries.
        Some(placed) if state.store.placed_by_operator() => placed.clone(),
        None if state.store.placed_by_operator() => {
            // The operator said why when waiting cannot help; otherwise the client retries.
            if let Some((reason, message)) = &conference.runtime.not_placed
                && reason == "TooLarge"
            {
                state.metrics.joins.with_label_values(&["tooLarge"]).inc();
                return Err(Error::conflict("conferenceTooLarge", message.clone()));
            }
            state
                .metrics
                .joins
                .with_label_values(&["notPlacedYet"])
                .inc();
            return Err(Error::NotPlacedYet {
                retry_after: NOT_PLACED_RETRY_SECONDS,
            });
        }
        Some(placed)
            if state
                .fleet
                .iter()
                .any(|pod| pod.ready && pod.name == placed.pod) =>
        {
            placed.clone()
        }
        _ => {
            let placed = lifecycle::place(&state, &conference).await?;
            state
                .store
                .set_lifecycle(
                    &conference.id,
                    decision.phase,
                    decision.occurrence,
                    Some(&placed),
                )
                .await?;
            state.lifecycle_wake.notify_one();
            placed
        }
    };

    let pod = state.store.placed_by_operator().then(|| placed.pod.clone());
    let waiting = !conference.definition.allow_join_without_owner
        && !owner
        && !archive::is_present(
            &state.db,
            &conference.id,
            &format!("account:{}", conference.owner),
        )
        .await?;
    // Phone callers are listeners, whatever else holds.
    let role = if phone_caller.is_some() {
        Role::Listener
    } else {
        Role::on_join(owner, account.map(|a| a.level))
    };
    let expires_at = now + Duration::seconds(i64::from(state.config.join_token_seconds));
    let claims = JoinClaims {
        sub: identity.clone(),
        name: display_name.clone(),
        conf: conference.id.clone(),
        mid: conference.definition.meeting_id.clone(),
        role,
        level: account.map(|a| a.level),
        owner,
        room: conference
            .definition
            .room_settings(Some(placed.udp_ports), conference.sequence),
        aud: JOIN_AUDIENCE.to_owned(),
        iat: now.timestamp(),
        exp: expires_at.timestamp(),
        jti: uuid::Uuid::new_v4().to_string(),
        // The request's ID travels to the SFU, whose session logs it; bounded, as a proxy set it.
        rid: headers
            .get(super::REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .map(|id| id.chars().take(64).collect()),
        ep: epoch,
        // The SFU counts guest seats per client network.
        cli: addr.0.and_then(proto::client_network),
        // In a cluster the token is good on the assigned pod only: everyone of a meeting meets
        // on one pod, also while it moves.
        pod: pod.clone(),
    };
    let token = state
        .tokens
        .sign_join(&claims)
        .map_err(|err| Error::Internal(format!("signing a join token: {err}")))?;
    state
        .metrics
        .joins
        .with_label_values(&[if waiting { "waiting" } else { "ok" }])
        .inc();
    tracing::info!(conference = %conference.id, role = role.as_str(), pod = pod.as_deref(), phone = phone_caller.is_some(), "join token issued");
    // In a cluster with `--sfu-signaling-via-api`, signaling goes through this service's
    // public address, relayed to the pod.
    let endpoint = crate::relay::client_endpoint(
        &state.config.public_url(),
        &placed,
        state.config.sfu_signaling_via_api && state.store.placed_by_operator(),
    );
    Ok(Json(JoinResponse {
        token,
        endpoint,
        pod,
        role,
        state: if waiting { "waitingForOwner" } else { "ready" },
        identity,
        display_name,
        expires_at,
        conference: JoinConference {
            id: conference.id.clone(),
            topic: conference.definition.topic.clone(),
            meeting_id: conference.definition.meeting_id.clone(),
            media: conference.definition.media,
            ends_at: decision.occurrence.map(|o| o.end),
        },
    }))
}

//! `POST /auth/login` and `POST /auth/logout`.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use proto::AccountLevel;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ErrorBody;
use super::extract::{ApiJson, ClientAddr, CurrentUser, SESSION_COOKIE};
use crate::account::{self, Account};
use crate::directory::ldap::Outcome;
use crate::directory::{self, Profile, Source};
use crate::state::AppState;
use crate::{Error, Result, session, throttle};

/// Routes under `/auth`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/auth/login", post(login))
        .route("/auth/logout", post(logout))
}

/// Credentials.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoginRequest {
    /// The login name.
    pub login: String,
    /// The password.
    pub password: String,
}

/// A logged-in account with its session (also set as an HttpOnly cookie).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoginResponse {
    /// The account.
    #[serde(flatten)]
    pub account: Account,
    /// The session token for `Authorization: Bearer` (API clients).
    pub session_token: String,
    /// When the session ends.
    pub session_expires_at: DateTime<Utc>,
}

pub(crate) fn cookie(state: &AppState, value: &str, max_age: i64) -> Result<HeaderValue> {
    let secure = if state.config.public_url().starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
    ))
    .map_err(|err| Error::Internal(format!("cookie header: {err}")))
}

/// Logs in.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, description = "logged in: the session token (also set as a cookie)", body = LoginResponse), (status = 403, description = "wrong login name or password", body = ErrorBody),
              (status = 429, description = "too many failed attempts (`tooManyAttempts` with `retryAfter`)", body = ErrorBody),
              (status = 409, description = "first login through the directory with a login name a local account has (`loginTaken`)", body = ErrorBody),
              (status = 503, description = "every password-check slot is busy (`busy`, with Retry-After), or the company directory cannot be reached (`directoryUnreachable`)", body = ErrorBody)))]
pub async fn login(
    State(state): State<AppState>,
    addr: ClientAddr,
    ApiJson(body): ApiJson<LoginRequest>,
) -> Result<Response> {
    let now = state.clock.now();
    let login = body.login.trim().to_lowercase();
    // Per address first (one attacker is stopped without touching anyone else), then per
    // account and address, then per account from everywhere — the last only slows down, so
    // failing on purpose cannot lock the owner out.
    let addr_key = addr.key("login");
    let pair_key = format!("login:account:{login}:{addr_key}");
    let account_key = format!("login:account:{login}");
    let keys = [
        (addr_key.as_str(), throttle::PER_ADDRESS),
        (pair_key.as_str(), throttle::PER_ACCOUNT_AND_ADDRESS),
        (account_key.as_str(), throttle::PER_ACCOUNT),
    ];
    if let Err(err) = throttle::reserve_all(&state.db, &keys, now).await {
        state.metrics.logins.with_label_values(&["throttled"]).inc();
        return Err(err);
    }
    let verdict = match verify(&state, body.login.trim(), body.password).await {
        Ok(verdict) => verdict,
        Err(err) => {
            // Not checked (busy, the directory or the database failed): no attempt was made.
            throttle::refund_all(&state.db, &[&addr_key, &pair_key, &account_key]).await?;
            match err {
                Error::Busy { .. } => state.metrics.logins.with_label_values(&["busy"]).inc(),
                Error::DirectoryUnreachable(_) => state
                    .metrics
                    .logins
                    .with_label_values(&["directoryUnreachable"])
                    .inc(),
                _ => {}
            }
            return Err(err);
        }
    };
    let refused = |label: &str| {
        state.metrics.logins.with_label_values(&[label]).inc();
        Error::forbidden("the login name or the password is wrong")
    };
    let account = match verdict {
        // The same answer for an unknown name, a wrong password and an entry the directory
        // disabled: none of them tells whether the name exists.
        Verdict::Wrong => return Err(refused("wrongPassword")),
        Verdict::DirectoryDisabled => return Err(refused("disabled")),
        Verdict::Local(account) => {
            succeeded(&state, &addr_key, &pair_key, &account_key).await?;
            local_account_may_log_in(&state, &account).await?;
            account
        }
        Verdict::Directory(profile, level) => {
            succeeded(&state, &addr_key, &pair_key, &account_key).await?;
            let Some(level) = level else {
                state.metrics.logins.with_label_values(&["noLevel"]).inc();
                return Err(directory::no_level_refusal());
            };
            match directory::provision(&state.db, Source::Ldap, &profile, level, now).await {
                Ok(account) => account,
                Err(err) => {
                    if matches!(err, Error::Forbidden(_)) {
                        state.metrics.logins.with_label_values(&["disabled"]).inc();
                    }
                    return Err(err);
                }
            }
        }
    };
    let (token, expires) =
        session::create(&state.db, &account.id, now, state.session_ttl()).await?;
    state.metrics.logins.with_label_values(&["ok"]).inc();
    tracing::info!(account = %account.id, "logged in");
    let mut headers = HeaderMap::new();
    headers.insert(
        header::SET_COOKIE,
        cookie(&state, &token, state.session_ttl().num_seconds())?,
    );
    Ok((
        headers,
        Json(LoginResponse {
            account,
            session_token: token,
            session_expires_at: expires,
        }),
    )
        .into_response())
}

/// What the credentials turned out to be.
enum Verdict {
    /// A local account with the right password.
    Local(Account),
    /// The directory confirmed the password: who the person is, and the level their groups
    /// give (`None`: in no group that may log in).
    Directory(Profile, Option<AccountLevel>),
    /// An unknown name or a wrong password.
    Wrong,
    /// The directory disabled the entry.
    DirectoryDisabled,
}

/// Checks the credentials: a local account's password here; anyone else's with the LDAP
/// directory when one is configured.
async fn verify(state: &AppState, login: &str, password: String) -> Result<Verdict> {
    let found = account::find_by_login(&state.db, login).await?;
    match (found, state.ldap.as_deref()) {
        (Some((account, hash)), _) if account.source == Source::Local => {
            let matches = state.password_checks.verify(password, hash).await?;
            Ok(if matches {
                Verdict::Local(account)
            } else {
                Verdict::Wrong
            })
        }
        (_, Some(ldap)) => Ok(match ldap.authenticate(login, &password).await? {
            Outcome::Authenticated(profile) => {
                let level = ldap.levels.level_of(&profile.groups);
                Verdict::Directory(profile, level)
            }
            Outcome::Unknown | Outcome::WrongPassword => Verdict::Wrong,
            Outcome::Disabled => Verdict::DirectoryDisabled,
        }),
        // An unknown name, or a directory account whose directory is not configured: spend
        // the same time as a real check so timing does not reveal login names.
        _ => {
            state
                .password_checks
                .verify(password, DUMMY_HASH.to_owned())
                .await?;
            Ok(Verdict::Wrong)
        }
    }
}

/// A success is no failure: its reservations go back; the failures before it stay counted,
/// except this address's own ones against this account.
async fn succeeded(
    state: &AppState,
    addr_key: &str,
    pair_key: &str,
    account_key: &str,
) -> Result<()> {
    throttle::refund_all(&state.db, &[addr_key, account_key]).await?;
    throttle::clear(&state.db, pair_key).await
}

/// Whether a local account whose password was right may log in: not disabled, and not
/// barred by `localLoginAdminsOnly` (administrators keep their break-glass login).
async fn local_account_may_log_in(state: &AppState, account: &Account) -> Result<()> {
    if account.disabled {
        state.metrics.logins.with_label_values(&["disabled"]).inc();
        return Err(Error::forbidden(
            "this account is disabled; ask an administrator",
        ));
    }
    if account.level != AccountLevel::Admin
        && crate::settings::load(&state.db)
            .await?
            .local_login_admins_only
    {
        state
            .metrics
            .logins
            .with_label_values(&["localLoginOff"])
            .inc();
        return Err(Error::forbidden(
            "password login with a Conclave account is turned off; log in with your company account",
        ));
    }
    Ok(())
}

/// An argon2 hash of a random password, verified against when the login name is unknown.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$3aV0Vq1Yx9DK5Q3jKx8lAeLrF8NfYs1o6HzgkB0Kj2Q";

/// The answer to a logout of an OpenID Connect session when the provider's session ends too.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderLogout {
    /// The provider's end-session URL to send the browser to (RP-initiated logout); the
    /// provider returns it to `/login`.
    pub provider_logout_url: String,
}

/// Logs out: ends the session and clears the cookie. For an account from the OpenID Connect
/// provider with `--oidc-provider-logout`, also answers the provider's end-session URL.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", responses(
    (status = 204, description = "logged out: the session ends and its cookie is cleared"),
    (status = 200, description = "logged out here; send the browser to `providerLogoutUrl` to end the provider's session too", body = ProviderLogout),
    (status = 401, description = "not logged in", body = ErrorBody)))]
pub async fn logout(State(state): State<AppState>, user: CurrentUser) -> Result<Response> {
    session::delete(&state.db, &user.token).await?;
    let mut headers = HeaderMap::new();
    headers.insert(header::SET_COOKIE, cookie(&state, "", 0)?);
    if user.account.source == crate::directory::Source::Oidc
        && let Some(oidc) = &state.oidc
        && let Some(url) = oidc.logout_url().await
    {
        return Ok((
            StatusCode::OK,
            headers,
            Json(ProviderLogout {
                provider_logout_url: url,
            }),
        )
            .into_response());
    }
    Ok((StatusCode::NO_CONTENT, headers).into_response())
}

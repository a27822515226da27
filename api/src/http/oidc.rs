//! `GET /auth/methods` (which logins the login page offers) and the OpenID Connect login:
//! `GET /auth/oidc/start` sends the browser to the provider, `GET /auth/oidc/callback` takes
//! its answer. Both are browser navigations: failures land on the portal's login page with a
//! sentence (`/login?error=…`), never on a JSON or a stack.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::Duration;
use openidconnect::url::form_urlencoded;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::ErrorBody;
use crate::directory::oidc::{self, Callback, LoginError};
use crate::state::AppState;
use crate::{Error, Result, session};

/// Routes of the login methods and the OpenID Connect login.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/auth/methods", get(methods))
        .route("/auth/oidc/start", get(start))
        .route("/auth/oidc/callback", get(callback))
}

/// The cookie that binds a login under way to the browser that started it.
pub const BROWSER_COOKIE: &str = "conclave_oidc";
const BROWSER_COOKIE_PATH: &str = "/api/v1/auth/oidc";

/// Who may log in with a password stored in Conclave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum PasswordLogin {
    /// Everyone with a local account.
    Everyone,
    /// Administrators only (break-glass); everyone else logs in with the company account.
    AdministratorsOnly,
}

/// The OpenID Connect login, when on.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OidcMethod {
    /// The provider's name for the button: "Log in with {name}".
    pub name: String,
    /// Where the button leads (add `?returnTo=/path` to come back there).
    pub start_url: String,
}

/// The login methods the login page offers.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthMethods {
    /// The password form (`POST /auth/login`): for everyone, or administrators only. With LDAP
    /// on it is for everyone: it takes the company directory's passwords.
    pub password: PasswordLogin,
    /// Whether the password form takes company directory (LDAP / Active Directory) passwords.
    pub ldap: bool,
    /// The OpenID Connect button, when that login is on.
    pub oidc: Option<OidcMethod>,
}

/// Which login methods are on (public: the login page asks before anyone is logged in).
#[utoipa::path(get, path = "/api/v1/auth/methods", tag = "auth", operation_id = "authMethods",
    responses((status = 200, description = "the login methods that are on", body = AuthMethods)))]
pub async fn methods(State(state): State<AppState>) -> Result<Json<AuthMethods>> {
    let settings = crate::settings::load(&state.db).await?;
    Ok(Json(AuthMethods {
        password: if settings.local_login_admins_only && state.ldap.is_none() {
            PasswordLogin::AdministratorsOnly
        } else {
            PasswordLogin::Everyone
        },
        ldap: state.ldap.is_some(),
        oidc: state.oidc.as_ref().map(|oidc| OidcMethod {
            name: oidc.name().to_owned(),
            start_url: "/api/v1/auth/oidc/start".to_owned(),
        }),
    }))
}

/// Query of `GET /auth/oidc/start`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct StartQuery {
    /// The portal path to land on after login (a local path such as `/conferences`; anything
    /// else is refused). Default `/`.
    pub return_to: Option<String>,
}

/// Query of `GET /auth/oidc/callback`: the provider's answer.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CallbackQuery {
    /// The authorization code.
    pub code: Option<String>,
    /// The state of the login.
    pub state: Option<String>,
    /// The provider's error code instead of a code.
    pub error: Option<String>,
    /// The answering issuer (RFC 9207).
    pub iss: Option<String>,
}

/// The login page with a sentence for the person.
fn to_login_page(message: &str) -> String {
    let encoded: String = form_urlencoded::byte_serialize(message.as_bytes()).collect();
    format!("/login?error={encoded}")
}

fn see_other(location: &str, cookies: &[HeaderValue]) -> Result<Response> {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::LOCATION,
        HeaderValue::from_str(location)
            .map_err(|err| Error::Internal(format!("location header: {err}")))?,
    );
    for cookie in cookies {
        headers.append(header::SET_COOKIE, cookie.clone());
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok((StatusCode::SEE_OTHER, headers).into_response())
}

fn browser_cookie(state: &AppState, value: &str, max_age: i64) -> Result<HeaderValue> {
    let secure = if state.config.public_url().starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    // Lax: sent on the provider's top-level redirect back to the callback, not on other
    // sites' subrequests.
    HeaderValue::from_str(&format!(
        "{BROWSER_COOKIE}={value}; Path={BROWSER_COOKIE_PATH}; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
    ))
    .map_err(|err| Error::Internal(format!("cookie header: {err}")))
}

fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

/// What the person reads for a failed login; the causes of provider and service failures go
/// to the log only.
fn sentence(state: &AppState, name: &str, err: LoginError) -> String {
    match err {
        LoginError::Refused(message) => {
            state
                .metrics
                .logins
                .with_label_values(&["oidcRefused"])
                .inc();
            message
        }
        LoginError::Provider(cause) => {
            state
                .metrics
                .logins
                .with_label_values(&["oidcFailed"])
                .inc();
            tracing::error!(%cause, "OpenID Connect login failed at the provider");
            format!(
                "Logging in with {name} does not work at the moment. Try again in a few minutes; if it goes on, tell your administrator."
            )
        }
        LoginError::Service(
            Error::Forbidden(message)
            | Error::Conflict { message, .. }
            | Error::Validation { message, .. },
        ) => {
            state
                .metrics
                .logins
                .with_label_values(&["oidcRefused"])
                .inc();
            let mut message = message;
            if let Some(first) = message.get(0..1) {
                message = format!("{}{}", first.to_uppercase(), &message[1..]);
            }
            if !message.ends_with('.') {
                message.push('.');
            }
            message
        }
        LoginError::Service(err) => {
            state
                .metrics
                .logins
                .with_label_values(&["oidcFailed"])
                .inc();
            tracing::error!(cause = %err, "OpenID Connect login failed");
            "Logging in failed because of an error in Conclave. Try again; if it goes on, tell your administrator.".to_owned()
        }
    }
}

/// Starts an OpenID Connect login: redirects to the provider with state, nonce and PKCE
/// (S256), and sets a short-lived cookie that ties the login to this browser.
#[utoipa::path(get, path = "/api/v1/auth/oidc/start", tag = "auth", operation_id = "oidcStart", params(StartQuery),
    responses((status = 303, description = "to the provider's login; or to `/login?error=…` when the provider cannot be reached or `returnTo` is not a local path"),
              (status = 404, description = "OpenID Connect login is off", body = ErrorBody)))]
pub async fn start(
    State(state): State<AppState>,
    Query(query): Query<StartQuery>,
) -> Result<Response> {
    let Some(oidc) = state.oidc.clone() else {
        return Err(Error::not_found("OpenID Connect login is off"));
    };
    let return_to = query.return_to.as_deref().unwrap_or("/");
    let Some(return_to) = oidc::local_path(return_to) else {
        return see_other(
            &to_login_page(
                "The page to return to after login is not part of Conclave, so the login was not started.",
            ),
            &[],
        );
    };
    match oidc.start(&state.db, return_to, state.clock.now()).await {
        Ok(started) => see_other(
            &started.url,
            &[browser_cookie(
                &state,
                &started.browser_secret,
                oidc::LOGIN_STATE_TTL_MINUTES * 60,
            )?],
        ),
        Err(err) => see_other(&to_login_page(&sentence(&state, oidc.name(), err)), &[]),
    }
}

/// The provider's answer: checks it, logs in (the same session cookie as the password login)
/// and redirects to the page the login started from.
#[utoipa::path(get, path = "/api/v1/auth/oidc/callback", tag = "auth", operation_id = "oidcCallback", params(CallbackQuery),
    responses((status = 303, description = "logged in: to the page the login started from, with the session cookie; refused: to `/login?error=…` with the reason"),
              (status = 404, description = "OpenID Connect login is off", body = ErrorBody)))]
pub async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<CallbackQuery>,
) -> Result<Response> {
    let Some(oidc) = state.oidc.clone() else {
        return Err(Error::not_found("OpenID Connect login is off"));
    };
    let now = state.clock.now();
    let answer = Callback {
        code: query.code,
        state: query.state,
        error: query.error,
        iss: query.iss,
    };
    let browser = cookie_value(&headers, BROWSER_COOKIE);
    let spent = browser_cookie(&state, "", 0)?;
    let logged_in = match oidc
        .finish(&state.db, &answer, browser.as_deref(), now)
        .await
    {
        Ok(logged_in) => logged_in,
        Err(err) => {
            return see_other(
                &to_login_page(&sentence(&state, oidc.name(), err)),
                &[spent],
            );
        }
    };
    let mut ttl = state.session_ttl();
    if !logged_in.refreshable {
        // Without a refresh token the check cannot ask the provider about the account: the
        // session lasts no longer than the check interval (docs/oidc.md).
        ttl = ttl.min(Duration::minutes(i64::from(
            state.config.directory_check_minutes,
        )));
    }
    let (token, _expires) = session::create(&state.db, &logged_in.account.id, now, ttl).await?;
    state.metrics.logins.with_label_values(&["ok"]).inc();
    let cookie = super::auth::cookie(&state, &token, ttl.num_seconds())?;
    see_other(&logged_in.return_to, &[cookie, spent])
}

//! Administration: `GET|POST /users`, `PATCH /users/{id}`, `GET|PATCH /settings`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, patch};
use axum::{Json, Router};
use proto::{AccountId, AccountLevel};
use serde::Deserialize;
use utoipa::ToSchema;

use super::ErrorBody;
use super::extract::{ApiJson, CurrentUser, require_admin};
use crate::account::{self, Account, NewAccount, password};
use crate::settings::{self, Settings, SettingsChange};
use crate::state::AppState;
use crate::{Error, Result, session, validate};

/// Routes under `/users` and `/settings`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/users", get(list).post(create))
        .route("/users/{id}", patch(edit))
        .route("/settings", get(show_settings).patch(edit_settings))
}

/// A new account.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewUser {
    /// Login name: 2 to 64 letters, digits, `.`, `_`, `-`, `@`.
    pub login: String,
    /// The name others see.
    pub display_name: String,
    /// E-mail address.
    pub email: String,
    /// `audience` (default), `moderator`, `moderatorPlus` or `admin`.
    #[schema(value_type = Option<String>)]
    pub level: Option<AccountLevel>,
    /// Initial password (8 to 256 characters).
    pub password: String,
    /// IANA time zone (default UTC).
    pub time_zone: Option<String>,
}

/// Changes an administrator makes to an account.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserChange {
    /// A new level.
    #[schema(value_type = Option<String>)]
    pub level: Option<AccountLevel>,
    /// Disable (true) or enable (false); disabling ends its sessions.
    pub disabled: Option<bool>,
    /// The name others see.
    pub display_name: Option<String>,
    /// E-mail address.
    pub email: Option<String>,
    /// A new password (ends its sessions).
    pub password: Option<String>,
}

/// Every account (administrators only).
#[utoipa::path(get, path = "/api/v1/users", tag = "administration", operation_id = "list_users", responses((status = 200, description = "every account", body = [Account]), (status = 403, description = "administrators only", body = ErrorBody)))]
pub async fn list(State(state): State<AppState>, user: CurrentUser) -> Result<Json<Vec<Account>>> {
    require_admin(&user)?;
    Ok(Json(account::list(&state.db).await?))
}

/// Creates an account (administrators only).
#[utoipa::path(post, path = "/api/v1/users", tag = "administration", operation_id = "create_user", request_body = NewUser,
    responses((status = 201, description = "the new account", body = Account), (status = 403, description = "administrators only", body = ErrorBody),
              (status = 409, description = "login name taken", body = ErrorBody), (status = 422, description = "a field is not acceptable (`field` names it)", body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(body): ApiJson<NewUser>,
) -> Result<(StatusCode, Json<Account>)> {
    require_admin(&user)?;
    let new = NewAccount {
        login: validate::login(&body.login)?,
        display_name: validate::text("displayName", &body.display_name, 100)?,
        email: validate::email("email", &body.email)?,
        level: body.level.unwrap_or_default(),
        time_zone: match &body.time_zone {
            Some(tz) => validate::time_zone("timeZone", tz)?.name().to_owned(),
            None => "UTC".to_owned(),
        },
    };
    password::check("password", &body.password)?;
    let hash = password::hash(body.password).await?;
    let created = account::insert(&state.db, &new, &hash, state.clock.now()).await?;
    tracing::info!(account = %created.id, by = %user.account.id, "account created");
    Ok((StatusCode::CREATED, Json(created)))
}

/// Changes an account's level, state, name, address or password (administrators only).
#[utoipa::path(patch, path = "/api/v1/users/{id}", tag = "administration", operation_id = "edit_user", request_body = UserChange,
    params(("id" = String, Path, description = "account ID")),
    responses((status = 200, description = "the account after the change", body = Account), (status = 403, description = "administrators only", body = ErrorBody),
              (status = 404, description = "no such account", body = ErrorBody), (status = 409, description = "the last administrator would go", body = ErrorBody)))]
pub async fn edit(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
    ApiJson(change): ApiJson<UserChange>,
) -> Result<Json<Account>> {
    require_admin(&user)?;
    let now = state.clock.now();
    let id = AccountId(id);
    let mut target = account::get(&state.db, &id)
        .await?
        .ok_or_else(|| Error::not_found("no such account"))?;
    let before = (target.level, target.disabled);
    if let Some(level) = change.level {
        target.level = level;
    }
    if let Some(disabled) = change.disabled {
        target.disabled = disabled;
    }
    if let Some(name) = &change.display_name {
        target.display_name = validate::text("displayName", name, 100)?;
    }
    if let Some(email) = &change.email {
        target.email = validate::email("email", email)?;
    }
    let stays_admin = target.level == AccountLevel::Admin && !target.disabled;
    if !stays_admin && account::other_active_admins(&state.db, &target.id).await? == 0 {
        return Err(Error::conflict(
            "lastAdministrator",
            "at least one enabled administrator must remain",
        ));
    }
    let new_hash = match &change.password {
        Some(_) if target.source != crate::directory::Source::Local => {
            return Err(Error::invalid(
                "password",
                "this account's password is managed by the company directory",
            ));
        }
        Some(new) => {
            password::check("password", new)?;
            Some(password::hash(new.clone()).await?)
        }
        None => None,
    };
    account::update(&state.db.pool, &target, now).await?;
    if let Some(hash) = new_hash {
        account::set_password(&state.db.pool, &target.id, &hash, now).await?;
    }
    if target.disabled || change.password.is_some() {
        let keep = (target.id == user.account.id).then_some(user.token.as_str());
        session::delete_all_of(&state.db.pool, &target.id, keep).await?;
    }
    // Live meetings follow at once: the SFU closes the account's sessions (the portal joins
    // again and gets the new role, or is turned away) and refuses its older join tokens.
    if (target.level, target.disabled) != before || change.password.is_some() {
        crate::revocation::revoke_account(&state.db, &target.id, now).await?;
    }
    tracing::info!(account = %target.id, by = %user.account.id, "account changed");
    Ok(Json(target))
}

/// The service settings (administrators only).
#[utoipa::path(get, path = "/api/v1/settings", tag = "administration", responses((status = 200, description = "the settings", body = Settings), (status = 403, description = "administrators only", body = ErrorBody)))]
pub async fn show_settings(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Json<Settings>> {
    require_admin(&user)?;
    Ok(Json(settings::load(&state.db).await?))
}

/// Changes the service settings (administrators only).
#[utoipa::path(patch, path = "/api/v1/settings", tag = "administration", request_body = SettingsChange,
    responses((status = 200, description = "the settings after the change", body = Settings), (status = 403, description = "administrators only", body = ErrorBody)))]
pub async fn edit_settings(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(change): ApiJson<SettingsChange>,
) -> Result<Json<Settings>> {
    require_admin(&user)?;
    let settings = settings::load(&state.db).await?.with(&change);
    settings::store(&state.db, &settings).await?;
    tracing::info!(by = %user.account.id, ?change, "settings changed");
    Ok(Json(settings))
}

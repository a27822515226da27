//! `GET /me` and `PATCH /me`: one's own profile and password.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use utoipa::ToSchema;

use super::ErrorBody;
use super::extract::{ApiJson, CurrentUser};
use crate::account::{self, Account, password};
use crate::state::AppState;
use crate::{Error, Result, mail, session, validate};

/// Routes under `/me`.
pub fn router() -> Router<AppState> {
    Router::new().route("/me", get(show).patch(edit))
}

/// Changes to one's profile; only the fields given change.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProfileChange {
    /// The name others see.
    pub display_name: Option<String>,
    /// The e-mail address.
    pub email: Option<String>,
    /// An IANA time zone.
    pub time_zone: Option<String>,
    /// A new password (needs `currentPassword`).
    pub password: Option<String>,
    /// The current password, required to set a new one.
    pub current_password: Option<String>,
}

/// One's own account.
#[utoipa::path(get, path = "/api/v1/me", tag = "profile", operation_id = "show_me", responses((status = 200, description = "the account", body = Account), (status = 401, description = "not logged in", body = ErrorBody)))]
pub async fn show(user: CurrentUser) -> Json<Account> {
    Json(user.account)
}

/// Edits one's profile or password. A password change ends one's other sessions.
#[utoipa::path(patch, path = "/api/v1/me", tag = "profile", operation_id = "edit_me", request_body = ProfileChange,
    responses((status = 200, description = "the account after the change", body = Account), (status = 403, description = "current password wrong", body = ErrorBody),
              (status = 422, description = "a field is not acceptable (`field` names it)", body = ErrorBody),
              (status = 429, description = "a new e-mail address would exceed the account's mail limit (`mailLimit`)", body = ErrorBody), (status = 503, description = "every password-check slot is busy (`busy`, with Retry-After)", body = ErrorBody)))]
pub async fn edit(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(change): ApiJson<ProfileChange>,
) -> Result<Json<Account>> {
    let now = state.clock.now();
    let mut account = user.account.clone();
    if let Some(name) = &change.display_name {
        account.display_name = validate::text("displayName", name, 100)?;
    }
    if let Some(email) = &change.email {
        account.email = validate::email("email", email)?;
    }
    if let Some(tz) = &change.time_zone {
        account.time_zone = validate::time_zone("timeZone", tz)?.name().to_owned();
    }
    let new_hash = match &change.password {
        Some(_) if account.source != crate::directory::Source::Local => {
            return Err(Error::invalid(
                "password",
                "your password is managed by your company directory; change it there",
            ));
        }
        Some(new) => {
            password::check("password", new)?;
            let current = change.current_password.clone().ok_or_else(|| {
                Error::invalid(
                    "currentPassword",
                    "give your current password to set a new one",
                )
            })?;
            let (_, hash) = account::get_with_hash(&state.db, &account.id)
                .await?
                .ok_or(Error::Unauthenticated)?;
            // Whoever holds a stolen session must not guess the password that would make the
            // account theirs: guesses are counted (and slowed down) per account.
            let key = format!("currentPassword:account:{}", account.id);
            crate::throttle::reserve(
                &state.db,
                &key,
                crate::throttle::PER_ACCOUNT_AND_ADDRESS,
                now,
            )
            .await?;
            if !state.password_checks.verify(current, hash).await? {
                return Err(Error::forbidden("the current password is wrong"));
            }
            crate::throttle::refund(&state.db, &key).await?;
            Some(password::hash(new.clone()).await?)
        }
        None => None,
    };
    // Everything that can fail for a reason of its own (the notices) is prepared first; then
    // profile, notices, password and sessions change in one transaction: all or nothing.
    let notices = if account.email == user.account.email {
        Vec::new()
    } else {
        // Both addresses learn of the change, so a hijacked account is noticed.
        let text = format!(
            "The e-mail address of the Conclave account {} changed from {} to {}.\n\nIf you did not do this, ask an administrator to disable the account.\n",
            account.login, user.account.email, account.email
        );
        [&user.account.email, &account.email]
            .into_iter()
            .map(|to| {
                mail::compose_notice(
                    &state,
                    to,
                    "Your Conclave e-mail address changed",
                    text.clone(),
                )
            })
            .collect::<Result<Vec<_>>>()?
    };
    let mut tx = state.db.pool.begin().await?;
    account::update(&mut *tx, &account, now).await?;
    let queued =
        mail::enqueue_in(&mut tx, &state, notices, &account.id, mail::Limits::Enforce).await?;
    if let Some(hash) = &new_hash {
        account::set_password(&mut *tx, &account.id, hash, now).await?;
        session::delete_all_of(&mut *tx, &account.id, Some(&user.token)).await?;
    }
    tx.commit().await?;
    if queued > 0 {
        state.mail_wake.notify_one();
    }
    if new_hash.is_some() {
        // A meeting joined elsewhere with the old password ends too; this device joins again.
        crate::revocation::revoke_account(&state.db, &account.id, now).await?;
        tracing::info!(account = %account.id, "password changed");
    }
    Ok(Json(account))
}

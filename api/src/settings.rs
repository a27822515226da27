//! Service-wide settings an administrator changes at run time.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;

use crate::Result;
use crate::db::Db;

/// The settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Settings {
    /// Whether accounts of level `audience` may schedule conferences (default true).
    pub audience_may_schedule: bool,
    /// Whether only administrators may log in with a password stored in Conclave (break-glass);
    /// everyone else logs in through the company directory (default false).
    pub local_login_admins_only: bool,
}

/// A change to the settings: what is given changes, the rest stays.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SettingsChange {
    /// Whether accounts of level `audience` may schedule conferences.
    pub audience_may_schedule: Option<bool>,
    /// Whether only administrators may log in with a local password.
    pub local_login_admins_only: Option<bool>,
}

impl Settings {
    /// The settings after `change`.
    pub fn with(mut self, change: &SettingsChange) -> Self {
        if let Some(value) = change.audience_may_schedule {
            self.audience_may_schedule = value;
        }
        if let Some(value) = change.local_login_admins_only {
            self.local_login_admins_only = value;
        }
        self
    }
}

const AUDIENCE_MAY_SCHEDULE: &str = "audienceMaySchedule";
const LOCAL_LOGIN_ADMINS_ONLY: &str = "localLoginAdminsOnly";

async fn store_flag(db: &Db, key: &str, value: bool) -> Result<()> {
    sqlx::query("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = $2")
        .bind(key)
        .bind(if value { "true" } else { "false" })
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// Reads the settings.
///
/// # Errors
/// Database errors.
pub async fn load(db: &Db) -> Result<Settings> {
    // One read for both (logins and the login page ask).
    let rows = sqlx::query("SELECT key, value FROM settings WHERE key IN ($1, $2)")
        .bind(AUDIENCE_MAY_SCHEDULE)
        .bind(LOCAL_LOGIN_ADMINS_ONLY)
        .fetch_all(&db.pool)
        .await?;
    let mut settings = Settings {
        audience_may_schedule: true,
        local_login_admins_only: false,
    };
    for row in rows {
        let key: String = row.try_get("key")?;
        let value: String = row.try_get("value")?;
        match key.as_str() {
            // Each keeps its default unless the stored value says otherwise.
            AUDIENCE_MAY_SCHEDULE => settings.audience_may_schedule = value != "false",
            LOCAL_LOGIN_ADMINS_ONLY => settings.local_login_admins_only = value == "true",
            _ => {}
        }
    }
    Ok(settings)
}

/// Writes the settings.
///
/// # Errors
/// Database errors.
pub async fn store(db: &Db, settings: &Settings) -> Result<()> {
    store_flag(db, AUDIENCE_MAY_SCHEDULE, settings.audience_may_schedule).await?;
    store_flag(
        db,
        LOCAL_LOGIN_ADMINS_ONLY,
        settings.local_login_admins_only,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_touches_only_what_it_names() {
        let before = Settings {
            audience_may_schedule: true,
            local_login_admins_only: false,
        };
        let after = before.clone().with(&SettingsChange {
            local_login_admins_only: Some(true),
            ..SettingsChange::default()
        });
        assert!(after.audience_may_schedule);
        assert!(after.local_login_admins_only);
    }
}

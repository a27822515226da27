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
}

const AUDIENCE_MAY_SCHEDULE: &str = "audienceMaySchedule";

/// Reads the settings.
///
/// # Errors
/// Database errors.
pub async fn load(db: &Db) -> Result<Settings> {
    let value: Option<String> = sqlx::query("SELECT value FROM settings WHERE key = $1")
        .bind(AUDIENCE_MAY_SCHEDULE)
        .fetch_optional(&db.pool)
        .await?
        .map(|row| row.try_get("value"))
        .transpose()?;
    Ok(Settings {
        audience_may_schedule: value.as_deref() != Some("false"),
    })
}

/// Writes the settings.
///
/// # Errors
/// Database errors.
pub async fn store(db: &Db, settings: &Settings) -> Result<()> {
    sqlx::query("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = $2")
        .bind(AUDIENCE_MAY_SCHEDULE)
        .bind(if settings.audience_may_schedule { "true" } else { "false" })
        .execute(&db.pool)
        .await?;
    Ok(())
}

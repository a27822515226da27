//! Accounts: login names, display names, e-mail addresses, levels, time zones and argon2
//! password hashes, stored in SQL.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use proto::{AccountId, AccountLevel};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;

use crate::clock::{db_time, parse_db_time};
use crate::db::{Db, flag, int};
use crate::{Error, Result, error::is_unique_violation};

/// An account as the API shows it (never with its password hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    /// The account's ID (a UUID).
    #[schema(value_type = String)]
    pub id: AccountId,
    /// The login name.
    pub login: String,
    /// The name others see.
    pub display_name: String,
    /// Where invitations and notices go.
    pub email: String,
    /// `audience`, `moderator`, `moderatorPlus` or `admin`.
    #[schema(value_type = String, example = "audience")]
    pub level: AccountLevel,
    /// IANA time zone times are shown in.
    pub time_zone: String,
    /// A disabled account cannot log in.
    pub disabled: bool,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Where it comes from: `local` (password stored here), `ldap` or `oidc` (the company
    /// directory checks who it is and sets its level at every login).
    pub source: crate::directory::Source,
}

impl Account {
    /// The account's time zone (UTC when the stored name no longer parses).
    pub fn tz(&self) -> Tz {
        self.time_zone.parse().unwrap_or(chrono_tz::UTC)
    }

    /// The identity used in join tokens and attendance.
    pub fn identity(&self) -> String {
        format!("account:{}", self.id)
    }
}

/// A new account's values, validated.
#[derive(Debug, Clone)]
pub struct NewAccount {
    /// Login name.
    pub login: String,
    /// Display name.
    pub display_name: String,
    /// E-mail address.
    pub email: String,
    /// Level.
    pub level: AccountLevel,
    /// Time zone.
    pub time_zone: String,
}

const COLUMNS: &str =
    "id, login, display_name, email, level, time_zone, password_hash, disabled, created_at, source";

fn from_row(row: &sqlx::any::AnyRow) -> Result<(Account, String)> {
    let level: String = row.try_get("level")?;
    let account = Account {
        id: AccountId(row.try_get("id")?),
        login: row.try_get("login")?,
        display_name: row.try_get("display_name")?,
        email: row.try_get("email")?,
        level: AccountLevel::parse(&level)
            .ok_or_else(|| Error::Internal(format!("stored level {level:?} is unknown")))?,
        time_zone: row.try_get("time_zone")?,
        disabled: flag(row.try_get("disabled")?),
        created_at: parse_db_time(&row.try_get::<String, _>("created_at")?)?,
        source: {
            let source: String = row.try_get("source")?;
            crate::directory::Source::parse(&source).ok_or_else(|| {
                Error::Internal(format!("stored account source {source:?} is unknown"))
            })?
        },
    };
    Ok((account, row.try_get("password_hash")?))
}

/// The account with this login name and its password hash.
///
/// # Errors
/// Database errors.
pub async fn find_by_login(db: &Db, login: &str) -> Result<Option<(Account, String)>> {
    let row = sqlx::query(sql!("SELECT {COLUMNS} FROM accounts WHERE login = $1"))
        .bind(login)
        .fetch_optional(&db.pool)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// The account with this ID and its password hash.
///
/// # Errors
/// Database errors.
pub async fn get_with_hash(db: &Db, id: &AccountId) -> Result<Option<(Account, String)>> {
    let row = sqlx::query(sql!("SELECT {COLUMNS} FROM accounts WHERE id = $1"))
        .bind(id.as_str())
        .fetch_optional(&db.pool)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// The account with this ID.
///
/// # Errors
/// Database errors.
pub async fn get(db: &Db, id: &AccountId) -> Result<Option<Account>> {
    Ok(get_with_hash(db, id).await?.map(|(account, _)| account))
}

/// Every account, by login name.
///
/// # Errors
/// Database errors.
pub async fn list(db: &Db) -> Result<Vec<Account>> {
    let rows = sqlx::query(sql!("SELECT {COLUMNS} FROM accounts ORDER BY login"))
        .fetch_all(&db.pool)
        .await?;
    rows.iter()
        .map(|row| from_row(row).map(|(account, _)| account))
        .collect()
}

/// Whether any account exists (first start).
///
/// # Errors
/// Database errors.
pub async fn any_exists(db: &Db) -> Result<bool> {
    let count: i64 = sqlx::query("SELECT COUNT(*) AS n FROM accounts")
        .fetch_one(&db.pool)
        .await?
        .try_get("n")?;
    Ok(count > 0)
}

/// Active administrators other than `except`.
///
/// # Errors
/// Database errors.
pub async fn other_active_admins(db: &Db, except: &AccountId) -> Result<i64> {
    Ok(sqlx::query(
        "SELECT COUNT(*) AS n FROM accounts WHERE level = 'admin' AND disabled = 0 AND id <> $1",
    )
    .bind(except.as_str())
    .fetch_one(&db.pool)
    .await?
    .try_get("n")?)
}

/// Stores a new account.
///
/// # Errors
/// 409 `loginTaken` when the login name exists; database errors.
pub async fn insert(
    db: &Db,
    new: &NewAccount,
    password_hash: &str,
    now: DateTime<Utc>,
) -> Result<Account> {
    let id = AccountId(uuid::Uuid::new_v4().to_string());
    let result = sqlx::query(
        "INSERT INTO accounts (id, login, display_name, email, level, time_zone, password_hash, disabled, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, $8)",
    )
    .bind(id.as_str())
    .bind(&new.login)
    .bind(&new.display_name)
    .bind(&new.email)
    .bind(new.level.as_str())
    .bind(&new.time_zone)
    .bind(password_hash)
    .bind(db_time(now))
    .execute(&db.pool)
    .await;
    match result {
        Err(err) if is_unique_violation(&err) => Err(Error::conflict(
            "loginTaken",
            format!("the login name {:?} is taken", new.login),
        )),
        Err(err) => Err(err.into()),
        Ok(_) => get(db, &id)
            .await?
            .ok_or_else(|| Error::Internal("account vanished".into())),
    }
}

/// Writes an account's editable values (display name, e-mail, time zone, level, disabled).
///
/// # Errors
/// Database errors.
pub async fn update<'c>(
    db: impl sqlx::Executor<'c, Database = sqlx::Any>,
    account: &Account,
    now: DateTime<Utc>,
) -> Result<()> {
    sqlx::query(
        "UPDATE accounts SET display_name = $1, email = $2, time_zone = $3, level = $4, disabled = $5, updated_at = $6 WHERE id = $7",
    )
    .bind(&account.display_name)
    .bind(&account.email)
    .bind(&account.time_zone)
    .bind(account.level.as_str())
    .bind(int(account.disabled))
    .bind(db_time(now))
    .bind(account.id.as_str())
    .execute(db)
    .await?;
    Ok(())
}

/// Replaces an account's password hash.
///
/// # Errors
/// Database errors.
pub async fn set_password<'c>(
    db: impl sqlx::Executor<'c, Database = sqlx::Any>,
    id: &AccountId,
    password_hash: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    sqlx::query("UPDATE accounts SET password_hash = $1, updated_at = $2 WHERE id = $3")
        .bind(password_hash)
        .bind(db_time(now))
        .bind(id.as_str())
        .execute(db)
        .await?;
    Ok(())
}

/// Argon2 hashing, off the async runtime.
pub mod password {
    use argon2::{Argon2, PasswordHasher, PasswordVerifier};

    use crate::{Error, Result};

    /// The shortest password accepted.
    pub const MIN_LEN: usize = 8;
    /// The longest password accepted (argon2 cost grows with length).
    pub const MAX_LEN: usize = 256;

    /// Checks a new password's length.
    ///
    /// # Errors
    /// 422 naming `field`.
    pub fn check(field: &str, password: &str) -> Result<()> {
        let len = password.chars().count();
        if len < MIN_LEN {
            return Err(Error::invalid(
                field,
                format!("a password needs at least {MIN_LEN} characters"),
            ));
        }
        if len > MAX_LEN {
            return Err(Error::invalid(
                field,
                format!("a password has at most {MAX_LEN} characters"),
            ));
        }
        Ok(())
    }

    /// Hashes a password with a random salt.
    ///
    /// # Errors
    /// Internal errors from the hasher.
    pub async fn hash(password: String) -> Result<String> {
        tokio::task::spawn_blocking(move || {
            Argon2::default()
                .hash_password(password.as_bytes())
                .map(|hash| hash.to_string())
                .map_err(|err| Error::Internal(format!("hashing a password failed: {err}")))
        })
        .await
        .map_err(|err| Error::Internal(format!("hashing task failed: {err}")))?
    }

    /// How long a check waits for a free slot before the request is answered 503.
    const QUEUE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

    /// A bound on Argon2 verifications running at once: each holds about 19 MiB and a core
    /// for tens of milliseconds, so a burst of logins must not exhaust the blocking pool and the
    /// memory. A check waits up to a second for a slot, then is refused with 503 `busy`.
    #[derive(Debug, Clone)]
    pub struct Checks(std::sync::Arc<tokio::sync::Semaphore>);

    impl Checks {
        /// Up to `at_once` checks at a time (at least one).
        pub fn new(at_once: u32) -> Self {
            let permits = usize::try_from(at_once.max(1)).unwrap_or(1);
            Self(std::sync::Arc::new(tokio::sync::Semaphore::new(permits)))
        }

        /// Slots free now.
        pub fn available(&self) -> usize {
            self.0.available_permits()
        }

        /// Whether `password` matches the stored hash.
        ///
        /// # Errors
        /// 503 `busy` with Retry-After when no slot frees within a second.
        pub async fn verify(&self, password: String, hash: String) -> Result<bool> {
            let permit = tokio::time::timeout(QUEUE_WAIT, self.0.clone().acquire_owned())
                .await
                .map_err(|_| Error::Busy { retry_after: 1 })?
                .map_err(|_| Error::Internal("the password check slots were closed".into()))?;
            let matches = tokio::task::spawn_blocking(move || {
                let _permit = permit;
                Argon2::default()
                    .verify_password(password.as_bytes(), hash.as_str())
                    .is_ok()
            })
            .await
            .unwrap_or(false);
            Ok(matches)
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[tokio::test(start_paused = true)]
        async fn a_check_beyond_the_bound_is_refused_with_busy() {
            let checks = Checks::new(1);
            // One slot, taken by a check in progress.
            let held = checks.0.clone().try_acquire_owned();
            assert!(held.is_ok());
            let refused = checks.verify("x".into(), "y".into()).await;
            assert!(
                matches!(refused, Err(Error::Busy { retry_after: 1 })),
                "{refused:?}"
            );
            drop(held);
            // With the slot free, the check runs (and this hash does not parse: no match).
            assert!(matches!(
                checks.verify("x".into(), "y".into()).await,
                Ok(false)
            ));
            assert_eq!(checks.available(), 1);
        }
    }
}

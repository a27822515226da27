//! Accounts from a company directory: LDAP / Active Directory and OpenID Connect.
//!
//! Both paths end the same way: the directory says who the person is ([`Profile`]) and which
//! groups they are in; [`LevelGroups`] turns the groups into a level, re-evaluated at every
//! login; [`provision`] creates the account on first login (just in time) or brings its name,
//! e-mail and level up to date. A directory account has no local password. The check loop
//! ([`check_due`]) asks the directory again about every directory account at an interval and
//! ends the sessions of those it no longer knows or has disabled.

use chrono::{DateTime, Duration, Utc};
use proto::{AccountId, AccountLevel};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;

use crate::account::{self, Account};
use crate::clock::{db_time, parse_db_time};
use crate::db::Db;
use crate::{Error, Result};

pub mod ldap;
pub mod oidc;

/// Where an account comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum Source {
    /// Made by an administrator (or the first start), with a password stored here.
    Local,
    /// An LDAP / Active Directory entry; the password is checked with a bind.
    Ldap,
    /// An OpenID Connect provider's subject.
    Oidc,
}

impl Source {
    /// The name stored in `accounts.source`.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Local => "local",
            Source::Ldap => "ldap",
            Source::Oidc => "oidc",
        }
    }

    /// Parses a stored name.
    pub fn parse(value: &str) -> Option<Self> {
        [Source::Local, Source::Ldap, Source::Oidc]
            .into_iter()
            .find(|source| source.as_str() == value)
    }
}

/// The stored password hash of a directory account: not an argon2 hash, so no password ever
/// matches it and the local login form cannot log in to it.
pub const NO_LOCAL_PASSWORD: &str = "!directory";

/// Who the directory says someone is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// The directory's stable name for the person: the LDAP entry's DN, or `issuer|subject`.
    pub external_id: String,
    /// The login name shown in Conclave (LDAP: the name typed; OIDC: `preferred_username`, or
    /// the e-mail address, or the subject).
    pub login: String,
    /// The display name, when the directory has one.
    pub display_name: Option<String>,
    /// The e-mail address, when the directory has one.
    pub email: Option<String>,
    /// The IANA time zone, when the directory has one (OIDC `zoneinfo`).
    pub time_zone: Option<String>,
    /// The groups (LDAP group DNs, OIDC group names or role values).
    pub groups: Vec<String>,
}

/// Which directory groups give which level: the highest level any group gives wins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LevelGroups {
    /// Groups whose members are administrators.
    pub admin: Vec<String>,
    /// Groups whose members are moderators plus (may record).
    pub moderator_plus: Vec<String>,
    /// Groups whose members are moderators.
    pub moderator: Vec<String>,
    /// Groups whose members are audience (useful with `default: None`: only they may log in).
    pub audience: Vec<String>,
    /// The level of someone in none of the groups; `None` refuses them.
    pub default: Option<AccountLevel>,
    /// Compare group names ignoring case and the spaces around `,` and `=` (LDAP DNs).
    pub dn_names: bool,
}

impl LevelGroups {
    /// The level `groups` give, or `None` when the person may not log in.
    pub fn level_of(&self, groups: &[String]) -> Option<AccountLevel> {
        let held: Vec<String> = groups.iter().map(|group| self.normalize(group)).collect();
        let member_of = |list: &[String]| {
            list.iter()
                .any(|group| held.contains(&self.normalize(group)))
        };
        if member_of(&self.admin) {
            Some(AccountLevel::Admin)
        } else if member_of(&self.moderator_plus) {
            Some(AccountLevel::ModeratorPlus)
        } else if member_of(&self.moderator) {
            Some(AccountLevel::Moderator)
        } else if member_of(&self.audience) {
            Some(AccountLevel::Audience)
        } else {
            self.default
        }
    }

    fn normalize(&self, group: &str) -> String {
        if !self.dn_names {
            return group.to_owned();
        }
        group
            .split(',')
            .map(|rdn| {
                rdn.split('=')
                    .map(str::trim)
                    .collect::<Vec<_>>()
                    .join("=")
                    .to_lowercase()
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Parses `--…-default-level`: a level name, or `none` to refuse people in no mapped group.
///
/// # Errors
/// The value is neither.
pub fn parse_default_level(value: &str) -> std::result::Result<Option<AccountLevel>, String> {
    if value == "none" {
        return Ok(None);
    }
    AccountLevel::parse(value).map(Some).ok_or_else(|| {
        format!("{value:?} is not a level: audience, moderator, moderatorPlus, admin or none")
    })
}

/// Why a directory login was refused after the directory said yes.
pub fn no_level_refusal() -> Error {
    Error::forbidden(
        "your directory account is in none of the groups that may use Conclave; ask your administrator",
    )
}

/// The account for `profile` from `source`, created on first login or brought up to date
/// (display name, e-mail, time zone where the directory has them; the level always).
///
/// # Errors
/// 403 when a Conclave administrator disabled the account; 409 `loginTaken` when a local
/// account (or another directory's) has the login name — never merged, so a directory cannot
/// take over a local account; database errors.
pub async fn provision(
    db: &Db,
    source: Source,
    profile: &Profile,
    level: AccountLevel,
    now: DateTime<Utc>,
) -> Result<Account> {
    let found = sqlx::query("SELECT id FROM accounts WHERE source = $1 AND external_id = $2")
        .bind(source.as_str())
        .bind(&profile.external_id)
        .fetch_optional(&db.pool)
        .await?;
    let time_zone = profile
        .time_zone
        .as_deref()
        .filter(|tz| tz.parse::<chrono_tz::Tz>().is_ok());
    let display_name = profile
        .display_name
        .as_deref()
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(|name| name.chars().take(100).collect::<String>());
    let email = profile
        .email
        .as_deref()
        .filter(|email| crate::validate::email("email", email).is_ok());
    if let Some(row) = found {
        let id = AccountId(row.try_get("id")?);
        let mut account = account::get(db, &id)
            .await?
            .ok_or_else(|| Error::Internal("account vanished".into()))?;
        if account.disabled {
            return Err(Error::forbidden(
                "this account is disabled; ask an administrator",
            ));
        }
        let before = account.level;
        account.level = level;
        if let Some(name) = display_name {
            account.display_name = name;
        }
        if let Some(email) = email {
            account.email = email.to_owned();
        }
        if let Some(tz) = time_zone {
            account.time_zone = tz.to_owned();
        }
        account::update(&db.pool, &account, now).await?;
        mark_checked(db, &account.id, now).await?;
        if before != level {
            // Live meetings follow the new level at once, as after an administrator's change.
            crate::revocation::revoke_account(db, &account.id, now).await?;
            tracing::info!(account = %account.id, from = before.as_str(), to = level.as_str(), "directory changed the level");
        }
        return Ok(account);
    }
    let id = AccountId(uuid::Uuid::new_v4().to_string());
    let result = sqlx::query(
        "INSERT INTO accounts (id, login, display_name, email, level, time_zone, password_hash, disabled, created_at, updated_at, source, external_id, directory_checked_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, $8, $9, $10, $8)",
    )
    .bind(id.as_str())
    .bind(&profile.login)
    .bind(display_name.as_deref().unwrap_or(&profile.login))
    .bind(email.unwrap_or(""))
    .bind(level.as_str())
    .bind(time_zone.unwrap_or("UTC"))
    .bind(NO_LOCAL_PASSWORD)
    .bind(db_time(now))
    .bind(source.as_str())
    .bind(&profile.external_id)
    .execute(&db.pool)
    .await;
    match result {
        Err(err) if crate::error::is_unique_violation(&err) => Err(Error::conflict(
            "loginTaken",
            format!(
                "another account already has the login name {:?}; ask an administrator",
                profile.login
            ),
        )),
        Err(err) => Err(err.into()),
        Ok(_) => {
            tracing::info!(account = %id, source = source.as_str(), level = level.as_str(), "account created at first login");
            account::get(db, &id)
                .await?
                .ok_or_else(|| Error::Internal("account vanished".into()))
        }
    }
}

/// Where an account comes from, and the directory's name for it.
///
/// # Errors
/// Database errors.
pub async fn source_of(db: &Db, id: &AccountId) -> Result<Option<(Source, Option<String>)>> {
    let row = sqlx::query("SELECT source, external_id FROM accounts WHERE id = $1")
        .bind(id.as_str())
        .fetch_optional(&db.pool)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let source: String = row.try_get("source")?;
    let source = Source::parse(&source)
        .ok_or_else(|| Error::Internal(format!("stored account source {source:?} is unknown")))?;
    Ok(Some((source, row.try_get("external_id")?)))
}

/// Records that the directory confirmed the account now.
///
/// # Errors
/// Database errors.
pub async fn mark_checked(db: &Db, id: &AccountId, now: DateTime<Utc>) -> Result<()> {
    sqlx::query("UPDATE accounts SET directory_checked_at = $1 WHERE id = $2")
        .bind(db_time(now))
        .bind(id.as_str())
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// A directory account due for a check: it has live sessions and was last confirmed before
/// `now - interval`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// The account.
    pub id: AccountId,
    /// Its login name.
    pub login: String,
    /// The directory's name for it.
    pub external_id: String,
}

/// The accounts of `source` with live sessions that the directory has not confirmed within
/// `interval`.
///
/// # Errors
/// Database errors.
pub async fn check_due(
    db: &Db,
    source: Source,
    now: DateTime<Utc>,
    interval: Duration,
) -> Result<Vec<Due>> {
    let rows = sqlx::query(
        "SELECT DISTINCT a.id, a.login, a.external_id, a.directory_checked_at FROM accounts a \
         JOIN sessions s ON s.account_id = a.id \
         WHERE a.source = $1 AND a.external_id IS NOT NULL AND s.expires_at > $2",
    )
    .bind(source.as_str())
    .bind(db_time(now))
    .fetch_all(&db.pool)
    .await?;
    let mut due = Vec::new();
    for row in rows {
        let checked: Option<String> = row.try_get("directory_checked_at")?;
        let fresh = match checked {
            Some(at) => parse_db_time(&at)? + interval > now,
            None => false,
        };
        if !fresh {
            due.push(Due {
                id: AccountId(row.try_get("id")?),
                login: row.try_get("login")?,
                external_id: row.try_get("external_id")?,
            });
        }
    }
    Ok(due)
}

/// Ends every session of an account the directory no longer knows or has disabled, and its
/// place in live meetings.
///
/// # Errors
/// Database errors.
pub async fn end_sessions(db: &Db, id: &AccountId, now: DateTime<Utc>) -> Result<()> {
    crate::session::delete_all_of(&db.pool, id, None).await?;
    crate::revocation::revoke_account(db, id, now).await?;
    tracing::info!(account = %id, "the directory no longer confirms the account: its sessions ended");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups(list: &[&str]) -> Vec<String> {
        list.iter().map(|group| (*group).to_owned()).collect()
    }

    #[test]
    fn the_highest_mapped_level_wins_and_dns_compare_loosely() {
        let map = LevelGroups {
            admin: groups(&["cn=video-admins,ou=groups,dc=example,dc=org"]),
            moderator_plus: groups(&["cn=video-moderators-plus,ou=groups,dc=example,dc=org"]),
            moderator: groups(&["cn=video-moderators,ou=groups,dc=example,dc=org"]),
            audience: Vec::new(),
            default: Some(AccountLevel::Audience),
            dn_names: true,
        };
        assert_eq!(
            map.level_of(&groups(&[
                "CN=Video-Moderators, OU=Groups, DC=example, DC=org",
                "cn=staff,ou=groups,dc=example,dc=org"
            ])),
            Some(AccountLevel::Moderator)
        );
        assert_eq!(
            map.level_of(&groups(&[
                "cn=video-moderators,ou=groups,dc=example,dc=org",
                "cn=video-admins,ou=groups,dc=example,dc=org"
            ])),
            Some(AccountLevel::Admin)
        );
        assert_eq!(map.level_of(&[]), Some(AccountLevel::Audience));
        let strict = LevelGroups {
            default: None,
            ..map
        };
        assert_eq!(
            strict.level_of(&groups(&["cn=staff,dc=example,dc=org"])),
            None
        );
    }

    #[test]
    fn oidc_group_names_compare_exactly() {
        let map = LevelGroups {
            moderator: groups(&["Video-Moderators"]),
            default: None,
            ..LevelGroups::default()
        };
        assert_eq!(map.level_of(&groups(&["video-moderators"])), None);
        assert_eq!(
            map.level_of(&groups(&["Video-Moderators"])),
            Some(AccountLevel::Moderator)
        );
    }

    #[test]
    fn the_default_level_parses_or_refuses() {
        assert_eq!(parse_default_level("none"), Ok(None));
        assert_eq!(
            parse_default_level("moderator"),
            Ok(Some(AccountLevel::Moderator))
        );
        assert!(parse_default_level("boss").is_err());
    }
}

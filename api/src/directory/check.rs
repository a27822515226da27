//! The directory check (LDAP here; OpenID Connect in `oidc::confirm_due`): every minute, accounts with live sessions that the company directory
//! has not confirmed within `--directory-check-minutes` are asked about again; one it no
//! longer knows, has disabled, or puts in no group that may log in loses its sessions.
//!
//! A directory that cannot be reached decides nothing: the round stops, is logged, and the
//! next one tries again — an outage never logs everyone out.

use std::future::Future;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};

use super::ldap::{Directory, Presence};
use super::{Source, check_due, end_sessions, mark_checked};
use crate::Result;
use crate::db::Db;
use crate::state::AppState;

/// What one round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Round {
    /// Accounts the directory confirmed.
    pub confirmed: usize,
    /// Accounts whose sessions ended.
    pub ended: usize,
    /// Accounts left for the next round (the directory could not be asked).
    pub deferred: usize,
}

/// Runs [`round`] every minute until `shutdown` resolves.
pub async fn run_loop(state: AppState, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    let interval = Duration::minutes(i64::from(state.config.directory_check_minutes));
    loop {
        match round(
            &state.db,
            state.ldap.as_deref(),
            state.clock.now(),
            interval,
        )
        .await
        {
            Ok(done) if done.ended > 0 || done.deferred > 0 => {
                tracing::info!(
                    confirmed = done.confirmed,
                    ended = done.ended,
                    deferred = done.deferred,
                    "directory check"
                );
            }
            Ok(_) => {}
            Err(err) => tracing::error!(cause = %err, "directory check failed"),
        }
        // OpenID Connect accounts: a refresh at the provider for each one due.
        if let Err(err) = super::oidc::confirm_due(&state, state.clock.now()).await {
            tracing::error!(cause = %err, "OpenID Connect check failed");
        }
        tokio::select! {
            () = &mut shutdown => return,
            () = tokio::time::sleep(StdDuration::from_secs(60)) => {}
        }
    }
}

/// One check of every directory account that is due.
///
/// # Errors
/// Database errors (an unreachable directory is no error: its accounts are deferred).
pub async fn round(
    db: &Db,
    ldap: Option<&Directory>,
    now: DateTime<Utc>,
    interval: Duration,
) -> Result<Round> {
    let mut done = Round::default();
    if let Some(ldap) = ldap {
        check_ldap(db, ldap, now, interval, &mut done).await?;
    }
    // OpenID Connect accounts are checked by `oidc::confirm_due`, called beside this round.
    Ok(done)
}

async fn check_ldap(
    db: &Db,
    ldap: &Directory,
    now: DateTime<Utc>,
    interval: Duration,
    done: &mut Round,
) -> Result<()> {
    let due = check_due(db, Source::Ldap, now, interval).await?;
    for (index, account) in due.iter().enumerate() {
        let presence = match ldap.confirm(&account.login, &account.external_id).await {
            Ok(presence) => presence,
            Err(_) => {
                // Logged where it failed; ask again next round.
                done.deferred += due.len() - index;
                return Ok(());
            }
        };
        let allowed = match &presence {
            Presence::Active(groups) => ldap.levels.level_of(groups).is_some(),
            Presence::Gone | Presence::Disabled => false,
        };
        if allowed {
            mark_checked(db, &account.id, now).await?;
            done.confirmed += 1;
        } else {
            tracing::info!(account = %account.id, ?presence, "the directory no longer lets the account in");
            end_sessions(db, &account.id, now).await?;
            done.ended += 1;
        }
    }
    Ok(())
}

//! What the conference service revoked: accounts that changed (level, disabled, password
//! reset), identities excluded from a conference, meetings ended. The SFU asks for the list
//! every [`POLL`] (and at once on start), closes the live sessions a new entry names and
//! refuses join tokens issued before. The list covers every unexpired token, so a pod that
//! restarts or takes over a meeting after a failover forgets nothing a token could carry.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use proto::{ConferenceId, JoinClaims, Revocation, Revocations, Revoked, TokenKey};
use tracing::{debug, info, warn};

use crate::error::Result;
use crate::internal_api::InternalGet;
use proto::signal::ErrorCode;

/// How often the SFU asks for revocations: a disabled account is out of its meetings within
/// about this long.
pub const POLL: Duration = Duration::from_secs(2);

/// How long a join waits for the first list after the SFU started; beyond, it is admitted on
/// what the token says (the conference service is unreachable: it issues no tokens either).
pub const FIRST_LIST_WAIT: Duration = Duration::from_secs(5);

/// A boxed future, so that sources can be held as trait objects.
pub type Fetch<'a> =
    Pin<Box<dyn Future<Output = std::result::Result<Vec<Revocation>, String>> + Send + 'a>>;

/// Where revocations come from: the API over HTTP in a cluster, the embedded conference
/// service in standalone mode.
pub trait RevocationSource: Send + Sync + 'static {
    /// The current list (everything within a join token's lifetime).
    fn fetch(&self) -> Fetch<'_>;
}

/// Asks `GET {api_url}/api/v1/internal/revocations` with a service token.
#[derive(Debug, Clone)]
pub struct HttpRevocations(InternalGet);

impl HttpRevocations {
    /// A source for the API at `api_url`, authenticating as `sfu:{pod}`.
    ///
    /// # Errors
    /// [`crate::error::Error::ReportClient`] when the HTTP client cannot be built.
    pub fn new(api_url: &str, key: TokenKey, pod: &str) -> Result<Self> {
        InternalGet::new(api_url, "revocations", key, pod, "the revocation list").map(Self)
    }
}

impl RevocationSource for HttpRevocations {
    fn fetch(&self) -> Fetch<'_> {
        Box::pin(async move {
            let list: Revocations = self.0.get().await?;
            Ok(list.revocations)
        })
    }
}

/// The revocations a join must pass: the latest list, indexed.
#[derive(Debug, Default)]
pub struct Registry {
    seen: HashSet<String>,
    /// The lowest token epoch still accepted, by account identity.
    epochs: HashMap<String, u32>,
    excluded: HashSet<(ConferenceId, String)>,
    /// Tokens issued at or before this second are refused, by conference.
    ended: HashMap<ConferenceId, i64>,
}

/// A revocation the live rooms must follow now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fresh {
    /// When it happened.
    pub at: DateTime<Utc>,
    /// What.
    pub what: Revoked,
}

impl Registry {
    /// Takes the latest list in place of the last one; returns the entries not seen before.
    pub fn replace(&mut self, list: &[Revocation]) -> Vec<Fresh> {
        let mut next = Registry::default();
        let mut fresh = Vec::new();
        for revocation in list {
            let Ok(at) = DateTime::parse_from_rfc3339(&revocation.at) else {
                warn!(id = %revocation.id, "a revocation's time does not parse; skipped");
                continue;
            };
            let at = at.with_timezone(&Utc);
            match &revocation.what {
                Revoked::Account { identity, epoch } => {
                    let entry = next.epochs.entry(identity.clone()).or_default();
                    *entry = (*entry).max(*epoch);
                }
                Revoked::Excluded {
                    conference,
                    identity,
                } => {
                    next.excluded.insert((conference.clone(), identity.clone()));
                }
                Revoked::Ended { conference } => {
                    let entry = next.ended.entry(conference.clone()).or_insert(i64::MIN);
                    *entry = (*entry).max(at.timestamp());
                }
            }
            next.seen.insert(revocation.id.clone());
            if !self.seen.contains(&revocation.id) {
                fresh.push(Fresh {
                    at,
                    what: revocation.what.clone(),
                });
            }
        }
        *self = next;
        fresh
    }

    /// Why a verified token may not join, if it may not.
    pub fn refusal(&self, claims: &JoinClaims) -> Option<(ErrorCode, &'static str)> {
        if self
            .epochs
            .get(&claims.sub)
            .is_some_and(|epoch| claims.ep < *epoch)
        {
            return Some((
                ErrorCode::Revoked,
                "your account changed since this token was issued; join again",
            ));
        }
        if self
            .excluded
            .contains(&(claims.conf.clone(), claims.sub.clone()))
        {
            return Some((ErrorCode::Excluded, "you were excluded from this meeting"));
        }
        if self
            .ended
            .get(&claims.conf)
            .is_some_and(|ended| claims.iat <= *ended)
        {
            return Some((ErrorCode::Ended, "the meeting has ended"));
        }
        None
    }
}

/// Asks `source` every [`POLL`] until the SFU shuts down, applying what is new; and, when the
/// SFU has a placement source, which conferences this pod holds (in the same round).
pub(crate) fn spawn_poller(state: crate::server::SfuState, source: Arc<dyn RevocationSource>) {
    tokio::spawn(async move {
        let mut shutdown = state.shared.shutdown.subscribe();
        let mut failing = false;
        let mut placements_failing = false;
        loop {
            match source.fetch().await {
                Ok(list) => {
                    if failing {
                        info!("revocations are reachable again");
                        failing = false;
                    }
                    let fresh = state.shared.revocations.lock().replace(&list);
                    for entry in fresh {
                        state.follow(&entry);
                    }
                }
                Err(cause) if failing => debug!(%cause, "revocations still unreachable"),
                Err(cause) => {
                    warn!(%cause, "revocations cannot be fetched; the last list stays in force");
                    failing = true;
                }
            }
            state.shared.revocations_loaded.send_replace(true);
            match state.refresh_placements().await {
                Ok(_) if placements_failing => {
                    info!("placements are reachable again");
                    placements_failing = false;
                }
                Ok(_) => {}
                Err(cause) if placements_failing => {
                    debug!(%cause, "placements still unreachable");
                }
                Err(cause) => {
                    warn!(%cause, "placements cannot be fetched; the last list stays in force");
                    placements_failing = true;
                }
            }
            tokio::select! {
                () = tokio::time::sleep(POLL) => {}
                _ = shutdown.changed() => return,
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::{Media, MeetingId, Role, RoomSettings};

    fn revocation(id: &str, at: &str, what: Revoked) -> Revocation {
        Revocation {
            id: id.into(),
            at: at.into(),
            what,
        }
    }

    fn claims(sub: &str, conf: &str, iat: i64, ep: u32) -> JoinClaims {
        JoinClaims {
            sub: sub.into(),
            name: "N".into(),
            conf: ConferenceId::from(conf),
            mid: MeetingId("123456".into()),
            role: Role::Speaker,
            level: None,
            owner: false,
            room: RoomSettings {
                max_participants: None,
                allow_join_without_owner: true,
                media: Media::AudioVideo,
                udp_ports: None,
                revision: 0,
                recording_allowed: true,
                topic: None,
            },
            aud: proto::token::JOIN_AUDIENCE.into(),
            iat,
            exp: iat + 300,
            jti: "j".into(),
            rid: None,
            ep,
            cli: None,
            pod: None,
        }
    }

    const T0: &str = "2026-12-03T10:00:00Z";
    fn t0() -> i64 {
        DateTime::parse_from_rfc3339(T0).expect("time").timestamp()
    }

    #[test]
    fn tokens_older_than_a_revocation_are_refused_and_newer_ones_pass() {
        let mut registry = Registry::default();
        let fresh = registry.replace(&[
            revocation(
                "1",
                T0,
                Revoked::Account {
                    identity: "account:a".into(),
                    epoch: 2,
                },
            ),
            revocation(
                "2",
                T0,
                Revoked::Excluded {
                    conference: ConferenceId::from("c"),
                    identity: "guest:g".into(),
                },
            ),
            revocation(
                "3",
                T0,
                Revoked::Ended {
                    conference: ConferenceId::from("e"),
                },
            ),
        ]);
        assert_eq!(fresh.len(), 3);
        let code = |c: &JoinClaims| registry.refusal(c).map(|(code, _)| code);
        assert_eq!(
            code(&claims("account:a", "c", t0(), 1)),
            Some(ErrorCode::Revoked)
        );
        assert_eq!(code(&claims("account:a", "c", t0(), 2)), None);
        assert_eq!(
            code(&claims("guest:g", "c", t0() + 9, 0)),
            Some(ErrorCode::Excluded)
        );
        assert_eq!(code(&claims("guest:g", "other", t0(), 0)), None);
        assert_eq!(
            code(&claims("guest:x", "e", t0(), 0)),
            Some(ErrorCode::Ended)
        );
        assert_eq!(code(&claims("guest:x", "e", t0() + 1, 0)), None);
    }

    #[test]
    fn only_new_entries_are_fresh_and_dropped_entries_are_forgotten() {
        let mut registry = Registry::default();
        let ended = revocation(
            "3",
            T0,
            Revoked::Ended {
                conference: ConferenceId::from("e"),
            },
        );
        assert_eq!(registry.replace(std::slice::from_ref(&ended)).len(), 1);
        assert!(registry.replace(std::slice::from_ref(&ended)).is_empty());
        // Out of the API's window: tokens from then have expired anyway.
        assert!(registry.replace(&[]).is_empty());
        assert!(registry.refusal(&claims("guest:x", "e", t0(), 0)).is_none());
    }
}

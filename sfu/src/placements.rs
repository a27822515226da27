//! Which conferences this pod holds: the conference service's answer to "what is placed on
//! me?". The SFU asks beside the revocations (every [`crate::revocation::POLL`]), refuses joins
//! for conferences it does not hold (`wrongPod`, after asking once more so that a fresh
//! placement is not refused), and tells the participants of a room whose conference left the
//! list to move (`closed {reason: moved}`): every participant of a meeting ends up on the one
//! pod the operator placed it on, also after a failover.
//!
//! Without a source (`--sfu-api-url` unset, or standalone mode where the embedded SFU holds
//! every conference) nothing is checked.

use std::collections::HashSet;

use proto::{ConferenceId, Placements, TokenKey};

use crate::error::Result;
use crate::internal_api::InternalGet;

/// A boxed future, so that sources can be held as trait objects.
pub type Fetch<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = std::result::Result<Placements, String>> + Send + 'a>,
>;

/// Where the list comes from: the API over HTTP in a cluster.
pub trait PlacementSource: Send + Sync + 'static {
    /// The conferences placed on this pod now.
    fn fetch(&self) -> Fetch<'_>;
}

/// Asks `GET {api_url}/api/v1/internal/placements` with a service token of `sfu:{pod}`.
#[derive(Debug, Clone)]
pub struct HttpPlacements(InternalGet);

impl HttpPlacements {
    /// A source for the API at `api_url`, authenticating as `sfu:{pod}`.
    ///
    /// # Errors
    /// [`crate::error::Error::ReportClient`] when the HTTP client cannot be built.
    pub fn new(api_url: &str, key: TokenKey, pod: &str) -> Result<Self> {
        InternalGet::new(api_url, "placements", key, pod, "the placement list").map(Self)
    }
}

impl PlacementSource for HttpPlacements {
    fn fetch(&self) -> Fetch<'_> {
        Box::pin(self.0.get())
    }
}

/// What this pod holds, as last heard.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Held {
    /// Nothing heard yet (or nothing asked: no source).
    #[default]
    Unknown,
    /// Everything (standalone: one SFU).
    Everything,
    /// These conferences.
    These(HashSet<ConferenceId>),
}

impl Held {
    /// What a list says.
    pub fn from_list(list: &Placements) -> Self {
        if list.holds_everything {
            Held::Everything
        } else {
            Held::These(list.conferences.iter().cloned().collect())
        }
    }

    /// Whether the list says, for sure, that `conference` is not held here.
    pub fn refuses(&self, conference: &ConferenceId) -> bool {
        matches!(self, Held::These(held) if !held.contains(conference))
    }

    /// How many conferences are held (`None`: unknown or everything).
    pub fn count(&self) -> Option<usize> {
        match self {
            Held::These(held) => Some(held.len()),
            Held::Unknown | Held::Everything => None,
        }
    }
}

/// What a join's token and this pod's list say about admitting it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Enter.
    Admit,
    /// The token names another pod.
    OtherPod(String),
    /// The list says the conference is not held here (ask once more before refusing).
    NotHeld,
}

/// Judges a join for `conference` with a token for `token_pod` on the pod `me`, by `held`.
pub fn judge(me: &str, token_pod: Option<&str>, conference: &ConferenceId, held: &Held) -> Verdict {
    match token_pod {
        Some(pod) if pod != me => Verdict::OtherPod(pod.to_owned()),
        _ if held.refuses(conference) => Verdict::NotHeld,
        _ => Verdict::Admit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(conferences: &[&str]) -> Placements {
        Placements {
            pod: "sfu-0".into(),
            conferences: conferences.iter().map(|c| ConferenceId::from(*c)).collect(),
            holds_everything: false,
        }
    }

    #[test]
    fn a_token_for_another_pod_is_refused_whatever_the_list_says() {
        let held = Held::from_list(&list(&["c1"]));
        let c1 = ConferenceId::from("c1");
        assert_eq!(
            judge("sfu-0", Some("sfu-1"), &c1, &held),
            Verdict::OtherPod("sfu-1".into())
        );
        assert_eq!(judge("sfu-0", Some("sfu-0"), &c1, &held), Verdict::Admit);
        assert_eq!(judge("sfu-0", None, &c1, &held), Verdict::Admit);
    }

    #[test]
    fn a_conference_off_the_list_is_not_held_but_an_unknown_list_admits() {
        let c2 = ConferenceId::from("c2");
        assert_eq!(
            judge(
                "sfu-0",
                Some("sfu-0"),
                &c2,
                &Held::from_list(&list(&["c1"]))
            ),
            Verdict::NotHeld
        );
        assert_eq!(judge("sfu-0", None, &c2, &Held::Unknown), Verdict::Admit);
        let everything = Placements {
            holds_everything: true,
            ..list(&[])
        };
        assert_eq!(Held::from_list(&everything), Held::Everything);
        assert_eq!(
            judge("sfu-0", None, &c2, &Held::from_list(&everything)),
            Verdict::Admit
        );
        assert_eq!(Held::from_list(&list(&["c1", "c3"])).count(), Some(2));
    }
}

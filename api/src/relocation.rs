//! Waiting for a conference to leave an SFU pod its participants lost.
//!
//! A client whose websocket closed, whose media failed or who was told `moved` asks `/join`
//! again naming the pod it lost (`lostPod`). While the conference's assignment still names that
//! pod (or names none, between a release and a new placement), the operator has not re-placed it
//! yet: answering at once would send the client straight back to the pod it lost. So the join
//! waits, bounded, for the assignment to change and answers as soon as it does.
//!
//! Every client of a failed pod asks at about the same moment; the waits for one conference
//! share one poll of the conference store (one read every [`POLL`] while anybody waits), so a
//! meeting of a hundred costs the store what a meeting of one does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use placement::Phase;
use proto::ConferenceId;
use tokio::sync::watch;

use crate::conference::{Conference, Runtime};
use crate::store::{BoxFut, ConferenceStore};
use crate::{Error, Result};

/// How often a conference's runtime is read while joins wait for it to move.
pub const POLL: Duration = Duration::from_millis(250);

/// The latest look at a conference while joins wait for it to move.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    /// Its runtime state.
    Runtime(Runtime),
    /// It was deleted.
    Gone,
}

impl Seen {
    /// Whether waiting is over for a join that lost `lost_pod`: the conference is assigned to
    /// another pod, has ended or cannot be placed, or is gone.
    pub fn moved_from(&self, lost_pod: &str) -> bool {
        match self {
            Seen::Runtime(runtime) => !should_wait(runtime, lost_pod),
            Seen::Gone => true,
        }
    }
}

/// Whether a join naming `lost_pod` should wait for `runtime` to change: its assignment still
/// names that pod, or a running conference has none while the operator places it again (one
/// that ended, or that the operator said it cannot place, is not waited for).
pub fn should_wait(runtime: &Runtime, lost_pod: &str) -> bool {
    match &runtime.placed {
        Some(placed) => placed.pod == lost_pod,
        None => {
            runtime.not_placed.is_none() && matches!(runtime.phase, Phase::Ready | Phase::Active)
        }
    }
}

/// Reads one conference's runtime: `None` when it is gone.
pub type Fetch = Arc<dyn Fn() -> BoxFut<'static, Option<Runtime>> + Send + Sync>;

type Polls = Arc<Mutex<HashMap<ConferenceId, Arc<watch::Sender<Seen>>>>>;

/// The polls running for waiting joins, one per conference.
#[derive(Debug, Clone)]
pub struct Relocations {
    polls: Polls,
    every: Duration,
}

impl Default for Relocations {
    fn default() -> Self {
        Self::new(POLL)
    }
}

impl Relocations {
    /// Polls every `every` while joins wait.
    pub fn new(every: Duration) -> Self {
        Self {
            polls: Arc::default(),
            every,
        }
    }

    /// Conferences being polled now (joins wait for them to move).
    pub fn waiting(&self) -> usize {
        self.polls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Waits at most `within` for conference `id` (last seen as `current`) to be assigned to
    /// another pod than `lost_pod`, reading it with `fetch`; returns what was seen last, moved
    /// or not. Concurrent waits for one conference share one poll.
    pub async fn wait_for_move(
        &self,
        id: &ConferenceId,
        lost_pod: &str,
        current: Runtime,
        within: Duration,
        fetch: Fetch,
    ) -> Seen {
        let mut seen = self.subscribe(id, current, fetch);
        let moved = tokio::time::timeout(within, seen.wait_for(|seen| seen.moved_from(lost_pod)))
            .await
            .is_ok_and(|seen| seen.is_ok());
        if moved {
            tracing::info!(conference = %id, lost_pod, "the conference moved; answering the join");
        } else {
            tracing::info!(conference = %id, lost_pod, waited_ms = within.as_millis() as u64, "the conference did not move in time; answering what is current");
        }
        seen.borrow().clone()
    }

    /// A view of the conference's poll, started when none runs.
    fn subscribe(
        &self,
        id: &ConferenceId,
        current: Runtime,
        fetch: Fetch,
    ) -> watch::Receiver<Seen> {
        let mut polls = self.polls.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(sender) = polls.get(id) {
            return sender.subscribe();
        }
        // The join just read the conference: the first read of the poll comes a period later.
        let (sender, receiver) = watch::channel(Seen::Runtime(current));
        let sender = Arc::new(sender);
        polls.insert(id.clone(), Arc::clone(&sender));
        tokio::spawn(poll(
            Arc::clone(&self.polls),
            id.clone(),
            sender,
            fetch,
            self.every,
        ));
        receiver
    }
}

/// Brings `conference` up to date for a join from a client that lost `lost_pod`: when it still
/// waits to be placed away from that pod ([`should_wait`]), waits at most `within` for it to
/// move (sharing one poll of `store` with the other joins of the meeting) and takes the runtime
/// seen last.
///
/// # Errors
/// 409 `conferenceEnded` when the conference was deleted meanwhile.
pub async fn follow_move(
    relocations: &Relocations,
    store: &Arc<dyn ConferenceStore>,
    conference: &mut Conference,
    lost_pod: &str,
    within: Duration,
) -> Result<()> {
    if within.is_zero() || !should_wait(&conference.runtime, lost_pod) {
        return Ok(());
    }
    let fetch: Fetch = {
        let store = Arc::clone(store);
        let id = conference.id.clone();
        Arc::new(move || {
            let store = Arc::clone(&store);
            let id = id.clone();
            Box::pin(async move { store.runtime(&id).await })
        })
    };
    let seen = relocations
        .wait_for_move(
            &conference.id,
            lost_pod,
            conference.runtime.clone(),
            within,
            fetch,
        )
        .await;
    match seen {
        Seen::Runtime(runtime) => {
            conference.runtime = runtime;
            Ok(())
        }
        Seen::Gone => Err(Error::conflict(
            "conferenceEnded",
            "this conference was deleted",
        )),
    }
}

/// Reads the conference every `every` until nobody waits for it any more.
async fn poll(
    polls: Polls,
    id: ConferenceId,
    sender: Arc<watch::Sender<Seen>>,
    fetch: Fetch,
    every: Duration,
) {
    loop {
        tokio::time::sleep(every).await;
        {
            // Under the lock that new waiters subscribe under: none is lost between the check
            // and the removal.
            let mut polls = polls.lock().unwrap_or_else(PoisonError::into_inner);
            if sender.receiver_count() == 0 {
                polls.remove(&id);
                return;
            }
        }
        match fetch().await {
            Ok(Some(runtime)) => {
                sender.send_if_modified(|seen| {
                    let next = Seen::Runtime(runtime);
                    let changed = *seen != next;
                    *seen = next;
                    changed
                });
            }
            Ok(None) => {
                sender.send_replace(Seen::Gone);
            }
            Err(err) => {
                tracing::warn!(conference = %id, cause = %err, "reading a conference while joins wait for it to move failed; trying again");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use placement::PortRange;

    use super::*;
    use crate::conference::Placed;

    fn on(pod: Option<&str>) -> Runtime {
        Runtime {
            phase: Phase::Active,
            occurrence: None,
            started_early: None,
            ended: None,
            participants: 2,
            placed: pod.map(|pod| Placed {
                pod: pod.to_owned(),
                endpoint: format!("wss://{pod}.example.org/rtc"),
                udp_ports: PortRange {
                    first: 40000,
                    last: 40099,
                },
            }),
            not_placed: None,
        }
    }

    /// A store stand-in: the runtime it answers, and how often it was read.
    #[derive(Clone)]
    struct Store {
        runtime: Arc<Mutex<Option<Runtime>>>,
        reads: Arc<AtomicUsize>,
    }

    impl Store {
        fn new(runtime: Runtime) -> Self {
            Self {
                runtime: Arc::new(Mutex::new(Some(runtime))),
                reads: Arc::default(),
            }
        }

        fn set(&self, runtime: Option<Runtime>) {
            *self.runtime.lock().unwrap_or_else(PoisonError::into_inner) = runtime;
        }

        fn fetch(&self) -> Fetch {
            let store = self.clone();
            Arc::new(move || {
                let store = store.clone();
                Box::pin(async move {
                    store.reads.fetch_add(1, Ordering::SeqCst);
                    Ok(store
                        .runtime
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .clone())
                })
            })
        }
    }

    #[test]
    fn a_join_waits_only_while_the_assignment_names_the_lost_pod_or_none() {
        assert!(should_wait(&on(Some("sfu-0")), "sfu-0"));
        assert!(!should_wait(&on(Some("sfu-1")), "sfu-0"));
        assert!(should_wait(&on(None), "sfu-0"));
        let mut too_large = on(None);
        too_large.not_placed = Some(("TooLarge".into(), "too large".into()));
        assert!(!should_wait(&too_large, "sfu-0"));
        let mut ended = on(None);
        ended.phase = Phase::Ended;
        assert!(!should_wait(&ended, "sfu-0"));
    }

    #[tokio::test(start_paused = true)]
    async fn waits_end_as_soon_as_the_conference_is_placed_elsewhere() {
        let store = Store::new(on(Some("sfu-0")));
        let relocations = Relocations::new(POLL);
        let id = ConferenceId::from("c1");
        let started = tokio::time::Instant::now();
        let waiting = {
            let relocations = relocations.clone();
            let fetch = store.fetch();
            let id = id.clone();
            tokio::spawn(async move {
                relocations
                    .wait_for_move(
                        &id,
                        "sfu-0",
                        on(Some("sfu-0")),
                        Duration::from_secs(5),
                        fetch,
                    )
                    .await
            })
        };
        // Three polls see the old pod, then the operator moves it.
        tokio::time::sleep(POLL * 3 + POLL / 2).await;
        assert_eq!(relocations.waiting(), 1);
        store.set(Some(on(Some("sfu-1"))));
        let seen = waiting.await.expect("the wait ends");
        assert_eq!(seen, Seen::Runtime(on(Some("sfu-1"))));
        assert!(started.elapsed() <= POLL * 4, "{:?}", started.elapsed());
        // Nobody waits any more: the poll stops.
        tokio::time::sleep(POLL * 2).await;
        assert_eq!(relocations.waiting(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_ends_at_its_bound_with_what_is_current() {
        let store = Store::new(on(Some("sfu-0")));
        let relocations = Relocations::new(POLL);
        let started = tokio::time::Instant::now();
        let seen = relocations
            .wait_for_move(
                &ConferenceId::from("c1"),
                "sfu-0",
                on(Some("sfu-0")),
                Duration::from_secs(2),
                store.fetch(),
            )
            .await;
        assert_eq!(seen, Seen::Runtime(on(Some("sfu-0"))));
        assert_eq!(started.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn the_waits_of_one_meeting_share_one_poll() {
        let store = Store::new(on(Some("sfu-0")));
        let relocations = Relocations::new(POLL);
        let id = ConferenceId::from("c1");
        let mut waits = Vec::new();
        for _ in 0..50 {
            let relocations = relocations.clone();
            let fetch = store.fetch();
            let id = id.clone();
            waits.push(tokio::spawn(async move {
                relocations
                    .wait_for_move(
                        &id,
                        "sfu-0",
                        on(Some("sfu-0")),
                        Duration::from_secs(5),
                        fetch,
                    )
                    .await
            }));
        }
        tokio::time::sleep(POLL * 4 + POLL / 2).await;
        store.set(None);
        for wait in waits {
            assert_eq!(wait.await.expect("the wait ends"), Seen::Gone);
        }
        let reads = store.reads.load(Ordering::SeqCst);
        assert!(
            reads <= 6,
            "one read per period for fifty waits, not {reads}"
        );
    }
}

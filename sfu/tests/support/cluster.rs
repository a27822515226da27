//! Stand-ins for the conference service as SFU pods see it: which pod each conference is
//! placed on (what `GET /internal/placements` answers each pod), and no revocations.

use std::sync::Arc;

use parking_lot::Mutex;
use proto::signal::{ErrorCode, ServerMessage};
use proto::{ConferenceId, Placements, Revocation, UdpPorts};
use sfu::{Config, PlacementSource, RevocationSource};

use super::{SECRET, Sfu, start_with};

/// The conference service's view, shared by the stand-ins: which pod each conference is on.
#[derive(Default)]
pub struct Cluster {
    pub assigned: Mutex<Vec<(ConferenceId, String)>>,
    /// Lists asked for, per pod.
    pub asked: Mutex<Vec<String>>,
    /// `lostPod` of every join through the stand-in API.
    pub lost: Mutex<Vec<Option<String>>>,
}

impl Cluster {
    pub fn assign(&self, conference: &str, pod: &str) {
        let mut assigned = self.assigned.lock();
        assigned.retain(|(c, _)| c.as_str() != conference);
        assigned.push((ConferenceId::from(conference), pod.to_owned()));
    }

    pub fn pod_of(&self, conference: &ConferenceId) -> Option<String> {
        self.assigned
            .lock()
            .iter()
            .find(|(c, _)| c == conference)
            .map(|(_, pod)| pod.clone())
    }

    pub fn asked_by(&self, pod: &str) -> usize {
        self.asked.lock().iter().filter(|p| *p == pod).count()
    }
}

/// What one pod asks the conference service.
pub struct PodView {
    pub cluster: Arc<Cluster>,
    pub pod: String,
}

impl PlacementSource for PodView {
    fn fetch(&self) -> sfu::placements::Fetch<'_> {
        Box::pin(async move {
            self.cluster.asked.lock().push(self.pod.clone());
            let conferences = self
                .cluster
                .assigned
                .lock()
                .iter()
                .filter(|(_, pod)| *pod == self.pod)
                .map(|(c, _)| c.clone())
                .collect();
            Ok(Placements {
                pod: self.pod.clone(),
                conferences,
                holds_everything: false,
            })
        })
    }
}

pub struct NothingRevoked;

impl RevocationSource for NothingRevoked {
    fn fetch(&self) -> sfu::revocation::Fetch<'_> {
        Box::pin(async { Ok(Vec::<Revocation>::new()) })
    }
}

/// An SFU pod named `pod` on `ports`, following `cluster`'s placements.
pub async fn pod(cluster: &Arc<Cluster>, pod: &str, ports: UdpPorts) -> Sfu {
    let mut config = Config::for_loopback(SECRET, ports);
    config.pod_name = pod.to_owned();
    let sfu = start_with(config).await;
    sfu.state.follow_conference_service(
        Arc::new(NothingRevoked),
        Some(Arc::new(PodView {
            cluster: Arc::clone(cluster),
            pod: pod.to_owned(),
        })),
    );
    sfu
}

pub fn ports(first: u16) -> UdpPorts {
    UdpPorts {
        first,
        last: first + 499,
    }
}

pub fn code(message: &ServerMessage) -> Option<ErrorCode> {
    match message {
        ServerMessage::Error { code, .. } => Some(*code),
        _ => None,
    }
}

pub fn counter(sfu: &Sfu, name: &str, label: &str) -> u64 {
    sfu.metrics()
        .lines()
        .find(|line| line.starts_with(&format!("{name}{{")) && line.contains(label))
        .and_then(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

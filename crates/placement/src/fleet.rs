//! Placement of a conference on an SFU pod: the ready pod with the most free capacity that fits
//! the conference, and a UDP port range from that pod's range that overlaps no other
//! conference on the pod.

use serde::{Deserialize, Serialize};

/// An inclusive range of UDP ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortRange {
    /// The first port.
    pub first: u16,
    /// The last port (inclusive).
    pub last: u16,
}

impl PortRange {
    /// How many ports the range holds.
    pub fn len(&self) -> u32 {
        u32::from(self.last).saturating_sub(u32::from(self.first)) + 1
    }

    /// Whether the range is inverted (it then holds no port).
    pub fn is_empty(&self) -> bool {
        self.last < self.first
    }

    /// Whether two ranges share a port.
    pub fn overlaps(&self, other: &PortRange) -> bool {
        self.first <= other.last && other.first <= self.last
    }
}

/// An SFU pod as placement sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pod {
    /// The pod's name.
    pub name: String,
    /// Where clients connect (the signaling websocket's base URL).
    pub endpoint: String,
    /// Ready and not terminating: only such pods take conferences.
    pub ready: bool,
    /// How many participants it serves at most.
    pub capacity: u32,
    /// The UDP ports it may hand out.
    pub udp_ports: PortRange,
}

/// A conference placed on a pod.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Assignment {
    /// The conference's key (its ID or resource name).
    pub conference: String,
    /// The pod it runs on.
    pub pod: String,
    /// Where clients connect.
    pub endpoint: String,
    /// Its UDP ports on that pod.
    pub udp_ports: PortRange,
    /// The participants reserved for it on that pod.
    pub reserved: u32,
}

/// What placement needs to know about one conference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The conference's key.
    pub conference: String,
    /// Participants to reserve (its `maxParticipants`, or the default).
    pub participants: u32,
}

/// Sizing knobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizing {
    /// UDP ports handed out per participant.
    pub ports_per_participant: u16,
}

impl Default for Sizing {
    fn default() -> Self {
        Self {
            ports_per_participant: 2,
        }
    }
}

impl Sizing {
    /// Ports a conference of `participants` needs.
    pub fn ports_for(&self, participants: u32) -> u32 {
        participants
            .max(1)
            .saturating_mul(u32::from(self.ports_per_participant.max(1)))
    }
}

/// Why a conference could not be placed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PlacementError {
    /// No SFU pod is ready.
    #[error("no SFU pod is ready")]
    NoReadyPod,
    /// Every ready pod is too full.
    #[error("no SFU pod has room for {participants} participants")]
    NoCapacity {
        /// The participants requested.
        participants: u32,
    },
    /// Pods with capacity have no free port range of the needed size.
    #[error("no SFU pod has {ports} free UDP ports in a row")]
    NoPorts {
        /// The ports requested.
        ports: u32,
    },
}

impl PlacementError {
    /// A short machine-readable reason (for conditions, events and metric labels).
    pub fn reason(&self) -> &'static str {
        match self {
            PlacementError::NoReadyPod => "NoReadyPod",
            PlacementError::NoCapacity { .. } => "NoCapacity",
            PlacementError::NoPorts { .. } => "NoPorts",
        }
    }
}

/// Places `request` given the fleet and the assignments that exist.
///
/// An existing assignment of the same conference on a ready pod is kept as it is; one on a pod
/// that is gone or not ready is ignored, so the conference is re-placed elsewhere.
///
/// # Errors
/// A [`PlacementError`] naming what is missing.
pub fn place(
    request: &Request,
    pods: &[Pod],
    existing: &[Assignment],
    sizing: &Sizing,
) -> Result<Assignment, PlacementError> {
    if let Some(current) = existing.iter().find(|a| a.conference == request.conference)
        && pods.iter().any(|pod| pod.ready && pod.name == current.pod)
    {
        return Ok(current.clone());
    }
    let others = || {
        existing
            .iter()
            .filter(|a| a.conference != request.conference)
    };
    let ports = sizing.ports_for(request.participants);
    let mut ready = pods.iter().filter(|pod| pod.ready).peekable();
    if ready.peek().is_none() {
        return Err(PlacementError::NoReadyPod);
    }
    let mut candidates: Vec<(&Pod, u32)> = ready
        .map(|pod| {
            let used: u32 = others()
                .filter(|a| a.pod == pod.name)
                .map(|a| a.reserved)
                .sum();
            (pod, pod.capacity.saturating_sub(used))
        })
        .filter(|(_, free)| *free >= request.participants)
        .collect();
    if candidates.is_empty() {
        return Err(PlacementError::NoCapacity {
            participants: request.participants,
        });
    }
    // Most free capacity first; the name breaks ties so the choice is deterministic.
    candidates
        .sort_by(|(a, free_a), (b, free_b)| free_b.cmp(free_a).then_with(|| a.name.cmp(&b.name)));
    for (pod, _) in candidates {
        let taken: Vec<PortRange> = others()
            .filter(|a| a.pod == pod.name)
            .map(|a| a.udp_ports)
            .collect();
        if let Some(udp_ports) = free_range(pod.udp_ports, &taken, ports) {
            return Ok(Assignment {
                conference: request.conference.clone(),
                pod: pod.name.clone(),
                endpoint: pod.endpoint.clone(),
                udp_ports,
                reserved: request.participants,
            });
        }
    }
    Err(PlacementError::NoPorts { ports })
}

/// The lowest run of `len` ports in `range` that overlaps none of `taken`.
fn free_range(range: PortRange, taken: &[PortRange], len: u32) -> Option<PortRange> {
    if range.is_empty() || len == 0 || len > range.len() {
        return None;
    }
    let mut taken: Vec<PortRange> = taken
        .iter()
        .copied()
        .filter(|t| t.overlaps(&range))
        .collect();
    taken.sort_by_key(|t| t.first);
    let mut first = u32::from(range.first);
    for t in &taken {
        if u32::from(t.first) >= first + len {
            break;
        }
        first = first.max(u32::from(t.last) + 1);
    }
    let last = first + len - 1;
    if last > u32::from(range.last) {
        return None;
    }
    // Both bounds lie within `range`, whose ends are u16.
    Some(PortRange {
        first: u16::try_from(first).ok()?,
        last: u16::try_from(last).ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, capacity: u32, first: u16, last: u16) -> Pod {
        Pod {
            name: name.into(),
            endpoint: format!("wss://{name}"),
            ready: true,
            capacity,
            udp_ports: PortRange { first, last },
        }
    }

    fn request(conference: &str, participants: u32) -> Request {
        Request {
            conference: conference.into(),
            participants,
        }
    }

    #[test]
    fn the_pod_with_most_free_capacity_wins() {
        let pods = [pod("a", 100, 10000, 10999), pod("b", 100, 20000, 20999)];
        let first = place(&request("c1", 40), &pods, &[], &Sizing::default()).expect("placed");
        assert_eq!(first.pod, "a");
        assert_eq!(
            first.udp_ports,
            PortRange {
                first: 10000,
                last: 10079
            }
        );
        let second =
            place(&request("c2", 10), &pods, &[first], &Sizing::default()).expect("placed");
        assert_eq!(second.pod, "b");
    }

    #[test]
    fn port_ranges_on_one_pod_do_not_overlap() {
        let pods = [pod("a", 1000, 10000, 10099)];
        let sizing = Sizing::default();
        let mut existing = Vec::new();
        for i in 0..5 {
            let placed =
                place(&request(&format!("c{i}"), 10), &pods, &existing, &sizing).expect("placed");
            assert!(
                existing
                    .iter()
                    .all(|a: &Assignment| !a.udp_ports.overlaps(&placed.udp_ports))
            );
            existing.push(placed);
        }
        assert_eq!(
            place(&request("c5", 10), &pods, &existing, &sizing),
            Err(PlacementError::NoPorts { ports: 20 })
        );
        // A released range in the middle is reused.
        existing.remove(2);
        let reused = place(&request("c6", 10), &pods, &existing, &sizing).expect("placed");
        assert_eq!(
            reused.udp_ports,
            PortRange {
                first: 10040,
                last: 10059
            }
        );
    }

    #[test]
    fn an_assignment_on_a_lost_pod_is_replaced_elsewhere() {
        let mut pods = vec![pod("a", 100, 10000, 10999), pod("b", 100, 20000, 20999)];
        let placed = place(&request("c1", 10), &pods, &[], &Sizing::default()).expect("placed");
        assert_eq!(placed.pod, "a");
        assert_eq!(
            place(
                &request("c1", 10),
                &pods,
                &[placed.clone()],
                &Sizing::default()
            ),
            Ok(placed.clone())
        );
        pods[0].ready = false;
        let moved =
            place(&request("c1", 10), &pods, &[placed], &Sizing::default()).expect("placed");
        assert_eq!(moved.pod, "b");
    }

    #[test]
    fn no_capacity_and_no_ready_pod_are_told_apart() {
        let mut pods = [pod("a", 100, 10000, 10999)];
        assert_eq!(
            place(&request("c1", 300), &pods, &[], &Sizing::default()),
            Err(PlacementError::NoCapacity { participants: 300 })
        );
        assert_eq!(
            PlacementError::NoCapacity { participants: 300 }.to_string(),
            "no SFU pod has room for 300 participants"
        );
        pods[0].ready = false;
        assert_eq!(
            place(&request("c1", 3), &pods, &[], &Sizing::default()),
            Err(PlacementError::NoReadyPod)
        );
    }
}

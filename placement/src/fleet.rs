//! Placement of a conference on an SFU pod: the ready pod with the most free capacity that fits
//! the conference, and a UDP port range from that pod's range that overlaps no other
//! conference in the pod's port scope.
//!
//! Capacity is the pod's own; ports belong to a *port scope*: the pods that share one network
//! namespace of addresses and ports. A pod on the cluster network is a scope by itself; pods on
//! a node's network (hostNetwork, or hostPorts in the media range) share their node's, so two
//! of them on one node never get the same port.

use std::collections::{BTreeMap, HashMap};

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
    /// Ready and not terminating: only such pods take new conferences.
    pub ready: bool,
    /// Holds the conferences already assigned to it even while not `ready`: a pod that is
    /// briefly not ready (suspect) or draining before its handoff. A `ready` pod always holds
    /// them; a pod that neither keeps nor is ready has its conferences placed anew.
    pub keeps: bool,
    /// How many participants it serves at most.
    pub capacity: u32,
    /// The UDP ports it may hand out.
    pub udp_ports: PortRange,
    /// The pods whose ports may not overlap: every pod of one scope binds on the same
    /// addresses (the node's, for pods on the node's network); a pod with a network of its own
    /// is a scope by itself.
    pub port_scope: String,
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
    /// The port scope the ports are held in (the pod's when it was placed or last kept).
    pub port_scope: String,
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
    /// More participants than any SFU pod holds even when empty: waiting cannot help.
    #[error(
        "{participants} participants are more than any SFU pod holds ({largest}); lower maxParticipants or give the pods more capacity (sfu.capacity)"
    )]
    TooLarge {
        /// The participants requested.
        participants: u32,
        /// The largest capacity of any pod.
        largest: u32,
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
            PlacementError::TooLarge { .. } => "TooLarge",
            PlacementError::NoPorts { .. } => "NoPorts",
        }
    }
}

/// Refuses a request no pod of the fleet could take even empty (ready or not: a pod that is
/// down comes back with the same capacity).
fn too_large(request: &Request, pods: &[Pod]) -> Result<(), PlacementError> {
    match pods.iter().map(|pod| pod.capacity).max() {
        Some(largest) if request.participants > largest => Err(PlacementError::TooLarge {
            participants: request.participants,
            largest,
        }),
        _ => Ok(()),
    }
}

/// Places `request` given the fleet and the assignments that exist.
///
/// An existing assignment of the same conference on a pod that is ready or `keeps` is kept as it
/// is (with the pod's port scope, when the pod moved to another scope and its ports are free
/// there); one on a pod that is gone, or neither ready nor keeping, or whose ports are taken in
/// the pod's new scope, is ignored, so the conference is re-placed (new conferences only go to
/// ready pods).
///
/// # Errors
/// A [`PlacementError`] naming what is missing.
pub fn place(
    request: &Request,
    pods: &[Pod],
    existing: &[Assignment],
    sizing: &Sizing,
) -> Result<Assignment, PlacementError> {
    let others = || {
        existing
            .iter()
            .filter(|a| a.conference != request.conference)
    };
    let in_scope = |scope: &str| -> Vec<PortRange> {
        others()
            .filter(|a| a.port_scope == scope)
            .map(|a| a.udp_ports)
            .collect()
    };
    if let Some(current) = existing.iter().find(|a| a.conference == request.conference)
        && let Some(kept) = keep(current, pods, |scope| in_scope(scope))
    {
        return Ok(kept);
    }
    too_large(request, pods)?;
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
        if let Some(udp_ports) = free_range(pod.udp_ports, &in_scope(&pod.port_scope), ports) {
            return Ok(Assignment {
                conference: request.conference.clone(),
                pod: pod.name.clone(),
                endpoint: pod.endpoint.clone(),
                udp_ports,
                port_scope: pod.port_scope.clone(),
                reserved: request.participants,
            });
        }
    }
    Err(PlacementError::NoPorts { ports })
}

/// `current` as it stays, if its pod still holds it: the pod is ready or keeps its
/// conferences, and the ports are its scope's (or, when the pod moved to another scope, free in
/// that one, given the ranges `taken_in` a scope by the other conferences).
fn keep(
    current: &Assignment,
    pods: &[Pod],
    taken_in: impl FnOnce(&str) -> Vec<PortRange>,
) -> Option<Assignment> {
    let pod = pods
        .iter()
        .find(|pod| pod.name == current.pod && (pod.ready || pod.keeps))?;
    if pod.port_scope == current.port_scope {
        return Some(current.clone());
    }
    let clash = taken_in(&pod.port_scope)
        .iter()
        .any(|taken| taken.overlaps(&current.udp_ports));
    (!clash).then(|| Assignment {
        port_scope: pod.port_scope.clone(),
        ..current.clone()
    })
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

/// The assignments that exist on a fleet, indexed by conference, by pod (capacity) and by port
/// scope (ports), so that placing one conference among thousands costs a look at one scope's
/// ranges, not at every assignment.
///
/// [`Ledger::place`] decides exactly as [`place`] does over the same assignments (a property test
/// holds them to it) and records the result, so a caller that places many conferences one after
/// another (the operator) never hands out the same ports twice in one scope.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    by_conference: HashMap<String, Assignment>,
    /// Participants reserved per pod.
    reserved: HashMap<String, u32>,
    /// first port → (last port, conference) of each range assigned in a scope.
    by_scope: HashMap<String, BTreeMap<u16, (u16, String)>>,
}

/// Why an assignment could not be recorded as it is.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum LedgerConflict {
    /// Its ports overlap another conference's in the same port scope.
    #[error("UDP ports {first}-{last} in port scope {scope} overlap conference {other}")]
    PortsTaken {
        /// The port scope (a node, or a pod with a network of its own).
        scope: String,
        /// The first port asked for.
        first: u16,
        /// The last port asked for.
        last: u16,
        /// The conference holding (some of) them.
        other: String,
    },
}

impl Ledger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many conferences hold an assignment.
    pub fn len(&self) -> usize {
        self.by_conference.len()
    }

    /// Whether no conference holds an assignment.
    pub fn is_empty(&self) -> bool {
        self.by_conference.is_empty()
    }

    /// The assignment `conference` holds, if any.
    pub fn get(&self, conference: &str) -> Option<&Assignment> {
        self.by_conference.get(conference)
    }

    /// Every assignment, in no particular order.
    pub fn assignments(&self) -> impl Iterator<Item = &Assignment> {
        self.by_conference.values()
    }

    /// The participants reserved on `pod`.
    pub fn reserved_on(&self, pod: &str) -> u32 {
        self.reserved.get(pod).copied().unwrap_or(0)
    }

    /// The conferences other than `conference` whose ranges in `scope` overlap `range`.
    fn overlapping<'a>(
        &'a self,
        scope: &str,
        range: PortRange,
        conference: &'a str,
    ) -> impl Iterator<Item = &'a str> + 'a {
        self.by_scope
            .get(scope)
            .into_iter()
            .flat_map(move |ranges| ranges.range(..=range.last))
            .filter(move |&(_, (last, other))| *last >= range.first && other != conference)
            .map(|(_, (_, other))| other.as_str())
    }

    /// The ranges taken in `scope`.
    fn taken_in(&self, scope: &str) -> Vec<PortRange> {
        self.by_scope
            .get(scope)
            .map(|ranges| {
                ranges
                    .iter()
                    .map(|(&first, (last, _))| PortRange { first, last: *last })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Records an assignment made earlier (e.g. read back from a resource's status when the
    /// operator starts), replacing the conference's previous one.
    ///
    /// # Errors
    /// [`LedgerConflict::PortsTaken`] when its ports overlap another conference's in the same
    /// port scope; the ledger is then unchanged and the caller should place the conference anew.
    pub fn insert(&mut self, assignment: Assignment) -> Result<(), LedgerConflict> {
        if let Some(other) = self
            .overlapping(
                &assignment.port_scope,
                assignment.udp_ports,
                &assignment.conference,
            )
            .next()
        {
            return Err(LedgerConflict::PortsTaken {
                scope: assignment.port_scope.clone(),
                first: assignment.udp_ports.first,
                last: assignment.udp_ports.last,
                other: other.to_owned(),
            });
        }
        self.release(&assignment.conference);
        self.record(assignment);
        Ok(())
    }

    fn record(&mut self, assignment: Assignment) {
        let reserved = self.reserved.entry(assignment.pod.clone()).or_default();
        *reserved = reserved.saturating_add(assignment.reserved);
        self.by_scope
            .entry(assignment.port_scope.clone())
            .or_default()
            .insert(
                assignment.udp_ports.first,
                (assignment.udp_ports.last, assignment.conference.clone()),
            );
        self.by_conference
            .insert(assignment.conference.clone(), assignment);
    }

    /// Forgets the assignment of `conference`, freeing its capacity and ports; returns it.
    pub fn release(&mut self, conference: &str) -> Option<Assignment> {
        let assignment = self.by_conference.remove(conference)?;
        if let Some(reserved) = self.reserved.get_mut(&assignment.pod) {
            *reserved = reserved.saturating_sub(assignment.reserved);
            if *reserved == 0 {
                self.reserved.remove(&assignment.pod);
            }
        }
        if let Some(ranges) = self.by_scope.get_mut(&assignment.port_scope) {
            ranges.remove(&assignment.udp_ports.first);
            if ranges.is_empty() {
                self.by_scope.remove(&assignment.port_scope);
            }
        }
        Some(assignment)
    }

    /// Places `request` as [`place`] would over this ledger's assignments, and records the
    /// result (replacing an assignment on a pod that is gone, or neither ready nor keeping, or
    /// whose ports are taken in the pod's new port scope).
    ///
    /// # Errors
    /// A [`PlacementError`] naming what is missing; the ledger is then unchanged.
    pub fn place(
        &mut self,
        request: &Request,
        pods: &[Pod],
        sizing: &Sizing,
    ) -> Result<Assignment, PlacementError> {
        // The conference's own assignment never counts against a candidate's capacity or
        // ports: it is set aside while deciding and put back when nothing is placed.
        let previous = self.release(&request.conference);
        if let Some(current) = &previous
            && let Some(kept) = keep(current, pods, |scope| self.taken_in(scope))
        {
            self.record(kept.clone());
            return Ok(kept);
        }
        let decided = self.decide(request, pods, sizing);
        match &decided {
            Ok(assignment) => self.record(assignment.clone()),
            Err(_) => {
                if let Some(previous) = previous {
                    self.record(previous);
                }
            }
        }
        decided
    }

    /// A new assignment for `request` over this ledger, the conference's own set aside.
    fn decide(
        &self,
        request: &Request,
        pods: &[Pod],
        sizing: &Sizing,
    ) -> Result<Assignment, PlacementError> {
        too_large(request, pods)?;
        let ports = sizing.ports_for(request.participants);
        let mut ready = pods.iter().filter(|pod| pod.ready).peekable();
        if ready.peek().is_none() {
            return Err(PlacementError::NoReadyPod);
        }
        let mut candidates: Vec<(&Pod, u32)> = ready
            .map(|pod| {
                (
                    pod,
                    pod.capacity.saturating_sub(self.reserved_on(&pod.name)),
                )
            })
            .filter(|(_, free)| *free >= request.participants)
            .collect();
        if candidates.is_empty() {
            return Err(PlacementError::NoCapacity {
                participants: request.participants,
            });
        }
        candidates.sort_by(|(a, free_a), (b, free_b)| {
            free_b.cmp(free_a).then_with(|| a.name.cmp(&b.name))
        });
        for (pod, _) in candidates {
            if let Some(udp_ports) =
                free_range(pod.udp_ports, &self.taken_in(&pod.port_scope), ports)
            {
                return Ok(Assignment {
                    conference: request.conference.clone(),
                    pod: pod.name.clone(),
                    endpoint: pod.endpoint.clone(),
                    udp_ports,
                    port_scope: pod.port_scope.clone(),
                    reserved: request.participants,
                });
            }
        }
        Err(PlacementError::NoPorts { ports })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, capacity: u32, first: u16, last: u16) -> Pod {
        Pod {
            name: name.into(),
            endpoint: format!("wss://{name}"),
            ready: true,
            keeps: true,
            capacity,
            udp_ports: PortRange { first, last },
            port_scope: name.into(),
        }
    }

    /// A pod on `node`'s network.
    fn on_node(name: &str, node: &str, capacity: u32, first: u16, last: u16) -> Pod {
        Pod {
            port_scope: format!("node/{node}"),
            ..pod(name, capacity, first, last)
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
                std::slice::from_ref(&placed),
                &Sizing::default()
            ),
            Ok(placed.clone())
        );
        pods[0].ready = false;
        pods[0].keeps = false;
        let moved =
            place(&request("c1", 10), &pods, &[placed], &Sizing::default()).expect("placed");
        assert_eq!(moved.pod, "b");
    }

    #[test]
    fn a_pod_that_keeps_holds_its_conferences_but_takes_no_new_one() {
        let mut pods = vec![pod("a", 100, 10000, 10999), pod("b", 100, 20000, 20999)];
        let mut ledger = Ledger::new();
        let sizing = Sizing::default();
        let held = ledger
            .place(&request("c1", 10), &pods, &sizing)
            .expect("placed");
        assert_eq!(held.pod, "a");
        // Suspect or draining: not ready, but its conference stays where it is.
        pods[0].ready = false;
        assert_eq!(
            place(
                &request("c1", 10),
                &pods,
                std::slice::from_ref(&held),
                &sizing
            ),
            Ok(held.clone())
        );
        assert_eq!(
            ledger.place(&request("c1", 10), &pods, &sizing),
            Ok(held.clone())
        );
        // A new conference goes to the ready pod only.
        let other = ledger
            .place(&request("c2", 10), &pods, &sizing)
            .expect("placed");
        assert_eq!(other.pod, "b");
        // Lost (grace over, or the drain's handoff came): the conference moves.
        pods[0].keeps = false;
        let moved = ledger
            .place(&request("c1", 10), &pods, &sizing)
            .expect("placed");
        assert_eq!(moved.pod, "b");
        assert_eq!(ledger.reserved_on("a"), 0);
    }

    #[test]
    fn too_large_no_capacity_and_no_ready_pod_are_told_apart() {
        let mut pods = [pod("a", 100, 10000, 10999)];
        // Waiting cannot help a meeting larger than any pod, ready or not.
        assert_eq!(
            place(&request("c1", 300), &pods, &[], &Sizing::default()),
            Err(PlacementError::TooLarge {
                participants: 300,
                largest: 100
            })
        );
        let err =
            place(&request("c1", 300), &pods, &[], &Sizing::default()).expect_err("too large");
        assert_eq!(err.reason(), "TooLarge");
        assert!(err.to_string().contains("sfu.capacity"), "{err}");
        // A pod that is full now has room later.
        let existing = [place(&request("c0", 80), &pods, &[], &Sizing::default()).expect("placed")];
        assert_eq!(
            place(&request("c1", 30), &pods, &existing, &Sizing::default()),
            Err(PlacementError::NoCapacity { participants: 30 })
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

    #[test]
    fn the_ledger_refuses_overlapping_ports_read_back_from_status() {
        let mut ledger = Ledger::new();
        let a = Assignment {
            conference: "c1".into(),
            pod: "a".into(),
            endpoint: "wss://a".into(),
            udp_ports: PortRange {
                first: 10000,
                last: 10019,
            },
            port_scope: "a".into(),
            reserved: 10,
        };
        ledger.insert(a.clone()).expect("free");
        let clash = Assignment {
            conference: "c2".into(),
            udp_ports: PortRange {
                first: 10010,
                last: 10029,
            },
            ..a.clone()
        };
        assert!(matches!(
            ledger.insert(clash),
            Err(LedgerConflict::PortsTaken { other, .. }) if other == "c1"
        ));
        // The same conference may be recorded again over its own ports.
        ledger.insert(a.clone()).expect("its own ports");
        assert_eq!(ledger.len(), 1);
        assert_eq!(ledger.reserved_on("a"), 10);
        assert_eq!(ledger.release("c1"), Some(a));
        assert!(ledger.is_empty());
        assert_eq!(ledger.reserved_on("a"), 0);
    }

    #[test]
    fn two_pods_on_one_node_never_get_overlapping_ports() {
        // Both pods bind on the node's addresses and advertise the same range.
        let pods = [
            on_node("a", "n1", 100, 40000, 40099),
            on_node("b", "n1", 100, 40000, 40099),
        ];
        let sizing = Sizing::default();
        let mut existing: Vec<Assignment> = Vec::new();
        let mut ledger = Ledger::new();
        for i in 0..5 {
            let request = request(&format!("c{i}"), 10);
            let placed = place(&request, &pods, &existing, &sizing).expect("placed");
            assert_eq!(ledger.place(&request, &pods, &sizing), Ok(placed.clone()));
            assert_eq!(placed.port_scope, "node/n1");
            for other in &existing {
                assert!(
                    !other.udp_ports.overlaps(&placed.udp_ports),
                    "{} on {} and {} on {} share ports",
                    other.conference,
                    other.pod,
                    placed.conference,
                    placed.pod
                );
            }
            existing.push(placed);
        }
        // Both pods were used (capacity is per pod), and the node's 100 ports are all taken.
        assert!(existing.iter().any(|a| a.pod == "a") && existing.iter().any(|a| a.pod == "b"));
        assert_eq!(
            place(&request("c5", 10), &pods, &existing, &sizing),
            Err(PlacementError::NoPorts { ports: 20 })
        );
        assert_eq!(
            ledger.place(&request("c5", 10), &pods, &sizing),
            Err(PlacementError::NoPorts { ports: 20 })
        );
    }

    #[test]
    fn pods_on_two_nodes_may_use_the_same_ports() {
        let pods = [
            on_node("a", "n1", 100, 40000, 40099),
            on_node("b", "n2", 100, 40000, 40099),
        ];
        let sizing = Sizing::default();
        let mut ledger = Ledger::new();
        let first = ledger
            .place(&request("c1", 10), &pods, &sizing)
            .expect("placed");
        let second = ledger
            .place(&request("c2", 10), &pods, &sizing)
            .expect("placed");
        assert_ne!(first.pod, second.pod);
        assert_eq!(first.udp_ports, second.udp_ports);
        assert_ne!(first.port_scope, second.port_scope);
    }

    #[test]
    fn the_ledger_refuses_overlapping_ports_only_within_a_scope() {
        let mut ledger = Ledger::new();
        let a = Assignment {
            conference: "c1".into(),
            pod: "a".into(),
            endpoint: "wss://a".into(),
            udp_ports: PortRange {
                first: 40000,
                last: 40019,
            },
            port_scope: "node/n1".into(),
            reserved: 10,
        };
        ledger.insert(a.clone()).expect("free");
        // Another pod on the same node: refused.
        let same_node = Assignment {
            conference: "c2".into(),
            pod: "b".into(),
            ..a.clone()
        };
        assert_eq!(
            ledger.insert(same_node.clone()),
            Err(LedgerConflict::PortsTaken {
                scope: "node/n1".into(),
                first: 40000,
                last: 40019,
                other: "c1".into()
            })
        );
        // The same ports on another node: recorded.
        ledger
            .insert(Assignment {
                port_scope: "node/n2".into(),
                ..same_node
            })
            .expect("another node");
        assert_eq!(ledger.len(), 2);
        assert_eq!(ledger.reserved_on("a"), 10);
        assert_eq!(ledger.reserved_on("b"), 10);
    }

    #[test]
    fn a_pod_that_moved_to_another_node_keeps_its_ports_only_when_free_there() {
        let sizing = Sizing::default();
        let mut pods = vec![
            on_node("a", "n1", 100, 40000, 40099),
            on_node("b", "n2", 100, 40000, 40099),
        ];
        let mut ledger = Ledger::new();
        let c1 = ledger
            .place(&request("c1", 10), &pods, &sizing)
            .expect("placed");
        let c2 = ledger
            .place(&request("c2", 10), &pods, &sizing)
            .expect("placed");
        assert_eq!((c1.pod.as_str(), c2.pod.as_str()), ("a", "b"));
        // Pod a comes back on n3, where nothing runs: it keeps c1, now in n3's scope.
        pods[0].port_scope = "node/n3".into();
        let kept = ledger
            .place(&request("c1", 10), &pods, &sizing)
            .expect("kept");
        assert_eq!(kept.udp_ports, c1.udp_ports);
        assert_eq!(kept.port_scope, "node/n3");
        let existing = vec![c1.clone(), c2.clone()];
        assert_eq!(
            place(&request("c1", 10), &pods, &existing, &sizing),
            Ok(kept.clone())
        );
        // Pod a comes back on n2, where c2 holds the same ports: c1 gets other ports.
        pods[0].port_scope = "node/n2".into();
        let moved = ledger
            .place(&request("c1", 10), &pods, &sizing)
            .expect("re-placed");
        assert_eq!(moved.port_scope, "node/n2");
        assert!(!moved.udp_ports.overlaps(&c2.udp_ports), "{moved:?}");
        assert_eq!(
            place(&request("c1", 10), &pods, &[kept, c2], &sizing),
            Ok(moved)
        );
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        /// One step of a fleet's life.
        #[derive(Debug, Clone)]
        enum Op {
            Place {
                conference: u8,
                participants: u32,
            },
            Release {
                conference: u8,
            },
            /// The pod becomes ready, suspect/draining (keeps, takes nothing new) or lost.
            Turn {
                pod: usize,
                state: u8,
            },
            /// The pod comes back on another node (or with a network of its own).
            Move {
                pod: usize,
                node: Option<u8>,
            },
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                6 => (0u8..40, 1u32..60).prop_map(|(conference, participants)| Op::Place { conference, participants }),
                2 => (0u8..40).prop_map(|conference| Op::Release { conference }),
                1 => (0usize..4, 0u8..3).prop_map(|(pod, state)| Op::Turn { pod, state }),
                1 => (0usize..4, proptest::option::of(0u8..2)).prop_map(|(pod, node)| Op::Move { pod, node }),
            ]
        }

        fn scope_of(i: usize, node: Option<u8>) -> String {
            match node {
                Some(node) => format!("node/n{node}"),
                None => format!("sfu-{i}"),
            }
        }

        /// Pods with their capacity and, when on a node's network, their node. Each pod's range
        /// holds exactly its capacity's worth of ports; pods with a network of their own get
        /// ranges apart, pods on nodes overlapping ones (they all start at the same port).
        fn fleet(capacities: &[u32], nodes: &[Option<u8>], ports_per_participant: u16) -> Vec<Pod> {
            capacities
                .iter()
                .enumerate()
                .map(|(i, &capacity)| {
                    let node = nodes.get(i).copied().flatten();
                    let first = if node.is_some() {
                        40_000
                    } else {
                        10_000 + 5_000 * i as u16
                    };
                    let len = capacity as u16 * ports_per_participant;
                    Pod {
                        name: format!("sfu-{i}"),
                        endpoint: format!("wss://sfu-{i}"),
                        ready: true,
                        keeps: true,
                        capacity,
                        udp_ports: PortRange {
                            first,
                            last: first + len - 1,
                        },
                        port_scope: scope_of(i, node),
                    }
                })
                .collect()
        }

        /// Capacity per live pod, ranges within the pod's, and no two assignments of one port
        /// scope sharing a port (`all`: lingering ones too, they still hold their ports).
        fn check_invariants(
            pods: &[Pod],
            live: &[&Assignment],
            all: &[&Assignment],
        ) -> Result<(), TestCaseError> {
            for pod in pods {
                let on_pod: Vec<&&Assignment> = live.iter().filter(|a| a.pod == pod.name).collect();
                let reserved: u32 = on_pod.iter().map(|a| a.reserved).sum();
                prop_assert!(reserved <= pod.capacity, "{} over capacity", pod.name);
                for a in &on_pod {
                    prop_assert!(a.udp_ports.first >= pod.udp_ports.first);
                    prop_assert!(a.udp_ports.last <= pod.udp_ports.last);
                }
            }
            for (i, a) in all.iter().enumerate() {
                for b in &all[i + 1..] {
                    prop_assert!(
                        a.port_scope != b.port_scope || !a.udp_ports.overlaps(&b.udp_ports),
                        "{} and {} overlap in {}",
                        a.conference,
                        b.conference,
                        a.port_scope
                    );
                }
            }
            Ok(())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// Port ranges never overlap within a port scope and capacity is never exceeded,
            /// whatever order conferences come, go, pods fail and move between nodes in; the
            /// ledger decides as `place` does.
            #[test]
            fn ports_never_overlap_and_capacity_is_never_exceeded(
                capacities in proptest::collection::vec(20u32..200, 1..4),
                nodes in proptest::collection::vec(proptest::option::of(0u8..2), 4),
                ports_per_participant in 1u16..4,
                ops in proptest::collection::vec(op(), 1..120),
            ) {
                let sizing = Sizing { ports_per_participant };
                let mut pods = fleet(&capacities, &nodes, ports_per_participant);
                let mut existing: Vec<Assignment> = Vec::new();
                let mut ledger = Ledger::new();
                for op in ops {
                    match op {
                        Op::Place { conference, participants } => {
                            let request = Request { conference: format!("c{conference}"), participants };
                            let held = existing
                                .iter()
                                .find(|a| a.conference == request.conference)
                                .filter(|a| pods.iter().any(|p| {
                                    (p.ready || p.keeps) && p.name == a.pod && p.port_scope == a.port_scope
                                }))
                                .cloned();
                            let by_function = place(&request, &pods, &existing, &sizing);
                            let by_ledger = ledger.place(&request, &pods, &sizing);
                            prop_assert_eq!(&by_function, &by_ledger);
                            // A pod that keeps its conferences (on the same node) keeps them as
                            // they are.
                            if let Some(held) = held {
                                prop_assert_eq!(by_function.as_ref(), Ok(&held));
                            }
                            if let Ok(placed) = by_function {
                                existing.retain(|a| a.conference != placed.conference);
                                existing.push(placed);
                            }
                        }
                        Op::Release { conference } => {
                            let key = format!("c{conference}");
                            existing.retain(|a| a.conference != key);
                            ledger.release(&key);
                        }
                        Op::Turn { pod, state } => {
                            if let Some(pod) = pods.get_mut(pod) {
                                (pod.ready, pod.keeps) = match state {
                                    0 => (true, true),
                                    1 => (false, true),
                                    _ => (false, false),
                                };
                            }
                        }
                        Op::Move { pod: i, node } => {
                            if let Some(pod) = pods.get_mut(i) {
                                pod.port_scope = scope_of(i, node);
                            }
                        }
                    }
                    // Assignments on lost pods linger until re-placed; those on pods that are
                    // ready or keep theirs must hold the invariants.
                    let all: Vec<&Assignment> = ledger.assignments().collect();
                    let live: Vec<&Assignment> = all
                        .iter()
                        .copied()
                        .filter(|a| pods.iter().any(|p| (p.ready || p.keeps) && p.name == a.pod))
                        .collect();
                    check_invariants(&pods, &live, &all)?;
                    prop_assert_eq!(ledger.len(), existing.len());
                }
            }

            /// While conferences only arrive, each is placed exactly when some ready pod has room
            /// for it: capacity is never lost to port fragmentation.
            #[test]
            fn every_conference_is_placed_while_capacity_exists(
                capacities in proptest::collection::vec(20u32..200, 1..4),
                ports_per_participant in 1u16..4,
                sizes in proptest::collection::vec(1u32..80, 1..60),
            ) {
                let sizing = Sizing { ports_per_participant };
                let pods = fleet(&capacities, &[], ports_per_participant);
                let mut ledger = Ledger::new();
                for (i, participants) in sizes.into_iter().enumerate() {
                    let room = pods
                        .iter()
                        .any(|pod| pod.capacity - ledger.reserved_on(&pod.name) >= participants);
                    let request = Request { conference: format!("c{i}"), participants };
                    match ledger.place(&request, &pods, &sizing) {
                        Ok(_) => prop_assert!(room, "placed without room"),
                        Err(err) => {
                            prop_assert!(!room, "refused with room: {err}");
                            let largest = capacities.iter().copied().max().unwrap_or(0);
                            if participants > largest {
                                prop_assert_eq!(err, PlacementError::TooLarge { participants, largest });
                            } else {
                                prop_assert_eq!(err, PlacementError::NoCapacity { participants });
                            }
                        }
                    }
                }
                let all: Vec<&Assignment> = ledger.assignments().collect();
                check_invariants(&pods, &all, &all)?;
            }
        }
    }
}

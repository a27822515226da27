//! The SFU fleet as placement sees it, read from the pods themselves.
//!
//! An SFU pod (label `app.kubernetes.io/component=sfu`) advertises what placement needs in
//! annotations, usually set in the StatefulSet's pod template (see `docs/operator.md`):
//! - `conclave.dev/capacity`: participants it serves at most, e.g. `500`;
//! - `conclave.dev/udp-ports`: its UDP port range, inclusive, e.g. `40000-40999`, or one range
//!   per pod, `sfu-0=30000-30099,sfu-1=30100-30199` (a pod takes its own entry; the chart
//!   writes this form when every pod needs ports of its own, as NodePort Services do);
//! - `conclave.dev/endpoint`: the signaling websocket URL clients open; `{pod}`, `{namespace}`
//!   and `{podIP}` are replaced, so one template serves every replica
//!   (`wss://{pod}.sfu.conclave.example.com/rtc`).
//!
//! A pod takes conferences when it is Ready and not terminating; a pod whose annotations are
//! missing or malformed takes none and is counted as misconfigured.
//!
//! Ports are handed out per *port scope* (see [`port_scope`]): a pod on its node's network
//! (`hostNetwork`, or `hostPort`s in its media range) shares its node's ports with every other
//! such pod there, so its scope is the node; any other pod has ports of its own.

use crds::annotations;
use k8s_openapi::api::core::v1::Pod as KubePod;
use placement::{Pod, PortRange};

/// Why a pod cannot take conferences whatever its readiness.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Misconfigured {
    /// An annotation is absent.
    #[error("annotation {0} is missing")]
    Missing(&'static str),
    /// An annotation does not parse.
    #[error("annotation {name} is malformed: {value:?}")]
    Malformed {
        /// The annotation.
        name: &'static str,
        /// Its value.
        value: String,
    },
    /// The pod has no name.
    #[error("pod has no name")]
    Unnamed,
}

/// The pod as placement sees it, or why it is unusable.
///
/// # Errors
/// [`Misconfigured`] when the pod does not advertise capacity, ports and endpoint.
pub fn sfu_pod(pod: &KubePod) -> Result<Pod, Misconfigured> {
    let name = pod.metadata.name.clone().ok_or(Misconfigured::Unnamed)?;
    let annotation = |key: &'static str| {
        pod.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(key))
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
            .ok_or(Misconfigured::Missing(key))
    };
    let malformed = |name: &'static str, value: &str| Misconfigured::Malformed {
        name,
        value: value.to_owned(),
    };
    let capacity_text = annotation(annotations::CAPACITY)?;
    let capacity: u32 = capacity_text
        .parse()
        .map_err(|_| malformed(annotations::CAPACITY, capacity_text))?;
    let ports_text = annotation(annotations::UDP_PORTS)?;
    let udp_ports = port_range_of(&name, ports_text)
        .ok_or_else(|| malformed(annotations::UDP_PORTS, ports_text))?;
    let template = annotation(annotations::ENDPOINT)?;
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let pod_ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.as_deref())
        .unwrap_or_default();
    let endpoint = template
        .replace("{pod}", &name)
        .replace("{namespace}", namespace)
        .replace("{podIP}", pod_ip);
    let scope = port_scope(pod, &name, udp_ports);
    // Not addressable yet (no pod IP for the endpoint, or on the node's network without a
    // node): treat like a pod that is not ready.
    let no_address = template.contains("{podIP}") && pod_ip.is_empty();
    let no_node = matches!(scope, Scope::NodeUnknown);
    let placeable = !no_address && !no_node;
    Ok(Pod {
        ready: placeable && is_ready(pod),
        port_scope: scope.name(&name),
        name,
        endpoint,
        capacity,
        udp_ports,
    })
}

/// Where a pod's media ports live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// On the node's network: shared with every such pod on the node.
    Node(String),
    /// On the node's network, but not scheduled yet (no `spec.nodeName`).
    NodeUnknown,
    /// On the pod's own network.
    Pod,
}

impl Scope {
    /// The ledger's name of the scope: `node/<node>` or `pod/<pod>`.
    pub fn name(&self, pod: &str) -> String {
        match self {
            Scope::Node(node) => format!("node/{node}"),
            Scope::NodeUnknown | Scope::Pod => format!("pod/{pod}"),
        }
    }
}

/// The port scope of `pod` (named `name`, media ports `udp_ports`): its node when it uses the
/// node's network (`hostNetwork`) or maps any of its media ports on the node (a UDP `hostPort`
/// in `udp_ports`), else the pod itself.
pub fn port_scope(pod: &KubePod, name: &str, udp_ports: PortRange) -> Scope {
    let Some(spec) = pod.spec.as_ref() else {
        return Scope::Pod;
    };
    let host_network = spec.host_network.unwrap_or(false);
    let host_ports = spec
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .any(|port| {
            port.protocol.as_deref().unwrap_or("TCP") == "UDP"
                && port.host_port.is_some_and(|host| {
                    u16::try_from(host)
                        .is_ok_and(|host| host >= udp_ports.first && host <= udp_ports.last)
                })
        });
    if !(host_network || host_ports) {
        return Scope::Pod;
    }
    match spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        Some(node) => Scope::Node(node.to_owned()),
        None => {
            tracing::debug!(pod = %name, "on the node's network but not scheduled yet");
            Scope::NodeUnknown
        }
    }
}

/// The range `text` gives pod `name`: `first-last` for every pod, or the pod's own entry of
/// `pod=first-last,pod=first-last`.
pub fn port_range_of(name: &str, text: &str) -> Option<PortRange> {
    if !text.contains('=') {
        return parse_port_range(text);
    }
    text.split(',').find_map(|entry| {
        let (pod, range) = entry.split_once('=')?;
        (pod.trim() == name).then(|| parse_port_range(range))?
    })
}

/// Ready and not terminating.
pub fn is_ready(pod: &KubePod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|conditions| {
                conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            })
}

/// `first-last`, inclusive, `first <= last`.
pub fn parse_port_range(text: &str) -> Option<PortRange> {
    let (first, last) = text.split_once('-')?;
    let range = PortRange {
        first: first.trim().parse().ok()?,
        last: last.trim().parse().ok()?,
    };
    (range.first > 0 && !range.is_empty()).then_some(range)
}

/// Counts of the fleet by state, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FleetCounts {
    /// Pods taking conferences.
    pub ready: i64,
    /// Pods that are not ready or terminating.
    pub not_ready: i64,
    /// Pods whose annotations are missing or malformed.
    pub misconfigured: i64,
}

/// The usable pods of `pods` and the counts by state.
pub fn survey<'a>(pods: impl IntoIterator<Item = &'a KubePod>) -> (Vec<Pod>, FleetCounts) {
    let mut counts = FleetCounts::default();
    let mut usable = Vec::new();
    for pod in pods {
        match sfu_pod(pod) {
            Ok(pod) => {
                if pod.ready {
                    counts.ready += 1;
                } else {
                    counts.not_ready += 1;
                }
                usable.push(pod);
            }
            Err(_) => counts.misconfigured += 1,
        }
    }
    usable.sort_by(|a, b| a.name.cmp(&b.name));
    (usable, counts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use std::collections::BTreeMap;

    fn pod(annotations: &[(&str, &str)], ready: bool) -> KubePod {
        let mut pod = KubePod::default();
        pod.metadata.name = Some("sfu-0".into());
        pod.metadata.namespace = Some("conclave".into());
        pod.metadata.annotations = Some(
            annotations
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>(),
        );
        pod.status = Some(PodStatus {
            pod_ip: Some("10.0.0.7".into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                ..PodCondition::default()
            }]),
            ..PodStatus::default()
        });
        pod
    }

    const GOOD: [(&str, &str); 3] = [
        (annotations::CAPACITY, "500"),
        (annotations::UDP_PORTS, "40000-40999"),
        (
            annotations::ENDPOINT,
            "wss://{pod}.sfu.{namespace}.example.com/rtc",
        ),
    ];

    #[test]
    fn a_pod_advertises_capacity_ports_and_endpoint_in_annotations() {
        let parsed = sfu_pod(&pod(&GOOD, true)).expect("usable");
        assert_eq!(parsed.capacity, 500);
        assert_eq!(
            parsed.udp_ports,
            PortRange {
                first: 40000,
                last: 40999
            }
        );
        assert_eq!(parsed.endpoint, "wss://sfu-0.sfu.conclave.example.com/rtc");
        assert!(parsed.ready);
    }

    #[test]
    fn a_pod_that_is_not_ready_or_terminating_takes_no_conference() {
        assert!(!sfu_pod(&pod(&GOOD, false)).expect("usable").ready);
        let mut terminating = pod(&GOOD, true);
        terminating.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ));
        assert!(!sfu_pod(&terminating).expect("usable").ready);
    }

    #[test]
    fn missing_or_malformed_annotations_make_a_pod_misconfigured() {
        assert_eq!(
            sfu_pod(&pod(&GOOD[..2], true)),
            Err(Misconfigured::Missing(annotations::ENDPOINT))
        );
        let bad = [GOOD[0], (annotations::UDP_PORTS, "41000-40000"), GOOD[2]];
        assert!(matches!(
            sfu_pod(&pod(&bad, true)),
            Err(Misconfigured::Malformed { .. })
        ));
        let (usable, counts) = survey([&pod(&GOOD, true), &pod(&bad, true)]);
        assert_eq!(usable.len(), 1);
        assert_eq!(
            counts,
            FleetCounts {
                ready: 1,
                not_ready: 0,
                misconfigured: 1
            }
        );
    }

    fn with_spec(mut pod: KubePod, spec: serde_json::Value) -> KubePod {
        pod.spec = Some(serde_json::from_value(spec).expect("pod spec"));
        pod
    }

    #[test]
    fn a_pod_on_the_nodes_network_shares_its_nodes_port_scope() {
        let host_network = with_spec(
            pod(&GOOD, true),
            serde_json::json!({
                "hostNetwork": true,
                "nodeName": "node-a",
                "containers": [{ "name": "sfu" }],
            }),
        );
        let parsed = sfu_pod(&host_network).expect("usable");
        assert_eq!(parsed.port_scope, "node/node-a");
        assert!(parsed.ready);

        // hostPorts inside the media range put the pod on the node's ports too.
        let host_ports = with_spec(
            pod(&GOOD, true),
            serde_json::json!({
                "nodeName": "node-b",
                "containers": [{ "name": "sfu", "ports": [
                    { "containerPort": 7880, "hostPort": 7880, "protocol": "TCP" },
                    { "containerPort": 40000, "hostPort": 40000, "protocol": "UDP" },
                ] }],
            }),
        );
        assert_eq!(
            sfu_pod(&host_ports).expect("usable").port_scope,
            "node/node-b"
        );

        // A TCP hostPort (signaling) or a UDP one outside the range does not.
        let other_ports = with_spec(
            pod(&GOOD, true),
            serde_json::json!({
                "nodeName": "node-b",
                "containers": [{ "name": "sfu", "ports": [
                    { "containerPort": 7880, "hostPort": 7880, "protocol": "TCP" },
                    { "containerPort": 3478, "hostPort": 3478, "protocol": "UDP" },
                ] }],
            }),
        );
        assert_eq!(
            sfu_pod(&other_ports).expect("usable").port_scope,
            "pod/sfu-0"
        );
        // Nor does a pod on the cluster network.
        assert_eq!(
            sfu_pod(&pod(&GOOD, true)).expect("usable").port_scope,
            "pod/sfu-0"
        );
    }

    #[test]
    fn a_pod_on_the_nodes_network_without_a_node_yet_takes_no_conference() {
        let unscheduled = with_spec(
            pod(&GOOD, true),
            serde_json::json!({ "hostNetwork": true, "containers": [{ "name": "sfu" }] }),
        );
        let parsed = sfu_pod(&unscheduled).expect("usable");
        assert!(!parsed.ready);
        assert_eq!(
            port_scope(&unscheduled, "sfu-0", parsed.udp_ports),
            Scope::NodeUnknown
        );
    }

    #[test]
    fn each_pod_takes_its_own_entry_of_a_per_pod_port_annotation() {
        let per_pod = "sfu-0=30000-30099, sfu-1=30100-30199";
        assert_eq!(
            port_range_of("sfu-1", per_pod),
            Some(PortRange {
                first: 30100,
                last: 30199
            })
        );
        assert_eq!(port_range_of("sfu-2", per_pod), None);
        let annotations = [GOOD[0], (annotations::UDP_PORTS, per_pod), GOOD[2]];
        assert_eq!(
            sfu_pod(&pod(&annotations, true)).expect("usable").udp_ports,
            PortRange {
                first: 30000,
                last: 30099
            }
        );
        let elsewhere = [
            GOOD[0],
            (annotations::UDP_PORTS, "sfu-7=30000-30099"),
            GOOD[2],
        ];
        assert!(matches!(
            sfu_pod(&pod(&elsewhere, true)),
            Err(Misconfigured::Malformed { .. })
        ));
    }
}

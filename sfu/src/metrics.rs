//! Prometheus metrics, `conclave_sfu_…`. Labels are few and fixed (kind, direction, state,
//! code): never one per conference, participant or address.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

use crate::error::{Error, Result};

/// Every metric of the SFU.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// Admitted participants.
    pub participants: IntGauge,
    /// Participants in waiting rooms.
    pub waiting: IntGauge,
    /// Participants this SFU serves at most (`--sfu-max-participants`), so that an alert can
    /// compare load with capacity per pod.
    pub capacity: IntGauge,
    /// Rooms held in memory.
    pub rooms: IntGauge,
    /// Published tracks by kind.
    pub tracks: IntGaugeVec,
    /// RTP packets by kind and direction (`in` from publishers, `out` to subscribers).
    pub packets: IntCounterVec,
    /// RTP payload bytes by kind and direction.
    pub bytes: IntCounterVec,
    /// Packets not handed to a subscriber's connection because its queue was full (the
    /// subscriber's connection, or the pod, does not keep up), by kind.
    pub packets_dropped: IntCounterVec,
    /// NACKs received from subscribers.
    pub nacks: IntCounter,
    /// Datagrams the SFU protected and sent itself on subscriber connections' direct paths,
    /// by what they carried: `media`, `retransmission` (NACKed), `sender_report`.
    pub direct_datagrams: IntCounterVec,
    /// System calls (`sendmsg`, `sendmmsg`) the direct paths sent those datagrams with.
    pub direct_send_calls: IntCounter,
    /// Keyframe requests by direction (`received` from subscribers, `sent` to publishers).
    pub keyframe_requests: IntCounterVec,
    /// Packets missing in publishers' sequence numbers (before retransmission).
    pub packets_lost: IntCounter,
    /// Loss fraction that subscribers report in receiver reports.
    pub receiver_loss: Histogram,
    /// Time from receiving a packet to handing it to the last subscriber's connection.
    pub forwarding_latency: HistogramVec,
    /// Time from a publisher's packet reaching the pod to each copy's send on the direct path.
    pub copy_delay: HistogramVec,
    /// Time a copy waited between the forwarder and its subscriber connection's sending.
    pub subscriber_queue: Histogram,
    /// Time a publisher's packet took from the pod's kernel to its forwarder.
    pub receive_wait: HistogramVec,
    /// NACKs a lagging subscriber connection did not answer, or that asked for packets sent
    /// more than a second before (those packets are not retransmitted).
    pub nacks_ignored: IntCounter,
    /// Peer-connection state changes by state.
    pub peer_states: IntCounterVec,
    /// Signaling errors sent by code.
    pub signaling_errors: IntCounterVec,
    /// Peer connections that failed, by cause (see [`FailureCause`]).
    pub peer_failures: IntCounterVec,
    /// Websockets that have not sent a valid `join` yet.
    pub pending_connections: IntGauge,
    /// Websockets refused before `join` by reason (`pendingTotal`, `pendingPerAddress`).
    pub connections_refused: IntCounterVec,
    /// Joined sessions that ended, by close reason (`tooSlow`, `unresponsive`, `left`, `moved`
    /// when their conference went to another pod or this pod drained, …).
    pub sessions_closed: IntCounterVec,
    /// Media ports that could not be bound although this process did not hold them, by when
    /// (`start`: the check of the range at start, `room`: the check of a conference's range
    /// when its room opens, `lease`: a peer connection looking for a port).
    pub udp_bind_failures: IntCounterVec,
    /// Media ports known to be unusable now (held by another process on the node).
    pub udp_ports_unusable: IntGauge,
    /// Connections to the ICE-TCP port by what became of them (`relayed` to their peer
    /// connection, `refused`: no STUN request in time, or for no peer connection of this pod).
    pub ice_tcp_connections: IntCounterVec,
    /// Datagrams the shared UDP port (single-port mode) dropped, by reason (`unknown`: from an
    /// address no connection checked from, `full`: the connection's inbox was full).
    pub udp_mux_dropped: IntCounterVec,
    /// What the kernel granted the media UDP sockets, by direction (`receive`, `send`).
    pub udp_socket_buffer: IntGaugeVec,
    /// Datagrams the kernel dropped at the media UDP sockets (their receive buffer was full).
    pub udp_kernel_drops: IntCounter,
    /// 1 while this SFU drains after SIGTERM (readiness off, meetings going on), else 0.
    pub draining: IntGauge,
    /// Conferences the conference service places on this pod, as last heard.
    pub held_conferences: IntGauge,
    /// Recordings running on this pod.
    pub recordings_active: IntGauge,
    /// Recording segments stored, by kind (`audio`, `video`, `screen`).
    pub recording_segments: IntCounterVec,
    /// Bytes of recording segments stored, by kind.
    pub recording_bytes: IntCounterVec,
    /// Packets the recorder dropped, by reason (`queueFull`: a track's writer fell behind and
    /// forwarding was not held up for it).
    pub recording_packets_dropped: IntCounterVec,
    /// Recording files that could not be stored.
    pub recording_store_failures: IntCounter,
}

/// The `phase` labels of `conclave_sfu_udp_bind_failures_total`.
pub const BIND_PHASES: [&str; 3] = ["start", "room", "lease"];

/// Why a participant's media could not flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureCause {
    /// ICE found no working candidate pair (UDP blocked, wrong announced address).
    Ice,
    /// ICE connected but the DTLS handshake failed.
    Dtls,
    /// The browser's offer or answer could not be applied.
    Sdp,
}

impl FailureCause {
    /// Every cause, for pre-registering the metric's labels.
    pub const ALL: [FailureCause; 3] = [FailureCause::Ice, FailureCause::Dtls, FailureCause::Sdp];

    /// The `cause` label.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureCause::Ice => "ice",
            FailureCause::Dtls => "dtls",
            FailureCause::Sdp => "sdp",
        }
    }
}

impl Metrics {
    /// Creates the metrics and registers them in `registry`.
    ///
    /// # Errors
    /// [`Error::Metrics`] when a metric of the same name is already registered.
    pub fn new(registry: &Registry) -> Result<Self> {
        let metrics = Self {
            participants: IntGauge::new(
                "conclave_sfu_participants",
                "Participants admitted to rooms on this SFU.",
            )
            .map_err(Error::Metrics)?,
            waiting: IntGauge::new(
                "conclave_sfu_waiting_participants",
                "Participants waiting for the owner.",
            )
            .map_err(Error::Metrics)?,
            capacity: IntGauge::new(
                "conclave_sfu_capacity_participants",
                "Participants this SFU serves at most (--sfu-max-participants).",
            )
            .map_err(Error::Metrics)?,
            rooms: IntGauge::new("conclave_sfu_rooms", "Rooms held by this SFU.")
                .map_err(Error::Metrics)?,
            tracks: IntGaugeVec::new(
                Opts::new("conclave_sfu_tracks", "Published tracks."),
                &["kind"],
            )
            .map_err(Error::Metrics)?,
            packets: IntCounterVec::new(
                Opts::new("conclave_sfu_rtp_packets_total", "RTP packets forwarded."),
                &["kind", "direction"],
            )
            .map_err(Error::Metrics)?,
            bytes: IntCounterVec::new(
                Opts::new(
                    "conclave_sfu_rtp_payload_bytes_total",
                    "RTP payload bytes forwarded.",
                ),
                &["kind", "direction"],
            )
            .map_err(Error::Metrics)?,
            packets_dropped: IntCounterVec::new(
                Opts::new(
                    "conclave_sfu_rtp_packets_dropped_total",
                    "RTP packets not handed to a subscriber's connection, by kind and reason: full (its queue was full) or late (its oldest waiting packet waited too long).",
                ),
                &["kind", "reason"],
            )
            .map_err(Error::Metrics)?,
            nacks: IntCounter::new(
                "conclave_sfu_nacks_received_total",
                "NACKs received from subscribers.",
            )
            .map_err(Error::Metrics)?,
            direct_datagrams: IntCounterVec::new(
                Opts::new(
                    "conclave_sfu_direct_datagrams_total",
                    "Datagrams the SFU protected and sent itself on subscriber connections' direct paths (docs/sfu.md, Direct media), by what they carried: media, retransmission, sender_report.",
                ),
                &["what"],
            )
            .map_err(Error::Metrics)?,
            direct_send_calls: IntCounter::new(
                "conclave_sfu_direct_send_calls_total",
                "System calls (sendmsg, sendmmsg) the direct paths sent their datagrams with: conclave_sfu_direct_datagrams_total over this is how many datagrams a call carried (docs/sfu.md, Direct media).",
            )
            .map_err(Error::Metrics)?,
            keyframe_requests: IntCounterVec::new(
                Opts::new(
                    "conclave_sfu_keyframe_requests_total",
                    "Keyframe requests (PLI/FIR).",
                ),
                &["direction"],
            )
            .map_err(Error::Metrics)?,
            packets_lost: IntCounter::new(
                "conclave_sfu_inbound_packets_lost_total",
                "Gaps in publishers' RTP sequence numbers.",
            )
            .map_err(Error::Metrics)?,
            receiver_loss: Histogram::with_opts(
                HistogramOpts::new(
                    "conclave_sfu_receiver_loss_ratio",
                    "Loss fraction reported by subscribers' receiver reports.",
                )
                .buckets(vec![0.0, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0]),
            )
            .map_err(Error::Metrics)?,
            forwarding_latency: HistogramVec::new(
                HistogramOpts::new(
                    "conclave_sfu_forwarding_latency_seconds",
                    "Time from receiving a packet to handing it to every subscriber.",
                )
                .buckets(vec![
                    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                ]),
                &["kind"],
            )
            .map_err(Error::Metrics)?,
            copy_delay: HistogramVec::new(
                HistogramOpts::new(
                    "conclave_sfu_copy_delay_seconds",
                    "Time from a publisher's packet reaching the pod (the kernel's receive timestamp) to a subscriber's copy of it leaving on the direct path (its send call returned), per copy: the pod's whole part of the media's delay.",
                )
                .buckets(vec![
                    0.0001, 0.0002, 0.0004, 0.0007, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.0075,
                    0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                ]),
                &["kind"],
            )
            .map_err(Error::Metrics)?,
            receive_wait: HistogramVec::new(
                HistogramOpts::new(
                    "conclave_sfu_receive_wait_seconds",
                    "Time a publisher's packet took from reaching the pod (the kernel's receive timestamp) to its forwarder: long on a pod that reads its sockets late.",
                )
                .buckets(vec![
                    0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 1.0,
                ]),
                &["kind"],
            )
            .map_err(Error::Metrics)?,
            subscriber_queue: Histogram::with_opts(
                HistogramOpts::new(
                    "conclave_sfu_subscriber_queue_seconds",
                    "Time a packet waited between the forwarder and its subscriber connection's sending (the connection's queue).",
                )
                .buckets(vec![
                    0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 1.0,
                ]),
            )
            .map_err(Error::Metrics)?,
            nacks_ignored: IntCounter::new(
                "conclave_sfu_nacks_ignored_total",
                "NACKs from subscribers not answered, whole or in part: their connection lagged (its oldest waiting packet waited over 100 ms), or they asked for packets sent more than 1 s before.",
            )
            .map_err(Error::Metrics)?,
            peer_states: IntCounterVec::new(
                Opts::new(
                    "conclave_sfu_peer_connection_state_changes_total",
                    "Peer-connection state changes.",
                ),
                &["state"],
            )
            .map_err(Error::Metrics)?,
            signaling_errors: IntCounterVec::new(
                Opts::new(
                    "conclave_sfu_signaling_errors_total",
                    "Errors sent on signaling websockets.",
                ),
                &["code"],
            )
            .map_err(Error::Metrics)?,
            peer_failures: IntCounterVec::new(
                Opts::new(
                    "conclave_sfu_peer_connection_failures_total",
                    "Peer connections that failed or could not be negotiated, by cause (ice, dtls, sdp).",
                ),
                &["cause"],
            )
            .map_err(Error::Metrics)?,
            pending_connections: IntGauge::new(
                "conclave_sfu_pending_connections",
                "Websockets that have not joined yet.",
            )
            .map_err(Error::Metrics)?,
            connections_refused: IntCounterVec::new(
                Opts::new(
                    "conclave_sfu_connections_refused_total",
                    "Websockets refused before join (pendingTotal, pendingPerAddress).",
                ),
                &["reason"],
            )
            .map_err(Error::Metrics)?,
            sessions_closed: IntCounterVec::new(
                Opts::new(
                    "conclave_sfu_sessions_closed_total",
                    "Joined sessions that ended, by close reason.",
                ),
                &["reason"],
            )
            .map_err(Error::Metrics)?,
            udp_bind_failures: IntCounterVec::new(
                Opts::new(
                    "conclave_sfu_udp_bind_failures_total",
                    "Media ports that could not be bound although this SFU did not hold them, by phase (start, room, lease).",
                ),
                &["phase"],
            )
            .map_err(Error::Metrics)?,
            udp_ports_unusable: IntGauge::new(
                "conclave_sfu_udp_ports_unusable",
                "Media ports of this SFU held by another process (they cannot be bound).",
            )
            .map_err(Error::Metrics)?,
            ice_tcp_connections: IntCounterVec::new(
                Opts::new(
                    "conclave_sfu_ice_tcp_connections_total",
                    "Connections to the ICE-TCP port, by result (relayed, refused).",
                ),
                &["result"],
            )
            .map_err(Error::Metrics)?,
            udp_mux_dropped: IntCounterVec::new(
                Opts::new(
                    "conclave_sfu_udp_mux_datagrams_dropped_total",
                    "Datagrams the shared UDP port (single-port mode) dropped, by reason (unknown, full).",
                ),
                &["reason"],
            )
            .map_err(Error::Metrics)?,
            udp_socket_buffer: IntGaugeVec::new(
                Opts::new(
                    "conclave_sfu_udp_socket_buffer_bytes",
                    "Kernel buffer of each media UDP socket as granted (Linux counts twice what it stores), by direction (receive, send).",
                ),
                &["direction"],
            )
            .map_err(Error::Metrics)?,
            udp_kernel_drops: IntCounter::new(
                "conclave_sfu_udp_kernel_drops_total",
                "Datagrams the kernel dropped at this SFU's media UDP sockets because their receive buffer was full (read every 5 s).",
            )
            .map_err(Error::Metrics)?,
            draining: IntGauge::new(
                "conclave_sfu_draining",
                "1 while this SFU drains after SIGTERM: not ready, meetings going on until they move.",
            )
            .map_err(Error::Metrics)?,
            held_conferences: IntGauge::new(
                "conclave_sfu_held_conferences",
                "Conferences placed on this pod, as the conference service last said.",
            )
            .map_err(Error::Metrics)?,
            recordings_active: IntGauge::new(
                "conclave_sfu_recordings_active",
                "Recordings running on this SFU.",
            )
            .map_err(Error::Metrics)?,
            recording_segments: IntCounterVec::new(
                Opts::new(
                    "conclave_sfu_recording_segments_total",
                    "Recording segments stored, by kind (audio, video, screen).",
                ),
                &["kind"],
            )
            .map_err(Error::Metrics)?,
            recording_bytes: IntCounterVec::new(
                Opts::new(
                    "conclave_sfu_recording_bytes_total",
                    "Bytes of recording segments stored, by kind (audio, video, screen).",
                ),
                &["kind"],
            )
            .map_err(Error::Metrics)?,
            recording_packets_dropped: IntCounterVec::new(
                Opts::new(
                    "conclave_sfu_recording_packets_dropped_total",
                    "Packets the recorder dropped rather than hold up forwarding, by reason (queueFull).",
                ),
                &["reason"],
            )
            .map_err(Error::Metrics)?,
            recording_store_failures: IntCounter::new(
                "conclave_sfu_recording_store_failures_total",
                "Recording files (segments, JSON) that could not be stored.",
            )
            .map_err(Error::Metrics)?,
        };
        for metric in [
            Box::new(metrics.recordings_active.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(metrics.recording_segments.clone()),
            Box::new(metrics.recording_bytes.clone()),
            Box::new(metrics.recording_packets_dropped.clone()),
            Box::new(metrics.recording_store_failures.clone()),
        ] {
            registry.register(metric).map_err(Error::Metrics)?;
        }
        for kind in ["audio", "video", "screen"] {
            metrics.recording_segments.with_label_values(&[kind]);
            metrics.recording_bytes.with_label_values(&[kind]);
        }
        metrics
            .recording_packets_dropped
            .with_label_values(&["queueFull"]);
        registry
            .register(Box::new(metrics.participants.clone()))
            .map_err(Error::Metrics)?;
        registry
            .register(Box::new(metrics.waiting.clone()))
            .map_err(Error::Metrics)?;
        registry
            .register(Box::new(metrics.capacity.clone()))
            .map_err(Error::Metrics)?;
        registry
            .register(Box::new(metrics.rooms.clone()))
            .map_err(Error::Metrics)?;
        registry
            .register(Box::new(metrics.tracks.clone()))
            .map_err(Error::Metrics)?;
        registry
            .register(Box::new(metrics.packets.clone()))
            .map_err(Error::Metrics)?;
        registry
            .register(Box::new(metrics.packets_dropped.clone()))
            .map_err(Error::Metrics)?;
        registry
            .register(Box::new(metrics.bytes.clone()))
            .map_err(Error::Metrics)?;
        registry
            .register(Box::new(metrics.nacks.clone()))
            .map_err(Error::Metrics)?;
        registry
            .register(Box::new(metrics.direct_datagrams.clone()))
            .map_err(Error::Metrics)?;
        registry
            .register(Box::new(metrics.direct_send_calls.clone()))
            .map_err(Error::Metrics)?;
        registry
            .register(Box::new(metrics.keyframe_requests.clone()))
            .map_err(Error::Metrics)?;
        registry
            .register(Box::new(metrics.packets_lost.clone()))
            .map_err(Error::Metrics)?;
        registry
            .register(Box::new(metrics.receiver_loss.clone()))
            .map_err(Error::Metrics)?;
        registry
            .register(Box::new(metrics.forwarding_latency.clone()))
            .map_err(Error::Metrics)?;
        registry
            .register(Box::new(metrics.copy_delay.clone()))
            .map_err(Error::Metrics)?;
        registry
            .register(Box::new(metrics.subscriber_queue.clone()))
            .map_err(Error::Metrics)?;
        registry
            .register(Box::new(metrics.receive_wait.clone()))
            .map_err(Error::Metrics)?;
        registry
            .register(Box::new(metrics.nacks_ignored.clone()))
            .map_err(Error::Metrics)?;
        registry
            .register(Box::new(metrics.peer_states.clone()))
            .map_err(Error::Metrics)?;
        registry
            .register(Box::new(metrics.signaling_errors.clone()))
            .map_err(Error::Metrics)?;
        registry
            .register(Box::new(metrics.peer_failures.clone()))
            .map_err(Error::Metrics)?;
        registry
            .register(Box::new(metrics.pending_connections.clone()))
            .map_err(Error::Metrics)?;
        registry
            .register(Box::new(metrics.connections_refused.clone()))
            .map_err(Error::Metrics)?;
        registry
            .register(Box::new(metrics.sessions_closed.clone()))
            .map_err(Error::Metrics)?;
        registry
            .register(Box::new(metrics.draining.clone()))
            .map_err(Error::Metrics)?;
        registry
            .register(Box::new(metrics.held_conferences.clone()))
            .map_err(Error::Metrics)?;
        registry
            .register(Box::new(metrics.udp_bind_failures.clone()))
            .map_err(Error::Metrics)?;
        registry
            .register(Box::new(metrics.udp_ports_unusable.clone()))
            .map_err(Error::Metrics)?;
        registry
            .register(Box::new(metrics.ice_tcp_connections.clone()))
            .map_err(Error::Metrics)?;
        for result in ["relayed", "refused"] {
            metrics.ice_tcp_connections.with_label_values(&[result]);
        }
        registry
            .register(Box::new(metrics.udp_mux_dropped.clone()))
            .map_err(Error::Metrics)?;
        for reason in ["unknown", "full"] {
            metrics.udp_mux_dropped.with_label_values(&[reason]);
        }
        registry
            .register(Box::new(metrics.udp_socket_buffer.clone()))
            .map_err(Error::Metrics)?;
        registry
            .register(Box::new(metrics.udp_kernel_drops.clone()))
            .map_err(Error::Metrics)?;
        for direction in ["receive", "send"] {
            metrics.udp_socket_buffer.with_label_values(&[direction]);
        }
        for phase in BIND_PHASES {
            metrics.udp_bind_failures.with_label_values(&[phase]);
        }
        for kind in ["audio", "video"] {
            metrics.tracks.with_label_values(&[kind]);
            metrics.forwarding_latency.with_label_values(&[kind]);
            metrics.copy_delay.with_label_values(&[kind]);
            metrics.receive_wait.with_label_values(&[kind]);
            for reason in ["full", "late"] {
                metrics.packets_dropped.with_label_values(&[kind, reason]);
            }
            for direction in ["in", "out"] {
                metrics.packets.with_label_values(&[kind, direction]);
                metrics.bytes.with_label_values(&[kind, direction]);
            }
        }
        for direction in ["received", "sent"] {
            metrics.keyframe_requests.with_label_values(&[direction]);
        }
        for code in proto::signal::ErrorCode::ALL {
            metrics.signaling_errors.with_label_values(&[code.as_str()]);
        }
        for cause in FailureCause::ALL {
            metrics.peer_failures.with_label_values(&[cause.as_str()]);
        }
        for reason in ["pendingTotal", "pendingPerAddress"] {
            metrics.connections_refused.with_label_values(&[reason]);
        }
        for reason in proto::signal::CloseReason::ALL {
            metrics
                .sessions_closed
                .with_label_values(&[reason.as_str()]);
        }
        Ok(metrics)
    }
}

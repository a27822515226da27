//! The composition root of the SFU: state shared by every session, the router (`/rtc`,
//! `/healthz`, `/readyz`, `/metrics`), and `run` for the standalone `conclave sfu` process.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use chrono::Utc;
use parking_lot::Mutex;
use proto::signal::CloseReason;
use proto::{ConferenceId, TokenKey, TrackId, UdpPorts};
use tokio::sync::{Notify, mpsc, watch};
use tracing::{debug, info, warn};

use crate::config::{Config, Limits};
use crate::error::{Error, Result};
use crate::media::{FeedbackSink, Forwarder, MediaSettings};
use crate::metrics::Metrics;
use crate::ports::PortPool;
use crate::rate::Rate;
use crate::recording::{Files, Recording, RecordingInfo, Timing};
use crate::report::{HttpReporter, LogReporter, Reporter};
use crate::room::{Effect, Room, RoomLimits, SessionId};
use crate::session::{self, Command};

/// How often rooms tick (deferred keyframe requests, active speaker).
const TICK: Duration = Duration::from_millis(100);
/// How often a draining pod looks whether any session is left.
const DRAIN_CHECK: Duration = Duration::from_millis(100);
/// How long the sessions told to move get to say goodbye before the process ends.
const GOODBYE: Duration = Duration::from_secs(2);

/// The room's way to a session: a bounded queue, and a bell rung when the queue is full.
pub(crate) struct SessionLink {
    pub(crate) commands: mpsc::Sender<Command>,
    /// Rung once when the session could not keep up: it closes with `tooSlow`, even while
    /// stuck writing to its websocket.
    pub(crate) too_slow: Arc<Notify>,
}

/// One room: the pure core plus the media objects and session channels around it.
pub(crate) struct RoomHandle {
    pub(crate) core: Mutex<Room>,
    /// Held from taking the core's lock until its effects are applied, so sessions get
    /// messages in the order the core decided them (a joiner's `joined` before the
    /// `participantJoined` of someone who joined just after). Taken before `core`.
    pub(crate) order: Mutex<()>,
    pub(crate) sessions: Mutex<HashMap<SessionId, SessionLink>>,
    pub(crate) forwarders: Mutex<HashMap<TrackId, Arc<Forwarder>>>,
    pub(crate) default_ports: UdpPorts,
    pub(crate) shared: Arc<Shared>,
    /// Whether the conference's whole port range was tried since the room opened.
    pub(crate) ports_checked: AtomicBool,
    /// The recording running in the room.
    pub(crate) recording: Mutex<Option<Arc<Recording>>>,
}

impl std::fmt::Debug for RoomHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomHandle").finish_non_exhaustive()
    }
}

impl RoomHandle {
    /// Runs `action` on the core and applies its effects, in the core's order with respect to
    /// every other `act`.
    pub(crate) fn act<E>(
        self: &Arc<Self>,
        action: impl FnOnce(&mut Room) -> Result<Vec<Effect>, E>,
    ) -> Result<(), E> {
        let _order = self.order.lock();
        let effects = action(&mut self.core.lock())?;
        self.apply(effects);
        Ok(())
    }

    /// Carries out the core's effects. Never called with the core's lock held.
    pub(crate) fn apply(self: &Arc<Self>, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Send { to, message } => self.command(to, Command::Send(Box::new(message))),
                Effect::Close { session, reason } => self.command(session, Command::Close(reason)),
                Effect::Admit {
                    session,
                    participant,
                } => self.command(session, Command::Admit(participant)),
                Effect::Subscribe {
                    session,
                    track,
                    kind: _,
                } => {
                    let forwarder = self.forwarders.lock().get(&track).cloned();
                    if let Some(forwarder) = forwarder {
                        self.command(session, Command::Subscribe(forwarder));
                    }
                }
                Effect::Unsubscribe { session, track } => {
                    self.command(session, Command::Unsubscribe(track));
                }
                Effect::TrackClosed { track } => {
                    if let Some(forwarder) = self.forwarders.lock().remove(&track) {
                        forwarder.record_into(None);
                        forwarder.close();
                        let kind = match forwarder.kind {
                            proto::signal::TrackKind::Audio => "audio",
                            proto::signal::TrackKind::Video => "video",
                        };
                        self.shared.metrics.tracks.with_label_values(&[kind]).dec();
                    }
                }
                Effect::SetForwarding { track, enabled } => {
                    if let Some(forwarder) = self.forwarders.lock().get(&track) {
                        forwarder.set_enabled(enabled);
                    }
                }
                Effect::RequestKeyframe { track } => {
                    let forwarder = self.forwarders.lock().get(&track).cloned();
                    if let Some(forwarder) = forwarder {
                        tokio::spawn(async move { forwarder.request_keyframe().await });
                    }
                }
                Effect::SetLayer { .. } => {
                    // The core keeps the choice; the next tick's allocation reads it
                    // (`adapt`), as it does tile sizes and bandwidth estimates.
                }
                Effect::Report(report) => self.shared.reporter.report(report),
                Effect::StartRecording(info) => self.start_recording(&info),
                Effect::StopRecording {
                    recording,
                    stopped,
                    report,
                } => self.stop_recording(&recording, stopped, report),
                Effect::RecordEvent(event) => {
                    if let Some(recording) = self.recording.lock().as_ref() {
                        recording.event(event);
                    }
                }
            }
        }
        self.update_gauges();
    }

    fn start_recording(self: &Arc<Self>, info: &RecordingInfo) {
        let Some(files) = self.shared.files.get().cloned() else {
            warn!(recording = %info.id, "a recording was started but this SFU has no file store; nothing is written");
            return;
        };
        let recording = Recording::start(
            files,
            info,
            self.shared.metrics.clone(),
            self.shared.recording_timing,
        );
        *self.recording.lock() = Some(recording);
        let forwarders: Vec<Arc<Forwarder>> = self.forwarders.lock().values().cloned().collect();
        for forwarder in forwarders {
            self.record_track(&forwarder);
        }
    }

    /// Records `forwarder`'s track when a recording runs (called under the order lock, so that
    /// a track and a start never miss each other).
    pub(crate) fn record_track(self: &Arc<Self>, forwarder: &Arc<Forwarder>) {
        let Some(recording) = self.recording.lock().clone() else {
            return;
        };
        let Some((source, person)) = self.core.lock().recorded_track(&forwarder.track) else {
            return;
        };
        let room = Arc::downgrade(self);
        let track = forwarder.track.clone();
        let keyframe: crate::recording::KeyframeRequest = Arc::new(move || {
            if let Some(room) = room.upgrade() {
                room.keyframe_wanted(&track);
            }
        });
        let queue = recording.track(
            &forwarder.track,
            &forwarder.codec.mime_type,
            source,
            person,
            keyframe,
        );
        forwarder.record_into(queue);
    }

    fn stop_recording(
        self: &Arc<Self>,
        id: &proto::RecordingId,
        stopped: crate::recording::Stopped,
        report: proto::RoomReport,
    ) {
        let Some(recording) = self.recording.lock().take() else {
            // Never started (no file store): the conference service still hears the stop.
            self.shared.reporter.report(report);
            return;
        };
        debug_assert_eq!(recording.id(), id);
        for forwarder in self.forwarders.lock().values() {
            forwarder.record_into(None);
        }
        let reporter = Arc::clone(&self.shared.reporter);
        // `recordingStopped` goes out once every file is stored, so what composes it finds
        // them all.
        let finishing = tokio::spawn(async move {
            recording.finish(stopped).await;
            reporter.report(report);
        });
        let mut all = self.shared.recordings_finishing.lock();
        all.retain(|task| !task.is_finished());
        all.push(finishing);
    }

    /// Queues a command for a session without ever waiting: a session whose queue is full
    /// cannot keep up and is let go (it closes with `tooSlow`; the client reconnects and gets
    /// the room's state afresh), so nothing is lost silently and nothing blocks the room.
    pub(crate) fn command(&self, session: SessionId, command: Command) {
        let mut sessions = self.sessions.lock();
        let Some(link) = sessions.get(&session) else {
            return;
        };
        match link.commands.try_send(command) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                warn!(%session, "a session's queue is full; disconnecting it");
                link.too_slow.notify_one();
                sessions.remove(&session);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                sessions.remove(&session);
            }
        }
    }

    /// Tries every port of the conference's range once per room (the first peer connection
    /// asks) and reports what it found, so that a conference's status says whether its media
    /// ports are usable.
    pub(crate) fn check_ports(self: &Arc<Self>, ports: UdpPorts, ip: IpAddr) {
        if self.ports_checked.swap(true, Ordering::AcqRel) {
            return;
        }
        let check = self.shared.ports.check(ports, ip);
        let metrics = &self.shared.metrics;
        metrics
            .udp_bind_failures
            .with_label_values(&["room"])
            .inc_by(check.unusable.len() as u64);
        metrics
            .udp_ports_unusable
            .set(self.shared.ports.unusable() as i64);
        if !check.unusable.is_empty() {
            warn!(
                conference = %self.core.lock().conference(),
                unusable = %proto::describe_ports(&check.unusable, 8),
                first = ports.first,
                last = ports.last,
                cause = check.first_error.as_deref().unwrap_or_default(),
                "media ports of the conference cannot be bound: another process on the node holds them"
            );
        }
        let _ = self.act(|core| {
            Ok::<_, std::convert::Infallible>(core.media_ports(
                &self.shared.pod_name,
                ports.first,
                ports.last,
                check.unusable,
                Utc::now(),
            ))
        });
    }

    /// Counts the binds a lease found failing and reports ports newly found unusable.
    pub(crate) fn lease_found(
        self: &Arc<Self>,
        ports: UdpPorts,
        newly_unusable: &[u16],
        bind_failures: u32,
    ) {
        let metrics = &self.shared.metrics;
        metrics
            .udp_bind_failures
            .with_label_values(&["lease"])
            .inc_by(u64::from(bind_failures));
        metrics
            .udp_ports_unusable
            .set(self.shared.ports.unusable() as i64);
        if newly_unusable.is_empty() {
            return;
        }
        warn!(
            conference = %self.core.lock().conference(),
            unusable = %proto::describe_ports(newly_unusable, 8),
            "media ports found in use by another process; skipped"
        );
        let unusable = self.shared.ports.unusable_in(ports);
        let _ = self.act(|core| {
            Ok::<_, std::convert::Infallible>(core.media_ports(
                &self.shared.pod_name,
                ports.first,
                ports.last,
                unusable,
                Utc::now(),
            ))
        });
    }

    fn update_gauges(&self) {
        let (admitted, sessions) = {
            let core = self.core.lock();
            (i64::from(core.admitted()), core.session_count() as i64)
        };
        let mut counted = self.shared.counted.lock();
        let entry = counted
            .entry(self.core.lock().conference().clone())
            .or_insert((0, 0));
        let metrics = &self.shared.metrics;
        metrics.participants.add(admitted - entry.0);
        metrics.waiting.add((sessions - admitted) - entry.1);
        *entry = (admitted, sessions - admitted);
    }
}

impl FeedbackSink for RoomHandle {
    fn keyframe_wanted(&self, track: &TrackId) {
        let effects = self.core.lock().keyframe_request(track, Utc::now());
        for effect in effects {
            if let Effect::RequestKeyframe { track } = effect {
                let forwarder = self.forwarders.lock().get(&track).cloned();
                if let Some(forwarder) = forwarder {
                    tokio::spawn(async move { forwarder.request_keyframe().await });
                }
            }
        }
    }
}

/// State shared by every session and room.
pub(crate) struct Shared {
    pub(crate) key: TokenKey,
    pub(crate) media: MediaSettings,
    pub(crate) ports: PortPool,
    pub(crate) metrics: Metrics,
    pub(crate) reporter: Arc<dyn Reporter>,
    pub(crate) limits: RoomLimits,
    /// Limits of the websocket shell (queues, timeouts, connections before `join`).
    pub(crate) wire: Limits,
    pub(crate) default_ports: UdpPorts,
    pub(crate) max_participants: usize,
    /// Open websockets, joined or not.
    pub(crate) sessions: AtomicUsize,
    /// Sessions that joined (waiting or admitted): what counts against `max_participants`.
    pub(crate) seats: AtomicUsize,
    /// Websockets that have not joined yet, in total and per client network.
    pending: Mutex<PendingCount>,
    pub(crate) next_session: AtomicU64,
    pub(crate) rooms: Mutex<HashMap<ConferenceId, Arc<RoomHandle>>>,
    /// Participants and waiting people already counted in the gauges, per room.
    counted: Mutex<HashMap<ConferenceId, (i64, i64)>>,
    pub(crate) ready: AtomicBool,
    /// Set when every session must end, with the reason they are told (`shutdown`, or `moved`
    /// at the end of a drain): sessions, joins in progress and the poller stop.
    pub(crate) shutdown: watch::Sender<Option<CloseReason>>,
    /// This pod's name (`--sfu-pod-name`): a join token naming another pod is refused, and
    /// reports about its media ports name it.
    pub(crate) pod_name: String,
    /// The conferences the conference service places on this pod, as last heard.
    pub(crate) held: Mutex<crate::placements::Held>,
    /// Where the list comes from (none: every conference is admitted).
    pub(crate) placement_source: std::sync::OnceLock<Arc<dyn crate::placements::PlacementSource>>,
    /// Taken while the list is fetched and applied, so that lists are applied in the order
    /// they were asked for; holds when the list applied last was asked for, so that joins
    /// waiting meanwhile take that list instead of asking again.
    pub(crate) placements_refresh: tokio::sync::Mutex<Option<std::time::Instant>>,
    /// The conference service's latest revocations, checked at every join.
    pub(crate) revocations: Mutex<crate::revocation::Registry>,
    /// Whether the first list was asked for (joins wait for it, briefly, after a start).
    pub(crate) revocations_loaded: watch::Sender<bool>,
    /// Where recordings are stored (none: recordings write nothing).
    pub(crate) files: std::sync::OnceLock<Files>,
    /// How recordings cut their segments.
    pub(crate) recording_timing: Timing,
    /// Stopped recordings still storing their last files.
    pub(crate) recordings_finishing: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// The SFU's state: hand it to [`router`]. Cheap to clone.
#[derive(Clone)]
pub struct SfuState {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for SfuState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SfuState").finish_non_exhaustive()
    }
}

impl SfuState {
    /// Builds the state from the configuration, registering metrics in `registry` and sending
    /// room reports to `reporter`. Needs a tokio runtime (the shared UDP port's reader, the
    /// accounting of kernel drops at the media sockets).
    ///
    /// # Errors
    /// [`Error::Secret`] for a short secret, [`Error::Metrics`] when metrics are registered
    /// twice in the same registry.
    pub fn new(
        config: &Config,
        reporter: Arc<dyn Reporter>,
        registry: &prometheus::Registry,
    ) -> Result<Self> {
        let key = TokenKey::new(config.join_token_secret.as_bytes()).map_err(Error::Secret)?;
        let metrics = Metrics::new(registry)?;
        metrics.capacity.set(i64::from(config.max_participants));
        let ports = PortPool::default();
        let default_ports = config.ports_here().map_err(Error::Config)?;
        let udp_buffers = crate::sockets::UdpBuffers::new(
            config.udp_buffer_bytes as usize,
            metrics.udp_socket_buffer.clone(),
            metrics.udp_kernel_drops.clone(),
        );
        // In single-port mode no range is bound.
        let udp_mux = match config.udp_port {
            Some(port) => Some(crate::udp_mux::UdpMux::spawn(
                SocketAddr::new(config.bind_ip, port),
                &udp_buffers,
                metrics.udp_mux_dropped.clone(),
            )?),
            None => {
                check_ports_at_start(&ports, default_ports, config.bind_ip, &metrics)?;
                None
            }
        };
        let ice_tcp = config
            .ice_tcp_port
            .map(|port| {
                crate::ice_tcp::IceTcpMux::spawn(
                    SocketAddr::new(config.bind_ip, port),
                    metrics.ice_tcp_connections.clone(),
                )
            })
            .transpose()?;
        let announced_ips = config.announced_here();
        if !announced_ips.is_empty() {
            info!(
                announced = announced_ips.len(),
                node = config.node_name.as_deref().unwrap_or_default(),
                "announcing configured addresses in ICE candidates"
            );
        }
        let (shutdown, _) = watch::channel(None);
        udp_buffers.spawn_accounting();
        Ok(Self {
            shared: Arc::new(Shared {
                key,
                media: MediaSettings {
                    bind_ip: config.bind_ip,
                    announced_ips,
                    ice_failed_after: Duration::from_secs(config.ice_failed_seconds),
                    ice_tcp,
                    udp_mux,
                    udp_buffers,
                    direct_media: config.direct_media,
                },
                ports,
                metrics,
                reporter,
                limits: RoomLimits {
                    default_max_participants: config.room_max_participants,
                    max_tracks_per_participant: config.limits.max_tracks_per_participant as usize,
                    chat_rate: Rate {
                        per_second: config.limits.chat_rate,
                        burst: config.limits.chat_burst,
                    },
                    control_rate: Rate {
                        per_second: config.limits.control_rate,
                        burst: config.limits.control_burst,
                    },
                    guest_seats_per_client: config.limits.guest_seats_per_client as usize,
                    ..RoomLimits::default()
                },
                wire: config.limits.clone(),
                default_ports,
                max_participants: config.max_participants as usize,
                sessions: AtomicUsize::new(0),
                seats: AtomicUsize::new(0),
                pending: Mutex::new(PendingCount::default()),
                next_session: AtomicU64::new(1),
                rooms: Mutex::new(HashMap::new()),
                counted: Mutex::new(HashMap::new()),
                ready: AtomicBool::new(true),
                shutdown,
                pod_name: config.pod_name.clone(),
                held: Mutex::new(crate::placements::Held::default()),
                placement_source: std::sync::OnceLock::new(),
                placements_refresh: tokio::sync::Mutex::new(None),
                revocations: Mutex::new(crate::revocation::Registry::default()),
                revocations_loaded: watch::channel(true).0,
                files: std::sync::OnceLock::new(),
                recording_timing: Timing::default(),
                recordings_finishing: Mutex::new(Vec::new()),
            }),
        })
    }

    /// Stores recordings in `files` (set once; `conclave sfu` and the standalone mode set it
    /// from their file store flags).
    ///
    /// # Errors
    /// [`Error::Config`] when a file store was set before.
    pub fn set_files(&self, files: Files) -> Result<()> {
        self.shared
            .files
            .set(files)
            .map_err(|_| Error::Config("the file store was set before".into()))
    }

    /// Waits up to `grace` until stopped recordings have stored their last segments and
    /// `stopped.json`; `false` when some had not.
    pub async fn recordings_stored(&self, grace: Duration) -> bool {
        let tasks: Vec<_> = std::mem::take(&mut *self.shared.recordings_finishing.lock());
        tokio::time::timeout(grace, futures::future::join_all(tasks))
            .await
            .is_ok()
    }

    /// Open websocket sessions.
    pub fn session_count(&self) -> usize {
        self.shared.sessions.load(Ordering::Acquire)
    }

    /// Sessions that joined (waiting or admitted): what counts against the capacity.
    pub fn seat_count(&self) -> usize {
        self.shared.seats.load(Ordering::Acquire)
    }

    /// Websockets that have not joined yet.
    pub fn pending_count(&self) -> usize {
        self.shared.pending.lock().total
    }

    /// Lets a websocket in before `join` when neither the total nor its client network's count
    /// of such connections is at its limit (`None`: a local proxy, counted in the total only).
    pub(crate) fn enter_pending(
        &self,
        network: Option<String>,
    ) -> Result<PendingGuard, PendingRefusal> {
        let wire = &self.shared.wire;
        let mut pending = self.shared.pending.lock();
        if pending.total >= wire.max_pending_connections as usize {
            return Err(PendingRefusal::Total);
        }
        if let Some(network) = &network {
            let here = pending.by_network.entry(network.clone()).or_insert(0);
            if *here >= wire.max_pending_per_address as usize {
                return Err(PendingRefusal::PerAddress);
            }
            *here += 1;
        }
        pending.total += 1;
        self.shared
            .metrics
            .pending_connections
            .set(pending.total as i64);
        Ok(PendingGuard {
            shared: Arc::clone(&self.shared),
            network,
        })
    }

    /// Takes a seat of the SFU's capacity for a session that presented a valid token.
    pub(crate) fn take_seat(&self) -> Option<SeatGuard> {
        let max = self.shared.max_participants;
        self.shared
            .seats
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |seats| {
                (seats < max).then_some(seats + 1)
            })
            .ok()
            .map(|_| SeatGuard {
                shared: Arc::clone(&self.shared),
            })
    }

    /// Rooms held in memory.
    pub fn room_count(&self) -> usize {
        self.shared.rooms.lock().len()
    }

    /// The shared UDP port and its mux, in single-port mode (`--sfu-udp-port`; port 0 there
    /// picks a free one).
    pub fn udp_mux(&self) -> Option<&Arc<crate::udp_mux::UdpMux>> {
        self.shared.media.udp_mux.as_ref()
    }

    /// The port of ICE over TCP, when the SFU takes it (`--sfu-ice-tcp-port`; port 0 there
    /// picks a free one).
    pub fn ice_tcp_port(&self) -> Option<u16> {
        self.shared.media.ice_tcp.as_ref().map(|mux| mux.port())
    }

    /// UDP ports leased by peer connections now.
    pub fn ports_in_use(&self) -> usize {
        self.shared.ports.in_use()
    }

    /// The local address peer connections bind to.
    pub fn bind_ip(&self) -> IpAddr {
        self.shared.media.bind_ip
    }

    /// Follows the revocations of `source` (the conference service) from now on: asks at once
    /// and every [`crate::revocation::POLL`] until shutdown.
    pub fn follow_revocations(&self, source: Arc<dyn crate::revocation::RevocationSource>) {
        self.follow_conference_service(source, None);
    }

    /// Follows the conference service: its revocations, and — with `placements` — which
    /// conferences this pod holds, asked in the same task at once and every
    /// [`crate::revocation::POLL`] until shutdown. With placements, joins for conferences not
    /// held are refused (`wrongPod`) and rooms whose conference left the list are told to move.
    pub fn follow_conference_service(
        &self,
        revocations: Arc<dyn crate::revocation::RevocationSource>,
        placements: Option<Arc<dyn crate::placements::PlacementSource>>,
    ) {
        self.shared.revocations_loaded.send_replace(false);
        if let Some(source) = placements
            && self.shared.placement_source.set(source).is_err()
        {
            warn!("the placement source was set before; keeping the first");
        }
        crate::revocation::spawn_poller(self.clone(), revocations);
    }

    /// This pod's name, as join tokens name it.
    pub fn pod_name(&self) -> &str {
        &self.shared.pod_name
    }

    /// Whether `/readyz` answers 200 (it turns 503 at once when draining starts).
    pub fn is_ready(&self) -> bool {
        self.shared.ready.load(Ordering::Acquire)
    }

    /// Asks the placement source for the list now and applies it: rooms whose conference
    /// left the list are told to move. Lists are applied in the order they were asked for.
    /// `Ok(false)` without a source.
    ///
    /// # Errors
    /// The source's message when it cannot be asked; the last list stays in force.
    pub async fn refresh_placements(&self) -> std::result::Result<bool, String> {
        self.placements_asked_since(std::time::Instant::now()).await
    }

    /// Makes sure the list in force was asked for at `since` or later: asks for it unless a
    /// list asked for since then was applied meanwhile (concurrent joins share one look).
    async fn placements_asked_since(
        &self,
        since: std::time::Instant,
    ) -> std::result::Result<bool, String> {
        let Some(source) = self.shared.placement_source.get().cloned() else {
            return Ok(false);
        };
        let mut last_asked = self.shared.placements_refresh.lock().await;
        if last_asked.is_some_and(|asked| asked >= since) {
            return Ok(true);
        }
        let asked = std::time::Instant::now();
        let list = source.fetch().await?;
        self.apply_placements(&list);
        *last_asked = Some(asked);
        Ok(true)
    }

    /// Takes `list` as what this pod holds and moves the participants of every room whose
    /// conference is not in it.
    fn apply_placements(&self, list: &proto::Placements) {
        use crate::placements::Held;
        let held = Held::from_list(list);
        if let Some(count) = held.count() {
            self.shared.metrics.held_conferences.set(count as i64);
        }
        let before = std::mem::replace(&mut *self.shared.held.lock(), held.clone());
        if before != held {
            debug!(pod = %list.pod, conferences = ?held.count(), "placements changed");
        }
        let leaving: Vec<(ConferenceId, Arc<RoomHandle>)> = self
            .shared
            .rooms
            .lock()
            .iter()
            .filter(|(conference, _)| held.refuses(conference))
            .map(|(conference, room)| (conference.clone(), Arc::clone(room)))
            .collect();
        for (conference, room) in leaving {
            let sessions = room.core.lock().session_count();
            if sessions == 0 {
                continue;
            }
            info!(%conference, sessions, "the conference was placed on another pod; telling its participants to move");
            let _ = room.act(|core| {
                Ok::<_, std::convert::Infallible>(core.close_all(CloseReason::Moved, Utc::now()))
            });
        }
    }

    /// Whether a join with `claims` may enter this pod: refused (`wrongPod`) when the token names
    /// another pod, or when the conference is not placed here — after asking the conference
    /// service once more, so that a placement newer than the last list is not refused. When the
    /// list cannot be had, the token's word is taken. Also refused once the pod is closing.
    pub(crate) async fn admission(&self, claims: &proto::JoinClaims) -> Option<String> {
        use crate::placements::{Verdict, judge};
        if let Some(reason) = *self.shared.shutdown.borrow() {
            return Some(format!(
                "this media server is {}; join again through the API",
                if reason == CloseReason::Moved {
                    "handing its meetings over"
                } else {
                    "shutting down"
                }
            ));
        }
        let me = self.shared.pod_name.as_str();
        let verdict = judge(
            me,
            claims.pod.as_deref(),
            &claims.conf,
            &self.shared.held.lock(),
        );
        match verdict {
            Verdict::Admit => None,
            Verdict::OtherPod(pod) => {
                info!(conference = %claims.conf, token_pod = %pod, "a join token for another pod was refused");
                Some(format!(
                    "this join token is for the media server {pod}, not this one ({me}); join again through the API"
                ))
            }
            Verdict::NotHeld => {
                let asked = std::time::Instant::now();
                if let Err(cause) = self.placements_asked_since(asked).await {
                    warn!(%cause, conference = %claims.conf, "placements cannot be asked; admitting on the token's word");
                    return None;
                }
                let held = !self.shared.held.lock().refuses(&claims.conf);
                if held {
                    debug!(conference = %claims.conf, waited_ms = asked.elapsed().as_millis() as u64, "a fresh placement admitted the join");
                    return None;
                }
                info!(conference = %claims.conf, "a join for a conference not placed on this pod was refused");
                Some(format!(
                    "this meeting is not on this media server ({me}) any more; join again through the API"
                ))
            }
        }
    }

    /// Waits until the first revocation list was asked for, at most
    /// [`crate::revocation::FIRST_LIST_WAIT`]: a pod that just started must not admit a token
    /// the conference service revoked.
    pub(crate) async fn revocations_known(&self) {
        let mut loaded = self.shared.revocations_loaded.subscribe();
        let _ = tokio::time::timeout(
            crate::revocation::FIRST_LIST_WAIT,
            loaded.wait_for(|loaded| *loaded),
        )
        .await;
    }

    /// Closes the live sessions a new revocation names.
    pub(crate) fn follow(&self, entry: &crate::revocation::Fresh) {
        use proto::Revoked;
        let now = Utc::now();
        let rooms: Vec<Arc<RoomHandle>> = match &entry.what {
            Revoked::Account { .. } => self.shared.rooms.lock().values().cloned().collect(),
            Revoked::Excluded { conference, .. } | Revoked::Ended { conference } => self
                .shared
                .rooms
                .lock()
                .get(conference)
                .cloned()
                .into_iter()
                .collect(),
        };
        for room in rooms {
            let _ = room.act(|core| {
                Ok::<_, std::convert::Infallible>(match &entry.what {
                    Revoked::Account { identity, epoch } => {
                        core.revoke_account(identity, *epoch, now)
                    }
                    Revoked::Excluded { identity, .. } => core.exclude_identity(identity, now),
                    Revoked::Ended { .. } => core.ended_elsewhere(entry.at, now),
                })
            });
        }
    }

    pub(crate) fn room(&self, conference: &ConferenceId) -> Arc<RoomHandle> {
        let mut rooms = self.shared.rooms.lock();
        if let Some(room) = rooms.get(conference) {
            return Arc::clone(room);
        }
        let room = Arc::new(RoomHandle {
            core: Mutex::new(Room::new(conference.clone(), self.shared.limits.clone())),
            order: Mutex::new(()),
            sessions: Mutex::new(HashMap::new()),
            forwarders: Mutex::new(HashMap::new()),
            default_ports: self.shared.default_ports,
            shared: Arc::clone(&self.shared),
            ports_checked: AtomicBool::new(false),
            recording: Mutex::new(None),
        });
        rooms.insert(conference.clone(), Arc::clone(&room));
        self.shared.metrics.rooms.set(rooms.len() as i64);
        let ticking = Arc::downgrade(&room);
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(TICK);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                let Some(room) = ticking.upgrade() else { break };
                room.tick(Utc::now(), std::time::Instant::now());
            }
        });
        room
    }

    /// Drops a room nobody is in any more, unless it must still remember exclusions or its end.
    pub(crate) fn forget_room_if_idle(&self, conference: &ConferenceId) {
        let mut rooms = self.shared.rooms.lock();
        let idle = rooms
            .get(conference)
            .is_some_and(|room| room.core.lock().can_forget(Utc::now()));
        if idle {
            rooms.remove(conference);
            self.shared.counted.lock().remove(conference);
        }
        self.shared.metrics.rooms.set(rooms.len() as i64);
    }

    /// Stops at once (standalone mode, where no other SFU takes the meetings over): readiness
    /// off, every session closed with `shutdown` (clients reconnect once the process is back),
    /// then waits up to `grace` for the sessions to say goodbye.
    pub async fn drain(&self, grace: Duration) {
        self.shared.ready.store(false, Ordering::Release);
        self.close_everyone(CloseReason::Shutdown);
        self.sessions_gone(grace).await;
    }

    /// Drains a pod of a cluster (SIGTERM): `/readyz` answers 503 at once, so the operator
    /// places nothing new here; running meetings go on, and joins for conferences this pod still
    /// holds are admitted, until the operator moves them (their rooms are told `moved` as the
    /// placement list drops them) or `window` is up or no session is left. Then everyone left
    /// is told `moved` and the sessions get a moment to say goodbye.
    pub async fn hand_off(&self, window: Duration) {
        self.shared.ready.store(false, Ordering::Release);
        self.shared.metrics.draining.set(1);
        info!(
            drain_seconds = window.as_secs(),
            sessions = self.session_count(),
            "draining: readiness is off; meetings go on until they move, end or the drain time is up"
        );
        let deadline = tokio::time::Instant::now() + window;
        while self.session_count() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(DRAIN_CHECK).await;
        }
        let left = self.session_count();
        if left > 0 {
            info!(
                sessions = left,
                "the drain time is up; telling everyone left to move"
            );
        } else {
            info!("no session is left; stopping");
        }
        self.close_everyone(CloseReason::Moved);
        self.sessions_gone(GOODBYE).await;
    }

    /// Ends every session with `reason`: the rooms close theirs (reporting each leave), and
    /// sessions and joins in progress see the shutdown signal.
    fn close_everyone(&self, reason: CloseReason) {
        self.shared.shutdown.send_replace(Some(reason));
        let rooms: Vec<Arc<RoomHandle>> = self.shared.rooms.lock().values().cloned().collect();
        for room in rooms {
            let _ = room
                .act(|core| Ok::<_, std::convert::Infallible>(core.close_all(reason, Utc::now())));
        }
    }

    /// Waits up to `grace` for every websocket to close.
    async fn sessions_gone(&self, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        while self.session_count() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Tries every port of the configured range on the bind address: the ports another process
/// holds are logged and counted (`conclave_sfu_udp_ports_unusable`); a range of which no port
/// can be bound is a configuration error.
fn check_ports_at_start(
    pool: &PortPool,
    range: UdpPorts,
    ip: IpAddr,
    metrics: &Metrics,
) -> Result<()> {
    let check = pool.check(range, ip);
    metrics
        .udp_bind_failures
        .with_label_values(&["start"])
        .inc_by(check.unusable.len() as u64);
    metrics.udp_ports_unusable.set(pool.unusable() as i64);
    let total = u32::from(range.last) - u32::from(range.first) + 1;
    let cause = check.first_error.clone().unwrap_or_default();
    if check.unusable.len() as u32 == total {
        return Err(Error::Config(format!(
            "none of the UDP media ports {}-{} can be bound on {ip} ({cause}): give --sfu-bind-ip an address of this host (or 0.0.0.0), and a range (--sfu-udp-ports) that no other process holds",
            range.first, range.last
        )));
    }
    if check.unusable.is_empty() {
        info!(
            first = range.first,
            last = range.last,
            "every UDP media port can be bound"
        );
    } else {
        warn!(
            unusable = %proto::describe_ports(&check.unusable, 8),
            count = check.unusable.len(),
            first = range.first,
            last = range.last,
            %cause,
            "UDP media ports held by another process on this node; conferences placed on them lose media: free them, or move --sfu-udp-ports (sfu.udpPorts) away from them"
        );
    }
    Ok(())
}

/// Websockets before `join`.
#[derive(Debug, Default)]
struct PendingCount {
    total: usize,
    by_network: HashMap<String, usize>,
}

/// Why a websocket was refused before `join`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PendingRefusal {
    /// `--sfu-max-pending-connections` reached.
    Total,
    /// `--sfu-max-pending-per-address` reached for the client's network.
    PerAddress,
}

impl PendingRefusal {
    /// The `reason` label of the refusal metric.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            PendingRefusal::Total => "pendingTotal",
            PendingRefusal::PerAddress => "pendingPerAddress",
        }
    }
}

/// A websocket counted as not joined yet, until dropped.
pub(crate) struct PendingGuard {
    shared: Arc<Shared>,
    network: Option<String>,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        let mut pending = self.shared.pending.lock();
        pending.total = pending.total.saturating_sub(1);
        if let Some(network) = &self.network
            && let Some(here) = pending.by_network.get_mut(network)
        {
            *here = here.saturating_sub(1);
            if *here == 0 {
                pending.by_network.remove(network);
            }
        }
        self.shared
            .metrics
            .pending_connections
            .set(pending.total as i64);
    }
}

/// A seat of the SFU's capacity, until dropped.
pub(crate) struct SeatGuard {
    shared: Arc<Shared>,
}

impl Drop for SeatGuard {
    fn drop(&mut self) {
        self.shared.seats.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The SFU's routes: `/rtc` (the signaling websocket), `/healthz`, `/readyz`. The standalone
/// mode merges this into the API's router; `/metrics` is the caller's (it owns the registry).
pub fn router(state: SfuState) -> Router {
    Router::new()
        .route("/rtc", get(session::upgrade))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn readyz(State(state): State<SfuState>) -> impl IntoResponse {
    if state.shared.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "draining")
    }
}

async fn metrics(State(registry): State<prometheus::Registry>) -> impl IntoResponse {
    use prometheus::Encoder;
    let mut buffer = Vec::new();
    match prometheus::TextEncoder::new().encode(&registry.gather(), &mut buffer) {
        Ok(()) => (
            StatusCode::OK,
            [("content-type", "text/plain; version=0.0.4")],
            buffer,
        ),
        Err(err) => {
            warn!(cause = %err, "encoding metrics failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                [("content-type", "text/plain")],
                b"metrics unavailable".to_vec(),
            )
        }
    }
}

/// A router serving `registry` at `/metrics`.
pub fn metrics_router(registry: prometheus::Registry) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(registry)
}

/// The file store's folder of an SFU pod without `--files-dir` or a bucket.
const DEFAULT_FILES_DIR: &str = "/var/lib/conclave/files";

/// How long a stopping SFU waits for stopped recordings to store their last files.
const RECORDING_FLUSH: Duration = Duration::from_secs(10);

/// How long a stopping SFU waits for its last room reports to be delivered.
const REPORT_FLUSH: Duration = Duration::from_secs(5);

/// Runs `conclave sfu` until SIGTERM or Ctrl-C, then drains ([`SfuState::hand_off`]): readiness
/// off at once, meetings go on for `--sfu-drain-seconds` at most, then everyone is told to move.
///
/// # Errors
/// Configuration, listening and serving errors.
pub async fn run(mut config: Config) -> Result<()> {
    config.resolve_secret().map_err(Error::Config)?;
    let registry = prometheus::Registry::new();
    let key = TokenKey::new(config.join_token_secret.as_bytes()).map_err(Error::Secret)?;
    let http_reporter = match &config.api_url {
        Some(url) => Some(Arc::new(HttpReporter::spawn(
            url,
            key,
            &config.pod_name,
            &registry,
        )?)),
        None => None,
    };
    let reporter: Arc<dyn Reporter> = match &http_reporter {
        Some(reporter) => reporter.clone(),
        None => Arc::new(LogReporter),
    };
    let state = SfuState::new(&config, reporter, &registry)?;
    let files = files::Files::from_args(&config.files, std::path::Path::new(DEFAULT_FILES_DIR))
        .map_err(Error::Files)?;
    info!(files = ?files, "recordings go to the file store");
    state.set_files(files)?;
    if let Some(url) = &config.api_url {
        state.follow_conference_service(
            Arc::new(crate::revocation::HttpRevocations::new(
                url,
                state.shared.key.clone(),
                &config.pod_name,
            )?),
            Some(Arc::new(crate::placements::HttpPlacements::new(
                url,
                state.shared.key.clone(),
                &config.pod_name,
            )?)),
        );
    }
    let bind = |addr: SocketAddr| async move {
        tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Listen { addr, source })
    };
    let listener = bind(config.listen).await?;
    // /metrics goes to the internal listener when there is one, so that whatever exposes the
    // signaling port (an Ingress, a hostNetwork node) does not expose the metrics.
    let (app, internal) = match config.internal_listen {
        Some(addr) => {
            let internal_app = Router::new()
                .route("/healthz", get(|| async { "ok" }))
                .route("/readyz", get(readyz))
                .with_state(state.clone())
                .merge(metrics_router(registry));
            (
                router(state.clone()),
                Some((bind(addr).await?, internal_app)),
            )
        }
        None => (router(state.clone()).merge(metrics_router(registry)), None),
    };
    info!(listen = %config.listen, internal_listen = ?config.internal_listen, udp_ports = ?state.shared.default_ports, "sfu listening");
    let (stopped, _) = watch::channel(false);
    let internal = internal.map(|(listener, app)| {
        let mut stop = stopped.subscribe();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|stop| *stop).await;
                })
                .await
        })
    });
    let grace = Duration::from_secs(config.drain_seconds);
    let draining = state.clone();
    let served = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown_signal().await;
        draining.hand_off(grace).await;
    })
    .await
    .map_err(Error::Serve);
    // Recordings stopped by the drain store their last segments (and report the stop).
    if !state.recordings_stored(RECORDING_FLUSH).await {
        warn!("recordings were still storing their last segments at shutdown");
    }
    // The leaves of the last sessions go out before the process ends.
    if let Some(reporter) = &http_reporter
        && !reporter.flush(REPORT_FLUSH).await
    {
        warn!(
            pending = reporter.pending(),
            "room reports not delivered at shutdown: the conference service is unreachable"
        );
    }
    // Metrics stay scrapeable while the rooms drain; the internal listener stops last.
    let _ = stopped.send(true);
    if let Some(internal) = internal
        && let Ok(Err(err)) = internal.await
    {
        warn!(cause = %err, "the internal listener failed");
    }
    served?;
    info!("sfu stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                warn!(cause = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use proto::{Media, MeetingId, Placements, Role, RoomSettings};
    use tokio::sync::Semaphore;

    use super::*;
    use crate::placements::{Fetch, PlacementSource};

    /// A conference service whose answers wait for the test's go, counting the questions.
    struct Gated {
        asked: AtomicUsize,
        go: Semaphore,
    }

    impl PlacementSource for Gated {
        fn fetch(&self) -> Fetch<'_> {
            Box::pin(async move {
                self.asked.fetch_add(1, Ordering::SeqCst);
                let permit = self.go.acquire().await.map_err(|err| err.to_string())?;
                permit.forget();
                Ok(Placements {
                    pod: "sfu-test".into(),
                    conferences: vec![ConferenceId::from("fresh")],
                    holds_everything: false,
                })
            })
        }
    }

    fn claims(sub: &str) -> proto::JoinClaims {
        proto::JoinClaims {
            sub: sub.into(),
            name: sub.into(),
            conf: ConferenceId::from("fresh"),
            mid: MeetingId::from("123456789"),
            role: Role::Listener,
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
            iat: 0,
            exp: 600,
            jti: sub.into(),
            rid: None,
            ep: 0,
            cli: None,
            pod: Some("sfu-test".into()),
        }
    }

    #[tokio::test]
    async fn joins_that_arrive_while_the_placements_are_asked_for_share_the_next_look() {
        let config = Config::for_loopback("0123456789abcdef0123456789abcdef", default_ports());
        let state = SfuState::new(&config, Arc::new(LogReporter), &prometheus::Registry::new())
            .expect("state");
        let source = Arc::new(Gated {
            asked: AtomicUsize::new(0),
            go: Semaphore::new(0),
        });
        let _ = state.shared.placement_source.set(source.clone());
        // The pod's last list holds nothing: every join for `fresh` asks again.
        *state.shared.held.lock() = crate::placements::Held::These(Default::default());

        let first = {
            let state = state.clone();
            tokio::spawn(async move { state.admission(&claims("a")).await })
        };
        while source.asked.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        // Ten more arrive while that question is out: its answer may predate their placement,
        // so one more question serves them all.
        let later: Vec<_> = (0..10)
            .map(|i| {
                let state = state.clone();
                tokio::spawn(async move { state.admission(&claims(&format!("b{i}"))).await })
            })
            .collect();
        tokio::task::yield_now().await;
        source.go.add_permits(2);
        assert_eq!(first.await.expect("join"), None, "admitted");
        for join in later {
            assert_eq!(join.await.expect("join"), None, "admitted");
        }
        let asked = source.asked.load(Ordering::SeqCst);
        assert!((1..=2).contains(&asked), "eleven joins asked {asked} times");
    }

    fn default_ports() -> UdpPorts {
        UdpPorts {
            first: 47_200,
            last: 47_209,
        }
    }
}

//! Recording: every published track of a room written losslessly, as it arrives, in segments
//! of about five seconds that are each playable on their own, stored as soon as they close —
//! so a crash or a lost pod loses one segment at most. The conference service composes the
//! final file from them after the stop.
//!
//! What lands under `recordings/{id}/` in the file store:
//! - `recording.json` at the start: the conference, meeting ID, topic, who started it, when;
//! - `tracks/{track}/{seq:06}.{ogg|ivf|h264}` and beside each `{seq:06}.json` (track, kind,
//!   codec, participant, wall-clock `start` and `end` of its first and last packet, packets);
//! - `events/{seq:06}.json` every few seconds when something happened (chat, the active
//!   speaker, joins and leaves);
//! - `stopped.json` last, when every other file is stored.
//!
//! # Layout
//! - [`container`]: Ogg/Opus, IVF/VP8 and Annex-B H.264 written in memory.
//! - [`reorder`]: packets back in sequence order, losses given up after a short wait.
//! - [`track`]: one track's recorder, a pure state machine (packets in, segments out).
//! - this module: the shell — a writer task per track fed over a bounded queue (the forwarder
//!   drops and counts rather than wait), the events file, the JSON and the uploads.

pub mod container;
pub mod reorder;
pub mod track;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use parking_lot::Mutex;
use proto::signal::TrackSource;
use proto::{ConferenceId, MeetingId, RecordingId, TrackId};
use rtc::rtp::Packet;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

pub use files::Files;
pub use track::{Codec, Timing, TrackRecorder};

use crate::metrics::Metrics;

/// Packets a track's writer may have queued before the forwarder drops them (about two
/// seconds of a 2 Mbit/s video).
pub const QUEUE: usize = 512;
/// How often the events gathered are written.
const EVENTS_EVERY: Duration = Duration::from_secs(3);
/// How often `alive` is renewed while recording: the API composes a recording whose `alive`
/// is older than its `--recording-lost-seconds` (120 by default) as one whose pod was lost.
const ALIVE_EVERY: Duration = Duration::from_secs(20);
/// How often a writer looks at the time (silent tracks, awaited keyframes, given-up packets).
const TICK: Duration = Duration::from_millis(250);

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Someone, as a recording names them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Person {
    /// The token's `sub`.
    pub identity: String,
    /// The display name.
    pub name: String,
}

/// `recording.json`: what is recorded, by whom, since when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordingInfo {
    /// The recording.
    pub id: RecordingId,
    /// The conference.
    pub conference_id: ConferenceId,
    /// Its meeting ID.
    pub meeting_id: Option<MeetingId>,
    /// Its topic, when the join tokens said.
    pub topic: Option<String>,
    /// Who started it.
    pub started_by: Person,
    /// When (RFC 3339, ms).
    pub started_at: String,
}

impl RecordingInfo {
    /// The info of a recording started at `at`.
    pub fn new(
        id: RecordingId,
        conference_id: ConferenceId,
        meeting_id: Option<MeetingId>,
        topic: Option<String>,
        started_by: Person,
        at: DateTime<Utc>,
    ) -> Self {
        Self {
            id,
            conference_id,
            meeting_id,
            topic,
            started_by,
            started_at: rfc3339(at),
        }
    }
}

/// Why a recording stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum StopReason {
    /// A moderator stopped it.
    Stopped,
    /// The meeting ended, or its last participant left.
    Ended,
}

/// `stopped.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stopped {
    /// When (RFC 3339, ms).
    pub stopped_at: String,
    /// Who stopped it (`None`: the end of the meeting).
    pub stopped_by: Option<Person>,
    /// Why.
    pub reason: StopReason,
}

impl Stopped {
    /// A stop at `at`.
    pub fn new(at: DateTime<Utc>, stopped_by: Option<Person>, reason: StopReason) -> Self {
        Self {
            stopped_at: rfc3339(at),
            stopped_by,
            reason,
        }
    }
}

/// Something that happened during a recording, for `events/{seq}.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// When (RFC 3339, ms).
    pub at: String,
    /// What.
    #[serde(flatten)]
    pub what: EventKind,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum EventKind {
    /// A chat message to everyone (private ones are not recorded).
    Chat {
        /// The sender's display name.
        from: String,
        /// The sender's identity.
        identity: String,
        /// The text.
        text: String,
    },
    /// The active speaker changed (`None`: nobody speaks).
    Speaker {
        /// The speaker's identity.
        identity: Option<String>,
    },
    /// The page shown of a presentation (`None`: the presentation stopped).
    Presentation {
        /// The page image's key in the file store.
        key: Option<String>,
    },
    /// Someone was admitted.
    Join {
        /// Their identity.
        identity: String,
        /// Their display name.
        name: String,
    },
    /// Someone left.
    Leave {
        /// Their identity.
        identity: String,
        /// Their display name.
        name: String,
    },
}

impl Event {
    /// `what` happened at `at`.
    pub fn new(at: DateTime<Utc>, what: EventKind) -> Self {
        Self {
            at: rfc3339(at),
            what,
        }
    }
}

/// What a recorded track is, in its segments' JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum TrackKind {
    /// A microphone (or a screen share's sound).
    Audio,
    /// A camera.
    Video,
    /// A screen share.
    Screen,
}

impl TrackKind {
    /// The kind of a track from its source.
    pub fn of(source: TrackSource) -> Self {
        match source {
            TrackSource::Microphone | TrackSource::ScreenAudio => TrackKind::Audio,
            TrackSource::Camera => TrackKind::Video,
            TrackSource::Screen => TrackKind::Screen,
        }
    }

    /// The name in JSON and in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            TrackKind::Audio => "audio",
            TrackKind::Video => "video",
            TrackKind::Screen => "screen",
        }
    }
}

/// A segment's JSON.
#[derive(Debug, Clone, Serialize)]
struct SegmentJson<'a> {
    track: &'a str,
    kind: TrackKind,
    codec: &'static str,
    participant: &'a Person,
    start: String,
    end: String,
    packets: u64,
}

/// A packet handed from a forwarder to a track's writer, with its arrival time.
pub type Tapped = (Packet, DateTime<Utc>);

/// Asks the publisher of a recorded track for a keyframe.
pub type KeyframeRequest = Arc<dyn Fn() + Send + Sync>;

/// A running recording: its track writers and its events.
pub struct Recording {
    id: RecordingId,
    prefix: String,
    files: Files,
    metrics: Metrics,
    timing: Timing,
    next_track: AtomicU32,
    writers: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    events: Mutex<Option<mpsc::UnboundedSender<Event>>>,
    background: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for Recording {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recording")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Stores one file, counting a failure.
async fn store(files: &Files, metrics: &Metrics, key: &str, bytes: Bytes) -> bool {
    match files.put(key, bytes).await {
        Ok(()) => true,
        Err(err) => {
            metrics.recording_store_failures.inc();
            warn!(cause = %err, key, "a recording file could not be stored");
            false
        }
    }
}

fn json<T: Serialize>(value: &T) -> Bytes {
    Bytes::from(serde_json::to_vec_pretty(value).unwrap_or_default())
}

impl Recording {
    /// Starts a recording: `recording.json` is stored and the events writer runs.
    pub fn start(
        files: Files,
        info: &RecordingInfo,
        metrics: Metrics,
        timing: Timing,
    ) -> Arc<Self> {
        let prefix = format!("recordings/{}/", info.id);
        metrics.recordings_active.inc();
        info!(recording = %info.id, conference = %info.conference_id, "recording started");
        let (events, queue) = mpsc::unbounded_channel();
        let recording = Arc::new(Self {
            id: info.id.clone(),
            prefix: prefix.clone(),
            files: files.clone(),
            metrics: metrics.clone(),
            timing,
            next_track: AtomicU32::new(0),
            writers: Mutex::new(Vec::new()),
            events: Mutex::new(Some(events)),
            background: Mutex::new(Vec::new()),
        });
        let header = json(info);
        let (header_files, header_metrics, key) = (
            files.clone(),
            metrics.clone(),
            format!("{prefix}recording.json"),
        );
        let mut background = recording.background.lock();
        background.push(tokio::spawn(async move {
            store(&header_files, &header_metrics, &key, header).await;
        }));
        background.push(tokio::spawn(write_events(files, metrics, prefix, queue)));
        drop(background);
        recording
    }

    /// The recording's ID.
    pub fn id(&self) -> &RecordingId {
        &self.id
    }

    /// Starts recording one track: returns the queue its forwarder feeds (bounded: the
    /// forwarder drops rather than wait). `None` for a codec that cannot be recorded.
    pub fn track(
        &self,
        track: &TrackId,
        mime: &str,
        source: TrackSource,
        participant: Person,
        keyframe: KeyframeRequest,
    ) -> Option<mpsc::Sender<Tapped>> {
        let Some(codec) = Codec::of_mime(mime) else {
            warn!(%track, mime, "a track of this codec cannot be recorded");
            return None;
        };
        let kind = TrackKind::of(source);
        let n = self.next_track.fetch_add(1, Ordering::AcqRel) + 1;
        let name = format!("{n:03}-{}", kind.as_str());
        debug!(recording = %self.id, %track, name, "recording a track");
        let (tx, rx) = mpsc::channel(QUEUE);
        let writer = TrackWriter {
            recorder: TrackRecorder::new(codec, self.timing, rand::random()),
            prefix: format!("{}tracks/{name}/", self.prefix),
            name,
            kind,
            participant,
            files: self.files.clone(),
            metrics: self.metrics.clone(),
            keyframe,
            uploads: JoinSet::new(),
        };
        self.writers.lock().push(tokio::spawn(writer.run(rx)));
        Some(tx)
    }

    /// Something happened.
    pub fn event(&self, event: Event) {
        if let Some(events) = self.events.lock().as_ref() {
            let _ = events.send(event);
        }
    }

    /// Waits until every track writer has stored its last segment (their queues must be
    /// closed: the forwarders let go of them), the events are written, then stores
    /// `stopped.json`.
    pub async fn finish(&self, stopped: Stopped) {
        self.events.lock().take();
        let writers: Vec<_> = std::mem::take(&mut *self.writers.lock());
        let background: Vec<_> = std::mem::take(&mut *self.background.lock());
        for task in writers.into_iter().chain(background) {
            let _ = task.await;
        }
        let key = format!("{}stopped.json", self.prefix);
        store(&self.files, &self.metrics, &key, json(&stopped)).await;
        self.metrics.recordings_active.dec();
        info!(recording = %self.id, reason = ?stopped.reason, "recording stopped");
    }
}

async fn write_events(
    files: Files,
    metrics: Metrics,
    prefix: String,
    mut queue: mpsc::UnboundedReceiver<Event>,
) {
    let mut pending = Vec::new();
    let mut seq = 0u32;
    let mut alive_at: Option<tokio::time::Instant> = None;
    let mut every = tokio::time::interval(EVENTS_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let open = tokio::select! {
            event = queue.recv() => match event {
                Some(event) => {
                    pending.push(event);
                    continue;
                }
                None => false,
            },
            _ = every.tick() => true,
        };
        if !pending.is_empty() {
            seq += 1;
            let key = format!("{prefix}events/{seq:06}.json");
            store(&files, &metrics, &key, json(&pending)).await;
            pending.clear();
        }
        if open && alive_at.is_none_or(|at| at.elapsed() >= ALIVE_EVERY) {
            alive_at = Some(tokio::time::Instant::now());
            let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            store(
                &files,
                &metrics,
                &format!("{prefix}alive"),
                bytes::Bytes::from(now),
            )
            .await;
        }
        if !open {
            break;
        }
    }
}

struct TrackWriter {
    recorder: TrackRecorder,
    name: String,
    prefix: String,
    kind: TrackKind,
    participant: Person,
    files: Files,
    metrics: Metrics,
    keyframe: KeyframeRequest,
    uploads: JoinSet<()>,
}

impl TrackWriter {
    async fn run(mut self, mut queue: mpsc::Receiver<Tapped>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let outputs = self.recorder.start(Utc::now());
        self.carry_out(outputs);
        loop {
            let outputs = tokio::select! {
                tapped = queue.recv() => match tapped {
                    Some((packet, at)) => self.recorder.push(packet, at),
                    None => break,
                },
                _ = tick.tick() => self.recorder.tick(Utc::now()),
            };
            self.carry_out(outputs);
            // Finished uploads are reaped as they go.
            while self.uploads.try_join_next().is_some() {}
        }
        let outputs = self.recorder.finish(Utc::now());
        self.carry_out(outputs);
        while self.uploads.join_next().await.is_some() {}
        debug!(track = %self.name, dropped_frames = self.recorder.dropped_frames(), "track recorded");
    }

    fn carry_out(&mut self, outputs: Vec<track::Output>) {
        for output in outputs {
            match output {
                track::Output::RequestKeyframe => (self.keyframe)(),
                track::Output::Segment(segment) => {
                    let codec = self.recorder.codec();
                    let meta = SegmentJson {
                        track: &self.name,
                        kind: self.kind,
                        codec: codec.as_str(),
                        participant: &self.participant,
                        start: rfc3339(segment.start),
                        end: rfc3339(segment.end),
                        packets: segment.packets,
                    };
                    let meta = json(&meta);
                    let base = format!("{}{:06}", self.prefix, segment.seq);
                    let (files, metrics, kind) =
                        (self.files.clone(), self.metrics.clone(), self.kind);
                    let size = segment.bytes.len() as u64;
                    self.uploads.spawn(async move {
                        let file = format!("{base}.{}", codec.extension());
                        // The JSON only follows a stored segment: a segment without one is
                        // what a lost pod leaves, and is composed by its own duration.
                        if store(&files, &metrics, &file, segment.bytes).await {
                            metrics
                                .recording_segments
                                .with_label_values(&[kind.as_str()])
                                .inc();
                            metrics
                                .recording_bytes
                                .with_label_values(&[kind.as_str()])
                                .inc_by(size);
                            store(&files, &metrics, &format!("{base}.json"), meta).await;
                        }
                    });
                }
            }
        }
    }
}

//! A client of Janus' VideoRoom plugin (the reference SFU the benchmark measures Conclave's SFU
//! against), over Janus' HTTP API (REST requests and a long poll for events). Its peers, its
//! synthetic media and what it counts are those of [`Client`](super::Client): the same
//! webrtc-rs peer connections, the same Opus and VP8 generator with send stamps in the
//! payloads, the same [`Received`](super::Received) per track. Only the signaling differs.
//!
//! # Layout
//! - [`Session`]: one Janus session (`POST /janus`), shared by any number of publishers and
//!   subscribers; one task long-polls its events and hands each to the plugin handle it is for.
//! - [`Publisher`]: a handle that joins a room as publisher and sends Opus + VP8.
//! - [`Subscriber`]: a handle that subscribes to one or more publishers' feeds and counts what
//!   arrives.
//!
//! Janus offers subscribers their streams (the subscriber answers), and answers publishers'
//! offers, as Conclave's SFU does; local ICE candidates go to Janus as `trickle` requests.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use parking_lot::Mutex;
use proto::signal::{ClientMessage, PeerTarget};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_OPUS, MIME_TYPE_VP8};
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::peer_connection::{PeerConnection, RTCSessionDescription};

use super::{
    Connected, Generator, Layer, MediaPlan, ReceivedMap, Sinks, Transport, generate, peer,
    watch_keyframe_requests,
};

/// How long a request's event may take (a subscription's offer, a publisher's answer).
const EVENT_TIMEOUT: Duration = Duration::from_secs(30);

type Routes = Arc<Mutex<HashMap<u64, mpsc::UnboundedSender<Value>>>>;

/// One Janus session: the HTTP client, the session ID, and the long poll that routes events to
/// the handles by their `sender`.
#[derive(Debug)]
pub struct Session {
    http: reqwest::Client,
    /// `http://host:port/janus/{session}`.
    url: String,
    routes: Routes,
    poller: tokio::task::JoinHandle<()>,
    transactions: AtomicU64,
}

impl Session {
    /// Creates a session on the Janus at `base` (`http://127.0.0.1:8088/janus`) and starts
    /// its long poll.
    ///
    /// # Errors
    /// When Janus does not answer or refuses.
    pub async fn create(base: &str) -> Result<Arc<Self>> {
        let http = reqwest::Client::new();
        let answer = post(
            &http,
            base,
            json!({"janus": "create", "transaction": "create"}),
        )
        .await?;
        let id = answer["data"]["id"]
            .as_u64()
            .ok_or_else(|| anyhow!("Janus answered create with {answer}"))?;
        let url = format!("{base}/{id}");
        let routes: Routes = Arc::default();
        let poller = tokio::spawn(long_poll(
            http.clone(),
            format!("{url}?maxev=50"),
            Arc::clone(&routes),
        ));
        Ok(Arc::new(Self {
            http,
            url,
            routes,
            poller,
            transactions: AtomicU64::new(0),
        }))
    }

    fn transaction(&self) -> String {
        format!("t{}", self.transactions.fetch_add(1, Ordering::Relaxed))
    }

    /// Attaches a VideoRoom handle, whose events then reach it.
    async fn attach(self: &Arc<Self>) -> Result<Handle> {
        let answer = post(
            &self.http,
            &self.url,
            json!({"janus": "attach", "plugin": "janus.plugin.videoroom", "transaction": self.transaction()}),
        )
        .await?;
        let id = answer["data"]["id"]
            .as_u64()
            .ok_or_else(|| anyhow!("Janus answered attach with {answer}"))?;
        let (events_tx, events) = mpsc::unbounded_channel();
        self.routes.lock().insert(id, events_tx);
        Ok(Handle {
            session: Arc::clone(self),
            url: format!("{}/{id}", self.url),
            events,
        })
    }

    /// Destroys the session (and with it every handle and peer connection on Janus' side).
    pub async fn destroy(&self) {
        let _ = post(
            &self.http,
            &self.url,
            json!({"janus": "destroy", "transaction": self.transaction()}),
        )
        .await;
        self.poller.abort();
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.poller.abort();
    }
}

/// POSTs a Janus API request; the answer unless it is an error.
async fn post(http: &reqwest::Client, url: &str, body: Value) -> Result<Value> {
    let answer: Value = http
        .post(url)
        .json(&body)
        .send()
        .await
        .with_context(|| format!("POST {url}"))?
        .error_for_status()?
        .json()
        .await?;
    if answer["janus"] == "error" {
        bail!("Janus refused {}: {}", body["janus"], answer["error"]);
    }
    Ok(answer)
}

/// Long-polls the session's events and hands each to its handle, until the session ends.
async fn long_poll(http: reqwest::Client, url: String, routes: Routes) {
    loop {
        let answer = match http.get(&url).send().await {
            Ok(response) if response.status().is_success() => response.json::<Value>().await,
            // The session is gone (destroyed, or Janus stopped).
            Ok(_) | Err(_) => return,
        };
        let events = match answer {
            Ok(Value::Array(events)) => events,
            Ok(event) => vec![event],
            Err(_) => return,
        };
        let routes = routes.lock();
        for event in events {
            if let Some(route) = event["sender"].as_u64().and_then(|s| routes.get(&s)) {
                let _ = route.send(event);
            }
        }
    }
}

/// One VideoRoom plugin handle.
#[derive(Debug)]
struct Handle {
    session: Arc<Session>,
    /// `…/janus/{session}/{handle}`.
    url: String,
    events: mpsc::UnboundedReceiver<Value>,
}

impl Handle {
    /// Sends an asynchronous plugin request and waits for its event (the one with the same
    /// transaction): the plugin's data and the JSEP, if any.
    async fn request(&mut self, body: Value, jsep: Option<Value>) -> Result<(Value, Value)> {
        let transaction = self.session.transaction();
        let mut message = json!({"janus": "message", "transaction": transaction, "body": body});
        if let Some(jsep) = jsep {
            message["jsep"] = jsep;
        }
        let answer = post(&self.session.http, &self.url, message).await?;
        if answer["janus"] != "ack" {
            bail!("Janus answered {} with {answer}", body["request"]);
        }
        let event = self
            .wait(|event| event["transaction"] == transaction.as_str())
            .await
            .with_context(|| format!("waiting for the answer to {}", body["request"]))?;
        let data = event["plugindata"]["data"].clone();
        if data["videoroom"] == "event" && !data["error"].is_null() {
            bail!(
                "the VideoRoom refused {}: {}",
                body["request"],
                data["error"]
            );
        }
        Ok((data, event["jsep"].clone()))
    }

    /// Waits for an event `matches` accepts, skipping others.
    async fn wait(&mut self, matches: impl Fn(&Value) -> bool) -> Result<Value> {
        let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .map_err(|_| anyhow!("no event from Janus within {EVENT_TIMEOUT:?}"))?
                .ok_or_else(|| anyhow!("the Janus session ended"))?;
            if event["janus"] == "hangup" || event["janus"] == "detached" {
                bail!("Janus hung up: {event}");
            }
            if matches(&event) {
                return Ok(event);
            }
        }
    }

    /// Waits until Janus says the handle's peer connection is up (ICE and DTLS done).
    async fn webrtc_up(&mut self) -> Result<()> {
        self.wait(|event| event["janus"] == "webrtcup")
            .await
            .context("waiting for Janus' side of the connection to come up (webrtcup)")?;
        Ok(())
    }

    /// Forwards the peer connection's local ICE candidates to Janus as `trickle` requests.
    fn trickle(&self, mut candidates: mpsc::UnboundedReceiver<ClientMessage>) {
        let http = self.session.http.clone();
        let url = self.url.clone();
        let session = Arc::clone(&self.session);
        tokio::spawn(async move {
            while let Some(message) = candidates.recv().await {
                let ClientMessage::Candidate { candidate, .. } = message else {
                    continue;
                };
                let body = json!({
                    "janus": "trickle",
                    "transaction": session.transaction(),
                    "candidate": {
                        "candidate": candidate.candidate,
                        "sdpMid": candidate.sdp_mid,
                        "sdpMLineIndex": candidate.sdp_m_line_index,
                    },
                });
                if post(&http, &url, body).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// A peer connection of ours towards Janus, bound to `local`, its candidates trickled.
async fn janus_peer(
    handle: &Handle,
    local: SocketAddr,
    target: PeerTarget,
    sinks: &Sinks,
) -> Result<Arc<dyn PeerConnection>> {
    let (candidates_tx, candidates) = mpsc::unbounded_channel();
    let peer = peer(
        &[local],
        Transport::Udp,
        target,
        candidates_tx,
        sinks,
        Connected::default(),
    )
    .await?;
    handle.trickle(candidates);
    Ok(peer)
}

fn new_sinks() -> Sinks {
    Sinks {
        received: Arc::default(),
        remotes: Arc::default(),
        failed: Arc::new(AtomicBool::new(false)),
        sender_reports: Arc::default(),
        first_packet: Connected::default(),
    }
}

/// A synthetic Opus or VP8 track with its SSRC, as [`Client::publish`](super::Client::publish)
/// makes them (same codecs and parameters, so both servers see the same offer).
fn synthetic_track(video: bool) -> (Arc<TrackLocalStaticRTP>, u32) {
    let id = format!(
        "{}-{}",
        if video { "camera" } else { "microphone" },
        rand::random::<u32>()
    );
    let ssrc = rand::random::<u32>();
    let (mime_type, clock_rate, channels, sdp_fmtp_line, kind) = if video {
        (MIME_TYPE_VP8, 90_000, 0, "", RtpCodecKind::Video)
    } else {
        (
            MIME_TYPE_OPUS,
            48_000,
            2,
            "minptime=10;useinbandfec=1",
            RtpCodecKind::Audio,
        )
    };
    let track = TrackLocalStaticRTP::new(MediaStreamTrack::new(
        "local".into(),
        id.clone(),
        id,
        kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec: RTCRtpCodec {
                mime_type: mime_type.into(),
                clock_rate,
                channels,
                sdp_fmtp_line: sdp_fmtp_line.into(),
                rtcp_feedback: vec![],
            },
            ..Default::default()
        }],
    ));
    (Arc::new(track), ssrc)
}

/// A VideoRoom publisher sending synthetic Opus and VP8 (the generator of
/// [`Client::publish`](super::Client::publish)).
pub struct Publisher {
    handle: Handle,
    peer: Arc<dyn PeerConnection>,
    /// The publisher's ID in the room, which subscribers name as `feed`.
    pub feed: u64,
    /// Packets sent.
    pub sent: Arc<AtomicU64>,
    /// Keyframe requests (PLI/FIR) Janus sent to the video.
    pub keyframe_requests: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("handle", &self.handle.url)
            .field("feed", &self.feed)
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// Joins `room` as a publisher with media bound to `local`, publishes Opus + VP8 as
    /// `plan` says, and returns once Janus' side of the connection is up.
    ///
    /// # Errors
    /// Janus refusing a request, an event that does not come, webrtc errors.
    pub async fn publish(
        session: &Arc<Session>,
        room: u64,
        local: SocketAddr,
        plan: MediaPlan,
    ) -> Result<Self> {
        let mut handle = session.attach().await?;
        let (joined, _) = handle
            .request(
                json!({"request": "join", "ptype": "publisher", "room": room}),
                None,
            )
            .await?;
        let feed = joined["id"]
            .as_u64()
            .ok_or_else(|| anyhow!("the VideoRoom answered join with {joined}"))?;
        let peer = janus_peer(&handle, local, PeerTarget::Publisher, &new_sinks()).await?;
        let sent = Arc::new(AtomicU64::new(0));
        let keyframe_requests = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mut tracks = Vec::new();
        for video in [false, true] {
            let (track, ssrc) = synthetic_track(video);
            peer.add_track(Arc::clone(&track) as Arc<dyn TrackLocal>)
                .await?;
            tracks.push((track, ssrc, video));
        }
        let offer = peer.create_offer(None).await?;
        let sdp = offer.sdp.clone();
        peer.set_local_description(offer).await?;
        let (_, jsep) = handle
            .request(
                json!({"request": "publish", "audio": true, "video": true}),
                Some(json!({"type": "offer", "sdp": sdp})),
            )
            .await?;
        let answer = jsep["sdp"]
            .as_str()
            .ok_or_else(|| anyhow!("the VideoRoom's answer to publish has no SDP"))?;
        peer.set_remote_description(RTCSessionDescription::answer(answer.to_owned())?)
            .await?;
        for (track, ssrc, video) in tracks {
            let keyframe_wanted = Arc::new(AtomicBool::new(true));
            watch_keyframe_requests(
                Arc::clone(&track),
                vec![(ssrc, Arc::clone(&keyframe_wanted))],
                Arc::clone(&keyframe_requests),
            );
            // One layer, no simulcast, no audio-level extension: what `Client::publish` sends
            // without `MediaPlan::simulcast`.
            tokio::spawn(generate(Generator {
                track,
                video,
                layer: Layer {
                    ssrc,
                    index: None,
                    bps: plan.video_bps,
                    size: (640, 480),
                },
                plan,
                keyframe_wanted,
                paused: Arc::default(),
                extensions: Arc::default(),
                audio_level_id: Arc::default(),
                speech: Arc::default(),
                sent: Arc::clone(&sent),
                stop: Arc::clone(&stop),
            }));
        }
        handle.webrtc_up().await?;
        Ok(Self {
            handle,
            peer,
            feed,
            sent,
            keyframe_requests,
            stop,
        })
    }

    /// Stops the media and closes the peer connection.
    pub async fn close(self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.peer.close().await;
    }
}

/// A VideoRoom subscriber to one or more publishers' feeds.
pub struct Subscriber {
    handle: Handle,
    peer: Arc<dyn PeerConnection>,
    /// What arrived, by track ID (as [`Client::received`](super::Client::received)).
    pub received: ReceivedMap,
    failed: Arc<AtomicBool>,
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("url", &self.handle.url)
            .finish_non_exhaustive()
    }
}

impl Subscriber {
    /// Subscribes to every stream of `feeds` in `room` with media bound to `local`: `join` as
    /// subscriber, Janus' offer answered with `start`. Returns once Janus' side of the
    /// connection is up.
    ///
    /// # Errors
    /// Janus refusing a request, an event that does not come, webrtc errors.
    pub async fn subscribe(
        session: &Arc<Session>,
        room: u64,
        feeds: &[u64],
        local: SocketAddr,
    ) -> Result<Self> {
        let mut handle = session.attach().await?;
        let sinks = new_sinks();
        let peer = janus_peer(&handle, local, PeerTarget::Subscriber, &sinks).await?;
        let streams: Vec<Value> = feeds.iter().map(|feed| json!({"feed": feed})).collect();
        let (_, jsep) = handle
            .request(
                json!({"request": "join", "ptype": "subscriber", "room": room, "streams": streams}),
                None,
            )
            .await?;
        let offer = jsep["sdp"]
            .as_str()
            .ok_or_else(|| anyhow!("the VideoRoom's subscription has no offer"))?;
        peer.set_remote_description(RTCSessionDescription::offer(offer.to_owned())?)
            .await?;
        let answer = peer.create_answer(None).await?;
        let sdp = answer.sdp.clone();
        peer.set_local_description(answer).await?;
        handle
            .request(
                json!({"request": "start"}),
                Some(json!({"type": "answer", "sdp": sdp})),
            )
            .await?;
        handle.webrtc_up().await?;
        Ok(Self {
            handle,
            peer,
            received: sinks.received,
            failed: sinks.failed,
        })
    }

    /// Whether the peer connection failed (ICE or DTLS).
    pub fn media_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// Closes the peer connection.
    pub async fn close(self) {
        let _ = self.peer.close().await;
    }
}

//! A participant that keeps its meeting by itself, as the portal does: it joins through the
//! API (`POST /api/v1/join`), connects to the endpoint the answer names, publishes its media,
//! and when it loses the connection — the websocket closed, the SFU said `moved` or `wrongPod`,
//! media failed (ICE) — it asks the API again naming the pod it lost (`lostPod`), connects where
//! the API now says, and publishes again. The first attempt after losing the pod goes out at
//! once (the API holds it until the meeting has moved); other attempts back off as the
//! portal's do (0.5 s doubling to 10 s).
//!
//! It records every connection: when it was asked for, when it was admitted, when the first
//! media packet and the first keyframe arrived on it, and when and why it ended — so a test
//! measures "SFU killed → first frame again" from [`Attendee::connections`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use parking_lot::Mutex;
use proto::ConferenceId;
use proto::signal::{CloseReason, ErrorCode, ServerMessage, TrackSource};
use serde_json::Value;
use tokio::sync::watch;

use crate::{Client, MediaPlan};

/// How an [`Attendee`] joins and what it sends.
#[derive(Debug, Clone)]
pub struct AttendeeOptions {
    /// The API's base URL, e.g. `http://127.0.0.1:8080`.
    pub api: String,
    /// The body of `POST /api/v1/join`: `{"meetingId", "password"?, "displayName"?,
    /// "guestId"?}`. `lostPod` is added by the attendee.
    pub join: Value,
    /// A session token (`Authorization: Bearer`) for joining as an account; `None`: a guest.
    pub session_token: Option<String>,
    /// What it publishes after each admission (nothing: it only receives).
    pub sources: Vec<TrackSource>,
    /// How it publishes.
    pub plan: MediaPlan,
    /// The local address its media binds to; `None`: as [`Client::join_url`] chooses.
    pub media_ip: Option<std::net::IpAddr>,
}

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The SFU said `closed` with this reason.
    Closed(CloseReason),
    /// The SFU refused or dropped the session with this error.
    Refused(ErrorCode),
    /// The websocket closed without a goodbye (the SFU died, or the network failed).
    WebsocketClosed,
    /// A peer connection failed (ICE or DTLS).
    MediaFailed,
    /// The websocket could not be opened.
    Unreachable,
    /// [`Attendee::stop`].
    Stopped,
}

impl Ended {
    /// Whether the pod may be gone or does not hold the meeting: the next join names it as
    /// `lostPod`.
    fn lost_pod(self) -> bool {
        matches!(
            self,
            Ended::Closed(
                CloseReason::Moved
                    | CloseReason::Shutdown
                    | CloseReason::Gone
                    | CloseReason::ConnectionFailed
            ) | Ended::Refused(ErrorCode::WrongPod)
                | Ended::WebsocketClosed
                | Ended::MediaFailed
                | Ended::Unreachable
        )
    }

    /// Whether the meeting is over for this participant (no reconnect).
    fn is_final(self) -> bool {
        matches!(
            self,
            Ended::Stopped
                | Ended::Closed(
                    CloseReason::Left
                        | CloseReason::Excluded
                        | CloseReason::Ended
                        | CloseReason::Replaced
                )
                | Ended::Refused(
                    ErrorCode::Excluded
                        | ErrorCode::Ended
                        | ErrorCode::WrongConference
                        | ErrorCode::RoomFull
                )
        )
    }
}

/// One connection of an [`Attendee`], from the join through the API to its end.
#[derive(Debug, Clone)]
pub struct Connection {
    /// When the join through the API was first asked for this connection.
    pub asked_at: Instant,
    /// The pod the join named as lost.
    pub lost_pod: Option<String>,
    /// Calls to `POST /join` it took (retries after refusals such as `notPlacedYet`).
    pub api_calls: u32,
    /// The pod the API answered (`None` in standalone mode).
    pub pod: Option<String>,
    /// The signaling URL the API answered.
    pub endpoint: String,
    /// When the SFU admitted it (`joined`).
    pub joined_at: Option<Instant>,
    /// When the first media packet from anybody arrived on it.
    pub first_packet_at: Option<Instant>,
    /// When the first video keyframe from anybody arrived on it.
    pub first_keyframe_at: Option<Instant>,
    /// When it ended.
    pub ended_at: Option<Instant>,
    /// Why it ended.
    pub ended: Option<Ended>,
}

/// A participant that reconnects by itself; see the module documentation.
#[derive(Debug)]
pub struct Attendee {
    connections: Arc<Mutex<Vec<Connection>>>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<()>>,
}

/// How often a connected attendee looks at its media (failure, first packet).
const CHECK: Duration = Duration::from_millis(20);
/// How long the SFU has to answer `join`.
const JOIN_ANSWER: Duration = Duration::from_secs(10);

/// Milliseconds to wait before reconnect attempt `attempt` (0-based), as the portal waits:
/// 0.5 s doubling to 10 s, plus up to 20 % jitter.
pub fn backoff(attempt: u32) -> Duration {
    let base = 500u64.saturating_mul(1 << attempt.min(5)).min(10_000);
    let jitter = rand::random::<u64>() % (base / 5 + 1);
    Duration::from_millis(base + jitter)
}

impl Attendee {
    /// Starts keeping the meeting: joins at once and reconnects until [`Attendee::stop`] or
    /// a final refusal.
    pub fn start(options: AttendeeOptions) -> Self {
        let connections = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(keep(options, Arc::clone(&connections), stopped));
        Self {
            connections,
            stop,
            task,
        }
    }

    /// Every connection so far, the current one last.
    pub fn connections(&self) -> Vec<Connection> {
        self.connections.lock().clone()
    }

    /// Waits until `ok` holds for the connections, within `timeout`.
    ///
    /// # Errors
    /// When it did not hold in time, or the attendee gave up (its error).
    pub async fn wait_until(
        &mut self,
        timeout: Duration,
        ok: impl Fn(&[Connection]) -> bool,
    ) -> Result<Vec<Connection>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let connections = self.connections();
            if ok(&connections) {
                return Ok(connections);
            }
            if self.task.is_finished() {
                let result = (&mut self.task).await;
                return match result {
                    Ok(Err(err)) => Err(err.context("the attendee gave up")),
                    Ok(Ok(())) => bail!("the attendee stopped: {connections:?}"),
                    Err(err) => bail!("the attendee failed: {err}"),
                };
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("timed out; the connections: {connections:?}");
            }
            tokio::time::sleep(CHECK).await;
        }
    }

    /// Leaves the meeting and waits for the attendee to stop.
    ///
    /// # Errors
    /// The attendee's own error, if it gave up before.
    pub async fn stop(self) -> Result<()> {
        self.stop.send_replace(true);
        self.task
            .await
            .map_err(|err| anyhow!("the attendee failed: {err}"))?
    }
}

/// What `POST /join` answered.
struct Ticket {
    token: String,
    endpoint: String,
    pod: Option<String>,
    conference: ConferenceId,
}

/// The attendee's loop.
async fn keep(
    options: AttendeeOptions,
    connections: Arc<Mutex<Vec<Connection>>>,
    mut stopped: watch::Receiver<bool>,
) -> Result<()> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let mut lost_pod: Option<String> = None;
    let mut attempt: u32 = 0;
    let mut delay = Duration::ZERO;
    loop {
        if !delay.is_zero() {
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                _ = stopped.wait_for(|stop| *stop) => return Ok(()),
            }
        }
        let asked_at = Instant::now();
        let (ticket, api_calls) = tokio::select! {
            ticket = ask(&http, &options, lost_pod.as_deref()) => ticket?,
            _ = stopped.wait_for(|stop| *stop) => return Ok(()),
        };
        let index = {
            let mut all = connections.lock();
            all.push(Connection {
                asked_at,
                lost_pod: lost_pod.clone(),
                api_calls,
                pod: ticket.pod.clone(),
                endpoint: ticket.endpoint.clone(),
                joined_at: None,
                first_packet_at: None,
                first_keyframe_at: None,
                ended_at: None,
                ended: None,
            });
            all.len() - 1
        };
        let ended = attend(&options, &ticket, &connections, index, &mut stopped).await;
        {
            let mut all = connections.lock();
            all[index].ended_at = Some(Instant::now());
            all[index].ended = Some(ended);
        }
        if ended.is_final() {
            return if ended == Ended::Stopped {
                Ok(())
            } else {
                bail!("the meeting is over for this attendee: {ended:?}")
            };
        }
        let admitted = connections.lock()[index].joined_at.is_some();
        if admitted {
            attempt = 0;
        }
        lost_pod = if ended.lost_pod() {
            ticket.pod.clone()
        } else {
            None
        };
        // As the portal does: the first attempt after losing the pod goes out at once (the
        // API holds a join naming a lost pod until the meeting has moved), later ones back off.
        delay = if ended.lost_pod() && attempt == 0 {
            Duration::ZERO
        } else {
            backoff(attempt)
        };
        attempt = attempt.saturating_add(1);
    }
}

/// Asks `POST /join` until it answers a ticket: retries (with back-off) while the API is
/// unreachable or says to try again (`notPlacedYet`, 5xx); gives up on other refusals.
async fn ask(
    http: &reqwest::Client,
    options: &AttendeeOptions,
    lost_pod: Option<&str>,
) -> Result<(Ticket, u32)> {
    let mut body = options.join.clone();
    if let (Some(pod), Some(object)) = (lost_pod, body.as_object_mut()) {
        object.insert("lostPod".into(), Value::from(pod));
    }
    let url = format!("{}/api/v1/join", options.api.trim_end_matches('/'));
    let mut calls = 0u32;
    loop {
        calls += 1;
        let mut request = http.post(&url).json(&body);
        if let Some(token) = &options.session_token {
            request = request.bearer_auth(token);
        }
        let wait = match request.send().await {
            Err(_) => backoff(calls - 1),
            Ok(response) => {
                let status = response.status();
                let answer: Value = response.json().await.unwrap_or(Value::Null);
                if status.is_success() {
                    return Ok((ticket_of(&answer)?, calls));
                }
                let code = answer["error"]["code"].as_str().unwrap_or_default();
                if code == "notPlacedYet" || status.is_server_error() {
                    answer["error"]["retryAfter"]
                        .as_u64()
                        .map_or_else(|| backoff(calls - 1), Duration::from_secs)
                } else {
                    bail!("POST /join answered {status}: {answer}");
                }
            }
        };
        tokio::time::sleep(wait).await;
    }
}

fn ticket_of(answer: &Value) -> Result<Ticket> {
    let text = |pointer: &str| {
        answer
            .pointer(pointer)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("the join answer has no {pointer}: {answer}"))
    };
    Ok(Ticket {
        token: text("/token")?,
        endpoint: text("/endpoint")?,
        pod: answer["pod"].as_str().map(str::to_owned),
        conference: ConferenceId::from(text("/conference/id")?.as_str()),
    })
}

/// One connection: joins, publishes, and watches it until it ends.
async fn attend(
    options: &AttendeeOptions,
    ticket: &Ticket,
    connections: &Mutex<Vec<Connection>>,
    index: usize,
    stopped: &mut watch::Receiver<bool>,
) -> Ended {
    let Ok(mut client) = Client::join_url_from(
        &ticket.endpoint,
        &ticket.token,
        &ticket.conference,
        options.media_ip,
    )
    .await
    else {
        return Ended::Unreachable;
    };
    let mut message = Some(client.first.clone());
    let ended = loop {
        match message.take() {
            Some(ServerMessage::Joined { .. }) => {
                connections.lock()[index].joined_at = Some(Instant::now());
                if !options.sources.is_empty()
                    && client
                        .publish(&options.sources, options.plan)
                        .await
                        .is_err()
                {
                    break Ended::MediaFailed;
                }
            }
            Some(ServerMessage::Closed { reason }) => break Ended::Closed(reason),
            Some(ServerMessage::Error { code, .. }) if code.is_fatal() => {
                break Ended::Refused(code);
            }
            Some(_) | None => {}
        }
        if client.media_failed() {
            break Ended::MediaFailed;
        }
        {
            let mut all = connections.lock();
            let current = &mut all[index];
            current.first_packet_at = current.first_packet_at.or(client.first_packet_at());
            current.first_keyframe_at = current.first_keyframe_at.or(client.first_keyframe_at());
        }
        let waited = if connections.lock()[index].joined_at.is_none() {
            JOIN_ANSWER
        } else {
            CHECK
        };
        tokio::select! {
            next = client.events.recv() => match next {
                Some(next) => message = Some(next),
                None => break Ended::WebsocketClosed,
            },
            () = tokio::time::sleep(waited) => {
                if connections.lock()[index].joined_at.is_none() {
                    // Not admitted in time (and not waiting for the owner either).
                    if !matches!(client.first, ServerMessage::Waiting) {
                        break Ended::Unreachable;
                    }
                }
            }
            _ = stopped.wait_for(|stop| *stop) => {
                client.send(proto::signal::ClientMessage::Leave);
                break Ended::Stopped;
            }
        }
    };
    client.vanish().await;
    ended
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_to_ten_seconds_with_jitter() {
        for (attempt, base) in [
            (0, 500),
            (1, 1000),
            (2, 2000),
            (4, 8000),
            (5, 10_000),
            (30, 10_000),
        ] {
            let wait = backoff(attempt).as_millis() as u64;
            assert!(
                (base..=base + base / 5).contains(&wait),
                "{attempt}: {wait}"
            );
        }
    }

    #[test]
    fn a_lost_pod_is_named_in_the_next_join() {
        for lost in [
            Ended::Closed(CloseReason::Moved),
            Ended::Refused(ErrorCode::WrongPod),
            Ended::WebsocketClosed,
            Ended::MediaFailed,
            Ended::Closed(CloseReason::Shutdown),
        ] {
            assert!(lost.lost_pod(), "{lost:?}");
            assert!(!lost.is_final(), "{lost:?}");
        }
        for kept in [
            Ended::Closed(CloseReason::TooSlow),
            Ended::Closed(CloseReason::Revoked),
            Ended::Refused(ErrorCode::TokenExpired),
        ] {
            assert!(!kept.lost_pod(), "{kept:?}");
            assert!(!kept.is_final(), "{kept:?}");
        }
        for over in [
            Ended::Closed(CloseReason::Ended),
            Ended::Closed(CloseReason::Excluded),
            Ended::Refused(ErrorCode::RoomFull),
            Ended::Stopped,
        ] {
            assert!(over.is_final(), "{over:?}");
        }
    }
}

//! One answered call: its RTP socket, the prompt player, the keypad digits and the menu
//! ([`crate::ivr`]) driven on the real clock, and once admitted, the call's session in the
//! room ([`crate::room`]).
//!
//! When the join check admits the caller, the call enters the room at once (while "Correct ID"
//! plays). From then on the caller's G.711 is decoded and sent into the room as Opus, and
//! after the prompts the room's mix replaces silence in the call's RTP stream.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rsipstack::dialog::invite_dialog::InviteDialog;
use rtc::shared::marshal::{Marshal, Unmarshal};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};

use crate::dtmf::{Method, Rfc4733};
use crate::ivr::{Action, Answer, Event, Ivr, Outcome};
use crate::join::JoinClient;
use crate::metrics::Metrics;
use crate::prompt::{Prompt, Prompts};
use crate::room::{Admission, Room, RoomError};
use crate::sdp::Negotiated;

/// Samples in one 20 ms packet at 8 kHz.
const FRAME: usize = 160;

/// What the SIP side tells a call.
#[derive(Debug)]
pub enum CallEvent {
    /// The caller acknowledged the answer (ACK): media may flow.
    Confirmed,
    /// A digit arrived in a SIP INFO.
    InfoDigit(char),
    /// A re-INVITE changed the media (hold, unhold, a new address).
    Renegotiated(Negotiated),
    /// The dialog ended (BYE, CANCEL, timeout).
    Ended(String),
}

/// Everything a call needs, handed over by the SIP server.
pub struct CallSetup {
    /// The answered dialog (the call sends BYE through it).
    pub dialog: InviteDialog,
    /// The call's own RTP socket.
    pub socket: UdpSocket,
    /// What the offer/answer agreed.
    pub negotiated: Negotiated,
    /// Events from the SIP side.
    pub events: mpsc::UnboundedReceiver<CallEvent>,
    /// The request URI's user part.
    pub dialled: String,
    /// The caller's address (for the API's per-address throttling).
    pub caller: IpAddr,
    /// The caller ID (the From user part); the API names the caller by its last digits.
    pub caller_id: Option<String>,
    /// Shared prompts.
    pub prompts: Arc<Prompts>,
    /// The API client.
    pub join: JoinClient,
    /// Metrics.
    pub metrics: Metrics,
    /// How long the caller may stay silent at a question.
    pub digit_timeout: Duration,
}

impl std::fmt::Debug for CallSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallSetup")
            .field("negotiated", &self.negotiated)
            .field("dialled", &self.dialled)
            .finish_non_exhaustive()
    }
}

/// The RTP sender: sequence numbers, timestamps and the SSRC of our stream.
#[derive(Debug)]
struct RtpOut {
    ssrc: u32,
    sequence: u16,
    timestamp: u32,
    first: bool,
}

impl RtpOut {
    fn new() -> RtpOut {
        RtpOut {
            ssrc: rand::random(),
            sequence: rand::random(),
            timestamp: rand::random(),
            first: true,
        }
    }

    /// The next 20 ms packet, or `None` when it cannot be built.
    fn packet(&mut self, payload_type: u8, payload: Vec<u8>) -> Option<bytes::BytesMut> {
        let packet = rtc::rtp::Packet {
            header: rtc::rtp::Header {
                version: 2,
                marker: std::mem::take(&mut self.first),
                payload_type,
                sequence_number: self.sequence,
                timestamp: self.timestamp,
                ssrc: self.ssrc,
                ..Default::default()
            },
            payload: Bytes::from(payload),
        };
        self.sequence = self.sequence.wrapping_add(1);
        packet.marshal().ok()
    }

    /// Time goes on whether or not a packet was sent (hold): RFC 3550 timestamps follow the
    /// sampling clock.
    fn advance(&mut self) {
        self.timestamp = self.timestamp.wrapping_add(FRAME as u32);
    }
}

/// The prompt queue: the one playing and those after it.
#[derive(Debug, Default)]
struct Player {
    queue: VecDeque<Prompt>,
    position: usize,
}

impl Player {
    fn is_playing(&self) -> bool {
        !self.queue.is_empty()
    }

    /// The next frame of 160 samples (the last one padded with silence), and whether the
    /// queue just ran out.
    fn next_frame(&mut self, prompts: &Prompts, metrics: &Metrics) -> (Option<Vec<i16>>, bool) {
        let Some(&prompt) = self.queue.front() else {
            return (None, false);
        };
        if self.position == 0 {
            metrics
                .prompt_plays
                .with_label_values(&[prompt.name()])
                .inc();
            tracing::debug!(prompt = prompt.name(), "playing");
        }
        let samples = prompts.samples(prompt);
        let end = (self.position + FRAME).min(samples.len());
        let mut frame = samples[self.position.min(end)..end].to_vec();
        frame.resize(FRAME, 0);
        self.position = end;
        if end >= samples.len() {
            self.queue.pop_front();
            self.position = 0;
        }
        (Some(frame), self.queue.is_empty())
    }

    fn stop(&mut self) {
        self.queue.clear();
        self.position = 0;
    }
}

/// Runs the call until it ends.
pub async fn run(setup: CallSetup) {
    let CallSetup {
        dialog,
        socket,
        mut negotiated,
        mut events,
        dialled,
        caller,
        caller_id,
        prompts,
        join,
        metrics,
        digit_timeout,
    } = setup;
    let mut confirmed = false;
    let mut out = RtpOut::new();
    let mut player = Player::default();
    let mut rfc4733 = Rfc4733::default();
    let mut remote = negotiated.remote;
    let mut hang_up = false;
    let mut outcome: Option<Outcome> = None;
    let (answers_tx, mut answers) = mpsc::unbounded_channel::<(Answer, Option<Admission>)>();
    let (rooms_tx, mut rooms) = mpsc::unbounded_channel::<Result<Room, RoomError>>();
    let mut room: Option<Room> = None;
    let mut ticker = tokio::time::interval(Duration::from_millis(20));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut buf = vec![0u8; 1500];

    let (mut ivr, actions) = Ivr::start(&dialled, digit_timeout, Instant::now().into_std());
    let mut pending = VecDeque::from(actions);

    let reason = loop {
        // Carry out what the menu decided.
        while let Some(action) = pending.pop_front() {
            match action {
                Action::Play(prompt) => player.queue.push_back(prompt),
                Action::StopPrompts => player.stop(),
                Action::Check {
                    meeting_id,
                    password,
                } => {
                    let join = join.clone();
                    let answers = answers_tx.clone();
                    let caller_id = caller_id.clone();
                    tokio::spawn(async move {
                        let answer = join
                            .check(
                                &meeting_id,
                                password.as_deref(),
                                caller_id.as_deref(),
                                caller,
                            )
                            .await;
                        let _ = answers.send(answer);
                    });
                }
                Action::HangUp => hang_up = true,
                Action::Finished(result) => {
                    tracing::info!(outcome = result.as_str(), "menu finished");
                    metrics.calls.with_label_values(&[result.as_str()]).inc();
                    outcome = Some(result);
                }
            }
        }
        if hang_up && !player.is_playing() {
            if let Err(err) = dialog.bye().await {
                tracing::warn!(cause = %err, "BYE failed");
            }
            break "we hung up".to_owned();
        }
        let deadline = ivr.deadline().map(Instant::from_std);
        tokio::select! {
            _ = ticker.tick() => {
                if !confirmed {
                    continue;
                }
                let (mut frame, ran_out) = player.next_frame(&prompts, &metrics);
                if frame.is_none() && ivr.in_meeting()
                    && let Some(room) = room.as_mut()
                {
                    frame = room.mixed();
                }
                if negotiated.direction.we_send() && remote.port() != 0 {
                    let law = negotiated.law;
                    let payload = match &frame {
                        Some(samples) => law.encode(samples),
                        None => vec![law.silence(); FRAME],
                    };
                    if let Some(packet) = out.packet(law.payload_type(), payload)
                        && let Err(err) = socket.send_to(&packet, remote).await
                    {
                        tracing::debug!(cause = %err, "RTP send failed");
                    }
                }
                out.advance();
                if ran_out {
                    pending.extend(ivr.on(Event::PromptsDone, Instant::now().into_std()));
                }
            }
            received = socket.recv_from(&mut buf) => {
                let Ok((len, from)) = received else { continue };
                let Ok(packet) = rtc::rtp::Packet::unmarshal(&mut &buf[..len]) else { continue };
                // Symmetric RTP: follow a NAT that rewrote the caller's port (or an offer
                // without an address, on hold); another address is not taken over.
                if from != remote && from.ip() == remote.ip() || remote.ip().is_unspecified() {
                    remote = from;
                }
                if Some(packet.header.payload_type) == negotiated.telephone_event
                    && let Some(digit) = rfc4733.on_packet(packet.header.timestamp, &packet.payload)
                {
                    pending.extend(on_digit(&mut ivr, &metrics, digit, Method::Rfc4733));
                } else if packet.header.payload_type == negotiated.law.payload_type()
                    && ivr.in_meeting()
                    && let Some(room) = room.as_mut()
                {
                    room.send_voice(&negotiated.law.decode(&packet.payload)).await;
                }
            }
            event = events.recv() => match event {
                Some(CallEvent::Confirmed) => confirmed = true,
                Some(CallEvent::InfoDigit(digit)) => {
                    pending.extend(on_digit(&mut ivr, &metrics, digit, Method::Info));
                }
                Some(CallEvent::Renegotiated(update)) => {
                    tracing::info!(direction = ?update.direction, "media renegotiated");
                    remote = update.remote;
                    negotiated = update;
                }
                Some(CallEvent::Ended(reason)) => break reason,
                None => break "the SIP server stopped".to_owned(),
            },
            Some((answer, admission)) = answers.recv() => {
                tracing::debug!(?answer, "join check answered");
                if let Some(admission) = admission {
                    let rooms = rooms_tx.clone();
                    tokio::spawn(async move {
                        let _ = rooms.send(Room::join(&admission).await);
                    });
                }
                pending.extend(ivr.on(Event::Answer(answer), Instant::now().into_std()));
            }
            Some(joined) = rooms.recv() => match joined {
                Ok(joined) => room = Some(joined),
                Err(err) => {
                    tracing::error!(cause = %err, "the call cannot enter the room");
                    player.stop();
                    player.queue.extend([Prompt::Error, Prompt::Bye]);
                    hang_up = true;
                }
            },
            () = sleep_until(deadline) => {
                pending.extend(ivr.on_deadline(Instant::now().into_std()));
            }
        }
    };
    if let Some(room) = room {
        room.leave().await;
    }
    // A room still being entered is left as it comes.
    rooms.close();
    while let Ok(Ok(late)) = rooms.try_recv() {
        late.leave().await;
    }
    if outcome.is_none() {
        metrics.calls.with_label_values(&["abandoned"]).inc();
    }
    tracing::info!(%reason, in_meeting = ivr.in_meeting(), "call ended");
}

fn on_digit(ivr: &mut Ivr, metrics: &Metrics, digit: char, method: Method) -> Vec<Action> {
    metrics
        .dtmf_digits
        .with_label_values(&[method.as_str()])
        .inc();
    tracing::debug!(method = method.as_str(), "digit received");
    ivr.on(Event::Digit(digit), Instant::now().into_std())
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Binds a UDP socket for RTP on the first free port of `first..=last` (even ports, as RTP
/// customarily uses, RTCP being the odd one above).
///
/// # Errors
/// [`crate::Error::NoRtpPort`] when every port is taken.
pub async fn bind_rtp(
    ip: IpAddr,
    first: u16,
    last: u16,
    start_at: u16,
) -> crate::Result<UdpSocket> {
    let span = u32::from(last - first) + 1;
    for i in 0..span {
        let port = first + u16::try_from((u32::from(start_at) + i) % span).unwrap_or(0);
        if port % 2 == 1 && span > 1 {
            continue;
        }
        if let Ok(socket) = UdpSocket::bind(SocketAddr::new(ip, port)).await {
            return Ok(socket);
        }
    }
    Err(crate::Error::NoRtpPort { first, last })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_count_up_and_only_the_first_is_marked() {
        let mut out = RtpOut::new();
        let (seq, ts) = (out.sequence, out.timestamp);
        let first = out.packet(0, vec![0xFF; FRAME]).expect("packet");
        out.advance();
        let second = out.packet(0, vec![0xFF; FRAME]).expect("packet");
        let first = rtc::rtp::Packet::unmarshal(&mut &first[..]).expect("parse");
        let second = rtc::rtp::Packet::unmarshal(&mut &second[..]).expect("parse");
        assert!(first.header.marker && !second.header.marker);
        assert_eq!(first.header.sequence_number, seq);
        assert_eq!(second.header.sequence_number, seq.wrapping_add(1));
        assert_eq!(first.header.timestamp, ts);
        assert_eq!(second.header.timestamp, ts.wrapping_add(160));
        assert_eq!(first.header.ssrc, second.header.ssrc);
        assert_eq!(second.payload.len(), FRAME);
    }

    #[test]
    fn the_player_plays_prompts_in_order_padding_the_last_frame() {
        let prompts = Prompts::load(None).expect("prompts");
        let registry = prometheus::Registry::new();
        let metrics = Metrics::new(&registry).expect("metrics");
        let mut player = Player::default();
        player.queue.extend([Prompt::Bye, Prompt::Muted]);
        let expected = prompts.samples(Prompt::Bye).len().div_ceil(FRAME)
            + prompts.samples(Prompt::Muted).len().div_ceil(FRAME);
        let mut frames = 0;
        loop {
            let (frame, ran_out) = player.next_frame(&prompts, &metrics);
            assert_eq!(frame.expect("a frame").len(), FRAME);
            frames += 1;
            if ran_out {
                break;
            }
        }
        assert_eq!(frames, expected);
        assert_eq!(player.next_frame(&prompts, &metrics), (None, false));
        assert_eq!(metrics.prompt_plays.with_label_values(&["bye"]).get(), 1);
        assert_eq!(metrics.prompt_plays.with_label_values(&["muted"]).get(), 1);
    }
}

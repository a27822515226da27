//! One answered call: its RTP socket, the prompt player, the keypad digits and the menu
//! ([`crate::ivr`]) driven on the real clock, and once admitted, the call's session in the
//! room ([`crate::room`]).
//!
//! When the join check admits the caller, the call enters the room at once (while "Correct ID"
//! plays) and then says how many are there ("Started" for the first one in). From then on the
//! caller's G.711 is decoded and sent into the room as Opus, and the room (everyone but the
//! caller) goes out in the call's RTP stream, prompts playing over it: a tone when someone
//! joins, "Muted"/"Unmuted" for `*6` or a moderator's mute. The meeting ending or the caller's
//! exclusion plays "Bye" and hangs up; a session lost for another reason (the SFU pod went
//! away, the meeting moved) is entered again through the API, with the same ID and password.

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

use crate::codec::Voice;
use crate::conference::Conferences;
use crate::dtmf::{InBand, Method, Rfc4733};
use crate::ivr::{Action, Answer, Event, Ivr, MeetingCommand, MeetingKeys, Outcome};
use crate::join::JoinClient;
use crate::metrics::Metrics;
use crate::prompt::{Prompt, Prompts};
use crate::room::{Admission, Room, RoomError, RoomEvent};
use crate::sdp::Negotiated;
use proto::signal::CloseReason;

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
    /// The meetings' audio, shared by every call.
    pub conferences: Arc<Conferences>,
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
    fn advance(&mut self, ticks: u32) {
        self.timestamp = self.timestamp.wrapping_add(ticks);
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

/// Where the call stands with the room.
#[derive(Debug, Default)]
struct InRoom {
    /// The ID and password that admitted the caller, to enter again after a lost session.
    credentials: Option<(String, Option<String>)>,
    /// The caller muted themselves with `*6`.
    muted: bool,
    /// A speaker or moderator muted the caller.
    blocked: bool,
    /// Whether the first entry was announced (later entries, after a move, are silent).
    announced: bool,
    /// A new session is being sought.
    rejoining: bool,
    /// Whether the caller was told that the meeting is being recorded (told again only when a
    /// new recording starts, not when the session is entered again).
    recording: bool,
}

/// Entries tried after the session was lost, and the pause before each (the first at once:
/// the API holds a join for a meeting that is being moved until it has moved).
const REJOIN_PAUSES_MS: [u64; 8] = [0, 500, 1_000, 2_000, 4_000, 4_000, 8_000, 8_000];

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
        conferences,
    } = setup;
    let mut voice = match Voice::new(negotiated.codec) {
        Ok(voice) => voice,
        Err(err) => {
            tracing::error!(cause = %err, "the call's codec cannot be used");
            let _ = dialog.bye().await;
            return;
        }
    };
    let mut confirmed = false;
    let mut out = RtpOut::new();
    let mut stats = RtpStats::default();
    let mut player = Player::default();
    let mut rfc4733 = Rfc4733::default();
    let mut in_band = InBand::default();
    let mut keys = MeetingKeys::default();
    let mut remote = negotiated.remote;
    let mut hang_up = false;
    // Whether the call was counted in `conclave_sip_calls_total` (else: abandoned).
    let mut counted = false;
    let (answers_tx, mut answers) = mpsc::unbounded_channel::<(Answer, Option<Admission>)>();
    let (rooms_tx, mut rooms) = mpsc::unbounded_channel::<Result<Room, RoomError>>();
    let mut room: Option<Room> = None;
    let mut room_events: Option<mpsc::UnboundedReceiver<RoomEvent>> = None;
    let mut in_room = InRoom::default();
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
                    in_room.credentials = Some((meeting_id.clone(), password.clone()));
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
                    // A caller the API admitted counts as joined once in the room (the room
                    // may still be full).
                    if result != Outcome::Joined {
                        metrics.calls.with_label_values(&[result.as_str()]).inc();
                        counted = true;
                    }
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
                // The room is taken every 20 ms, heard or not, so that it stays current.
                let heard = room.as_mut().and_then(Room::mixed);
                let (prompt, ran_out) = player.next_frame(&prompts, &metrics);
                let frame = match (prompt, heard) {
                    (Some(prompt), Some(heard)) => Some(overlay(&prompt, &heard)),
                    (prompt, heard) => prompt.or(heard),
                };
                if negotiated.direction.we_send() && remote.port() != 0 {
                    let payload = voice.encode(frame.as_deref());
                    if let Some(packet) = out.packet(voice.codec().payload_type(), payload)
                        && let Err(err) = socket.send_to(&packet, remote).await
                    {
                        tracing::debug!(cause = %err, "RTP send failed");
                    }
                }
                out.advance(voice.codec().rtp_clock() / 50);
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
                    on_digit(
                        digit,
                        Method::Rfc4733,
                        (&mut ivr, &mut keys, &mut in_room),
                        room.as_mut(),
                        (&mut pending, &mut player),
                        &metrics,
                    );
                } else if packet.header.payload_type == voice.codec().payload_type() {
                    stats.on_packet(&packet.header, Instant::now(), voice.codec().rtp_clock());
                    let samples = voice.decode(&packet.payload);
                    // A phone that offered no telephone-event sends its keys as tones (G.711
                    // phones: gateways; a G.722 phone is an IP phone and sends events).
                    if negotiated.telephone_event.is_none()
                        && voice.codec().rate() == crate::conference::RATE
                        && let Some(digit) = in_band.on_samples(&samples)
                    {
                        on_digit(
                            digit,
                            Method::InBand,
                            (&mut ivr, &mut keys, &mut in_room),
                            room.as_mut(),
                            (&mut pending, &mut player),
                            &metrics,
                        );
                    }
                    if ivr.in_meeting() && let Some(room) = room.as_mut() {
                        room.send_voice(&samples, voice.codec().rate()).await;
                    }
                }
            }
            event = events.recv() => match event {
                Some(CallEvent::Confirmed) => confirmed = true,
                Some(CallEvent::InfoDigit(digit)) => {
                    on_digit(
                        digit,
                        Method::Info,
                        (&mut ivr, &mut keys, &mut in_room),
                        room.as_mut(),
                        (&mut pending, &mut player),
                        &metrics,
                    );
                }
                Some(CallEvent::Renegotiated(update)) => {
                    tracing::info!(direction = ?update.direction, codec = update.codec.name(), "media renegotiated");
                    if update.codec != voice.codec() {
                        match Voice::new(update.codec) {
                            Ok(changed) => voice = changed,
                            Err(err) => tracing::error!(cause = %err, "the new codec cannot be used"),
                        }
                    }
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
                    let conferences = Arc::clone(&conferences);
                    tokio::spawn(async move {
                        let _ = rooms.send(Room::join(&admission, &conferences).await);
                    });
                }
                pending.extend(ivr.on(Event::Answer(answer), Instant::now().into_std()));
            }
            Some(joined) = rooms.recv() => match joined {
                Ok(mut joined) => {
                    in_room.rejoining = false;
                    room_events = joined.take_events();
                    if in_room.muted || in_room.blocked {
                        joined.set_muted(true);
                    }
                    if !std::mem::replace(&mut in_room.announced, true) {
                        metrics.calls.with_label_values(&[Outcome::Joined.as_str()]).inc();
                        counted = true;
                        player.queue.extend(arrival_prompts(joined.others()));
                    } else {
                        tracing::info!("back in the room");
                    }
                    room = Some(joined);
                }
                Err(err) if in_room.rejoining => {
                    tracing::error!(cause = %err, "the call could not enter the room again");
                    player.stop();
                    player.queue.extend([Prompt::Error, Prompt::Bye]);
                    hang_up = true;
                }
                Err(err) if err.is_full() => {
                    tracing::info!(cause = %err, "the room is full");
                    metrics.calls.with_label_values(&[Outcome::Full.as_str()]).inc();
                    counted = true;
                    player.stop();
                    player.queue.extend([Prompt::ConferenceFull, Prompt::Bye]);
                    hang_up = true;
                }
                Err(err) => {
                    tracing::error!(cause = %err, "the call cannot enter the room");
                    metrics.calls.with_label_values(&[Outcome::Error.as_str()]).inc();
                    counted = true;
                    player.stop();
                    player.queue.extend([Prompt::Error, Prompt::Bye]);
                    hang_up = true;
                }
            },
            Some(event) = next_event(&mut room_events) => match event {
                RoomEvent::ParticipantJoined => {
                    if !player.queue.contains(&Prompt::NewParticipant) {
                        player.queue.push_back(Prompt::NewParticipant);
                    }
                }
                RoomEvent::Recording(active) => {
                    if active && !in_room.recording {
                        player.queue.push_back(Prompt::Recording);
                    }
                    in_room.recording = active;
                }
                RoomEvent::MicrophoneBlocked(blocked) => {
                    in_room.blocked = blocked;
                    if let Some(room) = room.as_mut() {
                        room.set_muted(blocked || in_room.muted);
                    }
                    if blocked {
                        player.queue.push_back(Prompt::Muted);
                    } else if !in_room.muted {
                        player.queue.push_back(Prompt::Unmuted);
                    }
                }
                RoomEvent::Closed(reason @ (CloseReason::Ended | CloseReason::Excluded)) => {
                    tracing::info!(reason = reason.as_str(), "the room closed the session");
                    room_events = None;
                    if let Some(gone) = room.take() {
                        gone.leave().await;
                    }
                    player.stop();
                    player.queue.push_back(Prompt::Bye);
                    hang_up = true;
                }
                RoomEvent::Closed(_) | RoomEvent::Lost => {
                    tracing::info!(?event, "the session in the room was lost; entering again");
                    room_events = None;
                    if let Some(gone) = room.take() {
                        gone.leave().await;
                    }
                    in_room.rejoining = true;
                    if let Some((meeting_id, password)) = in_room.credentials.clone() {
                        tokio::spawn(rejoin(
                            join.clone(),
                            (meeting_id, password),
                            (caller_id.clone(), caller),
                            Arc::clone(&conferences),
                            rooms_tx.clone(),
                        ));
                    }
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
    if !counted {
        metrics.calls.with_label_values(&["abandoned"]).inc();
    }
    stats.report(&metrics, voice.codec().name());
    tracing::info!(
        %reason,
        in_meeting = ivr.in_meeting(),
        lost = stats.lost(),
        jitter_ms = stats.jitter_seconds() * 1_000.0,
        "call ended"
    );
}

/// What a caller hears on entering: "Started" and "You are the first participant" for the
/// first one in, the number of others otherwise.
fn arrival_prompts(others: usize) -> Vec<Prompt> {
    if others == 0 {
        vec![Prompt::Started, Prompt::participants(0)]
    } else {
        vec![Prompt::participants(
            u32::try_from(others).unwrap_or(u32::MAX),
        )]
    }
}

/// A prompt over the room: both heard, clipped.
fn overlay(prompt: &[i16], room: &[i16]) -> Vec<i16> {
    prompt
        .iter()
        .zip(room)
        .map(|(&a, &b)| a.saturating_add(b))
        .collect()
}

/// Enters the meeting again after the session was lost: the join check with the same
/// credentials, then the room, a few times with growing pauses. Sends the last failure when
/// every try failed.
async fn rejoin(
    join: JoinClient,
    (meeting_id, password): (String, Option<String>),
    (caller_id, caller): (Option<String>, IpAddr),
    conferences: Arc<Conferences>,
    rooms: mpsc::UnboundedSender<Result<Room, RoomError>>,
) {
    let mut last = RoomError::from("no try was made".to_owned());
    for pause in REJOIN_PAUSES_MS {
        tokio::time::sleep(Duration::from_millis(pause)).await;
        if rooms.is_closed() {
            return;
        }
        let (answer, admission) = join
            .check(
                &meeting_id,
                password.as_deref(),
                caller_id.as_deref(),
                caller,
            )
            .await;
        let Some(admission) = admission else {
            last = RoomError::from(format!("the join check answered {answer:?}"));
            if matches!(answer, Answer::NotActive | Answer::WrongCredentials) {
                break;
            }
            continue;
        };
        match Room::join(&admission, &conferences).await {
            Ok(room) => {
                let _ = rooms.send(Ok(room));
                return;
            }
            Err(err) => last = err,
        }
    }
    let _ = rooms.send(Err(last));
}

async fn next_event(events: &mut Option<mpsc::UnboundedReceiver<RoomEvent>>) -> Option<RoomEvent> {
    match events {
        Some(events) => events.recv().await,
        None => std::future::pending().await,
    }
}

/// A digit: to the menu while it runs, to the meeting's keys once in (`*6`).
fn on_digit(
    digit: char,
    method: Method,
    (ivr, keys, in_room): (&mut Ivr, &mut MeetingKeys, &mut InRoom),
    room: Option<&mut Room>,
    (pending, player): (&mut VecDeque<Action>, &mut Player),
    metrics: &Metrics,
) {
    metrics
        .dtmf_digits
        .with_label_values(&[method.as_str()])
        .inc();
    tracing::debug!(method = method.as_str(), "digit received");
    if !ivr.in_meeting() {
        pending.extend(ivr.on(Event::Digit(digit), Instant::now().into_std()));
        return;
    }
    match keys.on(digit) {
        Some(MeetingCommand::ToggleMute) if in_room.blocked => {
            // A moderator's mute holds until they lift it.
            player.queue.push_back(Prompt::Muted);
        }
        Some(MeetingCommand::ToggleMute) => {
            in_room.muted = !in_room.muted;
            if let Some(room) = room {
                room.set_muted(in_room.muted);
            }
            tracing::info!(muted = in_room.muted, "the caller toggled mute");
            player.queue.push_back(if in_room.muted {
                Prompt::Muted
            } else {
                Prompt::Unmuted
            });
        }
        None => {}
    }
}

/// The caller's RTP as received: loss by sequence numbers and interarrival jitter
/// (RFC 3550, section 6.4.1 and appendix A.8), summarised in the metrics when the call ends.
#[derive(Debug, Default)]
struct RtpStats {
    first: Option<u16>,
    /// The highest sequence number, extended with the wrap count.
    highest: u32,
    received: u64,
    /// The previous packet's transit time, in RTP clock units.
    transit: Option<f64>,
    /// Jitter in RTP clock units.
    jitter: f64,
    /// The RTP clock's ticks per second.
    clock: f64,
    start: Option<Instant>,
}

impl RtpStats {
    fn on_packet(&mut self, header: &rtc::rtp::Header, now: Instant, clock: u32) {
        self.clock = f64::from(clock);
        let sequence = header.sequence_number;
        let start = *self.start.get_or_insert(now);
        match self.first {
            None => {
                self.first = Some(sequence);
                self.highest = u32::from(sequence);
            }
            Some(_) => {
                let current = self.highest as u16;
                let ahead = sequence.wrapping_sub(current);
                if ahead != 0 && ahead < 0x8000 {
                    self.highest += u32::from(ahead);
                }
            }
        }
        self.received += 1;
        let arrival = now.duration_since(start).as_secs_f64() * self.clock;
        let transit = arrival - f64::from(header.timestamp);
        if let Some(previous) = self.transit.replace(transit) {
            let d = (transit - previous).abs();
            // Timestamps wrap: a jump of half the clock is not jitter.
            if d < f64::from(u32::MAX / 2) {
                self.jitter += (d - self.jitter) / 16.0;
            }
        }
    }

    fn lost(&self) -> u64 {
        let Some(first) = self.first else {
            return 0;
        };
        let expected = u64::from(self.highest - u32::from(first)) + 1;
        expected.saturating_sub(self.received)
    }

    fn jitter_seconds(&self) -> f64 {
        if self.clock > 0.0 {
            self.jitter / self.clock
        } else {
            0.0
        }
    }

    fn report(&self, metrics: &Metrics, codec: &str) {
        if self.first.is_none() {
            return;
        }
        metrics
            .rtp_lost
            .with_label_values(&[codec])
            .inc_by(self.lost());
        metrics.rtp_jitter_seconds.observe(self.jitter_seconds());
    }
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
        out.advance(160);
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

    #[test]
    fn rtp_loss_and_jitter_are_measured_as_rfc_3550_says() {
        let mut stats = RtpStats::default();
        let start = Instant::now();
        let header = |sequence: u16, timestamp: u32| rtc::rtp::Header {
            sequence_number: sequence,
            timestamp,
            ..Default::default()
        };
        // Steady 20 ms packets across the sequence wrap, two of them lost: no jitter.
        for n in 0u16..50 {
            if n == 10 || n == 11 {
                continue;
            }
            let sequence = 65_530u16.wrapping_add(n);
            let at = start + Duration::from_millis(20 * u64::from(n));
            stats.on_packet(&header(sequence, 160 * u32::from(n)), at, 8_000);
        }
        assert_eq!(stats.lost(), 2);
        assert!(
            stats.jitter_seconds() < 0.000_2,
            "{}",
            stats.jitter_seconds()
        );
        // A duplicate and a late packet do not count as loss or as progress.
        stats.on_packet(&header(65_530u16.wrapping_add(49), 160 * 49), start, 8_000);
        assert_eq!(stats.lost(), 1, "the duplicate counts as received");
        // Packets arriving 10 ms early and late in turn: jitter grows towards 10 ms.
        for n in 50u16..250 {
            let skew = if n % 2 == 0 { 10 } else { 0 };
            let at = start + Duration::from_millis(20 * u64::from(n) + skew);
            stats.on_packet(
                &header(65_530u16.wrapping_add(n), 160 * u32::from(n)),
                at,
                8_000,
            );
        }
        let jitter = stats.jitter_seconds();
        assert!((0.008..0.011).contains(&jitter), "{jitter}");
    }

    #[test]
    fn the_first_one_in_hears_started_the_others_how_many_are_there() {
        assert_eq!(
            arrival_prompts(0),
            vec![Prompt::Started, Prompt::Participants(0)]
        );
        assert_eq!(arrival_prompts(1), vec![Prompt::Participants(1)]);
        assert_eq!(arrival_prompts(5), vec![Prompt::Participants(5)]);
        assert_eq!(arrival_prompts(40), vec![Prompt::Participants(6)]);
        assert_eq!(Prompt::Participants(6).name(), "participants-more");
    }

    #[test]
    fn a_prompt_plays_over_the_room_without_wrapping() {
        assert_eq!(
            overlay(&[100, 30_000, -30_000], &[5, 10_000, -10_000]),
            vec![105, i16::MAX, i16::MIN]
        );
    }
}

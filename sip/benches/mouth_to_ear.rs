//! Mouth-to-ear delay through the gateway, both ways, with real peers on loopback (as root, in
//! a network namespace of its own): the API with the SFU embedded, the gateway, sipp as the
//! phone's SIP side with the bench's own RTP socket as its media, and a WebRTC participant (the
//! gateway's room client with a conference of its own, standing in for a browser).
//! - **room → phone**: the participant starts a 1 kHz tone; the time until the first 20 ms
//!   packet with it arrives at the phone's socket.
//! - **phone → room**: the phone starts a 440 Hz tone; the time until the participant's decoded
//!   audio has it (through its own jitter buffer, as a browser's).
//!
//! `cargo bench -p sip --bench mouth_to_ear --profile dev` (RUNS=10). Results in
//! `<target dir>/bench-results/sip-mouth-to-ear.json` and stdout.

#[path = "../tests/support/mod.rs"]
mod support;
#[path = "../tests/support/api.rs"]
mod test_api;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rtc::shared::marshal::{Marshal, Unmarshal};
use sip::conference::Conferences;
use sip::g711::Law;
use sip::prompt::Prompt;
use sip::room::{Admission, Room};
use sip::tone::{power, sine};
use support::{TestGateway, config, scenario, sipp};

const PHONE_RTP: u16 = 47030;
/// How long each tone lasts, and the quiet after it.
const TONE: Duration = Duration::from_millis(400);
const QUIET: Duration = Duration::from_millis(800);

/// When each side's tone started, and when the other side first heard it.
#[derive(Default)]
struct Marks {
    speaker_tone_at: Option<Instant>,
    phone_heard_at: Option<Instant>,
    phone_tone_at: Option<Instant>,
    speaker_heard_at: Option<Instant>,
}

fn main() {
    if !loadgen::netns::isolate() {
        return;
    }
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(bench(runs));
}

async fn bench(runs: usize) {
    let api = test_api::Api::start_with_sfu().await;
    let gateway = TestGateway::start(config(&api.url)).await;
    let joined = api.join_as_guest("Participant").await;
    let conference: proto::ConferenceId =
        serde_json::from_value(joined["conference"]["id"].clone()).expect("an ID");
    let registry = prometheus::Registry::new();
    let conferences = Conferences::new(sip::metrics::Metrics::new(&registry).expect("metrics"));
    let room = Room::join(
        &Admission {
            token: joined["token"].as_str().expect("a token").to_owned(),
            endpoint: joined["endpoint"].as_str().expect("an endpoint").to_owned(),
            conference,
        },
        &conferences,
    )
    .await
    .expect("the participant joins");
    let marks = Arc::new(Mutex::new(Marks::default()));
    let participant = tokio::spawn(participant(room, Arc::clone(&marks)));
    let phone = tokio::spawn(phone(Arc::clone(&marks)));

    let dir = tempfile::tempdir().expect("tempdir");
    let length = (QUIET + TONE) * 2 * u32::try_from(runs).unwrap_or(1) + Duration::from_secs(20);
    let call = scenario(
        dir.path(),
        "voice.xml",
        &[
            ("MEETING_ID", &api.meeting_id),
            ("PASSWORD", &api.password),
            ("MEDIA_PORT", &PHONE_RTP.to_string()),
            ("MILLISECONDS", &length.as_millis().to_string()),
        ],
    );
    let run = tokio::spawn(async move { sipp(&call, "u1", 5080).await });
    gateway
        .wait_for_at_least(
            "conclave_sip_prompt_plays_total",
            ("prompt", Prompt::participants(1).name()),
            1.0,
        )
        .await;
    // The prompts end within 2 s; from then on the call carries only the room.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let (mut to_phone, mut to_room) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        for towards_phone in [true, false] {
            {
                let mut marks = marks.lock().expect("lock");
                *marks = Marks::default();
                let now = Some(Instant::now());
                if towards_phone {
                    marks.speaker_tone_at = now;
                } else {
                    marks.phone_tone_at = now;
                }
            }
            tokio::time::sleep(TONE + QUIET).await;
            let marks = marks.lock().expect("lock");
            let delay = if towards_phone {
                marks.phone_heard_at.zip(marks.speaker_tone_at)
            } else {
                marks.speaker_heard_at.zip(marks.phone_tone_at)
            }
            .map(|(heard, started)| heard.duration_since(started));
            let delay = delay.expect("the tone was heard on the other side");
            if towards_phone {
                to_phone.push(delay);
            } else {
                to_room.push(delay);
            }
        }
    }
    participant.abort();
    phone.abort();
    run.abort();
    gateway.gateway.stop().await;

    let summary = |mut delays: Vec<Duration>| {
        delays.sort();
        let ms = |d: &Duration| (d.as_secs_f64() * 10_000.0).round() / 10.0;
        serde_json::json!({
            "ms_each": delays.iter().map(ms).collect::<Vec<_>>(),
            "ms_p50": delays.get(delays.len() / 2).map(ms),
            "ms_max": delays.last().map(ms),
        })
    };
    let result = serde_json::json!({
        "what": "tone start at one side -> first 20 ms frame with it at the other, through the SFU and the gateway, on loopback",
        "room_to_phone": summary(to_phone),
        "phone_to_room": summary(to_room),
    });
    let text = serde_json::to_string_pretty(&result).expect("json");
    println!("{text}");
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let dir = std::path::Path::new(&target).join("bench-results");
    std::fs::create_dir_all(&dir).expect("the results folder");
    std::fs::write(dir.join("sip-mouth-to-ear.json"), text).expect("the results file");
}

/// The WebRTC participant: every 20 ms speaks (quiet, or 1 kHz while its tone runs) and
/// listens for the phone's 440 Hz.
async fn participant(mut room: Room, marks: Arc<Mutex<Marks>>) {
    let tone = sine(1_000.0, 8_000, 8_000, 8_000);
    let mut ticker = tokio::time::interval(Duration::from_millis(20));
    let mut offset = 0;
    loop {
        ticker.tick().await;
        let speaking = marks
            .lock()
            .expect("lock")
            .speaker_tone_at
            .is_some_and(|at| at.elapsed() < TONE);
        let frame: Vec<i16> = if speaking {
            (0..160).map(|i| tone[(offset + i) % tone.len()]).collect()
        } else {
            vec![0; 160]
        };
        offset = (offset + 160) % tone.len();
        room.send_voice(&frame, 8_000).await;
        if let Some(heard) = room.mixed()
            && power(&heard, 8_000, 440.0) > 1_000_000.0
        {
            let mut marks = marks.lock().expect("lock");
            if marks.phone_tone_at.is_some() && marks.speaker_heard_at.is_none() {
                marks.speaker_heard_at = Some(Instant::now());
            }
        }
    }
}

/// The phone's RTP: every 20 ms quiet, or 440 Hz while its tone runs; notes when the first
/// packet with the participant's 1 kHz arrives.
async fn phone(marks: Arc<Mutex<Marks>>) {
    let socket = tokio::net::UdpSocket::bind(("127.0.0.1", PHONE_RTP))
        .await
        .expect("the phone's RTP port");
    let mut buf = vec![0u8; 1_500];
    let (_, gateway) = socket.recv_from(&mut buf).await.expect("a first packet");
    let tone = sine(440.0, 8_000, 8_000, 8_000);
    let mut ticker = tokio::time::interval(Duration::from_millis(20));
    let (mut sequence, mut offset) = (0u16, 0usize);
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                let speaking = marks
                    .lock()
                    .expect("lock")
                    .phone_tone_at
                    .is_some_and(|at| at.elapsed() < TONE);
                let frame: Vec<i16> = if speaking {
                    (0..160).map(|i| tone[(offset + i) % tone.len()]).collect()
                } else {
                    vec![0; 160]
                };
                offset = (offset + 160) % tone.len();
                let packet = rtc::rtp::Packet {
                    header: rtc::rtp::Header {
                        version: 2,
                        payload_type: 0,
                        sequence_number: sequence,
                        timestamp: u32::from(sequence).wrapping_mul(160),
                        ssrc: 0xbe11,
                        ..Default::default()
                    },
                    payload: Bytes::from(Law::Pcmu.encode(&frame)),
                };
                sequence = sequence.wrapping_add(1);
                if let Ok(data) = packet.marshal() {
                    let _ = socket.send_to(&data, gateway).await;
                }
            }
            received = socket.recv_from(&mut buf) => {
                let Ok((len, _)) = received else { continue };
                let Ok(packet) = rtc::rtp::Packet::unmarshal(&mut &buf[..len]) else { continue };
                let heard = Law::Pcmu.decode(&packet.payload);
                if power(&heard, 8_000, 1_000.0) > 1_000_000.0 {
                    let mut marks = marks.lock().expect("lock");
                    if marks.speaker_tone_at.is_some() && marks.phone_heard_at.is_none() {
                        marks.phone_heard_at = Some(Instant::now());
                    }
                }
            }
        }
    }
}

//! The gateway's media work per call and per meeting, on one core, without the network:
//! - **per call and 20 ms**: the caller's G.711 decoded and encoded to Opus (8 kHz, as the
//!   call does), and the call's share of the room encoded to G.711;
//! - **per meeting and 20 ms**: a meeting with `CALLERS` phones (default 10), each also
//!   speaking into the room, so `CALLERS` tracks arrive once through every call's session
//!   (`CALLERS`² packets offered, `CALLERS` decoded), jitter-buffered, decoded, summed and
//!   handed out minus each caller's voice ([`sip::conference::Conference::tick`]).
//!
//! Calls per core = 20 ms / (per-call work + the meeting's work / `CALLERS`). What is not in it:
//! the webrtc side (SRTP, ICE, the RTP interceptors of each call's two peer connections) and
//! the sockets; `conclave_sip_mix_seconds` measures the meeting's share in production.
//!
//! `cargo bench -p sip --bench phones` (FRAMES=1500 by default, 30 s of audio). Results in
//! `<target dir>/bench-results/sip-phones.json` and stdout.

use std::time::{Duration, Instant};

use bytes::Bytes;
use sip::conference::{Conference, FRAME, RATE};
use sip::g711::Law;
use sip::tone::sine;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let callers = env("CALLERS", 10);
    let frames = env("FRAMES", 1_500);
    // Speech-like input: a few tones that change, so that the encoders do real work.
    let voices: Vec<Vec<i16>> = (0..callers)
        .map(|c| {
            let base = 200.0 + 37.0 * c as f64;
            let a = sine(base, RATE, FRAME * frames, 6_000);
            let b = sine(base * 2.7, RATE, FRAME * frames, 3_000);
            a.iter()
                .zip(&b)
                .map(|(x, y)| x.saturating_add(*y))
                .collect()
        })
        .collect();

    // Per call: G.711 in → Opus out, and the room's share → G.711 out.
    let law = Law::Pcmu;
    let mut encoder = opus::Encoder::new(RATE, opus::Channels::Mono, opus::Application::Voip)
        .expect("an encoder");
    encoder
        .set_bitrate(opus::Bitrate::Bits(16_000))
        .expect("bitrate");
    encoder.set_inband_fec(true).expect("fec");
    encoder
        .set_complexity(sip::room::ENCODER_COMPLEXITY)
        .expect("complexity");
    encoder.set_packet_loss_perc(5).expect("loss");
    let phone_in: Vec<Vec<u8>> = voices[0].chunks(FRAME).map(|f| law.encode(f)).collect();
    let mut packets: Vec<Vec<Bytes>> = vec![Vec::with_capacity(frames); callers];
    let mut opus_buf = [0u8; 1_500];
    let started = Instant::now();
    for (n, payload) in phone_in.iter().enumerate() {
        let pcm = law.decode(payload);
        let len = encoder.encode(&pcm, &mut opus_buf).expect("encode");
        packets[0].push(Bytes::copy_from_slice(&opus_buf[..len]));
        let share = &voices[1 % callers][n * FRAME..(n + 1) * FRAME];
        std::hint::black_box(law.encode(share));
    }
    let per_call = started.elapsed() / u32::try_from(frames).unwrap_or(u32::MAX);
    // The other callers' packets, encoded outside the timing.
    for (c, voice) in voices.iter().enumerate().skip(1) {
        let mut encoder = opus::Encoder::new(RATE, opus::Channels::Mono, opus::Application::Voip)
            .expect("an encoder");
        encoder
            .set_bitrate(opus::Bitrate::Bits(16_000))
            .expect("bitrate");
        for frame in voice.chunks(FRAME) {
            let len = encoder.encode(frame, &mut opus_buf).expect("encode");
            packets[c].push(Bytes::copy_from_slice(&opus_buf[..len]));
        }
    }

    // Per meeting: every caller's track offered through every call, then one tick.
    let conference = Conference::detached(proto::ConferenceId::from("bench"), None);
    let mut members: Vec<_> = (0..callers).map(|_| conference.enter()).collect();
    for (c, member) in members.iter().enumerate() {
        member.set_own(&format!("t{c}"));
    }
    let mut ticks = Vec::with_capacity(frames);
    for n in 0..frames {
        let started = Instant::now();
        for (c, track) in packets.iter().enumerate() {
            let name = format!("t{c}");
            for _call in 0..callers {
                conference.push(&name, n as u16, track[n].clone());
            }
        }
        conference.tick();
        for member in &mut members {
            std::hint::black_box(member.next_frame());
        }
        ticks.push(started.elapsed());
    }
    let counts = conference.counts();
    // Each source keeps one packet as its cushion at the end.
    assert_eq!(
        counts.decoded,
        (callers * (frames - 1)) as u64,
        "{counts:?}"
    );
    ticks.sort();
    let pick = |q: f64| ticks[((ticks.len() - 1) as f64 * q) as usize];
    let mean = ticks.iter().sum::<Duration>() / u32::try_from(ticks.len()).unwrap_or(1);
    let frame_budget = Duration::from_millis(20);
    let per_call_total = per_call + mean / u32::try_from(callers).unwrap_or(1);
    let calls_per_core = frame_budget.as_secs_f64() / per_call_total.as_secs_f64();
    let us = |d: Duration| (d.as_secs_f64() * 1e6 * 10.0).round() / 10.0;
    let result = serde_json::json!({
        "what": "media work of the SIP gateway on one core, without network and webrtc",
        "callers_in_the_meeting": callers,
        "frames": frames,
        "per_call_us_per_20ms": us(per_call),
        "meeting_mix_us_per_20ms": { "mean": us(mean), "p50": us(pick(0.5)), "p99": us(pick(0.99)), "max": us(pick(1.0)) },
        "goal_meeting_mix_us_per_20ms": 5_000,
        "calls_per_core": calls_per_core.floor(),
        "goal_calls_per_core": 200,
    });
    let text = serde_json::to_string_pretty(&result).expect("json");
    println!("{text}");
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let dir = std::path::Path::new(&target).join("bench-results");
    std::fs::create_dir_all(&dir).expect("the results folder");
    std::fs::write(dir.join("sip-phones.json"), text).expect("the results file");
}

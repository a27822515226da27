//! Media with real peers: a real API on SQLite with the SFU embedded (as `conclave standalone`
//! runs them), the gateway, sipp as the calling phone's SIP side, and two participants in the
//! meeting: a loadgen client that only listens, and a speaker that publishes a 1 kHz tone in
//! Opus.
//!
//! The phone's RTP is the test's own socket (the SDP sipp sends names it): it speaks a 440 Hz
//! tone in PCMU and records what the gateway sends back. The test decodes the Opus the listener
//! received and finds 440 Hz there, and finds 1 kHz (and not the phone's own 440 Hz) in the
//! call.

mod support;
#[path = "support/api.rs"]
mod test_api;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rtc::shared::marshal::{Marshal, Unmarshal};
use sip::g711::Law;
use sip::room::{Admission, Room};
use sip::tone::{power, sine};
use support::{TestGateway, config, init_tracing, scenario, sipp};

/// The phone's RTP port, named in sipp's SDP.
const PHONE_RTP: u16 = 47000;
/// How long the phone stays in the meeting.
const CALL: Duration = Duration::from_secs(10);

#[test]
fn voice_flows_both_ways_between_a_phone_and_the_room() {
    if !loadgen::netns::isolate() {
        return;
    }
    init_tracing();
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(async {
            let api = test_api::Api::start_with_sfu().await;
            let gateway = TestGateway::start(config(&api.url)).await;

            // The listener is in the room before the phone comes.
            let joined = api.join_as_guest("Listener").await;
            let conference: proto::ConferenceId =
                serde_json::from_value(joined["conference"]["id"].clone()).expect("an ID");
            let listener = loadgen::Client::join_url(
                joined["endpoint"].as_str().expect("an endpoint"),
                joined["token"].as_str().expect("a token"),
                &conference,
            )
            .await
            .expect("the listener joins");
            assert!(listener.id().is_some(), "admitted: {:?}", listener.first);

            // The speaker publishes 1 kHz in Opus (through the gateway's own room client: the
            // SFU in between is real, and loadgen only sends synthetic payloads).
            let joined = api.join_as_guest("Speaker").await;
            let mut speaker = Room::join(&Admission {
                token: joined["token"].as_str().expect("a token").to_owned(),
                endpoint: joined["endpoint"].as_str().expect("an endpoint").to_owned(),
                conference: conference.clone(),
            })
            .await
            .expect("the speaker joins");
            let speaking = tokio::spawn(async move {
                let tone = sine(1_000.0, 8_000, 8_000 * 30, 8_000);
                let mut ticker = tokio::time::interval(Duration::from_millis(20));
                for frame in tone.chunks(160) {
                    ticker.tick().await;
                    speaker.send_voice(frame).await;
                }
                speaker
            });

            // The phone's media: speaks 440 Hz once the gateway's first packet shows where to,
            // and keeps what it hears.
            let heard = Arc::new(Mutex::new(Vec::<i16>::new()));
            let phone = tokio::spawn(phone_media(Arc::clone(&heard)));

            let dir = tempfile::tempdir().expect("tempdir");
            let millis = CALL.as_millis().to_string();
            let voice = scenario(
                dir.path(),
                "voice.xml",
                &[
                    ("MEETING_ID", &api.meeting_id),
                    ("PASSWORD", &api.password),
                    ("MEDIA_PORT", &PHONE_RTP.to_string()),
                    ("MILLISECONDS", &millis),
                ],
            );
            sipp(&voice, "u1", 5080).await.assert_success();
            phone.abort();
            gateway
                .wait_for("conclave_sip_calls_total", Some(("outcome", "joined")), 1.0)
                .await;

            // Room → phone: the last 4 s of the call (the prompts are long over) are 1 kHz,
            // without the phone's own voice.
            let heard = heard.lock().expect("lock").clone();
            assert!(
                heard.len() > 8_000 * 6,
                "the phone heard {} samples",
                heard.len()
            );
            let tail = &heard[heard.len() - 8_000 * 4..];
            let at_1k = power(tail, 8_000, 1_000.0);
            assert!(
                at_1k > 1_000_000.0,
                "1 kHz is loud enough in the call: {at_1k}"
            );
            for other in [440.0, 300.0, 700.0, 2_000.0, 3_000.0] {
                let p = power(tail, 8_000, other);
                assert!(at_1k > 100.0 * p, "1 kHz {at_1k} vs {other} Hz {p}");
            }

            // Phone → room: one of the listener's audio tracks carries 440 Hz.
            let received = listener.received();
            let mut found = Vec::new();
            for track in received.values().filter(|t| !t.video) {
                let pcm = decode(&track.audio_payloads);
                if pcm.len() < 48_000 * 3 {
                    continue;
                }
                let tail = &pcm[pcm.len() - 48_000 * 3..];
                let at_440 = power(tail, 48_000, 440.0);
                let others: Vec<f64> = [300.0, 600.0, 1_000.0, 2_000.0]
                    .iter()
                    .map(|&f| power(tail, 48_000, f))
                    .collect();
                found.push((at_440, others.clone()));
                if at_440 > 1_000_000.0 && others.iter().all(|&p| at_440 > 100.0 * p) {
                    speaking.abort();
                    listener.leave().await;
                    gateway.gateway.stop().await;
                    return;
                }
            }
            panic!("no track of the room carries the phone's 440 Hz: {found:?}");
        });
}

/// Opus payloads (in order) to 48 kHz mono samples.
fn decode(payloads: &[Bytes]) -> Vec<i16> {
    let mut decoder = opus::Decoder::new(48_000, opus::Channels::Mono).expect("a decoder");
    let mut pcm = Vec::new();
    let mut frame = vec![0i16; 5_760];
    for payload in payloads {
        if let Ok(len) = decoder.decode(payload, &mut frame, false) {
            pcm.extend_from_slice(&frame[..len]);
        }
    }
    pcm
}

/// The phone's RTP endpoint: records the PCMU it receives and, from the first packet on,
/// answers with a 440 Hz tone every 20 ms to where the gateway sends from.
async fn phone_media(heard: Arc<Mutex<Vec<i16>>>) {
    let socket = tokio::net::UdpSocket::bind(("127.0.0.1", PHONE_RTP))
        .await
        .expect("the phone's RTP port");
    let mut buf = vec![0u8; 1_500];
    let (len, gateway) = socket.recv_from(&mut buf).await.expect("a first packet");
    let keep = |data: &[u8]| {
        if let Ok(packet) = rtc::rtp::Packet::unmarshal(&mut &data[..])
            && packet.header.payload_type == 0
        {
            heard
                .lock()
                .expect("lock")
                .extend(Law::Pcmu.decode(&packet.payload));
        }
    };
    keep(&buf[..len]);
    let tone = sine(440.0, 8_000, 8_000, 8_000);
    let (mut sequence, mut timestamp, ssrc) = (1u16, 0u32, 0x5eed_u32);
    let mut ticker = tokio::time::interval(Duration::from_millis(20));
    let mut offset = 0;
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                // 8000 samples hold exactly 440 periods: the tone loops seamlessly.
                let frame: Vec<i16> = (0..160).map(|i| tone[(offset + i) % tone.len()]).collect();
                offset = (offset + 160) % tone.len();
                let packet = rtc::rtp::Packet {
                    header: rtc::rtp::Header {
                        version: 2,
                        payload_type: 0,
                        sequence_number: sequence,
                        timestamp,
                        ssrc,
                        ..Default::default()
                    },
                    payload: Bytes::from(Law::Pcmu.encode(&frame)),
                };
                sequence = sequence.wrapping_add(1);
                timestamp = timestamp.wrapping_add(160);
                if let Ok(data) = packet.marshal() {
                    let _ = socket.send_to(&data, gateway).await;
                }
            }
            received = socket.recv_from(&mut buf) => {
                if let Ok((len, _)) = received {
                    keep(&buf[..len]);
                }
            }
        }
    }
}

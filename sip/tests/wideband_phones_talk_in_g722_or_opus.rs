//! Wideband phones: one whose offer lists G.722 first, one whose offer lists Opus first; the
//! gateway answers in that codec. The phone's RTP is the test's own socket (named in sipp's
//! SDP): it speaks a 5 kHz tone (beyond what 8 kHz audio can carry, so it reaches the room only
//! if the path stays wideband) and records what the gateway sends back. A loadgen listener in
//! the meeting finds the 5 kHz in the Opus it receives; the phone hears a speaker's 1 kHz,
//! decoded from its codec.

mod support;
#[path = "support/api.rs"]
mod test_api;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use audio_codec::g722::{G722Decoder, G722Encoder};
use audio_codec::{Decoder, Encoder};
use bytes::Bytes;
use rtc::shared::marshal::{Marshal, Unmarshal};
use sip::tone::{power, sine};
use support::{TestGateway, config, decode_opus, init_tracing, scenario, sipp};

/// The phone's RTP port, named in its SDP.
const PHONE_RTP: u16 = 47040;
/// The phone's tone: above 4 kHz, so only wideband audio holds it.
const PHONE_TONE: f64 = 5_000.0;

/// The phone's codec.
#[derive(Debug, Clone, Copy)]
enum Wideband {
    G722,
    Opus,
}

#[test]
fn a_g722_phone_talks_wideband() {
    talks(Wideband::G722);
}

#[test]
fn an_opus_phone_talks_wideband() {
    talks(Wideband::Opus);
}

fn talks(codec: Wideband) {
    if !loadgen::netns::isolate() {
        return;
    }
    init_tracing();
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(async {
            let api = test_api::Api::start_with_sfu().await;
            let gateway = TestGateway::start(config(&api.url)).await;
            let (listener, _) = api.join_listener("Listener").await;
            let speaking = api.speak("Speaker", 1_000.0, Duration::from_secs(60)).await;

            let heard = Arc::new(Mutex::new(Vec::<i16>::new()));
            let phone = tokio::spawn(wideband_phone(codec, Arc::clone(&heard)));
            let dir = tempfile::tempdir().expect("tempdir");
            let call = scenario(
                dir.path(),
                match codec {
                    Wideband::G722 => "voice-g722.xml",
                    Wideband::Opus => "voice-opus.xml",
                },
                &[
                    ("MEETING_ID", &api.meeting_id),
                    ("PASSWORD", &api.password),
                    ("MEDIA_PORT", &PHONE_RTP.to_string()),
                    ("MILLISECONDS", "10000"),
                ],
            );
            sipp(&call, "u1", 5080).await.assert_success();
            phone.abort();
            gateway
                .wait_for("conclave_sip_calls_total", Some(("outcome", "joined")), 1.0)
                .await;

            // Room → phone: the last 3 s of the call hold the speaker's 1 kHz, at 16 kHz.
            let heard = heard.lock().expect("lock").clone();
            assert!(
                heard.len() > 16_000 * 6,
                "the phone heard {} samples",
                heard.len()
            );
            let tail = &heard[heard.len() - 16_000 * 3..];
            let at_1k = power(tail, 16_000, 1_000.0);
            assert!(at_1k > 1_000_000.0, "1 kHz in the call: {at_1k}");
            for other in [PHONE_TONE, 3_000.0, 7_000.0] {
                let p = power(tail, 16_000, other);
                assert!(at_1k > 100.0 * p, "1 kHz {at_1k} vs {other} Hz {p}");
            }

            // Phone → room: a track of the room carries the 5 kHz, and not its 8 kHz alias.
            let mut found = Vec::new();
            let carried = listener
                .received()
                .values()
                .filter(|t| !t.video)
                .any(|track| {
                    let pcm = decode_opus(&track.audio_payloads);
                    if pcm.len() < 48_000 * 3 {
                        return false;
                    }
                    let tail = &pcm[pcm.len() - 48_000 * 2..];
                    let at = power(tail, 48_000, PHONE_TONE);
                    let alias = power(tail, 48_000, 8_000.0 - PHONE_TONE);
                    found.push((at, alias));
                    at > 300_000.0 && at > 30.0 * alias
                });
            assert!(carried, "no track carries the phone's 5 kHz: {found:?}");
            speaking.abort();
            listener.leave().await;
            gateway.gateway.stop().await;
        });
}

/// The phone's RTP: records what it receives (decoded to 16 kHz) and, from the first packet
/// on, speaks its tone every 20 ms to where the gateway sends from.
async fn wideband_phone(codec: Wideband, heard: Arc<Mutex<Vec<i16>>>) {
    let socket = tokio::net::UdpSocket::bind(("127.0.0.1", PHONE_RTP))
        .await
        .expect("the phone's RTP port");
    let mut buf = vec![0u8; 1_500];
    let (len, gateway) = socket.recv_from(&mut buf).await.expect("a first packet");
    let mut g722 = (G722Encoder::new(), G722Decoder::new());
    let mut opus_decoder = opus::Decoder::new(16_000, opus::Channels::Mono).expect("decoder");
    let mut opus_encoder =
        opus::Encoder::new(16_000, opus::Channels::Mono, opus::Application::Voip).expect("encoder");
    let (payload_type, ticks) = match codec {
        Wideband::G722 => (9u8, 160u32),
        // RFC 7587: the RTP clock of Opus is 48 kHz.
        Wideband::Opus => (111u8, 960u32),
    };
    let mut keep = |data: &[u8], g722: &mut G722Decoder| {
        if let Ok(packet) = rtc::rtp::Packet::unmarshal(&mut &data[..])
            && packet.header.payload_type == payload_type
        {
            let samples = match codec {
                Wideband::G722 => g722.decode(&packet.payload),
                Wideband::Opus => {
                    let mut pcm = vec![0i16; 1_920];
                    let len = opus_decoder
                        .decode(&packet.payload, &mut pcm, false)
                        .unwrap_or(0);
                    pcm.truncate(len);
                    pcm
                }
            };
            heard.lock().expect("lock").extend(samples);
        }
    };
    keep(&buf[..len], &mut g722.1);
    // A whole number of periods in one second: the tone loops seamlessly.
    let tone = sine(PHONE_TONE, 16_000, 16_000, 8_000);
    let mut ticker = tokio::time::interval(Duration::from_millis(20));
    let (mut sequence, mut offset) = (1u16, 0usize);
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                let frame: Vec<i16> = (0..320).map(|i| tone[(offset + i) % tone.len()]).collect();
                offset = (offset + 320) % tone.len();
                let packet = rtc::rtp::Packet {
                    header: rtc::rtp::Header {
                        version: 2,
                        payload_type,
                        sequence_number: sequence,
                        // G.722's RTP clock runs at 8 kHz (RFC 3551), Opus's at 48 kHz.
                        timestamp: u32::from(sequence).wrapping_mul(ticks),
                        ssrc: 0x0722,
                        ..Default::default()
                    },
                    payload: Bytes::from(match codec {
                        Wideband::G722 => g722.0.encode(&frame),
                        Wideband::Opus => opus_encoder.encode_vec(&frame, 400).expect("encode"),
                    }),
                };
                sequence = sequence.wrapping_add(1);
                if let Ok(data) = packet.marshal() {
                    let _ = socket.send_to(&data, gateway).await;
                }
            }
            received = socket.recv_from(&mut buf) => {
                if let Ok((len, _)) = received {
                    keep(&buf[..len], &mut g722.1);
                }
            }
        }
    }
}

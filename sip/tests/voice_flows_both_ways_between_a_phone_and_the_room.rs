//! Media with real peers: a real API on SQLite with the SFU embedded (as `conclave standalone`
//! runs them), the gateway, sipp as two phones' SIP side, and two participants in the meeting:
//! a loadgen client that only listens, and a speaker that publishes a 1 kHz tone in Opus.
//!
//! Each phone's RTP is the test's own socket (the SDP sipp sends names it): phone A speaks
//! 440 Hz and phone B 1.8 kHz in PCMU, and each records what the gateway sends back. The test
//! finds each phone's tone in the listener's Opus, and in each call the speaker's 1 kHz and the
//! other phone's tone but not its own (one mix per meeting, minus each caller's voice). The
//! meeting's audio reaches the gateway through both calls' sessions and is decoded once
//! (duplicates counted); the phones hear how many are there, and A hears B arrive.

mod support;
#[path = "support/api.rs"]
mod test_api;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rtc::shared::marshal::{Marshal, Unmarshal};
use sip::g711::Law;
use sip::tone::{power, sine};
use support::{TestGateway, config, decode_opus, init_tracing, scenario, sipp};

/// Phone A's RTP port, named in its SDP, and its tone.
const PHONE_A: (u16, f64) = (47000, 440.0);
/// Phone B's.
const PHONE_B: (u16, f64) = (47002, 1_800.0);
/// How long each phone stays in the meeting (both are in it together for most of that).
const CALL: Duration = Duration::from_secs(16);
/// How long the test listens to both phones in the meeting together.
const TOGETHER: Duration = Duration::from_secs(4);

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

            // The listener is in the room before the phones come.
            let (listener, _) = api.join_listener("Listener").await;
            let speaking = api.speak("Speaker", 1_000.0, Duration::from_secs(60)).await;

            let dirs = [tempfile::tempdir(), tempfile::tempdir()].map(|d| d.expect("tempdir"));
            let millis = CALL.as_millis().to_string();
            let call = |dir: &tempfile::TempDir, port: u16| {
                scenario(
                    dir.path(),
                    "voice.xml",
                    &[
                        ("MEETING_ID", &api.meeting_id),
                        ("PASSWORD", &api.password),
                        ("MEDIA_PORT", &port.to_string()),
                        ("MILLISECONDS", &millis),
                    ],
                )
            };
            let (call_a, call_b) = (call(&dirs[0], PHONE_A.0), call(&dirs[1], PHONE_B.0));

            // Phone A enters; it hears that two others are there.
            let heard_a = Arc::new(Mutex::new(Vec::<i16>::new()));
            let phone_a = tokio::spawn(phone_media(PHONE_A, Arc::clone(&heard_a)));
            let sipp_a = tokio::spawn(async move { sipp(&call_a, "u1", 5080).await });
            gateway
                .wait_for_at_least(
                    "conclave_sip_prompt_plays_total",
                    ("prompt", "participants-2"),
                    1.0,
                )
                .await;
            // Phone B enters: three others; A hears the new-participant tone.
            let heard_b = Arc::new(Mutex::new(Vec::<i16>::new()));
            let phone_b = tokio::spawn(phone_media(PHONE_B, Arc::clone(&heard_b)));
            let sipp_b = tokio::spawn(async move { sipp(&call_b, "u1", 5090).await });
            gateway
                .wait_for_at_least(
                    "conclave_sip_prompt_plays_total",
                    ("prompt", "participants-3"),
                    1.0,
                )
                .await;
            gateway
                .wait_for_at_least(
                    "conclave_sip_prompt_plays_total",
                    ("prompt", "new-participant"),
                    1.0,
                )
                .await;
            assert_eq!(
                gateway.metric("conclave_sip_conferences_active", None),
                1.0,
                "both calls share one conference"
            );

            // Both phones in the meeting together (B's prompts are over after 2 s).
            tokio::time::sleep(TOGETHER).await;
            let last = |heard: &Arc<Mutex<Vec<i16>>>| {
                let heard = heard.lock().expect("lock");
                assert!(
                    heard.len() > 8_000 * 3,
                    "a phone heard {} samples",
                    heard.len()
                );
                heard[heard.len() - 8_000 * 2..].to_vec()
            };
            let (tail_a, tail_b) = (last(&heard_a), last(&heard_b));
            let check = |tail: &[i16], hears: &[f64], not: f64, who: &str| {
                let own = power(tail, 8_000, not);
                for &f in hears {
                    let p = power(tail, 8_000, f);
                    assert!(p > 300_000.0, "{who} hears {f} Hz: {p}");
                    assert!(
                        p > 100.0 * own,
                        "{who}: {f} Hz {p} vs its own {not} Hz {own}"
                    );
                }
                for other in [300.0, 700.0, 2_600.0, 3_200.0] {
                    let p = power(tail, 8_000, other);
                    assert!(
                        own.max(p) * 100.0 < power(tail, 8_000, hears[0]),
                        "{who} {other} Hz {p}"
                    );
                }
            };
            check(&tail_a, &[1_000.0, PHONE_B.1], PHONE_A.1, "phone A");
            check(&tail_b, &[1_000.0, PHONE_A.1], PHONE_B.1, "phone B");
            assert!(
                gateway.metric(
                    "conclave_sip_room_packets_total",
                    Some(("result", "duplicate"))
                ) > 100.0,
                "the speaker's packets came through both calls and were decoded once"
            );

            // Phones → room: the listener's audio tracks carry both tones.
            for (frequency, who) in [(PHONE_A.1, "A"), (PHONE_B.1, "B")] {
                let received = listener.received();
                let mut found = Vec::new();
                let carried = received.values().filter(|t| !t.video).any(|track| {
                    let pcm = decode_opus(&track.audio_payloads);
                    if pcm.len() < 48_000 * 3 {
                        return false;
                    }
                    let tail = &pcm[pcm.len() - 48_000 * 2..];
                    let at = power(tail, 48_000, frequency);
                    let others: Vec<f64> = [300.0, 600.0, 1_000.0, 2_400.0]
                        .iter()
                        .map(|&f| power(tail, 48_000, f))
                        .collect();
                    found.push((at, others.clone()));
                    at > 1_000_000.0 && others.iter().all(|&p| at > 100.0 * p)
                });
                assert!(
                    carried,
                    "no track of the room carries phone {who}'s tone: {found:?}"
                );
            }

            for run in [sipp_a, sipp_b] {
                run.await.expect("sipp").assert_success();
            }
            phone_a.abort();
            phone_b.abort();
            gateway
                .wait_for("conclave_sip_calls_total", Some(("outcome", "joined")), 2.0)
                .await;
            speaking.abort();
            listener.leave().await;
            gateway.gateway.stop().await;
        });
}

/// A phone's RTP endpoint: records the PCMU it receives and, from the first packet on, answers
/// with its tone every 20 ms to where the gateway sends from.
async fn phone_media((port, frequency): (u16, f64), heard: Arc<Mutex<Vec<i16>>>) {
    let socket = tokio::net::UdpSocket::bind(("127.0.0.1", port))
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
    // A whole number of periods in one second: the tone loops seamlessly.
    let tone = sine(frequency, 8_000, 8_000, 8_000);
    let (mut sequence, mut timestamp, ssrc) = (1u16, 0u32, 0x5eed_u32);
    let mut ticker = tokio::time::interval(Duration::from_millis(20));
    let mut offset = 0;
    loop {
        tokio::select! {
            _ = ticker.tick() => {
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

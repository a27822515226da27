//! A phone (or a gateway) that sends its keys only as tones in the audio: its offer has no
//! telephone-event, so the gateway listens for DTMF in the PCMU stream. The test's own RTP
//! socket (named in sipp's SDP) types the meeting ID and `#` as tones over the welcome, then the
//! password and `#` once asked for it; the caller is admitted, and every key is counted as
//! `inband`.

mod support;
#[path = "support/api.rs"]
mod test_api;

use std::time::Duration;

use bytes::Bytes;
use rtc::shared::marshal::Marshal;
use sip::g711::Law;
use sip::tone::sine;
use support::{TestGateway, config, init_tracing, scenario, sipp};

/// The phone's RTP port, named in its SDP.
const PHONE_RTP: u16 = 47010;

#[test]
fn keys_typed_as_tones_are_heard() {
    if !loadgen::netns::isolate() {
        return;
    }
    init_tracing();
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(async {
            let api = test_api::Api::start_with_sfu().await;
            let gateway = TestGateway::start(config(&api.url)).await;
            let dir = tempfile::tempdir().expect("tempdir");
            let call = scenario(
                dir.path(),
                "tones.xml",
                &[
                    ("MEDIA_PORT", &PHONE_RTP.to_string()),
                    ("MILLISECONDS", "12000"),
                ],
            );
            let (keypad, typed) = tokio::sync::mpsc::unbounded_channel();
            let typing = tokio::spawn(type_as_tones(typed));
            let run = tokio::spawn(async move { sipp(&call, "u1", 5084).await });
            let keys = format!("{}#{}#", api.meeting_id, api.password);
            keypad.send(format!("{}#", api.meeting_id)).expect("typing");
            gateway
                .wait_for_at_least(
                    "conclave_sip_prompt_plays_total",
                    ("prompt", "enter-password"),
                    1.0,
                )
                .await;
            keypad.send(format!("{}#", api.password)).expect("typing");
            gateway
                .wait_for("conclave_sip_calls_total", Some(("outcome", "joined")), 1.0)
                .await;
            assert_eq!(
                gateway.metric("conclave_sip_dtmf_digits_total", Some(("method", "inband"))),
                keys.len() as f64,
                "each key once"
            );
            assert_eq!(
                gateway.metric(
                    "conclave_sip_dtmf_digits_total",
                    Some(("method", "rfc4733"))
                ),
                0.0
            );
            run.await.expect("sipp").assert_success();
            typing.abort();
            gateway.gateway.stop().await;
        });
}

/// The phone's RTP: once the gateway's first packet shows where to send, quiet in PCMU every
/// 20 ms, and the keys it is given as DTMF (each 80 ms, then 80 ms of quiet).
async fn type_as_tones(mut typed: tokio::sync::mpsc::UnboundedReceiver<String>) {
    let socket = tokio::net::UdpSocket::bind(("127.0.0.1", PHONE_RTP))
        .await
        .expect("the phone's RTP port");
    let mut buf = vec![0u8; 1_500];
    let (_, gateway) = socket.recv_from(&mut buf).await.expect("a first packet");
    let mut ticker = tokio::time::interval(Duration::from_millis(20));
    let (mut sequence, mut timestamp) = (1u16, 0u32);
    let mut audio = std::collections::VecDeque::new();
    loop {
        ticker.tick().await;
        if audio.is_empty()
            && let Ok(keys) = typed.try_recv()
        {
            audio.extend(tones(&keys));
        }
        let frame: Vec<i16> = (0..160).map(|_| audio.pop_front().unwrap_or(0)).collect();
        let packet = rtc::rtp::Packet {
            header: rtc::rtp::Header {
                version: 2,
                payload_type: 0,
                sequence_number: sequence,
                timestamp,
                ssrc: 0x7a11,
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
}

/// `keys` as DTMF at 8 kHz.
fn tones(keys: &str) -> Vec<i16> {
    let mut audio = Vec::new();
    for key in keys.chars() {
        let (low, high) = match key {
            '1' => (697.0, 1_209.0),
            '2' => (697.0, 1_336.0),
            '3' => (697.0, 1_477.0),
            '4' => (770.0, 1_209.0),
            '5' => (770.0, 1_336.0),
            '6' => (770.0, 1_477.0),
            '7' => (852.0, 1_209.0),
            '8' => (852.0, 1_336.0),
            '9' => (852.0, 1_477.0),
            '0' => (941.0, 1_336.0),
            '#' => (941.0, 1_477.0),
            other => panic!("no tones for {other}"),
        };
        let a = sine(low, 8_000, 640, 5_000);
        let b = sine(high, 8_000, 640, 6_000);
        audio.extend(a.iter().zip(&b).map(|(x, y)| x.saturating_add(*y)));
        audio.extend([0i16; 640]);
    }
    audio
}

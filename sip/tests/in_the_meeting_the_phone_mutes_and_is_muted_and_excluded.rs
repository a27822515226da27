//! In the meeting: the caller presses `*6` (by SIP INFO) to mute and again to unmute, and the
//! meeting's owner, in the room as a moderator (a loadgen client), sees the phone's microphone
//! track muted and unmuted; the moderator then mutes the phone themselves (the caller hears
//! "muted"), starts a recording (the caller hears "This meeting is being recorded"), and
//! excludes it: the caller hears "bye" and the gateway hangs up (sipp answers the gateway's BYE).

mod support;
#[path = "support/api.rs"]
mod test_api;

use std::time::Duration;

use bytes::Bytes;
use proto::signal::{ClientMessage, ServerMessage, TrackSource};
use rtc::shared::marshal::Marshal;
use sip::g711::Law;
use sip::tone::sine;
use support::{TestGateway, config, init_tracing, scenario, sipp};

const WAIT: Duration = Duration::from_secs(20);

#[test]
fn in_the_meeting_the_phone_mutes_and_is_muted_and_excluded() {
    if !loadgen::netns::isolate() {
        return;
    }
    init_tracing();
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(async {
            let api = test_api::Api::start_with_sfu().await;
            let gateway = TestGateway::start(config(&api.url)).await;
            let joined = api.join_as_owner().await;
            let conference: proto::ConferenceId =
                serde_json::from_value(joined["conference"]["id"].clone()).expect("an ID");
            let mut moderator = loadgen::Client::join_url(
                joined["endpoint"].as_str().expect("an endpoint"),
                joined["token"].as_str().expect("a token"),
                &conference,
            )
            .await
            .expect("the owner joins");
            assert!(moderator.id().is_some(), "admitted: {:?}", moderator.first);

            let dir = tempfile::tempdir().expect("tempdir");
            let call = scenario(
                dir.path(),
                "mute.xml",
                &[
                    ("MEETING_ID", &api.meeting_id),
                    ("PASSWORD", &api.password),
                    ("MEDIA_PORT", "47020"),
                    ("BEFORE_MS", "3000"),
                    ("BETWEEN_MS", "2000"),
                ],
            );
            let run = tokio::spawn(async move { sipp(&call, "u1", 5086).await });
            let voice = tokio::spawn(speak(47020));

            // The phone enters as "Phone ···6789" and publishes its microphone.
            let ServerMessage::ParticipantJoined { participant } = moderator
                .wait_for(WAIT, |m| {
                    matches!(m, ServerMessage::ParticipantJoined { .. })
                })
                .await
                .expect("the phone joins")
            else {
                unreachable!()
            };
            assert_eq!(participant.display_name, "Phone ···6789");
            let phone = participant.id;
            let ServerMessage::TrackPublished { track } = moderator
                .wait_for(WAIT, |m| {
                    matches!(m, ServerMessage::TrackPublished { track }
                        if track.participant == phone && track.source == TrackSource::Microphone)
                })
                .await
                .expect("the phone's microphone")
            else {
                unreachable!()
            };

            // *6, *6: muted, then unmuted, as everyone in the room sees.
            for muted in [true, false] {
                moderator
                    .wait_for(WAIT, |m| {
                        matches!(m, ServerMessage::TrackMuted { track: t, muted: now }
                            if *t == track.id && *now == muted)
                    })
                    .await
                    .unwrap_or_else(|err| panic!("the phone's track muted={muted}: {err}"));
            }
            assert_eq!(
                gateway.metric("conclave_sip_prompt_plays_total", Some(("prompt", "muted"))),
                1.0
            );
            gateway
                .wait_for_at_least(
                    "conclave_sip_prompt_plays_total",
                    ("prompt", "unmuted"),
                    1.0,
                )
                .await;

            // The moderator mutes the phone: the caller is told.
            moderator.send(ClientMessage::BlockMicrophone {
                participant: phone.clone(),
                blocked: true,
            });
            gateway
                .wait_for_at_least("conclave_sip_prompt_plays_total", ("prompt", "muted"), 2.0)
                .await;

            // The owner (an administrator) starts a recording: the caller is told.
            assert_eq!(
                gateway.metric(
                    "conclave_sip_prompt_plays_total",
                    Some(("prompt", "recording"))
                ),
                0.0,
                "nothing was recorded before"
            );
            moderator.send(ClientMessage::SetRecording { active: true });
            gateway
                .wait_for_at_least(
                    "conclave_sip_prompt_plays_total",
                    ("prompt", "recording"),
                    1.0,
                )
                .await;

            // Excluded: "bye", and the gateway hangs up.
            moderator.send(ClientMessage::Exclude {
                participant: phone.clone(),
            });
            run.await.expect("sipp").assert_success();
            assert_eq!(
                gateway.metric("conclave_sip_prompt_plays_total", Some(("prompt", "bye"))),
                1.0
            );
            gateway
                .wait_for("conclave_sip_calls_active", None, 0.0)
                .await;
            voice.abort();
            moderator.leave().await;
            gateway.gateway.stop().await;
        });
}

/// The phone's RTP on `port` (named in its SDP): once the gateway's first packet shows where to
/// send, a 440 Hz tone in PCMU every 20 ms, as a phone sends its microphone.
async fn speak(port: u16) {
    let socket = tokio::net::UdpSocket::bind(("127.0.0.1", port))
        .await
        .expect("the phone's RTP port");
    let mut buf = vec![0u8; 1_500];
    let (_, gateway) = socket.recv_from(&mut buf).await.expect("a first packet");
    let tone = sine(440.0, 8_000, 8_000, 8_000);
    let mut ticker = tokio::time::interval(Duration::from_millis(20));
    for n in 0u32.. {
        ticker.tick().await;
        let offset = (n as usize * 160) % tone.len();
        let packet = rtc::rtp::Packet {
            header: rtc::rtp::Header {
                version: 2,
                payload_type: 0,
                sequence_number: n as u16,
                timestamp: n.wrapping_mul(160),
                ssrc: 0x6789,
                ..Default::default()
            },
            payload: Bytes::from(Law::Pcmu.encode(&tone[offset..offset + 160])),
        };
        if let Ok(data) = packet.marshal() {
            let _ = socket.send_to(&data, gateway).await;
        }
    }
}

//! The offers and answers that real browsers send (captured from Firefox 153 and Chromium 156
//! in `fixtures/`) go through the SFU's SDP handling, and what the SFU answers is checked
//! against the rules a browser applies to an answer (RFC 8829/JSEP, RFC 8843 BUNDLE, RFC 4588
//! RTX): an answer a browser would reject fails here.

use std::collections::HashMap;
use std::sync::Arc;

use proto::signal::{PeerTarget, TrackKind};
use proto::{ParticipantId, TrackId};
use rtc::rtp_transceiver::rtp_sender::RTCRtpCodec;
use sfu::media::{self, Downstream, MediaSettings};
use sfu::negotiation;
use webrtc::peer_connection::{PeerConnection, RTCSessionDescription};

const FIREFOX_OFFER: &str = include_str!("fixtures/firefox-153-publish-offer.sdp");
const CHROMIUM_OFFER: &str = include_str!("fixtures/chromium-156-publish-offer.sdp");
const FIREFOX_SUBSCRIBE_ANSWER: &str = include_str!("fixtures/firefox-153-subscribe-answer.sdp");
const CHROMIUM_SUBSCRIBE_ANSWER: &str = include_str!("fixtures/chromium-156-subscribe-answer.sdp");

/// One media section, as far as the checks need it.
#[derive(Debug, Default)]
struct Section {
    kind: String,
    port: String,
    payload_types: Vec<String>,
    mid: Option<String>,
    bundle_only: bool,
    direction: Option<String>,
    setup: Option<String>,
    rtcp_mux: bool,
    /// payload type → `name/clock[/channels]`, lowercased.
    rtpmap: HashMap<String, String>,
    fmtp: HashMap<String, String>,
    /// `(id, uri)`
    extmap: Vec<(String, String)>,
    ice_ufrag: bool,
    fingerprint: bool,
    extmap_allow_mixed: bool,
}

#[derive(Debug, Default)]
struct Description {
    bundle: Vec<String>,
    ice_ufrag: bool,
    fingerprint: bool,
    extmap_allow_mixed: bool,
    sections: Vec<Section>,
}

fn parse(sdp: &str) -> Description {
    let mut description = Description::default();
    for line in sdp.lines().map(str::trim_end).filter(|l| !l.is_empty()) {
        if let Some(m) = line.strip_prefix("m=") {
            let mut fields = m.split_whitespace();
            description.sections.push(Section {
                kind: fields.next().unwrap_or_default().to_owned(),
                port: fields.next().unwrap_or_default().to_owned(),
                payload_types: fields.skip(1).map(str::to_owned).collect(),
                ..Section::default()
            });
            continue;
        }
        let Some(attribute) = line.strip_prefix("a=") else {
            continue;
        };
        let (name, value) = attribute.split_once(':').unwrap_or((attribute, ""));
        let Some(section) = description.sections.last_mut() else {
            match name {
                "group" => {
                    let mut fields = value.split_whitespace();
                    if fields.next() == Some("BUNDLE") {
                        description.bundle = fields.map(str::to_owned).collect();
                    }
                }
                "ice-ufrag" => description.ice_ufrag = true,
                "fingerprint" => description.fingerprint = true,
                "extmap-allow-mixed" => description.extmap_allow_mixed = true,
                _ => {}
            }
            continue;
        };
        match name {
            "mid" => section.mid = Some(value.to_owned()),
            "bundle-only" => section.bundle_only = true,
            "sendrecv" | "sendonly" | "recvonly" | "inactive" => {
                section.direction = Some(name.to_owned());
            }
            "setup" => section.setup = Some(value.to_owned()),
            "rtcp-mux" => section.rtcp_mux = true,
            "ice-ufrag" => section.ice_ufrag = true,
            "fingerprint" => section.fingerprint = true,
            "extmap-allow-mixed" => section.extmap_allow_mixed = true,
            "rtpmap" => {
                let (pt, codec) = value.split_once(' ').unwrap_or((value, ""));
                section
                    .rtpmap
                    .insert(pt.to_owned(), codec.to_ascii_lowercase());
            }
            "fmtp" => {
                let (pt, parameters) = value.split_once(' ').unwrap_or((value, ""));
                section.fmtp.insert(pt.to_owned(), parameters.to_owned());
            }
            "extmap" => {
                let (id, uri) = value.split_once(' ').unwrap_or((value, ""));
                let id = id.split('/').next().unwrap_or(id);
                let uri = uri.split_whitespace().next().unwrap_or(uri);
                section.extmap.push((id.to_owned(), uri.to_owned()));
            }
            _ => {}
        }
    }
    description
}

/// `name/clock[/channels]` with the channel count a missing one stands for.
fn codec_of(rtpmap: &str) -> String {
    let parts: Vec<&str> = rtpmap.split('/').collect();
    match parts.as_slice() {
        [name, clock] if name.eq_ignore_ascii_case("opus") => format!("{name}/{clock}/2"),
        [name, clock] => format!("{name}/{clock}/1"),
        _ => rtpmap.to_owned(),
    }
}

/// Every rule of an answer to `offer` that `answer` breaks.
fn answer_problems(offer: &str, answer: &str) -> Vec<String> {
    let offer = parse(offer);
    let answer = parse(answer);
    let mut problems = Vec::new();
    let mut problem = |text: String| problems.push(text);
    if offer.sections.len() != answer.sections.len() {
        problem(format!(
            "{} media sections answered for {} offered",
            answer.sections.len(),
            offer.sections.len()
        ));
    }
    if !answer.bundle.iter().all(|mid| offer.bundle.contains(mid)) {
        problem(format!(
            "answer BUNDLE {:?} is not within the offer's {:?}",
            answer.bundle, offer.bundle
        ));
    }
    if offer.bundle.first() != answer.bundle.first() && !answer.bundle.is_empty() {
        problem("the answer's BUNDLE group does not keep the offerer's tagged mid first".into());
    }
    let any_extmap_allow_mixed =
        offer.extmap_allow_mixed || offer.sections.iter().any(|s| s.extmap_allow_mixed);
    if answer.extmap_allow_mixed && !any_extmap_allow_mixed {
        problem("extmap-allow-mixed answered but not offered".into());
    }
    for (o, a) in offer.sections.iter().zip(&answer.sections) {
        let mid = o.mid.clone().unwrap_or_default();
        let at = |what: &str| format!("section {mid} ({}): {what}", o.kind);
        if o.kind != a.kind || o.mid != a.mid {
            problem(at(&format!("answered as {} with mid {:?}", a.kind, a.mid)));
            continue;
        }
        let offered_rejected = o.port == "0" && !o.bundle_only;
        if offered_rejected {
            if a.port != "0" {
                problem(at("a rejected section was accepted"));
            }
            continue;
        }
        if a.port == "0" {
            problem(at("rejected, though the SFU supports what it offers"));
            continue;
        }
        if !answer.bundle.contains(&mid) {
            problem(at("accepted but missing from the answer's BUNDLE group"));
        }
        if a.payload_types.is_empty() {
            problem(at("no payload type answered"));
        }
        for pt in &a.payload_types {
            if !o.payload_types.contains(pt) {
                problem(at(&format!("payload type {pt} was not offered")));
                continue;
            }
            match (o.rtpmap.get(pt), a.rtpmap.get(pt)) {
                (Some(offered), Some(answered)) if codec_of(offered) == codec_of(answered) => {}
                (offered, answered) => problem(at(&format!(
                    "payload type {pt} is {answered:?} in the answer but {offered:?} in the offer"
                ))),
            }
            if a.rtpmap.get(pt).is_some_and(|c| c.starts_with("rtx/")) {
                let apt = a
                    .fmtp
                    .get(pt)
                    .and_then(|f| f.split(';').find_map(|p| p.trim().strip_prefix("apt=")));
                match apt {
                    Some(apt) if a.payload_types.iter().any(|p| p == apt) => {}
                    _ => problem(at(&format!(
                        "RTX payload type {pt} repairs {apt:?}, which is not answered"
                    ))),
                }
            }
        }
        for (id, uri) in &a.extmap {
            if !o.extmap.iter().any(|(oid, ouri)| oid == id && ouri == uri) {
                problem(at(&format!(
                    "extmap {id} {uri} was not offered with that id"
                )));
            }
        }
        let offered = o.direction.as_deref().unwrap_or("sendrecv");
        let answered = a.direction.as_deref().unwrap_or("sendrecv");
        let allowed: &[&str] = match offered {
            "sendonly" => &["recvonly", "inactive"],
            "recvonly" => &["sendonly", "inactive"],
            "inactive" => &["inactive"],
            _ => &["sendrecv", "sendonly", "recvonly", "inactive"],
        };
        if !allowed.contains(&answered) {
            problem(at(&format!("{answered} does not answer {offered}")));
        }
        match a.setup.as_deref() {
            Some("active" | "passive") => {}
            other => problem(at(&format!(
                "a=setup:{other:?} (an answer is active or passive)"
            ))),
        }
        if o.rtcp_mux && !a.rtcp_mux {
            problem(at("rtcp-mux offered but not answered"));
        }
        if !(a.ice_ufrag || answer.ice_ufrag) {
            problem(at("no ICE credentials"));
        }
        if !(a.fingerprint || answer.fingerprint) {
            problem(at("no DTLS fingerprint"));
        }
    }
    problems
}

fn settings() -> MediaSettings {
    MediaSettings {
        bind_ip: "127.0.0.1".parse().expect("address"),
        announced_ips: Vec::new(),
        ice_failed_after: std::time::Duration::from_secs(25),
        ice_tcp: None,
        udp_mux: None,
        udp_buffers: sfu::sockets::UdpBuffers::new(
            sfu::config::DEFAULT_UDP_BUFFER_BYTES as usize,
            prometheus::IntGaugeVec::new(prometheus::Opts::new("buffer", "buffer"), &["direction"])
                .expect("gauge"),
            prometheus::IntCounter::new("drops", "drops").expect("counter"),
        ),
        direct_media: true,
    }
}

async fn peer(port: u16, target: PeerTarget) -> Arc<dyn PeerConnection> {
    let (events, mut rx) = tokio::sync::mpsc::unbounded_channel();
    // Nobody listens to the events here; drain them so the connection never blocks on them.
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    media::build_peer(&settings(), port, target, None, None, None, events)
        .await
        .expect("a peer connection")
        .connection
}

async fn answer_to(offer: &str, port: u16) -> String {
    let peer = peer(port, PeerTarget::Publisher).await;
    let answer = negotiation::answer_publisher(&peer, offer.to_owned())
        .await
        .expect("the SFU answers the offer");
    let _ = peer.close().await;
    answer
}

/// The payload types answered in the section of `kind`, with their codec names.
fn answered(answer: &str, kind: &str) -> Vec<(String, String)> {
    let description = parse(answer);
    let section = description
        .sections
        .iter()
        .find(|s| s.kind == kind)
        .expect("a section of that kind");
    section
        .payload_types
        .iter()
        .map(|pt| {
            let codec = section.rtpmap.get(pt).cloned().unwrap_or_default();
            (
                pt.clone(),
                codec.split('/').next().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// `offer` with the video payload types `drop` removed, and `first` moved to the front.
fn reshaped(offer: &str, drop: &[&str], first: &[&str]) -> String {
    let mut out = Vec::new();
    let mut in_video = false;
    for line in offer.lines() {
        if let Some(m) = line.strip_prefix("m=") {
            in_video = m.starts_with("video ");
            if in_video {
                let mut fields: Vec<&str> = m.split_whitespace().collect();
                let mut pts: Vec<&str> = fields.split_off(3);
                pts.retain(|pt| !drop.contains(pt));
                pts.sort_by_key(|pt| !first.contains(pt));
                out.push(format!("m={} {}", fields.join(" "), pts.join(" ")));
                continue;
            }
        }
        let names_dropped = drop.iter().any(|pt| {
            ["a=rtpmap:", "a=fmtp:", "a=rtcp-fb:"]
                .iter()
                .any(|prefix| line.starts_with(&format!("{prefix}{pt} ")))
        });
        if !(in_video && names_dropped) {
            out.push(line.to_owned());
        }
    }
    out.join("\r\n") + "\r\n"
}

#[test]
fn the_answer_checker_finds_what_a_browser_would_refuse() {
    let offer = "v=0\r\na=group:BUNDLE 0\r\na=ice-ufrag:x\r\na=fingerprint:sha-256 AA\r\n\
                 m=audio 9 UDP/TLS/RTP/SAVPF 109\r\na=mid:0\r\na=rtcp-mux\r\na=sendrecv\r\na=rtpmap:109 opus/48000/2\r\n";
    let good = "v=0\r\na=group:BUNDLE 0\r\na=ice-ufrag:y\r\na=fingerprint:sha-256 BB\r\n\
                m=audio 9 UDP/TLS/RTP/SAVPF 109\r\na=mid:0\r\na=rtcp-mux\r\na=recvonly\r\na=setup:active\r\na=rtpmap:109 opus/48000/2\r\n";
    assert_eq!(answer_problems(offer, good), Vec::<String>::new());
    // Another payload type, an actpass setup, a lost BUNDLE group.
    let bad = "v=0\r\na=ice-ufrag:y\r\na=fingerprint:sha-256 BB\r\n\
               m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=rtcp-mux\r\na=recvonly\r\na=setup:actpass\r\na=rtpmap:111 opus/48000/2\r\n";
    let problems = answer_problems(offer, bad);
    assert_eq!(problems.len(), 3, "{problems:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firefox_max_bundle_offer_is_answered_with_its_own_payload_types() {
    if !loadgen::netns::isolate() {
        return;
    }
    let answer = answer_to(FIREFOX_OFFER, 43_101).await;
    assert_eq!(
        answer_problems(FIREFOX_OFFER, &answer),
        Vec::<String>::new(),
        "{answer}"
    );
    // Opus at Firefox's 109; the bundle-only video section accepted with VP8 at 120 and its
    // RTX at 124, nothing else (so Firefox sends VP8, which every subscriber decodes).
    assert_eq!(answered(&answer, "audio"), [("109".into(), "opus".into())]);
    assert_eq!(
        answered(&answer, "video"),
        [("120".into(), "vp8".into()), ("124".into(), "rtx".into())]
    );
    assert!(
        parse(&answer).bundle == ["0", "1"],
        "both sections share one transport: {answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_offer_is_answered_with_vp8_alone() {
    if !loadgen::netns::isolate() {
        return;
    }
    let answer = answer_to(CHROMIUM_OFFER, 43_111).await;
    assert_eq!(
        answer_problems(CHROMIUM_OFFER, &answer),
        Vec::<String>::new(),
        "{answer}"
    );
    assert_eq!(answered(&answer, "audio"), [("111".into(), "opus".into())]);
    assert_eq!(
        answered(&answer, "video"),
        [("96".into(), "vp8".into()), ("97".into(), "rtx".into())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offer_that_puts_h264_first_is_still_answered_with_vp8() {
    if !loadgen::netns::isolate() {
        return;
    }
    // As Safari offers: H.264 before VP8.
    let offer = reshaped(CHROMIUM_OFFER, &[], &["102", "103"]);
    assert!(
        offer.contains("m=video 9 UDP/TLS/RTP/SAVPF 102 103 96"),
        "{offer}"
    );
    let answer = answer_to(&offer, 43_121).await;
    assert_eq!(
        answer_problems(&offer, &answer),
        Vec::<String>::new(),
        "{answer}"
    );
    assert_eq!(
        answered(&answer, "video"),
        [("96".into(), "vp8".into()), ("97".into(), "rtx".into())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offer_without_vp8_is_answered_with_h264_packetization_mode_1() {
    if !loadgen::netns::isolate() {
        return;
    }
    let offer = reshaped(CHROMIUM_OFFER, &["96", "97"], &[]);
    assert!(!offer.contains("VP8"), "{offer}");
    let answer = answer_to(&offer, 43_131).await;
    assert_eq!(
        answer_problems(&offer, &answer),
        Vec::<String>::new(),
        "{answer}"
    );
    let video = answered(&answer, "video");
    let (first_pt, first_codec) = video.first().expect("a video codec");
    assert_eq!(first_codec, "h264", "{answer}");
    let description = parse(&answer);
    let section = description
        .sections
        .iter()
        .find(|s| s.kind == "video")
        .expect("video");
    let fmtp = section.fmtp.get(first_pt).expect("H.264 has its fmtp");
    assert!(fmtp.contains("packetization-mode=1"), "{fmtp}");
    // The profile answered is one the offer made at that payload type.
    let offered = parse(&offer);
    let offered_fmtp = offered
        .sections
        .iter()
        .find(|s| s.kind == "video")
        .and_then(|s| s.fmtp.get(first_pt))
        .expect("offered fmtp");
    assert_eq!(fmtp, offered_fmtp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_offer_is_refused_with_a_reason() {
    if !loadgen::netns::isolate() {
        return;
    }
    let peer = peer(43_141, PeerTarget::Publisher).await;
    let err = negotiation::answer_publisher(&peer, "v=0\r\nm=audio banana\r\n".into())
        .await
        .expect_err("not an offer");
    assert!(!err.to_string().is_empty());
    let _ = peer.close().await;
}

/// The SFU's offer to a subscriber carries a Firefox publisher's VP8 and Opus (as the
/// forwarder learned them, with Firefox's fmtp) at the SFU's own payload types; each browser's
/// captured answer to it applies, and the payload types the subscriber's packets must carry
/// are the ones negotiated with that subscriber.
async fn subscriber_answer_applies(answer: &str, port: u16) {
    let peer = peer(port, PeerTarget::Subscriber).await;
    let publisher = ParticipantId::from("p1");
    let video = Arc::new(Downstream::new(
        ParticipantId::from("p2"),
        &TrackId::from("t1"),
        &publisher,
        TrackKind::Video,
        RTCRtpCodec {
            mime_type: "video/VP8".into(),
            clock_rate: 90_000,
            channels: 0,
            sdp_fmtp_line: "max-fs=12288;max-fr=60".into(),
            rtcp_feedback: Vec::new(),
        },
        Arc::default(),
    ));
    let audio = Arc::new(Downstream::new(
        ParticipantId::from("p2"),
        &TrackId::from("t2"),
        &publisher,
        TrackKind::Audio,
        RTCRtpCodec {
            mime_type: "audio/opus".into(),
            clock_rate: 48_000,
            channels: 2,
            sdp_fmtp_line: "maxplaybackrate=48000;stereo=1;useinbandfec=1".into(),
            rtcp_feedback: Vec::new(),
        },
        Arc::default(),
    ));
    let video_sender = media::add_first_video(&peer, video.local.clone())
        .await
        .expect("video");
    let audio_sender = peer.add_track(audio.local.clone()).await.expect("audio");
    let offer = peer.create_offer(None).await.expect("offer");
    let sdp = offer.sdp.clone();
    peer.set_local_description(offer).await.expect("local");
    // The first video section offers every codec the SFU forwards (see media::add_first_video).
    let first_video = sdp.split("\nm=").nth(1).expect("a first section");
    assert!(first_video.starts_with("video "), "{sdp}");
    assert!(
        first_video.contains("VP8/90000") && first_video.contains("H264/90000"),
        "{sdp}"
    );
    // What the page reads to map room tracks: `a=msid:<participant> <track>` per section.
    assert!(sdp.contains("a=msid:p1 t1"), "{sdp}");
    assert!(sdp.contains("a=msid:p1 t2"), "{sdp}");
    peer.set_remote_description(RTCSessionDescription::answer(answer.to_owned()).expect("parse"))
        .await
        .expect("the browser's answer applies");
    for (sender, mime, pt) in [
        (video_sender, "video/VP8", 96),
        (audio_sender, "audio/opus", 111),
    ] {
        let parameters = sender.get_parameters().await.expect("parameters");
        let negotiated = parameters
            .rtp_parameters
            .codecs
            .iter()
            .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(mime))
            .map(|c| c.payload_type);
        assert_eq!(negotiated, Some(pt), "{mime}");
    }
    let _ = peer.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firefox_and_chromium_answers_to_the_sfu_offer_apply() {
    if !loadgen::netns::isolate() {
        return;
    }
    subscriber_answer_applies(FIREFOX_SUBSCRIBE_ANSWER, 43_151).await;
    subscriber_answer_applies(CHROMIUM_SUBSCRIBE_ANSWER, 43_161).await;
}

//! Offer and answer with browsers: the SFU answers each publisher's offer, and asks every
//! publisher for a video codec that every browser can decode.
//!
//! Browsers offer their codecs in their own order and with their own payload types: Chromium
//! VP8 first at 96, Safari H.264 first, Firefox VP8 at 120 (and no H.264 without its plugin).
//! The SFU forwards a publisher's packets unchanged, so whatever the publisher sends is what
//! every subscriber must decode. It therefore answers a video section that offers VP8 with VP8
//! alone (and its RTX): every WebRTC browser decodes VP8. A section without VP8 keeps the
//! offer's order among the codecs the SFU supports (H.264 with packetization mode 1). Payload
//! types are the publisher's in its own connection and the subscriber's in each subscriber
//! connection; the forwarder rewrites them per subscriber.

use std::collections::HashSet;
use std::sync::Arc;

use webrtc::peer_connection::{PeerConnection, RTCSessionDescription};

use crate::media;

/// The `mid`s of the offer's video sections that offer VP8.
pub fn video_sections_offering_vp8(offer: &str) -> HashSet<String> {
    let mut found = HashSet::new();
    for section in offer.split("\nm=").skip(1) {
        let mut lines = section.lines();
        let is_video = lines.next().is_some_and(|m| m.starts_with("video "));
        if !is_video {
            continue;
        }
        let mut mid = None;
        let mut vp8 = false;
        for line in section.lines().map(str::trim_end) {
            if let Some(value) = line.strip_prefix("a=mid:") {
                mid = Some(value.to_owned());
            } else if let Some(rtpmap) = line.strip_prefix("a=rtpmap:") {
                let codec = rtpmap.split_whitespace().nth(1).unwrap_or_default();
                vp8 |= codec.to_ascii_uppercase().starts_with("VP8/");
            }
        }
        if let (Some(mid), true) = (mid, vp8) {
            found.insert(mid);
        }
    }
    found
}

/// Applies a publisher's offer and returns the SFU's answer, VP8 chosen wherever offered.
///
/// # Errors
/// The media stack's error when the offer cannot be parsed or applied, or the answer made.
pub async fn answer_publisher(
    peer: &Arc<dyn PeerConnection>,
    offer: String,
) -> Result<String, webrtc::error::Error> {
    let vp8_sections = video_sections_offering_vp8(&offer);
    peer.set_remote_description(RTCSessionDescription::offer(offer)?)
        .await?;
    for transceiver in peer.get_transceivers().await {
        let Some(mid) = transceiver.mid().await? else {
            continue;
        };
        if vp8_sections.contains(&mid) {
            transceiver
                .set_codec_preferences(media::vp8_with_rtx())
                .await?;
        }
    }
    let answer = peer.create_answer(None).await?;
    let sdp = answer.sdp.clone();
    peer.set_local_description(answer).await?;
    Ok(sdp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vp8_is_found_in_each_video_section_that_offers_it() {
        let offer = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 109\r\na=mid:0\r\na=rtpmap:109 opus/48000/2\r\n\
                     m=video 0 UDP/TLS/RTP/SAVPF 120 124\r\na=bundle-only\r\na=mid:1\r\na=rtpmap:120 VP8/90000\r\na=rtpmap:124 rtx/90000\r\n\
                     m=video 9 UDP/TLS/RTP/SAVPF 102\r\na=mid:2\r\na=rtpmap:102 H264/90000\r\n";
        assert_eq!(
            video_sections_offering_vp8(offer),
            HashSet::from(["1".to_owned()])
        );
        assert!(video_sections_offering_vp8("v=0\r\n").is_empty());
    }
}

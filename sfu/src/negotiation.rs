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

/// `offer` with every video section that offers VP8 narrowed to VP8 and the RTX that repairs
/// it: the other codecs' payload types leave the `m=` line, and their `rtpmap`, `fmtp` and
/// `rtcp-fb` lines go. Sections without VP8 and audio stay as they are.
///
/// The media stack then answers with what is left, in the browser's own payload types (an
/// answer may hold any subset of what was offered), and maps the browser's packets to the
/// track as for any offer. Narrowing the transceiver's codec preferences instead would answer
/// the same text but leave the receiver expecting the SFU's own payload types, so a browser
/// whose VP8 is not at 96 (Firefox: 120) would send packets that reach no track.
pub fn narrow_to_vp8(offer: &str) -> String {
    let mut out = String::with_capacity(offer.len());
    for (index, section) in offer.split_inclusive("\nm=").enumerate() {
        let (body, rest) = match section.strip_suffix("m=") {
            Some(body) => (body, "m="),
            None => (section, ""),
        };
        if index == 0 || !body.starts_with("video ") {
            out.push_str(body);
        } else {
            out.push_str(&narrow_section(body));
        }
        out.push_str(rest);
    }
    out
}

/// One video section (from after `m=`), narrowed to VP8 and its RTX when it offers VP8.
fn narrow_section(section: &str) -> String {
    let attribute_pt = |line: &str, prefix: &str| -> Option<String> {
        line.strip_prefix(prefix)
            .and_then(|rest| rest.split([' ', '\r']).next())
            .map(str::to_owned)
    };
    let mut vp8 = HashSet::new();
    for line in section.lines() {
        if let Some(rest) = line.strip_prefix("a=rtpmap:") {
            let mut fields = rest.split_whitespace();
            if let (Some(pt), Some(codec)) = (fields.next(), fields.next())
                && codec.to_ascii_uppercase().starts_with("VP8/")
            {
                vp8.insert(pt.to_owned());
            }
        }
    }
    if vp8.is_empty() {
        return section.to_owned();
    }
    let mut keep = vp8.clone();
    for line in section.lines() {
        if let Some(pt) = attribute_pt(line, "a=fmtp:")
            && let Some(apt) = line
                .split([' ', ';'])
                .find_map(|p| p.trim().strip_prefix("apt="))
            && vp8.contains(apt.trim_end())
        {
            keep.insert(pt);
        }
    }
    let mut out = String::with_capacity(section.len());
    for (number, line) in section.split_inclusive('\n').enumerate() {
        if number == 0 {
            // `video <port> <proto> <pt> <pt> …`
            let ending = &line[line.trim_end().len()..];
            let mut fields = line.trim_end().split(' ');
            let head: Vec<&str> = fields.by_ref().take(3).collect();
            let pts: Vec<&str> = fields.filter(|pt| keep.contains(*pt)).collect();
            out.push_str(&head.join(" "));
            for pt in pts {
                out.push(' ');
                out.push_str(pt);
            }
            out.push_str(ending);
            continue;
        }
        let dropped = ["a=rtpmap:", "a=fmtp:", "a=rtcp-fb:"]
            .iter()
            .filter_map(|prefix| attribute_pt(line, prefix))
            .any(|pt| !keep.contains(&pt));
        if !dropped {
            out.push_str(line);
        }
    }
    out
}

/// Applies a publisher's offer and returns the SFU's answer, VP8 chosen wherever offered.
///
/// # Errors
/// The media stack's error when the offer cannot be parsed or applied, or the answer made.
pub async fn answer_publisher(
    peer: &Arc<dyn PeerConnection>,
    offer: String,
) -> Result<String, webrtc::error::Error> {
    peer.set_remote_description(RTCSessionDescription::offer(narrow_to_vp8(&offer))?)
        .await?;
    let answer = peer.create_answer(None).await?;
    let sdp = answer.sdp.clone();
    peer.set_local_description(answer).await?;
    Ok(sdp)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\na=group:BUNDLE 0 1 2\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 109 0\r\na=mid:0\r\na=rtpmap:109 opus/48000/2\r\na=rtpmap:0 PCMU/8000\r\n\
        m=video 0 UDP/TLS/RTP/SAVPF 126 120 124 121 125\r\na=bundle-only\r\na=mid:1\r\n\
        a=fmtp:126 profile-level-id=42e01f;packetization-mode=1\r\na=fmtp:124 apt=120\r\na=fmtp:125 apt=121\r\n\
        a=rtcp-fb:126 nack\r\na=rtcp-fb:120 nack\r\na=rtcp-fb:120 nack pli\r\n\
        a=rtpmap:126 H264/90000\r\na=rtpmap:120 VP8/90000\r\na=rtpmap:124 rtx/90000\r\na=rtpmap:121 VP9/90000\r\na=rtpmap:125 rtx/90000\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 102\r\na=mid:2\r\na=rtpmap:102 H264/90000\r\n";

    #[test]
    fn a_video_section_offering_vp8_keeps_vp8_and_its_rtx_alone() {
        let narrowed = narrow_to_vp8(OFFER);
        let video = narrowed
            .split("\nm=")
            .nth(2)
            .expect("the first video section");
        assert!(
            video.starts_with("video 0 UDP/TLS/RTP/SAVPF 120 124\r\n"),
            "{video}"
        );
        for gone in ["126", "121", "125"] {
            assert!(
                !video.contains(&format!(":{gone} ")),
                "{gone} stays in {video}"
            );
        }
        for kept in [
            "a=rtpmap:120 VP8/90000",
            "a=rtpmap:124 rtx/90000",
            "a=fmtp:124 apt=120",
            "a=rtcp-fb:120 nack pli",
            "a=bundle-only",
            "a=mid:1",
        ] {
            assert!(video.contains(kept), "{kept} missing from {video}");
        }
    }

    #[test]
    fn audio_and_sections_without_vp8_stay_as_they_are() {
        let narrowed = narrow_to_vp8(OFFER);
        let sections: Vec<&str> = narrowed.split("\nm=").collect();
        let original: Vec<&str> = OFFER.split("\nm=").collect();
        assert_eq!(sections.len(), original.len());
        assert_eq!(sections[0], original[0]);
        assert_eq!(sections[1], original[1], "audio");
        assert_eq!(sections[3], original[3], "H.264 only");
        assert_eq!(narrow_to_vp8("v=0\r\n"), "v=0\r\n");
    }
}

//! The offer/answer of a call (RFC 3264) with `rtc::sdp`: one audio stream, Opus, G.722 or
//! G.711 (PCMU or PCMA), whichever the caller lists first, and RFC 4733 telephone-events.

use std::net::{IpAddr, SocketAddr};

use rtc::sdp::SessionDescription;
use rtc::sdp::description::common::{Address, Attribute, ConnectionInformation};
use rtc::sdp::description::media::{MediaDescription, MediaName, RangedPort};
use rtc::sdp::description::session::{Origin, TimeDescription, Timing};

use crate::codec::{Codec, G722_PAYLOAD_TYPE};
use crate::g711::Law;

/// Why an offer cannot be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OfferError {
    /// Not SDP, or without an audio stream and its address (answered 400).
    #[error("malformed SDP: {0}")]
    Malformed(String),
    /// No codec we speak (answered 488).
    #[error("no common codec: offered {0}, we answer Opus, G.722, PCMU or PCMA")]
    NoCommonCodec(String),
}

/// Which way media flows, from the caller's point of view (their offer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Both ways.
    SendRecv,
    /// The caller only sends (they put us on hold with music).
    SendOnly,
    /// The caller only receives.
    RecvOnly,
    /// Nothing flows (hold).
    Inactive,
}

impl Direction {
    /// Our side of it in the answer.
    fn answer(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "recvonly",
            Direction::RecvOnly => "sendonly",
            Direction::Inactive => "inactive",
        }
    }

    /// Whether we may send to the caller.
    pub fn we_send(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }
}

/// What was agreed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// The voice codec.
    pub codec: Codec,
    /// The payload type the caller gave telephone-event/8000, if any.
    pub telephone_event: Option<u8>,
    /// Where the caller receives RTP (port 0: the stream is refused or on hold).
    pub remote: SocketAddr,
    /// The caller's direction.
    pub direction: Direction,
}

/// Reads the caller's offer and picks what we answer with (the caller's order of preference).
///
/// # Errors
/// [`OfferError`]: malformed, or none of Opus, G.722 and G.711 offered.
pub fn negotiate(offer: &[u8]) -> Result<Negotiated, OfferError> {
    let text = std::str::from_utf8(offer)
        .map_err(|_| OfferError::Malformed("not UTF-8".into()))?
        .to_owned();
    if text.trim().is_empty() {
        return Err(OfferError::Malformed("no SDP offer".into()));
    }
    let session =
        SessionDescription::try_from(text).map_err(|err| OfferError::Malformed(err.to_string()))?;
    let audio = session
        .media_descriptions
        .iter()
        .find(|m| m.media_name.media == "audio")
        .ok_or_else(|| OfferError::Malformed("no audio stream".into()))?;
    let address = audio
        .connection_information
        .as_ref()
        .or(session.connection_information.as_ref())
        .and_then(|c| c.address.as_ref())
        .ok_or_else(|| OfferError::Malformed("no connection address (c=)".into()))?;
    let ip: IpAddr = address
        .address
        .parse()
        .map_err(|_| OfferError::Malformed(format!("not an IP address: {}", address.address)))?;
    let port = u16::try_from(audio.media_name.port.value)
        .map_err(|_| OfferError::Malformed("port out of range".into()))?;
    // `codecs()` reads a=rtpmap only: static payload types 0 and 8 are often offered without one.
    let rtpmaps = audio.codecs();
    let name_of = |pt: u8| -> Option<String> {
        match rtpmaps.get(&pt) {
            Some(codec) => Some(format!("{}/{}", codec.name, codec.clock_rate)),
            None => match pt {
                0 => Some("PCMU/8000".into()),
                8 => Some("PCMA/8000".into()),
                9 => Some("G722/8000".into()),
                _ => None,
            },
        }
    };
    let mut codec = None;
    let mut telephone_event = None;
    for format in &audio.media_name.formats {
        let Ok(pt) = format.parse::<u8>() else {
            return Err(OfferError::Malformed(format!("payload type {format}")));
        };
        let Some(name) = name_of(pt) else { continue };
        let name = name.to_ascii_uppercase();
        match name.as_str() {
            "PCMU/8000" if codec.is_none() && pt == 0 => codec = Some(Codec::G711(Law::Pcmu)),
            "PCMA/8000" if codec.is_none() && pt == 8 => codec = Some(Codec::G711(Law::Pcma)),
            "G722/8000" if codec.is_none() && pt == G722_PAYLOAD_TYPE => {
                codec = Some(Codec::G722);
            }
            "OPUS/48000" if codec.is_none() && pt >= 96 => codec = Some(Codec::Opus(pt)),
            "TELEPHONE-EVENT/8000" if telephone_event.is_none() => telephone_event = Some(pt),
            _ => {}
        }
    }
    let codec =
        codec.ok_or_else(|| OfferError::NoCommonCodec(audio.media_name.formats.join(" ")))?;
    let direction =
        if audio.attribute("inactive").is_some() || session.attribute("inactive").is_some() {
            Direction::Inactive
        } else if audio.attribute("sendonly").is_some() || session.attribute("sendonly").is_some() {
            Direction::SendOnly
        } else if audio.attribute("recvonly").is_some() || session.attribute("recvonly").is_some() {
            Direction::RecvOnly
        } else {
            Direction::SendRecv
        };
    Ok(Negotiated {
        codec,
        telephone_event,
        remote: SocketAddr::new(ip, port),
        direction,
    })
}

/// Our answer: `local` is where we receive RTP; `version` grows with each answer of the call.
pub fn answer(
    negotiated: &Negotiated,
    local: SocketAddr,
    session_id: u64,
    version: u64,
) -> Vec<u8> {
    let address_type = if local.is_ipv4() { "IP4" } else { "IP6" };
    let codec = negotiated.codec;
    let mut formats = vec![codec.payload_type().to_string()];
    let mut attributes = vec![Attribute::new(
        "rtpmap".into(),
        Some(format!("{} {}", codec.payload_type(), codec.rtpmap())),
    )];
    if let Codec::Opus(pt) = codec {
        attributes.push(Attribute::new(
            "fmtp".into(),
            Some(format!("{pt} useinbandfec=1")),
        ));
    }
    if let Some(pt) = negotiated.telephone_event {
        formats.push(pt.to_string());
        attributes.push(Attribute::new(
            "rtpmap".into(),
            Some(format!("{pt} telephone-event/8000")),
        ));
        attributes.push(Attribute::new("fmtp".into(), Some(format!("{pt} 0-15"))));
    }
    attributes.push(Attribute::new("ptime".into(), Some("20".into())));
    attributes.push(Attribute::new(negotiated.direction.answer().into(), None));
    let session = SessionDescription {
        version: 0,
        origin: Origin {
            username: "conclave".into(),
            session_id,
            session_version: version,
            network_type: "IN".into(),
            address_type: address_type.into(),
            unicast_address: local.ip().to_string(),
        },
        session_name: "conclave".into(),
        connection_information: Some(ConnectionInformation {
            network_type: "IN".into(),
            address_type: address_type.into(),
            address: Some(Address {
                address: local.ip().to_string(),
                ttl: None,
                range: None,
            }),
        }),
        time_descriptions: vec![TimeDescription {
            timing: Timing {
                start_time: 0,
                stop_time: 0,
            },
            repeat_times: vec![],
        }],
        media_descriptions: vec![MediaDescription {
            media_name: MediaName {
                media: "audio".into(),
                port: RangedPort {
                    value: isize::try_from(local.port()).unwrap_or(0),
                    range: None,
                },
                protos: vec!["RTP".into(), "AVP".into()],
                formats,
            },
            attributes,
            ..Default::default()
        }],
        ..Default::default()
    };
    session.marshal().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIPP: &str = "v=0\r\no=user1 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\n";

    #[test]
    fn a_static_payload_type_without_rtpmap_is_understood() {
        let n = negotiate(SIPP.as_bytes()).expect("answerable");
        assert_eq!(n.codec, Codec::G711(Law::Pcmu));
        assert_eq!(n.telephone_event, None);
        assert_eq!(
            n.remote,
            "127.0.0.1:6000".parse::<SocketAddr>().expect("addr")
        );
        assert_eq!(n.direction, Direction::SendRecv);
    }

    #[test]
    fn the_callers_order_and_event_payload_type_are_kept() {
        let offer = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 9 8 0 96\r\nc=IN IP4 10.0.0.2\r\na=rtpmap:9 G722/8000\r\na=rtpmap:96 telephone-event/8000\r\na=fmtp:96 0-15\r\na=sendonly\r\n";
        let wideband = negotiate(offer.as_bytes()).expect("answerable");
        assert_eq!(wideband.codec, Codec::G722, "the caller's first choice");
        let answer_wide = String::from_utf8(answer(
            &wideband,
            "127.0.0.1:41000".parse().expect("addr"),
            7,
            1,
        ))
        .expect("utf-8");
        assert!(
            answer_wide.contains("m=audio 41000 RTP/AVP 9 96\r\n"),
            "{answer_wide}"
        );
        assert!(
            answer_wide.contains("a=rtpmap:9 G722/8000"),
            "{answer_wide}"
        );
        // G.722 by its static payload type alone, as G.711's.
        let bare = SIPP.replace("RTP/AVP 0", "RTP/AVP 9 0");
        assert_eq!(
            negotiate(bare.as_bytes()).expect("answerable").codec,
            Codec::G722
        );

        let offer = offer.replace("RTP/AVP 9 8 0 96", "RTP/AVP 8 0 96");
        let n = negotiate(offer.as_bytes()).expect("answerable");
        assert_eq!(n.codec, Codec::G711(Law::Pcma));
        assert_eq!(n.telephone_event, Some(96));
        assert_eq!(
            n.remote,
            "10.0.0.2:4000".parse::<SocketAddr>().expect("addr")
        );
        assert_eq!(n.direction, Direction::SendOnly);
        assert!(!Direction::Inactive.we_send());

        let answer = String::from_utf8(answer(&n, "127.0.0.1:41000".parse().expect("addr"), 7, 2))
            .expect("utf-8");
        assert!(
            answer.contains("m=audio 41000 RTP/AVP 8 96\r\n"),
            "{answer}"
        );
        assert!(
            answer.contains("a=rtpmap:96 telephone-event/8000"),
            "{answer}"
        );
        assert!(answer.contains("a=recvonly"), "{answer}");
        assert!(answer.contains("c=IN IP4 127.0.0.1"), "{answer}");
        // Our own answer parses as an offer would.
        negotiate(answer.as_bytes()).expect("our answer parses");
    }

    #[test]
    fn an_opus_phone_is_answered_in_opus_on_its_payload_type() {
        let opus = SIPP.replace("RTP/AVP 0", "RTP/AVP 111 0\r\na=rtpmap:111 opus/48000/2");
        let n = negotiate(opus.as_bytes()).expect("answerable");
        assert_eq!(n.codec, Codec::Opus(111));
        let answer = String::from_utf8(answer(&n, "127.0.0.1:41000".parse().expect("addr"), 7, 1))
            .expect("utf-8");
        assert!(answer.contains("m=audio 41000 RTP/AVP 111\r\n"), "{answer}");
        assert!(answer.contains("a=rtpmap:111 opus/48000/2"), "{answer}");
        assert!(answer.contains("a=fmtp:111 useinbandfec=1"), "{answer}");
    }

    #[test]
    fn offers_without_a_codec_we_speak_or_that_are_not_sdp_are_told_apart() {
        let ilbc = SIPP.replace("RTP/AVP 0", "RTP/AVP 97\r\na=rtpmap:97 iLBC/8000");
        assert!(matches!(
            negotiate(ilbc.as_bytes()),
            Err(OfferError::NoCommonCodec(_))
        ));
        // Payload type 0 renamed to something else is not PCMU.
        let odd = SIPP.replace("RTP/AVP 0", "RTP/AVP 0\r\na=rtpmap:0 L16/8000");
        assert!(matches!(
            negotiate(odd.as_bytes()),
            Err(OfferError::NoCommonCodec(_))
        ));
        for bad in ["", "this is not sdp", "v=0\r\nm=audio x RTP/AVP 0\r\n"] {
            assert!(
                matches!(negotiate(bad.as_bytes()), Err(OfferError::Malformed(_))),
                "{bad:?}"
            );
        }
        let no_address = SIPP.replace("c=IN IP4 127.0.0.1\r\n", "");
        assert!(matches!(
            negotiate(no_address.as_bytes()),
            Err(OfferError::Malformed(_))
        ));
        let video_only = SIPP.replace("m=audio", "m=video");
        assert!(matches!(
            negotiate(video_only.as_bytes()),
            Err(OfferError::Malformed(_))
        ));
    }
}

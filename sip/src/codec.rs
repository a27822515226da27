//! The phone's side of a call: the voice codec agreed in SDP and its state.
//!
//! - **G.711** (PCMU, PCMA): narrowband, 8 kHz, stateless ([`crate::g711`]).
//! - **G.722**: wideband, 16 kHz (its RTP clock says 8 kHz, RFC 3551), by the `audio-codec`
//!   crate's encoder and decoder (the ITU-T sub-band ADPCM at 64 kb/s). The caller's voice stays
//!   wideband into the room (Opus at 16 kHz); what the call sends (prompts and the room's mix,
//!   both 8 kHz) is resampled to 16 kHz with the same crate's polyphase resampler.
//! - **Opus** (RFC 7587, a dynamic payload type, RTP clock 48 kHz): libopus decodes the phone's
//!   packets at 16 kHz (wideband into the room) and encodes what the call sends straight from
//!   8 kHz.
//!
//! Every frame the call sends is 20 ms.

use audio_codec::g722::{G722Decoder, G722Encoder};
use audio_codec::resampler::BoxedResampler;
use audio_codec::{Decoder, Encoder};

use crate::g711::Law;

/// RTP payload type of G.722 (static, RFC 3551).
pub const G722_PAYLOAD_TYPE: u8 = 9;

/// A voice codec a phone may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// G.711 µ-law or A-law.
    G711(Law),
    /// G.722.
    G722,
    /// Opus, on the caller's payload type.
    Opus(u8),
}

impl Codec {
    /// The static RTP payload type.
    pub fn payload_type(self) -> u8 {
        match self {
            Codec::G711(law) => law.payload_type(),
            Codec::G722 => G722_PAYLOAD_TYPE,
            Codec::Opus(pt) => pt,
        }
    }

    /// The encoding name in SDP (and in logs and metrics).
    pub fn name(self) -> &'static str {
        match self {
            Codec::G711(law) => law.name(),
            Codec::G722 => "G722",
            Codec::Opus(_) => "opus",
        }
    }

    /// The `a=rtpmap` encoding of the answer (`name/clock[/channels]`).
    pub fn rtpmap(self) -> String {
        match self {
            Codec::Opus(_) => "opus/48000/2".to_owned(),
            other => format!("{}/8000", other.name()),
        }
    }

    /// Ticks of the RTP clock per second: 8 kHz for G.711 and G.722, 48 kHz for Opus.
    pub fn rtp_clock(self) -> u32 {
        match self {
            Codec::Opus(_) => 48_000,
            Codec::G711(_) | Codec::G722 => 8_000,
        }
    }

    /// Samples per second of the audio (not of the RTP clock, which is 8 kHz for both).
    pub fn rate(self) -> u32 {
        match self {
            Codec::G711(_) => 8_000,
            Codec::G722 | Codec::Opus(_) => 16_000,
        }
    }
}

/// One call's codec state: encodes 20 ms of 8 kHz audio for the phone, decodes what it sends
/// at the codec's rate.
pub struct Voice {
    codec: Codec,
    state: State,
}

/// Each codec's state.
enum State {
    /// Stateless.
    G711(Law),
    /// The encoder, the decoder, and 8 → 16 kHz for what the call sends.
    G722 {
        encoder: Box<G722Encoder>,
        decoder: Box<G722Decoder>,
        upsampler: BoxedResampler,
    },
    /// The encoder of what the call sends (8 kHz in), the decoder of what the phone sends
    /// (16 kHz out).
    Opus {
        encoder: opus::Encoder,
        decoder: opus::Decoder,
    },
}

impl std::fmt::Debug for Voice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Voice")
            .field("codec", &self.codec)
            .finish_non_exhaustive()
    }
}

/// 20 ms of silence at 8 kHz.
const SILENCE: [i16; 160] = [0; 160];

impl Voice {
    /// The state for `codec`.
    ///
    /// # Errors
    /// When the resampler or libopus cannot be set up (never for the rates used here).
    pub fn new(codec: Codec) -> Result<Voice, String> {
        let state = match codec {
            Codec::G711(law) => State::G711(law),
            Codec::G722 => State::G722 {
                encoder: Box::new(G722Encoder::new()),
                decoder: Box::new(G722Decoder::new()),
                upsampler: BoxedResampler::new(8_000, 16_000)
                    .map_err(|err| format!("resampler: {err:?}"))?,
            },
            Codec::Opus(_) => {
                let mut encoder =
                    opus::Encoder::new(8_000, opus::Channels::Mono, opus::Application::Voip)
                        .map_err(|err| format!("opus encoder: {err}"))?;
                encoder
                    .set_bitrate(opus::Bitrate::Bits(16_000))
                    .and_then(|()| encoder.set_complexity(crate::room::ENCODER_COMPLEXITY))
                    .map_err(|err| format!("opus settings: {err}"))?;
                let decoder = opus::Decoder::new(16_000, opus::Channels::Mono)
                    .map_err(|err| format!("opus decoder: {err}"))?;
                State::Opus { encoder, decoder }
            }
        };
        Ok(Voice { codec, state })
    }

    /// The codec.
    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// 20 ms of 8 kHz audio (`None`: silence) as one payload for the phone.
    pub fn encode(&mut self, frame: Option<&[i16]>) -> Vec<u8> {
        let frame = frame.unwrap_or(&SILENCE);
        match &mut self.state {
            State::G711(law) => law.encode(frame),
            State::G722 {
                encoder, upsampler, ..
            } => {
                let mut wideband = upsampler.resample(frame);
                wideband.resize(320, 0);
                encoder.encode(&wideband)
            }
            State::Opus { encoder, .. } => encoder.encode_vec(frame, 400).unwrap_or_default(),
        }
    }

    /// A payload from the phone, as samples at [`Codec::rate`].
    pub fn decode(&mut self, payload: &[u8]) -> Vec<i16> {
        match &mut self.state {
            State::G711(law) => law.decode(payload),
            State::G722 { decoder, .. } => decoder.decode(payload),
            State::Opus { decoder, .. } => {
                // 120 ms at 16 kHz, Opus's longest packet.
                let mut pcm = vec![0i16; 1_920];
                let len = decoder.decode(payload, &mut pcm, false).unwrap_or(0);
                pcm.truncate(len);
                pcm
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tone::{power, sine};

    #[test]
    fn g722_carries_wideband_audio_both_ways() {
        // The phone's side: a 5 kHz tone, beyond what 8 kHz audio can hold, survives G.722.
        let mut phone = G722Encoder::new();
        let mut voice = Voice::new(Codec::G722).expect("state");
        let tone = sine(5_000.0, 16_000, 16_000, 8_000);
        let mut heard = Vec::new();
        for frame in tone.chunks(320) {
            let payload = phone.encode(frame);
            assert_eq!(payload.len(), 160, "64 kb/s: one byte per two samples");
            heard.extend(voice.decode(&payload));
        }
        assert_eq!(heard.len(), tone.len());
        let tail = &heard[4_000..];
        assert!(power(tail, 16_000, 5_000.0) > 100.0 * power(tail, 16_000, 3_000.0));

        // The call's side: 8 kHz frames go out as G.722 the phone decodes to the same tone.
        let mut phone = G722Decoder::new();
        let frames = sine(1_000.0, 8_000, 8_000, 8_000);
        let mut decoded = Vec::new();
        for frame in frames.chunks(160) {
            let payload = voice.encode(Some(frame));
            assert_eq!(payload.len(), 160);
            decoded.extend(phone.decode(&payload));
        }
        let silence = voice.encode(None);
        assert_eq!(silence.len(), 160);
        let tail = &decoded[8_000..];
        let at = power(tail, 16_000, 1_000.0);
        assert!(at > 1_000_000.0, "{at}");
        assert!(
            at > 100.0 * power(tail, 16_000, 7_000.0),
            "no image of the upsampling"
        );
    }

    #[test]
    fn opus_phones_are_heard_wideband_and_hear_the_call() {
        let mut voice = Voice::new(Codec::Opus(96)).expect("state");
        assert_eq!(voice.codec().rtpmap(), "opus/48000/2");
        assert_eq!(voice.codec().rtp_clock(), 48_000);
        // The phone speaks 5 kHz (wideband) in Opus at 48 kHz; it arrives at 16 kHz.
        let mut phone = opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip)
            .expect("encoder");
        let tone = sine(5_000.0, 48_000, 48_000, 8_000);
        let mut heard = Vec::new();
        for frame in tone.chunks(960) {
            let payload = phone.encode_vec(frame, 400).expect("encode");
            heard.extend(voice.decode(&payload));
        }
        assert_eq!(heard.len(), 16_000);
        let tail = &heard[8_000..];
        assert!(power(tail, 16_000, 5_000.0) > 100.0 * power(tail, 16_000, 3_000.0));
        // What the call sends decodes to the same tone at the phone.
        let mut phone = opus::Decoder::new(48_000, opus::Channels::Mono).expect("decoder");
        let frames = sine(1_000.0, 8_000, 8_000, 8_000);
        let mut decoded = vec![0i16; 0];
        let mut pcm = vec![0i16; 5_760];
        for frame in frames.chunks(160) {
            let payload = voice.encode(Some(frame));
            let len = phone.decode(&payload, &mut pcm, false).expect("decode");
            assert_eq!(len, 960, "20 ms");
            decoded.extend_from_slice(&pcm[..len]);
        }
        let tail = &decoded[24_000..];
        assert!(power(tail, 48_000, 1_000.0) > 100.0 * power(tail, 48_000, 2_000.0));
        assert!(!voice.encode(None).is_empty(), "silence is a packet too");
    }

    #[test]
    fn g711_is_the_law_itself() {
        let mut voice = Voice::new(Codec::G711(Law::Pcma)).expect("state");
        assert_eq!(voice.codec().payload_type(), 8);
        assert_eq!(voice.codec().rate(), 8_000);
        let frame = sine(440.0, 8_000, 160, 8_000);
        let payload = voice.encode(Some(&frame));
        assert_eq!(payload, Law::Pcma.encode(&frame));
        assert_eq!(voice.decode(&payload), Law::Pcma.decode(&payload));
        assert_eq!(voice.encode(None), vec![Law::Pcma.silence(); 160]);
        assert_eq!(Codec::G722.payload_type(), 9);
        assert_eq!(Codec::G722.name(), "G722");
    }
}

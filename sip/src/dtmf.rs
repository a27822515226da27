//! Keypad digits from the three ways phones send them: RFC 4733 telephone-events in the RTP
//! stream, SIP INFO bodies (`application/dtmf-relay`, `application/dtmf`), and in-band tones in
//! the audio itself (Goertzel filters, for gateways that send only audio).

/// How a digit arrived (the `method` label of the digit metric).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// RFC 4733 telephone-event.
    Rfc4733,
    /// SIP INFO.
    Info,
    /// Tones in the audio.
    InBand,
}

impl Method {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Rfc4733 => "rfc4733",
            Method::Info => "info",
            Method::InBand => "inband",
        }
    }
}

/// The digit of an RFC 4733 event code (0-9, 10 = `*`, 11 = `#`); other events (A-D, flash)
/// are not keypad digits a caller types here.
fn digit_of_event(event: u8) -> Option<char> {
    match event {
        0..=9 => Some(char::from(b'0' + event)),
        10 => Some('*'),
        11 => Some('#'),
        _ => None,
    }
}

/// Turns telephone-event packets into digits, each once: an event is repeated in many packets
/// (and its end three times), all with the RTP timestamp of its start.
#[derive(Debug, Default)]
pub struct Rfc4733 {
    last: Option<u32>,
}

impl Rfc4733 {
    /// The digit `payload` starts, if it starts one. `timestamp` is the packet's RTP timestamp.
    pub fn on_packet(&mut self, timestamp: u32, payload: &[u8]) -> Option<char> {
        let event = *payload.first()?;
        if payload.len() < 4 || self.last == Some(timestamp) {
            return None;
        }
        self.last = Some(timestamp);
        digit_of_event(event)
    }
}

/// The digit of a SIP INFO body: `Signal=5\r\nDuration=160` (`application/dtmf-relay`) or a
/// bare `5` (`application/dtmf`).
pub fn digit_of_info(content_type: Option<&str>, body: &[u8]) -> Option<char> {
    let body = std::str::from_utf8(body).ok()?;
    let kind = content_type.unwrap_or("").trim().to_ascii_lowercase();
    let value = if kind.starts_with("application/dtmf-relay") {
        body.lines().find_map(|line| {
            let (key, value) = line.split_once('=')?;
            key.trim()
                .eq_ignore_ascii_case("signal")
                .then_some(value.trim())
        })?
    } else if kind.starts_with("application/dtmf") {
        body.trim()
    } else {
        return None;
    };
    match value {
        "*" | "10" => Some('*'),
        "#" | "11" => Some('#'),
        one if one.len() == 1 && one.as_bytes()[0].is_ascii_digit() => one.chars().next(),
        _ => None,
    }
}

/// The DTMF row (low) and column (high) frequencies, and the keys they make.
const ROWS: [f64; 4] = [697.0, 770.0, 852.0, 941.0];
const COLUMNS: [f64; 4] = [1_209.0, 1_336.0, 1_477.0, 1_633.0];
const KEYS: [[char; 4]; 4] = [
    ['1', '2', '3', 'A'],
    ['4', '5', '6', 'B'],
    ['7', '8', '9', 'C'],
    ['*', '0', '#', 'D'],
];
/// Each tone's least peak amplitude (about −28 dBm0 in 16-bit G.711 terms).
const MIN_AMPLITUDE: f64 = 400.0;
/// The two tones together carry at least this share of the block's power (speech and music
/// spread theirs).
const MIN_SHARE: f64 = 0.7;
/// Twist: the stronger tone at most this many times the weaker one's power (8 dB).
const MAX_TWIST: f64 = 6.3;
/// The strongest frequency of a group at least this many times the next one's power (6 dB).
const MIN_LEAD: f64 = 4.0;
/// Blocks (20 ms each) a key must be heard in a row to count (40 ms, as ITU-T Q.24 allows).
const MIN_BLOCKS: u32 = 2;

/// Finds DTMF keys in 8 kHz audio, each press once: a key counts after [`MIN_BLOCKS`] blocks
/// of it, and again only after a block without it.
#[derive(Debug, Default)]
pub struct InBand {
    current: Option<char>,
    blocks: u32,
    reported: bool,
}

impl InBand {
    /// Feeds one block (20 ms at 8 kHz is best); returns a key pressed, once per press.
    pub fn on_samples(&mut self, block: &[i16]) -> Option<char> {
        let key = key_in(block);
        if key != self.current {
            self.current = key;
            self.blocks = 0;
            self.reported = false;
        }
        let key = key?;
        self.blocks += 1;
        if self.blocks >= MIN_BLOCKS && !self.reported && digit_of_key(key) {
            self.reported = true;
            return Some(key);
        }
        None
    }
}

fn digit_of_key(key: char) -> bool {
    key.is_ascii_digit() || key == '*' || key == '#'
}

/// The DTMF key one block holds, if it holds one clearly.
fn key_in(block: &[i16]) -> Option<char> {
    if block.is_empty() {
        return None;
    }
    let mean_square = block.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / block.len() as f64;
    let strongest = |frequencies: &[f64; 4]| {
        let mut powers: Vec<(usize, f64)> = frequencies
            .iter()
            .map(|&f| crate::tone::power(block, 8_000, f))
            .enumerate()
            .collect();
        powers.sort_by(|a, b| b.1.total_cmp(&a.1));
        (powers[0], powers[1].1)
    };
    let ((row, row_power), row_next) = strongest(&ROWS);
    let ((column, column_power), column_next) = strongest(&COLUMNS);
    // A sine of peak A has power A²/4 here and mean square A²/2.
    let least = MIN_AMPLITUDE * MIN_AMPLITUDE / 4.0;
    let clear = row_power >= least
        && column_power >= least
        && 2.0 * (row_power + column_power) >= MIN_SHARE * mean_square
        && row_power <= MAX_TWIST * column_power
        && column_power <= MAX_TWIST * row_power
        && row_power >= MIN_LEAD * row_next
        && column_power >= MIN_LEAD * column_next;
    clear.then(|| KEYS[row][column])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(code: u8, end: bool, duration: u16) -> [u8; 4] {
        let [hi, lo] = duration.to_be_bytes();
        [code, if end { 0x80 | 10 } else { 10 }, hi, lo]
    }

    #[test]
    fn an_event_with_three_end_packets_is_one_digit() {
        let mut rx = Rfc4733::default();
        let mut digits = String::new();
        for (ts, code) in [(1000u32, 1u8), (3000, 11)] {
            for d in [160u16, 320, 480] {
                digits.extend(rx.on_packet(ts, &event(code, false, d)));
            }
            for _ in 0..3 {
                digits.extend(rx.on_packet(ts, &event(code, true, 640)));
            }
        }
        assert_eq!(digits, "1#");
        // The same digit typed again is a new event with a new timestamp.
        assert_eq!(rx.on_packet(5000, &event(1, true, 640)), Some('1'));
        assert_eq!(rx.on_packet(7000, &[1, 2]), None, "too short");
        assert_eq!(rx.on_packet(9000, &event(16, false, 160)), None, "flash");
    }

    #[test]
    fn info_bodies_of_both_kinds_give_digits() {
        assert_eq!(
            digit_of_info(
                Some("application/dtmf-relay"),
                b"Signal=5\r\nDuration=160\r\n"
            ),
            Some('5')
        );
        assert_eq!(
            digit_of_info(Some("application/dtmf-relay"), b"Signal= #\nDuration=100"),
            Some('#')
        );
        assert_eq!(digit_of_info(Some("application/dtmf"), b"11"), Some('#'));
        assert_eq!(digit_of_info(Some("application/dtmf"), b"*"), Some('*'));
        assert_eq!(digit_of_info(Some("text/plain"), b"5"), None);
        assert_eq!(
            digit_of_info(Some("application/dtmf-relay"), b"Duration=1"),
            None
        );
        assert_eq!(digit_of_info(None, b"5"), None);
    }

    /// `keys` as DTMF at 8 kHz: each key 60 ms, then 60 ms of silence.
    fn dial(keys: &str) -> Vec<i16> {
        let mut audio = Vec::new();
        for key in keys.chars() {
            let (row, column) = (0..4)
                .flat_map(|r| (0..4).map(move |c| (r, c)))
                .find(|&(r, c)| KEYS[r][c] == key)
                .expect("a DTMF key");
            let low = crate::tone::sine(ROWS[row], 8_000, 480, 6_000);
            let high = crate::tone::sine(COLUMNS[column], 8_000, 480, 7_000);
            audio.extend(low.iter().zip(&high).map(|(a, b)| a.saturating_add(*b)));
            audio.extend([0i16; 480]);
        }
        audio
    }

    fn detect(audio: &[i16]) -> String {
        let mut in_band = InBand::default();
        audio
            .chunks(160)
            .filter_map(|block| in_band.on_samples(block))
            .collect()
    }

    #[test]
    fn in_band_tones_become_each_key_once() {
        let keys = "1234567890*#";
        assert_eq!(detect(&dial(keys)), keys);
        // Through G.711, as a gateway sends them.
        let law = crate::g711::Law::Pcmu;
        assert_eq!(detect(&law.decode(&law.encode(&dial(keys)))), keys);
        // A long press is one key; the same key twice with a pause is two.
        let mut long = dial("5");
        long.splice(0..0, dial("5")[..480].iter().copied());
        assert_eq!(detect(&long), "5");
        assert_eq!(detect(&dial("55")), "55");
    }

    #[test]
    fn speech_like_sound_and_quiet_tones_are_not_keys() {
        // A chord, a single tone in the DTMF band, a pair with too much twist, a whisper.
        let mix = |parts: &[(f64, i16)]| -> Vec<i16> {
            let mut out = vec![0i16; 8_000];
            for &(f, a) in parts {
                for (o, s) in out.iter_mut().zip(crate::tone::sine(f, 8_000, 8_000, a)) {
                    *o = o.saturating_add(s);
                }
            }
            out
        };
        assert_eq!(
            detect(&mix(&[(440.0, 6_000), (1_000.0, 4_000), (250.0, 5_000)])),
            ""
        );
        assert_eq!(detect(&mix(&[(770.0, 8_000)])), "");
        assert_eq!(detect(&mix(&[(770.0, 9_000), (1_336.0, 1_000)])), "");
        assert_eq!(detect(&mix(&[(770.0, 200), (1_336.0, 200)])), "");
        // A DTMF pair under loud speech-like sound.
        assert_eq!(
            detect(&mix(&[
                (770.0, 3_000),
                (1_336.0, 3_000),
                (300.0, 9_000),
                (2_200.0, 6_000)
            ])),
            ""
        );
    }
}

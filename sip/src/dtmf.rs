//! Keypad digits from the two ways phones send them: RFC 4733 telephone-events in the RTP
//! stream, and SIP INFO bodies (`application/dtmf-relay`, `application/dtmf`).

/// How a digit arrived (the `method` label of the digit metric).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// RFC 4733 telephone-event.
    Rfc4733,
    /// SIP INFO.
    Info,
}

impl Method {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Rfc4733 => "rfc4733",
            Method::Info => "info",
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
}

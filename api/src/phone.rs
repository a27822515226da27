//! Phone callers: how they appear in a meeting (the SIP gateway joins for them with its service
//! token), and how people are told to dial in (invitations, calendar events and the portal).

use serde::Serialize;
use utoipa::ToSchema;

/// The identity prefix of phone participants (`phone:<uuid>`): one identity per call, recorded
/// in the join token's `sub` and so in the attendance the SFU reports.
pub const IDENTITY_PREFIX: &str = "phone:";

/// The service-token subject prefix of the SIP gateway (`sip:<name>`): only it joins for phone
/// callers.
pub const GATEWAY_SUBJECT_PREFIX: &str = "sip:";

/// How a caller appears in the meeting: "Phone ···1234", the last four digits of the caller ID,
/// or "Phone" when the caller ID has no digits (anonymous or withheld).
pub fn display_name(caller_id: Option<&str>) -> String {
    let digits: Vec<char> = caller_id
        .unwrap_or("")
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    if digits.is_empty() {
        return "Phone".to_owned();
    }
    let last: String = digits[digits.len().saturating_sub(4)..].iter().collect();
    format!("Phone \u{b7}\u{b7}\u{b7}{last}")
}

/// A new identity for one phone call.
pub fn new_identity() -> String {
    format!("{IDENTITY_PREFIX}{}", uuid::Uuid::new_v4())
}

/// Whether an identity (a join token's `sub`, an attendance row's) is a phone participant's.
pub fn is_phone_identity(identity: &str) -> bool {
    identity.starts_with(IDENTITY_PREFIX)
}

/// How to join a meeting by phone: the gateway's SIP address and a SIP link that skips the
/// questions, the PSTN number, and what to type on the keypad.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DialIn {
    /// The SIP gateway's address (`--sip-address`), e.g. `conference@conclave.example.org`;
    /// callers then type the meeting ID and password.
    pub sip_address: Option<String>,
    /// `sip:<meetingId>*<password>@<host>` (without `*<password>` when the password is not
    /// shown or cannot be typed): calling it skips both questions.
    pub sip_uri: Option<String>,
    /// The phone number (`--dial-in-number`), e.g. `+49 30 1234567`.
    pub number: Option<String>,
    /// The keys for the meeting ID: `<meetingId>#`.
    pub meeting_id_keys: String,
    /// The keys for the password, `<password>#`; absent when the meeting has none or it is not
    /// shown.
    pub password_keys: Option<String>,
}

impl DialIn {
    /// The dial-in facts of a meeting, when the service has a SIP address or a number;
    /// `password` only for those who may see it. A password that is not digits (a Conference
    /// resource's Secret may hold anything) cannot be typed and is left out.
    pub fn of(
        sip_address: Option<&str>,
        number: Option<&str>,
        meeting_id: &str,
        password: Option<&str>,
    ) -> Option<DialIn> {
        let sip_address = sip_address.map(str::trim).filter(|a| !a.is_empty());
        let number = number.map(str::trim).filter(|n| !n.is_empty());
        if sip_address.is_none() && number.is_none() {
            return None;
        }
        let password = password.filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        let sip_uri = sip_address.map(|address| {
            let address = address.strip_prefix("sip:").unwrap_or(address);
            let host = address.rsplit_once('@').map_or(address, |(_, host)| host);
            match password {
                Some(password) => format!("sip:{meeting_id}*{password}@{host}"),
                None => format!("sip:{meeting_id}@{host}"),
            }
        });
        Some(DialIn {
            sip_address: sip_address.map(str::to_owned),
            sip_uri,
            number: number.map(str::to_owned),
            meeting_id_keys: format!("{meeting_id}#"),
            password_keys: password.map(|p| format!("{p}#")),
        })
    }

    /// What to type after the call is answered, in words.
    pub fn keypad_text(&self) -> String {
        match &self.password_keys {
            Some(password) => format!(
                "type the meeting ID {} and then the password {}",
                self.meeting_id_keys, password
            ),
            None => format!("type the meeting ID {}", self.meeting_id_keys),
        }
    }

    /// The facts for a mail or a calendar description, as (label, text) pairs.
    pub fn facts(&self) -> Vec<(&'static str, String)> {
        let mut facts = Vec::new();
        if let Some(number) = &self.number {
            facts.push(("Dial in", format!("{number}, then {}", self.keypad_text())));
        }
        if let Some(address) = &self.sip_address {
            facts.push((
                "Dial in by SIP",
                format!("{address}, then {}", self.keypad_text()),
            ));
        }
        if let Some(uri) = &self.sip_uri {
            facts.push(("SIP link", uri.clone()));
        }
        facts
    }

    /// The number as a `tel:` URI (RFC 3966 global number: `+` and digits), when it is one.
    pub fn tel_uri(&self) -> Option<String> {
        let number = self.number.as_deref()?;
        let digits: String = number.chars().filter(char::is_ascii_digit).collect();
        if digits.is_empty() {
            return None;
        }
        let plus = if number.trim_start().starts_with('+') {
            "+"
        } else {
            ""
        };
        Some(format!("tel:{plus}{digits}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callers_are_named_by_their_last_four_digits() {
        assert_eq!(display_name(Some("+4930123451234")), "Phone ···1234");
        assert_eq!(display_name(Some("+33 1 23 45 67 89")), "Phone ···6789");
        assert_eq!(display_name(Some("12")), "Phone ···12");
        assert_eq!(display_name(Some("anonymous")), "Phone");
        assert_eq!(display_name(None), "Phone");
    }

    #[test]
    fn dial_in_needs_an_address_or_a_number() {
        assert_eq!(
            DialIn::of(None, Some("  "), "123456789", Some("4321")),
            None
        );
        let both = DialIn::of(
            Some("conference@conclave.example.org"),
            Some("+49 30 1234567"),
            "123456789",
            Some("4321"),
        )
        .expect("dial-in");
        assert_eq!(
            both.sip_uri.as_deref(),
            Some("sip:123456789*4321@conclave.example.org")
        );
        assert_eq!(both.meeting_id_keys, "123456789#");
        assert_eq!(both.password_keys.as_deref(), Some("4321#"));
        assert_eq!(both.tel_uri().as_deref(), Some("tel:+49301234567"));
        assert_eq!(
            both.facts()[0].1,
            "+49 30 1234567, then type the meeting ID 123456789# and then the password 4321#"
        );
    }

    #[test]
    fn a_password_not_shown_or_not_typeable_stays_out_of_the_link() {
        let hidden =
            DialIn::of(Some("sip:conf@sip.example.org"), None, "123456", None).expect("dial-in");
        assert_eq!(
            hidden.sip_uri.as_deref(),
            Some("sip:123456@sip.example.org")
        );
        assert_eq!(hidden.password_keys, None);
        assert_eq!(hidden.keypad_text(), "type the meeting ID 123456#");
        let letters =
            DialIn::of(Some("sip.example.org"), None, "123456", Some("s3cret")).expect("dial-in");
        assert_eq!(
            letters.sip_uri.as_deref(),
            Some("sip:123456@sip.example.org")
        );
        assert_eq!(letters.tel_uri(), None);
    }
}

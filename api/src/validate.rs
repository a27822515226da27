//! Checks for values people type: names, e-mail addresses, time zones, topics. Each returns a
//! 422 naming the field, with a message that says what to do.

use chrono_tz::Tz;

use crate::{Error, Result};

/// A trimmed, non-empty single-line text of at most `max` characters.
///
/// # Errors
/// 422 naming `field`.
pub fn text(field: &str, value: &str, max: usize) -> Result<String> {
    let value = value.trim();
    if value.is_empty() {
        return Err(Error::invalid(field, "this must not be empty"));
    }
    if value.chars().count() > max {
        return Err(Error::invalid(
            field,
            format!("this has at most {max} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::invalid(
            field,
            "this must be a single line without control characters",
        ));
    }
    Ok(value.to_owned())
}

/// A login name: 2 to 64 of letters, digits, `.`, `_`, `-`, `@`.
///
/// # Errors
/// 422 on `login`.
pub fn login(value: &str) -> Result<String> {
    let value = value.trim();
    let ok = (2..=64).contains(&value.len())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if !ok {
        return Err(Error::invalid(
            "login",
            "a login name has 2 to 64 characters: letters, digits, '.', '_', '-' or '@'",
        ));
    }
    Ok(value.to_owned())
}

/// An e-mail address (`name@example.org`, no display name, no line breaks).
///
/// # Errors
/// 422 naming `field`.
pub fn email(field: &str, value: &str) -> Result<String> {
    let value = value.trim();
    let parsed = value.parse::<email_address::EmailAddress>();
    let plain = parsed
        .as_ref()
        .is_ok_and(|address| address.email() == value);
    if !plain || value.len() > 254 || value.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(Error::invalid(
            field,
            format!("{value:?} is not an e-mail address like name@example.org"),
        ));
    }
    Ok(value.to_owned())
}

/// An IANA time zone name.
///
/// # Errors
/// 422 naming `field`.
pub fn time_zone(field: &str, value: &str) -> Result<Tz> {
    value.trim().parse::<Tz>().map_err(|_| {
        Error::invalid(
            field,
            format!("{value:?} is not an IANA time zone like Europe/Berlin"),
        )
    })
}

/// A Kubernetes pod name as a client names the SFU pod it lost: 1 to 253 of lowercase letters,
/// digits, `-` and `.`, starting and ending with a letter or digit.
///
/// # Errors
/// 422 naming `field`.
pub fn pod_name(field: &str, value: &str) -> Result<String> {
    let ok = (1..=253).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.'))
        && value
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && value
            .bytes()
            .last()
            .is_some_and(|b| b.is_ascii_alphanumeric());
    if !ok {
        return Err(Error::invalid(
            field,
            "give the pod named by the last join's `pod` (1 to 253 lowercase letters, digits, '-' or '.'), or leave it out",
        ));
    }
    Ok(value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_names_are_kubernetes_names() {
        for good in ["conclave-sfu-0", "sfu-1", "a", "sfu.example-2"] {
            assert!(pod_name("lostPod", good).is_ok(), "{good}");
        }
        let long = "a".repeat(254);
        for bad in [
            "",
            "-sfu",
            "sfu-",
            "SFU-0",
            "sfu 0",
            "sfu/0",
            "sfu-0\n",
            long.as_str(),
        ] {
            assert!(pod_name("lostPod", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn header_injection_in_addresses_is_refused() {
        assert!(email("email", "a@example.org").is_ok());
        assert!(email("email", "a@example.org\r\nBcc: b@example.org").is_err());
        assert!(email("email", "Ada <a@example.org>").is_err());
        assert!(email("email", "not-an-address").is_err());
    }

    #[test]
    fn texts_are_single_lines() {
        assert_eq!(text("topic", "  Weekly  ", 10).expect("ok"), "Weekly");
        assert!(text("topic", "a\nb", 10).is_err());
        assert!(text("topic", "   ", 10).is_err());
        assert!(text("topic", "abcdefghijk", 10).is_err());
    }

    #[test]
    fn time_zones_are_iana_names() {
        assert!(time_zone("timeZone", "Europe/Berlin").is_ok());
        assert!(time_zone("timeZone", "Mars/Olympus").is_err());
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

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

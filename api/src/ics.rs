//! RFC 5545 iCalendar events for conferences: the `.ics` download and the calendar part of
//! invitations, with RFC 7986 CONFERENCE properties for the ways to join. Times carry a TZID with a matching VTIMEZONE generated from the IANA
//! database, so calendar programs place recurring meetings correctly across DST changes.

use std::fmt::Write as _;

use chrono::{DateTime, Duration, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::{OffsetComponents, OffsetName, Tz};

/// The product identifier in every calendar.
const PRODID: &str = "-//Conclave//Conclave conferences//EN";

/// The iTIP method of a calendar object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// A plain event to import (the `.ics` download).
    Publish,
    /// An invitation or an update.
    Request,
    /// A cancellation.
    Cancel,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Publish => "PUBLISH",
            Method::Request => "REQUEST",
            Method::Cancel => "CANCEL",
        }
    }
}

/// One conference as a calendar event.
#[derive(Debug, Clone)]
pub struct Event<'a> {
    /// Stable across updates: calendar programs match updates by it.
    pub uid: &'a str,
    /// The edit counter: higher values replace lower ones.
    pub sequence: i64,
    /// When this calendar object was made.
    pub stamp: DateTime<Utc>,
    /// The first occurrence's start.
    pub start: DateTime<Utc>,
    /// The first occurrence's end.
    pub end: DateTime<Utc>,
    /// The zone the schedule is expressed in.
    pub time_zone: Tz,
    /// An RRULE (without `RRULE:`).
    pub recurrence: Option<&'a str>,
    /// The topic.
    pub summary: &'a str,
    /// Free text: join link, meeting ID, password, dial-in.
    pub description: &'a str,
    /// The join link (LOCATION and URL).
    pub url: &'a str,
    /// The organizer's name and e-mail address.
    pub organizer: Option<(&'a str, &'a str)>,
    /// Invited e-mail addresses.
    pub attendees: &'a [String],
    /// The ways to join (RFC 7986 CONFERENCE properties): the browser, SIP, the phone.
    pub access: &'a [Access<'a>],
}

/// One way to join, an RFC 7986 CONFERENCE property: calendar programs show it as a button
/// or a dial-in line.
#[derive(Debug, Clone)]
pub struct Access<'a> {
    /// The URI to open or call (`https:`, `sip:`, `tel:`).
    pub uri: &'a str,
    /// RFC 7986 FEATURE values, comma-separated (`AUDIO,VIDEO`, `PHONE`).
    pub features: &'a str,
    /// A label for people.
    pub label: &'a str,
}

/// Renders a complete VCALENDAR with CRLF line endings and folded lines.
pub fn render(method: Method, event: &Event<'_>) -> String {
    let mut lines: Vec<String> = vec![
        "BEGIN:VCALENDAR".into(),
        format!("PRODID:{PRODID}"),
        "VERSION:2.0".into(),
        "CALSCALE:GREGORIAN".into(),
        format!("METHOD:{}", method.as_str()),
    ];
    let utc = event.time_zone == chrono_tz::UTC;
    if !utc {
        let until = recurrence_horizon(event);
        lines.extend(vtimezone(
            event.time_zone,
            event.start - Duration::days(366),
            until,
        ));
    }
    lines.push("BEGIN:VEVENT".into());
    lines.push(format!("UID:{}", text(event.uid)));
    lines.push(format!("SEQUENCE:{}", event.sequence));
    lines.push(format!("DTSTAMP:{}", utc_stamp(event.stamp)));
    for (name, at) in [("DTSTART", event.start), ("DTEND", event.end)] {
        if utc {
            lines.push(format!("{name}:{}", utc_stamp(at)));
        } else {
            let local = event
                .time_zone
                .from_utc_datetime(&at.naive_utc())
                .naive_local();
            lines.push(format!(
                "{name};TZID={}:{}",
                event.time_zone.name(),
                local.format("%Y%m%dT%H%M%S")
            ));
        }
    }
    if let Some(rule) = event.recurrence {
        lines.push(format!("RRULE:{rule}"));
    }
    lines.push(format!("SUMMARY:{}", text(event.summary)));
    lines.push(format!("DESCRIPTION:{}", text(event.description)));
    lines.push(format!("LOCATION:{}", text(event.url)));
    lines.push(format!("URL:{}", uri(event.url)));
    if let Some((name, email)) = event.organizer {
        lines.push(format!(
            "ORGANIZER;CN={}:mailto:{}",
            param(name),
            uri(email)
        ));
    }
    for access in event.access {
        lines.push(format!(
            "CONFERENCE;VALUE=URI;FEATURE={};LABEL={}:{}",
            uri(access.features),
            param(access.label),
            uri(access.uri)
        ));
    }
    for attendee in event.attendees {
        lines.push(format!(
            "ATTENDEE;CUTYPE=INDIVIDUAL;ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:{}",
            uri(attendee)
        ));
    }
    lines.push(format!(
        "STATUS:{}",
        if method == Method::Cancel {
            "CANCELLED"
        } else {
            "CONFIRMED"
        }
    ));
    lines.push("TRANSP:OPAQUE".into());
    lines.push("END:VEVENT".into());
    lines.push("END:VCALENDAR".into());
    let mut out = String::new();
    for line in lines {
        fold_into(&mut out, &line);
    }
    out
}

/// How far ahead time-zone transitions are listed: the recurrence's end, at most 3 years.
fn recurrence_horizon(event: &Event<'_>) -> DateTime<Utc> {
    if event.recurrence.is_some() {
        event.start + Duration::days(3 * 366)
    } else {
        event.end + Duration::days(1)
    }
}

/// A VTIMEZONE with an observance valid before `from` and every transition up to `until`.
fn vtimezone(tz: Tz, from: DateTime<Utc>, until: DateTime<Utc>) -> Vec<String> {
    let offset_at = |t: DateTime<Utc>| tz.offset_from_utc_datetime(&t.naive_utc());
    let mut lines = vec!["BEGIN:VTIMEZONE".to_owned(), format!("TZID:{}", tz.name())];
    let first = offset_at(from);
    let seconds = |o: &<Tz as TimeZone>::Offset| o.fix().local_minus_utc();
    observance(
        &mut lines,
        &first,
        seconds(&first),
        DateTime::UNIX_EPOCH.naive_utc(),
    );
    let mut previous = first;
    let mut t = from;
    while t < until {
        let next = t + Duration::days(1);
        let offset = offset_at(next);
        if seconds(&offset) != seconds(&previous) {
            // Bisect to the second at which the offset changes.
            let (mut low, mut high) = (t, next);
            while high - low > Duration::seconds(1) {
                let mid = low + (high - low) / 2;
                if seconds(&offset_at(mid)) == seconds(&previous) {
                    low = mid
                } else {
                    high = mid
                }
            }
            let local_before = high.naive_utc() + Duration::seconds(i64::from(seconds(&previous)));
            observance(&mut lines, &offset, seconds(&previous), local_before);
            previous = offset;
        }
        t = next;
    }
    lines.push("END:VTIMEZONE".into());
    lines
}

fn observance(
    lines: &mut Vec<String>,
    offset: &<Tz as TimeZone>::Offset,
    from_seconds: i32,
    start: NaiveDateTime,
) {
    let kind = if offset.dst_offset().is_zero() {
        "STANDARD"
    } else {
        "DAYLIGHT"
    };
    lines.push(format!("BEGIN:{kind}"));
    lines.push(format!("DTSTART:{}", start.format("%Y%m%dT%H%M%S")));
    lines.push(format!("TZOFFSETFROM:{}", utc_offset(from_seconds)));
    lines.push(format!(
        "TZOFFSETTO:{}",
        utc_offset(offset.fix().local_minus_utc())
    ));
    if let Some(name) = offset.abbreviation() {
        lines.push(format!("TZNAME:{}", text(name)));
    }
    lines.push(format!("END:{kind}"));
}

fn utc_offset(seconds: i32) -> String {
    let sign = if seconds < 0 { '-' } else { '+' };
    let minutes = seconds.abs() / 60;
    format!("{sign}{:02}{:02}", minutes / 60, minutes % 60)
}

fn utc_stamp(t: DateTime<Utc>) -> String {
    t.format("%Y%m%dT%H%M%SZ").to_string()
}

/// Escapes a TEXT value (RFC 5545 3.3.11); line breaks become `\n`, other controls vanish.
fn text(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// A parameter value: quoted, without quotes or controls inside.
fn param(value: &str) -> String {
    let clean: String = value
        .chars()
        .filter(|c| !c.is_control() && *c != '"')
        .collect();
    format!("\"{clean}\"")
}

/// A URI value: controls and spaces removed so it cannot break the line.
fn uri(value: &str) -> String {
    value
        .chars()
        .filter(|c| !c.is_control() && !c.is_whitespace())
        .collect()
}

/// Appends `line` folded at 75 octets (never inside a UTF-8 character), with CRLF.
fn fold_into(out: &mut String, line: &str) {
    let mut width = 0;
    for c in line.chars() {
        let len = c.len_utf8();
        if width + len > 75 {
            out.push_str("\r\n ");
            width = 1;
        }
        out.push(c);
        width += len;
    }
    out.push_str("\r\n");
}

/// Writes `key: value` lines for the description of a conference.
pub fn description(lines: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (key, value) in lines {
        let _ = writeln!(out, "{key}: {value}");
    }
    out.trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event<'a>(attendees: &'a [String]) -> Event<'a> {
        Event {
            uid: "c1@conclave",
            sequence: 2,
            stamp: "2026-10-01T00:00:00Z".parse().expect("time"),
            start: "2026-10-19T07:00:00Z".parse().expect("time"),
            end: "2026-10-19T08:00:00Z".parse().expect("time"),
            time_zone: chrono_tz::Europe::Berlin,
            recurrence: Some("FREQ=WEEKLY;BYDAY=MO"),
            summary: "Weekly; sync, with \"quotes\"\nBcc: x@example.org",
            description: "Join: http://127.0.0.1:8080/join/123456789",
            url: "http://127.0.0.1:8080/join/123456789",
            organizer: Some(("Ada \"Admin\"", "ada@example.org")),
            attendees,
            access: &[
                Access {
                    uri: "http://127.0.0.1:8080/join/123456789",
                    features: "AUDIO,VIDEO",
                    label: "Join in the browser",
                },
                Access {
                    uri: "tel:+49301234567",
                    features: "PHONE",
                    label: "Dial in, then type the meeting ID and #",
                },
            ],
        }
    }

    #[test]
    fn an_event_carries_local_times_with_a_matching_vtimezone() {
        let attendees = vec!["bob@example.org".to_owned()];
        let ics = render(Method::Publish, &event(&attendees)).replace("\r\n ", "");
        assert!(
            ics.contains("DTSTART;TZID=Europe/Berlin:20261019T090000\r\n"),
            "{ics}"
        );
        assert!(ics.contains("RRULE:FREQ=WEEKLY;BYDAY=MO\r\n"));
        assert!(ics.contains("BEGIN:VTIMEZONE\r\nTZID:Europe/Berlin"));
        // The October 2026 change: 03:00 CEST becomes 02:00 CET.
        assert!(ics.contains("BEGIN:STANDARD\r\nDTSTART:20261025T030000\r\nTZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100"), "{ics}");
        assert!(ics.contains(
            "CONFERENCE;VALUE=URI;FEATURE=AUDIO,VIDEO;LABEL=\"Join in the browser\":http://127.0.0.1:8080/join/123456789\r\n"
        ));
        assert!(ics.contains(
            "CONFERENCE;VALUE=URI;FEATURE=PHONE;LABEL=\"Dial in, then type the meeting ID and #\":tel:+49301234567\r\n"
        ));
        assert!(ics.contains("ATTENDEE;CUTYPE=INDIVIDUAL;ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:bob@example.org"));
    }

    #[test]
    fn text_is_escaped_and_cannot_inject_properties() {
        let ics = render(Method::Request, &event(&[]));
        let unfolded = ics.replace("\r\n ", "");
        assert!(
            unfolded.contains("SUMMARY:Weekly\\; sync\\, with \"quotes\"\\nBcc: x@example.org\r\n")
        );
        assert!(unfolded.contains("ORGANIZER;CN=\"Ada Admin\":mailto:ada@example.org"));
        assert!(!ics.lines().any(|line| line.starts_with("Bcc")));
    }

    #[test]
    fn long_lines_are_folded_at_75_octets() {
        let long = "ü".repeat(100);
        let mut out = String::new();
        fold_into(&mut out, &format!("SUMMARY:{long}"));
        assert!(out.split("\r\n").all(|line| line.len() <= 75));
        assert_eq!(
            out.replace("\r\n ", "").trim_end(),
            format!("SUMMARY:{long}")
        );
    }
}

"""Reads the Maildir an aiosmtpd Mailbox handler wrote and prints every message as JSON, with
its calendar part parsed by the independent `icalendar` package. The Rust tests assert on the
output; required properties are reported explicitly because icalendar parses leniently."""

import email
from datetime import timezone
import json
import mailbox
import sys
from email import policy

import icalendar
from dateutil import rrule as dateutil_rrule


def parameters(prop):
    # A parameter with several values (FEATURE=AUDIO,VIDEO) comes back as a list.
    return {
        str(k): ",".join(str(x) for x in v) if isinstance(v, (list, tuple)) else str(v)
        for k, v in getattr(prop, "params", {}).items()
    }


def ical(value):
    text = value.to_ical()
    return text.decode() if isinstance(text, bytes) else text


def as_list(value):
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def calendar_of(text, content_type):
    cal = icalendar.Calendar.from_ical(text)
    events = list(cal.walk("VEVENT"))
    event = events[0]
    start = event.decoded("DTSTART")
    occurrences = []
    if event.get("RRULE"):
        rule = dateutil_rrule.rrulestr(ical(event.get("RRULE")), dtstart=start)
        occurrences = [o.astimezone(timezone.utc).isoformat() for o in list(rule[:6])]
    observances = []
    for tz in cal.walk("VTIMEZONE"):
        for sub in tz.subcomponents:
            observances.append({
                "kind": sub.name,
                "dtstart": ical(sub.get("DTSTART")),
                "from": ical(sub.get("TZOFFSETFROM")),
                "to": ical(sub.get("TZOFFSETTO")),
            })
    return {
        "contentType": content_type,
        "method": str(cal.get("METHOD")),
        "prodid": str(cal.get("PRODID")),
        "version": str(cal.get("VERSION")),
        "events": len(events),
        "uid": str(event.get("UID")),
        "sequence": int(event.get("SEQUENCE")),
        "dtstamp": event.decoded("DTSTAMP").isoformat() if event.get("DTSTAMP") else None,
        "dtstart": start.isoformat(),
        "dtstartTzid": parameters(event.get("DTSTART")).get("TZID"),
        "dtend": event.decoded("DTEND").isoformat(),
        "dtendTzid": parameters(event.get("DTEND")).get("TZID"),
        "rrule": ical(event.get("RRULE")) if event.get("RRULE") else None,
        "organizer": str(event.get("ORGANIZER")) if event.get("ORGANIZER") else None,
        "organizerCn": parameters(event.get("ORGANIZER")).get("CN") if event.get("ORGANIZER") else None,
        "attendees": [{"value": str(a), **parameters(a)} for a in as_list(event.get("ATTENDEE"))],
        "summary": str(event.get("SUMMARY")),
        "description": str(event.get("DESCRIPTION")),
        "location": str(event.get("LOCATION")),
        "url": str(event.get("URL")),
        "conferences": [{"value": str(c), **parameters(c)} for c in as_list(event.get("CONFERENCE"))],
        "status": str(event.get("STATUS")),
        "vtimezones": [str(tz.get("TZID")) for tz in cal.walk("VTIMEZONE")],
        "observances": observances,
        "occurrencesUtc": occurrences,
        "errors": [str(e) for e in getattr(event, "errors", [])] + [str(e) for e in getattr(cal, "errors", [])],
    }


def main(path):
    out = []
    for _, raw in mailbox.Maildir(path, factory=None, create=False).items():
        msg = email.message_from_bytes(raw.as_bytes(), policy=policy.default)
        entry = {
            "to": str(msg["To"]),
            "from": str(msg["From"]),
            "replyTo": str(msg["Reply-To"]) if msg["Reply-To"] else None,
            "subject": str(msg["Subject"]),
            "headerNames": [k.lower() for k in msg.keys()],
            "contentType": msg.get_content_type(),
            "text": None,
            "html": None,
            "calendar": None,
            "attachment": None,
        }
        for part in msg.walk():
            kind = part.get_content_type()
            if kind == "text/plain" and entry["text"] is None:
                entry["text"] = part.get_content()
            elif kind == "text/html":
                entry["html"] = part.get_content()
            elif kind == "text/calendar":
                entry["calendar"] = calendar_of(part.get_content(), part.get("Content-Type"))
            elif kind == "application/ics":
                entry["attachment"] = part.get_filename()
        out.append(entry)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1])

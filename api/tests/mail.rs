//! Invitations against a real SMTP server (aiosmtpd on loopback), their calendar part checked
//! with the independent Python `icalendar` parser; updates, cancellations, retries while the
//! server is down, header injection, e-mail change notices, and the outbox folder.
//!
//! Python with aiosmtpd and icalendar comes from `CONCLAVE_TEST_PYTHON` (scripts/test.sh
//! creates the virtual environment); a missing one fails the tests loudly.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use axum::http::StatusCode;
use serde_json::{Value, json};
use support::{Backend, TestApp};

fn python() -> PathBuf {
    let path = std::env::var("CONCLAVE_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".cache/conclave/venv/bin/python")
        });
    let ok = Command::new(&path)
        .args(["-c", "import aiosmtpd, icalendar"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{} with aiosmtpd and icalendar is required; run scripts/test.sh, which installs them",
        path.display()
    );
    path
}

struct Smtp {
    child: Child,
    maildir: tempfile::TempDir,
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Smtp {
    /// A real SMTP server on `port` storing mail in a Maildir.
    async fn start(port: u16) -> Smtp {
        let maildir = tempfile::tempdir().unwrap();
        let child = Command::new(python())
            .args([
                "-m",
                "aiosmtpd",
                "-n",
                "-l",
                &format!("127.0.0.1:{port}"),
                "-c",
                "aiosmtpd.handlers.Mailbox",
            ])
            .arg(maildir.path().join("mail"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Owned at once, so that Drop stops the server on every path.
        let server = Smtp { child, maildir };
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return server;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("aiosmtpd did not start on port {port}");
    }

    /// Every message received so far, parsed by tests/mail/inspect.py.
    fn messages(&self) -> Vec<Value> {
        inspect(&self.maildir.path().join("mail"))
    }
}

fn inspect(maildir: &Path) -> Vec<Value> {
    if !maildir.join("new").exists() {
        return Vec::new();
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mail/inspect.py");
    let output = Command::new(python())
        .arg(script)
        .arg(maildir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "inspect.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice::<Value>(&output.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

async fn app_with_smtp(backend: Backend, port: u16) -> TestApp {
    TestApp::with(backend, |config| {
        config.smtp_url = Some(format!("smtp://127.0.0.1:{port}?tls=none"));
        config.mail_from = "Conclave <meetings@example.org>".into();
        config.dial_in_number = Some("+49 30 1234567".into());
        config.sip_address = Some("conference@conclave.example.org".into());
    })
    .await
}

async fn deliver(app: &TestApp) -> usize {
    api::mail::deliver_due(&app.state).await.unwrap()
}

on_both_backends!(
    an_invitation_carries_a_calendar_event_calendar_programs_accept,
    mail_waits_in_the_outbox_while_smtp_is_down
);

async fn an_invitation_carries_a_calendar_event_calendar_programs_accept(app: TestApp) {
    // The scenario needs its own SMTP server and configuration; keep only the backend.
    let backend = app.backend;
    drop(app);
    let port = free_port();
    let smtp = Smtp::start(port).await;
    let app = app_with_smtp(backend, port).await;
    let token = app.admin().await;
    // Weekly at 10:00 Berlin time from 19 October 2026: the clocks go back on 25 October.
    let c = app
        .post(
            "/api/v1/conferences",
            Some(&token),
            json!({"topic": "Weekly sync", "start": "2026-10-19T10:00", "durationMinutes": 60, "timeZone": "Europe/Berlin",
                   "recurrence": "FREQ=WEEKLY;BYDAY=MO", "invitees": ["ann@example.org"]}),
        )
        .await
        .expect(StatusCode::CREATED)
        .body;
    assert_eq!(deliver(&app).await, 1);
    let mails = smtp.messages();
    assert_eq!(mails.len(), 1);
    let mail = &mails[0];
    assert_eq!(mail["to"], "ann@example.org");
    assert_eq!(mail["from"], "Conclave <meetings@example.org>");
    assert_eq!(mail["subject"], "Invitation: Weekly sync");
    let text = mail["text"].as_str().unwrap();
    // The link carries the password in its fragment, so invitees only type a name.
    let link = format!(
        "{}#pwd={}",
        c["joinUrl"].as_str().unwrap(),
        c["password"].as_str().unwrap()
    );
    assert_eq!(c["invitationUrl"], link.as_str());
    assert!(
        text.contains(&format!("Join: {link}\n")),
        "{link:?} missing from:\n{text}"
    );
    for expected in [
        c["meetingId"].as_str().unwrap(),
        c["password"].as_str().unwrap(),
        "Monday, 19 October 2026, 10:00 – 11:00 Europe/Berlin (UTC+02:00)",
        "Dial in: +49 30 1234567",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
    assert!(
        mail["html"]
            .as_str()
            .unwrap()
            .contains(&format!("<a href=\"{link}\">{link}</a>")),
        "{}",
        mail["html"]
    );
    // How to dial in: the number and the SIP address with the keys to type, and a SIP link
    // that skips the gateway's questions.
    let (meeting_id, password) = (
        c["meetingId"].as_str().unwrap(),
        c["password"].as_str().unwrap(),
    );
    let keypad = format!("type the meeting ID {meeting_id}# and then the password {password}#");
    let sip_link = format!("sip:{meeting_id}*{password}@conclave.example.org");
    for expected in [
        format!("Dial in: +49 30 1234567, then {keypad}\n"),
        format!("Dial in by SIP: conference@conclave.example.org, then {keypad}\n"),
        format!("SIP link: {sip_link}\n"),
    ] {
        assert!(
            text.contains(&expected),
            "{expected:?} missing from:\n{text}"
        );
    }
    assert!(
        mail["html"]
            .as_str()
            .unwrap()
            .contains(&format!("<a href=\"{sip_link}\">{sip_link}</a>")),
        "{}",
        mail["html"]
    );
    // The owner's view in the portal shows the same.
    let shown = app
        .get(
            &format!("/api/v1/conferences/{}", c["id"].as_str().unwrap()),
            &token,
        )
        .await
        .expect(StatusCode::OK)
        .body;
    assert_eq!(
        shown["dialIn"],
        json!({"sipAddress": "conference@conclave.example.org", "sipUri": sip_link,
               "number": "+49 30 1234567", "meetingIdKeys": format!("{meeting_id}#"),
               "passwordKeys": format!("{password}#")})
    );
    assert_eq!(mail["attachment"], "invite.ics");
    let cal = &mail["calendar"];
    assert!(
        cal["contentType"]
            .as_str()
            .unwrap()
            .replace('"', "")
            .contains("method=REQUEST"),
        "{}",
        cal["contentType"]
    );
    assert_eq!(cal["method"], "REQUEST");
    assert_eq!(cal["version"], "2.0");
    assert_eq!(cal["events"], 1);
    assert_eq!(
        cal["uid"],
        format!("{}@conclave", c["id"].as_str().unwrap())
    );
    assert_eq!(cal["sequence"], 0);
    assert!(cal["dtstamp"].as_str().is_some());
    assert_eq!(cal["dtstartTzid"], "Europe/Berlin");
    assert_eq!(cal["dtendTzid"], "Europe/Berlin");
    assert!(
        cal["dtstart"]
            .as_str()
            .unwrap()
            .starts_with("2026-10-19T10:00:00+02:00"),
        "{}",
        cal["dtstart"]
    );
    assert_eq!(cal["rrule"], "FREQ=WEEKLY;BYDAY=MO");
    assert_eq!(cal["vtimezones"], json!(["Europe/Berlin"]));
    assert_eq!(cal["organizer"], "mailto:admin@localhost");
    assert_eq!(cal["organizerCn"], "Administrator");
    assert_eq!(cal["attendees"][0]["value"], "mailto:ann@example.org");
    assert_eq!(cal["attendees"][0]["RSVP"], "TRUE");
    assert_eq!(cal["location"], link.as_str());
    assert_eq!(cal["url"], link.as_str());
    assert!(
        cal["description"]
            .as_str()
            .unwrap()
            .contains(c["password"].as_str().unwrap())
    );
    let description = cal["description"].as_str().unwrap();
    for expected in [
        format!("Dial in: +49 30 1234567, then {keypad}"),
        format!("SIP link: {sip_link}"),
    ] {
        assert!(
            description.contains(&expected),
            "{expected:?} missing from:\n{description}"
        );
    }
    // RFC 7986 CONFERENCE properties: the browser, SIP and the phone number.
    let access = cal["conferences"].as_array().unwrap();
    let find = |uri: &str| {
        access
            .iter()
            .find(|a| a["value"] == uri)
            .unwrap_or_else(|| panic!("no CONFERENCE {uri} in {access:?}"))
    };
    assert_eq!(find(&link)["FEATURE"], "AUDIO,VIDEO,CHAT,SCREEN");
    assert_eq!(find(&sip_link)["FEATURE"], "AUDIO");
    let tel = find("tel:+49301234567");
    assert_eq!(tel["FEATURE"], "PHONE");
    assert_eq!(tel["VALUE"], "URI");
    assert_eq!(tel["LABEL"], format!("Dial in, then {keypad}"));
    assert_eq!(cal["status"], "CONFIRMED");
    assert_eq!(cal["errors"], json!([]));
    // Across the DST change the meeting stays at 10:00 local: 08:00 UTC, then 09:00 UTC.
    let occurrences = cal["occurrencesUtc"].as_array().unwrap();
    assert_eq!(occurrences[0], "2026-10-19T08:00:00+00:00");
    assert_eq!(occurrences[1], "2026-10-26T09:00:00+00:00");

    // An edit, then notify: same UID, higher SEQUENCE, the change in the text.
    let id = c["id"].as_str().unwrap();
    app.patch(
        &format!("/api/v1/conferences/{id}"),
        &token,
        json!({"start": "2026-10-19T11:00"}),
    )
    .await
    .expect(StatusCode::OK);
    let queued = app
        .post(
            &format!("/api/v1/conferences/{id}/notify"),
            Some(&token),
            json!({}),
        )
        .await
        .expect(StatusCode::ACCEPTED);
    assert_eq!(queued.body["queued"], 1);
    assert_eq!(queued.body["delivery"], "smtp");
    deliver(&app).await;
    let mails = smtp.messages();
    let update = mails
        .iter()
        .find(|m| m["subject"] == "Updated invitation: Weekly sync")
        .expect("the update arrived");
    assert_eq!(update["calendar"]["uid"], cal["uid"]);
    assert_eq!(update["calendar"]["sequence"], 1);
    assert_eq!(update["calendar"]["method"], "REQUEST");
    let text = update["text"].as_str().unwrap();
    assert!(
        text.contains("New time: Monday, 19 October 2026, 11:00 – 12:00"),
        "{text}"
    );
    assert!(
        text.contains("(was Monday, 19 October 2026, 10:00 – 11:00"),
        "{text}"
    );

    // Deleting with notify=true cancels it in calendars.
    app.call(
        axum::http::Method::DELETE,
        &format!("/api/v1/conferences/{id}?notify=true"),
        Some(&token),
        None,
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    deliver(&app).await;
    let mails = smtp.messages();
    let cancel = mails
        .iter()
        .find(|m| m["subject"] == "Cancelled: Weekly sync")
        .expect("the cancellation arrived");
    assert_eq!(cancel["calendar"]["method"], "CANCEL");
    assert_eq!(cancel["calendar"]["status"], "CANCELLED");
    assert_eq!(cancel["calendar"]["uid"], cal["uid"]);
    assert!(
        cancel["calendar"]["contentType"]
            .as_str()
            .unwrap()
            .replace('"', "")
            .contains("method=CANCEL")
    );
}

async fn mail_waits_in_the_outbox_while_smtp_is_down(app: TestApp) {
    let backend = app.backend;
    drop(app);
    let port = free_port();
    let app = app_with_smtp(backend, port).await;
    let token = app.admin().await;
    let c = app.schedule(&token, 60, 30, json!({})).await;
    let id = c["id"].as_str().unwrap();
    let queued = app
        .post(
            &format!("/api/v1/conferences/{id}/invitations"),
            Some(&token),
            json!({"emails": ["bob@example.org", "BOB@example.org"]}),
        )
        .await
        .expect(StatusCode::ACCEPTED);
    assert_eq!(queued.body["queued"], 1);
    assert_eq!(
        deliver(&app).await,
        0,
        "nobody listens on the SMTP port yet"
    );
    let log = app
        .get(&format!("/api/v1/conferences/{id}/invitations"), &token)
        .await
        .expect(StatusCode::OK)
        .body;
    assert_eq!(log[0]["recipient"], "bob@example.org");
    assert_eq!(log[0]["status"], "pending");
    assert_eq!(log[0]["attempts"], 1);
    assert!(!log[0]["lastError"].as_str().unwrap().is_empty());
    assert_eq!(log[0]["sequence"], 0);
    // What the chart's ConclaveMailFailing alert watches.
    let metrics = app.state.metrics.render();
    assert!(
        metrics.contains("conclave_api_mail_deliveries_total{result=\"retrying\"} 1"),
        "{metrics}"
    );
    // The invitee was added to the conference.
    assert_eq!(
        app.get(&format!("/api/v1/conferences/{id}"), &token)
            .await
            .body["invitees"],
        json!(["bob@example.org"])
    );
    // A restart loses nothing; once the server is up and the backoff passed, it is delivered.
    let app = app.restart().await;
    let smtp = Smtp::start(port).await;
    assert_eq!(deliver(&app).await, 0, "not due before the backoff");
    app.clock.advance(chrono::Duration::seconds(31));
    assert_eq!(deliver(&app).await, 1);
    assert_eq!(smtp.messages().len(), 1);
    assert!(
        app.state
            .metrics
            .render()
            .contains("conclave_api_mail_deliveries_total{result=\"delivered\"} 1")
    );
    let log = app
        .get(&format!("/api/v1/conferences/{id}/invitations"), &token)
        .await
        .body;
    assert_eq!(log[0]["status"], "sent");
    assert_eq!(log[0]["attempts"], 2);
    assert!(log[0]["lastError"].is_null());
    assert!(log[0]["deliveredAt"].is_string());
}

#[tokio::test]
async fn header_injection_is_neutralised() {
    let port = free_port();
    let smtp = Smtp::start(port).await;
    let app = app_with_smtp(Backend::Sqlite, port).await;
    let token = app.admin().await;
    app.patch(
        "/api/v1/me",
        &token,
        json!({"displayName": "Eve \"The\" Boss, Jr."}),
    )
    .await
    .expect(StatusCode::OK);
    let c = app.schedule(&token, 60, 30, json!({})).await;
    let id = c["id"].as_str().unwrap();
    for bad in [
        "x@example.org\r\nBcc: evil@example.org",
        "x@example.org>, evil@example.org",
        "Evil <x@example.org>",
    ] {
        let reply = app
            .post(
                &format!("/api/v1/conferences/{id}/invitations"),
                Some(&token),
                json!({"emails": [bad]}),
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad:?}: {}",
            reply.text
        );
    }
    let reply = app
        .patch(
            &format!("/api/v1/conferences/{id}"),
            &token,
            json!({"topic": "Hi\r\nBcc: evil@example.org"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    app.patch(
        &format!("/api/v1/conferences/{id}"),
        &token,
        json!({"topic": "Q3: \"plans\", ideas; ünïcode"}),
    )
    .await
    .expect(StatusCode::OK);
    app.post(
        &format!("/api/v1/conferences/{id}/invitations"),
        Some(&token),
        json!({"emails": ["x@example.org"]}),
    )
    .await
    .expect(StatusCode::ACCEPTED);
    deliver(&app).await;
    let mails = smtp.messages();
    assert_eq!(mails.len(), 1);
    let mail = &mails[0];
    assert!(
        !mail["headerNames"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h == "bcc")
    );
    assert_eq!(mail["to"], "x@example.org");
    assert_eq!(mail["subject"], "Invitation: Q3: \"plans\", ideas; ünïcode");
    assert!(
        mail["replyTo"]
            .as_str()
            .unwrap()
            .ends_with("<admin@localhost>"),
        "{}",
        mail["replyTo"]
    );
    assert!(
        mail["replyTo"].as_str().unwrap().contains("Eve"),
        "{}",
        mail["replyTo"]
    );
    assert_eq!(mail["calendar"]["summary"], "Q3: \"plans\", ideas; ünïcode");
    assert_eq!(mail["calendar"]["organizerCn"], "Eve The Boss, Jr.");
}

#[tokio::test]
async fn changing_ones_address_notifies_the_old_and_the_new_one() {
    let port = free_port();
    let smtp = Smtp::start(port).await;
    let app = app_with_smtp(Backend::Sqlite, port).await;
    let (_, token) = app.user("nina", "audience").await;
    app.patch("/api/v1/me", &token, json!({"email": "nina@example.net"}))
        .await
        .expect(StatusCode::OK);
    deliver(&app).await;
    let mut to: Vec<String> = smtp
        .messages()
        .iter()
        .map(|m| m["to"].as_str().unwrap().to_owned())
        .collect();
    to.sort();
    assert_eq!(to, ["nina@example.net", "nina@example.org"]);
    assert!(
        smtp.messages()[0]["text"]
            .as_str()
            .unwrap()
            .contains("changed from nina@example.org to nina@example.net")
    );
}

#[tokio::test]
async fn without_smtp_mails_are_written_to_the_outbox_folder() {
    let app = TestApp::new(Backend::Sqlite).await;
    let token = app.admin().await;
    let c = app.schedule(&token, 60, 30, json!({})).await;
    let id = c["id"].as_str().unwrap();
    let reply = app
        .post(
            &format!("/api/v1/conferences/{id}/invitations"),
            Some(&token),
            json!({"emails": ["z@example.org"]}),
        )
        .await
        .expect(StatusCode::ACCEPTED);
    assert_eq!(reply.body["delivery"], "folder");
    let folder = app.data_dir().join("outbox");
    assert_eq!(reply.body["outbox"], folder.display().to_string());
    deliver(&app).await;
    let files: Vec<_> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].extension().unwrap(), "eml");
    let eml = std::fs::read_to_string(&files[0]).unwrap();
    assert!(eml.contains("To: z@example.org"));
    assert!(eml.contains("METHOD:REQUEST"));
    let log = app
        .get(&format!("/api/v1/conferences/{id}/invitations"), &token)
        .await
        .body;
    assert_eq!(log[0]["status"], "written");
    // Permanent rooms have no date to invite to.
    let room = app
        .post(
            "/api/v1/conferences",
            Some(&token),
            json!({"topic": "Lobby", "permanent": true}),
        )
        .await
        .body;
    let reply = app
        .post(
            &format!(
                "/api/v1/conferences/{}/invitations",
                room["id"].as_str().unwrap()
            ),
            Some(&token),
            json!({"emails": ["z@example.org"]}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CONFLICT);
    assert_eq!(reply.code(), "permanentRoom");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_on_one_postgres_send_each_mail_once() {
    let port = free_port();
    let smtp = Smtp::start(port).await;
    let app = app_with_smtp(Backend::Postgres, port).await;
    let other = app.replica().await;
    let token = app.admin().await;
    let c = app.schedule(&token, 60, 30, json!({})).await;
    let emails: Vec<String> = (0..20).map(|n| format!("p{n}@example.org")).collect();
    app.post(
        &format!(
            "/api/v1/conferences/{}/invitations",
            c["id"].as_str().unwrap()
        ),
        Some(&token),
        json!({ "emails": emails }),
    )
    .await
    .expect(StatusCode::ACCEPTED);
    // Both replicas' workers wake at once and look at the same due rows.
    let (one, two) = tokio::join!(
        api::mail::deliver_due(&app.state),
        api::mail::deliver_due(&other)
    );
    assert_eq!(one.unwrap() + two.unwrap(), 20);
    let mut to: Vec<String> = smtp
        .messages()
        .iter()
        .map(|m| m["to"].as_str().unwrap().to_owned())
        .collect();
    to.sort();
    let mut expected = emails.clone();
    expected.sort();
    assert_eq!(to, expected, "each mail exactly once");
    // Nothing is left to send by either.
    assert_eq!(deliver(&app).await, 0);
    assert_eq!(api::mail::deliver_due(&other).await.unwrap(), 0);
}

on_both_backends!(
    mail_is_limited_per_request_per_account_and_per_conference,
    old_mail_and_stale_login_failures_are_purged
);

async fn mail_is_limited_per_request_per_account_and_per_conference(app: TestApp) {
    let backend = app.backend;
    drop(app);
    let app = TestApp::with(backend, |config| {
        config.mail_invitees_per_request = 3;
        config.mail_per_account_per_day = 7;
        config.mail_per_conference_per_day = 5;
    })
    .await;
    let token = app.admin().await;
    let c = app.schedule(&token, 60, 30, json!({})).await;
    let invite = |id: String, emails: Vec<&'static str>| {
        let token = token.clone();
        let app = &app;
        async move {
            app.post(
                &format!("/api/v1/conferences/{id}/invitations"),
                Some(&token),
                json!({ "emails": emails }),
            )
            .await
        }
    };
    let id = c["id"].as_str().unwrap().to_owned();
    // More addresses than one request may name: 422, nothing stored or queued.
    let reply = invite(id.clone(), vec!["a@x.org", "b@x.org", "c@x.org", "d@x.org"]).await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.text
    );
    assert_eq!(reply.body["error"]["field"], "emails");
    invite(id.clone(), vec!["a@x.org", "b@x.org", "c@x.org"])
        .await
        .expect(StatusCode::ACCEPTED);
    // The conference allows five a day: three more do not fit, and the invitees stay as they were.
    let reply = invite(id.clone(), vec!["d@x.org", "e@x.org", "f@x.org"]).await;
    let reply = reply.expect(StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(reply.code(), "mailLimit");
    let wait: i64 = reply.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(wait > 0 && wait <= 86_400, "{wait}");
    let shown = app
        .get(&format!("/api/v1/conferences/{id}"), &token)
        .await
        .body;
    assert_eq!(shown["invitees"].as_array().unwrap().len(), 3);
    // Updating all three invitees would make six.
    let reply = app
        .call(
            axum::http::Method::POST,
            &format!("/api/v1/conferences/{id}/notify"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(reply.code(), "mailLimit", "{}", reply.text);
    // Another conference of the same account: the account's seven a day are the limit.
    let other = app.schedule(&token, 90, 30, json!({})).await;
    let other = other["id"].as_str().unwrap().to_owned();
    invite(other.clone(), vec!["g@x.org", "h@x.org", "i@x.org"])
        .await
        .expect(StatusCode::ACCEPTED);
    let reply = invite(other.clone(), vec!["j@x.org", "k@x.org"]).await;
    assert_eq!(reply.code(), "mailLimit", "{}", reply.text);
    // An address change sends two notices: they count against the account too.
    let reply = app
        .patch("/api/v1/me", &token, json!({"email": "boss@example.net"}))
        .await;
    assert_eq!(reply.code(), "mailLimit", "{}", reply.text);
    // A day later the window has moved on.
    app.clock.advance(chrono::Duration::hours(25));
    invite(other, vec!["j@x.org", "k@x.org"])
        .await
        .expect(StatusCode::ACCEPTED);
}

async fn old_mail_and_stale_login_failures_are_purged(app: TestApp) {
    let token = app.admin().await;
    let c = app.schedule(&token, 60 * 24 * 60, 30, json!({})).await;
    let id = c["id"].as_str().unwrap().to_owned();
    for email in ["old@x.org", "older@x.org"] {
        app.post(
            &format!("/api/v1/conferences/{id}/invitations"),
            Some(&token),
            json!({ "emails": [email] }),
        )
        .await
        .expect(StatusCode::ACCEPTED);
        deliver(&app).await;
        app.clock.advance(chrono::Duration::minutes(1));
    }
    app.post(
        "/api/v1/auth/login",
        None,
        json!({"login": "ghost", "password": "whatever1"}),
    )
    .await
    .expect(StatusCode::FORBIDDEN);
    let count = |table: &'static str| {
        let db = app.state.db.clone();
        async move {
            use sqlx::Row;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT COUNT(*) AS n FROM {table}"
            )))
            .fetch_one(&db.pool)
            .await
            .unwrap()
            .try_get::<i64, _>("n")
            .unwrap()
        }
    };
    assert_eq!(count("outbox").await, 2);
    assert!(count("login_failures").await > 0);
    // Within the retention nothing goes.
    app.tick().await;
    assert_eq!(count("outbox").await, 2);
    // After 30 days (the default) the older mail goes; the newest invitation of the living
    // conference stays (the next update tells what changed from it); login failures go after
    // a day.
    app.clock.advance(chrono::Duration::days(31));
    app.tick().await;
    assert_eq!(count("outbox").await, 1);
    let log = api::mail::log(&app.state.db, &id).await.unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].recipient, "older@x.org");
    assert_eq!(count("login_failures").await, 0);
}

//! Invitations and notices by e-mail: composing multipart mails (plain text, HTML and an
//! iCalendar part that calendar programs accept), a durable outbox in SQL, and a worker that
//! delivers due mails over SMTP — or, without SMTP, writes them as `.eml` files — with retries
//! and backoff. Nothing here blocks a request: handlers only enqueue.

use std::fmt::Write as _;
use std::path::PathBuf;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;

use crate::account::Account;
use crate::clock::{db_time, parse_db_time};
use crate::conference::Conference;
use crate::config::{self, Config};
use crate::db::Db;
use crate::ics;
use crate::state::AppState;
use crate::{Error, Result};
use proto::AccountId;

/// Attempts before a mail is given up.
const MAX_ATTEMPTS: i64 = 12;
/// Mails delivered per pass.
const BATCH: i64 = 50;

/// How mails leave.
#[derive(Clone)]
pub enum Delivery {
    /// Over SMTP.
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    /// As `.eml` files into a folder (standalone without SMTP).
    Folder(PathBuf),
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Delivery::Smtp(_) => f.write_str("Delivery::Smtp"),
            Delivery::Folder(path) => write!(f, "Delivery::Folder({})", path.display()),
        }
    }
}

impl Delivery {
    /// The delivery the configuration asks for.
    ///
    /// # Errors
    /// 422 for an SMTP URL that does not parse.
    pub fn from_config(config: &Config) -> Result<Delivery> {
        let Some(url) = &config.smtp_url else {
            return Ok(Delivery::Folder(config.data_dir.join("outbox")));
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(&lettre_url(url))
            .map_err(|err| {
                Error::invalid("smtpUrl", format!("the SMTP URL does not parse: {err}"))
            })?
            .timeout(Some(std::time::Duration::from_secs(20)));
        if let (Ok(user), Ok(password)) = (
            std::env::var(config::SMTP_USERNAME_ENV),
            std::env::var(config::SMTP_PASSWORD_ENV),
        ) {
            builder = builder.credentials(Credentials::new(user, password));
        }
        Ok(Delivery::Smtp(builder.build()))
    }

    /// `smtp` or `folder`, as API answers say.
    pub fn name(&self) -> &'static str {
        match self {
            Delivery::Smtp(_) => "smtp",
            Delivery::Folder(_) => "folder",
        }
    }
}

/// Our SMTP URL semantics in lettre's: plain `smtp://` means STARTTLS when the server offers
/// it (lettre's `tls=opportunistic`), `tls=none` a plain connection, `tls=required` STARTTLS or
/// fail, `smtps://` TLS from the start.
fn lettre_url(url: &str) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut params: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
    let tls = params
        .iter()
        .find_map(|p| p.strip_prefix("tls="))
        .map(str::to_owned);
    match tls.as_deref() {
        Some("none") => params.retain(|p| !p.starts_with("tls=")),
        None if base.starts_with("smtp://") => params.push("tls=opportunistic"),
        _ => {}
    }
    if params.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", params.join("&"))
    }
}

/// What a mail is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = MailKind)]
pub enum Kind {
    /// An invitation (iCalendar REQUEST).
    Invitation,
    /// An update after an edit (REQUEST with a higher SEQUENCE).
    Update,
    /// A cancellation (CANCEL).
    Cancellation,
    /// A notice without calendar part (e.g. an e-mail address changed).
    Notice,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Invitation => "invitation",
            Kind::Update => "update",
            Kind::Cancellation => "cancellation",
            Kind::Notice => "notice",
        }
    }

    fn parse(value: &str) -> Kind {
        match value {
            "invitation" => Kind::Invitation,
            "update" => Kind::Update,
            "cancellation" => Kind::Cancellation,
            _ => Kind::Notice,
        }
    }
}

/// What an invitation described, kept to tell later what changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    topic: String,
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
    time_zone: String,
    recurrence: Option<String>,
    meeting_id: String,
    password: String,
}

impl Snapshot {
    /// The parts of a conference an invitation shows.
    pub fn of(conference: &Conference) -> Self {
        let d = &conference.definition;
        Snapshot {
            topic: d.topic.clone(),
            start: d.start,
            end: d.end,
            time_zone: d.time_zone.name().to_owned(),
            recurrence: d.recurrence.clone(),
            meeting_id: d.meeting_id.to_string(),
            password: d.password.clone(),
        }
    }
}

/// One line of a conference's invitation log.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LogEntry {
    /// The addressee.
    pub recipient: String,
    /// `invitation`, `update`, `cancellation` or `notice`.
    pub kind: Kind,
    /// The calendar SEQUENCE it carried.
    pub sequence: Option<i64>,
    /// `pending` (waiting for delivery or a retry), `sent` (accepted by the SMTP server),
    /// `written` (an .eml file in the outbox folder), `failed` (given up).
    pub status: String,
    /// Delivery attempts so far.
    pub attempts: i64,
    /// The last delivery error.
    pub last_error: Option<String>,
    /// When it was queued.
    pub created_at: DateTime<Utc>,
    /// When it was delivered.
    pub delivered_at: Option<DateTime<Utc>>,
    /// When the next attempt is due (pending only).
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// A mail to queue.
#[derive(Debug)]
pub struct Outgoing {
    /// The conference it is about.
    pub conference: Option<String>,
    /// What it is.
    pub kind: Kind,
    /// The addressee.
    pub recipient: String,
    /// The composed message.
    pub message: Message,
    /// The SEQUENCE it carries.
    pub sequence: Option<i64>,
    /// What it described.
    pub snapshot: Option<Snapshot>,
}

fn mailbox(field: &str, text: &str) -> Result<Mailbox> {
    text.parse::<Mailbox>()
        .map_err(|err| Error::invalid(field, format!("{text:?} is not a mail address: {err}")))
}

/// A person's mailbox with their display name; quoting is lettre's, so names cannot inject
/// headers (they are single-line by validation as well).
fn named(name: &str, email: &str) -> Result<Mailbox> {
    let address = email
        .parse()
        .map_err(|err| Error::invalid("email", format!("{email:?}: {err}")))?;
    let clean: String = name.chars().filter(|c| !c.is_control()).collect();
    Ok(Mailbox::new(Some(clean), address))
}

fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `Tuesday, 1 December 2026, 10:00 – 11:00 Europe/Berlin (UTC+01:00)`.
fn when(start: DateTime<Utc>, end: DateTime<Utc>, tz: Tz) -> String {
    let s = start.with_timezone(&tz);
    let e = end.with_timezone(&tz);
    let end_text = if s.date_naive() == e.date_naive() {
        e.format("%H:%M").to_string()
    } else {
        e.format("%A, %-d %B %Y, %H:%M").to_string()
    };
    format!(
        "{}, {} – {} {} (UTC{})",
        s.format("%A"),
        s.format("%-d %B %Y, %H:%M"),
        end_text,
        tz.name(),
        s.format("%:z")
    )
}

/// Human lines saying what changed between two snapshots.
pub fn changes(before: &Snapshot, after: &Snapshot, tz: Tz) -> Vec<String> {
    let mut lines = Vec::new();
    if before.topic != after.topic {
        lines.push(format!(
            "The topic is now \"{}\" (was \"{}\").",
            after.topic, before.topic
        ));
    }
    if (before.start, before.end, &before.time_zone) != (after.start, after.end, &after.time_zone)
        && let (Some(start), Some(end)) = (after.start, after.end)
    {
        let old = match (before.start, before.end) {
            (Some(s), Some(e)) => format!(
                " (was {})",
                when(s, e, before.time_zone.parse().unwrap_or(tz))
            ),
            _ => String::new(),
        };
        lines.push(format!("New time: {}{old}.", when(start, end, tz)));
    }
    if before.recurrence != after.recurrence {
        lines.push(match &after.recurrence {
            Some(rule) => format!("It now repeats: {rule}."),
            None => "It no longer repeats.".to_owned(),
        });
    }
    if before.meeting_id != after.meeting_id {
        lines.push(format!("New meeting ID: {}.", after.meeting_id));
    }
    if before.password != after.password {
        lines.push(format!("New password: {}.", after.password));
    }
    lines
}

/// Composes the invitation, update or cancellation of `conference` for `recipient`.
///
/// # Errors
/// 422 for addresses lettre refuses; 409 for permanent rooms (no date).
pub fn compose_invitation(
    state: &AppState,
    conference: &Conference,
    owner: &Account,
    recipient: &str,
    kind: Kind,
    changed: &[String],
) -> Result<Outgoing> {
    let d = &conference.definition;
    let method = match kind {
        Kind::Cancellation => ics::Method::Cancel,
        _ => ics::Method::Request,
    };
    let calendar = crate::http::conferences::calendar_event(state, conference, owner, method)?;
    let join_url =
        crate::http::conferences::invitation_url(state, d.meeting_id.as_str(), &d.password);
    let (Some(start), Some(end)) = (d.start, d.end) else {
        return Err(Error::conflict(
            "permanentRoom",
            "a permanent room has no date to invite to",
        ));
    };
    let occurrence = conference
        .runtime
        .occurrence
        .map_or((start, end), |o| (o.start, o.end));
    let time = when(occurrence.0, occurrence.1, d.time_zone);
    let subject = match kind {
        Kind::Invitation => format!("Invitation: {}", d.topic),
        Kind::Update => format!("Updated invitation: {}", d.topic),
        Kind::Cancellation => format!("Cancelled: {}", d.topic),
        Kind::Notice => d.topic.clone(),
    };
    let intro = match kind {
        Kind::Invitation => format!(
            "{} invites you to a Conclave conference.",
            owner.display_name
        ),
        Kind::Update => format!("{} changed this Conclave conference.", owner.display_name),
        Kind::Cancellation => format!("{} cancelled this Conclave conference.", owner.display_name),
        Kind::Notice => String::new(),
    };
    let mut facts: Vec<(&str, String)> = vec![("Topic", d.topic.clone()), ("When", time)];
    if let Some(rule) = &d.recurrence {
        facts.push(("Repeats", rule.clone()));
    }
    if kind != Kind::Cancellation {
        facts.push(("Join", join_url.clone()));
        facts.push(("Meeting ID", d.meeting_id.to_string()));
        facts.push(("Password", d.password.clone()));
        // Invitees are told the password, so the phone facts carry it too.
        if let Some(dial_in) = state
            .config
            .dial_in(d.meeting_id.as_str(), Some(&d.password))
        {
            facts.extend(dial_in.facts());
        }
    }
    let mut text = format!("{intro}\n\n");
    for line in changed {
        let _ = writeln!(text, "{line}");
    }
    if !changed.is_empty() {
        text.push('\n');
    }
    for (key, value) in &facts {
        let _ = writeln!(text, "{key}: {value}");
    }
    if kind != Kind::Cancellation {
        let _ = write!(
            text,
            "\nOpen the link to join from your browser; guests only need a name.\n"
        );
    }
    let mut html = format!("<p>{}</p>", html_escape(&intro));
    if !changed.is_empty() {
        html.push_str("<ul>");
        for line in changed {
            let _ = write!(html, "<li><strong>{}</strong></li>", html_escape(line));
        }
        html.push_str("</ul>");
    }
    html.push_str("<table>");
    for (key, value) in &facts {
        let value_html = if *key == "Join" || *key == "SIP link" {
            format!("<a href=\"{0}\">{0}</a>", html_escape(value))
        } else {
            html_escape(value)
        };
        let _ = write!(
            html,
            "<tr><th align=\"left\">{}</th><td>{}</td></tr>",
            html_escape(key),
            value_html
        );
    }
    html.push_str("</table>");

    let method_name = if method == ics::Method::Cancel {
        "CANCEL"
    } else {
        "REQUEST"
    };
    let calendar_type = ContentType::parse(&format!(
        "text/calendar; charset=utf-8; method={method_name}"
    ))
    .map_err(|err| Error::Internal(format!("content type: {err}")))?;
    let ics_type = ContentType::parse("application/ics")
        .map_err(|err| Error::Internal(format!("content type: {err}")))?;
    let body = MultiPart::mixed()
        .multipart(
            MultiPart::alternative()
                .singlepart(SinglePart::plain(text))
                .singlepart(SinglePart::html(html))
                .singlepart(
                    SinglePart::builder()
                        .header(calendar_type)
                        .body(calendar.clone()),
                ),
        )
        .singlepart(Attachment::new("invite.ics".to_owned()).body(calendar, ics_type));
    let message = Message::builder()
        .from(mailbox("mailFrom", &state.config.mail_from)?)
        .reply_to(named(&owner.display_name, &owner.email)?)
        .to(recipient
            .parse()
            .map(|address| Mailbox::new(None, address))
            .map_err(|err| Error::invalid("emails", format!("{recipient:?}: {err}")))?)
        .subject(subject)
        .date(state.clock.now().into())
        .multipart(body)
        .map_err(|err| Error::Internal(format!("composing a mail: {err}")))?;
    Ok(Outgoing {
        conference: Some(conference.id.to_string()),
        kind,
        recipient: recipient.to_owned(),
        message,
        sequence: Some(conference.sequence),
        snapshot: Some(Snapshot::of(conference)),
    })
}

/// Composes the mail of `kind` for each recipient and queues them all; nothing is queued when
/// one cannot be composed.
///
/// # Errors
/// As [`compose_invitation`] and [`enqueue`].
pub async fn send_invitations(
    state: &AppState,
    conference: &Conference,
    owner: &Account,
    recipients: &[String],
    kind: Kind,
    changed: &[String],
    by: &AccountId,
) -> Result<usize> {
    let mails = compose_invitations(state, conference, owner, recipients, kind, changed)?;
    enqueue(state, mails, by, Limits::of(kind)).await
}

/// Composes the mail of `kind` for each recipient, without queueing: a request that writes
/// something besides mail composes first, so a mail that cannot be composed fails it before
/// anything is written.
///
/// # Errors
/// As [`compose_invitation`].
pub fn compose_invitations(
    state: &AppState,
    conference: &Conference,
    owner: &Account,
    recipients: &[String],
    kind: Kind,
    changed: &[String],
) -> Result<Vec<Outgoing>> {
    recipients
        .iter()
        .map(|to| compose_invitation(state, conference, owner, to, kind, changed))
        .collect()
}

/// Whether [`enqueue`] refuses mail beyond the limits or only counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limits {
    /// Refuse (429 `mailLimit`) what would exceed a limit.
    Enforce,
    /// Queue and count it regardless (cancellations).
    CountOnly,
}

impl Limits {
    /// A cancellation is counted but never refused: people must learn that a meeting is off.
    pub fn of(kind: Kind) -> Self {
        if kind == Kind::Cancellation {
            Limits::CountOnly
        } else {
            Limits::Enforce
        }
    }
}

/// The window mail limits count in.
const LIMIT_WINDOW: Duration = Duration::hours(24);

/// Refuses `adding` more mails by `by` (about `conference`) when they would exceed the
/// per-account or per-conference limit of the last 24 hours.
///
/// # Errors
/// 429 `mailLimit` with the seconds until enough mails leave the window; database errors.
pub async fn check_limits(
    state: &AppState,
    by: &AccountId,
    conference: Option<&str>,
    adding: usize,
) -> Result<()> {
    let mut conn = state.db.pool.acquire().await?;
    check_limits_on(&mut conn, state, by, conference, adding).await
}

async fn check_limits_on(
    conn: &mut sqlx::AnyConnection,
    state: &AppState,
    by: &AccountId,
    conference: Option<&str>,
    adding: usize,
) -> Result<()> {
    let now = state.clock.now();
    let since = db_time(now - LIMIT_WINDOW);
    let adding = i64::try_from(adding).unwrap_or(i64::MAX);
    let mut checks = vec![(
        "account_id",
        by.as_str().to_owned(),
        i64::from(state.config.mail_per_account_per_day),
        "this account",
    )];
    if let Some(conference) = conference {
        checks.push((
            "conference_id",
            conference.to_owned(),
            i64::from(state.config.mail_per_conference_per_day),
            "this conference",
        ));
    }
    for (column, key, limit, whose) in checks {
        if adding > limit {
            return Err(Error::MailLimit {
                message: format!(
                    "{whose} may send at most {limit} mails per 24 hours; this request alone has {adding}"
                ),
                retry_after: u64::try_from(LIMIT_WINDOW.num_seconds()).unwrap_or(86_400),
            });
        }
        // Newest first: when the limit is reached, the mail whose leaving makes room for this
        // request is the one at position `limit - adding`.
        let rows = sqlx::query(sql!(
            "SELECT created_at FROM outbox WHERE {column} = $1 AND created_at >= $2 \
             ORDER BY created_at DESC LIMIT $3"
        ))
        .bind(&key)
        .bind(&since)
        .bind(limit)
        .fetch_all(&mut *conn)
        .await?;
        let used = i64::try_from(rows.len()).unwrap_or(i64::MAX);
        if used + adding > limit {
            let index = usize::try_from(limit - adding).unwrap_or(0);
            let frees_at = match rows.get(index) {
                Some(row) => {
                    parse_db_time(&row.try_get::<String, _>("created_at")?)? + LIMIT_WINDOW
                }
                None => now + LIMIT_WINDOW,
            };
            return Err(Error::MailLimit {
                message: format!(
                    "{whose} has sent {used} of its {limit} mails per 24 hours; {adding} more do not fit"
                ),
                retry_after: u64::try_from((frees_at - now).num_seconds().max(1)).unwrap_or(1),
            });
        }
    }
    Ok(())
}

/// Composes a plain notice.
///
/// # Errors
/// 422 for addresses lettre refuses.
pub fn compose_notice(
    state: &AppState,
    recipient: &str,
    subject: &str,
    text: String,
) -> Result<Outgoing> {
    let message = Message::builder()
        .from(mailbox("mailFrom", &state.config.mail_from)?)
        .to(recipient
            .parse()
            .map(|address| Mailbox::new(None, address))
            .map_err(|err| Error::invalid("email", format!("{recipient:?}: {err}")))?)
        .subject(subject)
        .date(state.clock.now().into())
        .singlepart(SinglePart::plain(text))
        .map_err(|err| Error::Internal(format!("composing a mail: {err}")))?;
    Ok(Outgoing {
        conference: None,
        kind: Kind::Notice,
        recipient: recipient.to_owned(),
        message,
        sequence: None,
        snapshot: None,
    })
}

/// Queues mails in one transaction, counted against `by`'s limits, and wakes the worker.
///
/// # Errors
/// 429 `mailLimit` (with [`Limits::Enforce`]); database errors.
pub async fn enqueue(
    state: &AppState,
    mails: Vec<Outgoing>,
    by: &AccountId,
    limits: Limits,
) -> Result<usize> {
    let mut tx = state.db.pool.begin().await?;
    let count = enqueue_in(&mut tx, state, mails, by, limits).await?;
    tx.commit().await?;
    state.mail_wake.notify_one();
    Ok(count)
}

/// Queues mails inside the caller's transaction, so they are queued exactly when the caller's
/// other writes commit, counted against `by`'s limits; the caller wakes the worker
/// (`mail_wake`) after committing.
///
/// # Errors
/// 429 `mailLimit` (with [`Limits::Enforce`]); database errors.
pub async fn enqueue_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    state: &AppState,
    mails: Vec<Outgoing>,
    by: &AccountId,
    limits: Limits,
) -> Result<usize> {
    let now = db_time(state.clock.now());
    let count = mails.len();
    if limits == Limits::Enforce {
        let conference = mails.first().and_then(|m| m.conference.clone());
        check_limits_on(tx, state, by, conference.as_deref(), count).await?;
    }
    for mail in mails {
        let sender = mail
            .message
            .envelope()
            .from()
            .map(ToString::to_string)
            .unwrap_or_default();
        let subject = mail
            .message
            .headers()
            .get_raw("Subject")
            .map(ToOwned::to_owned)
            .unwrap_or_default();
        let raw = String::from_utf8(mail.message.formatted())
            .map_err(|err| Error::Internal(format!("mail is not UTF-8: {err}")))?;
        let snapshot = mail
            .snapshot
            .map(|s| serde_json::to_string(&s))
            .transpose()
            .map_err(|err| Error::Internal(err.to_string()))?;
        sqlx::query(
            "INSERT INTO outbox (id, conference_id, kind, recipient, sender, subject, message, sequence, snapshot, status, attempts, \
             next_attempt_at, last_error, created_at, delivered_at, account_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', 0, $10, NULL, $10, NULL, $11)",
        )
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(mail.conference)
        .bind(mail.kind.as_str())
        .bind(&mail.recipient)
        .bind(sender)
        .bind(subject)
        .bind(raw)
        .bind(mail.sequence)
        .bind(snapshot)
        .bind(&now)
        .bind(by.as_str())
        .execute(&mut **tx)
        .await?;
    }
    Ok(count)
}

/// The snapshot of the last invitation or update sent for a conference.
///
/// # Errors
/// Database errors.
pub async fn last_snapshot(db: &Db, conference: &str) -> Result<Option<Snapshot>> {
    let row = sqlx::query(
        "SELECT snapshot FROM outbox WHERE conference_id = $1 AND snapshot IS NOT NULL AND kind IN ('invitation', 'update') \
         ORDER BY created_at DESC, sequence DESC LIMIT 1",
    )
    .bind(conference)
    .fetch_optional(&db.pool)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let text: String = row.try_get("snapshot")?;
    Ok(serde_json::from_str(&text).ok())
}

/// A conference's invitation log, newest first.
///
/// # Errors
/// Database errors.
pub async fn log(db: &Db, conference: &str) -> Result<Vec<LogEntry>> {
    let rows = sqlx::query(
        "SELECT recipient, kind, sequence, status, attempts, last_error, created_at, delivered_at, next_attempt_at \
         FROM outbox WHERE conference_id = $1 ORDER BY created_at DESC, recipient",
    )
    .bind(conference)
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|row| {
            let status: String = row.try_get("status")?;
            Ok(LogEntry {
                recipient: row.try_get("recipient")?,
                kind: Kind::parse(&row.try_get::<String, _>("kind")?),
                sequence: row.try_get("sequence")?,
                attempts: row.try_get("attempts")?,
                last_error: row.try_get("last_error")?,
                created_at: parse_db_time(&row.try_get::<String, _>("created_at")?)?,
                delivered_at: row
                    .try_get::<Option<String>, _>("delivered_at")?
                    .as_deref()
                    .map(parse_db_time)
                    .transpose()?,
                next_attempt_at: if status == "pending" {
                    Some(parse_db_time(
                        &row.try_get::<String, _>("next_attempt_at")?,
                    )?)
                } else {
                    None
                },
                status,
            })
        })
        .collect()
}

/// The wait before attempt `attempts + 1`: 30 s, 1 min, 2 min, … at most an hour.
pub fn backoff(attempts: i64) -> Duration {
    let exponent = u32::try_from(attempts.clamp(1, 8) - 1).unwrap_or(0);
    (Duration::seconds(30) * 2_i32.pow(exponent)).min(Duration::hours(1))
}

/// How long a claim on a mail holds: far longer than one SMTP delivery may take (20 s), so a
/// mail is retried by another replica only after the claiming one died.
const CLAIM: Duration = Duration::minutes(10);

/// Delivers every due mail once; returns how many were delivered.
///
/// Each mail is claimed before it is sent, by moving its `next_attempt_at` out by [`CLAIM`] in
/// one conditional UPDATE that only one replica can win; the losers skip it. This works the
/// same on SQLite and PostgreSQL.
///
/// # Errors
/// Database errors (delivery errors are recorded on the mail instead).
pub async fn deliver_due(state: &AppState) -> Result<usize> {
    let now = state.clock.now();
    let rows = sqlx::query(
        "SELECT id, next_attempt_at FROM outbox WHERE status = 'pending' AND next_attempt_at <= $1 \
         ORDER BY next_attempt_at, created_at LIMIT $2",
    )
    .bind(db_time(now))
    .bind(BATCH)
    .fetch_all(&state.db.pool)
    .await?;
    let mut delivered = 0;
    for row in rows {
        let id: String = row.try_get("id")?;
        let due: String = row.try_get("next_attempt_at")?;
        let claimed = sqlx::query(
            "UPDATE outbox SET next_attempt_at = $1, claimed_by = $2 \
             WHERE id = $3 AND status = 'pending' AND next_attempt_at = $4",
        )
        .bind(db_time(now + CLAIM))
        .bind(&state.replica)
        .bind(&id)
        .bind(&due)
        .execute(&state.db.pool)
        .await?
        .rows_affected();
        if claimed != 1 {
            // Another replica claimed it (or delivered it) in between.
            continue;
        }
        let Some(row) =
            sqlx::query("SELECT sender, recipient, message, attempts FROM outbox WHERE id = $1")
                .bind(&id)
                .fetch_optional(&state.db.pool)
                .await?
        else {
            continue;
        };
        let attempts: i64 = row.try_get::<i64, _>("attempts")? + 1;
        let message: String = row.try_get("message")?;
        let result = deliver(
            state,
            &id,
            &row.try_get::<String, _>("sender")?,
            &row.try_get::<String, _>("recipient")?,
            &message,
        )
        .await;
        match result {
            Ok(status) => {
                sqlx::query("UPDATE outbox SET status = $1, attempts = $2, delivered_at = $3, last_error = NULL WHERE id = $4")
                    .bind(status)
                    .bind(attempts)
                    .bind(db_time(now))
                    .bind(&id)
                    .execute(&state.db.pool)
                    .await?;
                state.metrics.mail.with_label_values(&["delivered"]).inc();
                delivered += 1;
            }
            Err(cause) => {
                let status = if attempts >= MAX_ATTEMPTS {
                    "failed"
                } else {
                    "pending"
                };
                tracing::warn!(mail = %id, attempts, cause = %cause, "mail delivery failed");
                let result = if status == "failed" {
                    "failed"
                } else {
                    "retrying"
                };
                state.metrics.mail.with_label_values(&[result]).inc();
                sqlx::query("UPDATE outbox SET status = $1, attempts = $2, last_error = $3, next_attempt_at = $4 WHERE id = $5")
                    .bind(status)
                    .bind(attempts)
                    .bind(cause)
                    .bind(db_time(now + backoff(attempts)))
                    .bind(&id)
                    .execute(&state.db.pool)
                    .await?;
            }
        }
    }
    Ok(delivered)
}

async fn deliver(
    state: &AppState,
    id: &str,
    sender: &str,
    recipient: &str,
    message: &str,
) -> std::result::Result<&'static str, String> {
    match &state.mail {
        Delivery::Folder(folder) => {
            tokio::fs::create_dir_all(folder)
                .await
                .map_err(|err| format!("cannot create {}: {err}", folder.display()))?;
            let path = folder.join(format!("{id}.eml"));
            tokio::fs::write(&path, message)
                .await
                .map_err(|err| format!("cannot write {}: {err}", path.display()))?;
            Ok("written")
        }
        Delivery::Smtp(transport) => {
            let from = sender
                .parse()
                .map_err(|err| format!("sender {sender:?}: {err}"))?;
            let to = recipient
                .parse()
                .map_err(|err| format!("recipient {recipient:?}: {err}"))?;
            let envelope = lettre::address::Envelope::new(Some(from), vec![to])
                .map_err(|err| err.to_string())?;
            transport
                .send_raw(&envelope, message.as_bytes())
                .await
                .map_err(|err| err.to_string())?;
            Ok("sent")
        }
    }
}

/// Deletes delivered, written and failed mails queued more than `retention` ago, keeping each
/// conference's newest invitation or update (it tells the next update what changed).
///
/// # Errors
/// Database errors.
pub async fn purge(db: &Db, now: DateTime<Utc>, retention: Duration) -> Result<u64> {
    Ok(sqlx::query(
        "DELETE FROM outbox WHERE status <> 'pending' AND created_at < $1 \
         AND NOT (snapshot IS NOT NULL AND conference_id IS NOT NULL AND created_at = \
           (SELECT MAX(newest.created_at) FROM outbox newest \
            WHERE newest.conference_id = outbox.conference_id AND newest.snapshot IS NOT NULL))",
    )
    .bind(db_time(now - retention))
    .execute(&db.pool)
    .await?
    .rows_affected())
}

/// Delivers due mails whenever mail is queued, and retries on schedule, until `shutdown`.
pub async fn run_loop(state: AppState, shutdown: impl std::future::Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        if let Err(err) = deliver_due(&state).await {
            tracing::error!(cause = %err, "mail pass failed");
        }
        tokio::select! {
            () = &mut shutdown => return,
            () = state.mail_wake.notified() => {}
            () = tokio::time::sleep(std::time::Duration::from_secs(15)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_urls_default_to_starttls_when_offered() {
        assert_eq!(
            lettre_url("smtp://mail.example.org:587"),
            "smtp://mail.example.org:587?tls=opportunistic"
        );
        assert_eq!(
            lettre_url("smtp://127.0.0.1:2525?tls=none"),
            "smtp://127.0.0.1:2525"
        );
        assert_eq!(
            lettre_url("smtp://h:587?tls=required"),
            "smtp://h:587?tls=required"
        );
        assert_eq!(lettre_url("smtps://h:465"), "smtps://h:465");
    }

    #[test]
    fn backoff_doubles_up_to_an_hour() {
        assert_eq!(backoff(1), Duration::seconds(30));
        assert_eq!(backoff(2), Duration::seconds(60));
        assert_eq!(backoff(7), Duration::seconds(30 * 64));
        assert_eq!(backoff(8), Duration::hours(1));
        assert_eq!(backoff(12), Duration::hours(1));
    }
}

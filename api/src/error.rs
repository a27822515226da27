//! The API's one error type and its mapping to HTTP status codes and the JSON error shape
//! `{ "error": { "code", "message", … } }`. Every handler returns [`Result`]; this is the only
//! place where errors become responses. A 5xx logs its cause and answers with a generic text.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

/// The API's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the conference service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A field's value is not acceptable (422).
    #[error("{message}")]
    Validation {
        /// The offending field (camelCase, as in the request).
        field: Option<String>,
        /// What is wrong, for people.
        message: String,
    },
    /// The body is not valid JSON or not the expected shape (400).
    #[error("{0}")]
    MalformedBody(String),
    /// No valid session or token (401).
    #[error("log in first")]
    Unauthenticated,
    /// A request only the SIP gateway may make (a phone join) without its valid service
    /// token (401 `serviceTokenRequired`).
    #[error("{0}")]
    ServiceTokenRequired(String),
    /// Logged in, but the right is missing (403).
    #[error("{0}")]
    Forbidden(String),
    /// A phone join by someone who is not the SIP gateway: an account, or another component's
    /// service token (403 `notTheSipGateway`).
    #[error("{0}")]
    NotTheSipGateway(String),
    /// A moderator excluded this identity (or a guest on the same network) from the meeting
    /// (403 `excluded`).
    #[error("{0}")]
    Excluded(String),
    /// A state-changing request with neither a JSON body nor the `X-Conclave-Request` header
    /// (403): what another site's page could send with the session cookie.
    #[error(
        "a request that changes something needs a JSON body (Content-Type: application/json) or the header X-Conclave-Request: 1"
    )]
    CrossSiteRequest,
    /// A meeting ID and password pair that does not admit (403, never telling which is wrong).
    #[error("the meeting ID or the password is wrong")]
    WrongMeetingCredentials,
    /// An unknown ID, or one the caller may not see (404).
    #[error("{0}")]
    NotFound(String),
    /// A unique value already taken or a state that forbids the change (409).
    #[error("{message}")]
    Conflict {
        /// A machine-readable code.
        code: &'static str,
        /// What is wrong, for people.
        message: String,
    },
    /// The conference cannot be joined yet (409 with `startsAt`).
    #[error("the conference has not started yet; it opens {opens_at}")]
    NotStarted {
        /// When the occurrence starts.
        starts_at: DateTime<Utc>,
        /// From when it may be joined (start minus the lead time).
        opens_at: DateTime<Utc>,
    },
    /// The operator has not placed the conference on an SFU pod yet (409 with `Retry-After`).
    #[error("the conference is being placed on a media server; try again in {retry_after} seconds")]
    NotPlacedYet {
        /// Seconds to wait.
        retry_after: u64,
    },
    /// Too many failed attempts (429 with `Retry-After`).
    #[error("too many failed attempts; try again in {retry_after} seconds")]
    TooManyAttempts {
        /// Seconds to wait.
        retry_after: u64,
    },
    /// Too many password checks at once (503 with `Retry-After`).
    #[error("the service is busy checking passwords; try again in {retry_after} seconds")]
    Busy {
        /// Seconds to wait.
        retry_after: u64,
    },
    /// The company directory (LDAP) cannot be reached or failed, so no login verdict (503
    /// `directoryUnreachable`); the cause is logged, never shown.
    #[error(
        "the company directory cannot be reached; try again in a minute, or ask an administrator"
    )]
    DirectoryUnreachable(String),
    /// A mail limit is reached (429 `mailLimit` with `Retry-After`).
    #[error("{message}")]
    MailLimit {
        /// What limit, for people.
        message: String,
        /// Seconds until a mail leaves the counting window.
        retry_after: u64,
    },
    /// A request for a websocket route that asks for no websocket (400).
    #[error("{0}")]
    WebsocketRequired(String),
    /// The SFU pod of a relayed websocket did not answer in time or could not be reached (502).
    #[error("{0}")]
    SfuUnreachable(String),
    /// The SFU pod of a relayed websocket refused it with an HTTP error, passed on with its
    /// status (e.g. 429 or 503 for too many connections from one network or in total).
    #[error("{message}")]
    SfuRefused {
        /// The pod's status code.
        status: StatusCode,
        /// The pod's explanation.
        message: String,
    },
    /// A presentation upload without a valid upload ticket (401 `presentationTicket`).
    #[error("{0}")]
    PresentationTicket(&'static str),
    /// A presentation that cannot be shown, or a conversion that failed (see
    /// [`crate::presentation::Error`]).
    #[error(transparent)]
    Presentation(#[from] crate::presentation::Error),
    /// The request body exceeds the limit (413).
    #[error("the request body is too large")]
    PayloadTooLarge,
    /// The body is not `application/json` (415).
    #[error("send the body as application/json")]
    UnsupportedMediaType,
    /// A database failure (500).
    #[error("database error")]
    Database(#[from] sqlx::Error),
    /// Applying migrations failed (500, at start-up).
    #[error("database migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The Kubernetes API server failed or refused a call (500).
    #[error("kubernetes api error")]
    Kubernetes(#[from] kube::Error),
    /// Anything else that is our fault (500).
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// A 422 about one field.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Error::Validation {
            field: Some(field.to_owned()),
            message: message.into(),
        }
    }

    /// A 404 with a message.
    pub fn not_found(message: impl Into<String>) -> Self {
        Error::NotFound(message.into())
    }

    /// A 403 with a message.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Error::Forbidden(message.into())
    }

    /// A 409 with a code and message.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Error::Conflict {
            code,
            message: message.into(),
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            Error::Validation { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Error::MalformedBody(_) | Error::WebsocketRequired(_) => StatusCode::BAD_REQUEST,
            Error::Unauthenticated
            | Error::ServiceTokenRequired(_)
            | Error::PresentationTicket(_) => StatusCode::UNAUTHORIZED,
            Error::Presentation(err) => presentation_status(err),
            Error::Forbidden(_)
            | Error::NotTheSipGateway(_)
            | Error::Excluded(_)
            | Error::CrossSiteRequest
            | Error::WrongMeetingCredentials => StatusCode::FORBIDDEN,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict { .. } | Error::NotStarted { .. } | Error::NotPlacedYet { .. } => {
                StatusCode::CONFLICT
            }
            Error::TooManyAttempts { .. } | Error::MailLimit { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            Error::Busy { .. } | Error::DirectoryUnreachable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::SfuUnreachable(_) => StatusCode::BAD_GATEWAY,
            Error::SfuRefused { status, .. } => *status,
            Error::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Error::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::Database(_) | Error::Migrate(_) | Error::Kubernetes(_) | Error::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Error::Validation { .. } => "validation",
            Error::MalformedBody(_) => "malformedBody",
            Error::Unauthenticated => "unauthenticated",
            Error::ServiceTokenRequired(_) => "serviceTokenRequired",
            Error::PresentationTicket(_) => "presentationTicket",
            Error::Presentation(crate::presentation::Error::Refused(refused)) => refused.code,
            Error::Presentation(crate::presentation::Error::NotFound) => "notFound",
            Error::Presentation(crate::presentation::Error::Busy) => "busy",
            Error::Presentation(_) => "internal",
            Error::Forbidden(_) => "forbidden",
            Error::NotTheSipGateway(_) => "notTheSipGateway",
            Error::Excluded(_) => "excluded",
            Error::CrossSiteRequest => "csrfHeaderMissing",
            Error::WrongMeetingCredentials => "wrongMeetingCredentials",
            Error::NotFound(_) => "notFound",
            Error::Conflict { code, .. } => code,
            Error::NotStarted { .. } => "conferenceNotStarted",
            Error::NotPlacedYet { .. } => "notPlacedYet",
            Error::TooManyAttempts { .. } => "tooManyAttempts",
            Error::Busy { .. } => "busy",
            Error::DirectoryUnreachable(_) => "directoryUnreachable",
            Error::WebsocketRequired(_) => "websocketRequired",
            Error::SfuUnreachable(_) => "sfuUnreachable",
            Error::SfuRefused { .. } => "sfuRefused",
            Error::MailLimit { .. } => "mailLimit",
            Error::PayloadTooLarge => "payloadTooLarge",
            Error::UnsupportedMediaType => "unsupportedMediaType",
            Error::Database(_) | Error::Migrate(_) | Error::Kubernetes(_) | Error::Internal(_) => {
                "internal"
            }
        }
    }
}

fn presentation_status(err: &crate::presentation::Error) -> StatusCode {
    use crate::presentation::Error as E;
    match err {
        E::Refused(refused) => match refused.code {
            "tooLarge" => StatusCode::PAYLOAD_TOO_LARGE,
            "unsupportedFormat" => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        },
        E::NotFound => StatusCode::NOT_FOUND,
        E::Busy => StatusCode::SERVICE_UNAVAILABLE,
        E::Convert(_) | E::Files(_) | E::Signing(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Whether a database error is a unique-key violation.
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        // Busy and the SFU's answers say what to do; only our own failures are hidden.
        let told = matches!(
            self,
            Error::Busy { .. }
                | Error::DirectoryUnreachable(_)
                | Error::SfuUnreachable(_)
                | Error::SfuRefused { .. }
                | Error::Presentation(crate::presentation::Error::Busy)
        );
        let message = if status.is_server_error() && !told {
            tracing::error!(cause = ?self, "request failed");
            "something went wrong on our side; try again later".to_owned()
        } else {
            self.to_string()
        };
        let mut error = json!({ "code": self.code(), "message": message });
        match &self {
            Error::Validation {
                field: Some(field), ..
            } => error["field"] = Value::from(field.as_str()),
            Error::NotStarted {
                starts_at,
                opens_at,
            } => {
                error["startsAt"] = Value::from(starts_at.to_rfc3339());
                error["opensAt"] = Value::from(opens_at.to_rfc3339());
            }
            Error::TooManyAttempts { retry_after }
            | Error::NotPlacedYet { retry_after }
            | Error::Busy { retry_after }
            | Error::MailLimit { retry_after, .. } => {
                error["retryAfter"] = Value::from(*retry_after)
            }
            _ => {}
        }
        let mut response = (status, axum::Json(json!({ "error": error }))).into_response();
        if let Error::TooManyAttempts { retry_after }
        | Error::NotPlacedYet { retry_after }
        | Error::Busy { retry_after }
        | Error::MailLimit { retry_after, .. } = self
            && let Ok(value) = HeaderValue::from_str(&retry_after.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

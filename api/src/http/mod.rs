//! The HTTP layer: state, `router()`, the `app()` factory tests drive with `oneshot`, request
//! metrics and tracing, and one module per resource.

use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;

use crate::Error;
use crate::state::AppState;

pub mod auth;
pub mod conferences;
pub mod extract;
pub mod internal;
pub mod join;
pub mod me;
pub mod oidc;
pub mod ops;
pub mod portal;
pub mod presentations;
pub mod recordings;
pub mod rtc;
pub mod users;

/// The OpenAPI document of `/api/v1`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Conclave API",
        description = "Accounts, scheduling, the conference log and archive, and joining.\n\n\
            A request that changes something (POST, PATCH, PUT, DELETE) carries a JSON body \
            (`Content-Type: application/json`) or the header `X-Conclave-Request: 1`; one with \
            neither is what another site's page could make a browser send with the session \
            cookie, and is refused with 403 `csrfHeaderMissing`."
    ),
    paths(
        auth::login,
        auth::logout,
        oidc::methods,
        oidc::start,
        oidc::callback,
        me::show,
        me::edit,
        users::list,
        users::create,
        users::edit,
        users::show_settings,
        users::edit_settings,
        conferences::list,
        conferences::create,
        conferences::ad_hoc,
        conferences::show,
        conferences::edit,
        conferences::remove,
        conferences::repeat,
        conferences::calendar,
        conferences::invite,
        conferences::notify,
        conferences::invitation_log,
        join::join,
        recordings::list_recordings,
        recordings::show_recording,
        recordings::delete_recording,
        recordings::recording_media,
        recordings::recording_chat,
        presentations::accepted,
        presentations::upload,
        presentations::page,
        internal::room_event,
        internal::revocations,
        internal::placements
    ),
    components(schemas(
        crate::account::Account,
        crate::conference::ConferenceInput,
        crate::settings::Settings,
        crate::settings::SettingsChange,
        crate::directory::Source,
        oidc::AuthMethods,
        oidc::OidcMethod,
        oidc::PasswordLogin,
        auth::ProviderLogout,
        conferences::ConferenceView,
        conferences::ArchiveView,
        conferences::AnyView,
        conferences::RepeatDraft,
        join::JoinRequest,
        join::PhoneCaller,
        join::JoinResponse,
        crate::phone::DialIn,
        crate::presentation::Presentation,
        crate::presentation::Uploaded,
        crate::presentation::Accepted,
        recordings::RecordingView,
        recordings::StartedBy,
        ErrorBody,
        ErrorDetail
    ))
)]
#[derive(Debug)]
pub struct ApiDoc;

/// The error shape of every 4xx and 5xx answer.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// Details of an error.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable code, e.g. `validation`, `notFound`, `meetingIdTaken`.
    pub code: String,
    /// What went wrong and what to do, for people.
    pub message: String,
    /// The offending field, for validation errors.
    pub field: Option<String>,
}

/// Which routes a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// Everything on one listener (no `--internal-listen`).
    All,
    /// What browsers and the Ingress reach: the API without `/internal`, the probes and the
    /// OpenAPI document, but not `/metrics`.
    Public,
    /// What only the cluster reaches: `/metrics`, `/api/v1/internal/*` and the probes.
    Internal,
}

impl Surface {
    /// The surface of the main listener for a configuration.
    pub fn of_main_listener(config: &crate::Config) -> Self {
        if config.internal_listen.is_some() {
            Self::Public
        } else {
            Self::All
        }
    }

    fn public(self) -> bool {
        matches!(self, Self::All | Self::Public)
    }

    fn internal(self) -> bool {
        matches!(self, Self::All | Self::Internal)
    }
}

/// The `/api/v1` routes of a surface.
pub fn api_router(surface: Surface) -> Router<AppState> {
    let mut router = Router::new();
    if surface.public() {
        router = router
            .merge(auth::router())
            .merge(oidc::router())
            .merge(me::router())
            .merge(users::router())
            .merge(conferences::router())
            .merge(join::router())
            .merge(presentations::router())
            .merge(recordings::router())
            // What browsers reach with the session cookie; the internal routes take service
            // tokens only, which no browser holds.
            .route_layer(middleware::from_fn(refuse_cross_site));
    }
    if surface.internal() {
        router = router.merge(internal::router());
    }
    router.fallback(|| async { Error::not_found("no such API route; see /api/v1/openapi.json") })
}

/// The HTTP application of the main listener, with its state: everything, or the public
/// surface when `--internal-listen` moves the rest to [`internal_app`].
pub fn app(state: AppState) -> Router {
    router(state.clone()).with_state(state)
}

/// The application of the `--internal-listen` listener.
pub fn internal_app(state: AppState) -> Router {
    surface_router(state.clone(), Surface::Internal).with_state(state)
}

/// The main listener's routes with layers, before the state is attached (standalone mode
/// merges the SFU's routes into it).
pub fn router(state: AppState) -> Router<AppState> {
    let surface = Surface::of_main_listener(&state.config);
    surface_router(state, surface)
}

/// The routes of a surface with layers, before the state is attached.
pub fn surface_router(state: AppState, surface: Surface) -> Router<AppState> {
    let limit = state.config.max_body_bytes;
    let mut router = Router::new()
        .nest("/api/v1", api_router(surface))
        .merge(ops::router(surface.public(), surface.internal()));
    if surface.public() {
        // What browsers reach: signaling relayed to SFU pods.
        router = router.merge(rtc::router());
    }
    router
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(state, record))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let route = req
                .extensions()
                .get::<MatchedPath>()
                .map_or("unmatched", MatchedPath::as_str)
                .to_owned();
            let request_id = req
                .headers()
                .get(REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            tracing::info_span!("request", method = %req.method(), route = %route, request_id = %request_id)
        }))
        // Outermost: every request has an ID (kept from a proxy that set one), answered back in
        // the same header, so a person's report and the log lines meet.
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

/// The header the portal sends on every request to mark it as its own (see
/// [`refuse_cross_site`]).
pub const PORTAL_REQUEST: http::HeaderName = http::HeaderName::from_static("x-conclave-request");

/// Whether a request may change something: it carries a JSON body or the
/// `X-Conclave-Request` header. Another site's page can make a browser send a form or a
/// body-less POST with the session cookie (a "simple" request, no CORS preflight), but neither
/// a JSON content type nor a custom header: both need a preflight, which this API never grants.
pub fn is_same_site_request(method: &http::Method, headers: &http::HeaderMap) -> bool {
    if matches!(
        *method,
        http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
    ) {
        return true;
    }
    if headers
        .get(&PORTAL_REQUEST)
        .is_some_and(|value| !value.is_empty())
    {
        return true;
    }
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

/// Refuses state-changing requests that another site could have sent (403
/// `csrfHeaderMissing`); see [`is_same_site_request`].
async fn refuse_cross_site(req: Request, next: Next) -> Response {
    if is_same_site_request(req.method(), req.headers()) {
        next.run(req).await
    } else {
        Error::CrossSiteRequest.into_response()
    }
}

/// The header that carries a request's ID.
pub const REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");

tokio::task_local! {
    /// The ID of the request being served, for what passes it on (join tokens, the
    /// annotation that the operator's Events quote).
    static CURRENT_REQUEST: String;
}

/// The ID of the request the current task serves; `None` outside a request (e.g. the
/// lifecycle loop).
pub fn current_request_id() -> Option<String> {
    // A proxy's (or a client's) own ID is kept; one that could not sit in an annotation or a
    // log line unharmed is not passed on.
    CURRENT_REQUEST
        .try_with(Clone::clone)
        .ok()
        .filter(|id| !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic()))
}

/// Counts requests and measures their latency by route template.
async fn record(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let method = req.method().as_str().to_owned();
    let request_id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let started = Instant::now();
    let response = CURRENT_REQUEST
        .scope(request_id, next.run(req))
        .await
        .into_response();
    state
        .metrics
        .latency
        .with_label_values(&[&method, &route])
        .observe(started.elapsed().as_secs_f64());
    state
        .metrics
        .requests
        .with_label_values(&[&method, &route, response.status().as_str()])
        .inc();
    let status = response.status().as_u16();
    let millis = started.elapsed().as_secs_f64() * 1000.0;
    // One line per request (in the request's span: method, route, request ID); probes and
    // scrapes only at debug, so they do not drown the rest.
    if matches!(route.as_str(), "/healthz" | "/readyz" | "/metrics") {
        tracing::debug!(status, millis, "request served");
    } else {
        tracing::info!(status, millis, "request served");
    }
    response
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderValue, Method};

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn a_state_changing_request_needs_json_or_the_portal_header() {
        for method in [Method::POST, Method::PATCH, Method::PUT, Method::DELETE] {
            assert!(!is_same_site_request(&method, &headers(&[])), "{method}");
            for simple in [
                "text/plain",
                "application/x-www-form-urlencoded",
                "multipart/form-data; boundary=x",
            ] {
                assert!(
                    !is_same_site_request(&method, &headers(&[("content-type", simple)])),
                    "{method} {simple}"
                );
            }
            assert!(is_same_site_request(
                &method,
                &headers(&[("content-type", "application/json")])
            ));
            assert!(is_same_site_request(
                &method,
                &headers(&[("content-type", "Application/JSON; charset=utf-8")])
            ));
            assert!(is_same_site_request(
                &method,
                &headers(&[("x-conclave-request", "1")])
            ));
            assert!(!is_same_site_request(
                &method,
                &headers(&[("x-conclave-request", "")])
            ));
        }
        assert!(is_same_site_request(&Method::GET, &HeaderMap::new()));
        assert!(!is_same_site_request(
            &Method::POST,
            &headers(&[("content-type", "text/plain; a=application/json")])
        ));
    }
}

//! Extractors: the logged-in account (session cookie or bearer token), the client's address,
//! and JSON bodies whose rejections use the API's error shape.

use std::net::{IpAddr, SocketAddr};

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::account::{self, Account};
use crate::state::AppState;
use crate::{Error, Result, session};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "conclave_session";

/// The session token a request carries: `Authorization: Bearer …` or the session cookie.
pub fn session_token(parts: &Parts) -> Option<String> {
    if let Some(value) = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        && let Some(token) = value.strip_prefix("Bearer ")
    {
        return Some(token.trim().to_owned());
    }
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.to_owned())
}

/// A logged-in, enabled account and the session token it used.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    /// The account.
    pub account: Account,
    /// The session token of this request.
    pub token: String,
}

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        let token = session_token(parts).ok_or(Error::Unauthenticated)?;
        let id = session::account_of(&state.db, &token, state.clock.now())
            .await?
            .ok_or(Error::Unauthenticated)?;
        let account = account::get(&state.db, &id)
            .await?
            .ok_or(Error::Unauthenticated)?;
        if account.disabled {
            return Err(Error::Unauthenticated);
        }
        Ok(CurrentUser { account, token })
    }
}

/// A logged-in account if there is one (guests are welcome too).
#[derive(Debug, Clone)]
pub struct MaybeUser(pub Option<CurrentUser>);

impl FromRequestParts<AppState> for MaybeUser {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        if session_token(parts).is_none() {
            return Ok(MaybeUser(None));
        }
        match CurrentUser::from_request_parts(parts, state).await {
            Ok(user) => Ok(MaybeUser(Some(user))),
            Err(Error::Unauthenticated) => Err(Error::Unauthenticated),
            Err(err) => Err(err),
        }
    }
}

/// The client's address: the peer, or, behind trusted proxies (`--trusted-proxies`), the
/// rightmost X-Forwarded-For hop none of them added.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub Option<IpAddr>);

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        let Some(peer) = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0.ip())
        else {
            return Ok(ClientAddr(None));
        };
        if state.trusted_proxies.is_empty() {
            return Ok(ClientAddr(Some(peer)));
        }
        let forwarded: Vec<&str> = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        Ok(ClientAddr(Some(
            state.trusted_proxies.client(peer, &forwarded),
        )))
    }
}

impl ClientAddr {
    /// The client's network as exclusions of guests see it: an IPv4 address, or the /64 of an
    /// IPv6 address (one home or office gets a whole /64); `None` for loopback (a local proxy).
    pub fn network(&self) -> Option<String> {
        self.0.and_then(proto::client_network)
    }

    /// The throttling key for this address (IPv6 by its /64).
    pub fn key(&self, what: &str) -> String {
        match self.0 {
            Some(ip) => format!("{what}:addr:{}", crate::address::throttle_group(ip)),
            None => format!("{what}:addr:unknown"),
        }
    }
}

/// A JSON body; malformed JSON is a 400, a body of the wrong shape a 422, a missing content
/// type a 415 and an oversized body a 413 — all in the API's error shape.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &AppState) -> Result<Self> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(match rejection {
                JsonRejection::JsonSyntaxError(err) => {
                    Error::MalformedBody(format!("the body is not valid JSON: {}", err.body_text()))
                }
                JsonRejection::JsonDataError(err) => Error::Validation {
                    field: None,
                    message: err.body_text(),
                },
                JsonRejection::MissingJsonContentType(_) => Error::UnsupportedMediaType,
                JsonRejection::BytesRejection(err)
                    if err.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE =>
                {
                    Error::PayloadTooLarge
                }
                other => Error::MalformedBody(other.body_text()),
            }),
        }
    }
}

/// Requires level admin.
///
/// # Errors
/// 403 for everyone else.
pub fn require_admin(user: &CurrentUser) -> Result<()> {
    if user.account.level == proto::AccountLevel::Admin {
        Ok(())
    } else {
        Err(Error::forbidden("only administrators may do this"))
    }
}

/// A query string; one that does not parse is a 400 in the API's error shape.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned> FromRequestParts<AppState> for ApiQuery<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| ApiQuery(value))
            .map_err(|rejection| {
                Error::MalformedBody(format!("bad query string: {}", rejection.body_text()))
            })
    }
}

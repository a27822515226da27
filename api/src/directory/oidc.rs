//! OpenID Connect login: authorization code flow with PKCE against the company's provider
//! (Keycloak, Entra ID, Okta, Google, Dex…), and the check that ends the sessions of people the
//! provider no longer lets in.
//!
//! # Layout
//! - [`OidcConfig`]: the flags; [`Oidc`]: the provider handle built from them once, at the
//!   composition root, which discovers the provider (again, when it was down at start) and
//!   re-fetches its keys when a token names one it does not know (key rotation).
//! - [`Oidc::start`]: a login state kept here (state, nonce, PKCE verifier, return path; single
//!   use, ten minutes), bound to the starting browser by a cookie secret, and the provider's URL.
//! - [`Oidc::finish`]: the provider's answer: state checked and spent, code exchanged, ID token
//!   verified (signature with the provider's keys, issuer, audience, expiry with the allowed
//!   clock skew, nonce), claims read (and userinfo when the groups are not in the ID token), the
//!   level from the groups, the account provisioned, the refresh token kept.
//! - [`confirm_due`]: one check round: each OIDC account with live sessions not confirmed within
//!   the interval is refreshed at the provider; a refused refresh ends its sessions.
//! - [`Oidc::logout_url`]: the provider's end-session URL (RP-initiated logout), when on.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreGenderClaim, CoreJsonWebKey, CoreJsonWebKeySet,
    CoreTokenResponse,
};
use openidconnect::{
    AdditionalClaims, AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret,
    CsrfToken, EndpointMaybeSet, EndpointNotSet, EndpointSet, IdTokenVerifier, IssuerUrl,
    LogoutRequest, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier,
    PostLogoutRedirectUrl, ProviderMetadataWithLogout, RedirectUrl, RefreshToken,
    RequestTokenError, Scope, SignatureVerificationError, SubjectIdentifier, TokenResponse,
    UserInfoClaims, reqwest,
};
use proto::{AccountId, AccountLevel};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::Row;
use tokio::sync::RwLock;

use super::{LevelGroups, Profile, Source};
use crate::account::Account;
use crate::clock::{db_time, parse_db_time};
use crate::db::Db;
use crate::state::AppState;

/// How long a login may stay at the provider before its state lapses.
pub const LOGIN_STATE_TTL_MINUTES: i64 = 10;
/// Logins under way at once, at most: each keeps a row until its answer or its lapse, so
/// someone calling the start URL in a loop cannot fill the database.
pub const MAX_PENDING_LOGINS: i64 = 10_000;
/// The path of the callback under the public URL: the redirect URI to register at the provider.
pub const CALLBACK_PATH: &str = "/api/v1/auth/oidc/callback";

/// The OpenID Connect provider (docs/oidc.md). Login with it is on when `--oidc-issuer` is set.
#[derive(Debug, Clone, clap::Args)]
pub struct OidcConfig {
    /// The provider's issuer URL, e.g. https://keycloak.example.org/realms/example; its
    /// `/.well-known/openid-configuration` is read at start. Setting it turns OpenID Connect
    /// login on.
    #[arg(
        id = "oidc-issuer",
        value_name = "OIDC_ISSUER",
        long = "oidc-issuer",
        env = "CONCLAVE_OIDC_ISSUER"
    )]
    pub issuer: Option<String>,

    /// The client ID Conclave has at the provider.
    #[arg(
        id = "oidc-client-id",
        value_name = "OIDC_CLIENT_ID",
        long = "oidc-client-id",
        env = "CONCLAVE_OIDC_CLIENT_ID"
    )]
    pub client_id: Option<String>,

    /// File holding the client secret (a confidential client); never given as a flag value.
    #[arg(
        id = "oidc-client-secret-file",
        value_name = "OIDC_CLIENT_SECRET_FILE",
        long = "oidc-client-secret-file",
        env = "CONCLAVE_OIDC_CLIENT_SECRET_FILE"
    )]
    pub client_secret_file: Option<PathBuf>,

    /// The provider's name on the login page's button: "Log in with NAME".
    #[arg(
        id = "oidc-name",
        value_name = "OIDC_NAME",
        long = "oidc-name",
        env = "CONCLAVE_OIDC_NAME",
        default_value = "your company account"
    )]
    pub name: String,

    /// The scopes asked for, separated by spaces or commas (`openid` is always asked for).
    /// Add `offline_access` where the provider gives refresh tokens only then (Entra ID, Okta),
    /// `groups` where it names the groups claim so (Dex).
    #[arg(
        id = "oidc-scopes",
        value_name = "OIDC_SCOPES",
        long = "oidc-scopes",
        env = "CONCLAVE_OIDC_SCOPES",
        default_value = "openid profile email"
    )]
    pub scopes: String,

    /// The claim holding the person's groups or roles: a name, or a dotted path into nested
    /// claims such as `realm_access.roles` (Keycloak realm roles). Read from the ID token, else
    /// from the userinfo answer.
    #[arg(
        id = "oidc-groups-claim",
        value_name = "OIDC_GROUPS_CLAIM",
        long = "oidc-groups-claim",
        env = "CONCLAVE_OIDC_GROUPS_CLAIM",
        default_value = "groups"
    )]
    pub groups_claim: String,

    /// Groups (comma-separated, compared exactly) whose members are administrators.
    #[arg(
        id = "oidc-admin-groups",
        value_name = "OIDC_ADMIN_GROUPS",
        long = "oidc-admin-groups",
        env = "CONCLAVE_OIDC_ADMIN_GROUPS",
        value_delimiter = ','
    )]
    pub admin_groups: Vec<String>,

    /// Groups whose members are moderators who may also record (`moderatorPlus`).
    #[arg(
        id = "oidc-moderator-plus-groups",
        value_name = "OIDC_MODERATOR_PLUS_GROUPS",
        long = "oidc-moderator-plus-groups",
        env = "CONCLAVE_OIDC_MODERATOR_PLUS_GROUPS",
        value_delimiter = ','
    )]
    pub moderator_plus_groups: Vec<String>,

    /// Groups whose members are moderators.
    #[arg(
        id = "oidc-moderator-groups",
        value_name = "OIDC_MODERATOR_GROUPS",
        long = "oidc-moderator-groups",
        env = "CONCLAVE_OIDC_MODERATOR_GROUPS",
        value_delimiter = ','
    )]
    pub moderator_groups: Vec<String>,

    /// Groups whose members are audience (useful with `--oidc-default-level none`: only the
    /// listed groups may log in at all).
    #[arg(
        id = "oidc-audience-groups",
        value_name = "OIDC_AUDIENCE_GROUPS",
        long = "oidc-audience-groups",
        env = "CONCLAVE_OIDC_AUDIENCE_GROUPS",
        value_delimiter = ','
    )]
    pub audience_groups: Vec<String>,

    /// The level of someone in none of the mapped groups: audience, moderator, moderatorPlus,
    /// admin, or `none` to refuse them. Re-evaluated at every login.
    #[arg(
        id = "oidc-default-level", value_name = "OIDC_DEFAULT_LEVEL",
        long = "oidc-default-level",
        env = "CONCLAVE_OIDC_DEFAULT_LEVEL",
        default_value = "audience",
        value_parser = parse_default_level
    )]
    pub default_level: DefaultLevel,

    /// The claim that becomes the Conclave login name; when missing or unusable, `email`, then
    /// `sub` is used.
    #[arg(
        id = "oidc-login-claim",
        value_name = "OIDC_LOGIN_CLAIM",
        long = "oidc-login-claim",
        env = "CONCLAVE_OIDC_LOGIN_CLAIM",
        default_value = "preferred_username"
    )]
    pub login_claim: String,

    /// Also end the session at the provider on logout (RP-initiated logout): the portal is sent
    /// to the provider's end-session endpoint, which returns to /login.
    #[arg(
        id = "oidc-provider-logout",
        long = "oidc-provider-logout",
        env = "CONCLAVE_OIDC_PROVIDER_LOGOUT"
    )]
    pub provider_logout: bool,

    /// Seconds of clock difference with the provider tolerated when checking a token's expiry
    /// and issue time.
    #[arg(
        id = "oidc-clock-skew-seconds", value_name = "OIDC_CLOCK_SKEW_SECONDS",
        long = "oidc-clock-skew-seconds",
        env = "CONCLAVE_OIDC_CLOCK_SKEW_SECONDS",
        default_value_t = 60,
        value_parser = clap::value_parser!(u32).range(0..=600)
    )]
    pub clock_skew_seconds: u32,

    /// PEM file of the certificate authority (or authorities) that signed the provider's TLS
    /// certificate, for a provider behind a company's own CA; the public roots stay trusted.
    #[arg(
        id = "oidc-ca-file",
        value_name = "OIDC_CA_FILE",
        long = "oidc-ca-file",
        env = "CONCLAVE_OIDC_CA_FILE"
    )]
    pub ca_file: Option<PathBuf>,
}

/// `--oidc-default-level`: a level, or `None` to refuse people in no mapped group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefaultLevel(pub Option<AccountLevel>);

fn parse_default_level(value: &str) -> Result<DefaultLevel, String> {
    super::parse_default_level(value).map(DefaultLevel)
}

/// Why an OpenID Connect login failed.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// The login is refused; the message tells the person why, in a sentence.
    #[error("{0}")]
    Refused(String),
    /// The provider could not be reached, or answered what cannot be used (logged, not shown).
    #[error("{0}")]
    Provider(String),
    /// Conclave's own side failed, or refused (a disabled account, a login name taken).
    #[error(transparent)]
    Service(#[from] crate::Error),
}

type LoginResult<T> = std::result::Result<T, LoginError>;

/// The settings the handle works with, checked at start.
#[derive(Debug)]
struct Settings {
    issuer: IssuerUrl,
    client_id: ClientId,
    client_secret: ClientSecret,
    name: String,
    scopes: Vec<String>,
    groups_claim: String,
    levels: LevelGroups,
    login_claim: String,
    provider_logout: bool,
    skew: Duration,
    redirect: RedirectUrl,
    after_logout: String,
}

/// What discovery found: the provider's metadata with its current signing keys.
type Metadata = ProviderMetadataWithLogout;

type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// The OpenID Connect provider handle: settings, an HTTP client that follows no redirects
/// (no SSRF through a provider's answer), and what discovery found.
#[derive(Debug)]
pub struct Oidc {
    settings: Settings,
    http: reqwest::Client,
    discovered: RwLock<Option<Arc<Metadata>>>,
}

/// A login sent to the provider.
#[derive(Debug)]
pub struct Started {
    /// Where to send the browser.
    pub url: String,
    /// The secret for the browser's cookie; the provider's answer must come back with it.
    pub browser_secret: String,
}

/// The provider's answer at the callback, as the query carried it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Callback {
    /// The authorization code.
    pub code: Option<String>,
    /// The state sent with the login.
    pub state: Option<String>,
    /// An error code instead of a code (`access_denied`, …).
    pub error: Option<String>,
    /// The issuer that answers (RFC 9207), when the provider says.
    pub iss: Option<String>,
}

/// A finished login.
#[derive(Debug)]
pub struct LoggedIn {
    /// The account, created or brought up to date.
    pub account: Account,
    /// The local path to go to.
    pub return_to: String,
    /// Whether the provider gave a refresh token the check can confirm the account with; when
    /// not, the session must not outlive the check interval.
    pub refreshable: bool,
}

/// Any claims besides the standard ones (groups, roles, …), kept as JSON.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
struct OtherClaims {
    #[serde(flatten)]
    all: serde_json::Map<String, Value>,
}

impl AdditionalClaims for OtherClaims {}

fn sha256(text: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(text.as_bytes()))
}

/// A local path (`/…`) safe to redirect to after login: no scheme, no host (`//host`, `/\host`),
/// no control characters. Anything else is refused, so the login is no open redirect.
pub fn local_path(value: &str) -> Option<&str> {
    let ok = value.starts_with('/')
        && !value.starts_with("//")
        && !value.starts_with("/\\")
        && value.len() <= 2000
        && !value.chars().any(|c| c.is_control() || c == '\\');
    ok.then_some(value)
}

/// The value at a dotted path (`realm_access.roles`) in a claims object; a claim whose own name
/// has dots (`https://example.org/groups`) is found too.
fn claim_at<'a>(claims: &'a Value, path: &str) -> Option<&'a Value> {
    if let Some(value) = claims.get(path) {
        return Some(value);
    }
    path.split('.')
        .try_fold(claims, |value, key| value.get(key))
}

/// Group names from a claim: an array of strings, or one string.
fn groups_in(value: Option<&Value>) -> Option<Vec<String>> {
    match value? {
        Value::Array(items) => Some(
            items
                .iter()
                .filter_map(|item| item.as_str().map(str::to_owned))
                .collect(),
        ),
        Value::String(one) => Some(vec![one.clone()]),
        _ => None,
    }
}

fn text_claim(claims: &[&Value], name: &str) -> Option<String> {
    claims
        .iter()
        .find_map(|c| claim_at(c, name).and_then(Value::as_str))
        .map(str::trim)
        .filter(|text| !text.is_empty())
        .map(str::to_owned)
}

/// The claims of a JWT whose signature was already verified, as JSON.
fn payload_of(jwt: &str) -> LoginResult<Value> {
    let payload = jwt
        .split('.')
        .nth(1)
        .ok_or_else(|| LoginError::Provider("the ID token is not a JWT".into()))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|err| LoginError::Provider(format!("the ID token's claims: {err}")))?;
    serde_json::from_slice(&bytes)
        .map_err(|err| LoginError::Provider(format!("the ID token's claims: {err}")))
}

impl Settings {
    /// The person the claims describe (ID token first, then userinfo).
    fn profile(&self, subject: &str, claims: &[&Value]) -> LoginResult<Profile> {
        let login = [self.login_claim.as_str(), "email"]
            .into_iter()
            .filter_map(|name| text_claim(claims, name))
            .chain(std::iter::once(subject.to_owned()))
            .map(|login| login.to_lowercase())
            .find(|login| crate::validate::login(login).is_ok())
            .ok_or_else(|| {
                LoginError::Refused(format!(
                    "{} gave no login name Conclave can use (claim {:?}, e-mail or subject); ask your administrator",
                    self.name, self.login_claim
                ))
            })?;
        let groups = claims
            .iter()
            .find_map(|c| groups_in(claim_at(c, &self.groups_claim)))
            .unwrap_or_default();
        Ok(Profile {
            external_id: format!("{}|{subject}", self.issuer.as_str()),
            login,
            display_name: text_claim(claims, "name"),
            email: text_claim(claims, "email"),
            time_zone: text_claim(claims, "zoneinfo"),
            groups,
        })
    }
}

impl Oidc {
    /// The handle for `config`, or `None` when OpenID Connect login is off. Nothing is fetched
    /// yet: see [`Oidc::discover`] and [`Oidc::discover_in_background`].
    ///
    /// # Errors
    /// The issuer is set without a client ID or secret file, the secret or CA file cannot be
    /// read, or a URL does not parse.
    pub fn from_config(config: &crate::Config) -> crate::Result<Option<Arc<Oidc>>> {
        let oidc = &config.oidc;
        let Some(issuer) = &oidc.issuer else {
            return Ok(None);
        };
        let invalid = |field: &str, message: String| crate::Error::invalid(field, message);
        // As given: discovery requires the provider's `issuer` to be exactly this (Auth0's
        // ends with a slash, Keycloak's does not).
        let issuer = IssuerUrl::new(issuer.clone())
            .map_err(|err| invalid("oidcIssuer", format!("--oidc-issuer: {err}")))?;
        let client_id = oidc.client_id.clone().ok_or_else(|| {
            invalid(
                "oidcClientId",
                "--oidc-issuer is set: --oidc-client-id is needed too".into(),
            )
        })?;
        let secret_file = oidc.client_secret_file.as_ref().ok_or_else(|| {
            invalid(
                "oidcClientSecretFile",
                "--oidc-issuer is set: --oidc-client-secret-file is needed too".into(),
            )
        })?;
        let secret = std::fs::read_to_string(secret_file).map_err(|err| {
            crate::Error::Internal(format!(
                "cannot read the OIDC client secret file {}: {err}",
                secret_file.display()
            ))
        })?;
        let mut scopes: Vec<String> = oidc
            .scopes
            .split([' ', ','])
            .filter(|scope| !scope.is_empty() && *scope != "openid")
            .map(str::to_owned)
            .collect();
        scopes.dedup();
        let public = config.public_url();
        let redirect = RedirectUrl::new(format!("{public}{CALLBACK_PATH}"))
            .map_err(|err| invalid("publicUrl", format!("--public-url: {err}")))?;
        let mut http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(StdDuration::from_secs(5))
            .timeout(StdDuration::from_secs(15))
            .user_agent("conclave");
        if let Some(path) = &oidc.ca_file {
            let pem = std::fs::read(path).map_err(|err| {
                crate::Error::Internal(format!(
                    "cannot read the OIDC CA file {}: {err}",
                    path.display()
                ))
            })?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem).map_err(|err| {
                invalid(
                    "oidcCaFile",
                    format!("--oidc-ca-file {}: {err}", path.display()),
                )
            })? {
                http = http.add_root_certificate(cert);
            }
        }
        let http = http
            .build()
            .map_err(|err| crate::Error::Internal(format!("the OIDC HTTP client: {err}")))?;
        let clean = |groups: &[String]| -> Vec<String> {
            groups
                .iter()
                .map(|group| group.trim().to_owned())
                .filter(|group| !group.is_empty())
                .collect()
        };
        Ok(Some(Arc::new(Oidc {
            settings: Settings {
                issuer,
                client_id: ClientId::new(client_id),
                client_secret: ClientSecret::new(secret.trim().to_owned()),
                name: oidc.name.clone(),
                scopes,
                groups_claim: oidc.groups_claim.clone(),
                levels: LevelGroups {
                    admin: clean(&oidc.admin_groups),
                    moderator_plus: clean(&oidc.moderator_plus_groups),
                    moderator: clean(&oidc.moderator_groups),
                    audience: clean(&oidc.audience_groups),
                    default: oidc.default_level.0,
                    dn_names: false,
                },
                login_claim: oidc.login_claim.clone(),
                provider_logout: oidc.provider_logout,
                skew: Duration::seconds(i64::from(oidc.clock_skew_seconds)),
                redirect,
                after_logout: format!("{public}/login"),
            },
            http,
            discovered: RwLock::new(None),
        })))
    }

    /// The name on the login button.
    pub fn name(&self) -> &str {
        &self.settings.name
    }

    /// The provider's metadata and keys, discovered now when not yet.
    ///
    /// # Errors
    /// [`LoginError::Provider`] when the provider cannot be reached or its document is unusable.
    pub async fn discover(&self) -> LoginResult<Arc<Metadata>> {
        if let Some(found) = self.discovered.read().await.clone() {
            return Ok(found);
        }
        let metadata = Metadata::discover_async(self.settings.issuer.clone(), &self.http)
            .await
            .map_err(|err| {
                LoginError::Provider(format!(
                    "discovery at {} failed: {}",
                    self.settings.issuer.as_str(),
                    chain(&err)
                ))
            })?;
        let found = Arc::new(metadata);
        *self.discovered.write().await = Some(found.clone());
        tracing::info!(
            issuer = self.settings.issuer.as_str(),
            keys = found.jwks().keys().len(),
            "OpenID Connect provider discovered"
        );
        Ok(found)
    }

    /// Discovers the provider in the background, again and again with a growing pause while it
    /// cannot be reached (a provider down at start does not stop Conclave; its logins fail with
    /// a clear message until it answers).
    pub fn discover_in_background(self: &Arc<Self>) {
        let oidc = self.clone();
        tokio::spawn(async move {
            let mut pause = StdDuration::from_secs(2);
            loop {
                match oidc.discover().await {
                    Ok(_) => return,
                    Err(err) => {
                        tracing::error!(cause = %err, retry_in_seconds = pause.as_secs(), "the OpenID Connect provider cannot be discovered; its login fails until it can");
                    }
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(StdDuration::from_secs(300));
            }
        });
    }

    /// The keys the provider publishes now (after a token named an unknown key: rotation).
    async fn refresh_keys(&self, metadata: &Metadata) -> LoginResult<Arc<Metadata>> {
        let jwks = CoreJsonWebKeySet::fetch_async(metadata.jwks_uri(), &self.http)
            .await
            .map_err(|err| {
                LoginError::Provider(format!("fetching the provider's keys: {}", chain(&err)))
            })?;
        let updated = Arc::new(metadata.clone().set_jwks(jwks));
        *self.discovered.write().await = Some(updated.clone());
        tracing::info!(
            keys = updated.jwks().keys().len(),
            "the OpenID Connect provider's keys were fetched again (a token named a key not known before)"
        );
        Ok(updated)
    }

    fn client(&self, metadata: &Metadata) -> Client {
        CoreClient::from_provider_metadata(
            metadata.clone(),
            self.settings.client_id.clone(),
            Some(self.settings.client_secret.clone()),
        )
        .set_redirect_uri(self.settings.redirect.clone())
    }

    /// Starts a login: keeps its state, nonce and PKCE verifier here and returns the provider's
    /// authorization URL with the secret for the browser's cookie.
    ///
    /// # Errors
    /// The provider cannot be discovered; database errors.
    pub async fn start(
        &self,
        db: &Db,
        return_to: &str,
        now: DateTime<Utc>,
    ) -> LoginResult<Started> {
        let metadata = self.discover().await?;
        let client = self.client(&metadata);
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for scope in &self.settings.scopes {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state, nonce) = request.url();
        let browser_secret = crate::session::random_secret(32);
        sqlx::query("DELETE FROM oidc_login_states WHERE expires_at <= $1")
            .bind(db_time(now))
            .execute(&db.pool)
            .await
            .map_err(crate::Error::from)?;
        let pending: i64 = sqlx::query("SELECT COUNT(*) AS n FROM oidc_login_states")
            .fetch_one(&db.pool)
            .await
            .and_then(|row| row.try_get("n"))
            .map_err(crate::Error::from)?;
        if pending >= MAX_PENDING_LOGINS {
            tracing::warn!(
                pending,
                "too many OpenID Connect logins under way; new ones are refused until some finish or lapse"
            );
            return Err(LoginError::Refused(
                "Too many logins are under way right now. Try again in a few minutes.".into(),
            ));
        }
        sqlx::query("INSERT INTO oidc_login_states (state, browser_hash, nonce, pkce_verifier, return_to, expires_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(state.secret())
            .bind(sha256(&browser_secret))
            .bind(nonce.secret())
            .bind(verifier.secret())
            .bind(return_to)
            .bind(db_time(now + Duration::minutes(LOGIN_STATE_TTL_MINUTES)))
            .execute(&db.pool)
            .await
            .map_err(crate::Error::from)?;
        Ok(Started {
            url: url.to_string(),
            browser_secret,
        })
    }

    /// Finishes a login with the provider's answer: spends the state (it must come back to the
    /// browser that started the login, within ten minutes), exchanges the code, verifies the
    /// ID token, and provisions the account with the level its groups give.
    ///
    /// # Errors
    /// [`LoginError::Refused`] for what the person should read (unknown or spent state, another
    /// browser, a token that fails a check, no level); [`LoginError::Provider`] when the
    /// provider fails; [`LoginError::Service`] for a disabled account, a taken login name, or
    /// database errors.
    pub async fn finish(
        &self,
        db: &Db,
        answer: &Callback,
        browser_secret: Option<&str>,
        now: DateTime<Utc>,
    ) -> LoginResult<LoggedIn> {
        let refused = |message: &str| LoginError::Refused(message.to_owned());
        let state = answer.state.as_deref().unwrap_or_default();
        let row = sqlx::query("DELETE FROM oidc_login_states WHERE state = $1 RETURNING browser_hash, nonce, pkce_verifier, return_to, expires_at")
            .bind(state)
            .fetch_optional(&db.pool)
            .await
            .map_err(crate::Error::from)?;
        let Some(row) = row else {
            return Err(refused(
                "This login link is unknown or was already used. Start the login again.",
            ));
        };
        let text = |name: &str| -> LoginResult<String> {
            row.try_get::<String, _>(name)
                .map_err(|err| LoginError::Service(err.into()))
        };
        if parse_db_time(&text("expires_at")?)? <= now {
            return Err(refused("The login took too long. Start it again."));
        }
        if browser_secret.map(sha256) != Some(text("browser_hash")?) {
            return Err(refused(
                "This login was started in another browser (or its cookie is gone). Start the login again here.",
            ));
        }
        if let Some(error) = &answer.error {
            let error: String = error
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(64)
                .collect();
            return Err(LoginError::Refused(format!(
                "{} did not log you in ({error}).",
                self.settings.name
            )));
        }
        if let Some(iss) = &answer.iss
            && iss.trim_end_matches('/') != self.settings.issuer.as_str().trim_end_matches('/')
        {
            return Err(refused(
                "The answer came from another provider than the one the login went to. Start the login again.",
            ));
        }
        let Some(code) = &answer.code else {
            return Err(refused(
                "The provider's answer has no login code. Start the login again.",
            ));
        };
        let metadata = self.discover().await?;
        let client = self.client(&metadata);
        let tokens: CoreTokenResponse = client
            .exchange_code(AuthorizationCode::new(code.clone()))
            .map_err(|err| {
                LoginError::Provider(format!("the provider has no token endpoint: {err}"))
            })?
            .set_pkce_verifier(PkceCodeVerifier::new(text("pkce_verifier")?))
            .request_async(&self.http)
            .await
            .map_err(|err| match err {
                RequestTokenError::ServerResponse(answer) => LoginError::Refused(format!(
                    "{} did not accept the login code ({}). Start the login again.",
                    self.settings.name,
                    answer.error()
                )),
                other => {
                    LoginError::Provider(format!("the code exchange failed: {}", chain(&other)))
                }
            })?;
        let id_token = tokens.id_token().ok_or_else(|| {
            LoginError::Provider("the provider's token answer has no ID token".into())
        })?;
        let nonce = Nonce::new(text("nonce")?);
        let first = self.client(&metadata);
        let claims = match id_token.claims(&self.checks(first.id_token_verifier(), now), &nonce) {
            Err(ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::NoMatchingKey,
            )) => {
                let metadata = self.refresh_keys(&metadata).await?;
                let again = self.client(&metadata);
                id_token
                    .claims(&self.checks(again.id_token_verifier(), now), &nonce)
                    .cloned()
            }
            other => other.cloned(),
        }
        .map_err(|err| self.token_refusal(&err))?;
        let subject = claims.subject().as_str().to_owned();
        let id_claims = payload_of(&id_token.to_string())?;
        let mut sources = vec![id_claims];
        let needs_userinfo = claim_at(&sources[0], &self.settings.groups_claim).is_none()
            || claim_at(&sources[0], &self.settings.login_claim).is_none();
        if needs_userinfo
            && let Ok(request) = client.user_info(
                tokens.access_token().clone(),
                Some(SubjectIdentifier::new(subject.clone())),
            )
        {
            let info: UserInfoClaims<OtherClaims, CoreGenderClaim> = request
                .request_async(&self.http)
                .await
                .map_err(|err| LoginError::Provider(format!("userinfo failed: {}", chain(&err))))?;
            let info = serde_json::to_value(&info)
                .map_err(|err| LoginError::Provider(format!("userinfo: {err}")))?;
            sources.push(info);
        }
        let claims: Vec<&Value> = sources.iter().collect();
        let profile = self.settings.profile(&subject, &claims)?;
        let Some(level) = self.settings.levels.level_of(&profile.groups) else {
            return Err(LoginError::Service(super::no_level_refusal()));
        };
        let account = super::provision(db, Source::Oidc, &profile, level, now).await?;
        let refreshable = match tokens.refresh_token() {
            Some(token) => {
                store_refresh_token(db, &account.id, token.secret(), now).await?;
                true
            }
            None => {
                forget_refresh_token(db, &account.id).await?;
                false
            }
        };
        tracing::info!(account = %account.id, level = level.as_str(), refreshable, "logged in with OpenID Connect");
        Ok(LoggedIn {
            account,
            return_to: text("return_to")?,
            refreshable,
        })
    }

    /// The clock checks of an ID token at `now`, with the allowed skew either way.
    fn checks<'a>(
        &self,
        verifier: IdTokenVerifier<'a, CoreJsonWebKey>,
        now: DateTime<Utc>,
    ) -> IdTokenVerifier<'a, CoreJsonWebKey> {
        let now_minus_skew = now - self.settings.skew;
        let latest_issue = now + self.settings.skew;
        verifier
            .set_time_fn(move || now_minus_skew)
            .set_issue_time_verifier_fn(move |iat| {
                if iat > latest_issue {
                    Err(format!("issued in the future ({iat})"))
                } else {
                    Ok(())
                }
            })
    }

    fn token_refusal(&self, err: &ClaimsVerificationError) -> LoginError {
        let why = match err {
            ClaimsVerificationError::Expired(_) => "its ID token has expired (is a clock wrong?)",
            ClaimsVerificationError::InvalidNonce(_) => {
                "its ID token belongs to another login (wrong nonce)"
            }
            ClaimsVerificationError::InvalidAudience(_) => {
                "its ID token was made for another application (wrong audience)"
            }
            ClaimsVerificationError::InvalidIssuer(_) => "its ID token comes from another issuer",
            ClaimsVerificationError::SignatureVerification(_) => {
                "its ID token is not signed with a key the provider publishes"
            }
            _ => "its ID token does not pass the checks",
        };
        tracing::warn!(cause = %err, "an OpenID Connect ID token was refused");
        LoginError::Refused(format!(
            "The answer from {} was refused: {why}. Start the login again.",
            self.settings.name
        ))
    }

    /// Asks the provider with the account's refresh token whether it still lets the person
    /// in: `Ok(true)` yes (the new refresh token is kept), `Ok(false)` no (refused, or no token).
    ///
    /// # Errors
    /// The provider cannot be reached or fails: nothing can be concluded.
    async fn confirm(&self, db: &Db, account: &AccountId, now: DateTime<Utc>) -> LoginResult<bool> {
        let Some(token) = refresh_token_of(db, account).await? else {
            return Ok(false);
        };
        let metadata = self.discover().await?;
        let client = self.client(&metadata);
        let answer = client
            .exchange_refresh_token(&RefreshToken::new(token))
            .map_err(|err| {
                LoginError::Provider(format!("the provider has no token endpoint: {err}"))
            })?
            .request_async(&self.http)
            .await;
        match answer {
            Ok(tokens) => {
                if let Some(rotated) = tokens.refresh_token() {
                    store_refresh_token(db, account, rotated.secret(), now).await?;
                }
                Ok(true)
            }
            Err(RequestTokenError::ServerResponse(answer)) => {
                tracing::info!(account = %account, error = %answer.error(), "the OpenID Connect provider refused the account's refresh token");
                Ok(false)
            }
            Err(other) => Err(LoginError::Provider(format!(
                "refreshing at the provider failed: {}",
                chain(&other)
            ))),
        }
    }

    /// The provider's end-session URL for a logout (RP-initiated logout), when it is on and the
    /// provider has one; it returns the browser to /login.
    pub async fn logout_url(&self) -> Option<String> {
        if !self.settings.provider_logout {
            return None;
        }
        let metadata = self.discover().await.ok()?;
        let end = metadata
            .additional_metadata()
            .end_session_endpoint
            .clone()?;
        let mut request = LogoutRequest::from(end).set_client_id(self.settings.client_id.clone());
        if let Ok(after) = PostLogoutRedirectUrl::new(self.settings.after_logout.clone()) {
            request = request.set_post_logout_redirect_uri(after);
        }
        Some(request.http_get_url().to_string())
    }
}

/// An error with its causes, for logs (no secrets: URLs and provider error codes only).
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

async fn store_refresh_token(
    db: &Db,
    account: &AccountId,
    token: &str,
    now: DateTime<Utc>,
) -> crate::Result<()> {
    sqlx::query("INSERT INTO oidc_refresh_tokens (account_id, refresh_token, updated_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (account_id) DO UPDATE SET refresh_token = $2, updated_at = $3")
        .bind(account.as_str())
        .bind(token)
        .bind(db_time(now))
        .execute(&db.pool)
        .await?;
    Ok(())
}

async fn forget_refresh_token(db: &Db, account: &AccountId) -> crate::Result<()> {
    sqlx::query("DELETE FROM oidc_refresh_tokens WHERE account_id = $1")
        .bind(account.as_str())
        .execute(&db.pool)
        .await?;
    Ok(())
}

async fn refresh_token_of(db: &Db, account: &AccountId) -> crate::Result<Option<String>> {
    Ok(
        sqlx::query("SELECT refresh_token FROM oidc_refresh_tokens WHERE account_id = $1")
            .bind(account.as_str())
            .fetch_optional(&db.pool)
            .await?
            .map(|row| row.try_get("refresh_token"))
            .transpose()?,
    )
}

/// One OpenID Connect check round: every OIDC account with live sessions that the provider has
/// not confirmed within `--directory-check-minutes` is refreshed at the provider with its
/// refresh token. Confirmed: marked checked. Refused (disabled or deleted at the provider, the
/// grant revoked), or no refresh token kept (the provider gave none; such sessions are capped
/// to the interval anyway): its sessions end. A provider that cannot be reached ends nothing;
/// the account stays due and is asked again next round.
///
/// # Errors
/// Database errors.
pub async fn confirm_due(state: &AppState, now: DateTime<Utc>) -> crate::Result<()> {
    let Some(oidc) = &state.oidc else {
        return Ok(());
    };
    let interval = Duration::minutes(i64::from(state.config.directory_check_minutes));
    let due = super::check_due(&state.db, Source::Oidc, now, interval).await?;
    let issuer = format!("{}|", oidc.settings.issuer.as_str());
    for account in due {
        let confirmed = if account.external_id.starts_with(&issuer) {
            oidc.confirm(&state.db, &account.id, now).await
        } else {
            // From a provider no longer configured: nobody can confirm it.
            Ok(false)
        };
        match confirmed {
            Ok(true) => super::mark_checked(&state.db, &account.id, now).await?,
            Ok(false) => {
                forget_refresh_token(&state.db, &account.id).await?;
                super::end_sessions(&state.db, &account.id, now).await?;
            }
            Err(LoginError::Service(err)) => return Err(err),
            Err(err) => {
                tracing::warn!(account = %account.id, cause = %err, "the OpenID Connect provider could not confirm the account now; asked again next round");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed_after_login() {
        assert_eq!(
            local_path("/conferences?view=archive"),
            Some("/conferences?view=archive")
        );
        assert_eq!(local_path("/"), Some("/"));
        for evil in [
            "https://evil.example/",
            "//evil.example/",
            "/\\evil.example/",
            "evil",
            "/ok\n",
            "/a\\b",
            "",
        ] {
            assert_eq!(local_path(evil), None, "{evil:?}");
        }
    }

    #[test]
    fn groups_come_from_a_claim_or_a_dotted_path() {
        let claims = serde_json::json!({
            "groups": ["a", "b"],
            "realm_access": { "roles": ["video-admins", "offline_access"] },
            "https://example.org/groups": "one",
            "role": 7
        });
        assert_eq!(
            groups_in(claim_at(&claims, "groups")),
            Some(vec!["a".to_owned(), "b".to_owned()])
        );
        assert_eq!(
            groups_in(claim_at(&claims, "realm_access.roles")),
            Some(vec!["video-admins".to_owned(), "offline_access".to_owned()])
        );
        assert_eq!(
            groups_in(claim_at(&claims, "https://example.org/groups")),
            Some(vec!["one".to_owned()])
        );
        assert_eq!(groups_in(claim_at(&claims, "role")), None);
        assert_eq!(groups_in(claim_at(&claims, "missing.path")), None);
    }

    fn settings() -> Settings {
        Settings {
            issuer: IssuerUrl::new("https://id.example.org/realms/x".into())
                .expect("BUG: a valid URL"),
            client_id: ClientId::new("conclave".into()),
            client_secret: ClientSecret::new("s".into()),
            name: "Keycloak".into(),
            scopes: Vec::new(),
            groups_claim: "realm_access.roles".into(),
            levels: LevelGroups::default(),
            login_claim: "preferred_username".into(),
            provider_logout: false,
            skew: Duration::seconds(60),
            redirect: RedirectUrl::new("https://c.example.org/cb".into())
                .expect("BUG: a valid URL"),
            after_logout: "https://c.example.org/login".into(),
        }
    }

    #[test]
    fn the_login_name_falls_back_to_the_email_then_the_subject() {
        let settings = settings();
        let id = serde_json::json!({ "sub": "f00-ba7" });
        let info = serde_json::json!({
            "preferred_username": "Alice Smith (HR)",
            "email": "Alice@Example.org",
            "name": "Alice Smith",
            "zoneinfo": "Europe/Berlin",
            "realm_access": { "roles": ["video-moderators"] }
        });
        let profile = settings
            .profile("f00-ba7", &[&id, &info])
            .expect("a usable login");
        assert_eq!(profile.login, "alice@example.org");
        assert_eq!(
            profile.external_id,
            "https://id.example.org/realms/x|f00-ba7"
        );
        assert_eq!(profile.display_name.as_deref(), Some("Alice Smith"));
        assert_eq!(profile.time_zone.as_deref(), Some("Europe/Berlin"));
        assert_eq!(profile.groups, vec!["video-moderators".to_owned()]);
        let bare = settings.profile("f00-ba7", &[&id]).expect("the subject");
        assert_eq!(bare.login, "f00-ba7");
        assert!(bare.groups.is_empty());
    }
}

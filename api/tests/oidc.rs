//! OpenID Connect login against a real provider (npm `oidc-provider` in `tests/oidc/`), on
//! SQLite and PostgreSQL: the provider's login page is driven over HTTP, Conclave's side with
//! `oneshot`. Needs Node and `npm ci` in tests/oidc (scripts/test.sh does both).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

#[path = "../../tests/src/oidc_provider.rs"]
#[allow(dead_code)]
mod oidc_provider;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use chrono::{Duration, Utc};
use oidc_provider::{CLIENT_ID, CLIENT_SECRET, OidcProvider, TestUser};
use serde_json::Value;
use support::{Backend, Reply, TestApp};

/// Where the tests pretend Conclave is reached (the redirect URI registered at the provider).
const PUBLIC: &str = "http://conclave.test";

const ALICE: TestUser = TestUser {
    login: "alice",
    password: "alice-password",
    name: "Alice Example",
    groups: &["video-admins", "staff"],
};
const BOB: TestUser = TestUser {
    login: "bob",
    password: "bob-password",
    name: "Bob Example",
    groups: &["staff"],
};

macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {
        $(
            mod $scenario {
                #[tokio::test]
                async fn on_sqlite() {
                    super::$scenario(super::support::Backend::Sqlite).await;
                }

                #[tokio::test]
                async fn on_postgres() {
                    super::$scenario(super::support::Backend::Postgres).await;
                }
            }
        )*
    };
}

on_both_backends!(
    login_lands_as_the_mapped_level_and_follows_the_providers_groups,
    a_user_disabled_at_the_provider_loses_sessions_at_the_check,
);

/// An app whose OIDC provider is `provider`, on a clock at the real time (the provider signs
/// with the real time).
async fn app_with(
    backend: Backend,
    provider: &OidcProvider,
    configure: impl FnOnce(&mut api::Config),
) -> (TestApp, tempfile::TempDir) {
    let secrets = tempfile::tempdir().unwrap();
    let secret_file = secrets.path().join("client-secret");
    std::fs::write(&secret_file, format!("{CLIENT_SECRET}\n")).unwrap();
    let issuer = provider.issuer.clone();
    let app = TestApp::with(backend, move |config| {
        config.public_url = Some(PUBLIC.into());
        config.oidc.issuer = Some(issuer);
        config.oidc.client_id = Some(CLIENT_ID.into());
        config.oidc.client_secret_file = Some(secret_file);
        config.oidc.name = "Test provider".into();
        config.oidc.scopes = "openid profile email groups".into();
        config.oidc.admin_groups = vec!["video-admins".into()];
        config.oidc.moderator_plus_groups = vec!["video-recorders".into()];
        config.oidc.moderator_groups = vec!["video-moderators".into()];
        configure(config);
    })
    .await;
    app.clock.set(Utc::now());
    (app, secrets)
}

fn cookie_from(reply: &Reply, name: &str) -> Option<String> {
    reply
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|cookie| {
            let (pair, _) = cookie.split_once(';').unwrap_or((cookie, ""));
            let (key, value) = pair.split_once('=')?;
            (key == name && !value.is_empty()).then(|| value.to_owned())
        })
}

fn location(reply: &Reply) -> String {
    reply
        .headers
        .get(header::LOCATION)
        .unwrap_or_else(|| panic!("no Location in {:?}: {}", reply.status, reply.text))
        .to_str()
        .unwrap()
        .to_owned()
}

/// The person's browser: one cookie jar at the provider, the login cookie at Conclave.
struct Browser {
    http: reqwest::Client,
    issuer: String,
    login_cookie: Option<String>,
}

impl Browser {
    fn new(provider: &OidcProvider) -> Self {
        Self {
            http: reqwest::Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            issuer: provider.issuer.clone(),
            login_cookie: None,
        }
    }

    /// `GET /auth/oidc/start`: the provider's URL (the login cookie is kept).
    async fn start(&mut self, app: &TestApp, return_to: &str) -> Reply {
        let path = format!("/api/v1/auth/oidc/start?returnTo={}", urlencode(return_to));
        let reply = app
            .send(Request::get(path).body(Body::empty()).unwrap())
            .await;
        if let Some(cookie) = cookie_from(&reply, "conclave_oidc") {
            self.login_cookie = Some(cookie);
        }
        reply
    }

    /// Logs in at the provider's page from its authorization URL; returns the callback URL it
    /// sends the browser to.
    async fn at_provider(&self, mut url: String, user: &TestUser) -> String {
        for _ in 0..12 {
            if url.starts_with(PUBLIC) {
                return url;
            }
            if url.starts_with('/') {
                url = format!("{}{url}", self.issuer);
            }
            let answer = self.http.get(&url).send().await.unwrap();
            if answer.status().is_redirection() {
                url = answer.headers()[header::LOCATION]
                    .to_str()
                    .unwrap()
                    .to_owned();
                continue;
            }
            let page = answer.text().await.unwrap();
            let action = page
                .split("action=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or_else(|| panic!("no login form at {url}: {page}"));
            let answer = self
                .http
                .post(format!("{}{action}", self.issuer))
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(format!(
                    "login={}&password={}",
                    urlencode(user.login),
                    urlencode(user.password)
                ))
                .send()
                .await
                .unwrap();
            assert!(
                answer.status().is_redirection(),
                "the provider did not accept the login of {}: {}",
                user.login,
                answer.text().await.unwrap()
            );
            url = answer.headers()[header::LOCATION]
                .to_str()
                .unwrap()
                .to_owned();
        }
        panic!("the provider never sent the browser back to Conclave (last: {url})");
    }

    /// Conclave's callback with the login cookie (when this browser has it).
    async fn callback(&self, app: &TestApp, url: &str) -> Reply {
        let path = url.strip_prefix(PUBLIC).expect("a Conclave URL");
        let mut request = Request::get(path);
        if let Some(cookie) = &self.login_cookie {
            request = request.header(header::COOKIE, format!("conclave_oidc={cookie}"));
        }
        app.send(request.body(Body::empty()).unwrap()).await
    }

    /// The whole login; the callback's answer.
    async fn login(&mut self, app: &TestApp, user: &TestUser, return_to: &str) -> Reply {
        let started = self.start(app, return_to).await;
        assert_eq!(started.status, StatusCode::SEE_OTHER, "{}", started.text);
        let to_provider = location(&started);
        assert!(
            to_provider.starts_with(&self.issuer),
            "start should lead to the provider, not {to_provider}"
        );
        let back = self.at_provider(to_provider, user).await;
        self.callback(app, &back).await
    }
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn urldecode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                out.push(u8::from_str_radix(&text[i + 1..i + 3], 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

/// The session token of a successful callback, after checking where it leads.
fn logged_in(reply: &Reply, return_to: &str) -> String {
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text);
    assert_eq!(
        location(reply),
        return_to,
        "the login should land where it started"
    );
    cookie_from(reply, "conclave_session").expect("the session cookie")
}

/// The sentence of a refused callback (it leads to the login page, without a session).
fn refused(reply: &Reply) -> String {
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text);
    let to = location(reply);
    assert!(
        cookie_from(reply, "conclave_session").is_none(),
        "a refused login must not set a session"
    );
    let error = to
        .strip_prefix("/login?error=")
        .unwrap_or_else(|| panic!("a refusal should lead to /login?error=…, not {to}"));
    urldecode(error)
}

async fn me(app: &TestApp, session: &str) -> Value {
    app.get("/api/v1/me", session)
        .await
        .expect(StatusCode::OK)
        .body
}

async fn login_lands_as_the_mapped_level_and_follows_the_providers_groups(backend: Backend) {
    let provider = OidcProvider::start(PUBLIC, &[ALICE, BOB]);
    let (app, _secrets) = app_with(backend, &provider, |_| {}).await;
    let mut browser = Browser::new(&provider);
    let session = logged_in(
        &browser
            .login(&app, &ALICE, "/conferences?view=archive")
            .await,
        "/conferences?view=archive",
    );
    let account = me(&app, &session).await;
    assert_eq!(account["login"], "alice");
    assert_eq!(account["level"], "admin");
    assert_eq!(account["source"], "oidc");
    assert_eq!(account["displayName"], "Alice Example");
    assert_eq!(account["email"], "alice@example.org");
    assert_eq!(account["timeZone"], "Europe/Berlin");

    // The level follows the provider's groups at the next login; the account stays the same.
    provider.set_groups("alice", &["video-moderators"]);
    let again = logged_in(&browser.login(&app, &ALICE, "/").await, "/");
    let account_again = me(&app, &again).await;
    assert_eq!(account_again["level"], "moderator");
    assert_eq!(account_again["id"], account["id"]);

    // In no mapped group: the default level (audience here).
    let bob = logged_in(&Browser::new(&provider).login(&app, &BOB, "/").await, "/");
    assert_eq!(me(&app, &bob).await["level"], "audience");

    // Local accounts keep working beside it.
    app.admin().await;
}

async fn a_user_disabled_at_the_provider_loses_sessions_at_the_check(backend: Backend) {
    let provider = OidcProvider::start(PUBLIC, &[ALICE, BOB]);
    let (app, _secrets) = app_with(backend, &provider, |config| {
        config.directory_check_minutes = 15;
    })
    .await;
    let alice = logged_in(&Browser::new(&provider).login(&app, &ALICE, "/").await, "/");
    let bob = logged_in(&Browser::new(&provider).login(&app, &BOB, "/").await, "/");

    // Within the interval nobody is due; after it, the provider confirms both by refresh.
    app.clock.advance(Duration::minutes(16));
    api::directory::oidc::confirm_due(&app.state, app.now())
        .await
        .unwrap();
    me(&app, &alice).await;
    me(&app, &bob).await;

    // Bob is disabled at the provider: at the next round his refresh is refused and his
    // sessions end; Alice's go on.
    provider.set_disabled("bob", true);
    app.clock.advance(Duration::minutes(5));
    api::directory::oidc::confirm_due(&app.state, app.now())
        .await
        .unwrap();
    me(&app, &bob).await;
    app.clock.advance(Duration::minutes(11));
    api::directory::oidc::confirm_due(&app.state, app.now())
        .await
        .unwrap();
    app.get("/api/v1/me", &bob)
        .await
        .expect(StatusCode::UNAUTHORIZED);
    me(&app, &alice).await;
}

#[tokio::test]
async fn a_tampered_replayed_or_foreign_state_is_refused() {
    let provider = OidcProvider::start(PUBLIC, &[ALICE]);
    let (app, _secrets) = app_with(Backend::Sqlite, &provider, |_| {}).await;
    let mut browser = Browser::new(&provider);
    let started = browser.start(&app, "/").await;
    let back = browser.at_provider(location(&started), &ALICE).await;

    let tampered = back.replace("state=", "state=x");
    let why = refused(&browser.callback(&app, &tampered).await);
    assert!(why.contains("unknown or was already used"), "{why}");

    // The real answer still works once, and only once.
    logged_in(&browser.callback(&app, &back).await, "/");
    let why = refused(&browser.callback(&app, &back).await);
    assert!(why.contains("unknown or was already used"), "{why}");

    // An answer carried to another browser (login CSRF) is refused.
    let started = browser.start(&app, "/").await;
    let back = browser.at_provider(location(&started), &ALICE).await;
    let other = Browser::new(&provider);
    let why = refused(&other.callback(&app, &back).await);
    assert!(why.contains("another browser"), "{why}");

    // A login state lapses after ten minutes.
    let started = browser.start(&app, "/").await;
    let back = browser.at_provider(location(&started), &ALICE).await;
    app.clock.advance(Duration::minutes(11));
    let why = refused(&browser.callback(&app, &back).await);
    assert!(why.contains("took too long"), "{why}");
}

#[tokio::test]
async fn id_tokens_that_fail_a_check_are_refused() {
    let provider = OidcProvider::start(PUBLIC, &[ALICE]);
    let (app, _secrets) = app_with(Backend::Sqlite, &provider, |_| {}).await;
    for (how, expected) in [
        ("nonce", "wrong nonce"),
        ("expired", "expired"),
        ("audience", "wrong audience"),
        ("unknownKey", "not signed with a key the provider publishes"),
    ] {
        provider.tamper_id_tokens(Some(how));
        let why = refused(&Browser::new(&provider).login(&app, &ALICE, "/").await);
        assert!(why.contains(expected), "{how}: {why}");
    }
    provider.tamper_id_tokens(None);
    logged_in(&Browser::new(&provider).login(&app, &ALICE, "/").await, "/");
    assert_eq!(
        app.rows("sessions").await,
        1,
        "only the good token made a session"
    );
}

#[tokio::test]
async fn a_rotated_signing_key_is_fetched_and_login_goes_on() {
    let provider = OidcProvider::start(PUBLIC, &[ALICE]);
    let (app, _secrets) = app_with(Backend::Sqlite, &provider, |_| {}).await;
    logged_in(&Browser::new(&provider).login(&app, &ALICE, "/").await, "/");
    // Conclave knows the first key only; the next ID token names the new one.
    provider.rotate_key();
    let session = logged_in(&Browser::new(&provider).login(&app, &ALICE, "/").await, "/");
    assert_eq!(me(&app, &session).await["level"], "admin");
}

#[tokio::test]
async fn people_in_no_mapped_group_are_refused_when_the_default_is_none() {
    let provider = OidcProvider::start(PUBLIC, &[ALICE, BOB]);
    let (app, _secrets) = app_with(Backend::Sqlite, &provider, |config| {
        config.oidc.default_level = api::directory::oidc::DefaultLevel(None);
    })
    .await;
    let why = refused(&Browser::new(&provider).login(&app, &BOB, "/").await);
    assert!(why.contains("none of the groups"), "{why}");
    logged_in(&Browser::new(&provider).login(&app, &ALICE, "/").await, "/");
}

#[tokio::test]
async fn return_to_must_be_a_local_path() {
    let provider = OidcProvider::start(PUBLIC, &[ALICE]);
    let (app, _secrets) = app_with(Backend::Sqlite, &provider, |_| {}).await;
    for evil in [
        "https://evil.example/",
        "//evil.example/x",
        "/\\evil.example",
    ] {
        let reply = Browser::new(&provider).start(&app, evil).await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER);
        let to = location(&reply);
        assert!(to.starts_with("/login?error="), "{evil} led to {to}");
        assert!(!to.contains("evil.example"), "{to}");
        assert_eq!(app.rows("oidc_login_states").await, 0);
    }
}

#[tokio::test]
async fn the_login_page_learns_the_methods_and_logout_can_end_the_providers_session() {
    let plain = TestApp::new(Backend::Sqlite).await;
    let methods = plain
        .call(Method::GET, "/api/v1/auth/methods", None, None)
        .await
        .expect(StatusCode::OK)
        .body;
    assert_eq!(methods["password"], "everyone");
    assert_eq!(methods["oidc"], Value::Null);
    plain
        .call(Method::GET, "/api/v1/auth/oidc/start", None, None)
        .await
        .expect(StatusCode::NOT_FOUND);

    let provider = OidcProvider::start(PUBLIC, &[ALICE]);
    let (app, _secrets) = app_with(Backend::Sqlite, &provider, |config| {
        config.oidc.provider_logout = true;
    })
    .await;
    let methods = app
        .call(Method::GET, "/api/v1/auth/methods", None, None)
        .await
        .expect(StatusCode::OK)
        .body;
    assert_eq!(methods["oidc"]["name"], "Test provider");
    assert_eq!(methods["oidc"]["startUrl"], "/api/v1/auth/oidc/start");

    let session = logged_in(&Browser::new(&provider).login(&app, &ALICE, "/").await, "/");
    let out = app
        .call(Method::POST, "/api/v1/auth/logout", Some(&session), None)
        .await
        .expect(StatusCode::OK);
    let url = out.body["providerLogoutUrl"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{}/session/end?", provider.issuer)),
        "{url}"
    );
    assert!(url.contains("client_id=conclave"), "{url}");
    assert!(
        url.contains("post_logout_redirect_uri=http%3A%2F%2Fconclave.test%2Flogin"),
        "{url}"
    );
    app.get("/api/v1/me", &session)
        .await
        .expect(StatusCode::UNAUTHORIZED);
    // The provider knows the URL: it answers its logout page, not an error.
    let page = reqwest::get(url).await.unwrap();
    assert_eq!(page.status(), 200);

    // A local account's logout stays as it was.
    let admin = app.admin().await;
    app.call(Method::POST, "/api/v1/auth/logout", Some(&admin), None)
        .await
        .expect(StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn a_provider_down_at_start_leaves_conclave_up_with_a_clear_message() {
    // Nothing listens on port 9 of loopback.
    let secrets = tempfile::tempdir().unwrap();
    let secret_file = secrets.path().join("client-secret");
    std::fs::write(&secret_file, CLIENT_SECRET).unwrap();
    let app = TestApp::with(Backend::Sqlite, |config| {
        config.public_url = Some(PUBLIC.into());
        config.oidc.issuer = Some("http://127.0.0.1:9".into());
        config.oidc.client_id = Some(CLIENT_ID.into());
        config.oidc.client_secret_file = Some(secret_file);
        config.oidc.name = "Keycloak".into();
    })
    .await;
    let reply = app
        .call(
            Method::GET,
            "/api/v1/auth/oidc/start?returnTo=/",
            None,
            None,
        )
        .await;
    let why = refused(&reply);
    assert!(
        why.contains("Logging in with Keycloak does not work at the moment"),
        "{why}"
    );
    app.admin().await;
}

#[tokio::test]
async fn without_a_refresh_token_the_session_lasts_only_the_check_interval() {
    let provider = OidcProvider::start_without_refresh_tokens(PUBLIC, &[ALICE]);
    let (app, _secrets) = app_with(Backend::Sqlite, &provider, |config| {
        config.directory_check_minutes = 15;
    })
    .await;
    let reply = Browser::new(&provider).login(&app, &ALICE, "/").await;
    let session = logged_in(&reply, "/");
    let cookie = reply.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(
        reply
            .headers
            .get_all(header::SET_COOKIE)
            .iter()
            .any(|c| c.to_str().unwrap().contains("Max-Age=900")),
        "the cookie lasts the check interval: {cookie}"
    );
    app.clock.advance(Duration::minutes(14));
    me(&app, &session).await;
    app.clock.advance(Duration::minutes(2));
    app.get("/api/v1/me", &session)
        .await
        .expect(StatusCode::UNAUTHORIZED);
}

//! Test support: the API's `app()` on a fresh SQLite file or a fresh PostgreSQL database,
//! driven with `oneshot`, on a manual clock.
//!
//! PostgreSQL comes from `CONCLAVE_TEST_POSTGRES` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); each test creates its own database and
//! drops it afterwards. A missing server fails the test loudly.

#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;

use api::clock::ManualClock;
use api::{AppState, Config};
use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use chrono::{DateTime, Duration, Utc};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

pub mod slapd;

/// The first administrator's password in every test.
pub const ADMIN_PASSWORD: &str = "admin-password-1";
/// Where every test's clock starts.
pub const START: &str = "2026-06-01T08:00:00Z";

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A running API on a fresh database.
pub struct TestApp {
    pub state: AppState,
    pub app: Router,
    pub clock: ManualClock,
    pub config: Config,
    pub backend: Backend,
    dir: tempfile::TempDir,
    pg_database: Option<String>,
    kube: Option<kube::Client>,
}

/// A response: status, headers and the JSON (or `Value::String` for other bodies).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Reply {
    /// The error code of an error reply.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    /// Asserts the status, printing the body otherwise.
    pub fn expect(self, status: StatusCode) -> Self {
        assert_eq!(self.status, status, "unexpected answer: {}", self.text);
        self
    }
}

fn postgres_admin_url() -> String {
    std::env::var("CONCLAVE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

async fn create_pg_database() -> (String, String) {
    use sqlx::ConnectOptions;
    sqlx::any::install_default_drivers();
    let admin = postgres_admin_url();
    let name = format!("conclave_t_{}", uuid::Uuid::new_v4().simple());
    let options: sqlx::any::AnyConnectOptions = admin.parse().unwrap();
    let mut conn = options.connect().await.unwrap_or_else(|err| {
        panic!("PostgreSQL is required for these tests and is not reachable at {admin}: {err}; the test command starts it")
    });
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    let base = admin
        .rsplit_once('/')
        .map(|(base, _)| base.to_owned())
        .unwrap();
    (format!("{base}/{name}"), name)
}

fn drop_pg_database(name: String) {
    // Drop runs outside any async context: use a small runtime of our own on another thread.
    let _ = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            use sqlx::ConnectOptions;
            let options: sqlx::any::AnyConnectOptions = postgres_admin_url().parse().unwrap();
            if let Ok(mut conn) = options.connect().await {
                let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut conn)
                .await;
            }
        });
    })
    .join();
}

impl TestApp {
    /// A fresh app on `backend`.
    pub async fn new(backend: Backend) -> TestApp {
        Self::with(backend, |_| {}).await
    }

    /// A fresh app on SQLite whose conferences are Conference resources behind `client`.
    pub async fn in_cluster(client: kube::Client) -> TestApp {
        Self::with_client(Backend::Sqlite, Some(client), |config| {
            config.conference_store = api::config::ConferenceStoreKind::Kubernetes;
        })
        .await
    }

    /// [`TestApp::in_cluster`] with changes to the default configuration.
    pub async fn in_cluster_with(
        client: kube::Client,
        configure: impl FnOnce(&mut Config),
    ) -> TestApp {
        Self::with_client(Backend::Sqlite, Some(client), |config| {
            config.conference_store = api::config::ConferenceStoreKind::Kubernetes;
            configure(config);
        })
        .await
    }

    /// A fresh app on `backend` with changes to the default configuration.
    pub async fn with(backend: Backend, configure: impl FnOnce(&mut Config)) -> TestApp {
        Self::with_client(backend, None, configure).await
    }

    async fn with_client(
        backend: Backend,
        kube: Option<kube::Client>,
        configure: impl FnOnce(&mut Config),
    ) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let (url, pg_database) = match backend {
            Backend::Sqlite => (
                format!(
                    "sqlite://{}?mode=rwc",
                    dir.path().join("conclave.db").display()
                ),
                None,
            ),
            Backend::Postgres => {
                let (url, name) = create_pg_database().await;
                (url, Some(name))
            }
        };
        let mut config = Config::with_data_dir(dir.path());
        config.database_url = Some(url);
        let password_file = dir.path().join("admin-password");
        std::fs::write(&password_file, ADMIN_PASSWORD).unwrap();
        config.admin_password_file = Some(password_file);
        configure(&mut config);
        Self::start(config, backend, dir, pg_database, kube).await
    }

    async fn start(
        config: Config,
        backend: Backend,
        dir: tempfile::TempDir,
        pg_database: Option<String>,
        kube: Option<kube::Client>,
    ) -> TestApp {
        let clock = ManualClock::new(START.parse().unwrap());
        let state = api::build_with_client(
            config.clone(),
            Arc::new(clock.clone()),
            prometheus::Registry::new(),
            kube.clone(),
        )
        .await
        .unwrap();
        let app = api::http::app(state.clone());
        TestApp {
            state,
            app,
            clock,
            config,
            backend,
            dir,
            pg_database,
            kube,
        }
    }

    /// The same data folder and database, as after a process restart.
    pub async fn restart(mut self) -> TestApp {
        let now = self.clock.now_utc();
        self.state.db.pool.close().await;
        let config = self.config.clone();
        let backend = self.backend;
        let pg = self.pg_database.take();
        let kube = self.kube.take();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        drop(self);
        let app = Self::start(config, backend, dir, pg, kube).await;
        app.clock.set(now);
        app
    }

    /// The same data folder and database restarted with a changed configuration.
    pub async fn reconfigure(mut self, configure: impl FnOnce(&mut Config)) -> TestApp {
        configure(&mut self.config);
        self.restart().await
    }

    /// Serves the app on a loopback port (with the peer address, as `conclave` serves it) for
    /// tests that need real connections; returns the base URL. The server lives as long as
    /// the test's runtime.
    pub async fn serve(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let app = self.app.clone();
        tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .await
        });
        format!("http://{address}")
    }

    /// A second API replica on the same database and configuration (its own state: its own
    /// mail worker identity, pools and caches), as a second pod of `conclave api` would be.
    pub async fn replica(&self) -> AppState {
        api::build_with_client(
            self.config.clone(),
            Arc::new(self.clock.clone()),
            prometheus::Registry::new(),
            self.kube.clone(),
        )
        .await
        .unwrap()
    }

    /// The data folder.
    pub fn data_dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now_utc()
    }

    /// Sends a request with an optional bearer token and JSON body; one without a body carries
    /// `X-Conclave-Request: 1`, as the portal sends it (the API refuses a state-changing
    /// request with neither).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut request = Request::builder().method(method).uri(path);
        if body.is_none() {
            request = request.header("x-conclave-request", "1");
        }
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = match body {
            Some(body) => request
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(serde_json::to_vec(&body).unwrap()))
                .unwrap(),
            None => request.body(Body::empty()).unwrap(),
        };
        self.send(request).await
    }

    /// Sends a prepared request.
    pub async fn send(&self, request: Request<Body>) -> Reply {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::String(text.clone()));
        Reply {
            status,
            headers,
            body,
            text,
        }
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        self.call(Method::POST, path, token, Some(body)).await
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Reply {
        self.call(Method::PATCH, path, Some(token), Some(body))
            .await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Reply {
        self.call(Method::DELETE, path, Some(token), None).await
    }

    /// Logs in and returns the session token.
    pub async fn login(&self, login: &str, password: &str) -> String {
        let reply = self
            .post(
                "/api/v1/auth/login",
                None,
                json!({"login": login, "password": password}),
            )
            .await;
        let reply = reply.expect(StatusCode::OK);
        reply.body["sessionToken"].as_str().unwrap().to_owned()
    }

    pub async fn admin(&self) -> String {
        self.login("admin", ADMIN_PASSWORD).await
    }

    /// Creates an account of `level` and returns its ID and a session token.
    pub async fn user(&self, login: &str, level: &str) -> (String, String) {
        let admin = self.admin().await;
        let reply = self
            .post(
                "/api/v1/users",
                Some(&admin),
                json!({"login": login, "displayName": login.to_uppercase(), "email": format!("{login}@example.org"),
                       "level": level, "password": "password-of-user", "timeZone": "Europe/Berlin"}),
            )
            .await
            .expect(StatusCode::CREATED);
        let id = reply.body["id"].as_str().unwrap().to_owned();
        (id, self.login(login, "password-of-user").await)
    }

    /// Schedules a conference starting `in_minutes` from now for `minutes`, with extra fields.
    pub async fn schedule(
        &self,
        token: &str,
        in_minutes: i64,
        minutes: i64,
        extra: Value,
    ) -> Value {
        let start = self.now() + Duration::minutes(in_minutes);
        let mut body = json!({"topic": "Planning", "start": start.to_rfc3339(), "durationMinutes": minutes, "timeZone": "Europe/Berlin"});
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                body.insert(k.clone(), v.clone());
            }
        }
        self.post("/api/v1/conferences", Some(token), body)
            .await
            .expect(StatusCode::CREATED)
            .body
    }

    /// Makes every `operation` (`INSERT` or `DELETE`) on `table` fail from now on, as a
    /// database that refuses one step of a request does.
    pub async fn refuse(&self, operation: &str, table: &str) {
        let name = format!("refuse_{}_{table}", operation.to_lowercase());
        let sql = match self.backend {
            Backend::Sqlite => format!(
                "CREATE TRIGGER {name} BEFORE {operation} ON {table} BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
            ),
            Backend::Postgres => format!(
                "CREATE OR REPLACE FUNCTION refused_by_the_test() RETURNS trigger LANGUAGE plpgsql AS $$ \
                 BEGIN RAISE EXCEPTION 'refused by the test'; END $$; \
                 CREATE TRIGGER {name} BEFORE {operation} ON {table} FOR EACH ROW EXECUTE FUNCTION refused_by_the_test()"
            ),
        };
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&self.state.db.pool)
            .await
            .unwrap();
    }

    /// Lifts [`TestApp::refuse`].
    pub async fn allow(&self, operation: &str, table: &str) {
        let name = format!("refuse_{}_{table}", operation.to_lowercase());
        let sql = match self.backend {
            Backend::Sqlite => format!("DROP TRIGGER {name}"),
            Backend::Postgres => format!("DROP TRIGGER {name} ON {table}"),
        };
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&self.state.db.pool)
            .await
            .unwrap();
    }

    /// The number of rows in `table`.
    pub async fn rows(&self, table: &str) -> i64 {
        use sqlx::Row;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) AS n FROM {table}"
        )))
        .fetch_one(&self.state.db.pool)
        .await
        .unwrap()
        .try_get("n")
        .unwrap()
    }

    /// Runs one lifecycle pass (what the background loop does).
    pub async fn tick(&self) {
        api::lifecycle::tick(&self.state).await.unwrap();
    }

    /// A service token as an SFU pod would send.
    pub fn service_token(&self) -> String {
        self.service_token_of("sfu:test")
    }

    /// A service token signed as `sub` (`sfu:<pod>` for an SFU pod).
    pub fn service_token_of(&self, sub: &str) -> String {
        let now = self.now().timestamp();
        self.state
            .tokens
            .sign_service(&proto::ServiceClaims {
                sub: sub.into(),
                aud: proto::token::SERVICE_AUDIENCE.into(),
                iat: now,
                exp: now + 60,
            })
            .unwrap()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(name) = self.pg_database.take() {
            drop_pg_database(name);
        }
    }
}

trait NowUtc {
    fn now_utc(&self) -> DateTime<Utc>;
}

impl NowUtc for ManualClock {
    fn now_utc(&self) -> DateTime<Utc> {
        api::clock::Clock::now(self)
    }
}

/// Runs an `async fn(TestApp)` scenario on SQLite and on PostgreSQL, as two tests.
#[macro_export]
macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {
        $(
            mod $scenario {
                #[tokio::test]
                async fn on_sqlite() {
                    super::$scenario(super::support::TestApp::new(super::support::Backend::Sqlite).await).await;
                }

                #[tokio::test]
                async fn on_postgres() {
                    super::$scenario(super::support::TestApp::new(super::support::Backend::Postgres).await).await;
                }
            }
        )*
    };
}

//! The conference service: accounts and sessions, scheduling, the conference log and archive,
//! attendance, join tokens, and the JSON API under `/api/v1` described by an OpenAPI document.
//!
//! It runs as `conclave api` (PostgreSQL, N stateless replicas) and inside `conclave standalone`
//! (SQLite, one embedded SFU).
//!
//! # Layout
//! - [`config`]: the clap configuration; [`state`]: the shared state built from it.
//! - [`db`]: the sqlx `AnyPool` and migrations; [`clock`]: time as an input.
//! - [`account`], [`session`], [`throttle`], [`settings`], [`validate`]: accounts and login.
//! - [`conference`]: definitions and the rules for valid ones; [`store`]: the
//!   `ConferenceStore` seam and its SQL backend; [`store_kube`]: its Kubernetes backend; [`archive`]: past occurrences and attendance.
//! - [`lifecycle`]: the IO shell around the pure `placement` core; [`relocation`]: joins that
//!   wait for a conference to move off a lost SFU pod; [`ics`]: calendar events;
//!   [`mail`]: invitations, the durable outbox and its delivery worker; [`phone`]: phone
//!   callers' names and identities, and the dial-in facts people are told.
//! - [`presentation`]: presentation uploads converted to page images and served to the
//!   meeting's participants, on the SFU's tickets.
//! - [`relay`]: the signaling websockets of SFU pods relayed through the public address.
//! - [`http`]: routes, extractors, OpenAPI; [`error`]: errors and their HTTP mapping.

/// `format!` for SQL assembled only from constants of this crate (column lists, placeholders),
/// never from input: values always go through `.bind`.
macro_rules! sql {
    ($($arg:tt)*) => {
        sqlx::AssertSqlSafe(format!($($arg)*))
    };
}

pub mod account;
pub mod address;
pub mod archive;
pub mod clock;
pub mod conference;
pub mod config;
pub mod db;
pub mod directory;
pub mod error;
pub mod http;
pub mod ics;
pub mod lifecycle;
pub mod mail;
pub mod metrics;
pub mod phone;
pub mod presentation;
pub mod recording;
pub mod relay;
pub mod relocation;
pub mod revocation;
pub mod session;
pub mod settings;
pub mod state;
pub mod store;
pub mod store_kube;
pub mod throttle;
pub mod validate;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

pub use config::Config;
pub use error::{Error, Result};
pub use state::AppState;

use crate::account::{NewAccount, password};
use crate::clock::Clock;
use crate::config::ConferenceStoreKind;
use crate::db::Db;
use crate::state::Inner;
use crate::store::{ConferenceStore, SqlConferenceStore};
use crate::store_kube::KubeConferenceStore;

/// Builds the state from the configuration: connects and migrates the database, loads or
/// creates the join-token key, creates the first administrator.
///
/// # Errors
/// When the database is unreachable, a key file is unreadable, or a setting is invalid.
pub async fn build(config: Config, clock: Arc<dyn Clock>) -> Result<AppState> {
    build_with_registry(config, clock, prometheus::Registry::new()).await
}

/// Like [`build`], registering the API's metrics in `registry`.
///
/// # Errors
/// As [`build`].
pub async fn build_with_registry(
    config: Config,
    clock: Arc<dyn Clock>,
    registry: prometheus::Registry,
) -> Result<AppState> {
    build_with_client(config, clock, registry, None).await
}

/// Like [`build_with_registry`]; with `--conference-store kubernetes`, talks to the cluster
/// through `client` (default: the in-cluster or kubeconfig client, `Client::try_default`).
///
/// # Errors
/// As [`build`], and when no Kubernetes client can be configured.
pub async fn build_with_client(
    config: Config,
    clock: Arc<dyn Clock>,
    registry: prometheus::Registry,
    client: Option<kube::Client>,
) -> Result<AppState> {
    std::fs::create_dir_all(&config.data_dir).map_err(|err| {
        Error::Internal(format!(
            "cannot create the data folder {}: {err}",
            config.data_dir.display()
        ))
    })?;
    let db = Db::connect(&config.database_url()).await?;
    let tokens = load_token_key(&config)?;
    let files = config.files()?;
    let udp_ports = config.sfu_udp_ports()?;
    let fleet = vec![placement::Pod {
        name: "embedded".to_owned(),
        endpoint: config.sfu_endpoint(),
        ready: true,
        keeps: true,
        capacity: config.sfu_capacity,
        udp_ports,
        // The embedded SFU is the only one binding these ports.
        port_scope: "embedded".to_owned(),
    }];
    let store: Arc<dyn ConferenceStore> = match config.conference_store {
        ConferenceStoreKind::Sql => Arc::new(SqlConferenceStore::new(db.clone())),
        ConferenceStoreKind::Kubernetes => {
            let client = match client {
                Some(client) => client,
                None => kube::Client::try_default().await.map_err(|err| {
                    Error::Internal(format!("cannot configure a Kubernetes client: {err}"))
                })?,
            };
            Arc::new(KubeConferenceStore::new(
                client,
                &config.kube_namespace,
                db.clone(),
            ))
        }
    };
    let metrics = metrics::Metrics::with_registry(registry);
    let relays = relay::Relays::new(config.rtc_proxy_max_sessions, &metrics);
    let state = AppState::new(Inner {
        sizing: placement::Sizing {
            ports_per_participant: config.ports_per_participant.max(1),
        },
        policy: config.lifecycle_policy(),
        store,
        metrics,
        relays,
        lifecycle_wake: tokio::sync::Notify::new(),
        mail: mail::Delivery::from_config(&config)?,
        mail_wake: tokio::sync::Notify::new(),
        password_checks: account::password::Checks::new(config.max_password_checks),
        trusted_proxies: config.trusted_proxies(),
        replica: uuid::Uuid::new_v4().to_string(),
        relocations: relocation::Relocations::default(),
        presentations: config.presentations.converter(),
        ldap: directory::ldap::Directory::from_config(&config.ldap)?.map(Arc::new),
        oidc: directory::oidc::Oidc::from_config(&config)?,
        files,
        recording_wake: tokio::sync::Notify::new(),
        fleet,
        tokens,
        clock,
        db,
        config,
    });
    ensure_admin(&state).await?;
    Ok(state)
}

/// The join-token secret: from CONCLAVE_JOIN_TOKEN_SECRET, a file, or generated once into the
/// data folder (standalone mode hands the same secret to the embedded SFU).
///
/// # Errors
/// When the secret file cannot be read or written.
pub fn token_secret(config: &Config) -> Result<String> {
    let secret = if let Ok(secret) = std::env::var(config::JOIN_TOKEN_SECRET_ENV) {
        secret.into_bytes()
    } else if let Some(path) = &config.join_token_secret_file {
        read_secret(path)?
    } else {
        std::fs::create_dir_all(&config.data_dir).map_err(|err| {
            Error::Internal(format!(
                "cannot create the data folder {}: {err}",
                config.data_dir.display()
            ))
        })?;
        let path = config.data_dir.join("join-token.key");
        if !path.exists() {
            write_private(&path, &session::random_secret(48))?;
        }
        read_secret(&path)?
    };
    String::from_utf8(secret)
        .map_err(|_| Error::invalid("joinTokenSecret", "the secret must be text"))
}

fn load_token_key(config: &Config) -> Result<proto::TokenKey> {
    proto::TokenKey::new(token_secret(config)?.as_bytes())
        .map_err(|err| Error::invalid("joinTokenSecret", err.to_string()))
}

/// Writes a new file that only this user can read (0600), e.g. a generated secret.
fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .map_err(|err| Error::Internal(format!("cannot write {}: {err}", path.display())))?;
    file.write_all(contents.as_bytes())
        .map_err(|err| Error::Internal(format!("cannot write {}: {err}", path.display())))
}

fn read_secret(path: &Path) -> Result<Vec<u8>> {
    let text = std::fs::read_to_string(path).map_err(|err| {
        Error::Internal(format!(
            "cannot read the secret file {}: {err}",
            path.display()
        ))
    })?;
    Ok(text.trim().as_bytes().to_vec())
}

/// Creates the `admin` account on first start.
async fn ensure_admin(state: &AppState) -> Result<()> {
    if account::any_exists(&state.db).await? {
        return Ok(());
    }
    let (password, generated) = match std::env::var(config::ADMIN_PASSWORD_ENV) {
        Ok(password) => (password, false),
        Err(_) => match &state.config.admin_password_file {
            Some(path) => (
                String::from_utf8_lossy(&read_secret(path)?).into_owned(),
                false,
            ),
            None => (session::random_secret(12), true),
        },
    };
    password::check("adminPassword", &password)?;
    let hash = password::hash(password.clone()).await?;
    let new = NewAccount {
        login: "admin".to_owned(),
        display_name: "Administrator".to_owned(),
        email: "admin@localhost".to_owned(),
        level: proto::AccountLevel::Admin,
        time_zone: "UTC".to_owned(),
    };
    match account::insert(&state.db, &new, &hash, state.clock.now()).await {
        Ok(_) => {}
        // Another replica starting at the same time made it first.
        Err(Error::Conflict { .. }) => {
            tracing::info!("the account `admin` was created by another replica");
            return Ok(());
        }
        Err(err) => return Err(err),
    }
    if !generated {
        tracing::info!("created the account `admin`");
    } else if state.config.print_admin_password {
        // Standalone: printed once on purpose (not logged) to the person who started it.
        println!("Created the account `admin` with the password: {password}");
        println!(
            "Change it after logging in (PATCH /api/v1/me), or set CONCLAVE_ADMIN_PASSWORD before the first start."
        );
    } else {
        // A service's output ends up in log collectors: the password goes to a private file.
        std::fs::create_dir_all(&state.config.data_dir).map_err(|err| {
            Error::Internal(format!(
                "cannot create the data folder {}: {err}",
                state.config.data_dir.display()
            ))
        })?;
        let path = state.config.data_dir.join("admin-password");
        let _ = std::fs::remove_file(&path);
        write_private(&path, &password)?;
        tracing::warn!(file = %path.display(), "created the account `admin` with a generated password, readable only by this user in the file; set CONCLAVE_ADMIN_PASSWORD or --admin-password-file to choose it");
    }
    Ok(())
}

/// Serves `router` on the configured address until `shutdown` resolves, with the lifecycle
/// loop beside it.
///
/// # Errors
/// When the address cannot be bound.
pub async fn serve(
    state: AppState,
    router: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(state.config.listen)
        .await
        .map_err(|err| {
            Error::Internal(format!("cannot listen on {}: {err}", state.config.listen))
        })?;
    tracing::info!(address = %state.config.listen, public = %state.config.public_url(), "conference service listening");
    match state.files.check().await {
        Ok(()) => tracing::info!(store = %state.files, "file store answers"),
        // Not fatal: the store may come up later; presentations and recordings fail until then.
        Err(err) => tracing::error!(store = %state.files, "{err}"),
    }
    if let Some(ldap) = state.ldap.clone() {
        // Not fatal either: logins answer 503 until the directory answers; the cause is logged.
        // Beside the start, so a directory that does not answer does not delay it.
        tokio::spawn(async move {
            if ldap.check().await.is_ok() {
                tracing::info!(url = ldap.url(), "LDAP directory answers");
            }
        });
    }
    let internal = match state.config.internal_listen {
        Some(address) => {
            let listener = tokio::net::TcpListener::bind(address)
                .await
                .map_err(|err| {
                    Error::Internal(format!(
                        "cannot listen on {address} (--internal-listen): {err}"
                    ))
                })?;
            tracing::info!(%address, "internal listener (metrics, SFU reports) listening");
            Some(listener)
        }
        None => None,
    };
    if let Some(oidc) = &state.oidc {
        oidc.discover_in_background();
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut lifecycle_stop = stop_rx.clone();
    let mut mail_stop = stop_rx.clone();
    let mailer = tokio::spawn(mail::run_loop(state.clone(), async move {
        let _ = mail_stop.wait_for(|stop| *stop).await;
    }));
    let lifecycle = tokio::spawn(lifecycle::run_loop(state.clone(), async move {
        let _ = lifecycle_stop.wait_for(|stop| *stop).await;
    }));
    let mut composer_stop = stop_rx.clone();
    let composer = tokio::spawn(recording::worker::run_loop(state.clone(), async move {
        let _ = composer_stop.wait_for(|stop| *stop).await;
    }));
    let mut directory_stop = stop_rx.clone();
    let directory_check = tokio::spawn(directory::check::run_loop(state.clone(), async move {
        let _ = directory_stop.wait_for(|stop| *stop).await;
    }));
    let server = axum::serve(
        listener,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let internal = internal.map(|listener| {
        let mut stop = stop_rx.clone();
        let app = http::internal_app(state.clone());
        tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|stop| *stop).await;
            })
            .await
        })
    });
    let result = server
        .await
        .map_err(|err| Error::Internal(format!("server failed: {err}")));
    // Upgraded websockets outlive the server's connections: relayed ones get their drain.
    state
        .relays
        .drain(std::time::Duration::from_secs(
            state.config.rtc_proxy_drain_seconds,
        ))
        .await;
    if let Some(internal) = internal {
        match internal.await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!(cause = %err, "the internal listener failed"),
            Err(err) => tracing::warn!(cause = %err, "the internal listener panicked"),
        }
    }
    let _ = lifecycle.await;
    let _ = composer.await;
    let _ = directory_check.await;
    let _ = mailer.await;
    result
}

/// Runs the conference service alone (`conclave api`).
///
/// # Errors
/// Start-up failures (database, configuration, address in use).
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let state = build(config, Arc::new(clock::SystemClock)).await?;
    // API routes first; everything else is the portal's.
    let portal = http::portal::router(&state.config.portal_dir);
    let app = http::app(state.clone()).fallback_service(portal);
    serve(state, app, shutdown).await
}

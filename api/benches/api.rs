//! Throughput and latency of `POST /api/v1/join` and `GET /api/v1/conferences` on PostgreSQL,
//! through a real HTTP server on loopback with concurrent clients.
//!
//! Run: `cargo bench -p api --bench api` (PostgreSQL from `CONCLAVE_TEST_POSTGRES`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`). Knobs: `BENCH_SECONDS` (default 10 per
//! endpoint), `BENCH_CONCURRENCY` (default 16), `BENCH_CONFERENCES` (conferences in the log,
//! default 25). Results are printed and written to `$CARGO_TARGET_DIR/bench-results/api.json`.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::ConnectOptions;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Debug, serde::Serialize)]
struct Figures {
    endpoint: &'static str,
    requests: usize,
    errors: usize,
    seconds: f64,
    requests_per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

async fn load<F, Fut>(
    endpoint: &'static str,
    seconds: u64,
    concurrency: usize,
    request: F,
) -> Figures
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let request = Arc::new(request);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let request = request.clone();
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0;
            while Instant::now() < deadline {
                let t = Instant::now();
                if !request().await {
                    errors += 1;
                }
                latencies.push(t.elapsed());
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for worker in workers {
        let (l, e) = worker.await.unwrap();
        latencies.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let at = |q: f64| {
        latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)].as_secs_f64()
            * 1000.0
    };
    Figures {
        endpoint,
        requests: latencies.len(),
        errors,
        seconds: elapsed,
        requests_per_second: latencies.len() as f64 / elapsed,
        p50_ms: at(0.50),
        p99_ms: at(0.99),
        max_ms: at(1.0),
    }
}

#[tokio::main]
async fn main() {
    let seconds: u64 = env_or("BENCH_SECONDS", 10);
    let concurrency: usize = env_or("BENCH_CONCURRENCY", 16);
    let conferences: usize = env_or("BENCH_CONFERENCES", 25);
    let admin_url = std::env::var("CONCLAVE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());

    sqlx::any::install_default_drivers();
    let name = format!("conclave_bench_{}", uuid::Uuid::new_v4().simple());
    let options: sqlx::any::AnyConnectOptions = admin_url.parse().unwrap();
    let mut admin_conn = options
        .connect()
        .await
        .expect("PostgreSQL must be running for this benchmark");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin_conn)
        .await
        .unwrap();
    let base = admin_url.rsplit_once('/').unwrap().0.to_owned();

    let dir = tempfile::tempdir().unwrap();
    let mut config = api::Config::with_data_dir(dir.path());
    config.database_url = Some(format!("{base}/{name}"));
    let password_file = dir.path().join("admin");
    std::fs::write(&password_file, "bench-admin-password").unwrap();
    config.admin_password_file = Some(password_file);
    let state = api::build(config, Arc::new(api::clock::SystemClock))
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = api::http::app(state.clone());
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    let base_url = format!("http://{addr}/api/v1");
    let client = reqwest::Client::new();

    // An owner with a conference log of `conferences` entries, and an ad hoc meeting to join.
    let login: Value = client
        .post(format!("{base_url}/auth/login"))
        .json(&json!({"login": "admin", "password": "bench-admin-password"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["sessionToken"].as_str().unwrap().to_owned();
    for i in 0..conferences {
        let start = chrono::Utc::now() + chrono::Duration::hours(1 + i as i64);
        let reply = client
            .post(format!("{base_url}/conferences"))
            .bearer_auth(&token)
            .json(&json!({"topic": format!("Meeting {i}"), "start": start.to_rfc3339(), "durationMinutes": 30,
                          "recurrence": if i % 3 == 0 { Some("FREQ=WEEKLY") } else { None }}))
            .send()
            .await
            .unwrap();
        assert!(reply.status().is_success());
    }
    let meeting: Value = client
        .post(format!("{base_url}/conferences/adhoc"))
        .bearer_auth(&token)
        // A body-less POST says it comes from a script, not from another site's page.
        .header("X-Conclave-Request", "1")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let join_body = json!({"meetingId": meeting["meetingId"], "password": meeting["password"], "displayName": "Bench guest"});

    let list = {
        let (client, url, token) = (
            client.clone(),
            format!("{base_url}/conferences"),
            token.clone(),
        );
        load("GET /api/v1/conferences", seconds, concurrency, move || {
            let request = client.get(&url).bearer_auth(&token).send();
            async move { request.await.is_ok_and(|r| r.status().is_success()) }
        })
        .await
    };
    let join = {
        let (client, url) = (client.clone(), format!("{base_url}/join"));
        load("POST /api/v1/join", seconds, concurrency, move || {
            let request = client.post(&url).json(&join_body).send();
            async move { request.await.is_ok_and(|r| r.status().is_success()) }
        })
        .await
    };

    let results = json!({
        "backend": "postgres",
        "concurrency": concurrency,
        "conferencesInLog": conferences,
        "results": [list, join],
    });
    println!("{}", serde_json::to_string_pretty(&results).unwrap());
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let out = std::path::Path::new(&target).join("bench-results");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(
        out.join("api.json"),
        serde_json::to_string_pretty(&results).unwrap(),
    )
    .unwrap();

    state.db.pool.close().await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut admin_conn)
    .await
    .unwrap();
}

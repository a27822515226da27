//! Guessing against a real server (real connections, peer addresses, X-Forwarded-For): bursts
//! of concurrent wrong meeting passwords, a success that must not reset an address's count,
//! trusted proxies and IPv6 /64 groups, an account that attackers can slow down but not lock,
//! and probing meeting IDs through `PATCH` — on SQLite and PostgreSQL.

#![allow(clippy::unwrap_used)]

mod support;

use axum::http::StatusCode;
use chrono::Duration;
use serde_json::{Value, json};
use support::{ADMIN_PASSWORD, Backend, TestApp};

/// Runs a scenario on both backends on a multi-threaded runtime (bursts really overlap).
macro_rules! on_both_backends_threaded {
    ($($scenario:ident),* $(,)?) => {
        $(
            mod $scenario {
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn on_sqlite() {
                    super::$scenario(super::Backend::Sqlite).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn on_postgres() {
                    super::$scenario(super::Backend::Postgres).await;
                }
            }
        )*
    };
}

on_both_backends_threaded!(
    a_burst_of_concurrent_wrong_passwords_is_refused_after_the_limit,
    a_crowd_joining_one_meeting_at_once_from_one_address_is_not_held_back,
    joining_ones_own_meeting_does_not_reset_the_addresss_failures,
    the_client_is_the_rightmost_hop_no_trusted_proxy_added,
    ipv6_neighbours_in_one_64_share_a_count,
    failing_on_purpose_slows_an_account_down_but_never_locks_it,
    probing_meeting_ids_by_choosing_them_is_throttled,
);

/// Trusts the loopback proxy the tests connect from.
async fn behind_proxy(backend: Backend) -> TestApp {
    TestApp::with(backend, |config| {
        config.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await
}

async fn join(base: &str, forwarded_for: Option<&str>, body: Value) -> (StatusCode, Value) {
    post(base, "/api/v1/join", None, forwarded_for, body).await
}

async fn post(
    base: &str,
    path: &str,
    token: Option<&str>,
    forwarded_for: Option<&str>,
    body: Value,
) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .json(&body);
    if let Some(hops) = forwarded_for {
        request = request.header("x-forwarded-for", hops);
    }
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let reply = request.send().await.unwrap();
    let status = StatusCode::from_u16(reply.status().as_u16()).unwrap();
    (status, reply.json().await.unwrap_or(Value::Null))
}

fn guess(meeting_id: &Value, n: usize) -> Value {
    json!({"meetingId": meeting_id, "password": format!("{:06}", 900_000 + n), "displayName": "G"})
}

async fn a_crowd_joining_one_meeting_at_once_from_one_address_is_not_held_back(backend: Backend) {
    let app = TestApp::new(backend).await;
    let owner = app.admin().await;
    let c = app
        .schedule(&owner, 2, 30, json!({"password": "123456"}))
        .await;
    app.clock.advance(chrono::Duration::minutes(2));
    let base = app.serve().await;
    // Forty people behind one NAT open the invitation at the start: right passwords are no
    // guesses, however many arrive at once.
    let crowd = (0..40).map(|n| {
        let base = base.clone();
        let body = json!({"meetingId": c["meetingId"], "password": "123456", "displayName": format!("P{n}")});
        tokio::spawn(async move { join(&base, None, body).await })
    });
    for joined in futures::future::join_all(crowd).await {
        let (status, body) = joined.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
    }
}

async fn a_burst_of_concurrent_wrong_passwords_is_refused_after_the_limit(backend: Backend) {
    let app = TestApp::new(backend).await;
    let owner = app.admin().await;
    let c = app
        .schedule(&owner, 2, 30, json!({"password": "123456"}))
        .await;
    let base = app.serve().await;
    // Forty wrong passwords at once: only the first ten per meeting may be tried.
    let burst = (0..40).map(|n| {
        let base = base.clone();
        let body = guess(&c["meetingId"], n);
        tokio::spawn(async move { join(&base, None, body).await.0 })
    });
    let statuses: Vec<StatusCode> = futures::future::join_all(burst)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let tried = statuses
        .iter()
        .filter(|s| **s == StatusCode::FORBIDDEN)
        .count();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!((tried, refused), (10, 30), "{statuses:?}");
}

async fn joining_ones_own_meeting_does_not_reset_the_addresss_failures(backend: Backend) {
    let app = TestApp::new(backend).await;
    let owner = app.admin().await;
    let own = app
        .schedule(&owner, 2, 30, json!({"password": "123456"}))
        .await;
    let base = app.serve().await;
    // Nineteen wrong guesses at other meetings (one each: no meeting's own limit is reached).
    for n in 0..19 {
        let other = json!(format!("{}", 500_000_000 + n));
        let (status, _) = join(&base, None, guess(&other, n)).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    // Joining one's own meeting with its password succeeds…
    let (status, body) = join(
        &base,
        None,
        json!({"meetingId": own["meetingId"], "password": "123456", "displayName": "Me"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // …and does not buy twenty more guesses: the twentieth is the last free one.
    let (status, _) = join(&base, None, guess(&json!("600000001"), 1)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = join(&base, None, guess(&json!("600000002"), 2)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
}

async fn the_client_is_the_rightmost_hop_no_trusted_proxy_added(backend: Backend) {
    let app = behind_proxy(backend).await;
    let base = app.serve().await;
    // The attacker writes a fresh address into X-Forwarded-For every time; the proxy appends
    // the one it saw, and that one is counted.
    for n in 0..20 {
        let spoofed = format!("10.9.{}.{}, 203.0.113.7", n / 200, n % 200);
        let (status, _) = join(
            &base,
            Some(&spoofed),
            guess(&json!(format!("{}", 700_000_000 + n)), n),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    let (status, _) = join(
        &base,
        Some("198.18.0.1, 203.0.113.7"),
        guess(&json!("700000999"), 1),
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    // Someone else behind the same proxy is not affected.
    let (status, _) = join(&base, Some("198.51.100.9"), guess(&json!("700000998"), 2)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

async fn ipv6_neighbours_in_one_64_share_a_count(backend: Backend) {
    let app = behind_proxy(backend).await;
    let base = app.serve().await;
    for n in 0..20 {
        // A different address of the same /64 each time.
        let hop = format!("2001:db8:aa:bb::{:x}", n + 1);
        let (status, _) = join(
            &base,
            Some(&hop),
            guess(&json!(format!("{}", 710_000_000 + n)), n),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    let (status, _) = join(
        &base,
        Some("2001:db8:aa:bb:ffff::1"),
        guess(&json!("710000999"), 1),
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let (status, _) = join(
        &base,
        Some("2001:db8:aa:bc::1"),
        guess(&json!("710000998"), 2),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "the next /64 is someone else"
    );
}

async fn failing_on_purpose_slows_an_account_down_but_never_locks_it(backend: Backend) {
    let app = behind_proxy(backend).await;
    let base = app.serve().await;
    let login = |password: &str| json!({"login": "admin", "password": password});
    // One attacker at one address is stopped after a few tries, without touching anyone else.
    for _ in 0..5 {
        let (status, _) = post(
            &base,
            "/api/v1/auth/login",
            None,
            Some("203.0.113.66"),
            login("wrong-one"),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    let (status, _) = post(
        &base,
        "/api/v1/auth/login",
        None,
        Some("203.0.113.66"),
        login("wrong-one"),
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let (status, _) = post(
        &base,
        "/api/v1/auth/login",
        None,
        Some("198.51.100.1"),
        login(ADMIN_PASSWORD),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "another address is not locked out");
    // Many attackers at many addresses: the account is slowed down, for a few seconds at most.
    for n in 0..60 {
        let hop = format!("192.0.2.{n}");
        let (status, _) = post(
            &base,
            "/api/v1/auth/login",
            None,
            Some(&hop),
            login("wrong-two"),
        )
        .await;
        assert!(
            status == StatusCode::FORBIDDEN || status == StatusCode::TOO_MANY_REQUESTS,
            "{status}"
        );
    }
    let (status, body) = post(
        &base,
        "/api/v1/auth/login",
        None,
        Some("198.51.100.2"),
        login(ADMIN_PASSWORD),
    )
    .await;
    if status == StatusCode::TOO_MANY_REQUESTS {
        let wait = body["error"]["retryAfter"].as_i64().unwrap();
        assert!(wait <= 2, "the owner waits {wait} s");
        app.clock.advance(Duration::seconds(wait));
        let (status, _) = post(
            &base,
            "/api/v1/auth/login",
            None,
            Some("198.51.100.2"),
            login(ADMIN_PASSWORD),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
    } else {
        assert_eq!(status, StatusCode::OK, "{body}");
    }
}

async fn probing_meeting_ids_by_choosing_them_is_throttled(backend: Backend) {
    let app = TestApp::new(backend).await;
    let admin = app.admin().await;
    let (_, prober) = app.user("mallory", "moderator").await;
    app.schedule(&admin, 60, 30, json!({"meetingId": "424242424"}))
        .await;
    let own = app.schedule(&prober, 60, 30, json!({})).await;
    let path = format!("/api/v1/conferences/{}", own["id"].as_str().unwrap());
    // Each refusal says the ID is live; ten probes are allowed, then the account waits.
    for _ in 0..10 {
        let reply = app
            .patch(&path, &prober, json!({"meetingId": "424242424"}))
            .await;
        assert_eq!(reply.code(), "meetingIdTaken");
    }
    let reply = app
        .patch(&path, &prober, json!({"meetingId": "424242424"}))
        .await
        .expect(StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(reply.code(), "tooManyAttempts");
    // Choosing a free ID is no probe: it costs nothing once the wait is over.
    app.clock.advance(Duration::seconds(2));
    app.patch(&path, &prober, json!({"meetingId": "515151515"}))
        .await
        .expect(StatusCode::OK);
    app.clock.advance(Duration::seconds(3));
    app.patch(&path, &prober, json!({"meetingId": "616161616"}))
        .await
        .expect(StatusCode::OK);
}

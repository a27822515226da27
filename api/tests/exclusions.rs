//! What must hold beyond one SFU process, on SQLite and PostgreSQL: exclusions are kept by the
//! conference service and checked at `/join` (a guest cannot return under another guest ID from
//! the same network); a permanent room a moderator ended stays closed until its owner or a
//! moderator opens it; account changes revoke join tokens; the SFU pods get all of it from
//! `GET /internal/revocations`.

#![allow(clippy::unwrap_used)]

mod support;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use chrono::Duration;
use proto::JoinClaims;
use serde_json::{Value, json};
use support::{Backend, Reply, TestApp};

macro_rules! behind_a_proxy_on_both_backends {
    ($($scenario:ident),* $(,)?) => {
        $(
            mod $scenario {
                #[tokio::test]
                async fn on_sqlite() {
                    super::$scenario(super::proxied(super::Backend::Sqlite).await).await;
                }

                #[tokio::test]
                async fn on_postgres() {
                    super::$scenario(super::proxied(super::Backend::Postgres).await).await;
                }
            }
        )*
    };
}

behind_a_proxy_on_both_backends!(
    an_excluded_guest_stays_out_under_any_guest_id_from_the_same_network,
    a_permanent_room_ended_by_a_moderator_stays_closed_until_a_moderator_opens_it,
    account_changes_revoke_the_accounts_join_tokens,
    revocations_need_a_service_token,
);

/// An API that takes the client's address from `X-Forwarded-For` added by a trusted proxy on
/// loopback, as behind an ingress.
async fn proxied(backend: Backend) -> TestApp {
    TestApp::with(backend, |config| {
        config.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await
}

/// `POST /join` from `address` through the proxy, logged in with `token` or as a guest.
async fn join_from(app: &TestApp, address: &str, token: Option<&str>, body: Value) -> Reply {
    let mut request = Request::builder()
        .method(Method::POST)
        .uri("/api/v1/join")
        .header(header::CONTENT_TYPE, "application/json")
        .header("x-forwarded-for", address)
        .extension(axum::extract::ConnectInfo(std::net::SocketAddr::from((
            [127, 0, 0, 1],
            40_000,
        ))));
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    app.send(
        request
            .body(Body::from(serde_json::to_vec(&body).unwrap()))
            .unwrap(),
    )
    .await
}

fn claims(app: &TestApp, reply: &Reply) -> JoinClaims {
    app.state
        .tokens
        .verify_join(reply.body["token"].as_str().unwrap(), app.now().timestamp())
        .expect("a valid join token")
}

async fn report(app: &TestApp, conference: &Value, event: Value) {
    app.post(
        "/api/v1/internal/room-events",
        Some(&app.service_token()),
        json!({"conference": conference["id"], "at": app.now().to_rfc3339(), "participants": 1, "event": event}),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
}

async fn revocations(app: &TestApp) -> Vec<Value> {
    app.get("/api/v1/internal/revocations", &app.service_token())
        .await
        .expect(StatusCode::OK)
        .body["revocations"]
        .as_array()
        .unwrap()
        .clone()
}

fn guest(c: &Value, id: &str, name: &str) -> Value {
    json!({"meetingId": c["meetingId"], "password": c["password"], "displayName": name, "guestId": id})
}

const MALLORY: &str = "5f0c5e4e-8f1e-4f53-9f0a-2b8d7c1e0a11";
const MALLORY_AGAIN: &str = "0a6a2c8e-1b7d-4c1e-8e5a-9d3f2b7c6e22";
const NEIGHBOUR_V6: &str = "3c1d9e7a-6b2f-4a8e-b1c4-7e5d2a9f0b33";
const OTHER: &str = "7b2e4d1c-9a3f-4e6b-8c5d-1f0a2e3b4c44";

async fn an_excluded_guest_stays_out_under_any_guest_id_from_the_same_network(app: TestApp) {
    let owner = app.admin().await;
    let (_, member) = app.user("mia", "audience").await;
    let c = app
        .schedule(&owner, 2, 60, json!({"recurrence": "FREQ=DAILY;COUNT=2"}))
        .await;
    app.clock.advance(Duration::minutes(2));
    app.tick().await;

    let first = join_from(&app, "203.0.113.7", None, guest(&c, MALLORY, "Mallory"))
        .await
        .expect(StatusCode::OK);
    // The token carries the guest's network, so that the SFU can report it with the exclusion.
    assert_eq!(claims(&app, &first).cli.as_deref(), Some("203.0.113.7"));
    let v6 = join_from(
        &app,
        "2001:db8:1:2:a:b:c:d",
        None,
        guest(&c, NEIGHBOUR_V6, "Nina"),
    )
    .await
    .expect(StatusCode::OK);
    assert_eq!(claims(&app, &v6).cli.as_deref(), Some("2001:db8:1:2::/64"));

    report(
        &app,
        &c,
        json!({"kind": "excluded", "identity": format!("guest:{MALLORY}"), "address": "203.0.113.7"}),
    )
    .await;
    report(
        &app,
        &c,
        json!({"kind": "excluded", "identity": format!("guest:{NEIGHBOUR_V6}"), "address": "2001:db8:1:2::/64"}),
    )
    .await;

    // Neither the same guest ID nor a fresh one from that network gets in.
    let again = join_from(&app, "203.0.113.7", None, guest(&c, MALLORY, "Mallory"))
        .await
        .expect(StatusCode::FORBIDDEN);
    assert_eq!(again.code(), "excluded");
    assert!(
        again.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("removed you")
    );
    let disguised = join_from(
        &app,
        "203.0.113.7",
        None,
        guest(&c, MALLORY_AGAIN, "Not Mallory"),
    )
    .await
    .expect(StatusCode::FORBIDDEN);
    assert_eq!(disguised.code(), "excluded");
    assert!(
        disguised.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("your network")
    );
    join_from(
        &app,
        "2001:db8:1:2:ffff::1",
        None,
        guest(&c, OTHER, "Other"),
    )
    .await
    .expect(StatusCode::FORBIDDEN);
    // Another network, and an account on the excluded network, are welcome.
    join_from(&app, "198.51.100.1", None, guest(&c, OTHER, "Olga"))
        .await
        .expect(StatusCode::OK);
    join_from(
        &app,
        "203.0.113.7",
        Some(&member),
        json!({"meetingId": c["meetingId"], "password": c["password"]}),
    )
    .await
    .expect(StatusCode::OK);
    // The SFU pods learn of it, whichever runs the meeting next.
    let listed = revocations(&app).await;
    assert!(
        listed.iter().any(|r| r["kind"] == "excluded"
            && r["conference"] == c["id"]
            && r["identity"] == format!("guest:{MALLORY}")),
        "{listed:?}"
    );

    // An exclusion lasts for the meeting it was made in: tomorrow's occurrence is open.
    app.clock.advance(Duration::minutes(60));
    app.tick().await;
    app.clock.advance(Duration::hours(23));
    app.tick().await;
    join_from(&app, "203.0.113.7", None, guest(&c, MALLORY, "Mallory"))
        .await
        .expect(StatusCode::OK);
}

async fn a_permanent_room_ended_by_a_moderator_stays_closed_until_a_moderator_opens_it(
    app: TestApp,
) {
    let owner = app.admin().await;
    let room = app
        .post(
            "/api/v1/conferences",
            Some(&owner),
            json!({"topic": "Lobby", "permanent": true}),
        )
        .await
        .expect(StatusCode::CREATED)
        .body;
    join_from(&app, "198.51.100.1", None, guest(&room, OTHER, "Olga"))
        .await
        .expect(StatusCode::OK);
    report(
        &app,
        &room,
        json!({"kind": "excluded", "identity": format!("guest:{MALLORY}"), "address": "203.0.113.7"}),
    )
    .await;
    report(&app, &room, json!({"kind": "ended"})).await;

    // Before, the next token reopened the room for anyone.
    let closed = join_from(&app, "198.51.100.1", None, guest(&room, OTHER, "Olga"))
        .await
        .expect(StatusCode::CONFLICT);
    assert_eq!(closed.code(), "conferenceEnded");
    assert!(
        closed.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("owner or a moderator")
    );
    let listed = revocations(&app).await;
    assert!(
        listed
            .iter()
            .any(|r| r["kind"] == "ended" && r["conference"] == room["id"]),
        "{listed:?}"
    );

    // Its owner opens it again; the new meeting starts without the last one's exclusions.
    join_from(
        &app,
        "192.0.2.1",
        Some(&owner),
        json!({"meetingId": room["meetingId"]}),
    )
    .await
    .expect(StatusCode::OK);
    join_from(&app, "198.51.100.1", None, guest(&room, OTHER, "Olga"))
        .await
        .expect(StatusCode::OK);
    join_from(&app, "203.0.113.7", None, guest(&room, MALLORY, "Mallory"))
        .await
        .expect(StatusCode::OK);
}

async fn account_changes_revoke_the_accounts_join_tokens(app: TestApp) {
    let admin = app.admin().await;
    let (id, mia) = app.user("mia", "audience").await;
    let c = app.schedule(&admin, 2, 60, json!({})).await;
    app.clock.advance(Duration::minutes(2));
    let ask = || json!({"meetingId": c["meetingId"], "password": c["password"]});
    let before = join_from(&app, "198.51.100.1", Some(&mia), ask())
        .await
        .expect(StatusCode::OK);
    assert_eq!(claims(&app, &before).ep, 0);
    let identity = format!("account:{id}");
    let account_revocations = |list: &[Value]| -> Vec<u64> {
        let mut epochs: Vec<u64> = list
            .iter()
            .filter(|r| r["kind"] == "account" && r["identity"] == identity)
            .map(|r| r["epoch"].as_u64().unwrap())
            .collect();
        // Listed by time; within one second in any order (the pods take the highest epoch).
        epochs.sort_unstable();
        epochs
    };

    // A new display name changes nothing a token grants.
    app.patch(
        &format!("/api/v1/users/{id}"),
        &admin,
        json!({"displayName": "Mia M."}),
    )
    .await
    .expect(StatusCode::OK);
    assert!(account_revocations(&revocations(&app).await).is_empty());

    // A new level revokes the tokens issued before; the next join carries the new epoch.
    app.patch(
        &format!("/api/v1/users/{id}"),
        &admin,
        json!({"level": "moderator"}),
    )
    .await
    .expect(StatusCode::OK);
    assert_eq!(account_revocations(&revocations(&app).await), vec![1]);
    let after = join_from(&app, "198.51.100.1", Some(&mia), ask())
        .await
        .expect(StatusCode::OK);
    assert_eq!(claims(&app, &after).ep, 1);
    assert_eq!(after.body["role"], "moderator");

    // A password reset and disabling revoke too.
    app.patch(
        &format!("/api/v1/users/{id}"),
        &admin,
        json!({"password": "a-new-password-1"}),
    )
    .await
    .expect(StatusCode::OK);
    app.patch(
        &format!("/api/v1/users/{id}"),
        &admin,
        json!({"disabled": true}),
    )
    .await
    .expect(StatusCode::OK);
    assert_eq!(account_revocations(&revocations(&app).await), vec![1, 2, 3]);

    // The list covers a join token's lifetime and a minute more, then forgets.
    app.clock.advance(Duration::minutes(20));
    app.tick().await;
    assert!(account_revocations(&revocations(&app).await).is_empty());
}

async fn revocations_need_a_service_token(app: TestApp) {
    let admin = app.admin().await;
    let reply = app
        .call(Method::GET, "/api/v1/internal/revocations", None, None)
        .await
        .expect(StatusCode::UNAUTHORIZED);
    assert_eq!(reply.code(), "unauthenticated");
    app.get("/api/v1/internal/revocations", &admin)
        .await
        .expect(StatusCode::UNAUTHORIZED);
}

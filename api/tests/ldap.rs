//! LDAP / Active Directory login against a real OpenLDAP server (slapd started by the test,
//! LDAPS with a CA made for it) — on SQLite and PostgreSQL.

#![allow(clippy::unwrap_used)]

mod support;

use std::future::Future;

use api::Config;
use api::directory::check;
use api::directory::ldap::{DefaultLevel, Directory, LdapConfig};
use axum::http::StatusCode;
use chrono::Duration;
use serde_json::{Value, json};
use support::slapd::{self, Slapd, password_of};
use support::{Backend, TestApp};

/// The configuration the tests start from: LDAPS with the test CA, the service account,
/// `memberOf` for groups, the disabled marker as the disabled filter, and levels from groups.
fn configure(slapd: &Slapd, config: &mut Config) {
    let ldap = &mut config.ldap;
    ldap.ldap_url = Some(slapd.ldaps_url());
    ldap.ldap_ca_file = Some(slapd.ca_file());
    ldap.ldap_bind_dn = Some(slapd::SERVICE_DN.to_owned());
    ldap.ldap_bind_password_file = Some(slapd.service_password_file());
    ldap.ldap_user_base = Some(slapd::PEOPLE.to_owned());
    ldap.ldap_disabled_filter = Some(slapd::DISABLED_FILTER.to_owned());
    ldap.ldap_time_zone_attribute = Some("description".to_owned());
    ldap.ldap_admin_groups = vec![slapd::ADMINS.to_owned()];
    ldap.ldap_moderator_plus_groups = vec![slapd::MODERATORS_PLUS.to_owned()];
    // Written as people write DNs: spaces and capitals still match.
    ldap.ldap_moderator_groups =
        vec!["CN=Video-Moderators, OU=Groups, DC=example, DC=org".to_owned()];
}

async fn with_slapd<F, Fut>(backend: Backend, scenario: F)
where
    F: FnOnce(TestApp, Slapd) -> Fut,
    Fut: Future<Output = ()>,
{
    let slapd = Slapd::start();
    let app = TestApp::with(backend, |config| configure(&slapd, config)).await;
    scenario(app, slapd).await;
}

macro_rules! on_both_backends_with_slapd {
    ($($scenario:ident),* $(,)?) => {
        $(
            mod $scenario {
                #[tokio::test]
                async fn on_sqlite() {
                    super::with_slapd(super::support::Backend::Sqlite, super::$scenario).await;
                }

                #[tokio::test]
                async fn on_postgres() {
                    super::with_slapd(super::support::Backend::Postgres, super::$scenario).await;
                }
            }
        )*
    };
}

on_both_backends_with_slapd!(
    first_login_creates_the_account_with_name_and_mail_from_the_directory,
    unknown_names_wrong_passwords_and_disabled_entries_get_the_same_answer,
    groups_give_levels_and_a_change_in_the_directory_counts_at_the_next_login,
    groups_found_by_search_give_levels_too,
    filter_syntax_in_the_login_name_matches_no_one,
    people_in_no_listed_group_are_refused_when_the_default_level_is_none,
    starttls_over_ldap_works,
    a_directory_signed_by_an_unknown_ca_is_refused_with_a_clear_error,
    the_check_ends_the_sessions_of_people_the_directory_removed_or_disabled,
    local_login_keeps_working_and_can_be_kept_for_administrators,
    a_directory_account_cannot_change_its_password_here,
    a_local_account_is_never_taken_over_by_the_directory,
);

async fn try_login(app: &TestApp, login: &str, password: &str) -> support::Reply {
    app.post(
        "/api/v1/auth/login",
        None,
        json!({"login": login, "password": password}),
    )
    .await
}

async fn ldap_login(app: &TestApp, name: &str) -> Value {
    try_login(app, name, &password_of(name))
        .await
        .expect(StatusCode::OK)
        .body
}

async fn first_login_creates_the_account_with_name_and_mail_from_the_directory(
    app: TestApp,
    _slapd: Slapd,
) {
    assert_eq!(
        app.rows("accounts").await,
        1,
        "only the first administrator"
    );
    let first = ldap_login(&app, "alice").await;
    assert_eq!(first["login"], "alice");
    assert_eq!(first["displayName"], "Alice Liddell");
    assert_eq!(first["email"], "alice@example.org");
    assert_eq!(first["source"], "ldap");
    assert_eq!(first["timeZone"], "Europe/Paris");
    // In `staff` only, which gives no level: the default level.
    assert_eq!(first["level"], "audience");
    let me = app
        .get("/api/v1/me", first["sessionToken"].as_str().unwrap())
        .await
        .expect(StatusCode::OK);
    assert_eq!(me.body["id"], first["id"]);
    // The second login finds the same account (by its DN), whatever case the name is typed in.
    let again = ldap_login(&app, "alice").await;
    assert_eq!(again["id"], first["id"]);
    let typed_otherwise = try_login(&app, "ALICE", &password_of("alice"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(typed_otherwise.body["id"], first["id"]);
    assert_eq!(app.rows("accounts").await, 2);
    // A value that is no time zone is ignored: the account keeps the default.
    let carol = ldap_login(&app, "carol").await;
    assert_eq!(carol["timeZone"], "UTC");
    assert_eq!(carol["displayName"], "Carol Danvers");
}

async fn unknown_names_wrong_passwords_and_disabled_entries_get_the_same_answer(
    app: TestApp,
    _slapd: Slapd,
) {
    let wrong = try_login(&app, "alice", "not-her-password")
        .await
        .expect(StatusCode::FORBIDDEN);
    let unknown = try_login(&app, "zelda", "any-password-1")
        .await
        .expect(StatusCode::FORBIDDEN);
    let disabled = try_login(&app, "dave", &password_of("dave"))
        .await
        .expect(StatusCode::FORBIDDEN);
    // An empty password would be an "unauthenticated bind" the directory answers with success.
    let empty = try_login(&app, "alice", "")
        .await
        .expect(StatusCode::FORBIDDEN);
    assert_eq!(wrong.body, unknown.body);
    assert_eq!(wrong.body, disabled.body);
    assert_eq!(wrong.body, empty.body);
    assert_eq!(app.rows("accounts").await, 1, "no account was created");
}

async fn groups_give_levels_and_a_change_in_the_directory_counts_at_the_next_login(
    app: TestApp,
    slapd: Slapd,
) {
    assert_eq!(ldap_login(&app, "bob").await["level"], "moderator");
    assert_eq!(ldap_login(&app, "carol").await["level"], "admin");
    assert_eq!(ldap_login(&app, "alice").await["level"], "audience");
    slapd.add_to_group(slapd::MODERATORS, "alice");
    slapd.remove_from_group(slapd::MODERATORS, "bob");
    let alice = ldap_login(&app, "alice").await;
    assert_eq!(alice["level"], "moderator");
    assert_eq!(ldap_login(&app, "bob").await["level"], "audience");
    // The change is stored, not only answered.
    let me = app
        .get("/api/v1/me", alice["sessionToken"].as_str().unwrap())
        .await
        .expect(StatusCode::OK);
    assert_eq!(me.body["level"], "moderator");
}

async fn groups_found_by_search_give_levels_too(app: TestApp, _slapd: Slapd) {
    let app = app
        .reconfigure(|config| {
            // No memberOf: only the group search says who is in which group.
            config.ldap.ldap_member_of_attribute = String::new();
            config.ldap.ldap_group_base = Some(slapd::GROUPS.to_owned());
        })
        .await;
    assert_eq!(ldap_login(&app, "bob").await["level"], "moderator");
    assert_eq!(ldap_login(&app, "carol").await["level"], "admin");
    assert_eq!(ldap_login(&app, "alice").await["level"], "audience");
}

async fn filter_syntax_in_the_login_name_matches_no_one(app: TestApp, _slapd: Slapd) {
    // Unescaped, `al*` would find alice alone and log in as her with her password; `*)(uid=*`
    // would widen the filter to everyone.
    for login in ["al*", "*)(uid=*", "alice)(uid=*", "*"] {
        let reply = try_login(&app, login, &password_of("alice")).await;
        assert_eq!(
            reply.status,
            StatusCode::FORBIDDEN,
            "{login}: {}",
            reply.text
        );
    }
    assert_eq!(app.rows("accounts").await, 1, "no account was created");
}

async fn people_in_no_listed_group_are_refused_when_the_default_level_is_none(
    app: TestApp,
    _slapd: Slapd,
) {
    let app = app
        .reconfigure(|config| config.ldap.ldap_default_level = DefaultLevel(None))
        .await;
    let refused = try_login(&app, "alice", &password_of("alice"))
        .await
        .expect(StatusCode::FORBIDDEN);
    assert!(
        refused.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("none of the groups"),
        "{}",
        refused.text
    );
    assert_eq!(ldap_login(&app, "bob").await["level"], "moderator");
}

async fn starttls_over_ldap_works(app: TestApp, slapd: Slapd) {
    let url = slapd.ldap_url();
    let app = app
        .reconfigure(|config| {
            config.ldap.ldap_url = Some(url);
            config.ldap.ldap_starttls = true;
        })
        .await;
    assert_eq!(ldap_login(&app, "carol").await["level"], "admin");
    try_login(&app, "carol", "wrong-password-1")
        .await
        .expect(StatusCode::FORBIDDEN);
}

async fn a_directory_signed_by_an_unknown_ca_is_refused_with_a_clear_error(
    app: TestApp,
    slapd: Slapd,
) {
    let other = slapd.other_ca_file();
    let app = app
        .reconfigure(|config| config.ldap.ldap_ca_file = Some(other))
        .await;
    // The login says the directory cannot be reached — and counts no failed attempt: more
    // tries than the throttle allows all get the same 503, never 429.
    for _ in 0..8 {
        let reply = try_login(&app, "bob", &password_of("bob"))
            .await
            .expect(StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(reply.code(), "directoryUnreachable");
    }
    // The operator learns why (start-up runs this check and logs it).
    let ldap = app.state.ldap.as_deref().unwrap();
    let err = ldap.check().await.unwrap_err();
    let api::Error::DirectoryUnreachable(cause) = err else {
        panic!("{err:?}")
    };
    assert!(cause.contains("UnknownIssuer"), "{cause}");
    assert!(cause.contains("--ldap-ca-file"), "{cause}");
    // With the right CA the same server is fine.
    let right = slapd.ca_file();
    let app = app
        .reconfigure(|config| config.ldap.ldap_ca_file = Some(right))
        .await;
    app.state.ldap.as_deref().unwrap().check().await.unwrap();
    ldap_login(&app, "bob").await;
}

async fn the_check_ends_the_sessions_of_people_the_directory_removed_or_disabled(
    app: TestApp,
    slapd: Slapd,
) {
    let session = |reply: &Value| reply["sessionToken"].as_str().unwrap().to_owned();
    let alice = session(&ldap_login(&app, "alice").await);
    let bob = session(&ldap_login(&app, "bob").await);
    let carol = session(&ldap_login(&app, "carol").await);
    let interval = Duration::minutes(15);
    let ldap = app.state.ldap.as_deref();
    // Just confirmed by their logins: nobody is due yet.
    let round = check::round(&app.state.db, ldap, app.now(), interval)
        .await
        .unwrap();
    assert_eq!(round, check::Round::default());
    // The directory disables alice and removes bob.
    slapd.modify(&format!(
        "dn: uid=alice,{}\nchangetype: modify\nadd: employeeType\nemployeeType: disabled\n",
        slapd::PEOPLE
    ));
    slapd.modify(&format!(
        "dn: uid=bob,{}\nchangetype: delete\n",
        slapd::PEOPLE
    ));
    app.clock.advance(Duration::minutes(16));
    // A directory that cannot be reached ends nobody's session.
    let mut down = LdapConfig::off();
    down.ldap_url = Some("ldaps://127.0.0.1:9".to_owned());
    down.ldap_user_base = Some(slapd::PEOPLE.to_owned());
    down.ldap_timeout_seconds = 2;
    let down = Directory::from_config(&down).unwrap().unwrap();
    let round = check::round(&app.state.db, Some(&down), app.now(), interval)
        .await
        .unwrap();
    assert_eq!(round.deferred, 3);
    for token in [&alice, &bob, &carol] {
        app.get("/api/v1/me", token).await.expect(StatusCode::OK);
    }
    // The real directory: alice and bob are out, carol stays.
    let round = check::round(&app.state.db, ldap, app.now(), interval)
        .await
        .unwrap();
    assert_eq!(
        round,
        check::Round {
            confirmed: 1,
            ended: 2,
            deferred: 0
        }
    );
    app.get("/api/v1/me", &alice)
        .await
        .expect(StatusCode::UNAUTHORIZED);
    app.get("/api/v1/me", &bob)
        .await
        .expect(StatusCode::UNAUTHORIZED);
    app.get("/api/v1/me", &carol).await.expect(StatusCode::OK);
    // Carol was confirmed just now: the next round has nothing to do.
    let round = check::round(&app.state.db, ldap, app.now(), interval)
        .await
        .unwrap();
    assert_eq!(round, check::Round::default());
    // And alice cannot log in again.
    try_login(&app, "alice", &password_of("alice"))
        .await
        .expect(StatusCode::FORBIDDEN);
}

async fn local_login_keeps_working_and_can_be_kept_for_administrators(app: TestApp, _slapd: Slapd) {
    let (_, _) = app.user("mia", "moderator").await;
    let admin = app.admin().await;
    app.patch(
        "/api/v1/settings",
        &admin,
        json!({"localLoginAdminsOnly": true}),
    )
    .await
    .expect(StatusCode::OK);
    let refused = try_login(&app, "mia", "password-of-user")
        .await
        .expect(StatusCode::FORBIDDEN);
    assert!(refused.text.contains("turned off"), "{}", refused.text);
    // The break-glass administrator and the directory's people still log in.
    app.admin().await;
    ldap_login(&app, "bob").await;
}

async fn a_directory_account_cannot_change_its_password_here(app: TestApp, _slapd: Slapd) {
    let alice = ldap_login(&app, "alice").await;
    let token = alice["sessionToken"].as_str().unwrap();
    let refused = app
        .patch(
            "/api/v1/me",
            token,
            json!({"password": "a-new-password-1", "currentPassword": password_of("alice")}),
        )
        .await
        .expect(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(refused.body["error"]["field"], "password");
    // Other profile fields still change.
    app.patch("/api/v1/me", token, json!({"timeZone": "Europe/Paris"}))
        .await
        .expect(StatusCode::OK);
    // The directory password still works, the refused one does not.
    ldap_login(&app, "alice").await;
    try_login(&app, "alice", "a-new-password-1")
        .await
        .expect(StatusCode::FORBIDDEN);
}

async fn a_local_account_is_never_taken_over_by_the_directory(app: TestApp, _slapd: Slapd) {
    let (local_id, _) = app.user("bob", "audience").await;
    // `bob` is local: his directory password is not his password here.
    try_login(&app, "bob", &password_of("bob"))
        .await
        .expect(StatusCode::FORBIDDEN);
    let local = try_login(&app, "bob", "password-of-user")
        .await
        .expect(StatusCode::OK);
    assert_eq!(local.body["id"], local_id.as_str());
    assert_eq!(local.body["source"], "local");
    // Typed otherwise, the directory knows him — but the login name is taken: no merge.
    let taken = try_login(&app, "Bob", &password_of("bob"))
        .await
        .expect(StatusCode::CONFLICT);
    assert_eq!(taken.code(), "loginTaken");
}

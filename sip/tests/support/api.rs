//! A real conference service on SQLite, served over HTTP on loopback, with one ad hoc meeting;
//! optionally with the SFU embedded as `conclave standalone` embeds it (`/rtc` on the same
//! port), for tests that carry media.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

/// The running API and the meeting it holds.
pub struct Api {
    pub url: String,
    pub meeting_id: String,
    pub password: String,
    /// The owner's (the admin's) session token.
    pub session: String,
    _dir: tempfile::TempDir,
}

const ADMIN_PASSWORD: &str = "admin-password-1";

impl Api {
    pub async fn start() -> Api {
        Api::start_serving(false).await
    }

    /// [`Api::start`] with the embedded SFU, its media on UDP 46000-46999 of loopback (room for a
    /// few conferences: each reserves ports for its participants).
    pub async fn start_with_sfu() -> Api {
        Api::start_serving(true).await
    }

    async fn start_serving(with_sfu: bool) -> Api {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = api::Config::with_data_dir(dir.path());
        config.database_url = Some(format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("conclave.db").display()
        ));
        let password_file = dir.path().join("admin-password");
        std::fs::write(&password_file, ADMIN_PASSWORD).expect("write");
        config.admin_password_file = Some(password_file);
        // The gateway signs its service tokens with the same secret (support/mod.rs).
        let secret_file = dir.path().join("join-token-secret");
        std::fs::write(&secret_file, crate::support::JOIN_TOKEN_SECRET).expect("write");
        config.join_token_secret_file = Some(secret_file);
        config.listen = "127.0.0.1:8080".parse().expect("address");
        config.sfu_udp_ports = "46000-46999".to_owned();
        let state = api::build(config.clone(), Arc::new(api::clock::SystemClock))
            .await
            .expect("the API builds");
        let mut app = api::http::app(state.clone());
        if with_sfu {
            let mut sfu_config = sfu::Config::for_loopback(
                api::token_secret(&config).expect("a token secret"),
                proto::UdpPorts {
                    first: 46000,
                    last: 46999,
                },
            );
            sfu_config.listen = config.listen;
            sfu_config.bind_ip = config.listen.ip();
            sfu_config.pod_name = "embedded".to_owned();
            let sfu_state = sfu::SfuState::new(
                &sfu_config,
                Arc::new(sfu::LogReporter),
                &prometheus::Registry::new(),
            )
            .expect("the SFU builds");
            app = app.fallback_service(sfu::router(sfu_state));
        }
        tokio::spawn(async move {
            api::serve(state, app, std::future::pending())
                .await
                .expect("the API serves");
        });
        let url = "http://127.0.0.1:8080".to_owned();
        let http = reqwest::Client::new();
        let mut login = None;
        for _ in 0..100 {
            if let Ok(reply) = http
                .post(format!("{url}/api/v1/auth/login"))
                .json(&json!({"login": "admin", "password": ADMIN_PASSWORD}))
                .send()
                .await
            {
                login = Some(reply.json::<Value>().await.expect("login JSON"));
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let login = login.expect("the API answers");
        let token = login["sessionToken"].as_str().expect("a session token");
        let conference: Value = http
            .post(format!("{url}/api/v1/conferences/adhoc"))
            .bearer_auth(token)
            .json(&json!({"topic": "Dial-in"}))
            .send()
            .await
            .expect("adhoc")
            .json()
            .await
            .expect("conference JSON");
        let text = |key: &str| {
            conference[key]
                .as_str()
                .unwrap_or_else(|| panic!("{key} in {conference}"))
                .to_owned()
        };
        Api {
            url,
            meeting_id: text("meetingId"),
            password: text("password"),
            session: token.to_owned(),
            _dir: dir,
        }
    }
}

impl Api {
    /// A guest named `name` in the meeting who only listens (loadgen): the client and the
    /// conference.
    pub async fn join_listener(&self, name: &str) -> (loadgen::Client, proto::ConferenceId) {
        let joined = self.join_as_guest(name).await;
        let conference: proto::ConferenceId =
            serde_json::from_value(joined["conference"]["id"].clone()).expect("an ID");
        let listener = loadgen::Client::join_url(
            joined["endpoint"].as_str().expect("an endpoint"),
            joined["token"].as_str().expect("a token"),
            &conference,
        )
        .await
        .expect("the listener joins");
        assert!(listener.id().is_some(), "admitted: {:?}", listener.first);
        (listener, conference)
    }

    /// A guest named `name` who speaks a tone of `frequency` Hz in Opus for `length`, through
    /// the gateway's own room client with a conference of its own (loadgen only sends
    /// synthetic payloads): the task speaking.
    pub async fn speak(
        &self,
        name: &str,
        frequency: f64,
        length: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let joined = self.join_as_guest(name).await;
        let registry = prometheus::Registry::new();
        let conferences = sip::conference::Conferences::new(
            sip::metrics::Metrics::new(&registry).expect("metrics"),
        );
        let mut speaker = sip::room::Room::join(
            &sip::room::Admission {
                token: joined["token"].as_str().expect("a token").to_owned(),
                endpoint: joined["endpoint"].as_str().expect("an endpoint").to_owned(),
                conference: serde_json::from_value(joined["conference"]["id"].clone())
                    .expect("an ID"),
            },
            &conferences,
        )
        .await
        .expect("the speaker joins");
        let samples = usize::try_from(length.as_millis()).unwrap_or(0) * 8;
        tokio::spawn(async move {
            let tone = sip::tone::sine(frequency, 8_000, samples, 8_000);
            let mut ticker = tokio::time::interval(Duration::from_millis(20));
            for frame in tone.chunks(160) {
                ticker.tick().await;
                speaker.send_voice(frame, 8_000).await;
            }
        })
    }

    /// Schedules a conference as the owner (`POST /api/v1/conferences` with `body`): the
    /// conference as the API shows it.
    pub async fn schedule(&self, body: Value) -> Value {
        let reply = reqwest::Client::new()
            .post(format!("{}/api/v1/conferences", self.url))
            .bearer_auth(&self.session)
            .json(&body)
            .send()
            .await
            .expect("schedule");
        let status = reply.status().as_u16();
        let answer: Value = reply.json().await.expect("conference JSON");
        assert!(
            status == 200 || status == 201,
            "scheduled: {status} {answer}"
        );
        answer
    }

    /// Joins `conference` (as the API shows it) as a guest named `name`: the join answer.
    pub async fn join_to(&self, conference: &Value, name: &str) -> Value {
        let reply = reqwest::Client::new()
            .post(format!("{}/api/v1/join", self.url))
            .json(&json!({
                "meetingId": conference["meetingId"],
                "password": conference["password"],
                "displayName": name,
            }))
            .send()
            .await
            .expect("join");
        let status = reply.status().as_u16();
        let answer: Value = reply.json().await.expect("join JSON");
        assert_eq!(status, 200, "the guest is admitted: {answer}");
        answer
    }

    /// Joins the meeting as its owner (a moderator): the join answer.
    pub async fn join_as_owner(&self) -> Value {
        let reply = reqwest::Client::new()
            .post(format!("{}/api/v1/join", self.url))
            .bearer_auth(&self.session)
            .json(&json!({ "meetingId": self.meeting_id }))
            .send()
            .await
            .expect("join");
        assert_eq!(reply.status().as_u16(), 200, "the owner is admitted");
        reply.json().await.expect("join JSON")
    }

    /// Joins the meeting as a guest named `name` through `POST /join`: the join answer.
    pub async fn join_as_guest(&self, name: &str) -> Value {
        let reply = reqwest::Client::new()
            .post(format!("{}/api/v1/join", self.url))
            .json(&json!({
                "meetingId": self.meeting_id,
                "password": self.password,
                "displayName": name,
            }))
            .send()
            .await
            .expect("join");
        assert_eq!(reply.status().as_u16(), 200, "the guest is admitted");
        reply.json().await.expect("join JSON")
    }
}

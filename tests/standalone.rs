//! The binary started as a user starts it: `conclave standalone` on a fresh data folder. An
//! administrator logs in, starts a meeting, a guest joins through the API and enters the
//! embedded SFU's room over the signaling websocket; the SFU's report reaches the conference
//! log; a restart keeps everything.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const PASSWORD: &str = "standalone-admin-1";

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start(data: &std::path::Path, port: u16) -> Server {
    start_with_udp(data, port, "46000-46199").await
}

/// [`start`] with the embedded SFU on the UDP ports `udp` (FIRST-LAST), for tests whose media
/// must not meet another test's.
async fn start_with_udp(data: &std::path::Path, port: u16, udp: &str) -> Server {
    let mut command = Command::new(system_tests::conclave_bin());
    command
        .arg("standalone")
        .env("CONCLAVE_DATA_DIR", data)
        .env("CONCLAVE_LISTEN", format!("127.0.0.1:{port}"))
        .env("CONCLAVE_ADMIN_PASSWORD", PASSWORD)
        .env("CONCLAVE_SFU_UDP_PORTS", udp)
        // Tests run side by side: no two gateways on 5060 (the SIP tests below choose).
        .env("CONCLAVE_SIP_LISTEN", "off")
        .env_remove("DATABASE_URL")
        .env_remove("CONCLAVE_JOIN_TOKEN_SECRET");
    spawn(command, port).await
}

/// Starts a prepared command and waits until its /readyz on `port` answers 200 (bounded: a
/// failed start fails the test).
async fn spawn(command: Command, port: u16) -> Server {
    spawn_with_output(command, port, Stdio::null()).await
}

/// [`spawn`] with the process's standard output going to `output`.
async fn spawn_with_output(mut command: Command, port: u16, output: impl Into<Stdio>) -> Server {
    let child = command
        .stdout(output)
        .spawn()
        .expect("the conclave binary starts");
    let server = Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if let Ok(reply) = client.get(format!("{}/readyz", server.base)).send().await
            && reply.status().is_success()
        {
            return server;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("conclave did not become ready on port {port}");
}

async fn post(
    client: &reqwest::Client,
    url: String,
    token: Option<&str>,
    body: Value,
) -> (u16, Value) {
    let mut request = client.post(url).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let reply = request.send().await.unwrap();
    let status = reply.status().as_u16();
    (status, reply.json().await.unwrap_or(Value::Null))
}

async fn participants(client: &reqwest::Client, base: &str, token: &str, id: &str) -> i64 {
    let c: Value = client
        .get(format!("{base}/api/v1/conferences/{id}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    c["participants"].as_i64().unwrap()
}

async fn wait_for_participants(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    id: &str,
    n: i64,
) {
    for _ in 0..100 {
        if participants(client, base, token, id).await == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the conference log never showed {n} participants");
}

#[tokio::test]
async fn a_guest_enters_a_meeting_started_in_standalone_mode_and_a_restart_keeps_it() {
    let data = tempfile::tempdir().unwrap();
    let port = system_tests::free_port();
    let server = start(data.path(), port).await;
    let base = server.base.clone();
    let client = reqwest::Client::new();
    // The generated join-token secret is readable by this user alone.
    use std::os::unix::fs::PermissionsExt;
    let key = std::fs::metadata(data.path().join("join-token.key")).unwrap();
    assert_eq!(key.permissions().mode() & 0o777, 0o600);

    let (status, login) = post(
        &client,
        format!("{base}/api/v1/auth/login"),
        None,
        json!({"login": "admin", "password": PASSWORD}),
    )
    .await;
    assert_eq!(status, 200, "{login}");
    let token = login["sessionToken"].as_str().unwrap().to_owned();
    let (status, meeting) = post(
        &client,
        format!("{base}/api/v1/conferences/adhoc"),
        Some(&token),
        json!({"topic": "Standalone"}),
    )
    .await;
    assert_eq!(status, 201, "{meeting}");
    let id = meeting["id"].as_str().unwrap().to_owned();

    let (status, joined) = post(
        &client,
        format!("{base}/api/v1/join"),
        None,
        json!({"meetingId": meeting["meetingId"], "password": meeting["password"], "displayName": "Guest"}),
    )
    .await;
    assert_eq!(status, 200, "{joined}");
    let endpoint = joined["endpoint"].as_str().unwrap();
    assert_eq!(endpoint, format!("ws://127.0.0.1:{port}/rtc"));

    let mut ws = enter(endpoint, &joined["token"], &id).await;
    // The embedded SFU reports the join to the conference service.
    wait_for_participants(&client, &base, &token, &id, 1).await;
    ws.close(None).await.unwrap();
    wait_for_participants(&client, &base, &token, &id, 0).await;

    drop(server);
    let server = start(data.path(), port).await;
    let (status, login) = post(
        &client,
        format!("{}/api/v1/auth/login", server.base),
        None,
        json!({"login": "admin", "password": PASSWORD}),
    )
    .await;
    assert_eq!(status, 200);
    let token = login["sessionToken"].as_str().unwrap();
    let log: Value = client
        .get(format!("{}/api/v1/conferences", server.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(log[0]["id"], id.as_str());
}

/// Two participants that keep their meeting by themselves, as the portal does (loadgen's
/// attendee: join through the API, reconnect and publish again when the connection is lost),
/// come back when the server is killed and started again: kill -9 → first frame again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn attendees_come_back_by_themselves_after_the_server_was_killed() {
    use loadgen::{Attendee, AttendeeOptions, Ended, MediaPlan};
    use proto::signal::TrackSource;
    const UDP: &str = "46400-46499";
    const WAIT: Duration = Duration::from_secs(20);
    let data = tempfile::tempdir().unwrap();
    let port = system_tests::free_port();
    let mut server = start_with_udp(data.path(), port, UDP).await;
    let base = server.base.clone();
    let client = reqwest::Client::new();
    let (_, login) = post(
        &client,
        format!("{base}/api/v1/auth/login"),
        None,
        json!({"login": "admin", "password": PASSWORD}),
    )
    .await;
    let admin = login["sessionToken"].as_str().unwrap().to_owned();
    let (status, meeting) = post(
        &client,
        format!("{base}/api/v1/conferences/adhoc"),
        Some(&admin),
        json!({"topic": "Kept"}),
    )
    .await;
    assert_eq!(status, 201, "{meeting}");
    let attendee = |name: &str, guest: &str, sources: Vec<TrackSource>| {
        Attendee::start(AttendeeOptions {
            api: base.clone(),
            join: json!({"meetingId": meeting["meetingId"], "password": meeting["password"],
                         "displayName": name, "guestId": guest}),
            session_token: None,
            sources,
            plan: MediaPlan::default(),
            media_ip: None,
        })
    };
    let mut speaker = attendee(
        "Ada",
        "00000000-0000-4000-8000-00000000000a",
        vec![TrackSource::Microphone, TrackSource::Camera],
    );
    let mut listener = attendee("Bob", "00000000-0000-4000-8000-00000000000b", Vec::new());
    listener
        .wait_until(WAIT, |c| c.len() == 1 && c[0].first_keyframe_at.is_some())
        .await
        .expect("Bob sees Ada");
    assert_eq!(
        listener.connections()[0].pod,
        None,
        "standalone names no pod"
    );

    // The process dies (kill -9) and is started again on the same folder and port.
    let _ = server.child.kill();
    let _ = server.child.wait();
    let killed = std::time::Instant::now();
    let server = start_with_udp(data.path(), port, UDP).await;
    let back = listener
        .wait_until(WAIT, |c| {
            c.last().is_some_and(|c| c.first_keyframe_at.is_some()) && c.len() >= 2
        })
        .await
        .expect("Bob sees Ada again");
    speaker
        .wait_until(WAIT, |c| {
            c.len() >= 2 && c.last().is_some_and(|c| c.joined_at.is_some())
        })
        .await
        .expect("Ada is back");
    assert!(
        matches!(
            back[0].ended,
            Some(Ended::WebsocketClosed | Ended::MediaFailed)
        ),
        "{:?}",
        back[0].ended
    );
    let again = back.last().unwrap();
    println!(
        "kill -9 (then a restart) → Bob admitted again: {:?}, first packet: {:?}, first keyframe: {:?} ({} connections)",
        again.joined_at.unwrap().duration_since(killed),
        again.first_packet_at.unwrap().duration_since(killed),
        again.first_keyframe_at.unwrap().duration_since(killed),
        back.len()
    );
    speaker.stop().await.unwrap();
    listener.stop().await.unwrap();
    drop(server);
}

/// Opens the signaling websocket and waits for `joined`.
async fn enter(
    endpoint: &str,
    token: &Value,
    conference: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let (mut ws, _) = tokio_tungstenite::connect_async(endpoint)
        .await
        .expect("the /rtc websocket opens");
    ws.send(Message::text(
        json!({"type": "join", "token": token, "conference": conference}).to_string(),
    ))
    .await
    .unwrap();
    while let Some(message) = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("the SFU answers")
    {
        if let Message::Text(text) = message.unwrap() {
            let message: Value = serde_json::from_str(&text).unwrap();
            assert_ne!(message["type"], "error", "{message}");
            if message["type"] == "joined" {
                return ws;
            }
        }
    }
    panic!("the SFU closed the websocket before admitting");
}

async fn status_of(client: &reqwest::Client, url: String) -> u16 {
    client.get(url).send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn an_sfu_pod_reports_to_a_separate_api_over_its_internal_listener() {
    let data = tempfile::tempdir().unwrap();
    let (api_port, sfu_port) = (system_tests::free_port(), system_tests::free_port());
    let (api_internal, sfu_internal) = (system_tests::free_port(), system_tests::free_port());
    let secret = "a-shared-secret-of-at-least-32-bytes-for-tests";
    let mut api = Command::new(system_tests::conclave_bin());
    api.args([
        "api",
        "--listen",
        &format!("127.0.0.1:{api_port}"),
        "--internal-listen",
        &format!("127.0.0.1:{api_internal}"),
        "--sfu-endpoint",
        &format!("ws://127.0.0.1:{sfu_port}/rtc"),
    ])
    .arg("--data-dir")
    .arg(data.path())
    .env("CONCLAVE_JOIN_TOKEN_SECRET", secret)
    .env("RUST_LOG", "info")
    .env_remove("CONCLAVE_ADMIN_PASSWORD")
    .env_remove("CONCLAVE_ADMIN_PASSWORD_FILE")
    .env_remove("DATABASE_URL");
    let api_log = data.path().join("api.log");
    let api = spawn_with_output(api, api_port, std::fs::File::create(&api_log).unwrap()).await;

    // `conclave api` is a service whose output is collected: the generated admin password goes
    // to a file only its user can read, never to the output.
    let password_file = data.path().join("admin-password");
    let password = std::fs::read_to_string(&password_file).unwrap();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&password_file)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "admin-password is readable by others");
    let output = std::fs::read_to_string(&api_log).unwrap();
    assert!(
        output.contains("admin-password"),
        "the log names the file:\n{output}"
    );
    assert!(
        !output.contains(password.trim()),
        "the password reached the output"
    );

    // The SFU reads the shared secret from a file (there is no flag that would show in `ps`).
    let secret_file = data.path().join("join-token-secret");
    std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
    let sfu_args = [
        "sfu".to_owned(),
        "--sfu-listen".to_owned(),
        format!("127.0.0.1:{sfu_port}"),
        "--sfu-internal-listen".to_owned(),
        format!("127.0.0.1:{sfu_internal}"),
        "--sfu-bind-ip".to_owned(),
        "127.0.0.1".to_owned(),
        "--sfu-udp-ports".to_owned(),
        "46200-46399".to_owned(),
        "--sfu-api-url".to_owned(),
        format!("http://127.0.0.1:{api_internal}"),
        "--sfu-pod-name".to_owned(),
        "sfu-test-0".to_owned(),
        "--sfu-max-participants".to_owned(),
        "37".to_owned(),
    ];
    // Without the secret it says what to set, and does not start.
    let refused = Command::new(system_tests::conclave_bin())
        .args(&sfu_args)
        .env_remove("CONCLAVE_JOIN_TOKEN_SECRET")
        .env_remove("CONCLAVE_JOIN_TOKEN_SECRET_FILE")
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("CONCLAVE_JOIN_TOKEN_SECRET")
            && said.contains("--sfu-join-token-secret-file"),
        "{said}"
    );
    let mut sfu = Command::new(system_tests::conclave_bin());
    sfu.args(&sfu_args)
        .arg("--sfu-join-token-secret-file")
        .arg(&secret_file)
        .env_remove("CONCLAVE_JOIN_TOKEN_SECRET");
    let _sfu = spawn(sfu, sfu_port).await;

    let client = reqwest::Client::new();
    // Metrics (and the API's room reports) only on the internal listeners.
    assert_eq!(
        status_of(&client, format!("{}/metrics", api.base)).await,
        404
    );
    assert_eq!(
        status_of(&client, format!("http://127.0.0.1:{sfu_port}/metrics")).await,
        404
    );
    assert_eq!(
        status_of(&client, format!("http://127.0.0.1:{api_internal}/metrics")).await,
        200
    );
    let sfu_metrics = client
        .get(format!("http://127.0.0.1:{sfu_internal}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        sfu_metrics.contains("conclave_sfu_capacity_participants 37"),
        "{sfu_metrics}"
    );
    let (status, _) = post(
        &client,
        format!("{}/api/v1/internal/room-events", api.base),
        None,
        json!({}),
    )
    .await;
    assert_eq!(status, 404, "room reports are taken on the public listener");

    let base = api.base.clone();
    let (_, login) = post(
        &client,
        format!("{base}/api/v1/auth/login"),
        None,
        json!({"login": "admin", "password": password.trim()}),
    )
    .await;
    let token = login["sessionToken"].as_str().unwrap().to_owned();
    let (_, meeting) = post(
        &client,
        format!("{base}/api/v1/conferences/adhoc"),
        Some(&token),
        json!({}),
    )
    .await;
    let id = meeting["id"].as_str().unwrap().to_owned();
    let (status, joined) = post(
        &client,
        format!("{base}/api/v1/join"),
        None,
        json!({"meetingId": meeting["meetingId"], "password": meeting["password"], "displayName": "Guest"}),
    )
    .await;
    assert_eq!(status, 200, "{joined}");
    assert_eq!(joined["endpoint"], format!("ws://127.0.0.1:{sfu_port}/rtc"));
    let mut ws = enter(joined["endpoint"].as_str().unwrap(), &joined["token"], &id).await;
    // The SFU pod posts the join to the API's internal listener with a service token signed
    // with the shared secret.
    wait_for_participants(&client, &base, &token, &id, 1).await;
    ws.close(None).await.unwrap();
    wait_for_participants(&client, &base, &token, &id, 0).await;
}

#[tokio::test]
async fn json_logs_have_one_line_per_request_with_its_id_and_no_secrets() {
    let data = tempfile::tempdir().unwrap();
    let port = system_tests::free_port();
    let log_path = data.path().join("conclave.log");
    let mut command = Command::new(system_tests::conclave_bin());
    command
        .args(["--log-format", "json", "standalone"])
        .env("CONCLAVE_DATA_DIR", data.path())
        .env("CONCLAVE_LISTEN", format!("127.0.0.1:{port}"))
        .env("CONCLAVE_ADMIN_PASSWORD", PASSWORD)
        .env("CONCLAVE_SFU_UDP_PORTS", "46200-46299")
        .env("CONCLAVE_SIP_LISTEN", "off")
        .env("RUST_LOG", "info")
        .env_remove("DATABASE_URL")
        .env_remove("CONCLAVE_JOIN_TOKEN_SECRET")
        // Log lines go to standard output, where a cluster's collector reads them.
        .stdout(std::fs::File::create(&log_path).unwrap());
    let server = Server {
        child: command.spawn().expect("the conclave binary starts"),
        base: format!("http://127.0.0.1:{port}"),
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !system_tests::ready(port) {
        assert!(
            std::time::Instant::now() < deadline,
            "conclave did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let client = reqwest::Client::new();
    // A request ID from a proxy is kept and answered back; one is made where none came.
    let reply = client
        .post(format!("{}/api/v1/auth/login", server.base))
        .header("x-request-id", "from-the-ingress-1")
        .json(&json!({"login": "admin", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    assert_eq!(reply.headers()["x-request-id"], "from-the-ingress-1");
    let session: Value = reply.json().await.unwrap();
    // The join request's ID travels in the join token to the SFU, whose session logs it.
    let (status, meeting) = post(
        &client,
        format!("{}/api/v1/conferences/adhoc", server.base),
        session["sessionToken"].as_str(),
        json!({"topic": "Traced"}),
    )
    .await;
    assert_eq!(status, 201, "{meeting}");
    let joined: Value = client
        .post(format!("{}/api/v1/join", server.base))
        .header("x-request-id", "join-request-7")
        .json(&json!({"meetingId": meeting["meetingId"], "password": meeting["password"], "displayName": "Guest"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut ws = enter(
        joined["endpoint"].as_str().unwrap(),
        &joined["token"],
        meeting["id"].as_str().unwrap(),
    )
    .await;
    ws.close(None).await.unwrap();
    let reply = client
        .get(format!("{}/api/v1/conferences/unknown", server.base))
        .send()
        .await
        .unwrap();
    let made = reply.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(made.len(), 36, "a UUID: {made}");
    drop(server);

    let log = std::fs::read_to_string(&log_path).unwrap();
    let lines: Vec<Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let served = |id: &str| {
        lines.iter().find(|l| {
            l["message"] == "request served"
                && l["spans"]
                    .as_array()
                    .is_some_and(|spans| spans.iter().any(|s| s["request_id"] == id))
        })
    };
    let login = served("from-the-ingress-1")
        .unwrap_or_else(|| panic!("the login's line carries its request ID:\n{log}"));
    assert_eq!(login["status"], 200);
    assert_eq!(login["level"], "INFO");
    assert!(login["timestamp"].is_string());
    assert_eq!(served(&made).expect("the made ID")["status"], 401);
    let sfu_joined = lines.iter().find(|l| {
        l["message"] == "joined"
            && l["spans"].as_array().is_some_and(|spans| {
                spans
                    .iter()
                    .any(|s| s["name"] == "session" && s["request_id"] == "join-request-7")
            })
    });
    assert!(
        sfu_joined.is_some(),
        "the SFU's session logs the join request's ID:\n{log}"
    );
    assert!(
        !log.contains(PASSWORD),
        "the admin password reached the log"
    );
}

type Signal =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Sends `join` with `token` and returns the SFU's first answer that is `joined` or `error`.
async fn try_enter(endpoint: &str, token: &Value, conference: &str) -> (Signal, Value) {
    let (mut ws, _) = tokio_tungstenite::connect_async(endpoint)
        .await
        .expect("the /rtc websocket opens");
    ws.send(Message::text(
        json!({"type": "join", "token": token, "conference": conference}).to_string(),
    ))
    .await
    .unwrap();
    let answer = next_of(&mut ws, &["joined", "error"]).await;
    (ws, answer)
}

/// The next signaling message of one of `types` (others are skipped), within 15 s.
async fn next_of(ws: &mut Signal, types: &[&str]) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(15), ws.next())
            .await
            .unwrap_or_else(|_| panic!("no {types:?} within 15 s"))
            .unwrap_or_else(|| panic!("the websocket closed before {types:?}"))
            .unwrap();
        if let Message::Text(text) = message {
            let message: Value = serde_json::from_str(&text).unwrap();
            if types.iter().any(|t| message["type"] == *t) {
                return message;
            }
        }
    }
}

#[tokio::test]
async fn exclusions_and_account_changes_reach_live_sessions_and_outlive_an_sfu_restart() {
    let data = tempfile::tempdir().unwrap();
    let (api_port, sfu_port) = (system_tests::free_port(), system_tests::free_port());
    let api_internal = system_tests::free_port();
    let secret = "another-shared-secret-of-at-least-32-bytes";
    let mut api = Command::new(system_tests::conclave_bin());
    api.args([
        "api",
        "--listen",
        &format!("127.0.0.1:{api_port}"),
        "--internal-listen",
        &format!("127.0.0.1:{api_internal}"),
        "--sfu-endpoint",
        &format!("ws://127.0.0.1:{sfu_port}/rtc"),
    ])
    .arg("--data-dir")
    .arg(data.path())
    .env("CONCLAVE_JOIN_TOKEN_SECRET", secret)
    .env("CONCLAVE_ADMIN_PASSWORD", PASSWORD)
    .env_remove("CONCLAVE_ADMIN_PASSWORD_FILE")
    .env_remove("DATABASE_URL");
    let api = spawn(api, api_port).await;
    let sfu_command = || {
        let mut sfu = Command::new(system_tests::conclave_bin());
        sfu.args([
            "sfu",
            "--sfu-listen",
            &format!("127.0.0.1:{sfu_port}"),
            "--sfu-bind-ip",
            "127.0.0.1",
            "--sfu-udp-ports",
            "46400-46599",
            "--sfu-api-url",
            &format!("http://127.0.0.1:{api_internal}"),
        ])
        .env("CONCLAVE_JOIN_TOKEN_SECRET", secret);
        sfu
    };
    let sfu = spawn(sfu_command(), sfu_port).await;

    let client = reqwest::Client::new();
    let base = api.base.clone();
    let login = |name: &'static str, password: &'static str| {
        let (client, base) = (client.clone(), base.clone());
        async move {
            let (status, body) = post(
                &client,
                format!("{base}/api/v1/auth/login"),
                None,
                json!({"login": name, "password": password}),
            )
            .await;
            assert_eq!(status, 200, "{body}");
            body["sessionToken"].as_str().unwrap().to_owned()
        }
    };
    let admin = login("admin", PASSWORD).await;
    let (status, mia) = post(
        &client,
        format!("{base}/api/v1/users"),
        Some(&admin),
        json!({"login": "mia", "displayName": "Mia", "email": "mia@example.org", "level": "audience",
               "password": "password-of-mia", "timeZone": "Europe/Berlin"}),
    )
    .await;
    assert_eq!(status, 201, "{mia}");
    let mia_id = mia["id"].as_str().unwrap().to_owned();
    let mia_session = login("mia", "password-of-mia").await;
    let (_, meeting) = post(
        &client,
        format!("{base}/api/v1/conferences/adhoc"),
        Some(&admin),
        json!({}),
    )
    .await;
    let id = meeting["id"].as_str().unwrap().to_owned();
    let join = |session: Option<String>, body: Value| {
        let (client, base) = (client.clone(), base.clone());
        async move {
            post(
                &client,
                format!("{base}/api/v1/join"),
                session.as_deref(),
                body,
            )
            .await
        }
    };
    let with_password = json!({"meetingId": meeting["meetingId"], "password": meeting["password"]});
    let endpoint = format!("ws://127.0.0.1:{sfu_port}/rtc");

    let (_, owner_ticket) = join(
        Some(admin.clone()),
        json!({"meetingId": meeting["meetingId"]}),
    )
    .await;
    let (mut owner, joined) = try_enter(&endpoint, &owner_ticket["token"], &id).await;
    assert_eq!(joined["type"], "joined", "{joined}");
    let (status, mia_ticket) = join(Some(mia_session.clone()), with_password.clone()).await;
    assert_eq!(status, 200, "{mia_ticket}");
    let (mut mia_ws, joined) = try_enter(&endpoint, &mia_ticket["token"], &id).await;
    assert_eq!(joined["type"], "joined", "{joined}");
    let mut guest_body = with_password.clone();
    guest_body["displayName"] = json!("Gus");
    guest_body["guestId"] = json!("9d6c1c8e-3a4b-4f2e-8d1c-5b7a6e9f0c55");
    let (status, guest_ticket) = join(None, guest_body.clone()).await;
    assert_eq!(status, 200, "{guest_ticket}");
    let (mut guest_ws, joined) = try_enter(&endpoint, &guest_ticket["token"], &id).await;
    assert_eq!(joined["type"], "joined", "{joined}");
    let guest_participant = joined["you"].clone();

    // An administrator makes Mia a moderator: her session closes at once (`revoked`), her old
    // token is refused, and joining again gives her the new role.
    let reply = client
        .patch(format!("{base}/api/v1/users/{mia_id}"))
        .bearer_auth(&admin)
        .json(&json!({"level": "moderator"}))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    let closed = next_of(&mut mia_ws, &["closed"]).await;
    assert_eq!(closed["reason"], "revoked", "{closed}");
    let (_, refused) = try_enter(&endpoint, &mia_ticket["token"], &id).await;
    assert_eq!(refused["code"], "revoked", "{refused}");
    let (_, mia_ticket) = join(Some(mia_session.clone()), with_password.clone()).await;
    assert_eq!(mia_ticket["role"], "moderator", "{mia_ticket}");
    let (mia_ws, joined) = try_enter(&endpoint, &mia_ticket["token"], &id).await;
    assert_eq!(joined["role"], "moderator", "{joined}");

    // The owner excludes the guest.
    owner
        .send(Message::text(
            json!({"type": "exclude", "participant": guest_participant}).to_string(),
        ))
        .await
        .unwrap();
    let closed = next_of(&mut guest_ws, &["closed"]).await;
    assert_eq!(closed["reason"], "excluded", "{closed}");

    // The pod reports the exclusion; from then on the API refuses the guest a new token.
    let mut refused = Value::Null;
    for _ in 0..100 {
        let (status, body) = join(None, guest_body.clone()).await;
        if status == 403 {
            refused = body;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(refused["error"]["code"], "excluded", "{refused}");

    // The SFU restarts (killed, as a node is lost): the guest's unexpired token is still
    // refused.
    drop(owner);
    drop(mia_ws);
    drop(sfu);
    let _sfu = spawn(sfu_command(), sfu_port).await;
    let (_, refused) = try_enter(&endpoint, &guest_ticket["token"], &id).await;
    assert_eq!(refused["code"], "excluded", "{refused}");

    // Disabling Mia takes her out of the meeting and keeps her out.
    let (_, mia_ticket) = join(Some(mia_session.clone()), with_password.clone()).await;
    let (mut mia_ws, joined) = try_enter(&endpoint, &mia_ticket["token"], &id).await;
    assert_eq!(joined["type"], "joined", "{joined}");
    let reply = client
        .patch(format!("{base}/api/v1/users/{mia_id}"))
        .bearer_auth(&admin)
        .json(&json!({"disabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    let closed = next_of(&mut mia_ws, &["closed"]).await;
    assert_eq!(closed["reason"], "revoked", "{closed}");
    let (status, _) = join(Some(mia_session), with_password).await;
    assert_eq!(status, 401, "a disabled account's login is over");
}

/// The venv's Python with `openapi-spec-validator` (scripts/test.sh installs it); a missing one
/// fails the test with what to run.
fn python_with_openapi_validator() -> std::path::PathBuf {
    let python = system_tests::venv_program("python");
    let ok = Command::new(&python)
        .args(["-c", "import openapi_spec_validator"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{} with openapi-spec-validator is required (CONCLAVE_TEST_PYTHON names it); run scripts/test.sh, which installs it",
        python.display()
    );
    python
}

#[tokio::test]
async fn the_served_openapi_document_passes_a_real_validator() {
    let python = python_with_openapi_validator();
    let data = tempfile::tempdir().unwrap();
    let port = system_tests::free_port();
    let mut command = Command::new(system_tests::conclave_bin());
    command
        .arg("standalone")
        .env("CONCLAVE_DATA_DIR", data.path())
        .env("CONCLAVE_LISTEN", format!("127.0.0.1:{port}"))
        .env("CONCLAVE_ADMIN_PASSWORD", PASSWORD)
        .env("CONCLAVE_SFU_UDP_PORTS", "46300-46349")
        .env("CONCLAVE_SIP_LISTEN", "off")
        .env_remove("DATABASE_URL")
        .env_remove("CONCLAVE_JOIN_TOKEN_SECRET");
    let server = spawn(command, port).await;
    let reply = reqwest::get(format!("{}/api/v1/openapi.json", server.base))
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    let document = reply.text().await.unwrap();
    let path = data.path().join("openapi.json");
    std::fs::write(&path, &document).unwrap();
    let output = Command::new(&python)
        .args(["-m", "openapi_spec_validator", "--errors", "all"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "openapi-spec-validator refused the served document:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // Every answer says what it means (OpenAPI requires a description; an empty one says
    // nothing either).
    let document: Value = serde_json::from_str(&document).unwrap();
    let mut missing = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            for (status, response) in operation["responses"].as_object().into_iter().flatten() {
                if response["description"].as_str().is_none_or(str::is_empty) {
                    missing.push(format!("{method} {path} {status}"));
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "responses without a description: {missing:?}"
    );
}

// --- the embedded SIP gateway ----------------------------------------------------------------------
// These run in a network namespace of their own (only `lo`, see `loadgen::netns`), so that 5060
// is theirs: free before the start, and held by nothing else while they look.

/// Starts `conclave standalone` with `sip_args`, waits until it is ready (or panics with its
/// standard error), and returns it with its HTTP port.
async fn standalone_with_sip(data: &std::path::Path, sip_args: &[&str]) -> (Server, u16) {
    let port = system_tests::free_port();
    let mut command = Command::new(system_tests::conclave_bin());
    command
        .arg("standalone")
        .args(sip_args)
        .env("CONCLAVE_DATA_DIR", data)
        .env("CONCLAVE_LISTEN", format!("127.0.0.1:{port}"))
        .env("CONCLAVE_ADMIN_PASSWORD", PASSWORD)
        .env("CONCLAVE_SFU_UDP_PORTS", "46500-46549")
        .env_remove("CONCLAVE_SIP_LISTEN")
        .env_remove("DATABASE_URL")
        .env_remove("CONCLAVE_JOIN_TOKEN_SECRET");
    (spawn(command, port).await, port)
}

/// Sends one SIP OPTIONS with sipp (Debian `sip-tester`) to `target` over `transport` (`u1`
/// for UDP, `t1` for TCP) with the scenario the gateway's own tests use, which expects 200 and
/// the gateway's `Allow`. Returns sipp's verdict and what it saw.
fn sipp_options(target: &str, transport: &str, local_port: u16) -> (bool, String) {
    let scenario = system_tests::repository().join("sip/tests/scenarios/options.xml");
    let dir = tempfile::tempdir().unwrap();
    let messages = dir.path().join("messages.log");
    let errors = dir.path().join("errors.log");
    let output = Command::new("sipp")
        .arg(target)
        .arg("-sf")
        .arg(&scenario)
        .args(["-m", "1", "-t", transport, "-i", "127.0.0.1"])
        .args(["-p", &local_port.to_string()])
        .args(["-nostdin", "-timeout", "10s", "-timeout_error"])
        .args(["-trace_msg", "-message_file"])
        .arg(&messages)
        .args(["-trace_err", "-error_file"])
        .arg(&errors)
        .current_dir(dir.path())
        .output()
        .unwrap_or_else(|err| {
            panic!("sipp is needed (apt-get install -y sip-tester; scripts/test.sh does): {err}")
        });
    let seen = format!(
        "status {}\n--- errors\n{}\n--- messages\n{}",
        output.status,
        std::fs::read_to_string(&errors).unwrap_or_default(),
        std::fs::read_to_string(&messages).unwrap_or_default()
    );
    (output.status.success(), seen)
}

/// Whether UDP and TCP port `port` can be bound on `ip` right now.
fn bindable(ip: &str, port: u16) -> (bool, bool) {
    (
        std::net::UdpSocket::bind((ip, port)).is_ok(),
        std::net::TcpListener::bind((ip, port)).is_ok(),
    )
}

fn in_own_network<F: std::future::Future<Output = ()>>(test: impl FnOnce() -> F) {
    if !loadgen::netns::isolate() {
        return;
    }
    tokio::runtime::Runtime::new().unwrap().block_on(test());
}

#[test]
fn standalone_answers_a_sip_peer_on_5060_over_udp_and_tcp_by_default() {
    in_own_network(|| async {
        assert_eq!(bindable("127.0.0.1", 5060), (true, true), "5060 is free");
        let data = tempfile::tempdir().unwrap();
        let (_server, port) = standalone_with_sip(data.path(), &[]).await;
        // The gateway holds 5060 on the portal's address, UDP and TCP.
        assert_eq!(bindable("127.0.0.1", 5060), (false, false));
        for (transport, local) in [("u1", 5081), ("t1", 5082)] {
            let (ok, seen) = sipp_options("127.0.0.1:5060", transport, local);
            assert!(ok, "OPTIONS over {transport} got no 200:\n{seen}");
            assert!(seen.contains("SIP/2.0 200"), "{seen}");
        }
        // Its metrics are on the process's own /metrics.
        let (status, metrics) = system_tests::http_get(port, "/metrics").unwrap();
        assert_eq!(status, 200);
        assert!(
            metrics.contains("conclave_sip_calls_active 0"),
            "no gateway metrics on /metrics:\n{metrics}"
        );
        assert!(metrics.contains("conclave_sfu_"), "{metrics}");
    });
}

#[test]
fn standalone_takes_the_sip_options_of_conclave_sip() {
    in_own_network(|| async {
        let data = tempfile::tempdir().unwrap();
        let (_server, _) = standalone_with_sip(
            data.path(),
            &[
                "--sip-listen",
                "127.0.0.1:5070",
                "--sip-rtp-ports",
                "42000-42009",
                "--sip-allow-from",
                "192.0.2.0/24",
            ],
        )
        .await;
        assert_eq!(bindable("127.0.0.1", 5060), (true, true), "not on 5060");
        assert_eq!(bindable("127.0.0.1", 5070), (false, false));
        let (ok, seen) = sipp_options("127.0.0.1:5070", "u1", 5083);
        assert!(ok, "{seen}");
    });
}

#[test]
fn with_sip_listen_off_nothing_listens_on_5060() {
    in_own_network(|| async {
        let data = tempfile::tempdir().unwrap();
        let (_server, port) = standalone_with_sip(data.path(), &["--sip-listen", "off"]).await;
        for ip in ["127.0.0.1", "0.0.0.0"] {
            assert_eq!(bindable(ip, 5060), (true, true), "5060 is held on {ip}");
        }
        let (_, metrics) = system_tests::http_get(port, "/metrics").unwrap();
        assert!(!metrics.contains("conclave_sip_"), "{metrics}");
    });
}

#[test]
fn a_taken_sip_port_stops_the_start_and_names_the_option_to_change() {
    in_own_network(|| async {
        // Another SIP server (a PBX) already has 5060.
        let _pbx = std::net::UdpSocket::bind("127.0.0.1:5060").unwrap();
        let data = tempfile::tempdir().unwrap();
        let port = system_tests::free_port();
        let mut child = Command::new(system_tests::conclave_bin())
            .arg("standalone")
            .env("CONCLAVE_DATA_DIR", data.path())
            .env("CONCLAVE_LISTEN", format!("127.0.0.1:{port}"))
            .env("CONCLAVE_ADMIN_PASSWORD", PASSWORD)
            .env("CONCLAVE_SFU_UDP_PORTS", "46550-46599")
            .env("RUST_LOG", "off")
            .env_remove("CONCLAVE_SIP_LISTEN")
            .env_remove("DATABASE_URL")
            .env_remove("CONCLAVE_JOIN_TOKEN_SECRET")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("conclave kept running although 5060 is taken");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let mut stderr = String::new();
        use std::io::Read;
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        assert!(!status.success());
        assert!(
            stderr.contains("127.0.0.1:5060") && stderr.contains("--sip-listen"),
            "the error names the address and the option:\n{stderr}"
        );
        assert!(stderr.contains("--sip-listen off"), "{stderr}");
    });
}

//! Meetings a caller cannot enter yet, or any more, with real calls (sipp): a meeting that
//! opens in two hours is "not active" (then "try again", "bye" and the gateway hangs up); a
//! meeting that opens in a few seconds is waited for on the line and entered when it opens; a
//! full meeting is "conference full" and "bye".

mod support;
#[path = "support/api.rs"]
mod test_api;

use serde_json::json;
use support::{TestGateway, config, init_tracing, scenario, sipp};

#[test]
fn meetings_not_open_or_full_are_told() {
    if !loadgen::netns::isolate() {
        return;
    }
    init_tracing();
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(async {
            let api = test_api::Api::start_with_sfu().await;
            let gateway = TestGateway::start(config(&api.url)).await;
            let dir = tempfile::tempdir().expect("tempdir");
            let now = chrono::Utc::now();
            let dialled = |conference: &serde_json::Value| {
                format!(
                    "{}*{}",
                    conference["meetingId"].as_str().expect("an ID"),
                    conference["password"].as_str().expect("a password")
                )
            };
            let prompt = |name: &str| {
                gateway.metric("conclave_sip_prompt_plays_total", Some(("prompt", name)))
            };

            // In two hours: not active.
            let later = api
                .schedule(json!({
                    "topic": "Later",
                    "start": (now + chrono::Duration::hours(2)).to_rfc3339(),
                    "durationMinutes": 30,
                    "allowJoinWithoutOwner": true,
                }))
                .await;
            let call = scenario(
                dir.path(),
                "told-and-hung-up.xml",
                &[("DIALLED", &dialled(&later))],
            );
            sipp(&call, "u1", 5080).await.assert_success();
            assert_eq!(
                gateway.metric("conclave_sip_calls_total", Some(("outcome", "notActive"))),
                1.0
            );
            for name in ["not-active", "try-again", "bye"] {
                assert_eq!(prompt(name), 1.0, "{name}");
            }

            // Opens in a few seconds (the API's lead time is 5 minutes): the caller waits on
            // the line and enters.
            let soon = api
                .schedule(json!({
                    "topic": "Soon",
                    "start": (chrono::Utc::now() + chrono::Duration::seconds(5 * 60 + 5))
                        .to_rfc3339(),
                    "durationMinutes": 30,
                    "allowJoinWithoutOwner": true,
                }))
                .await;
            let (meeting_id, password) = dialled(&soon)
                .split_once('*')
                .map(|(a, b)| (a.to_owned(), b.to_owned()))
                .expect("id*password");
            let call = scenario(
                dir.path(),
                "voice.xml",
                &[
                    ("MEETING_ID", &meeting_id),
                    ("PASSWORD", &password),
                    ("MEDIA_PORT", "47050"),
                    ("MILLISECONDS", "14000"),
                ],
            );
            let waiting = tokio::spawn(async move { sipp(&call, "u1", 5090).await });
            gateway
                .wait_for_at_least(
                    "conclave_sip_prompt_plays_total",
                    ("prompt", "not-active"),
                    2.0,
                )
                .await;
            gateway
                .wait_for_at_least("conclave_sip_calls_total", ("outcome", "joined"), 1.0)
                .await;
            assert_eq!(
                prompt("try-again"),
                1.0,
                "the waiting caller was not sent away"
            );
            waiting.await.expect("sipp").assert_success();

            // Full: two seats (the least a meeting has), both taken.
            let full = api
                .schedule(json!({
                    "topic": "Full",
                    "start": (now + chrono::Duration::minutes(1)).to_rfc3339(),
                    "durationMinutes": 30,
                    "maxParticipants": 2,
                    "allowJoinWithoutOwner": true,
                }))
                .await;
            let mut seated = Vec::new();
            for name in ["First", "Second"] {
                let joined = api.join_to(&full, name).await;
                let conference: proto::ConferenceId =
                    serde_json::from_value(joined["conference"]["id"].clone()).expect("an ID");
                let client = loadgen::Client::join_url(
                    joined["endpoint"].as_str().expect("an endpoint"),
                    joined["token"].as_str().expect("a token"),
                    &conference,
                )
                .await
                .expect("a guest joins");
                assert!(client.id().is_some(), "admitted: {:?}", client.first);
                seated.push(client);
            }
            let call = scenario(
                dir.path(),
                "told-and-hung-up.xml",
                &[("DIALLED", &dialled(&full))],
            );
            sipp(&call, "u1", 5080).await.assert_success();
            assert_eq!(prompt("conference-full"), 1.0);
            assert_eq!(
                gateway.metric("conclave_sip_calls_total", Some(("outcome", "full"))),
                1.0
            );
            assert_eq!(
                gateway.metric("conclave_sip_calls_total", Some(("outcome", "joined"))),
                1.0,
                "only the caller who waited for the opening got in"
            );
            assert_eq!(prompt("bye"), 2.0);
            for client in seated {
                client.leave().await;
            }
            gateway.gateway.stop().await;
        });
}

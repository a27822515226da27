//! The happy path with a real conference service: the caller dials the general address,
//! types the meeting ID with RFC 4733 events, is asked for the password (the API does not say
//! whether an ID exists), types it (the last `#` by SIP INFO) and is admitted; a second
//! caller dials `sip:<id>*<password>@…` over TCP and is admitted without a question.

mod support;
#[path = "support/api.rs"]
mod test_api;

use support::{TestGateway, config, init_tracing, scenario, sipp};

#[test]
fn a_caller_joins_with_keypad_digits() {
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
            let join = scenario(
                dir.path(),
                "join.xml",
                &[("MEETING_ID", &api.meeting_id), ("PASSWORD", &api.password)],
            );
            let run = sipp(&join, "u1", 5080).await;
            run.assert_success();

            gateway
                .wait_for("conclave_sip_calls_total", Some(("outcome", "joined")), 1.0)
                .await;
            gateway
                .wait_for("conclave_sip_calls_active", None, 0.0)
                .await;
            let digits = (api.meeting_id.len() + 1 + api.password.len()) as f64;
            assert_eq!(
                gateway.metric(
                    "conclave_sip_dtmf_digits_total",
                    Some(("method", "rfc4733"))
                ),
                digits
            );
            assert_eq!(
                gateway.metric("conclave_sip_dtmf_digits_total", Some(("method", "info"))),
                1.0
            );
            for prompt in ["welcome", "enter-password", "correct-id"] {
                assert_eq!(
                    gateway.metric("conclave_sip_prompt_plays_total", Some(("prompt", prompt))),
                    1.0,
                    "{prompt}"
                );
            }
            assert_eq!(
                gateway.metric(
                    "conclave_sip_prompt_plays_total",
                    Some(("prompt", "incorrect-id"))
                ),
                0.0
            );
            assert_eq!(
                gateway.metric("conclave_sip_calls_total", Some(("outcome", "abandoned"))),
                0.0
            );

            // sip:<id>*<password>@… skips both questions.
            let direct = scenario(
                dir.path(),
                "direct.xml",
                &[("MEETING_ID", &api.meeting_id), ("PASSWORD", &api.password)],
            );
            sipp(&direct, "t1", 5082).await.assert_success();
            gateway
                .wait_for("conclave_sip_calls_total", Some(("outcome", "joined")), 2.0)
                .await;
            gateway
                .wait_for("conclave_sip_calls_active", None, 0.0)
                .await;
            let plays = |prompt| {
                gateway.metric("conclave_sip_prompt_plays_total", Some(("prompt", prompt)))
            };
            assert_eq!(
                (
                    plays("welcome"),
                    plays("enter-password"),
                    plays("correct-id")
                ),
                (1.0, 1.0, 2.0)
            );
            gateway.gateway.stop().await;
        });
}

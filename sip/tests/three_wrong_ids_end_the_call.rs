//! Three entries that cannot be meeting IDs: "Incorrect ID" each time, then "Try again" and
//! "Bye", and the gateway hangs up (sipp waits for our BYE).

mod support;

use support::{TestGateway, config, init_tracing, scenario, sipp};

#[test]
fn three_wrong_ids_end_the_call() {
    if !loadgen::netns::isolate() {
        return;
    }
    init_tracing();
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(async {
            // No API: IDs of the wrong shape are refused without asking it.
            let gateway = TestGateway::start(config("http://127.0.0.1:9")).await;
            let dir = tempfile::tempdir().expect("tempdir");
            let run = sipp(&scenario(dir.path(), "wrong-ids.xml", &[]), "u1", 5080).await;
            run.assert_success();
            assert!(
                run.messages.contains("BYE sip:"),
                "the gateway hung up:\n{}",
                run.messages
            );

            gateway
                .wait_for("conclave_sip_calls_active", None, 0.0)
                .await;
            let plays = |prompt| {
                gateway.metric("conclave_sip_prompt_plays_total", Some(("prompt", prompt)))
            };
            assert_eq!(plays("incorrect-id"), 3.0);
            assert_eq!(plays("try-again"), 1.0);
            assert_eq!(plays("bye"), 1.0);
            assert_eq!(plays("correct-id"), 0.0);
            assert_eq!(
                gateway.metric("conclave_sip_calls_total", Some(("outcome", "wrongId"))),
                1.0
            );
            assert_eq!(
                gateway.metric(
                    "conclave_sip_dtmf_digits_total",
                    Some(("method", "rfc4733"))
                ),
                9.0
            );
            gateway.gateway.stop().await;
        });
}

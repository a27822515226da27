//! The caller gives up while the gateway rings: 200 to the CANCEL, 487 to the INVITE, no
//! answer afterwards, and the call counts as abandoned.

mod support;

use support::{TestGateway, config, init_tracing, scenario, sipp};

#[test]
fn a_call_cancelled_while_ringing_is_answered_487() {
    if !loadgen::netns::isolate() {
        return;
    }
    init_tracing();
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(async {
            let mut config = config("http://127.0.0.1:9");
            config.answer_delay_ms = 2000;
            let gateway = TestGateway::start(config).await;
            let dir = tempfile::tempdir().expect("tempdir");
            let run = sipp(&scenario(dir.path(), "cancel.xml", &[]), "u1", 5080).await;
            run.assert_success();
            gateway
                .wait_for(
                    "conclave_sip_calls_total",
                    Some(("outcome", "abandoned")),
                    1.0,
                )
                .await;
            gateway
                .wait_for("conclave_sip_calls_active", None, 0.0)
                .await;
            // Past the ring time: nothing was answered after the CANCEL.
            tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
            assert_eq!(
                gateway.metric(
                    "conclave_sip_prompt_plays_total",
                    Some(("prompt", "welcome"))
                ),
                0.0
            );
            gateway.gateway.stop().await;
        });
}

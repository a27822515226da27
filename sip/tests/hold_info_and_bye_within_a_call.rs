//! Within a call: a digit by SIP INFO is taken, a re-INVITE putting the call on hold is
//! answered `recvonly` and taking it back `sendrecv`, and the caller's BYE ends it.

mod support;

use support::{TestGateway, config, init_tracing, scenario, sipp};

#[test]
fn hold_info_and_bye_within_a_call() {
    if !loadgen::netns::isolate() {
        return;
    }
    init_tracing();
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(async {
            let gateway = TestGateway::start(config("http://127.0.0.1:9")).await;
            let dir = tempfile::tempdir().expect("tempdir");
            for (transport, port) in [("u1", 5080), ("t1", 5082)] {
                sipp(&scenario(dir.path(), "hold.xml", &[]), transport, port)
                    .await
                    .assert_success();
            }
            gateway
                .wait_for("conclave_sip_calls_active", None, 0.0)
                .await;
            assert_eq!(
                gateway.metric("conclave_sip_dtmf_digits_total", Some(("method", "info"))),
                2.0
            );
            assert_eq!(
                gateway.metric("conclave_sip_calls_total", Some(("outcome", "abandoned"))),
                2.0
            );
            gateway.gateway.stop().await;
        });
}

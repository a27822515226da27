//! A closed gateway answers callers outside its trunks 403; an open one lets a source start
//! only so many calls a minute (503), trunks excepted.

mod support;

use support::{TestGateway, config, init_tracing, scenario, sipp};

#[test]
fn strangers_and_floods_are_refused() {
    if !loadgen::netns::isolate() {
        return;
    }
    init_tracing();
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(async {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut closed = config("http://127.0.0.1:9");
            closed.open = false;
            let gateway = TestGateway::start(closed).await;
            let forbidden = scenario(dir.path(), "refused.xml", &[("STATUS", "403")]);
            sipp(&forbidden, "u1", 5080).await.assert_success();
            assert_eq!(
                gateway.metric(
                    "conclave_sip_calls_refused_total",
                    Some(("reason", "forbidden"))
                ),
                1.0
            );
            gateway.gateway.stop().await;

            let mut open = config("http://127.0.0.1:9");
            open.calls_per_minute = 1;
            let gateway = TestGateway::start(open).await;
            // The first call from this address passes the limit (and is refused for its
            // body, which is checked later); the second is over the limit.
            let first = scenario(dir.path(), "bad-sdp.xml", &[("STATUS", "400")]);
            sipp(&first, "u1", 5082).await.assert_success();
            let busy = scenario(dir.path(), "refused.xml", &[("STATUS", "503")]);
            let second = sipp(&busy, "u1", 5084).await;
            second.assert_success();
            assert_eq!(
                gateway.metric(
                    "conclave_sip_calls_refused_total",
                    Some(("reason", "rateLimited"))
                ),
                1.0
            );
            gateway.gateway.stop().await;
        });
}

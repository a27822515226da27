//! A body that is not SDP is answered 400 (over UDP and TCP), an offer of codecs we do not
//! speak 488, an INVITE without Contact 400; what the SIP stack cannot parse at all (junk, no Call-ID) it
//! drops without an answer, harmlessly: OPTIONS still gets 200 + Allow afterwards.

mod support;

use support::{GATEWAY, TestGateway, config, init_tracing, scenario, sipp};

#[test]
fn malformed_requests_are_refused_and_harmless() {
    if !loadgen::netns::isolate() {
        return;
    }
    init_tracing();
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(async {
            let gateway = TestGateway::start(config("http://127.0.0.1:9")).await;
            let dir = tempfile::tempdir().expect("tempdir");
            let bad = scenario(dir.path(), "bad-sdp.xml", &[("STATUS", "400")]);
            sipp(&bad, "u1", 5080).await.assert_success();
            sipp(&bad, "t1", 5082).await.assert_success();
            let unknown_codecs = scenario(dir.path(), "no-codec.xml", &[("STATUS", "488")]);
            sipp(&unknown_codecs, "u1", 5084).await.assert_success();
            let no_contact = scenario(dir.path(), "no-contact.xml", &[("STATUS", "400")]);
            sipp(&no_contact, "u1", 5088).await.assert_success();

            // Garbage, a truncated request, and a request line without headers.
            let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
                .await
                .expect("bind");
            for junk in [
                &b"\x00\x01\x02garbage"[..],
                b"INVITE sip:x@127.0.0.1 SIP/2.0\r\nVia: nonsense\r\n",
                b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\n\r\n",
            ] {
                socket.send_to(junk, GATEWAY).await.expect("send");
            }
            let options = scenario(dir.path(), "options.xml", &[]);
            sipp(&options, "u1", 5086).await.assert_success();

            let refused = |reason| {
                gateway.metric("conclave_sip_calls_refused_total", Some(("reason", reason)))
            };
            assert_eq!(refused("badSdp"), 2.0);
            assert_eq!(refused("noCommonCodec"), 1.0);
            assert_eq!(refused("badRequest"), 1.0);
            assert_eq!(gateway.metric("conclave_sip_calls_active", None), 0.0);
            gateway.gateway.stop().await;
        });
}

//! Every copy the forwarder hands to a subscriber's connection is matched with its departure
//! from that connection's queue: `conclave_sfu_subscriber_queue_seconds` counts about as many
//! packets as were forwarded, most waited a short while, every packet the forwarder got is
//! known by when it reached the pod, and nothing is dropped as late unless a packet did wait
//! past the limit. (The test runs alone: see .config/nextest.toml.) (When the match fails, the SFU could never tell that a connection falls
//! behind, nor shed its packets.)

mod support;

use proto::Role;
use proto::signal::TrackSource;
use support::{WAIT, claims, ports, start};

/// The value of the sample `name` (with its labels, as exposed) in a text exposition.
fn sample(exposition: &str, name: &str) -> f64 {
    exposition
        .lines()
        .find_map(|line| {
            line.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample {name} in\n{exposition}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_connections_queue_is_measured() {
    if !loadgen::netns::isolate() {
        return;
    }
    let sfu = start(ports()).await;
    let ada = sfu.join(&claims("ada", Role::Moderator, true)).await;
    let bob = sfu.join(&claims("bob", Role::Listener, false)).await;
    let cyd = sfu.join(&claims("cyd", Role::Listener, false)).await;
    ada.publish(
        &[TrackSource::Microphone, TrackSource::Camera],
        loadgen::MediaPlan::default(),
    )
    .await
    .expect("publish");
    let ada_id = ada.id().expect("ada").to_string();
    for client in [&bob, &cyd] {
        client
            .wait_received(WAIT, |r| {
                r.values()
                    .filter(|t| t.publisher == ada_id && t.packets > 200)
                    .count()
                    == 2
            })
            .await
            .expect("media flows to both");
    }

    let metrics = sfu.metrics();
    let forwarded = sample(
        &metrics,
        r#"conclave_sfu_rtp_packets_total{direction="out",kind="audio"}"#,
    ) + sample(
        &metrics,
        r#"conclave_sfu_rtp_packets_total{direction="out",kind="video"}"#,
    );
    let departed = sample(&metrics, "conclave_sfu_subscriber_queue_seconds_count");
    let waited = sample(&metrics, "conclave_sfu_subscriber_queue_seconds_sum");
    assert!(forwarded >= 800.0, "{forwarded} packets forwarded");
    // A few may still wait in the queues as the metrics are read, or be on their way out: a
    // round's departures are noted before its copies are sent and counted as forwarded.
    assert!(
        (departed - forwarded).abs() <= 64.0,
        "{departed} departures for {forwarded} packets handed over"
    );
    // Every copy went the direct way (the connections have ports of their own), and each
    // stream got its sender reports.
    let direct = |what: &str| {
        sample(
            &metrics,
            &format!(r#"conclave_sfu_direct_datagrams_total{{what="{what}"}}"#),
        )
    };
    assert!(
        direct("media") >= forwarded - 64.0,
        "{} of {forwarded} packets sent directly",
        direct("media")
    );
    assert!(
        direct("sender_report") >= 4.0,
        "{} sender reports for two subscribers of two streams",
        direct("sender_report")
    );
    let within = |limit: &str| {
        sample(
            &metrics,
            &format!(r#"conclave_sfu_subscriber_queue_seconds_bucket{{le="{limit}"}}"#),
        )
    };
    // Most packets leave at once; a stall of the machine (the suite runs beside other tests)
    // may hold some, but not the average packet.
    assert!(
        within("0.05") >= departed / 2.0,
        "only {} of {departed} packets left within 50 ms (they waited {} s on average)",
        within("0.05"),
        waited / departed
    );
    // Each packet of the publisher is known by when it reached the pod (the kernel's receive
    // timestamp, through webrtc-rs): the forwarder measured, for about every packet it got,
    // a wait that is not nothing and, on a machine that keeps up, short.
    let received = |kind: &str| {
        sample(
            &metrics,
            &format!(r#"conclave_sfu_rtp_packets_total{{direction="in",kind="{kind}"}}"#),
        )
    };
    let receive_wait = |kind: &str, series: &str| {
        sample(
            &metrics,
            &format!(r#"conclave_sfu_receive_wait_seconds_{series}{{kind="{kind}"}}"#),
        )
    };
    let receive_wait_within = |kind: &str, limit: &str| {
        sample(
            &metrics,
            &format!(r#"conclave_sfu_receive_wait_seconds_bucket{{kind="{kind}",le="{limit}"}}"#),
        )
    };
    for kind in ["audio", "video"] {
        let (count, sum) = (receive_wait(kind, "count"), receive_wait(kind, "sum"));
        // (The metrics may be read while a packet is between the two counts.)
        assert!(
            (count - received(kind)).abs() <= 1.0,
            "{count} waits measured for {} {kind} packets received",
            received(kind)
        );
        assert!(
            sum > 0.0,
            "no {kind} packet was found by its arrival (the kernel's timestamps are lost)"
        );
        assert!(
            receive_wait_within(kind, "0.05") >= count / 2.0,
            "only {} of {count} {kind} packets reached the forwarder within 50 ms",
            receive_wait_within(kind, "0.05")
        );
    }
    // A copy is shed as late only while the connection's oldest copy has waited past the
    // video limit (200 ms) — that copy departs later and is measured — or when what it waited
    // before the forwarder got it leaves less than that copy waited. So late drops without
    // a departure past the limit nor a packet that reached the forwarder late mean the SFU
    // misjudged a connection that kept up.
    let waited_past_limit = departed - within("0.2");
    for kind in ["audio", "video"] {
        let late = sample(
            &metrics,
            &format!(r#"conclave_sfu_rtp_packets_dropped_total{{kind="{kind}",reason="late"}}"#),
        );
        let reached_late = receive_wait(kind, "count") - receive_wait_within(kind, "0.01");
        assert!(
            late == 0.0 || waited_past_limit > 0.0 || reached_late > 0.0,
            "{late} {kind} copies shed as late, yet no packet waited 200 ms in a queue nor 10 ms \
             before the forwarder"
        );
    }
    for client in [ada, bob, cyd] {
        client.leave().await;
    }
}

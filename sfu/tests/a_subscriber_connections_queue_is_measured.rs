//! Every copy the forwarder hands to a subscriber's connection is matched with its departure
//! from that connection's queue: `conclave_sfu_subscriber_queue_seconds` counts about as many
//! packets as were forwarded, they waited a short while on an idle machine, and nothing is
//! dropped as late. (When the match fails, the SFU could never tell that a connection falls
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
    // A few may still wait in the queues as the metrics are read.
    assert!(
        departed <= forwarded && departed >= forwarded - 64.0,
        "{departed} departures for {forwarded} packets handed over"
    );
    assert!(
        waited / departed < 0.05,
        "packets waited {} s on average",
        waited / departed
    );
    for kind in ["audio", "video"] {
        assert_eq!(
            sample(
                &metrics,
                &format!(
                    r#"conclave_sfu_rtp_packets_dropped_total{{kind="{kind}",reason="late"}}"#
                )
            ),
            0.0
        );
    }
    for client in [ada, bob, cyd] {
        client.leave().await;
    }
}

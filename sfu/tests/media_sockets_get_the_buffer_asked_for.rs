//! Every media socket of the SFU asks the kernel for `--sfu-udp-buffer-bytes` each way (the
//! buffer that holds publishers' bursts while the pod is short of CPU): a publisher's
//! connection gets what the kernel grants for the size asked — twice the size, as Linux reports
//! it, capped by `net.core.rmem_max` — and the kernel's drops at the sockets are exported.

mod support;

use proto::Role;
use proto::signal::TrackSource;
use support::{
    SECRET, claims, metric_value, net_core, ports, receives_audio_and_video, start_with,
};

/// The value of a series of the SFU's metrics, as an integer.
fn value(metrics: &str, series: &str) -> i64 {
    metric_value(metrics, series) as i64
}

/// What Linux reports for a socket asked for `bytes`: twice the size, at most `rmem_max`'s.
fn granted(bytes: i64, sysctl: &str) -> i64 {
    2 * bytes.min(net_core(sysctl) as i64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_sockets_get_the_buffer_asked_for() {
    if !loadgen::netns::isolate() {
        return;
    }
    let asked: i64 = 1 << 20;
    let mut config = sfu::Config::for_loopback(SECRET, ports());
    config.udp_buffer_bytes = u32::try_from(asked).expect("size");
    let sfu = start_with(config).await;
    let metrics = sfu.metrics();
    assert_eq!(
        value(
            &metrics,
            "conclave_sfu_udp_socket_buffer_bytes{direction=\"receive\"}"
        ),
        0,
        "no socket yet"
    );

    let ada = sfu.join(&claims("ada", Role::Moderator, true)).await;
    let bob = sfu.join(&claims("bob", Role::Speaker, false)).await;
    bob.publish(
        &[TrackSource::Microphone, TrackSource::Camera],
        loadgen::MediaPlan::default(),
    )
    .await
    .expect("publish");
    let bob_id = bob.id().expect("bob").to_string();
    receives_audio_and_video(&ada, &bob_id, "ada receives bob's audio and video").await;

    let metrics = sfu.metrics();
    assert_eq!(
        value(
            &metrics,
            "conclave_sfu_udp_socket_buffer_bytes{direction=\"receive\"}"
        ),
        granted(asked, "rmem_max")
    );
    assert_eq!(
        value(
            &metrics,
            "conclave_sfu_udp_socket_buffer_bytes{direction=\"send\"}"
        ),
        granted(asked, "wmem_max")
    );
    // The kernel's drops are exported (read every 5 s; media at this pace finds no full
    // buffer — `sockets`' unit test overflows a socket and sees the count grow).
    assert_eq!(value(&metrics, "conclave_sfu_udp_kernel_drops_total"), 0);
    ada.leave().await;
    bob.leave().await;
}

//! The fenced leader: two operators in one process against one fake API server with a short
//! Lease (3 s, renew deadline 2 s, retries every second). A leader whose client is paused
//! steps down before its Lease can expire, the standby takes over (judging the Lease by its
//! own observation), no two conferences share ports, and the old leader's late write is
//! refused; a hung renewal makes the leader step down in time; a crash between the status and
//! the label write heals in the next term.

mod support;

use std::time::{Duration, Instant};

use anyhow::Result;
use fakekube::FakeApi;
use operator::ManualClock;
use support::*;

const LEASE: Duration = Duration::from_secs(3);

async fn fake_and_clock() -> Result<(FakeApi, kube::Client, ManualClock)> {
    init_tracing();
    let fake = FakeApi::start().await;
    let clock = ManualClock::new(utc("2026-03-02T10:00:00Z"));
    let client = fake.client();
    add_sfu_pod(&client, "sfu-0", 100, "40000-40999", 30).await?;
    Ok((fake, client, clock))
}

fn holder(fake: &FakeApi) -> Option<String> {
    fake.get(LEASES, NS, "conclave-operator")
        .and_then(|l| str_at(&l, "/spec/holderIdentity").map(str::to_owned))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_is_replaced_and_its_late_write_is_refused() -> Result<()> {
    let (fake, client, clock) = fake_and_clock().await?;
    let mut a = start(&fake, &clock, "operator-a", config("operator-a"))?;
    a.wait_leading(true, WAIT).await;
    for name in ["one", "two"] {
        create(&client, &conference(name, 10)?).await?;
        wait_assigned(&fake, name, "sfu-0").await;
    }
    let mut b = start(&fake, &clock, "operator-b", config("operator-b"))?;
    b.wait_leading(false, WAIT).await;

    // The leader's client stops getting answers (a paused process, a partition): its renewals
    // and its write of the next conference's status hang.
    let paused = fake.hold(|r| r.user == "operator-a");
    create(
        &client,
        &conference_ready_for_status("three", 10, "300000003")?,
    )
    .await?;
    paused
        .wait_caught("operator-a writing the status of three", WAIT, |r| {
            r.method == "PATCH" && r.path.ends_with("/conferences/three/status")
        })
        .await;

    // It stops writing before its Lease can expire; only then may the standby take over.
    let paused_at = Instant::now();
    a.wait_leading(false, WAIT).await;
    let stepped_down = paused_at.elapsed();
    assert!(stepped_down < LEASE, "stepped down after {stepped_down:?}");
    b.wait_leading(true, WAIT).await;
    let took_over = paused_at.elapsed();
    assert!(
        took_over >= stepped_down,
        "{took_over:?} < {stepped_down:?}"
    );
    assert_eq!(holder(&fake).as_deref(), Some("operator-b"));

    // The new leader knew the old one's ports from the status: no overlap.
    let three = wait_assigned(&fake, "three", "sfu-0").await;
    assert_no_shared_ports(&fake, &["one", "two", "three"]);

    // The old leader's write arrives late: based on the version it read, it is refused.
    paused.release();
    let late = fake
        .wait_for("the late write answered", WAIT, |f| {
            f.calls().into_iter().find(|c| {
                c.user == "operator-a"
                    && c.method == "PATCH"
                    && c.path.ends_with("/conferences/three/status")
            })
        })
        .await;
    assert_eq!(late.status, 409, "{late:?}");
    let after = fake.get(CONFERENCES, NS, "three").unwrap_or_default();
    assert_eq!(after["status"]["assignment"], three["status"]["assignment"]);
    // It follows now: the Lease stays with the new leader.
    create(&client, &conference("four", 10)?).await?;
    wait_assigned(&fake, "four", "sfu-0").await;
    assert_no_shared_ports(&fake, &["one", "two", "three", "four"]);
    assert_eq!(holder(&fake).as_deref(), Some("operator-b"));
    assert!(!*a.leading.borrow());

    for running in [a, b] {
        running.stop.cancel();
        running.task.await??;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewal_that_hangs_makes_the_leader_step_down_before_the_lease_expires() -> Result<()> {
    let (fake, client, clock) = fake_and_clock().await?;
    let mut a = start(&fake, &clock, "operator-a", config("operator-a"))?;
    a.wait_leading(true, WAIT).await;
    create(&client, &conference("one", 10)?).await?;
    wait_assigned(&fake, "one", "sfu-0").await;

    let hung = fake.hold(|r| r.user == "operator-a" && r.path.contains("/leases/"));
    let hung_at = Instant::now();
    a.wait_leading(false, WAIT).await;
    let stepped_down = hung_at.elapsed();
    assert!(
        stepped_down < LEASE,
        "stepped down after {stepped_down:?}, the lease lasts {LEASE:?}"
    );
    assert!(
        a.metrics.render().contains("conclave_operator_leader 0"),
        "the leader gauge still says leading"
    );

    // The API server answers again and nobody else took the Lease: it leads again.
    hung.release();
    a.wait_leading(true, WAIT).await;
    create(&client, &conference("two", 10)?).await?;
    wait_assigned(&fake, "two", "sfu-0").await;
    assert_no_shared_ports(&fake, &["one", "two"]);
    a.stop.cancel();
    a.task.await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_status_and_label_heals_in_the_next_term() -> Result<()> {
    let (fake, client, clock) = fake_and_clock().await?;
    let mut a = start(&fake, &clock, "operator-a", config("operator-a"))?;
    a.wait_leading(true, WAIT).await;

    // The label write (after the status) never arrives: the leader crashes meanwhile.
    let lost = fake.hold(|r| {
        r.user == "operator-a" && r.method == "PATCH" && r.path.ends_with("/conferences/one")
    });
    create(
        &client,
        &conference_ready_for_status("one", 10, "100000001")?,
    )
    .await?;
    lost.wait_caught("operator-a writing the labels of one", WAIT, |_| true)
        .await;
    let half = fake.get(CONFERENCES, NS, "one").unwrap_or_default();
    assert_eq!(str_at(&half, "/status/assignment/pod"), Some("sfu-0"));
    assert_eq!(sfu_pod_label(&half), None, "{half}");
    a.kill();
    lost.drop_held();

    // The next leader counts the status's ports and writes the missing label.
    let mut b = start(&fake, &clock, "operator-b", config("operator-b"))?;
    b.wait_leading(true, WAIT).await;
    let healed = fake
        .wait_for("the label written from the status", WAIT, |f| {
            f.get(CONFERENCES, NS, "one")
                .filter(|c| sfu_pod_label(c) == Some("sfu-0"))
        })
        .await;
    assert_eq!(healed["status"]["assignment"], half["status"]["assignment"]);
    create(&client, &conference("two", 10)?).await?;
    wait_assigned(&fake, "two", "sfu-0").await;
    assert_no_shared_ports(&fake, &["one", "two"]);
    b.stop.cancel();
    b.task.await??;
    Ok(())
}

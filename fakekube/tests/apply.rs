//! Server-side apply as the real API server does it, where the fake once differed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crds::Conference;
use fakekube::FakeApi;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

#[tokio::test]
async fn applying_the_same_object_again_keeps_its_kind_and_api_version() {
    let fake = FakeApi::start().await;
    let api: Api<Conference> = Api::namespaced(fake.client(), "conclave");
    let body = json!({
        "apiVersion": "conclave.dev/v1alpha1",
        "kind": "Conference",
        "metadata": { "name": "again" },
        "spec": { "topic": "Again", "owner": "ada", "adHoc": true, "maxParticipants": 4 },
    });
    let params = PatchParams::apply("kubectl");
    for _ in 0..2 {
        // A typed answer fails to decode without kind and apiVersion, as kubectl's did.
        api.patch("again", &params, &Patch::Apply(&body))
            .await
            .expect("the apply answers a whole Conference");
    }
    let stored = fake
        .get("conclave.dev/conferences", "conclave", "again")
        .unwrap();
    assert_eq!(stored["kind"], "Conference", "{stored}");
    assert_eq!(stored["apiVersion"], "conclave.dev/v1alpha1", "{stored}");
}

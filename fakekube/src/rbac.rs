//! What a component asked the fake API server for, as RBAC sees it: the set of
//! (verb, API group, resource, subresource) over every call a [`FakeApi::client_as`] client
//! made. A test compares the set with a committed JSON file (`rbac-observed.json`) that the
//! Helm chart's Roles are checked against (`tests/chart.rs`), so the chart cannot drift from
//! the code. `CONCLAVE_UPDATE_RBAC=1` rewrites the file instead of comparing.
//!
//! Verbs are named as the API server's authorizer names them: `get` (GET of one object),
//! `list` (GET of a collection), `watch` (GET with `watch=true`), `create` (POST), `update`
//! (PUT), `patch` (PATCH: merge, JSON and server-side apply alike), `delete`,
//! `deletecollection`. A server-side apply that creates its object (answered 201) needs
//! `create` as well, as on a real API server. A call is counted whatever its answer: the
//! authorizer decides before the object is looked at, so a 404 or 409 needed the right too.
//!
//! One request is added by reasoning, not by observation: kube-runtime's event `Recorder`
//! creates an `events.k8s.io` Event and *patches* it (a series) when the same Event repeats
//! within its cache; whether a scenario repeats one depends on timing, so `create` on Events
//! always brings `patch` along, and the committed list does not change from run to run.

use std::collections::BTreeSet;
use std::path::Path;

use serde::Serialize;
use serde_json::{Value, json};

use super::{FakeApi, parse_path};

/// One kind of request, as an RBAC rule matches it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Request {
    /// The API group, `""` for the core group.
    pub group: String,
    /// The resource, plural: `pods`, `conferences`, `leases`.
    pub resource: String,
    /// `status`, or `""` for the resource itself.
    pub subresource: String,
    /// The authorizer's verb.
    pub verb: String,
}

/// The requests `user` made, one entry per distinct kind.
pub fn observed(fake: &FakeApi, user: &str) -> BTreeSet<Request> {
    let mut out = BTreeSet::new();
    for call in fake.calls().into_iter().filter(|c| c.user == user) {
        let Some(target) = parse_path(&call.path) else {
            continue;
        };
        let (group, resource) = match target.resource.split_once('/') {
            Some((group, resource)) => (group.to_owned(), resource.to_owned()),
            None => (String::new(), target.resource.clone()),
        };
        let watch = call
            .query
            .split('&')
            .any(|pair| pair == "watch=true" || pair == "watch=1");
        let verbs: &[&str] = match (call.method.as_str(), target.name.is_some()) {
            ("GET", true) => &["get"],
            ("GET", false) if watch => &["watch"],
            ("GET", false) => &["list"],
            ("POST", _) => &["create"],
            ("PUT", _) => &["update"],
            ("PATCH", _)
                if call.content_type.starts_with("application/apply-patch")
                    && call.status == 201 =>
            {
                &["patch", "create"]
            }
            ("PATCH", _) => &["patch"],
            ("DELETE", true) => &["delete"],
            ("DELETE", false) => &["deletecollection"],
            _ => &[],
        };
        for verb in verbs {
            out.insert(Request {
                group: group.clone(),
                resource: resource.clone(),
                subresource: target.subresource.clone().unwrap_or_default(),
                verb: (*verb).to_owned(),
            });
        }
    }
    let recorder_create = Request {
        group: "events.k8s.io".into(),
        resource: "events".into(),
        subresource: String::new(),
        verb: "create".into(),
    };
    if out.contains(&recorder_create) {
        out.insert(Request {
            verb: "patch".into(),
            ..recorder_create
        });
    }
    out
}

/// The file's content for `requests`.
fn document(component: &str, recorded_by: &str, requests: &BTreeSet<Request>) -> String {
    let body = json!({
        "component": component,
        "recordedBy": recorded_by,
        "regenerate": format!("CONCLAVE_UPDATE_RBAC=1 cargo test -p {component} --test {}",
            Path::new(recorded_by).file_stem().and_then(|s| s.to_str()).unwrap_or_default()),
        "requests": requests,
    });
    serde_json::to_string_pretty(&body).expect("BUG: plain JSON serializes") + "\n"
}

/// Compares `requests` with the committed file at `file` (the caller's
/// `CARGO_MANIFEST_DIR` joined with its path), or rewrites it when `CONCLAVE_UPDATE_RBAC=1`.
///
/// # Panics
/// When the file is missing or differs, naming what was added and what went away.
pub fn check_committed(
    file: &Path,
    component: &str,
    recorded_by: &str,
    requests: &BTreeSet<Request>,
) {
    let wanted = document(component, recorded_by, requests);
    if std::env::var("CONCLAVE_UPDATE_RBAC").is_ok_and(|v| v == "1") {
        std::fs::write(file, &wanted).expect("write the RBAC file");
        return;
    }
    let committed = std::fs::read_to_string(file).unwrap_or_default();
    if committed == wanted {
        return;
    }
    let listed = |text: &str| -> BTreeSet<String> {
        serde_json::from_str::<Value>(text)
            .ok()
            .and_then(|v| v.get("requests").cloned())
            .and_then(|r| r.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .map(Value::to_string)
            .collect()
    };
    let (old, new) = (listed(&committed), listed(&wanted));
    panic!(
        "{} is stale: the {component} now makes {:?} and no longer makes {:?}; \
         regenerate it with CONCLAVE_UPDATE_RBAC=1 and update the chart's Roles \
         (charts/conclave/templates) to match",
        file.display(),
        new.difference(&old).collect::<Vec<_>>(),
        old.difference(&new).collect::<Vec<_>>(),
    );
}

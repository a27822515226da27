//! Discovery, as `kubectl` needs it to turn a kind or a resource name (`conferences`, `conf`)
//! into a path: `/version`, `/api`, `/apis` and one resource list per group version, in the
//! legacy (unaggregated) format; kubectl asks for the aggregated format first and falls back
//! when the answer is plain JSON. Only the resources the fake stores are listed.
//!
//! OpenAPI v3 (`/openapi/v3` and one document per group version) is served only as far as
//! `kubectl apply` reads it: to learn that PATCH of each kind takes the `fieldValidation`
//! query parameter, so kubectl leaves validation to the server (which validates Conferences
//! against the CRD's schema) instead of downloading every schema to validate by itself.

use serde_json::{Value, json};

/// One resource as discovery lists it.
struct Listed {
    group_version: &'static str,
    name: &'static str,
    singular: &'static str,
    kind: &'static str,
    short_names: &'static [&'static str],
    status: bool,
}

const RESOURCES: &[Listed] = &[
    Listed {
        group_version: "v1",
        name: "pods",
        singular: "pod",
        kind: "Pod",
        short_names: &["po"],
        status: true,
    },
    Listed {
        group_version: "v1",
        name: "secrets",
        singular: "secret",
        kind: "Secret",
        short_names: &[],
        status: false,
    },
    Listed {
        group_version: "v1",
        name: "events",
        singular: "event",
        kind: "Event",
        short_names: &["ev"],
        status: false,
    },
    Listed {
        group_version: "conclave.dev/v1alpha1",
        name: "conferences",
        singular: "conference",
        kind: "Conference",
        short_names: &["conf"],
        status: true,
    },
    Listed {
        group_version: "coordination.k8s.io/v1",
        name: "leases",
        singular: "lease",
        kind: "Lease",
        short_names: &[],
        status: false,
    },
    Listed {
        group_version: "events.k8s.io/v1",
        name: "events",
        singular: "event",
        kind: "Event",
        short_names: &["ev"],
        status: false,
    },
];

const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// The answer to a discovery path, or `None` when `path` is not one.
pub fn answer(path: &str, server: &str) -> Option<Value> {
    let path = path.trim_end_matches('/');
    match path {
        "/version" => Some(json!({
            "major": "1", "minor": "33", "gitVersion": "v1.33.0-conclave-fake",
            "gitCommit": "", "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
            "goVersion": "go1.24", "compiler": "gc", "platform": "linux/amd64",
        })),
        "/api" => Some(json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server}],
        })),
        "/apis" => {
            let mut groups: Vec<&str> = RESOURCES
                .iter()
                .map(|r| r.group_version)
                .filter(|gv| gv.contains('/'))
                .collect();
            groups.dedup();
            let groups: Vec<Value> = groups
                .iter()
                .map(|gv| {
                    let (group, version) = gv.split_once('/').expect("BUG: filtered on '/'");
                    let version = json!({"groupVersion": gv, "version": version});
                    json!({"name": group, "versions": [version], "preferredVersion": version})
                })
                .collect();
            Some(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}))
        }
        "/openapi/v3" => {
            let mut paths = serde_json::Map::new();
            for r in RESOURCES {
                let prefix = if r.group_version.contains('/') {
                    "apis"
                } else {
                    "api"
                };
                let key = format!("{prefix}/{}", r.group_version);
                let url = format!("/openapi/v3/{key}?hash=fake");
                paths.insert(key, json!({"serverRelativeURL": url}));
            }
            Some(json!({"paths": paths}))
        }
        _ if path.starts_with("/openapi/v3/") => {
            let group_version = path
                .strip_prefix("/openapi/v3/api/")
                .or_else(|| path.strip_prefix("/openapi/v3/apis/"))?;
            openapi_v3(group_version)
        }
        _ => {
            let group_version = path
                .strip_prefix("/api/")
                .or_else(|| path.strip_prefix("/apis/"))?;
            let listed: Vec<&Listed> = RESOURCES
                .iter()
                .filter(|r| r.group_version == group_version)
                .collect();
            if listed.is_empty() {
                return None;
            }
            let mut resources = Vec::new();
            for r in listed {
                resources.push(json!({
                    "name": r.name, "singularName": r.singular, "namespaced": true,
                    "kind": r.kind, "verbs": VERBS, "shortNames": r.short_names,
                }));
                if r.status {
                    resources.push(json!({
                        "name": format!("{}/status", r.name), "singularName": "",
                        "namespaced": true, "kind": r.kind, "verbs": ["get", "patch", "update"],
                    }));
                }
            }
            Some(json!({
                "kind": "APIResourceList", "apiVersion": "v1",
                "groupVersion": group_version, "resources": resources,
            }))
        }
    }
}

/// The OpenAPI v3 document of one group version: for each resource, the PATCH of one object
/// with its kind and its query parameters.
fn openapi_v3(group_version: &str) -> Option<Value> {
    let (group, version) = group_version.split_once('/').unwrap_or(("", group_version));
    let prefix = if group.is_empty() { "/api" } else { "/apis" };
    let mut paths = serde_json::Map::new();
    for r in RESOURCES
        .iter()
        .filter(|r| r.group_version == group_version)
    {
        let parameters: Vec<Value> = ["dryRun", "fieldManager", "fieldValidation", "force"]
            .iter()
            .map(|name| json!({"name": name, "in": "query", "schema": {"type": "string"}}))
            .collect();
        let path = format!(
            "{prefix}/{group_version}/namespaces/{{namespace}}/{}/{{name}}",
            r.name
        );
        paths.insert(
            path,
            json!({"patch": {
                "operationId": format!("patch{}", r.kind),
                "parameters": parameters,
                "responses": {"200": {"description": "OK"}},
                "x-kubernetes-action": "patch",
                "x-kubernetes-group-version-kind": {"group": group, "version": version, "kind": r.kind},
            }}),
        );
    }
    if paths.is_empty() {
        return None;
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (conclave fake)", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": {}},
    }))
}

//! The committed CRD manifest and examples agree with the types: the YAML in `crds/` is what
//! `conclave crdgen` prints, every example passes the structural schema and the CEL rules, and
//! invalid conferences are rejected by one or the other.
//!
//! Regenerate the manifest with `CONCLAVE_UPDATE_CRDS=1 cargo test -p crds --test schema`
//! (or `conclave crdgen > crds/conference.yaml`).

use std::path::PathBuf;

use anyhow::{Context, Result};
use crds::{Conference, conference_crd_yaml};
use kube::CustomResourceExt;
use kube::core::cel::Validator as CelValidator;
use serde_json::{Value, json};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn open_api_schema() -> Value {
    let crd = Conference::crd();
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .expect("the CRD has an openAPIV3Schema");
    serde_json::to_value(schema).expect("schema serializes")
}

/// The structural schema as a JSON Schema validator; formats are checked (`date-time` as
/// Kubernetes does, `duration` as a Go duration like the apiserver).
fn structural() -> jsonschema::Validator {
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft4)
        .should_validate_formats(true)
        .with_format("duration", |s: &str| crds::parse_duration(s).is_some())
        .with_format("uint32", |_: &str| true)
        .with_format("uint16", |_: &str| true)
        .build(&open_api_schema())
        .expect("the schema compiles")
}

fn structural_errors(object: &Value) -> Vec<String> {
    structural()
        .iter_errors(object)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect()
}

fn cel_errors(object: &Value, old: Option<&Value>) -> Vec<String> {
    match CelValidator::new().validate(&open_api_schema(), object, old) {
        Ok(()) => Vec::new(),
        Err(errors) => vec![errors.to_string()],
    }
}

fn examples() -> Result<Vec<(String, Value)>> {
    let dir = repo_root().join("crds/examples");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("read {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path)?;
        let value: Value =
            serde_yaml::from_str(&text).with_context(|| path.display().to_string())?;
        out.push((path.display().to_string(), value));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

#[test]
fn the_committed_crd_manifest_is_up_to_date() -> Result<()> {
    let path = repo_root().join("crds/conference.yaml");
    let generated = conference_crd_yaml();
    if std::env::var_os("CONCLAVE_UPDATE_CRDS").is_some() {
        std::fs::write(&path, &generated)?;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "crds/conference.yaml is stale: run `CONCLAVE_UPDATE_CRDS=1 cargo test -p crds --test schema` \
         (or `conclave crdgen > crds/conference.yaml`) and commit it"
    );
    Ok(())
}

#[test]
fn the_crd_has_the_names_columns_and_status_subresource_kubectl_needs() {
    let crd = Conference::crd();
    assert_eq!(
        crd.metadata.name.as_deref(),
        Some("conferences.conclave.dev")
    );
    assert_eq!(crd.spec.scope, "Namespaced");
    assert_eq!(crd.spec.names.short_names, Some(vec!["conf".to_owned()]));
    let version = &crd.spec.versions[0];
    assert_eq!(version.name, "v1alpha1");
    assert!(
        version
            .subresources
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .is_some()
    );
    let columns: Vec<&str> = version
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        columns,
        [
            "Topic",
            "Meeting ID",
            "Phase",
            "Start",
            "SFU Pod",
            "Participants",
            "Age"
        ]
    );
}

#[test]
fn the_spec_has_no_tuples_and_is_structural() {
    // Structural schemas forbid `items` arrays (tuples) and need a type on every node.
    fn walk(node: &Value, path: &str, problems: &mut Vec<String>) {
        let Some(object) = node.as_object() else {
            return;
        };
        if let Some(items) = object.get("items") {
            if items.is_array() {
                problems.push(format!("tuple at {path}"));
            }
            walk(items, &format!("{path}[]"), problems);
        }
        for keyword in ["anyOf", "oneOf", "allOf", "$ref", "not"] {
            if object.contains_key(keyword) {
                problems.push(format!("{keyword} at {path}"));
            }
        }
        if !object.contains_key("type")
            && !object.contains_key("x-kubernetes-preserve-unknown-fields")
        {
            problems.push(format!("no type at {path}"));
        }
        if let Some(Value::Object(properties)) = object.get("properties") {
            for (name, child) in properties {
                walk(child, &format!("{path}.{name}"), problems);
            }
        }
    }
    let mut problems = Vec::new();
    walk(&open_api_schema(), "", &mut problems);
    assert!(problems.is_empty(), "{problems:?}");
}

#[test]
fn the_four_examples_pass_the_schema_and_the_cel_rules() -> Result<()> {
    let examples = examples()?;
    let names: Vec<String> = examples
        .iter()
        .map(|(path, _)| path.rsplit('/').next().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        names,
        [
            "ad-hoc.yaml",
            "one-off.yaml",
            "permanent.yaml",
            "weekly-recurring.yaml"
        ]
    );
    for (path, value) in &examples {
        assert_eq!(structural_errors(value), Vec::<String>::new(), "{path}");
        assert_eq!(cel_errors(value, None), Vec::<String>::new(), "{path}");
        let conference: Conference =
            serde_json::from_value(value.clone()).with_context(|| path.clone())?;
        assert!(!conference.spec.topic.is_empty());
    }
    Ok(())
}

fn one_off() -> Value {
    json!({
        "apiVersion": "conclave.dev/v1alpha1",
        "kind": "Conference",
        "metadata": { "name": "x", "namespace": "default" },
        "spec": {
            "topic": "Retro",
            "owner": "ada",
            "schedule": {
                "start": "2026-07-01T08:00:00Z",
                "end": "2026-07-01T09:00:00Z",
                "timeZone": "UTC"
            }
        }
    })
}

/// `value` with the field at `pointer` set to `new` (inserted when absent).
fn with(mut value: Value, pointer: &str, new: Value) -> Value {
    let (parent, key) = pointer.rsplit_once('/').expect("a pointer with a parent");
    value
        .pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .expect("the parent is an object")
        .insert(key.to_owned(), new);
    value
}

#[test]
fn the_structural_schema_rejects_bad_fields() {
    assert!(structural_errors(&one_off()).is_empty());
    let cases = [
        with(one_off(), "/spec/topic", json!("")),
        with(one_off(), "/spec/maxParticipants", json!(5000)),
        with(one_off(), "/spec/maxParticipants", json!(1)),
        with(one_off(), "/spec/media", json!("Hologram")),
        with(one_off(), "/spec/schedule/start", json!("next tuesday")),
        with(one_off(), "/spec/schedule/timeZone", json!("")),
        {
            let mut v = one_off();
            v["spec"]["meetingId"] = json!("12345a789");
            v
        },
        {
            let mut v = one_off();
            v["spec"].as_object_mut().expect("object").remove("owner");
            v
        },
    ];
    for case in cases {
        assert!(!structural_errors(&case).is_empty(), "accepted: {case}");
    }
}

#[test]
fn the_cel_rules_reject_what_crosses_fields() {
    assert!(cel_errors(&one_off(), None).is_empty());
    let bad = [
        (
            with(
                one_off(),
                "/spec/schedule/end",
                json!("2026-07-01T07:00:00Z"),
            ),
            "end must be after start",
        ),
        (
            with(
                one_off(),
                "/spec/schedule/end",
                json!("2026-07-03T07:00:00Z"),
            ),
            "at most 24 hours",
        ),
        (
            {
                let mut v = one_off();
                v["spec"]["schedule"]["duration"] = json!("30m");
                v
            },
            "either end or duration",
        ),
        (
            {
                let mut v = one_off();
                v["spec"]
                    .as_object_mut()
                    .expect("object")
                    .remove("schedule");
                v
            },
            "a schedule or adHoc",
        ),
        (
            {
                let mut v = one_off();
                v["spec"]["schedule"]["permanent"] = json!(true);
                v
            },
            "a permanent room has no start",
        ),
        (
            {
                let mut v = one_off();
                v["spec"]["schedule"]["recurrence"] = json!("FREQ=HOURLY");
                v
            },
            "daily at most",
        ),
        (
            {
                let mut v = one_off();
                v["spec"]["meetingId"] = json!("12ab56");
                v
            },
            "6 to 12 digits",
        ),
    ];
    for (case, message) in bad {
        let errors = cel_errors(&case, None);
        assert!(
            errors.iter().any(|e| e.contains(message)),
            "expected {message:?} for {case}, got {errors:?}"
        );
    }
}

#[test]
fn the_meeting_id_cannot_change_once_set() {
    let mut old = one_off();
    old["spec"]["meetingId"] = json!("123456789");
    let mut new = old.clone();
    new["spec"]["meetingId"] = json!("987654321");
    let errors = cel_errors(&new, Some(&old));
    assert!(
        errors.iter().any(|e| e.contains("cannot change")),
        "{errors:?}"
    );
    // Setting it for the first time (the operator filling it in) is allowed.
    assert!(cel_errors(&old, Some(&one_off())).is_empty());
}

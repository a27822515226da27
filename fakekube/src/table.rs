//! The Table format (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`) that `kubectl get`
//! asks for: the API server, not kubectl, decides the columns. For a custom resource they are
//! `Name` and the CRD's `additionalPrinterColumns`, evaluated on each object as the
//! apiextensions server's table convertor does: a missing value is `null` (kubectl prints
//! `<none>`), `integer` and `number` columns hold numbers, and a `date` column holds the age
//! (`5s`, `3m`, `2d`) rather than the timestamp. Other resources get the server's default
//! columns, `Name` and `Created At`.

use serde_json::{Value, json};

/// Whether an `Accept` header asks for a Table (kubectl sends the Table type first and plain
/// JSON as a fallback).
pub fn wanted(accept: &str) -> bool {
    accept
        .split(',')
        .next()
        .is_some_and(|first| first.split(';').any(|p| p.trim() == "as=Table"))
}

/// The printer columns of `resource`: (name, type, format, JSONPath without its leading dot).
fn columns(resource: &str) -> Vec<(String, String, String, String)> {
    if resource != "conclave.dev/conferences" {
        return vec![];
    }
    let crd = serde_json::to_value(<crds::Conference as kube::CustomResourceExt>::crd())
        .expect("BUG: the CRD serializes");
    crd.pointer("/spec/versions/0/additionalPrinterColumns")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|c| {
            let text = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
            (
                text("name"),
                text("type"),
                text("format"),
                text("jsonPath").trim_start_matches('.').to_owned(),
            )
        })
        .collect()
}

/// The value at a simple JSONPath (`spec.topic`, `status.assignment.pod`).
fn at<'a>(object: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(object, |node, key| node.get(key))
        .filter(|v| !v.is_null())
}

/// A duration as the API server prints ages (`duration.HumanDuration` of apimachinery).
pub fn human_age(seconds: i64) -> String {
    let s = seconds.max(0);
    let two = |big: i64, unit: &str, small: i64, small_unit: &str| {
        if small == 0 {
            format!("{big}{unit}")
        } else {
            format!("{big}{unit}{small}{small_unit}")
        }
    };
    let (minutes, hours, days) = (s / 60, s / 3600, s / 86400);
    match s {
        s if s < 120 => format!("{s}s"),
        _ if minutes < 10 => two(minutes, "m", s % 60, "s"),
        _ if minutes < 180 => format!("{minutes}m"),
        _ if hours < 8 => two(hours, "h", minutes % 60, "m"),
        _ if hours < 48 => format!("{hours}h"),
        _ if hours < 24 * 8 => two(days, "d", hours % 24, "h"),
        _ if days < 365 * 2 => format!("{days}d"),
        _ if days < 365 * 8 => two(days / 365, "y", days % 365, "d"),
        _ => format!("{}y", days / 365),
    }
}

fn cell(kind: &str, value: Option<&Value>, now: chrono::DateTime<chrono::Utc>) -> Value {
    let Some(value) = value else {
        return Value::Null;
    };
    match kind {
        "date" => value
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| {
                json!(human_age(
                    (now - t.with_timezone(&chrono::Utc)).num_seconds()
                ))
            })
            .unwrap_or(Value::Null),
        "integer" => value.as_i64().map(|n| json!(n)).unwrap_or(Value::Null),
        "number" => value.as_f64().map(|n| json!(n)).unwrap_or(Value::Null),
        "boolean" => value.as_bool().map(|b| json!(b)).unwrap_or(Value::Null),
        _ => match value {
            Value::String(s) => json!(s),
            other => json!(other.to_string()),
        },
    }
}

/// The Table of `objects` of `resource`.
pub fn of(resource: &str, objects: &[Value], resource_version: &str) -> Value {
    let now = chrono::Utc::now();
    let custom = columns(resource);
    let mut definitions = vec![json!({
        "name": "Name", "type": "string", "format": "name", "priority": 0,
        "description": "Name must be unique within a namespace.",
    })];
    if custom.is_empty() {
        definitions.push(json!({
            "name": "Created At", "type": "date", "format": "", "priority": 0,
            "description": "CreationTimestamp is a timestamp representing the server time when this object was created.",
        }));
    }
    for (name, kind, format, _) in &custom {
        definitions.push(json!({
            "name": name, "type": kind, "format": format, "priority": 0, "description": "",
        }));
    }
    let rows: Vec<Value> = objects
        .iter()
        .map(|object| {
            let mut cells = vec![
                object
                    .pointer("/metadata/name")
                    .cloned()
                    .unwrap_or_default(),
            ];
            if custom.is_empty() {
                cells.push(
                    object
                        .pointer("/metadata/creationTimestamp")
                        .cloned()
                        .unwrap_or_default(),
                );
            }
            for (_, kind, _, path) in &custom {
                cells.push(cell(kind, at(object, path), now));
            }
            json!({
                "cells": cells,
                "object": {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": object.get("metadata").cloned().unwrap_or_default(),
                },
            })
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": { "resourceVersion": resource_version },
        "columnDefinitions": definitions,
        "rows": rows,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_conference_table_has_the_crd_printer_columns_and_typed_cells() {
        let created = (chrono::Utc::now() - chrono::Duration::seconds(90))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let conference = json!({
            "metadata": {"name": "lobby", "namespace": "conclave", "creationTimestamp": created},
            "spec": {"topic": "The lobby", "meetingId": "100200300"},
            "status": {"phase": "Ready", "assignment": {"pod": "sfu-0"}, "participants": 2},
        });
        let table = of("conclave.dev/conferences", &[conference], "7");
        let names: Vec<&str> = table["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "Name",
                "Topic",
                "Meeting ID",
                "Phase",
                "Start",
                "SFU Pod",
                "Participants",
                "Age"
            ]
        );
        let cells = &table["rows"][0]["cells"];
        assert_eq!(cells[0], "lobby");
        assert_eq!(cells[3], "Ready");
        assert_eq!(cells[4], Value::Null, "no current occurrence");
        assert_eq!(cells[6], 2);
        assert!(
            matches!(cells[7].as_str(), Some("90s" | "91s")),
            "{}",
            cells[7]
        );
        assert_eq!(table["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    }

    #[test]
    fn kubectl_s_accept_header_asks_for_a_table() {
        assert!(wanted(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
        ));
        assert!(!wanted("application/json"));
    }
}

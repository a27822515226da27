//! Health, readiness, metrics and the OpenAPI document.

#![allow(clippy::unwrap_used)]

mod support;

use axum::http::{Method, StatusCode};
use support::{Backend, TestApp};

#[tokio::test]
async fn health_readiness_and_metrics_answer() {
    let app = TestApp::new(Backend::Sqlite).await;
    let token = app.admin().await;
    assert_eq!(
        app.call(Method::GET, "/healthz", None, None).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.call(Method::GET, "/readyz", None, None).await.status,
        StatusCode::OK
    );
    app.get("/api/v1/conferences", &token)
        .await
        .expect(StatusCode::OK);
    let metrics = app
        .call(Method::GET, "/metrics", None, None)
        .await
        .expect(StatusCode::OK)
        .text;
    assert!(metrics.contains("conclave_api_http_requests_total{method=\"GET\",route=\"/api/v1/conferences\",status=\"200\"} 1"), "{metrics}");
    assert!(metrics.contains("conclave_api_http_request_duration_seconds_bucket"));
    assert!(metrics.contains("conclave_api_logins_total{result=\"ok\"} 1"));
    assert!(metrics.contains("conclave_api_db_pool_connections{state=\"idle\"}"));
    // Readiness follows the database.
    app.state.db.pool.close().await;
    assert_eq!(
        app.call(Method::GET, "/readyz", None, None).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn the_openapi_document_describes_every_route() {
    let app = TestApp::new(Backend::Sqlite).await;
    let doc = app
        .call(Method::GET, "/api/v1/openapi.json", None, None)
        .await
        .expect(StatusCode::OK)
        .body;
    let paths = doc["paths"].as_object().expect("paths");
    for (path, methods) in [
        ("/api/v1/auth/login", &["post"][..]),
        ("/api/v1/auth/logout", &["post"]),
        ("/api/v1/me", &["get", "patch"]),
        ("/api/v1/users", &["get", "post"]),
        ("/api/v1/users/{id}", &["patch"]),
        ("/api/v1/settings", &["get", "patch"]),
        ("/api/v1/conferences", &["get", "post"]),
        ("/api/v1/conferences/adhoc", &["post"]),
        ("/api/v1/conferences/{id}", &["get", "patch", "delete"]),
        ("/api/v1/conferences/{id}/repeat", &["post"]),
        ("/api/v1/conferences/{id}/calendar.ics", &["get"]),
        ("/api/v1/join", &["post"]),
        ("/api/v1/internal/room-events", &["post"]),
        ("/api/v1/internal/revocations", &["get"]),
        ("/api/v1/internal/placements", &["get"]),
    ] {
        for method in methods {
            assert!(
                paths.get(path).and_then(|p| p.get(*method)).is_some(),
                "{method} {path} missing from the OpenAPI document"
            );
        }
    }
    assert!(doc["components"]["schemas"]["ConferenceInput"].is_object());

    // The portal generates its types from this document; the generator refuses duplicate
    // operation IDs and references to schemas that are not there.
    let mut operation_ids = std::collections::HashSet::new();
    for (path, methods) in paths {
        for (method, operation) in methods.as_object().expect("methods") {
            let id = operation["operationId"].as_str().expect("operationId");
            assert!(
                operation_ids.insert(id.to_owned()),
                "{method} {path}: operationId {id} is used twice"
            );
            // A path parameter must be a placeholder of the path (a query struct that forgot
            // `parameter_in = Query` shows up as a path parameter the route does not have), and
            // every placeholder must be declared.
            let parameters: Vec<&serde_json::Value> = operation["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .collect();
            for parameter in &parameters {
                let name = parameter["name"].as_str().expect("parameter name");
                if parameter["in"] == "path" {
                    assert!(
                        path.contains(&format!("{{{name}}}")),
                        "{method} {path}: path parameter {name} is not in the path"
                    );
                } else {
                    assert!(
                        parameter["in"] == "query" || parameter["in"] == "header",
                        "{method} {path}: {parameter}"
                    );
                }
            }
            for placeholder in path.split('{').skip(1) {
                let name = placeholder.split('}').next().expect("placeholder");
                assert!(
                    parameters
                        .iter()
                        .any(|p| p["in"] == "path" && p["name"] == name),
                    "{method} {path}: placeholder {{{name}}} is not declared"
                );
            }
        }
    }
    let text = doc.to_string();
    for reference in text.split("\"#/components/schemas/").skip(1) {
        let name = reference.split('"').next().expect("name");
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "schema {name} is referenced but missing"
        );
    }
    assert_eq!(
        doc["components"]["schemas"]["ConferenceView"]["properties"]["kind"]["$ref"],
        "#/components/schemas/ConferenceKind"
    );
}

#[tokio::test]
async fn the_metrics_pass_promtool() {
    let app = TestApp::new(Backend::Sqlite).await;
    let token = app.admin().await;
    app.get("/api/v1/conferences", &token)
        .await
        .expect(StatusCode::OK);
    app.get("/api/v1/conferences/unknown", &token).await;
    api::lifecycle::tick(&app.state).await.unwrap();
    let metrics = app
        .call(Method::GET, "/metrics", None, None)
        .await
        .expect(StatusCode::OK)
        .text;
    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) is required; scripts/test.sh installs it");
    {
        use std::io::Write;
        promtool
            .stdin
            .take()
            .unwrap()
            .write_all(metrics.as_bytes())
            .unwrap();
    }
    let output = promtool.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool found problems:\n{}{}\n{metrics}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

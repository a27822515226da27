//! The Helm chart `charts/conclave`, rendered as `helm template` renders it (by the small Go
//! renderer in `tests/chart/render`, built from Debian's Go, sprig and yaml packages) for the
//! default values and for every documented profile (`charts/conclave/ci/*-values.yaml`), then:
//! - every object validated strictly against the Kubernetes 1.33 schemas (PyPI
//!   `kubernetes-validate`), Conference objects against the generated CRD's schema, and the
//!   Prometheus Operator objects against its models (`tests/chart/validate_monitoring.py`);
//! - invariants: references resolve, selectors select, Services reach container ports, probes
//!   hit `/healthz` and `/readyz`, every flag and variable exists in the code, the SFU's process
//!   and its annotations agree, security contexts are locked down;
//! - the RBAC Roles grant exactly what the operator and the API call on the fake API server
//!   (`operator/tests/rbac-observed.json`, `api/tests/rbac-observed.json`);
//! - bad values are refused by `values.schema.json` with a clear message;
//! - the chart's CRD is the generated one.
//!
//! A missing tool fails with the command that installs it (`scripts/test.sh` installs them all).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use serde_json::{Value, json};

// --- tools ---------------------------------------------------------------------------------------

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repository")
        .to_path_buf()
}

fn chart() -> PathBuf {
    repo().join("charts/conclave")
}

/// Runs `command`; panics with `install` when the program is missing.
fn run(command: &mut Command, install: &str) -> std::process::Output {
    match command.output() {
        Ok(output) => output,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => panic!(
            "{:?} is not installed; install it with: {install}",
            command.get_program()
        ),
        Err(err) => panic!("cannot run {command:?}: {err}"),
    }
}

const GO_PACKAGES: &str = "apt-get install -y golang-go golang-github-masterminds-sprig-dev \
     golang-gopkg-yaml.v3-dev golang-github-xeipuuv-gojsonschema-dev";

/// The renderer, built once per test process into a folder of its own.
fn renderer() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("conclave-chart-render")
            .tempdir()
            .expect("temp dir")
            .keep();
        let bin = dir.join("render");
        let cache = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| dir.clone())
            .join("go-build-cache");
        let output = run(
            Command::new("go")
                .args(["build", "-o"])
                .arg(&bin)
                .arg(".")
                .current_dir(repo().join("tests/chart/render"))
                .env("GO111MODULE", "off")
                .env("GOPATH", "/usr/share/gocode")
                .env("GOCACHE", cache),
            GO_PACKAGES,
        );
        assert!(
            output.status.success(),
            "building the renderer failed (are the Go libraries installed? {GO_PACKAGES}):\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        bin
    })
}

/// The test venv's Python (`scripts/test.sh` exports CONCLAVE_TEST_PYTHON).
fn python() -> PathBuf {
    std::env::var_os("CONCLAVE_TEST_PYTHON")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".cache/conclave/venv/bin/python"))
        })
        .expect("CONCLAVE_TEST_PYTHON or HOME is set")
}

const PIP: &str = "scripts/test.sh (or: python3 -m venv ~/.cache/conclave/venv && \
     ~/.cache/conclave/venv/bin/pip install kubernetes-validate cloudcoil \
     cloudcoil-models-prometheus-operator)";

fn python_module(module: &str) {
    let output = run(
        Command::new(python()).args(["-c", &format!("import {module}")]),
        PIP,
    );
    assert!(
        output.status.success(),
        "the Python module {module} is missing in {}; install it with {PIP}",
        python().display()
    );
}

// --- rendering ---------------------------------------------------------------------------------

/// A documented way to install the chart.
#[derive(Debug, Clone)]
struct Profile {
    name: &'static str,
    /// `charts/conclave/ci/<file>`, when not the defaults.
    values: Option<&'static str>,
    /// Extra renderer arguments.
    args: &'static [&'static str],
    /// Secrets the values name as existing ones (made by the platform team, not the chart).
    existing_secrets: &'static [&'static str],
    /// ConfigMaps the values name as existing ones.
    existing_config_maps: &'static [&'static str],
}

const MONITORING_API: &[&str] = &["--api-versions", "monitoring.coreos.com/v1"];

fn profiles() -> Vec<Profile> {
    let p = |name: &'static str,
             values: Option<&'static str>,
             args: &'static [&'static str],
             existing: &'static [&'static str]| Profile {
        name,
        values,
        args,
        existing_secrets: existing,
        existing_config_maps: &[],
    };
    vec![
        p("default", None, &[], &["conclave-database"]),
        p(
            "hostNetwork",
            Some("host-network-values.yaml"),
            &[],
            &["conclave-database"],
        ),
        p(
            "hostPort",
            Some("host-port-values.yaml"),
            &[],
            &["conclave-database"],
        ),
        p(
            "single port",
            Some("single-port-values.yaml"),
            &[],
            &["conclave-database"],
        ),
        p(
            "service NodePort",
            Some("service-node-port-values.yaml"),
            &[],
            &["conclave-database"],
        ),
        p(
            "service LoadBalancer",
            Some("service-load-balancer-values.yaml"),
            &[],
            &["conclave-database"],
        ),
        p(
            "bundled PostgreSQL",
            Some("bundled-postgresql-values.yaml"),
            &[],
            &[],
        ),
        p(
            "external PostgreSQL and existing Secrets",
            Some("external-postgresql-values.yaml"),
            &[],
            &[
                "conclave-db",
                "conclave-join-token",
                "conclave-admin",
                "conclave-smtp",
            ],
        ),
        p(
            "monitoring",
            Some("monitoring-values.yaml"),
            MONITORING_API,
            &["conclave-database"],
        ),
        p(
            "ingress",
            Some("ingress-values.yaml"),
            &[],
            &["conclave-database"],
        ),
        p(
            "conferenceStore kubernetes",
            Some("kubernetes-store-values.yaml"),
            &[],
            &["conclave-database"],
        ),
        p(
            "watchNamespaces all",
            Some("watch-all-values.yaml"),
            &[],
            &["conclave-database"],
        ),
        p(
            "one hostname",
            Some("one-hostname-values.yaml"),
            &[],
            &["conclave-database"],
        ),
        Profile {
            existing_config_maps: &["conclave-prompts-de"],
            ..p(
                "sip hostNetwork",
                Some("sip-host-network-values.yaml"),
                &[],
                &["conclave-database"],
            )
        },
        Profile {
            existing_config_maps: &["conclave-ldap-ca"],
            ..p(
                "ldap",
                Some("ldap-values.yaml"),
                &[],
                &["conclave-database", "conclave-ldap-bind"],
            )
        },
        Profile {
            existing_config_maps: &["company-ca"],
            ..p(
                "OpenID Connect login",
                Some("oidc-values.yaml"),
                &[],
                &["conclave-database", "conclave-oidc"],
            )
        },
        p(
            "sip hostPort",
            Some("sip-host-port-values.yaml"),
            &[],
            &["conclave-database"],
        ),
        p(
            "sip service",
            Some("sip-service-values.yaml"),
            MONITORING_API,
            &["conclave-database"],
        ),
    ]
}

const NAMESPACE: &str = "conclave";
const RELEASE: &str = "meet";

/// Renders with the renderer's own arguments; Err is its stderr.
fn render_args(args: &[&str]) -> Result<String, String> {
    let output = run(
        Command::new(renderer())
            .args(["--name", RELEASE, "--namespace", NAMESPACE])
            .args(args)
            .arg(chart()),
        GO_PACKAGES,
    );
    if output.status.success() {
        Ok(String::from_utf8(output.stdout).expect("utf-8 manifests"))
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

fn profile_args(profile: &Profile) -> Vec<String> {
    let mut args: Vec<String> = profile.args.iter().map(|a| (*a).to_owned()).collect();
    if let Some(values) = profile.values {
        args.push("-f".into());
        args.push(chart().join("ci").join(values).display().to_string());
    }
    args
}

/// The rendered objects of a profile, as JSON.
struct Rendered {
    profile: Profile,
    text: String,
    objects: Vec<Value>,
}

impl Rendered {
    fn of(profile: &Profile) -> Rendered {
        let args = profile_args(profile);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let text = render_args(&args)
            .unwrap_or_else(|err| panic!("profile {:?} does not render:\n{err}", profile.name));
        let objects = parse_stream(&text);
        assert!(
            !objects.is_empty(),
            "profile {:?} renders nothing",
            profile.name
        );
        Rendered {
            profile: profile.clone(),
            text,
            objects,
        }
    }

    fn kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.objects.iter().filter(move |o| o["kind"] == kind)
    }

    fn named(&self, kind: &str, name: &str) -> Option<&Value> {
        self.objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
    }

    /// Pod-owning objects: (object, pod template).
    fn workloads(&self) -> Vec<(&Value, &Value)> {
        self.objects
            .iter()
            .filter(|o| matches!(o["kind"].as_str(), Some("Deployment" | "StatefulSet")))
            .map(|o| (o, &o["spec"]["template"]))
            .collect()
    }

    fn context(&self, object: &Value) -> String {
        format!(
            "profile {:?}, {} {}",
            self.profile.name,
            object["kind"].as_str().unwrap_or("?"),
            object["metadata"]["name"].as_str().unwrap_or("?")
        )
    }
}

fn parse_stream(text: &str) -> Vec<Value> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(text)
        .filter_map(|doc| {
            let value = serde_yaml::Value::deserialize(doc).expect("rendered YAML parses");
            (!value.is_null()).then(|| serde_json::to_value(value).expect("YAML is JSON"))
        })
        .collect()
}

fn all_rendered() -> &'static Vec<Rendered> {
    static ALL: OnceLock<Vec<Rendered>> = OnceLock::new();
    ALL.get_or_init(|| profiles().iter().map(Rendered::of).collect())
}

fn str_of<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn array<'a>(v: &'a Value, pointer: &str) -> Vec<&'a Value> {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

fn containers(template: &Value) -> Vec<&Value> {
    let mut all = array(template, "/spec/containers");
    all.extend(array(template, "/spec/initContainers"));
    all
}

fn is_conclave(container: &Value) -> bool {
    str_of(container, "/image").starts_with("conclave:")
}

// --- validation against schemas ----------------------------------------------------------------

#[test]
fn every_profile_validates_strictly_against_kubernetes_1_33() {
    python_module("kubernetes_validate");
    let custom = [
        "Conference",
        "ServiceMonitor",
        "PodMonitor",
        "PrometheusRule",
    ];
    for rendered in all_rendered() {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(rendered.text.as_bytes()).expect("write");
        let output = run(
            Command::new(python())
                .args([
                    "-m",
                    "kubernetes_validate",
                    "--strict",
                    "-k",
                    "1.33.0",
                    "--quiet",
                ])
                .arg(file.path()),
            PIP,
        );
        let report = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "profile {:?} does not validate:\n{report}",
            rendered.profile.name
        );
        // Only the custom resources may lack a built-in schema; they are checked below.
        for line in report.lines().filter(|l| l.starts_with("WARN")) {
            assert!(
                custom.iter().any(|k| line.contains(&format!("kind {k} "))),
                "profile {:?}: {line}",
                rendered.profile.name
            );
        }
    }
}

/// The CRD's openAPIV3Schema, with `additionalProperties: false` wherever properties are
/// listed and nothing preserves unknown fields: the API server drops unknown fields (and
/// refuses them with strict field validation), so a typo in the chart would vanish silently.
fn strict_conference_schema() -> Value {
    let crd: Value = serde_yaml::from_str(
        &std::fs::read_to_string(repo().join("crds/conference.yaml"))
            .expect("crds/conference.yaml"),
    )
    .expect("the CRD parses");
    fn strictify(schema: &mut Value) {
        if let Some(map) = schema.as_object_mut() {
            let preserves = map
                .get("x-kubernetes-preserve-unknown-fields")
                .is_some_and(|v| v == true);
            if map.contains_key("properties")
                && !map.contains_key("additionalProperties")
                && !preserves
            {
                map.insert("additionalProperties".into(), Value::Bool(false));
            }
            for value in map.values_mut() {
                strictify(value);
            }
        } else if let Some(items) = schema.as_array_mut() {
            items.iter_mut().for_each(strictify);
        }
    }
    let mut schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone();
    strictify(&mut schema);
    // apiVersion, kind and metadata are the API server's (ObjectMeta is checked there).
    schema["properties"]["metadata"] = json!({ "type": "object" });
    schema["properties"]["apiVersion"] = json!({ "type": "string" });
    schema["properties"]["kind"] = json!({ "type": "string", "enum": ["Conference"] });
    schema
}

fn validate_conferences(objects: &[(String, Value)]) {
    let schema = strict_conference_schema();
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft4)
        .should_validate_formats(true)
        .with_format("duration", |s: &str| {
            !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '.')
        })
        .with_format("uint32", |_: &str| true)
        .with_format("uint16", |_: &str| true)
        .build(&schema)
        .expect("the CRD schema compiles");
    for (origin, object) in objects {
        let errors: Vec<String> = validator
            .iter_errors(object)
            .map(|e| format!("{e} at {}", e.instance_path))
            .collect();
        assert!(errors.is_empty(), "{origin} does not validate: {errors:#?}");
        assert_eq!(object["apiVersion"], "conclave.dev/v1alpha1", "{origin}");
        let name = str_of(object, "/metadata/name");
        assert!(
            !name.is_empty() && name.len() <= 63,
            "{origin}: a Conference name is a label value (placement labels it)"
        );
    }
}

#[test]
fn conferences_validate_against_the_generated_crd() {
    let mut objects = Vec::new();
    for rendered in all_rendered() {
        for object in rendered.kind("Conference") {
            objects.push((rendered.context(object), object.clone()));
        }
    }
    assert!(
        !objects.is_empty(),
        "a profile renders Conference objects from values.conferences"
    );
    let examples = repo().join("crds/examples");
    for entry in std::fs::read_dir(&examples).expect("crds/examples") {
        let path = entry.expect("entry").path();
        for object in parse_stream(&std::fs::read_to_string(&path).expect("example")) {
            objects.push((path.display().to_string(), object));
        }
    }
    validate_conferences(&objects);
}

#[test]
fn monitoring_objects_validate_against_the_prometheus_operator_models() {
    python_module("cloudcoil.models.prometheus_operator");
    let mut objects = Vec::new();
    for rendered in all_rendered() {
        for kind in ["ServiceMonitor", "PodMonitor", "PrometheusRule"] {
            objects.extend(rendered.kind(kind).cloned());
        }
    }
    let kinds: BTreeSet<&str> = objects.iter().filter_map(|o| o["kind"].as_str()).collect();
    assert_eq!(
        kinds,
        BTreeSet::from(["PodMonitor", "PrometheusRule", "ServiceMonitor"]),
        "the monitoring profile renders all three kinds"
    );
    let mut child = Command::new(python())
        .arg(repo().join("tests/chart/validate_monitoring.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| {
            panic!(
                "cannot run {}: {err}; install with {PIP}",
                python().display()
            )
        });
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(serde_json::to_string(&objects).expect("json").as_bytes())
        .expect("write");
    let output = child.wait_with_output().expect("validator ran");
    assert!(
        output.status.success(),
        "monitoring objects do not validate:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Every `conclave_…` metric the alerts and the dashboard use is one the code registers, and
/// promtool accepts the rules.
#[test]
fn alerts_and_dashboard_use_metrics_the_code_exports() {
    let mut exported = BTreeSet::new();
    for dir in ["api/src", "sfu/src", "operator/src", "sip/src"] {
        collect_metric_names(&repo().join(dir), &mut exported);
    }
    assert!(
        exported.contains("conclave_operator_leader"),
        "{exported:?}"
    );
    let rendered = all_rendered()
        .iter()
        .find(|r| r.profile.name == "monitoring")
        .expect("monitoring profile");
    let rule = rendered
        .kind("PrometheusRule")
        .next()
        .expect("a PrometheusRule");
    let dashboard = rendered
        .kind("ConfigMap")
        .find(|c| c["data"]["conclave.json"].is_string())
        .expect("the dashboard ConfigMap");
    let dashboard: Value =
        serde_json::from_str(str_of(dashboard, "/data/conclave.json")).expect("dashboard JSON");
    let mut used = BTreeSet::new();
    let mut texts: Vec<String> = array(rule, "/spec/groups")
        .iter()
        .flat_map(|g| array(g, "/rules"))
        .map(|r| str_of(r, "/expr").to_owned())
        .collect();
    texts.extend(
        array(&dashboard, "/panels")
            .iter()
            .flat_map(|p| array(p, "/targets"))
            .map(|t| str_of(t, "/expr").to_owned()),
    );
    for text in &texts {
        for name in metric_names_in(text) {
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|b| exported.contains(*b)))
                .unwrap_or(&name)
                .to_owned();
            used.insert(base);
        }
    }
    let unknown: Vec<&String> = used.iter().filter(|m| !exported.contains(*m)).collect();
    assert!(unknown.is_empty(), "metrics no code exports: {unknown:?}");
    let alerts: BTreeSet<&str> = array(rule, "/spec/groups")
        .iter()
        .flat_map(|g| array(g, "/rules"))
        .filter_map(|r| r["alert"].as_str())
        .collect();
    for wanted in [
        "ConclaveSfuPodFull",
        "ConclaveSfuUdpPortsUnusable",
        "ConclaveConferencesNotPlaced",
        "ConclaveOperatorLeaderMissing",
    ] {
        assert!(
            alerts.contains(wanted),
            "alert {wanted} missing: {alerts:?}"
        );
    }

    // promtool (Debian `prometheus`) parses every expression.
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    let groups = json!({ "groups": rule["spec"]["groups"] });
    file.write_all(serde_yaml::to_string(&groups).expect("yaml").as_bytes())
        .expect("write");
    let output = run(
        Command::new("promtool")
            .args(["check", "rules"])
            .arg(file.path()),
        "apt-get install -y prometheus",
    );
    assert!(
        output.status.success(),
        "promtool refuses the rules:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn collect_metric_names(dir: &Path, out: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).expect("source folder") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            collect_metric_names(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).expect("source");
            for quoted in text.split('"').skip(1).step_by(2) {
                if quoted.starts_with("conclave_")
                    && quoted.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                {
                    out.insert(quoted.to_owned());
                }
            }
        }
    }
}

fn metric_names_in(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(found) = text[i..].find("conclave_") {
        let start = i + found;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_lowercase() || bytes[end] == b'_') {
            end += 1;
        }
        names.push(text[start..end].to_owned());
        i = end;
    }
    names
}

// --- invariants ----------------------------------------------------------------------------------

/// Environment variables and subcommands the code reads, from the sources (the clap configs'
/// `env = "…"`, the binary's global options and the API's `*_ENV` constants).
fn known_env_and_commands() -> (BTreeSet<String>, BTreeSet<String>) {
    let mut env = BTreeSet::new();
    for file in [
        "api/src/config.rs",
        "api/src/directory/oidc.rs",
        "api/src/directory/ldap.rs",
        "sfu/src/config.rs",
        "operator/src/lib.rs",
        "sip/src/config.rs",
        "conclave/src/main.rs",
    ] {
        let text = std::fs::read_to_string(repo().join(file)).expect("config source");
        for piece in text.split("env = \"").skip(1) {
            env.insert(piece.split('"').next().unwrap_or_default().to_owned());
        }
        for line in text.lines().filter(|l| l.contains("_ENV: &str = \"")) {
            env.insert(line.split('"').nth(1).unwrap_or_default().to_owned());
        }
    }
    let main = std::fs::read_to_string(repo().join("conclave/src/main.rs")).expect("main.rs");
    let commands = ["Api", "Sfu", "Sip", "Operator", "Standalone"]
        .iter()
        .filter(|c| main.contains(&format!("    {c}(")))
        .map(|c| c.to_lowercase())
        .collect();
    (env, commands)
}

/// Downward-API variables the chart sets only for `$(…)` expansion and for operators reading
/// the pod's environment; the binary does not read them itself.
const HELPER_ENV: [&str; 3] = ["POD_NAMESPACE", "POD_IP", "NODE_IP"];

#[test]
fn every_flag_and_variable_the_chart_passes_exists_in_the_code() {
    let (known, commands) = known_env_and_commands();
    assert!(
        known.contains("CONCLAVE_SFU_UDP_PORTS") && known.contains("POD_NAME"),
        "{known:?}"
    );
    for rendered in all_rendered() {
        for (object, template) in rendered.workloads() {
            for container in containers(template).into_iter().filter(|c| is_conclave(c)) {
                let ctx = rendered.context(object);
                let args: Vec<&str> = array(container, "/args")
                    .iter()
                    .filter_map(|a| a.as_str())
                    .collect();
                assert_eq!(
                    args.len(),
                    1,
                    "{ctx}: one subcommand, configuration by environment"
                );
                assert!(
                    commands.contains(args[0]),
                    "{ctx}: no subcommand {}",
                    args[0]
                );
                let format = env_value(container, "CONCLAVE_LOG_FORMAT");
                assert_eq!(
                    format.map(|v| &v["value"]),
                    Some(&json!("json")),
                    "{ctx}: logs as a cluster's collector reads them"
                );
                for var in array(container, "/env") {
                    let name = str_of(var, "/name");
                    assert!(
                        known.contains(name) || HELPER_ENV.contains(&name),
                        "{ctx}: the code reads no variable {name}"
                    );
                }
            }
        }
    }
}

#[test]
fn references_resolve_in_every_profile() {
    for rendered in all_rendered() {
        let secrets: BTreeMap<&str, &Value> = rendered
            .kind("Secret")
            .map(|s| (str_of(s, "/metadata/name"), s))
            .collect();
        let config_maps: BTreeSet<&str> = rendered
            .kind("ConfigMap")
            .map(|c| str_of(c, "/metadata/name"))
            .collect();
        let accounts: BTreeSet<&str> = rendered
            .kind("ServiceAccount")
            .map(|s| str_of(s, "/metadata/name"))
            .collect();
        let existing = rendered.profile.existing_secrets;
        let mut used_existing = BTreeSet::new();
        let mut check_secret = |ctx: &str, name: &str, key: Option<&str>| match secrets.get(name) {
            Some(secret) => {
                if let Some(key) = key {
                    assert!(
                        secret["data"].get(key).is_some()
                            || secret["stringData"].get(key).is_some(),
                        "{ctx}: Secret {name} has no key {key}"
                    );
                }
            }
            None => {
                assert!(existing.contains(&name), "{ctx}: no Secret {name}");
                used_existing.insert(name.to_owned());
            }
        };
        for (object, template) in rendered.workloads() {
            let ctx = rendered.context(object);
            let account = str_of(template, "/spec/serviceAccountName");
            assert!(
                accounts.contains(account),
                "{ctx}: no ServiceAccount {account:?}"
            );
            for container in containers(template) {
                for var in array(container, "/env") {
                    if let Some(reference) = var.pointer("/valueFrom/secretKeyRef") {
                        check_secret(&ctx, str_of(reference, "/name"), reference["key"].as_str());
                    }
                    if let Some(reference) = var.pointer("/valueFrom/configMapKeyRef") {
                        let name = str_of(reference, "/name");
                        assert!(
                            config_maps.contains(name)
                                || rendered.profile.existing_config_maps.contains(&name),
                            "{ctx}: {var}"
                        );
                    }
                }
            }
            for volume in array(template, "/spec/volumes") {
                if let Some(name) = volume.pointer("/secret/secretName").and_then(Value::as_str) {
                    check_secret(&ctx, name, None);
                }
                if let Some(name) = volume.pointer("/configMap/name").and_then(Value::as_str) {
                    assert!(
                        config_maps.contains(name)
                            || rendered.profile.existing_config_maps.contains(&name),
                        "{ctx}: no ConfigMap {name}"
                    );
                }
            }
        }
        for binding in rendered
            .kind("RoleBinding")
            .chain(rendered.kind("ClusterRoleBinding"))
        {
            let ctx = rendered.context(binding);
            let role_kind = str_of(binding, "/roleRef/kind");
            let role = str_of(binding, "/roleRef/name");
            assert!(
                rendered.named(role_kind, role).is_some(),
                "{ctx}: no {role_kind} {role}"
            );
            for subject in array(binding, "/subjects") {
                assert!(
                    accounts.contains(str_of(subject, "/name")),
                    "{ctx}: {subject}"
                );
                assert_eq!(str_of(subject, "/namespace"), NAMESPACE, "{ctx}");
            }
        }
        // Every existing Secret the values name is used (a typo would leave one unused).
        let unused: Vec<&&str> = existing
            .iter()
            .filter(|e| !used_existing.contains(**e))
            .collect();
        assert!(
            unused.is_empty(),
            "profile {:?}: named but unused: {unused:?}",
            rendered.profile.name
        );
    }
}

/// Pod labels as the cluster sees them: the template's, plus what the StatefulSet controller
/// adds to each replica.
fn pod_label_sets(object: &Value, template: &Value) -> Vec<BTreeMap<String, String>> {
    let labels: BTreeMap<String, String> = template["metadata"]["labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default();
    if object["kind"] != "StatefulSet" {
        return vec![labels];
    }
    let replicas = object["spec"]["replicas"].as_u64().unwrap_or(1);
    (0..replicas)
        .map(|i| {
            let mut l = labels.clone();
            l.insert(
                "statefulset.kubernetes.io/pod-name".into(),
                format!("{}-{i}", str_of(object, "/metadata/name")),
            );
            l
        })
        .collect()
}

fn selects(selector: &Value, labels: &BTreeMap<String, String>) -> bool {
    selector.as_object().is_some_and(|s| !s.is_empty())
        && selector
            .as_object()
            .into_iter()
            .flatten()
            .all(|(k, v)| labels.get(k).map(String::as_str) == v.as_str())
}

#[test]
fn selectors_select_and_services_reach_container_ports() {
    for rendered in all_rendered() {
        let workloads = rendered.workloads();
        for (object, template) in &workloads {
            let ctx = rendered.context(object);
            let selector = &object["spec"]["selector"]["matchLabels"];
            for labels in pod_label_sets(object, template) {
                assert!(
                    selects(selector, &labels),
                    "{ctx}: its selector misses its pods"
                );
            }
            // No other workload's pods are selected too.
            for (other, other_template) in &workloads {
                if other != object {
                    for labels in pod_label_sets(other, other_template) {
                        assert!(
                            !selects(selector, &labels),
                            "{ctx} also selects {}",
                            rendered.context(other)
                        );
                    }
                }
            }
        }
        for service in rendered.kind("Service") {
            let ctx = rendered.context(service);
            let selector = &service["spec"]["selector"];
            let targets: Vec<&Value> = workloads
                .iter()
                .filter(|(o, t)| pod_label_sets(o, t).iter().any(|l| selects(selector, l)))
                .map(|(_, t)| *t)
                .collect();
            assert!(!targets.is_empty(), "{ctx}: selects no pod");
            for port in array(service, "/spec/ports") {
                let target = &port["targetPort"];
                for template in &targets {
                    let found = containers(template)
                        .iter()
                        .flat_map(|c| array(c, "/ports"))
                        .any(|p| {
                            (target.is_string() && p["name"] == *target)
                                || (target.is_number() && p["containerPort"] == *target)
                                || (target.is_null() && p["containerPort"] == port["port"])
                        });
                    assert!(found, "{ctx}: targetPort {target} is no container port");
                }
            }
        }
        for monitor in rendered.kind("ServiceMonitor") {
            let ctx = rendered.context(monitor);
            let selector = &monitor["spec"]["selector"]["matchLabels"];
            let service = rendered
                .kind("Service")
                .find(|s| {
                    let labels: BTreeMap<String, String> = s["metadata"]["labels"]
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                        .collect();
                    selects(selector, &labels)
                        && array(s, "/spec/ports")
                            .iter()
                            .any(|p| p["name"] == monitor["spec"]["endpoints"][0]["port"])
                })
                .is_some();
            assert!(service, "{ctx}: no Service with that port matches");
        }
        for ingress in rendered.kind("Ingress") {
            for path in array(ingress, "/spec/rules")
                .iter()
                .flat_map(|r| array(r, "/http/paths"))
            {
                let name = str_of(path, "/backend/service/name");
                assert!(
                    rendered.named("Service", name).is_some(),
                    "{}: no Service {name}",
                    rendered.context(ingress)
                );
            }
        }
    }
}

/// The port named `name` of the first Conclave container of the workload whose pods carry
/// `component`, with the address its `listen_env` variable gives the process.
fn listener(rendered: &Rendered, component: &str, name: &str, listen_env: &str) -> (u64, String) {
    let (object, template) = rendered
        .workloads()
        .into_iter()
        .find(|(_, t)| t["metadata"]["labels"]["app.kubernetes.io/component"] == component)
        .unwrap_or_else(|| panic!("no {component} workload"));
    let ctx = rendered.context(object);
    let container = containers(template)
        .into_iter()
        .find(|c| is_conclave(c))
        .expect("a conclave container");
    let port = array(container, "/ports")
        .into_iter()
        .find(|p| p["name"] == name)
        .and_then(|p| p["containerPort"].as_u64())
        .unwrap_or_else(|| panic!("{ctx}: no container port {name}"));
    let listen = env_value(container, listen_env)
        .and_then(|v| v["value"].as_str())
        .unwrap_or_else(|| panic!("{ctx}: no {listen_env}"))
        .to_owned();
    (port, listen)
}

#[test]
fn nothing_internal_is_reachable_through_an_ingress() {
    for rendered in all_rendered() {
        // Each process listens for /metrics (and the API for SFU reports) on the port named
        // `internal`, apart from the public one.
        for (component, public_env, internal_env) in [
            ("api", "CONCLAVE_LISTEN", "CONCLAVE_INTERNAL_LISTEN"),
            ("sfu", "CONCLAVE_SFU_LISTEN", "CONCLAVE_SFU_INTERNAL_LISTEN"),
        ] {
            let (internal, listen) = listener(rendered, component, "internal", internal_env);
            assert_eq!(listen, format!("0.0.0.0:{internal}"), "{component}");
            let (public, listen) = listener(rendered, component, "http", public_env);
            assert_eq!(listen, format!("0.0.0.0:{public}"), "{component}");
            assert_ne!(public, internal, "{component}");
        }
        // No Ingress backend leads to an internal port.
        for ingress in rendered.kind("Ingress") {
            let ctx = rendered.context(ingress);
            for path in array(ingress, "/spec/rules")
                .iter()
                .flat_map(|r| array(r, "/http/paths"))
            {
                let service = rendered
                    .named("Service", str_of(path, "/backend/service/name"))
                    .expect("the backend Service");
                for port in array(service, "/spec/ports") {
                    assert_ne!(
                        port["targetPort"],
                        "internal",
                        "{ctx}: its Service {} also reaches the internal listener",
                        rendered.context(service)
                    );
                }
                assert_ne!(service["spec"]["type"], "LoadBalancer", "{ctx}");
            }
        }
        // Every Service that reaches an internal port stays inside the cluster.
        for service in rendered.kind("Service") {
            if array(service, "/spec/ports")
                .iter()
                .any(|p| p["targetPort"] == "internal")
            {
                assert_eq!(
                    service["spec"]["type"],
                    "ClusterIP",
                    "{}",
                    rendered.context(service)
                );
            }
        }
        // Prometheus scrapes the internal listeners (the operator has only one, for metrics).
        for monitor in rendered.kind("ServiceMonitor") {
            let port = &monitor["spec"]["endpoints"][0]["port"];
            assert!(
                port == "internal" || port == "metrics",
                "{}: scrapes {port}",
                rendered.context(monitor)
            );
        }
        for monitor in rendered.kind("PodMonitor") {
            assert_eq!(
                monitor["spec"]["podMetricsEndpoints"][0]["port"],
                "internal",
                "{}",
                rendered.context(monitor)
            );
        }
        // SFU pods post their room reports to the API's internal Service.
        let sfu = rendered
            .kind("StatefulSet")
            .find(|s| {
                s["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] == "sfu"
            })
            .expect("the SFU StatefulSet");
        let url = env_value(
            &sfu["spec"]["template"]["spec"]["containers"][0],
            "CONCLAVE_SFU_API_URL",
        )
        .and_then(|v| v["value"].as_str())
        .expect("CONCLAVE_SFU_API_URL");
        let url = reqwest::Url::parse(url).expect("a URL");
        let host = url.host_str().expect("a host");
        let name = host.split('.').next().unwrap_or_default();
        let service = rendered
            .named("Service", name)
            .unwrap_or_else(|| panic!("CONCLAVE_SFU_API_URL names no Service: {url}"));
        let port = array(service, "/spec/ports")
            .into_iter()
            .find(|p| p["port"].as_u64() == url.port().map(u64::from))
            .unwrap_or_else(|| panic!("{url}: no such port on {name}"));
        assert_eq!(port["targetPort"], "internal", "{url}");
    }
}

#[test]
fn probes_hit_healthz_and_readyz_on_a_container_port() {
    // Each component's router serves both paths.
    for file in [
        "api/src/http/ops.rs",
        "sfu/src/server.rs",
        "operator/src/http.rs",
        "sip/src/http.rs",
    ] {
        let source = std::fs::read_to_string(repo().join(file)).expect("router source");
        for path in ["/healthz", "/readyz"] {
            assert!(
                source.contains(&format!(".route(\"{path}\"")),
                "{file} serves no {path}"
            );
        }
    }
    for rendered in all_rendered() {
        for (object, template) in rendered.workloads() {
            for container in containers(template).into_iter().filter(|c| is_conclave(c)) {
                let ctx = rendered.context(object);
                let ports: Vec<&Value> = array(container, "/ports");
                for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")]
                {
                    let get = &container[probe]["httpGet"];
                    assert_eq!(get["path"], path, "{ctx}: {probe}");
                    assert!(
                        ports
                            .iter()
                            .any(|p| p["name"] == get["port"] && p["protocol"] == "TCP"),
                        "{ctx}: {probe} port {} is no container port",
                        get["port"]
                    );
                }
                if let Some(startup) = container.get("startupProbe") {
                    assert_eq!(startup["httpGet"]["path"], "/healthz", "{ctx}");
                }
            }
        }
    }
}

#[test]
fn every_pod_runs_locked_down() {
    for rendered in all_rendered() {
        for (object, template) in rendered.workloads() {
            let ctx = rendered.context(object);
            let pod = &template["spec"]["securityContext"];
            assert_eq!(pod["runAsNonRoot"], true, "{ctx}");
            assert!(pod["runAsUser"].as_u64().is_some_and(|u| u > 0), "{ctx}");
            assert_eq!(pod["seccompProfile"]["type"], "RuntimeDefault", "{ctx}");
            for container in containers(template) {
                let sc = &container["securityContext"];
                assert_eq!(sc["allowPrivilegeEscalation"], false, "{ctx}");
                assert_eq!(sc["readOnlyRootFilesystem"], true, "{ctx}");
                assert_eq!(sc["runAsNonRoot"], true, "{ctx}");
                assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{ctx}");
                assert!(sc["capabilities"].get("add").is_none(), "{ctx}");
                assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault", "{ctx}");
                assert!(
                    container["resources"]["requests"].is_object(),
                    "{ctx}: no requests"
                );
            }
        }
    }
}

fn env_value<'a>(container: &'a Value, name: &str) -> Option<&'a Value> {
    array(container, "/env")
        .into_iter()
        .find(|v| v["name"] == name)
}

#[test]
fn the_sfu_process_and_its_annotations_say_the_same() {
    for rendered in all_rendered() {
        let sfu = rendered
            .kind("StatefulSet")
            .find(|s| {
                s["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] == "sfu"
            })
            .expect("the SFU StatefulSet");
        let ctx = rendered.context(sfu);
        let template = &sfu["spec"]["template"];
        let annotations = &template["metadata"]["annotations"];
        let container = &template["spec"]["containers"][0];
        let env = |name: &str| {
            env_value(container, name)
                .and_then(|v| v["value"].as_str())
                .unwrap_or_else(|| panic!("{ctx}: no {name}"))
                .to_owned()
        };
        assert_eq!(
            annotations["conclave.dev/capacity"],
            env("CONCLAVE_SFU_MAX_PARTICIPANTS"),
            "{ctx}"
        );
        let ports = env("CONCLAVE_SFU_UDP_PORTS");
        let by_pod = env_value(container, "CONCLAVE_SFU_UDP_PORTS_BY_POD")
            .and_then(|v| v["value"].as_str())
            .map(str::to_owned);
        // The operator places in the ports the process binds: its own slice when pods have
        // slices of their own, else the whole range.
        assert_eq!(
            annotations["conclave.dev/udp-ports"],
            by_pod.clone().unwrap_or_else(|| ports.clone()),
            "{ctx}"
        );
        let (first, last) = ports.split_once('-').expect("FIRST-LAST");
        let (first, last): (u16, u16) = (first.parse().expect("port"), last.parse().expect("port"));
        let endpoint = str_of(annotations, "/conclave.dev~1endpoint");
        assert!(
            (endpoint.starts_with("ws://") || endpoint.starts_with("wss://"))
                && endpoint.ends_with("/rtc"),
            "{ctx}: the endpoint is the websocket URL clients open: {endpoint}"
        );
        assert!(
            endpoint.contains("{pod}") || endpoint.contains("{podIP}"),
            "{ctx}: one endpoint per pod: {endpoint}"
        );
        for (name, field) in [
            ("POD_NAME", "metadata.name"),
            ("POD_IP", "status.podIP"),
            ("NODE_IP", "status.hostIP"),
            ("CONCLAVE_SFU_NODE_NAME", "spec.nodeName"),
        ] {
            let var = env_value(container, name).unwrap_or_else(|| panic!("{ctx}: no {name}"));
            assert_eq!(
                var["valueFrom"]["fieldRef"]["fieldPath"], field,
                "{ctx}: {name}"
            );
        }
        let api_url = env("CONCLAVE_SFU_API_URL");
        let api_service = api_url
            .trim_start_matches("http://")
            .split('.')
            .next()
            .unwrap_or_default()
            .to_owned();
        assert!(
            rendered.named("Service", &api_service).is_some(),
            "{ctx}: {api_url}"
        );
        let grace = template["spec"]["terminationGracePeriodSeconds"]
            .as_u64()
            .expect("grace");
        let drain: u64 = env("CONCLAVE_SFU_DRAIN_SECONDS").parse().expect("seconds");
        assert_eq!(
            drain + 10,
            grace,
            "{ctx}: meetings go on until 10 seconds before the pod is killed, then move"
        );
        assert!(
            grace >= 20,
            "{ctx}: the operator moves meetings 15 seconds before the grace period ends"
        );
        // A dead SFU is NotReady within about two seconds.
        let readiness = &container["readinessProbe"];
        let period = readiness["periodSeconds"].as_u64().unwrap_or(10);
        let failures = readiness["failureThreshold"].as_u64().unwrap_or(3);
        let timeout = readiness["timeoutSeconds"].as_u64().unwrap_or(1);
        assert!(
            period * failures <= 2 && timeout <= 1,
            "{ctx}: readiness every {period}s, {failures} failures, {timeout}s timeout"
        );
        // A rollout replaces one pod at a time and waits for the new one to be seen ready.
        assert_eq!(sfu["spec"]["podManagementPolicy"], "Parallel", "{ctx}");
        assert_eq!(
            sfu["spec"]["updateStrategy"]["type"], "RollingUpdate",
            "{ctx}"
        );
        assert_eq!(
            sfu["spec"]["updateStrategy"]["rollingUpdate"]["partition"]
                .as_u64()
                .unwrap_or(0),
            0,
            "{ctx}: every pod is updated"
        );
        assert!(
            sfu["spec"]["minReadySeconds"].as_u64().unwrap_or(0) >= 1,
            "{ctx}: the next pod drains only once the operator saw its replacement ready"
        );

        let host_network = template["spec"]["hostNetwork"] == true;
        let single_port = env_value(container, "CONCLAVE_SFU_UDP_PORT")
            .and_then(|v| v["value"].as_str())
            .map(|v| v.parse::<u64>().expect("a port"));
        if rendered.profile.name == "single port" {
            assert_eq!(single_port, Some(7882), "{ctx}: the profile's one port");
            let udp: Vec<&Value> = array(container, "/ports")
                .into_iter()
                .filter(|p| p["protocol"] == "UDP")
                .collect();
            assert!(
                udp.len() == 1 && udp[0]["hostPort"] == udp[0]["containerPort"],
                "{ctx}: the one port mapped on the node: {udp:?}"
            );
            assert!(
                env("CONCLAVE_SFU_ANNOUNCED_IPS").contains("$(NODE_IP)"),
                "{ctx}: the node's address is announced"
            );
            let policy = policy_of(rendered, "sfu");
            let media: Vec<&Value> = array(policy, "/spec/ingress")
                .into_iter()
                .flat_map(|rule| array(rule, "/ports"))
                .filter(|p| p["protocol"] == "UDP")
                .collect();
            assert!(
                media.len() == 1 && media[0]["port"] == 7882 && media[0]["endPort"].is_null(),
                "{ctx}: the network policy lets in the one port: {media:?}"
            );
        }
        let udp: Vec<&Value> = array(container, "/ports")
            .into_iter()
            .filter(|p| p["protocol"] == "UDP")
            .collect();
        let anti = &template["spec"]["affinity"]["podAntiAffinity"];
        if host_network {
            assert_eq!(
                template["spec"]["dnsPolicy"], "ClusterFirstWithHostNet",
                "{ctx}"
            );
            let required = array(anti, "/requiredDuringSchedulingIgnoredDuringExecution");
            assert!(
                required
                    .iter()
                    .any(|t| t["topologyKey"] == "kubernetes.io/hostname"
                        && selects(
                            &t["labelSelector"]["matchLabels"],
                            &pod_label_sets(sfu, template)[0]
                        )),
                "{ctx}: two hostNetwork SFU pods could share a node"
            );
            assert!(udp.is_empty(), "{ctx}: hostNetwork needs no port mapping");
        } else {
            let declared: Vec<u64> = udp
                .iter()
                .map(|p| p["containerPort"].as_u64().expect("port"))
                .collect();
            match &single_port {
                // Single-port mode: the one port the process binds, and no range.
                Some(port) => assert_eq!(
                    declared,
                    vec![*port],
                    "{ctx}: the one UDP port is the only UDP container port"
                ),
                None => {
                    let range: Vec<u64> = (u64::from(first)..=u64::from(last)).collect();
                    assert_eq!(
                        declared, range,
                        "{ctx}: every UDP port of the range is a container port"
                    );
                }
            }
        }
        let host_ports = udp.iter().filter(|p| !p["hostPort"].is_null()).count();
        let media_services: Vec<&Value> = rendered
            .kind("Service")
            .filter(|s| str_of(s, "/metadata/name").ends_with("-media"))
            .collect();
        let announced_map = env_value(container, "CONCLAVE_SFU_ANNOUNCED_IP_MAP")
            .and_then(|v| v["value"].as_str())
            .unwrap_or_default()
            .to_owned();
        // Each entry as the SFU parses it: node/NODE=IP or pod/POD=IP.
        for entry in announced_map.split(',').filter(|e| !e.is_empty()) {
            let (who, ip) = entry.split_once('=').expect("WHO=IP");
            assert!(
                who.starts_with("node/") || who.starts_with("pod/"),
                "{ctx}: {entry}"
            );
            ip.parse::<std::net::IpAddr>()
                .unwrap_or_else(|_| panic!("{ctx}: {entry}: not an address"));
        }
        // ICE over TCP: the flag, the container port, and the way in of the mode.
        let ice_tcp = env_value(container, "CONCLAVE_SFU_ICE_TCP_PORT")
            .and_then(|v| v["value"].as_str())
            .map(|v| v.parse::<u64>().expect("a port"));
        let ice_port = array(container, "/ports")
            .into_iter()
            .find(|p| p["name"] == "ice-tcp")
            .cloned();
        assert_eq!(
            ice_tcp,
            ice_port.as_ref().and_then(|p| p["containerPort"].as_u64()),
            "{ctx}: the ICE-TCP port the process listens on is the container's"
        );
        if let Some(port) = &ice_port {
            assert_eq!(port["protocol"], "TCP", "{ctx}");
            if rendered.profile.name == "hostPort" {
                assert_eq!(port["hostPort"], port["containerPort"], "{ctx}");
            }
        }
        if matches!(rendered.profile.name, "hostPort" | "service LoadBalancer") {
            assert!(ice_tcp.is_some(), "{ctx}: the profile turns ICE-TCP on");
        }
        let replicas = sfu["spec"]["replicas"].as_u64().unwrap_or(0);
        let exposure = rendered
            .profile
            .name
            .strip_prefix("service ")
            .unwrap_or(rendered.profile.name);
        match exposure {
            "hostPort" => {
                assert!(!host_network, "{ctx}");
                assert_eq!(
                    host_ports,
                    udp.len(),
                    "{ctx}: every port mapped on the node"
                );
                for p in &udp {
                    assert_eq!(p["hostPort"], p["containerPort"], "{ctx}");
                }
                assert!(
                    env("CONCLAVE_SFU_ANNOUNCED_IPS").contains("$(NODE_IP)"),
                    "{ctx}"
                );
            }
            "hostNetwork" => {
                assert!(host_network, "{ctx}");
                assert_eq!(
                    announced_map,
                    "node/node-b=203.0.113.12,node/node-c=203.0.113.13,node/node-c=2001:db8::13",
                    "{ctx}: the nodes behind NAT announce their public addresses"
                );
            }
            "NodePort" | "LoadBalancer" => {
                assert!(
                    !host_network && host_ports == 0,
                    "{ctx}: nothing on the node"
                );
                assert_eq!(media_services.len() as u64, replicas, "{ctx}: one per pod");
                let mut taken = BTreeSet::new();
                for i in 0..replicas {
                    let pod = format!("{}-{i}", str_of(sfu, "/metadata/name"));
                    let service = rendered
                        .named("Service", &format!("{pod}-media"))
                        .unwrap_or_else(|| panic!("{ctx}: no media Service for {pod}"));
                    assert_eq!(service["spec"]["type"], exposure, "{ctx}");
                    assert_eq!(
                        service["spec"]["selector"]["statefulset.kubernetes.io/pod-name"], pod,
                        "{ctx}: the Service reaches its pod only"
                    );
                    assert_eq!(service["spec"]["externalTrafficPolicy"], "Local", "{ctx}");
                    let ports = array(service, "/spec/ports");
                    let tcp: Vec<&&Value> =
                        ports.iter().filter(|p| p["protocol"] == "TCP").collect();
                    match ice_tcp {
                        Some(_) => assert!(
                            tcp.len() == 1 && tcp[0]["targetPort"] == "ice-tcp",
                            "{ctx}: the pod's ICE-TCP port on its Service: {tcp:?}"
                        ),
                        None => assert!(tcp.is_empty(), "{ctx}: {tcp:?}"),
                    }
                    let served: Vec<u64> = ports
                        .iter()
                        .filter(|p| p["protocol"] == "UDP")
                        .map(|p| {
                            assert_eq!(p["protocol"], "UDP", "{ctx}");
                            assert_eq!(
                                p["targetPort"], p["port"],
                                "{ctx}: the SFU binds what it announces"
                            );
                            if exposure == "NodePort" {
                                assert_eq!(p["nodePort"], p["port"], "{ctx}: node port = port");
                            }
                            p["port"].as_u64().expect("port")
                        })
                        .collect();
                    if exposure == "NodePort" {
                        // The pod's slice, as the operator and the process read it.
                        let by_pod = by_pod.clone().expect("per-pod ports");
                        let slice = by_pod
                            .split(',')
                            .find_map(|e| e.strip_prefix(&format!("{pod}=")))
                            .unwrap_or_else(|| panic!("{ctx}: {pod} has no ports: {by_pod}"));
                        let (a, b) = slice.split_once('-').expect("FIRST-LAST");
                        let slice: Vec<u64> =
                            (a.parse().expect("port")..=b.parse().expect("port")).collect();
                        assert_eq!(served, slice, "{ctx}: {pod}");
                        for port in served {
                            assert!(taken.insert(port), "{ctx}: node port {port} twice");
                            assert!((u64::from(first)..=u64::from(last)).contains(&port));
                        }
                        assert!(env("CONCLAVE_SFU_ANNOUNCED_IPS").contains("$(NODE_IP)"));
                    } else {
                        let range: Vec<u64> = (u64::from(first)..=u64::from(last)).collect();
                        assert_eq!(served, range, "{ctx}: {pod}");
                        let ip = str_of(service, "/spec/loadBalancerIP");
                        assert!(
                            announced_map
                                .split(',')
                                .any(|e| e == format!("pod/{pod}={ip}")),
                            "{ctx}: {pod} announces its load balancer {ip}: {announced_map}"
                        );
                    }
                }
            }
            _ => assert!(media_services.is_empty(), "{ctx}: {media_services:?}"),
        }
        // Behind its Ingress (or the API's relay) the SFU must believe the proxy's
        // X-Forwarded-For, or every client shares the proxy's address for the per-network
        // limits.
        let trusted = env_value(container, "CONCLAVE_SFU_TRUSTED_PROXIES")
            .and_then(|v| v["value"].as_str())
            .unwrap_or_default()
            .to_owned();
        if signaling_via_api(rendered) {
            assert!(
                !trusted.is_empty(),
                "{ctx}: the SFU behind the API's relay trusts no proxy"
            );
        } else if rendered
            .named("Ingress", str_of(sfu, "/metadata/name"))
            .is_some()
        {
            assert!(
                !trusted.is_empty(),
                "{ctx}: the SFU behind its Ingress trusts no proxy"
            );
        } else {
            assert!(
                trusted.is_empty(),
                "{ctx}: clients reach /rtc directly: {trusted}"
            );
        }
        // With per-pod Ingress hosts, the endpoint of each replica is one of them.
        if let Some(ingress) = rendered.named("Ingress", str_of(sfu, "/metadata/name")) {
            let hosts: BTreeSet<&str> = array(ingress, "/spec/rules")
                .iter()
                .map(|r| str_of(r, "/host"))
                .collect();
            for i in 0..sfu["spec"]["replicas"].as_u64().unwrap_or(0) {
                let pod = format!("{}-{i}", str_of(sfu, "/metadata/name"));
                let url = endpoint
                    .replace("{pod}", &pod)
                    .replace("{namespace}", NAMESPACE);
                let host = url
                    .split("://")
                    .nth(1)
                    .and_then(|r| r.split('/').next())
                    .unwrap_or_default();
                assert!(
                    hosts.contains(host),
                    "{ctx}: {url} has no Ingress rule ({hosts:?})"
                );
                // A draining pod (not ready) still serves its meetings and their joins.
                let service = rendered
                    .named("Service", &pod)
                    .unwrap_or_else(|| panic!("{ctx}: no Service {pod}"));
                assert_eq!(
                    service["spec"]["publishNotReadyAddresses"], true,
                    "{ctx}: {pod}'s Service drops the pod while it drains"
                );
            }
        }
    }
}

/// Whether the API relays the SFU pods' signaling (`sfu.signaling: viaApi`), as its container
/// is told.
fn signaling_via_api(rendered: &Rendered) -> bool {
    let (_, template) = rendered
        .workloads()
        .into_iter()
        .find(|(_, t)| t["metadata"]["labels"]["app.kubernetes.io/component"] == "api")
        .expect("the API Deployment");
    let container = &template["spec"]["containers"][0];
    match env_value(container, "CONCLAVE_SFU_SIGNALING_VIA_API").map(|v| &v["value"]) {
        Some(Value::String(value)) if value == "true" => true,
        Some(Value::String(value)) if value == "false" => false,
        other => panic!(
            "{}: CONCLAVE_SFU_SIGNALING_VIA_API is {other:?}, not \"true\" or \"false\"",
            rendered.profile.name
        ),
    }
}

/// The policy of `component`'s pods.
fn policy_of<'a>(rendered: &'a Rendered, component: &str) -> &'a Value {
    rendered
        .kind("NetworkPolicy")
        .find(|p| {
            p["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == component
        })
        .unwrap_or_else(|| {
            panic!(
                "{}: no NetworkPolicy for {component}",
                rendered.profile.name
            )
        })
}

/// Whether a rule's peers (`to` or `from`) include the pods of `component`.
fn peers_include(rule: &Value, side: &str, component: &str) -> bool {
    array(rule, &format!("/{side}"))
        .iter()
        .any(|peer| peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == component)
}

#[test]
fn with_signaling_via_the_api_one_host_name_reaches_every_pod() {
    let mut via_api = 0;
    for rendered in all_rendered() {
        let sfu = rendered
            .kind("StatefulSet")
            .find(|s| {
                s["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] == "sfu"
            })
            .expect("the SFU StatefulSet");
        let ctx = rendered.context(sfu);
        let template = &sfu["spec"]["template"];
        let endpoint = str_of(
            &template["metadata"]["annotations"],
            "/conclave.dev~1endpoint",
        );
        let sfu_port = array(&template["spec"]["containers"][0], "/ports")
            .into_iter()
            .find(|p| p["name"] == "http")
            .and_then(|p| p["containerPort"].as_u64())
            .expect("the SFU's signaling port");
        if !signaling_via_api(rendered) {
            continue;
        }
        via_api += 1;
        // The operator writes this into assignments and the API dials it: a plain websocket on
        // the pod's own signaling port, inside the cluster.
        assert!(
            endpoint.starts_with("ws://{podIP}:") || endpoint.starts_with("ws://{pod}."),
            "{ctx}: the API relays to an in-cluster ws:// URL, not {endpoint}"
        );
        assert!(
            endpoint.contains(&format!(":{sfu_port}/")),
            "{ctx}: {endpoint} is not on the signaling port {sfu_port}"
        );
        // No per-pod host: nobody needs a wildcard record or certificate.
        assert!(
            rendered
                .named("Ingress", str_of(sfu, "/metadata/name"))
                .is_none(),
            "{ctx}: per-pod Ingress hosts with signaling via the API"
        );
        // The portal's Ingress carries /rtc/<pod> to the API's public port, with websocket
        // timeouts for the common controllers.
        let api_service = format!("{}-conclave-api", RELEASE);
        for ingress in rendered.kind("Ingress") {
            let paths: Vec<&Value> = array(ingress, "/spec/rules")
                .iter()
                .flat_map(|r| array(r, "/http/paths"))
                .collect();
            assert!(
                paths.iter().any(|p| {
                    let path = str_of(p, "/path");
                    str_of(p, "/backend/service/name") == api_service
                        && str_of(p, "/backend/service/port/name") == "http"
                        && p["pathType"] == "Prefix"
                        && "/rtc/meet-conclave-sfu-0".starts_with(path)
                }),
                "{}: /rtc/<pod> does not reach the API",
                rendered.context(ingress)
            );
            let annotations = &ingress["metadata"]["annotations"];
            assert_eq!(
                annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"],
                "3600",
                "{}",
                rendered.context(ingress)
            );
        }
        // NetworkPolicies let the API reach the SFU's signaling port, and only it.
        if rendered.kind("NetworkPolicy").next().is_some() {
            let api = policy_of(rendered, "api");
            let egress = array(api, "/spec/egress");
            let relay = egress
                .iter()
                .find(|rule| peers_include(rule, "to", "sfu"))
                .unwrap_or_else(|| panic!("{ctx}: the API may not reach the SFU pods"));
            assert_eq!(
                array(relay, "/ports")
                    .iter()
                    .map(|p| (p["port"].as_u64(), p["protocol"].as_str()))
                    .collect::<Vec<_>>(),
                vec![(Some(sfu_port), Some("TCP"))],
                "{ctx}"
            );
            if template["spec"]["hostNetwork"] == true {
                assert!(
                    array(relay, "/to")
                        .iter()
                        .any(|peer| peer["ipBlock"]["cidr"].is_string()),
                    "{ctx}: SFU pods on the host network listen on node addresses"
                );
            }
            let sfu_policy = policy_of(rendered, "sfu");
            assert!(
                array(sfu_policy, "/spec/ingress").iter().any(|rule| {
                    peers_include(rule, "from", "api")
                        && array(rule, "/ports").iter().any(|p| p["port"] == "http")
                }),
                "{ctx}: the SFU does not accept the API's relay on its signaling port"
            );
        }
    }
    assert!(
        via_api >= 2,
        "the defaults and one-hostname-values.yaml relay signaling through the API"
    );
}

// --- RBAC ------------------------------------------------------------------------------------------

/// (API group, resource[/subresource], verb).
type Grant = (String, String, String);

/// What the committed request log says a component needs (verbs as the authorizer names them;
/// see fakekube/src/rbac.rs for how requests become verbs).
fn needed(file: &str) -> BTreeSet<Grant> {
    let text = std::fs::read_to_string(repo().join(file)).unwrap_or_else(|err| {
        panic!("{file}: {err}; run the component's tests with CONCLAVE_UPDATE_RBAC=1")
    });
    let log: Value = serde_json::from_str(&text).expect("RBAC log is JSON");
    let mut grants = BTreeSet::new();
    for request in array(&log, "/requests") {
        let resource = match str_of(request, "/subresource") {
            "" => str_of(request, "/resource").to_owned(),
            sub => format!("{}/{sub}", str_of(request, "/resource")),
        };
        let group = str_of(request, "/group").to_owned();
        grants.insert((group, resource, str_of(request, "/verb").to_owned()));
    }
    assert!(!grants.is_empty(), "{file} lists no request");
    grants
}

/// What the Roles and ClusterRoles bound to `account` grant: (grant, held cluster-wide).
fn granted(rendered: &Rendered, account: &str) -> BTreeMap<Grant, bool> {
    let mut out = BTreeMap::new();
    for binding in rendered
        .kind("RoleBinding")
        .chain(rendered.kind("ClusterRoleBinding"))
    {
        if !array(binding, "/subjects")
            .iter()
            .any(|s| s["name"] == account)
        {
            continue;
        }
        let cluster_wide = binding["kind"] == "ClusterRoleBinding";
        let role = rendered
            .named(
                str_of(binding, "/roleRef/kind"),
                str_of(binding, "/roleRef/name"),
            )
            .expect("bound role exists");
        for rule in array(role, "/rules") {
            for group in array(rule, "/apiGroups") {
                for resource in array(rule, "/resources") {
                    for verb in array(rule, "/verbs") {
                        let grant = (
                            group.as_str().unwrap_or_default().to_owned(),
                            resource.as_str().unwrap_or_default().to_owned(),
                            verb.as_str().unwrap_or_default().to_owned(),
                        );
                        assert!(
                            !grant.0.contains('*')
                                && !grant.1.contains('*')
                                && !grant.2.contains('*'),
                            "{}: no wildcards in RBAC",
                            rendered.context(role)
                        );
                        *out.entry(grant).or_insert(false) |= cluster_wide;
                    }
                }
            }
        }
    }
    out
}

#[test]
fn the_operator_is_granted_exactly_what_it_calls() {
    let need = needed("operator/tests/rbac-observed.json");
    for rendered in all_rendered() {
        let account = format!("{RELEASE}-conclave-operator");
        let grants = granted(rendered, &account);
        let have: BTreeSet<Grant> = grants.keys().cloned().collect();
        assert_eq!(
            have,
            need,
            "profile {:?}: the operator's RBAC differs from what it calls (missing: {:?}, more: {:?})",
            rendered.profile.name,
            need.difference(&have).collect::<Vec<_>>(),
            have.difference(&need).collect::<Vec<_>>()
        );
        let all = rendered.profile.name == "watchNamespaces all";
        for (grant, cluster_wide) in &grants {
            // The Lease is always the operator's own namespace's; the rest follows watchNamespaces.
            let expected = all && grant.0 != "coordination.k8s.io";
            assert_eq!(
                *cluster_wide, expected,
                "profile {:?}: {grant:?}",
                rendered.profile.name
            );
        }
    }
}

/// The operator finds the SFU pods by its selector and keeps the Lease its Role names.
#[test]
fn the_operator_selects_the_sfu_pods_and_holds_the_lease_its_role_allows() {
    for rendered in all_rendered() {
        let operator = rendered
            .named("Deployment", &format!("{RELEASE}-conclave-operator"))
            .expect("operator Deployment");
        let ctx = rendered.context(operator);
        let container = &operator["spec"]["template"]["spec"]["containers"][0];
        let value = |name: &str| {
            env_value(container, name)
                .and_then(|v| v["value"].as_str())
                .unwrap_or_else(|| panic!("{ctx}: no {name}"))
                .to_owned()
        };
        let selector: Value = value("CONCLAVE_OPERATOR_SFU_SELECTOR")
            .split(',')
            .map(|term| term.split_once('=').expect("key=value selector"))
            .map(|(k, v)| (k.to_owned(), json!(v)))
            .collect::<serde_json::Map<_, _>>()
            .into();
        let sfu = rendered
            .named("StatefulSet", &format!("{RELEASE}-conclave-sfu"))
            .expect("SFU StatefulSet");
        for labels in pod_label_sets(sfu, &sfu["spec"]["template"]) {
            assert!(
                selects(&selector, &labels),
                "{ctx}: {selector} misses the SFU pods"
            );
        }
        for (other, template) in rendered.workloads() {
            if other != sfu {
                for labels in pod_label_sets(other, template) {
                    assert!(
                        !selects(&selector, &labels),
                        "{ctx}: selects {}",
                        rendered.context(other)
                    );
                }
            }
        }
        let lease = value("CONCLAVE_OPERATOR_LEASE_NAME");
        let named_in_role = rendered
            .kind("Role")
            .flat_map(|r| array(r, "/rules"))
            .filter(|rule| array(rule, "/resources").iter().any(|r| *r == "leases"))
            .any(|rule| array(rule, "/resourceNames").iter().any(|n| **n == lease));
        assert!(named_in_role, "{ctx}: no Role rule names the Lease {lease}");
        let watched = value("CONCLAVE_OPERATOR_NAMESPACE");
        let all = rendered.profile.name == "watchNamespaces all";
        assert_eq!(
            watched.is_empty(),
            all,
            "{ctx}: watched namespace {watched:?}"
        );
    }
}

#[test]
fn the_api_is_granted_exactly_what_its_kubernetes_store_calls() {
    let need = needed("api/tests/rbac-observed.json");
    for rendered in all_rendered() {
        let account = format!("{RELEASE}-conclave-api");
        let grants = granted(rendered, &account);
        let api = rendered
            .named("Deployment", &account)
            .expect("API Deployment");
        let automount = api["spec"]["template"]["spec"]["automountServiceAccountToken"].clone();
        let store = env_value(
            &api["spec"]["template"]["spec"]["containers"][0],
            "CONCLAVE_CONFERENCE_STORE",
        )
        .map(|v| v["value"].clone());
        if store == Some(json!("kubernetes")) {
            let have: BTreeSet<Grant> = grants.keys().cloned().collect();
            assert_eq!(
                have,
                need,
                "the API's RBAC differs from what its store calls (missing: {:?}, more: {:?})",
                need.difference(&have).collect::<Vec<_>>(),
                have.difference(&need).collect::<Vec<_>>()
            );
            assert!(grants.values().all(|cluster| !cluster), "namespaced only");
            assert_eq!(automount, true);
        } else {
            assert!(
                grants.is_empty(),
                "profile {:?}: the SQL store needs no RBAC",
                rendered.profile.name
            );
            assert_eq!(
                automount, false,
                "profile {:?}: no token without RBAC",
                rendered.profile.name
            );
        }
    }
}

// --- values and the CRD ------------------------------------------------------------------------------

fn refused(args: &[&str]) -> String {
    match render_args(args) {
        Ok(_) => panic!("{args:?} was accepted"),
        Err(err) => err,
    }
}

#[test]
fn bad_values_are_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = |name: &str, yaml: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, yaml).expect("write values");
        path.display().to_string()
    };
    let single_port = file("ports.yaml", "sfu:\n  udpPorts: \"40000\"\n");
    let err = refused(&["-f", &single_port]);
    assert!(
        err.contains("values don't meet the specifications of the schema"),
        "{err}"
    );
    assert!(
        err.contains("sfu.udpPorts: Does not match pattern"),
        "{err}"
    );

    let err = refused(&["--set", "operator.replicas=0"]);
    assert!(
        err.contains("operator.replicas: Must be greater than or equal to 1"),
        "{err}"
    );
    let err = refused(&["--set", "sfu.replicas=0", "--set", "api.replicas=0"]);
    assert!(
        err.contains("sfu.replicas") && err.contains("api.replicas"),
        "{err}"
    );

    let err = refused(&["--set", "conferenceStore=etcd"]);
    assert!(
        err.contains(r#"conferenceStore must be one of the following: "sql", "kubernetes""#),
        "{err}"
    );
    let err = refused(&["--set", "sfu.exposure=nodePort"]);
    assert!(
        err.contains("sfu.exposure must be one of the following"),
        "{err}"
    );
    let err = refused(&["--set", "operator.watchNamespaces=some"]);
    assert!(
        err.contains("operator.watchNamespaces must be one of the following"),
        "{err}"
    );

    // A typo is refused instead of being ignored.
    let err = refused(&["--set", "sfu.capcity=10"]);
    assert!(
        err.contains("Additional property capcity is not allowed"),
        "{err}"
    );

    // What the schema cannot express, the templates refuse.
    let err = refused(&["--set", "sfu.udpPorts=41000-40000"]);
    assert!(
        err.contains("FIRST-LAST with 1 <= FIRST <= LAST <= 65535"),
        "{err}"
    );
    let err = refused(&["--set", "monitoring.serviceMonitor.enabled=true"]);
    assert!(err.contains("need the Prometheus Operator's CRDs"), "{err}");
    let err = refused(&["--set", "api.internalPort=8080"]);
    assert!(
        err.contains("api.internalPort must differ from api.port"),
        "{err}"
    );
    let err = refused(&["--set", "sfu.internalPort=7880"]);
    assert!(
        err.contains("sfu.internalPort must differ from sfu.port"),
        "{err}"
    );
    let err = refused(&["--set", "sfu.terminationGracePeriodSeconds=10"]);
    assert!(
        err.contains("sfu.terminationGracePeriodSeconds: Must be greater than or equal to 20"),
        "{err}"
    );
    let err = refused(&["--set", "sfu.bindIP=node"]);
    assert!(err.contains("sfu.bindIP: Does not match pattern"), "{err}");
    let err = refused(&["--set", "database.existingSecret="]);
    assert!(err.contains("a database is needed"), "{err}");

    // LDAP: never in clear, and what a login needs.
    let err = refused(&["--set", "auth.ldap.url=ldap://dc1.example.org"]);
    assert!(err.contains("must not cross the network in clear"), "{err}");
    let err = refused(&["--set", "auth.ldap.url=ldaps://dc1.example.org"]);
    assert!(err.contains("auth.ldap.userBase is required"), "{err}");
    let err = refused(&[
        "--set",
        "auth.ldap.url=ldaps://dc1.example.org",
        "--set",
        "auth.ldap.userBase=ou=people",
        "--set",
        "auth.ldap.bindDn=cn=svc",
    ]);
    assert!(err.contains("needs auth.ldap.bindPasswordSecret"), "{err}");
    let err = refused(&["--set", "auth.ldap.defaultLevel=boss"]);
    assert!(
        err.contains("auth.ldap.defaultLevel must be one of the following"),
        "{err}"
    );
    let err = refused(&["--set", "auth.ldap.userFilter=(uid=fixed)"]);
    assert!(
        err.contains("auth.ldap.userFilter: Does not match pattern"),
        "{err}"
    );

    // Signaling: through the API or straight to each pod, and what each needs.
    let err = refused(&["--set", "sfu.signaling=sideways"]);
    assert!(
        err.contains("sfu.signaling must be one of the following"),
        "{err}"
    );
    let err = refused(&["--set", "sfu.ingress.enabled=true"]);
    assert!(
        err.contains("sfu.ingress (one public host per SFU pod) is for sfu.signaling=direct"),
        "{err}"
    );
    let err = refused(&["--set", "sfu.endpoint=wss://{pod}.sfu.example.com/rtc"]);
    assert!(
        err.contains("with sfu.signaling=viaApi it is the in-cluster URL the API relays to"),
        "{err}"
    );
    let err = refused(&["--set", "api.rtcProxy.drainSeconds=40"]);
    assert!(
        err.contains("api.rtcProxy.drainSeconds must be below api.terminationGracePeriodSeconds"),
        "{err}"
    );

    // Media exposure that cannot work.
    let err = refused(&[
        "--set",
        "sfu.exposure=hostPort",
        "--set",
        "sfu.udpPorts=40000-41999",
    ]);
    assert!(
        err.contains("holds 2000 ports") && err.contains("at most 1000"),
        "{err}"
    );
    let err = refused(&["--set", "sfu.exposure=service"]);
    assert!(
        err.contains("must lie in the cluster's NodePort range"),
        "{err}"
    );
    let err = refused(&[
        "--set",
        "sfu.exposure=service",
        "--set",
        "sfu.udpPorts=30000-30002",
        "--set",
        "sfu.replicas=2",
    ]);
    assert!(err.contains("leaves 1 ports per pod"), "{err}");
    let err = refused(&[
        "--set",
        "sfu.exposure=service",
        "--set",
        "sfu.service.type=LoadBalancer",
        "--set",
        "sfu.udpPorts=40000-40099",
        "--set",
        "sfu.service.loadBalancerIPs={198.51.100.20}",
    ]);
    assert!(err.contains("names 1 addresses for 2 replicas"), "{err}");
    let err = refused(&[
        "--set",
        "sfu.exposure=service",
        "--set",
        "sfu.udpPorts=30000-30099",
        "--set",
        "sfu.iceTcp.enabled=true",
    ]);
    assert!(
        err.contains("NodePort Services cannot give each pod the same port"),
        "{err}"
    );
    let err = refused(&[
        "--set",
        "sfu.iceTcp.enabled=true",
        "--set",
        "sfu.iceTcp.port=7880",
    ]);
    assert!(err.contains("sfu.iceTcp.port must differ"), "{err}");
    let err = refused(&[
        "--set",
        "sfu.exposure=service",
        "--set",
        "sfu.service.type=NodePort",
        "--set",
        "sfu.udpPorts=30000-30099",
        "--set",
        "sfu.udpPort=30000",
    ]);
    assert!(
        err.contains("sfu.udpPort (single-port mode) gives every pod the same UDP port"),
        "{err}"
    );
    let err = refused(&["--set", "sfu.udpPort=70000"]);
    assert!(err.contains("sfu.udpPort"), "{err}");
    let err = refused(&["--set", "sfu.nodeAnnouncedIPs.node-a=public"]);
    assert!(err.contains("sfu.nodeAnnouncedIPs"), "{err}");

    // The SIP gateway.
    let sip = |more: &[&'static str]| {
        let mut args = vec!["--set", "sip.enabled=true"];
        args.extend_from_slice(more);
        refused(&args)
    };
    let err = sip(&["--set", "sip.rtpport=41000-41099"]);
    assert!(
        err.contains("Additional property rtpport is not allowed"),
        "{err}"
    );
    let err = sip(&["--set", "sip.exposure=nodePort"]);
    assert!(
        err.contains("sip.exposure must be one of the following"),
        "{err}"
    );
    let err = sip(&["--set", "sip.trunkFrom={carrier.example.com}"]);
    assert!(
        err.contains("sip.trunkFrom.0: Does not match pattern"),
        "{err}"
    );
    let err = sip(&["--set", "sip.rtpPorts=41999-41000"]);
    assert!(
        err.contains("FIRST-LAST with 1 <= FIRST <= LAST <= 65535"),
        "{err}"
    );
    let err = sip(&["--set", "sip.port=41010"]);
    assert!(
        err.contains("sip.port 41010 lies inside sip.rtpPorts"),
        "{err}"
    );
    let err = sip(&[
        "--set",
        "sip.exposure=hostPort",
        "--set",
        "sip.rtpPorts=41000-42999",
    ]);
    assert!(
        err.contains("holds 2000 ports") && err.contains("at most 1000"),
        "{err}"
    );
    let err = sip(&["--set", "sip.exposure=service"]);
    assert!(
        err.contains("sip.exposure=service needs sip.service.loadBalancerIP"),
        "{err}"
    );
    let err = sip(&[
        "--set",
        "sip.exposure=service",
        "--set",
        "sip.service.loadBalancerIP=198.51.100.30",
        "--set",
        "sip.replicas=2",
    ]);
    assert!(err.contains("keep sip.replicas at 1"), "{err}");
    let err = sip(&[
        "--set",
        "sip.replicas=2",
        "--set",
        "sip.publicAddress=203.0.113.5",
    ]);
    assert!(
        err.contains("sip.publicAddress names one address for every replica"),
        "{err}"
    );
    let err = sip(&[
        "--set",
        "sfu.exposure=hostPort",
        "--set",
        "networkPolicy.enabled=true",
    ]);
    assert!(
        err.contains("networkPolicy.nodeCIDR is needed with sip.exposure=hostNetwork"),
        "{err}"
    );
}

#[test]
fn the_charts_crd_is_the_generated_one() {
    let chart_crd =
        std::fs::read_to_string(chart().join("crds/conference.yaml")).expect("chart CRD");
    let generated =
        std::fs::read_to_string(repo().join("crds/conference.yaml")).expect("crds/conference.yaml");
    assert!(
        chart_crd == generated,
        "charts/conclave/crds/conference.yaml differs from crds/conference.yaml (generated by \
         `conclave crdgen`); copy it: cp crds/conference.yaml charts/conclave/crds/"
    );
    let rendered = render_args(&["--include-crds"]).expect("renders");
    assert!(rendered.contains("# Source: conclave/crds/conference.yaml"));
}

#[test]
fn notes_tell_how_to_log_in_the_first_time() {
    for profile in profiles() {
        let mut args = profile_args(&profile);
        args.push("--notes".into());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let notes = render_args(&args).expect("NOTES render");
        let admin = if profile.name.starts_with("external") {
            "conclave-admin"
        } else {
            "meet-conclave-admin"
        };
        assert!(
            notes.contains("Log in the first time as `admin`"),
            "{notes}"
        );
        assert!(notes.contains(&format!("get secret {admin}")), "{notes}");
        assert!(!notes.contains("<no value>"), "{notes}");
        let dial_in = sip_value(&profile, "enabled") == true;
        assert_eq!(notes.contains("Dial-in by phone"), dial_in, "{notes}");
        if dial_in {
            let rtp = sip_value(&profile, "rtpPorts");
            assert!(notes.contains(rtp.as_str().expect("ports")), "{notes}");
        }
    }
}

#[test]
fn generated_secrets_are_kept_on_upgrade_and_rendered_once_per_release() {
    // Without a cluster lookup finds nothing and the key is generated; the template asks the
    // cluster first (kept across upgrades) and marks the join-token Secret to survive uninstall.
    let rendered = &all_rendered()[0];
    let join = rendered
        .named("Secret", "meet-conclave-join-token")
        .expect("join-token Secret");
    assert_eq!(
        join["metadata"]["annotations"]["helm.sh/resource-policy"],
        "keep"
    );
    let key = str_of(join, "/data/join-token-secret");
    assert!(key.len() >= 64, "48 random characters, base64: {key}");
    let template =
        std::fs::read_to_string(chart().join("templates/_helpers.tpl")).expect("helpers");
    assert!(template.contains(r#"lookup "v1" "Secret""#));
}

/// The renderer does what `helm template` does where charts notice: numbers from values files
/// are float64 and from --set int64, YAML 1.1 scalars, `<no value>` dropped, toYaml's layout,
/// tpl, include, lookup finding nothing, .Capabilities, .Files, .Template, partials and empty
/// documents left out, NOTES.txt only with --notes, `required` failing with its message.
#[test]
fn the_renderer_behaves_like_helm_template() {
    let fixture = repo().join("tests/chart/fixture");
    let render = |args: &[&str]| {
        let output = run(
            Command::new(renderer()).args(args).arg(&fixture),
            GO_PACKAGES,
        );
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (ok, text, err) = render(&["--name", "r", "--namespace", "ns", "--set", "s=5"]);
    assert!(ok, "{err}");
    let objects = parse_stream(&text);
    assert_eq!(objects.len(), 1, "only cm.yaml renders a document:\n{text}");
    assert!(
        text.starts_with("---\n# Source: fx/templates/cm.yaml\n"),
        "{text}"
    );
    let data = &objects[0]["data"];
    let expected = json!({
        "kind": "float64",
        "setKind": "int64",
        "flag": "true",
        "absent": "",
        "big": "1e+06",
        "tpl": "ns",
        "nested": "k: v\n",
        "list": "l:\n- b\n- a\n",
        "has": "false",
        "kube": "v1.33.0",
        "lookup": "0",
        "install": "true",
        "chart": "fx-1.2.3-9.9",
        "file": "hello",
        "template": "fx/templates/cm.yaml",
    });
    assert_eq!(data, &expected);
    assert_eq!(objects[0]["metadata"]["name"], "fx-r");

    let (_, text, _) = render(&["--api-versions", "monitoring.coreos.com/v1", "--upgrade"]);
    let data = &parse_stream(&text)[0]["data"];
    assert_eq!(
        (data["has"].as_str(), data["install"].as_str()),
        (Some("true"), Some("false"))
    );

    let (ok, notes, _) = render(&["--name", "r", "--notes"]);
    assert!(ok);
    assert_eq!(notes, "notes for r\n");

    let (ok, _, err) = render(&["--set", "needIt.value="]);
    assert!(!ok && err.contains("needIt.value is required"), "{err}");
}

// --- the SIP gateway -----------------------------------------------------------------------------

/// `sip.<key>` as the profile sets it, else as values.yaml does.
fn sip_value(profile: &Profile, key: &str) -> Value {
    let read = |path: PathBuf| -> Value {
        let yaml: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(&path).expect("values file"))
                .expect("values parse");
        serde_json::to_value(yaml).expect("values are JSON")
    };
    let pointer = format!("/sip/{}", key.replace('.', "/"));
    profile
        .values
        .and_then(|file| {
            read(chart().join("ci").join(file))
                .pointer(&pointer)
                .cloned()
        })
        .or_else(|| read(chart().join("values.yaml")).pointer(&pointer).cloned())
        .unwrap_or_else(|| panic!("no sip.{key} in the values"))
}

/// The SIP gateway's Deployment, when the profile has one.
fn sip_deployment(rendered: &Rendered) -> Option<&Value> {
    rendered.kind("Deployment").find(|d| {
        d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] == "sip"
    })
}

fn container_port<'a>(container: &'a Value, name: &str) -> &'a Value {
    array(container, "/ports")
        .into_iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no container port {name}"))
}

#[test]
fn the_sip_gateway_is_off_by_default_and_on_as_each_profile_says() {
    let mut seen = BTreeSet::new();
    for rendered in all_rendered() {
        let enabled = sip_value(&rendered.profile, "enabled") == true;
        let objects: Vec<String> = rendered
            .objects
            .iter()
            .filter(|o| o["metadata"]["labels"]["app.kubernetes.io/component"] == "sip")
            .map(|o| rendered.context(o))
            .collect();
        if !enabled {
            assert!(objects.is_empty(), "{objects:?}");
            continue;
        }
        seen.insert(
            sip_value(&rendered.profile, "exposure")
                .as_str()
                .map(str::to_owned),
        );
        for kind in [
            "Deployment",
            "Service",
            "ServiceAccount",
            "PodDisruptionBudget",
        ] {
            assert!(
                objects.iter().any(|o| o.contains(&format!(" {kind} "))),
                "profile {:?}: no sip {kind}: {objects:?}",
                rendered.profile.name
            );
        }
    }
    assert_eq!(
        seen,
        ["hostNetwork", "hostPort", "service"]
            .into_iter()
            .map(|e| Some(e.to_owned()))
            .collect(),
        "every exposure is rendered by a profile"
    );
    assert_eq!(sip_value(&profiles()[0], "enabled"), false);
}

#[test]
fn the_sip_gateway_listens_where_its_service_and_the_nodes_send_calls() {
    for rendered in all_rendered() {
        let Some(deployment) = sip_deployment(rendered) else {
            continue;
        };
        let profile = &rendered.profile;
        let ctx = rendered.context(deployment);
        let template = &deployment["spec"]["template"];
        let container = &template["spec"]["containers"][0];
        let env = |name: &str| {
            env_value(container, name)
                .and_then(|v| v["value"].as_str())
                .map(str::to_owned)
        };
        let sip_port = sip_value(profile, "port").as_u64().expect("sip.port");
        let http_port = sip_value(profile, "httpPort")
            .as_u64()
            .expect("sip.httpPort");
        let rtp = sip_value(profile, "rtpPorts");
        let rtp = rtp.as_str().expect("sip.rtpPorts");
        let (first, last) = rtp.split_once('-').expect("FIRST-LAST");
        let range: Vec<u64> =
            (first.parse().expect("port")..=last.parse().expect("port")).collect();

        // The process listens on the ports the pod declares, which are the values'.
        assert_eq!(
            env("CONCLAVE_SIP_LISTEN"),
            Some(format!("0.0.0.0:{sip_port}")),
            "{ctx}"
        );
        assert_eq!(
            env("CONCLAVE_SIP_HTTP_LISTEN"),
            Some(format!("0.0.0.0:{http_port}")),
            "{ctx}"
        );
        assert_eq!(env("CONCLAVE_SIP_RTP_PORTS").as_deref(), Some(rtp), "{ctx}");
        for (name, protocol) in [("sip-udp", "UDP"), ("sip-tcp", "TCP")] {
            let port = container_port(container, name);
            assert_eq!(
                port["containerPort"].as_u64(),
                Some(sip_port),
                "{ctx}: {name}"
            );
            assert_eq!(port["protocol"], protocol, "{ctx}: {name}");
        }
        assert_eq!(
            container_port(container, "metrics")["containerPort"].as_u64(),
            Some(http_port),
            "{ctx}"
        );
        assert_eq!(
            env("CONCLAVE_SIP_MAX_CALLS"),
            sip_value(profile, "maxCalls")
                .as_u64()
                .map(|n| n.to_string()),
            "{ctx}"
        );
        // Who may call.
        let list = |key: &str| {
            let items: Vec<String> = sip_value(profile, key)
                .as_array()
                .expect("a list")
                .iter()
                .map(|v| v.as_str().expect("an address").to_owned())
                .collect();
            (!items.is_empty()).then(|| items.join(","))
        };
        assert_eq!(env("CONCLAVE_SIP_TRUNK_FROM"), list("trunkFrom"), "{ctx}");
        assert_eq!(env("CONCLAVE_SIP_ALLOW_FROM"), list("allowFrom"), "{ctx}");
        assert_eq!(
            env("CONCLAVE_SIP_OPEN").is_some(),
            sip_value(profile, "open") == true,
            "{ctx}"
        );
        // The join check goes to the API Service's public port, which reaches the API's
        // listener for /api/v1/join.
        let url = env("CONCLAVE_SIP_API_URL").expect("CONCLAVE_SIP_API_URL");
        let url = reqwest::Url::parse(&url).expect("a URL");
        let host = url.host_str().expect("a host");
        assert_eq!(
            host,
            format!("{RELEASE}-conclave-api.{NAMESPACE}.svc"),
            "{ctx}"
        );
        let service = rendered
            .named("Service", host.split('.').next().unwrap_or_default())
            .expect("the API Service");
        let port = array(service, "/spec/ports")
            .into_iter()
            .find(|p| p["port"].as_u64() == url.port_or_known_default().map(u64::from))
            .unwrap_or_else(|| panic!("{ctx}: {url}: no such port"));
        assert_eq!(port["targetPort"], "http", "{ctx}: {url}");
        assert_eq!(
            service["spec"]["selector"]["app.kubernetes.io/component"],
            "api"
        );

        // Prompts from a ConfigMap, mounted where the process looks.
        match sip_value(profile, "prompts.configMap").as_str() {
            Some(name) if !name.is_empty() => {
                let dir = env("CONCLAVE_SIP_PROMPTS_DIR").expect("a prompts folder");
                let volume = array(template, "/spec/volumes")
                    .into_iter()
                    .find(|v| v["configMap"]["name"] == name)
                    .unwrap_or_else(|| panic!("{ctx}: no volume of ConfigMap {name}"));
                assert!(
                    array(container, "/volumeMounts")
                        .iter()
                        .any(|m| m["name"] == volume["name"] && m["mountPath"] == dir.as_str()),
                    "{ctx}: the ConfigMap is not mounted at {dir}"
                );
            }
            _ => assert_eq!(env("CONCLAVE_SIP_PROMPTS_DIR"), None, "{ctx}"),
        }

        // The address in SDP, and how SIP and RTP reach the pod.
        let public = env("CONCLAVE_SIP_PUBLIC_ADDRESS").expect("a public address");
        let node_ip = env_value(container, "NODE_IP").expect("NODE_IP");
        assert_eq!(
            node_ip["valueFrom"]["fieldRef"]["fieldPath"],
            "status.hostIP"
        );
        let sip_service = rendered
            .named("Service", &format!("{RELEASE}-conclave-sip"))
            .unwrap_or_else(|| panic!("{ctx}: no SIP Service"));
        let service_ports = array(sip_service, "/spec/ports");
        for (name, protocol) in [("sip-udp", "UDP"), ("sip-tcp", "TCP")] {
            assert!(
                service_ports.iter().any(|p| p["name"] == name
                    && p["port"].as_u64() == Some(sip_port)
                    && p["targetPort"] == name
                    && p["protocol"] == protocol),
                "{ctx}: the SIP Service has no {name} on {sip_port}"
            );
        }
        let udp: Vec<u64> = array(container, "/ports")
            .iter()
            .filter(|p| p["protocol"] == "UDP" && p["name"] != "sip-udp")
            .map(|p| p["containerPort"].as_u64().expect("port"))
            .collect();
        let host_ports: Vec<(u64, u64)> = array(container, "/ports")
            .iter()
            .filter(|p| !p["hostPort"].is_null())
            .map(|p| {
                (
                    p["containerPort"].as_u64().unwrap_or(0),
                    p["hostPort"].as_u64().unwrap_or(1),
                )
            })
            .collect();
        let anti = &template["spec"]["affinity"]["podAntiAffinity"];
        let one_per_node = array(anti, "/requiredDuringSchedulingIgnoredDuringExecution")
            .iter()
            .any(|t| {
                t["topologyKey"] == "kubernetes.io/hostname"
                    && selects(
                        &t["labelSelector"]["matchLabels"],
                        &pod_label_sets(deployment, template)[0],
                    )
            });
        match sip_value(profile, "exposure").as_str().expect("exposure") {
            "hostNetwork" => {
                assert_eq!(template["spec"]["hostNetwork"], true, "{ctx}");
                assert_eq!(
                    template["spec"]["dnsPolicy"], "ClusterFirstWithHostNet",
                    "{ctx}"
                );
                assert!(udp.is_empty(), "{ctx}: the node's network needs no mapping");
                assert!(
                    one_per_node,
                    "{ctx}: two gateways could share a node's 5060"
                );
                assert_eq!(public, "$(NODE_IP)", "{ctx}");
                assert_eq!(sip_service["spec"]["type"], "ClusterIP", "{ctx}");
            }
            "hostPort" => {
                assert_ne!(template["spec"]["hostNetwork"], true, "{ctx}");
                assert_eq!(udp, range, "{ctx}: every RTP port is a container port");
                let mut mapped: Vec<u64> = host_ports
                    .iter()
                    .map(|(container, host)| {
                        assert_eq!(container, host, "{ctx}");
                        *host
                    })
                    .collect();
                mapped.sort_unstable();
                let mut wanted = range.clone();
                wanted.extend([sip_port, sip_port]);
                wanted.sort_unstable();
                assert_eq!(mapped, wanted, "{ctx}: SIP and every RTP port on the node");
                assert!(one_per_node, "{ctx}");
                assert_eq!(public, "$(NODE_IP)", "{ctx}");
                assert_eq!(sip_service["spec"]["type"], "ClusterIP", "{ctx}");
            }
            "service" => {
                assert!(host_ports.is_empty(), "{ctx}: nothing on the node");
                assert_ne!(template["spec"]["hostNetwork"], true, "{ctx}");
                assert_eq!(udp, range, "{ctx}");
                assert_eq!(deployment["spec"]["replicas"], 1, "{ctx}");
                let ip = sip_value(profile, "service.loadBalancerIP");
                assert_eq!(sip_service["spec"]["type"], "LoadBalancer", "{ctx}");
                assert_eq!(sip_service["spec"]["loadBalancerIP"], ip, "{ctx}");
                assert_eq!(public, ip.as_str().expect("an address"), "{ctx}");
                assert_eq!(
                    sip_service["spec"]["externalTrafficPolicy"], "Local",
                    "{ctx}: the gateway must see callers' own addresses for trunkFrom"
                );
                let served: Vec<u64> = service_ports
                    .iter()
                    .filter(|p| p["protocol"] == "UDP" && p["name"] != "sip-udp")
                    .map(|p| {
                        assert_eq!(p["targetPort"], p["port"], "{ctx}: RTP keeps its port");
                        p["port"].as_u64().expect("port")
                    })
                    .collect();
                assert_eq!(served, range, "{ctx}: the RTP range on the load balancer");
            }
            other => panic!("{ctx}: exposure {other}"),
        }
        // The caller's requests and RTP stay with the pod that answered.
        assert_eq!(sip_service["spec"]["sessionAffinity"], "ClientIP", "{ctx}");
        // A rollout never puts two gateways on one node's ports.
        assert_eq!(
            deployment["spec"]["strategy"]["rollingUpdate"]["maxSurge"], 0,
            "{ctx}"
        );

        // Disruptions take one gateway at a time.
        let pdb = rendered
            .kind("PodDisruptionBudget")
            .find(|p| {
                selects(
                    &p["spec"]["selector"]["matchLabels"],
                    &pod_label_sets(deployment, template)[0],
                )
            })
            .unwrap_or_else(|| panic!("{ctx}: no PodDisruptionBudget"));
        assert_eq!(pdb["spec"]["maxUnavailable"], 1, "{ctx}");

        // Scraped like the operator: a ServiceMonitor on the metrics Service's port.
        if rendered.kind("ServiceMonitor").next().is_some() {
            let monitor = rendered
                .kind("ServiceMonitor")
                .find(|m| {
                    m["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "sip"
                })
                .unwrap_or_else(|| panic!("{ctx}: no ServiceMonitor for the gateway"));
            assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics", "{ctx}");
            assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics", "{ctx}");
            let metrics = rendered
                .named("Service", &format!("{RELEASE}-conclave-sip-metrics"))
                .expect("the metrics Service");
            assert_eq!(metrics["spec"]["type"], "ClusterIP", "{ctx}");
        }

        // NetworkPolicies let callers in, and the gateway reach the API and the SFU.
        if rendered.kind("NetworkPolicy").next().is_some() {
            let policy = policy_of(rendered, "sip");
            let open_ports: Vec<(Value, Value, Value)> = array(policy, "/spec/ingress")
                .iter()
                .filter(|rule| rule.get("from").is_none())
                .flat_map(|rule| array(rule, "/ports"))
                .map(|p| {
                    (
                        p["port"].clone(),
                        p["endPort"].clone(),
                        p["protocol"].clone(),
                    )
                })
                .collect();
            for wanted in [
                (json!("sip-udp"), Value::Null, json!("UDP")),
                (json!("sip-tcp"), Value::Null, json!("TCP")),
                (json!(range[0]), json!(range[range.len() - 1]), json!("UDP")),
            ] {
                assert!(
                    open_ports.contains(&wanted),
                    "{ctx}: {wanted:?} not open: {open_ports:?}"
                );
            }
            let (api_port, _) = listener(rendered, "api", "http", "CONCLAVE_LISTEN");
            assert!(
                array(policy, "/spec/egress").iter().any(|rule| {
                    peers_include(rule, "to", "api")
                        && array(rule, "/ports")
                            .iter()
                            .any(|p| p["port"].as_u64() == Some(api_port))
                }),
                "{ctx}: the gateway may not reach the API"
            );
            let api = policy_of(rendered, "api");
            let admitted = array(api, "/spec/ingress").into_iter().find(|rule| {
                peers_include(rule, "from", "sip")
                    && array(rule, "/ports").iter().any(|p| p["port"] == "http")
            });
            let admitted = admitted.unwrap_or_else(|| panic!("{ctx}: the API refuses the gateway"));
            if template["spec"]["hostNetwork"] == true {
                assert!(
                    array(admitted, "/from")
                        .iter()
                        .any(|peer| peer["ipBlock"]["cidr"].is_string()),
                    "{ctx}: gateways on the host network come from node addresses"
                );
            }
        }
    }
}

/// Every variable the chart gives the gateway is one `conclave sip --help` lists: the real
/// binary's command line, not only its sources.
#[test]
fn the_chart_gives_the_gateway_only_what_conclave_sip_accepts() {
    let output = Command::new(system_tests::conclave_bin())
        .args(["sip", "--help"])
        .output()
        .expect("conclave runs");
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).expect("utf-8 help");
    let accepted: BTreeSet<&str> = help
        .split("[env: ")
        .skip(1)
        .filter_map(|rest| rest.split('=').next())
        .collect();
    assert!(accepted.contains("CONCLAVE_SIP_RTP_PORTS"), "{help}");
    let mut checked = 0;
    for rendered in all_rendered() {
        let Some(deployment) = sip_deployment(rendered) else {
            continue;
        };
        let ctx = rendered.context(deployment);
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["args"], json!(["sip"]), "{ctx}");
        for var in array(container, "/env") {
            let name = str_of(var, "/name");
            if HELPER_ENV.contains(&name) {
                continue;
            }
            // A secret has no flag (flags show in `ps`); its help names the variable.
            let secret = var.pointer("/valueFrom/secretKeyRef").is_some();
            assert!(
                accepted.contains(name) || secret && help.contains(name),
                "{ctx}: `conclave sip --help` lists no {name}:\n{help}"
            );
            checked += 1;
        }
        // Each value passes the binary's own parser: with a prompts folder that does not exist
        // the gateway stops right after parsing, naming the folder (a value clap refuses would
        // stop it before, with status 2 and clap's message).
        let missing = "/nonexistent/conclave-chart-test-prompts";
        let mut command = Command::new(system_tests::conclave_bin());
        command.arg("sip").env_clear().env("RUST_LOG", "off");
        for var in array(container, "/env") {
            if let Some(value) = var["value"].as_str() {
                let value = value.replace("$(NODE_IP)", "192.0.2.10");
                command.env(str_of(var, "/name"), value);
            } else if var.pointer("/valueFrom/secretKeyRef").is_some() {
                command.env(
                    str_of(var, "/name"),
                    "a-chart-test-secret-of-32-bytes-or-more",
                );
            }
        }
        command
            .env("CONCLAVE_SIP_PROMPTS_DIR", missing)
            .env("CONCLAVE_SIP_LISTEN", "127.0.0.1:0")
            .env("CONCLAVE_SIP_HTTP_LISTEN", "127.0.0.1:0");
        let parsed = command.output().expect("conclave runs");
        let stderr = String::from_utf8_lossy(&parsed.stderr);
        assert!(
            parsed.status.code() == Some(1) && stderr.contains(missing),
            "{ctx}: the binary refuses the chart's values ({}): {stderr}",
            parsed.status
        );
    }
    assert!(checked > 20, "only {checked} variables checked");
}

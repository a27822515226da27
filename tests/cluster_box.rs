//! The cluster in a box that `cluster.rs`, `failover.rs` and the failover benchmark share:
//! everything a cluster runs, as real processes, around the fake Kubernetes API server of the
//! operator's tests (`fakekube`) served over HTTP through kubeconfig files.
//!
//! - the chart (`charts/conclave`, defaults plus `conferenceStore=kubernetes`) rendered by the
//!   renderer of `tests/chart.rs`: each process gets the environment its container gets there
//!   (values, downward API, Secret keys), each SFU pod the template's labels and annotations;
//!   only listen ports, folders and the API's in-cluster URL (no Service DNS here) differ;
//! - the fake API server (in this process), reached by `conclave operator` (one or more
//!   replicas), `conclave api` (on a fresh PostgreSQL database) and `kubectl`, each with its own
//!   bearer token so their requests are told apart;
//! - `conclave sfu` processes standing in for the StatefulSet's pods with `hostNetwork`: each in
//!   its own network namespace (a "node") joined to the test's namespace by a veth pair, with
//!   its own address, registered as a Pod and marked Ready once its `/readyz` answers. The test
//!   plays the kubelet: it reports a container that died, restarts it, and deletes a pod
//!   gracefully (SIGTERM, then the final delete once the process is gone).
//!
//! Clients run in the test's namespace, which reaches a node only through its veth: media flows
//! only when the SFU announces its node's address. Their media binds to [`CLIENT_IP`], an
//! address of the test's namespace that no node's coming or going takes away. The whole test runs in a network namespace
//! with only `lo` (`loadgen::netns::isolate`); nothing leaves the namespaces it makes.
//! PostgreSQL (`CONCLAVE_TEST_POSTGRES`) is outside that namespace, so the outer process relays
//! a Unix socket to it (Unix sockets live in the file system, which the namespaces share).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use fakekube as fake_api;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fake_api::FakeApi;
use serde_json::{Value, json};

pub(crate) const NAMESPACE: &str = "conclave";
/// The address the attendees' media binds to. A node's veth and its address go away with the
/// node's namespace; were an attendee's media bound to every interface, a connection made while
/// two nodes are up could pick the one of the node that is about to go (a rollout), and lose its
/// path when that node's last process exits. A client's own address does not change when a
/// server goes away; this one, on `lo`, does not either, and every node routes to it through
/// its default gateway (the test's namespace).
pub(crate) const CLIENT_IP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(10, 89, 255, 1);
/// The chart's default release: objects are `conclave-<component>`.
pub(crate) const RELEASE: &str = "conclave";
pub(crate) const JOIN_SECRET: &str = "cluster-in-a-box-join-token-secret-0123456789";
pub(crate) const ADMIN_PASSWORD: &str = "cluster-admin-1";
/// The SFU port and UDP range of the chart's defaults (`sfu.port`, `sfu.udpPorts`).
pub(crate) const SFU_PORT: u16 = 7880;
pub(crate) const SFU_UDP_PORTS: &str = "40000-40999";
/// The bearer tokens the components identify with (their service accounts); the fake knows
/// kubectl by its User-Agent, as kubectl sends no token over plain HTTP. A second operator
/// replica is `operator-1`, and so on.
pub(crate) const OPERATOR_USER: &str = "operator";
pub(crate) const API_USER: &str = "api";
pub(crate) const KUBECTL_USER: &str = "kubectl";

/// What a box is started with beyond the chart's defaults.
#[derive(Default)]
pub(crate) struct Options {
    /// Operator replicas (leader election on, as the chart runs them); 1 when 0.
    pub(crate) operators: usize,
    /// Environment given to every operator replica after the chart's.
    pub(crate) operator_env: Vec<(String, String)>,
    /// Environment given to every SFU pod after the chart's.
    pub(crate) sfu_env: Vec<(String, String)>,
    /// Environment given to the API after the chart's.
    pub(crate) api_env: Vec<(String, String)>,
}

/// One operator replica.
pub(crate) struct Operator {
    /// Its identity in the Lease and its bearer token towards the fake.
    pub(crate) name: String,
    pub(crate) port: u16,
    pub(crate) process: Proc,
}

/// A running cluster in a box: two nodes with one SFU pod each, the operator replicas, the API.
pub(crate) struct ClusterBox {
    pub(crate) started: Instant,
    pub(crate) logs: Logs,
    pub(crate) chart: Chart,
    pub(crate) fake: FakeApi,
    pub(crate) database_url: String,
    database: Option<Database>,
    pub(crate) sfus: Vec<Sfu>,
    pub(crate) operators: Vec<Operator>,
    pub(crate) api: Proc,
    pub(crate) api_port: u16,
    pub(crate) api_internal_port: u16,
    pub(crate) kubectl: Kubectl,
    pub(crate) http: reqwest::Client,
    sfu_env: Vec<(String, String)>,
    /// How often each SFU pod has been (re)started, for its log's name.
    starts: Vec<u32>,
    /// Last: the logs in it are printed when the box is dropped in a failed test.
    pub(crate) dir: tempfile::TempDir,
}

/// The Secrets the chart's workloads read, as a platform team would have made them.
fn secret_of(database_url: &str) -> impl Fn(&str, &str) -> String + '_ {
    move |name: &str, key: &str| match (name.strip_prefix(&format!("{RELEASE}-")), key) {
        (Some("join-token"), _) => JOIN_SECRET.to_owned(),
        (Some("admin"), "password") => ADMIN_PASSWORD.to_owned(),
        (Some("database"), "url") => database_url.to_owned(),
        _ => panic!("the chart reads a Secret the test does not make: {name} {key}"),
    }
}

impl ClusterBox {
    /// Renders the chart, starts the fake, a database, two SFU pods, the operator replicas and
    /// the API, and waits until all of them answer `/readyz`.
    pub(crate) async fn start(options: Options) -> ClusterBox {
        let started = Instant::now();
        let dir = tempfile::tempdir().unwrap();
        let logs = Logs::new(dir.path());
        let chart = Chart::render(dir.path());
        let fake = FakeApi::start().await;
        let kubeconfig = |user: &str| {
            let path = dir.path().join(format!("{user}.kubeconfig"));
            std::fs::write(&path, kubeconfig(fake.addr, user)).unwrap();
            path
        };
        let database = Database::create().await;
        let database_url = database.url.clone();
        let secret = secret_of(&database_url);

        let api_port = system_tests::free_port();
        // The API's internal listener (metrics, SFU reports): the chart's Service for it is
        // `<api>-internal`; here it is a port of the test's namespace.
        let api_internal_port = system_tests::free_port();
        // The clients' own address: on `lo`, so that it outlives every node's veth.
        run(
            "ip",
            &["addr", "replace", &format!("{CLIENT_IP}/32"), "dev", "lo"],
        );
        let sfu_template = chart.template("StatefulSet", &format!("{RELEASE}-sfu"));
        let mut sfus = Vec::new();
        for ordinal in 0..2u8 {
            let sfu = Sfu::start(
                ordinal,
                sfu_template,
                &secret,
                api_internal_port,
                &options.sfu_env,
                &logs,
                &format!("{RELEASE}-sfu-{ordinal}"),
            );
            sfus.push(sfu);
        }
        for sfu in &sfus {
            register_pod(&fake, sfu, sfu_template).await;
        }

        let replicas = options.operators.max(1);
        let mut operators = Vec::new();
        for replica in 0..replicas {
            let name = if replica == 0 {
                OPERATOR_USER.to_owned()
            } else {
                format!("{OPERATOR_USER}-{replica}")
            };
            let port = system_tests::free_port();
            let env = container_env(
                chart.template("Deployment", &format!("{RELEASE}-operator")),
                &PodFacts {
                    name: &format!("{RELEASE}-operator-{replica}"),
                    ip: "127.0.0.1",
                    node: "node-0",
                },
                &secret,
            );
            let process = Proc::spawn(
                &name,
                &logs,
                Command::new(system_tests::conclave_bin())
                    .arg("operator")
                    .envs(env)
                    .env("CONCLAVE_OPERATOR_LISTEN", format!("127.0.0.1:{port}"))
                    .env("CONCLAVE_OPERATOR_IDENTITY", &name)
                    .envs(options.operator_env.iter().cloned())
                    .env("KUBECONFIG", kubeconfig(&name))
                    .env_remove("HOME"),
            );
            operators.push(Operator {
                name,
                port,
                process,
            });
        }
        let api_env = container_env(
            chart.template("Deployment", &format!("{RELEASE}-api")),
            &PodFacts {
                name: &format!("{RELEASE}-api-0"),
                ip: "127.0.0.1",
                node: "node-0",
            },
            &secret,
        );
        let api = Proc::spawn(
            "api",
            &logs,
            Command::new(system_tests::conclave_bin())
                .arg("api")
                .envs(api_env)
                .env("CONCLAVE_LISTEN", format!("0.0.0.0:{api_port}"))
                // What the Ingress's host would be: signaling is relayed through it
                // (`sfu.signaling: viaApi`), so join answers name this address.
                .env(
                    "CONCLAVE_PUBLIC_URL",
                    format!("http://127.0.0.1:{api_port}"),
                )
                .env(
                    "CONCLAVE_INTERNAL_LISTEN",
                    format!("0.0.0.0:{api_internal_port}"),
                )
                .env("CONCLAVE_DATA_DIR", dir.path().join("api-data"))
                .env(
                    "CONCLAVE_PORTAL_DIR",
                    system_tests::repository().join("web/dist"),
                )
                .envs(options.api_env.iter().cloned())
                .env("KUBECONFIG", kubeconfig(API_USER))
                .env_remove("HOME"),
        );
        let mut ready: Vec<(String, u16)> =
            operators.iter().map(|o| (o.name.clone(), o.port)).collect();
        ready.push(("API".into(), api_port));
        for (what, port) in ready {
            let url = format!("http://127.0.0.1:{port}/readyz");
            wait_until(
                &format!("the {what}'s /readyz answers 200"),
                Duration::from_secs(30),
                || answers_ok(&url),
            )
            .await;
        }
        let kubectl = Kubectl {
            fake: fake.clone(),
            config: kubeconfig(KUBECTL_USER),
            cache: dir.path().join("kubectl-cache"),
        };
        let count = sfus.len();
        drop(secret);
        ClusterBox {
            started,
            dir,
            logs,
            chart,
            fake,
            database_url,
            database: Some(database),
            sfus,
            operators,
            api,
            api_port,
            api_internal_port,
            kubectl,
            http: reqwest::Client::new(),
            sfu_env: options.sfu_env,
            starts: vec![1; count],
        }
    }

    /// Says how far the test got, with the time since the start.
    pub(crate) fn mark(&self, what: &str) {
        eprintln!(
            "cluster in a box: {what} at {:.1}s",
            self.started.elapsed().as_secs_f64()
        );
    }

    /// The API's public base URL.
    pub(crate) fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.api_port)
    }

    /// The SFU pod template of the chart.
    pub(crate) fn sfu_template(&self) -> &Value {
        self.chart
            .template("StatefulSet", &format!("{RELEASE}-sfu"))
    }

    /// The index of the SFU whose pod is `pod`.
    pub(crate) fn sfu_index(&self, pod: &str) -> usize {
        self.sfus
            .iter()
            .position(|s| s.pod == pod)
            .unwrap_or_else(|| panic!("{pod} is not an SFU pod of the box"))
    }

    /// Logs in as `admin`: its session token.
    pub(crate) async fn admin_session(&self) -> String {
        let (status, login) = post(
            &self.http,
            &format!("{}/api/v1/auth/login", self.base()),
            None,
            json!({"login": "admin", "password": ADMIN_PASSWORD}),
        )
        .await;
        assert_eq!(status, 200, "{login}");
        login["sessionToken"].as_str().unwrap().to_owned()
    }

    /// The kubelet's report of a container that died: the SFU of `index` is killed (SIGKILL),
    /// and once the process is gone its pod says so (container terminated, not Ready).
    pub(crate) async fn kill_sfu(&mut self, index: usize) {
        self.sfus[index].stop();
        let pod = self.sfus[index].pod.clone();
        patch_pod_status(
            &self.fake,
            &pod,
            json!({"status": {
                "conditions": conditions(false),
                "containerStatuses": [container_status(false, 0, json!({"terminated": {
                    "exitCode": 137, "reason": "Error",
                    "startedAt": "2026-01-01T00:00:00Z", "finishedAt": now_rfc3339(),
                }}))],
            }}),
        )
        .await;
    }

    /// The kubelet restarting a dead SFU container (or the StatefulSet making the pod anew):
    /// the process starts again in a fresh namespace with the node's address, and the pod is
    /// registered (created when it is gone) and marked Ready once `/readyz` answers.
    pub(crate) async fn restart_sfu(&mut self, index: usize) {
        self.sfus[index].stop();
        let ordinal = u8::try_from(index).unwrap();
        self.starts[index] += 1;
        let log = format!("{}-{}", self.sfus[index].pod, self.starts[index]);
        let secret = secret_of(&self.database_url);
        let sfu = Sfu::start(
            ordinal,
            self.sfu_template(),
            &secret,
            self.api_internal_port,
            &self.sfu_env,
            &self.logs,
            &log,
        );
        self.sfus[index] = sfu;
        register_pod(&self.fake, &self.sfus[index], self.sfu_template()).await;
    }

    /// Flips the Ready condition of `pod` while its container keeps running (a readiness probe
    /// that failed once).
    pub(crate) async fn set_ready(&self, pod: &str, ready: bool) {
        patch_pod_status(
            &self.fake,
            pod,
            json!({"status": {"conditions": conditions(ready)}}),
        )
        .await;
    }

    /// A rolling update reaching the SFU of `index`: the pod is deleted gracefully with
    /// `grace_seconds` (the API server sets its deletionTimestamp), the kubelet sends SIGTERM.
    /// [`ClusterBox::finish_termination`] waits for the process to end.
    pub(crate) async fn terminate_sfu(&mut self, index: usize, grace_seconds: u64) {
        let pod = self.sfus[index].pod.clone();
        let reply = self
            .http
            .delete(format!(
                "http://{}/api/v1/namespaces/{NAMESPACE}/pods/{pod}",
                self.fake.addr
            ))
            .json(&json!({"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": grace_seconds}))
            .send()
            .await
            .unwrap();
        let status = reply.status().as_u16();
        assert!(
            status == 200 || status == 202,
            "{}",
            reply.text().await.unwrap()
        );
        self.sfus[index].signal("TERM");
    }

    /// Waits (up to `within`) for the SFU of `index` to exit after SIGTERM, then makes the
    /// kubelet's final delete of its pod. Returns how long the process took.
    pub(crate) async fn finish_termination(&mut self, index: usize, within: Duration) -> Duration {
        let started = Instant::now();
        loop {
            if self.sfus[index].exited() {
                break;
            }
            assert!(
                started.elapsed() < within,
                "{} did not exit within {within:?} of SIGTERM",
                self.sfus[index].pod
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let took = started.elapsed();
        self.delete_pod_now(&self.sfus[index].pod.clone()).await;
        took
    }

    /// Deletes `pod` at once (grace 0: the kubelet's final delete, or a node that is gone).
    pub(crate) async fn delete_pod_now(&self, pod: &str) {
        let reply = self
            .http
            .delete(format!(
                "http://{}/api/v1/namespaces/{NAMESPACE}/pods/{pod}?gracePeriodSeconds=0",
                self.fake.addr
            ))
            .send()
            .await
            .unwrap();
        let status = reply.status().as_u16();
        assert!(
            status == 200 || status == 404,
            "{}",
            reply.text().await.unwrap()
        );
    }

    /// The conference `name` as the fake holds it.
    pub(crate) fn conference(&self, name: &str) -> Value {
        self.fake
            .get("conclave.dev/conferences", NAMESPACE, name)
            .unwrap_or_else(|| panic!("no conference {name}"))
    }

    /// Drops the database and keeps the logs quiet: the test passed.
    pub(crate) async fn finish(mut self) {
        if let Some(database) = self.database.take() {
            database.drop_now().await;
        }
        eprintln!(
            "cluster in a box: done in {:.1}s",
            self.started.elapsed().as_secs_f64()
        );
        self.logs.passed();
    }
}

/// The Ready-related pod conditions.
fn conditions(ready: bool) -> Value {
    let ready = if ready { "True" } else { "False" };
    json!([
        {"type": "PodScheduled", "status": "True"},
        {"type": "Initialized", "status": "True"},
        {"type": "ContainersReady", "status": ready},
        {"type": "Ready", "status": ready},
    ])
}

/// The `sfu` container's status as the kubelet reports it.
fn container_status(ready: bool, restarts: u32, state: Value) -> Value {
    json!({
        "name": "sfu",
        "ready": ready,
        "started": ready,
        "restartCount": restarts,
        "image": "conclave:0.1.0",
        "imageID": "conclave@sha256:0000000000000000000000000000000000000000000000000000000000000000",
        "state": state,
    })
}

fn now_rfc3339() -> String {
    let output = Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .unwrap();
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// A merge patch of `pod`'s status subresource.
pub(crate) async fn patch_pod_status(fake: &FakeApi, pod: &str, status: Value) {
    let reply = reqwest::Client::new()
        .patch(format!(
            "http://{}/api/v1/namespaces/{NAMESPACE}/pods/{pod}/status",
            fake.addr
        ))
        .header("content-type", "application/merge-patch+json")
        .body(status.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(
        reply.status().as_u16(),
        200,
        "{}",
        reply.text().await.unwrap()
    );
}

/// The assignment of the conference `name` once the operator has placed it (phase Ready).
pub(crate) async fn placed_by_name(fake: &FakeApi, name: &str) -> Value {
    fake.wait_for(
        &format!("{name} to be placed"),
        Duration::from_secs(30),
        |f| {
            let c = f.get("conclave.dev/conferences", NAMESPACE, name)?;
            (c.pointer("/status/phase")? == "Ready").then_some(())?;
            c.pointer("/status/assignment").cloned()
        },
    )
    .await
}

/// `POST url` with a JSON body, as `session` when given: the status and the JSON answer.
pub(crate) async fn post(
    http: &reqwest::Client,
    url: &str,
    session: Option<&str>,
    body: Value,
) -> (u16, Value) {
    let mut request = http.post(url).json(&body);
    if let Some(session) = session {
        request = request.bearer_auth(session);
    }
    let reply = request.send().await.unwrap();
    let status = reply.status().as_u16();
    (status, reply.json().await.unwrap_or_default())
}

/// The requests a committed `rbac-observed.json` lists, each as compact JSON.
pub(crate) fn committed_requests(file: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(system_tests::repository().join(file)).unwrap();
    let document: Value = serde_json::from_str(&text).unwrap();
    document["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            // Keys in the order `rbac::Request` serializes them (serde_json sorts them).
            json!({
                "group": r["group"], "resource": r["resource"],
                "subresource": r["subresource"], "verb": r["verb"],
            })
            .to_string()
        })
        .collect()
}

/// kubectl's column output, each cell cut at the offsets of the header's labels (labels are
/// separated by two or more spaces; an empty cell is an empty string).
pub(crate) fn parse_columns(text: &str) -> Vec<Vec<String>> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header = lines.next().unwrap_or_default();
    let mut starts = vec![0];
    let bytes = header.as_bytes();
    for i in 2..bytes.len() {
        if bytes[i] != b' ' && bytes[i - 1] == b' ' && bytes[i - 2] == b' ' {
            starts.push(i);
        }
    }
    std::iter::once(header)
        .chain(lines)
        .map(|line| {
            starts
                .iter()
                .enumerate()
                .map(|(n, &from)| {
                    let to = starts
                        .get(n + 1)
                        .copied()
                        .unwrap_or(line.len())
                        .min(line.len());
                    line.get(from.min(to)..to).unwrap_or("").trim().to_owned()
                })
                .collect()
        })
        .collect()
}

pub(crate) fn kubeconfig(server: SocketAddr, user: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: box
  cluster:
    server: http://{server}
users:
- name: {user}
  user:
    token: {user}
contexts:
- name: box
  context:
    cluster: box
    user: {user}
    namespace: {NAMESPACE}
current-context: box
"
    )
}

pub(crate) struct Kubectl {
    pub(crate) fake: FakeApi,
    pub(crate) config: PathBuf,
    pub(crate) cache: PathBuf,
}

impl Kubectl {
    /// Runs kubectl against the fake (off this thread, which serves the fake); its standard
    /// output, or a panic with what it said and what it asked.
    pub(crate) async fn run(&self, args: &[&std::ffi::OsStr]) -> String {
        let mut command = Command::new("kubectl");
        command
            .arg("--kubeconfig")
            .arg(&self.config)
            .arg("--cache-dir")
            .arg(&self.cache)
            .args(args);
        let output = tokio::task::spawn_blocking(move || command.output())
            .await
            .unwrap()
            .expect("kubectl runs");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if !output.status.success() {
            let calls: Vec<String> = self
                .fake
                .calls()
                .into_iter()
                .filter(|c| c.user == KUBECTL_USER)
                .map(|c| format!("{} {}?{} -> {}", c.method, c.path, c.query, c.status))
                .collect();
            panic!(
                "kubectl {args:?} failed: {}\n{stdout}\nits requests:\n{}",
                String::from_utf8_lossy(&output.stderr),
                calls.join("\n")
            );
        }
        stdout
    }
}

/// Fails with the command that installs what is missing.
pub(crate) fn require_tools() {
    for (tool, install) in [
        ("kubectl", "apt-get install -y kubernetes-client"),
        ("ip", "apt-get install -y iproute2"),
        ("unshare", "apt-get install -y util-linux"),
        ("nsenter", "apt-get install -y util-linux"),
    ] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(found, "{tool} is missing; install it with `{install}`");
    }
}

/// Whether `GET url` answers 2xx within 2 s.
pub(crate) async fn answers_ok(url: &str) -> bool {
    reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

/// Waits until `check` holds, re-checking every 50 ms; panics after `within`.
pub(crate) async fn wait_until<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Where the processes' output goes; printed when the test fails.
pub(crate) struct Logs {
    pub(crate) dir: PathBuf,
    pub(crate) names: std::sync::Mutex<Vec<String>>,
    pub(crate) passed: std::sync::atomic::AtomicBool,
}

impl Logs {
    pub(crate) fn new(dir: &Path) -> Logs {
        Logs {
            dir: dir.to_path_buf(),
            names: Default::default(),
            passed: Default::default(),
        }
    }

    pub(crate) fn file(&self, name: &str) -> std::fs::File {
        self.names.lock().unwrap().push(name.to_owned());
        std::fs::File::create(self.dir.join(format!("{name}.log"))).unwrap()
    }

    pub(crate) fn passed(&self) {
        self.passed
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Drop for Logs {
    fn drop(&mut self) {
        // CONCLAVE_TEST_LOGS=<folder> keeps the whole logs, passed or failed, for a closer look.
        let keep = std::env::var_os("CONCLAVE_TEST_LOGS").map(std::path::PathBuf::from);
        let passed = self.passed.load(std::sync::atomic::Ordering::Relaxed);
        if passed && keep.is_none() {
            return;
        }
        for name in self.names.lock().unwrap().iter() {
            let text =
                std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default();
            if let Some(folder) = &keep {
                let _ = std::fs::create_dir_all(folder);
                let _ = std::fs::write(folder.join(format!("{name}.log")), &text);
            }
            if passed {
                continue;
            }
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            eprintln!("----- {name} (last {} lines) -----", tail.len());
            for line in tail {
                eprintln!("{line}");
            }
        }
    }
}

/// A child process, killed when dropped.
pub(crate) struct Proc {
    pub(crate) child: Child,
}

impl Proc {
    pub(crate) fn spawn(name: &str, logs: &Logs, command: &mut Command) -> Proc {
        let out = logs.file(name);
        let err = out.try_clone().unwrap();
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("{name} does not start: {e}"));
        Proc { child }
    }

    /// Sends `signal` (`TERM`, `STOP`, `CONT`) to the process.
    pub(crate) fn signal(&self, signal: &str) {
        run(
            "kill",
            &[&format!("-{signal}"), &self.child.id().to_string()],
        );
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a command to completion; panics with its output when it fails.
pub(crate) fn run(program: &str, args: &[&str]) {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} does not run: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// An SFU pod of the chart's StatefulSet (`hostNetwork`), alone on its "node": a network
/// namespace whose address is 10.89.<ordinal>.2, joined to the test's namespace (10.89.<ordinal>.1)
/// by a veth pair. A shell holds the namespace until its network is set up, then becomes
/// `conclave sfu` with the environment the chart gives the container.
pub(crate) struct Sfu {
    pub(crate) pod: String,
    pub(crate) ip: String,
    pub(crate) holder: Child,
}

impl Sfu {
    pub(crate) fn start(
        ordinal: u8,
        template: &Value,
        secret: impl Fn(&str, &str) -> String,
        api_port: u16,
        extra_env: &[(String, String)],
        logs: &Logs,
        log_name: &str,
    ) -> Sfu {
        let pod = format!("{RELEASE}-sfu-{ordinal}");
        let (ip, gateway) = (format!("10.89.{ordinal}.2"), format!("10.89.{ordinal}.1"));
        let log = logs.file(log_name);
        let env = container_env(
            template,
            &PodFacts {
                name: &pod,
                ip: &ip,
                // As the pod is registered: node-<ordinal>.
                node: &format!("node-{ordinal}"),
            },
            secret,
        );
        let listen = env.iter().find(|(k, _)| k == "CONCLAVE_SFU_LISTEN");
        assert_eq!(
            listen.map(|(_, v)| v.as_str()),
            Some(format!("0.0.0.0:{SFU_PORT}").as_str()),
            "the test expects the chart's default SFU port"
        );
        // `unshare -n` execs the shell in the new namespace; "up" tells that it is in there.
        let mut holder = Command::new("unshare")
            .args([
                "-n",
                "sh",
                "-c",
                "echo up; read go; ip link set lo up && exec \"$0\" \"$@\" 1>&2",
            ])
            .arg(system_tests::conclave_bin())
            .arg("sfu")
            .envs(env)
            // No Service or cluster DNS here: the API's address as seen from the node.
            .env(
                "CONCLAVE_SFU_API_URL",
                format!("http://{gateway}:{api_port}"),
            )
            .envs(extra_env.iter().cloned())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("unshare starts");
        let mut up = String::new();
        BufReader::new(holder.stdout.as_mut().unwrap())
            .read_line(&mut up)
            .unwrap();
        assert_eq!(up.trim(), "up", "the node's namespace did not come up");
        let pid = holder.id().to_string();
        let host_end = format!("node{ordinal}");
        run(
            "ip",
            &[
                "link", "add", &host_end, "type", "veth", "peer", "name", "eth0", "netns", &pid,
            ],
        );
        run(
            "ip",
            &["addr", "add", &format!("{gateway}/24"), "dev", &host_end],
        );
        run("ip", &["link", "set", &host_end, "up"]);
        let inside = |args: &[&str]| {
            let mut all = vec!["-t", pid.as_str(), "-n", "ip"];
            all.extend_from_slice(args);
            run("nsenter", &all);
        };
        inside(&["addr", "add", &format!("{ip}/24"), "dev", "eth0"]);
        inside(&["link", "set", "eth0", "up"]);
        inside(&["route", "add", "default", "via", &gateway]);
        // The SFU's output goes on to its log after the exec.
        let mut go = holder.stdin.take().unwrap();
        writeln!(go, "go").unwrap();
        Sfu { pod, ip, holder }
    }
}

impl Sfu {
    /// Kills the SFU (SIGKILL), as when its process crashes or its node goes away, and waits
    /// until it is gone.
    pub(crate) fn stop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }

    /// Sends `signal` (`TERM`, `STOP`, `CONT`) to the SFU process.
    pub(crate) fn signal(&self, signal: &str) {
        run(
            "kill",
            &[&format!("-{signal}"), &self.holder.id().to_string()],
        );
    }

    /// Whether the SFU process has exited.
    pub(crate) fn exited(&mut self) -> bool {
        self.holder.try_wait().ok().flatten().is_some()
    }

    /// The SFU's signaling address.
    pub(crate) fn addr(&self) -> SocketAddr {
        format!("{}:{SFU_PORT}", self.ip).parse().unwrap()
    }
}

impl Drop for Sfu {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Registers the pod as the StatefulSet controller and the kubelet would: the chart's labels
/// and annotations first, then (once `/readyz` answers, the readiness probe) a Running status
/// with its IP and `Ready=True`.
pub(crate) async fn register_pod(fake: &FakeApi, sfu: &Sfu, template: &Value) {
    let http = reqwest::Client::new();
    let base = format!("http://{}/api/v1/namespaces/{NAMESPACE}/pods", fake.addr);
    let mut labels = template["metadata"]["labels"].clone();
    labels["statefulset.kubernetes.io/pod-name"] = json!(sfu.pod);
    let annotations = template["metadata"]["annotations"].clone();
    assert_eq!(
        annotations["conclave.dev/udp-ports"], SFU_UDP_PORTS,
        "the test expects the chart's default UDP range"
    );
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": sfu.pod,
            "labels": labels,
            "annotations": annotations,
        },
        "spec": {
            "hostNetwork": true,
            "nodeName": format!("node-{}", sfu.pod.rsplit('-').next().unwrap()),
            "containers": [{"name": "sfu", "image": "conclave:0.1.0", "args": ["sfu"]}],
        },
    });
    let reply = http.post(&base).json(&pod).send().await.unwrap();
    let status = reply.status().as_u16();
    // 409: the pod outlived its container (a restart in place).
    assert!(
        status == 201 || status == 409,
        "{}",
        reply.text().await.unwrap()
    );
    let readyz = format!("http://{}:{SFU_PORT}/readyz", sfu.ip);
    wait_until(
        &format!("{}'s /readyz answers 200", sfu.pod),
        Duration::from_secs(30),
        || answers_ok(&readyz),
    )
    .await;
    let status = json!({"status": {
        "phase": "Running",
        "hostIP": sfu.ip,
        "podIP": sfu.ip,
        "podIPs": [{"ip": sfu.ip}],
        "conditions": conditions(true),
        "containerStatuses": [container_status(true, 0, json!({"running": {"startedAt": now_rfc3339()}}))],
    }});
    patch_pod_status(fake, &sfu.pod, status).await;
}

/// The chart rendered with its defaults and `conferenceStore=kubernetes`, by the renderer of
/// `tests/chart.rs` (Go's text/template with sprig, as Helm renders): the processes get the
/// environment and the pods the labels and annotations the chart gives them.
pub(crate) struct Chart {
    pub(crate) objects: Vec<Value>,
}

pub(crate) const GO_PACKAGES: &str = "apt-get install -y golang-go golang-github-masterminds-sprig-dev \
     golang-gopkg-yaml.v3-dev golang-github-xeipuuv-gojsonschema-dev";

impl Chart {
    pub(crate) fn render(dir: &Path) -> Chart {
        let repository = system_tests::repository();
        let bin = dir.join("render");
        let cache = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| dir.to_path_buf())
            .join("go-build-cache");
        let built = Command::new("go")
            .args(["build", "-o"])
            .arg(&bin)
            .arg(".")
            .current_dir(repository.join("tests/chart/render"))
            .env("GO111MODULE", "off")
            .env("GOPATH", "/usr/share/gocode")
            .env("GOCACHE", cache)
            .output()
            .unwrap_or_else(|e| panic!("go does not run ({e}); install it with `{GO_PACKAGES}`"));
        assert!(
            built.status.success(),
            "building the chart renderer failed (install the Go libraries: `{GO_PACKAGES}`):\n{}",
            String::from_utf8_lossy(&built.stderr)
        );
        let rendered = Command::new(&bin)
            .args(["--name", RELEASE, "--namespace", NAMESPACE])
            .args(["--set", "conferenceStore=kubernetes"])
            .arg(repository.join("charts/conclave"))
            .output()
            .unwrap();
        assert!(
            rendered.status.success(),
            "the chart does not render: {}",
            String::from_utf8_lossy(&rendered.stderr)
        );
        let text = String::from_utf8(rendered.stdout).unwrap();
        let objects = serde_yaml::Deserializer::from_str(&text)
            .filter_map(|doc| {
                let value: Value = serde::Deserialize::deserialize(doc).ok()?;
                value.is_object().then_some(value)
            })
            .collect();
        Chart { objects }
    }

    /// The pod template of the workload `kind`/`name`.
    pub(crate) fn template(&self, kind: &str, name: &str) -> &Value {
        self.objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .map(|o| &o["spec"]["template"])
            .unwrap_or_else(|| panic!("the chart renders no {kind} {name}"))
    }
}

/// What the downward API and Secrets give a container.
pub(crate) struct PodFacts<'a> {
    pub(crate) name: &'a str,
    pub(crate) ip: &'a str,
    /// `spec.nodeName`.
    pub(crate) node: &'a str,
}

/// The environment of the template's first container as the kubelet sets it: values (with
/// `$(VAR)` of earlier variables expanded), the downward API, and Secret keys from `secret`.
pub(crate) fn container_env(
    template: &Value,
    pod: &PodFacts,
    secret: impl Fn(&str, &str) -> String,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = Vec::new();
    let entries = template["spec"]["containers"][0]["env"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for entry in entries {
        let name = entry["name"].as_str().unwrap().to_owned();
        let value = if let Some(value) = entry["value"].as_str() {
            let mut value = value.to_owned();
            for (earlier, its) in &env {
                value = value.replace(&format!("$({earlier})"), its);
            }
            value
        } else if let Some(field) = entry.pointer("/valueFrom/fieldRef/fieldPath") {
            match field.as_str().unwrap() {
                "metadata.name" => pod.name.to_owned(),
                "metadata.namespace" => NAMESPACE.to_owned(),
                "status.podIP" | "status.hostIP" => pod.ip.to_owned(),
                "spec.nodeName" => pod.node.to_owned(),
                other => panic!("the chart uses a downward API field the test lacks: {other}"),
            }
        } else if let Some(reference) = entry.pointer("/valueFrom/secretKeyRef") {
            secret(
                reference["name"].as_str().unwrap(),
                reference["key"].as_str().unwrap(),
            )
        } else {
            panic!("an environment variable the test cannot set: {entry}");
        };
        env.push((name, value));
    }
    env
}

/// The admin URL of the PostgreSQL server the tests create databases on.
pub(crate) fn postgres_admin_url() -> reqwest::Url {
    let url = std::env::var("CONCLAVE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    reqwest::Url::parse(&url).unwrap_or_else(|e| panic!("CONCLAVE_TEST_POSTGRES={url}: {e}"))
}

/// The folder of the relay's socket: named after the outer process, the inner run's parent.
pub(crate) fn relay_dir(outer_pid: u32) -> PathBuf {
    std::env::temp_dir().join(format!("conclave-cluster-pg-{outer_pid}"))
}

/// `url` pointed at the relay's socket folder (libpq's and sqlx's `host=/folder`).
pub(crate) fn through_relay(url: &reqwest::Url, database: &str) -> String {
    let dir = relay_dir(std::os::unix::process::parent_id());
    let user = url.username();
    let port = url.port().unwrap_or(5432);
    format!(
        "postgres://{user}@localhost:{port}/{database}?host={}",
        dir.display()
    )
}

/// A fresh PostgreSQL database, reached through the relay's Unix socket, dropped at the end.
pub(crate) struct Database {
    pub(crate) url: String,
    pub(crate) admin: String,
    pub(crate) name: String,
}

impl Database {
    pub(crate) async fn create() -> Database {
        use sqlx::Connection;
        let admin_url = postgres_admin_url();
        let admin = through_relay(&admin_url, admin_url.path().trim_start_matches('/'));
        // The prefix scripts/test.sh sweeps at its start.
        let name = format!("conclave_t_cluster_{}", std::process::id());
        let mut connection = sqlx::PgConnection::connect(&admin).await.unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is required and is not reachable at {admin_url} (through {admin}): {e}; \
                 scripts/test.sh starts it (pg_ctlcluster 15 main start)"
            )
        });
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut connection)
        .await
        .unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut connection)
            .await
            .unwrap();
        Database {
            url: through_relay(&admin_url, &name),
            admin,
            name,
        }
    }

    pub(crate) async fn drop_now(self) {
        use sqlx::Connection;
        if let Ok(mut connection) = sqlx::PgConnection::connect(&self.admin).await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            )))
            .execute(&mut connection)
            .await;
        }
    }
}

/// Relays connections on a Unix socket (`.s.PGSQL.<port>` in [`relay_dir`]) to the PostgreSQL
/// server of `CONCLAVE_TEST_POSTGRES`, for the run inside the network namespace. Threads of
/// the outer process; the folder goes when the relay is dropped.
pub(crate) struct PostgresRelay {
    pub(crate) dir: PathBuf,
}

impl PostgresRelay {
    pub(crate) fn start() -> PostgresRelay {
        let url = postgres_admin_url();
        let host = url.host_str().unwrap_or("127.0.0.1").to_owned();
        let port = url.port().unwrap_or(5432);
        let dir = relay_dir(std::process::id());
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let listener =
            std::os::unix::net::UnixListener::bind(dir.join(format!(".s.PGSQL.{port}"))).unwrap();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = std::net::TcpStream::connect((host.as_str(), port)) else {
                    continue;
                };
                let (mut client_read, mut server_write) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (mut server_read, mut client_write) = (server, client);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut client_read, &mut server_write);
                    let _ = server_write.shutdown(std::net::Shutdown::Write);
                });
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut server_read, &mut client_write);
                    let _ = client_write.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        PostgresRelay { dir }
    }
}

impl Drop for PostgresRelay {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Makes an ad hoc meeting as `admin` through the API and waits until the operator placed it:
/// the API's answer (id, meetingId, password) and the assignment.
pub(crate) async fn placed_meeting(
    cluster: &ClusterBox,
    admin: &str,
    topic: &str,
) -> (Value, Value) {
    let reply = cluster
        .http
        .post(format!("{}/api/v1/conferences/adhoc", cluster.base()))
        .bearer_auth(admin)
        .json(&json!({ "topic": topic }))
        .send()
        .await
        .unwrap();
    let status = reply.status().as_u16();
    let meeting: Value = reply.json().await.unwrap_or_default();
    assert_eq!(status, 201, "{meeting}");
    let assignment = placed_by_name(&cluster.fake, meeting["id"].as_str().unwrap()).await;
    (meeting, assignment)
}

/// Two attendees of `meeting` that keep it by themselves: `admin` (its owner) and a guest,
/// each publishing a microphone and a camera with a keyframe every second.
pub(crate) fn two_attendees(
    cluster: &ClusterBox,
    admin: &str,
    meeting: &Value,
) -> Vec<loadgen::Attendee> {
    let plan = loadgen::MediaPlan {
        keyframe_every: Some(Duration::from_secs(1)),
        ..loadgen::MediaPlan::default()
    };
    let sources = vec![
        proto::signal::TrackSource::Microphone,
        proto::signal::TrackSource::Camera,
    ];
    [
        (Some(admin.to_owned()), json!({"meetingId": meeting["meetingId"]})),
        (
            None,
            json!({"meetingId": meeting["meetingId"], "password": meeting["password"], "displayName": "Guest"}),
        ),
    ]
    .into_iter()
    .map(|(session_token, join)| {
        loadgen::Attendee::start(loadgen::AttendeeOptions {
            api: cluster.base(),
            join,
            session_token,
            sources: sources.clone(),
            plan,
            media_ip: Some(CLIENT_IP.into()),
        })
    })
    .collect()
}

/// Waits until every attendee receives media on a connection asked for after `since`, all on
/// one pod other than `not_on`; returns that pod and, per attendee, the time from `since` to
/// its first packet there.
pub(crate) async fn all_back(
    attendees: &mut [loadgen::Attendee],
    since: std::time::Instant,
    not_on: &str,
    within: Duration,
) -> (String, Vec<Duration>) {
    let mut pods = Vec::new();
    let mut times = Vec::new();
    for attendee in attendees.iter_mut() {
        let connections = attendee
            .wait_until(within, |c| {
                c.last().is_some_and(|last| {
                    last.asked_at >= since
                        && last.pod.as_deref().is_some_and(|p| p != not_on)
                        && last.first_packet_at.is_some()
                })
            })
            .await
            .unwrap_or_else(|e| panic!("an attendee did not come back with media: {e:#}"));
        let last = connections.last().unwrap();
        pods.push(last.pod.clone().unwrap());
        times.push(last.first_packet_at.unwrap() - since);
    }
    assert!(
        pods.windows(2).all(|w| w[0] == w[1]),
        "the attendees came back in different rooms: {pods:?}"
    );
    (pods.remove(0), times)
}

/// Waits until every attendee receives media on its first connection, on `pod`.
pub(crate) async fn all_in(attendees: &mut [loadgen::Attendee], pod: &str) {
    for attendee in attendees.iter_mut() {
        let connections = attendee
            .wait_until(Duration::from_secs(30), |c| {
                c.last().is_some_and(|l| l.first_packet_at.is_some())
            })
            .await
            .unwrap_or_else(|e| panic!("an attendee got no media: {e:#}"));
        assert_eq!(
            connections.last().unwrap().pod.as_deref(),
            Some(pod),
            "{connections:?}"
        );
    }
}

//! An in-process fake of the Kubernetes API server, on 127.0.0.1, for the verbs the operator
//! uses: list and watch with resourceVersion (an ERROR 410 event when the version is compacted
//! away or the watcher falls behind), get, create, replace (409 on a stale resourceVersion),
//! server-side apply (with field ownership, so fields a manager stops applying are removed),
//! merge and JSON patches (a `metadata.resourceVersion` in an apply or merge patch is a
//! precondition: 409 Conflict when stale, on the object and on its status alike), the status
//! subresource, delete with finalizers and deletionTimestamp, and the graceful deletion of Pods
//! (a grace period sets `deletionTimestamp`; the kubelet's final delete with grace 0 removes
//! the pod). Resources are stored as JSON, so Pods, Leases, Events and Conferences all
//! go through the same code. Conference writes are validated against the generated CRD schema.
//!
//! Tests wait for the state they expect with [`FakeApi::wait_for`], which re-checks on every
//! write (a notification, not a sleep) and gives up after a bound. They can hold requests in
//! flight ([`FakeApi::hold`]: a hung renew, a paused client, a write delayed in the network that
//! reaches the store late) and make the server's clock follow theirs ([`FakeApi::set_clock`]).
//!
//! It is served over HTTP, so real processes reach it too (through a kubeconfig naming
//! `http://<addr>`), and `kubectl` works against it: discovery, the OpenAPI v3 `kubectl apply`
//! reads, and the Table format of `kubectl get`.
//!
//! A dev-only crate: the operator's tests and benchmark, the API's Kubernetes-store tests and
//! the cluster-in-a-box test (`tests/cluster.rs`) use it.
//!
//! # Layout
//! - this file: the store, the HTTP handler and the verbs;
//! - [`rbac`]: the calls as RBAC sees them, compared with a committed `rbac-observed.json`;
//! - [`discovery`]: `/version`, `/api`, `/apis`, resource lists, OpenAPI v3;
//! - [`table`]: the Table format built from the CRD's printer columns.
#![allow(clippy::result_large_err)]

pub mod discovery;
pub mod rbac;
pub mod table;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State as AxumState;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use tokio::sync::{broadcast, watch};

/// Which resource a path names: `pods`, `conclave.dev/conferences`, …
type Resource = String;
/// An object's identity.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub resource: Resource,
    pub namespace: String,
    pub name: String,
}

/// A change, as watchers see it.
#[derive(Debug, Clone)]
struct Change {
    resource: Resource,
    rv: u64,
    kind: &'static str,
    object: Arc<Value>,
}

/// One call the fake answered.
#[derive(Debug, Clone)]
pub struct Call {
    /// Who called: the bearer token of a [`FakeApi::client_as`] client (or of a process's
    /// kubeconfig), `kubectl` for the real kubectl (which sends no token over plain HTTP),
    /// `test` for [`FakeApi::client`] (the test itself acting as the kubelet, …).
    pub user: String,
    pub method: String,
    pub path: String,
    pub query: String,
    pub content_type: String,
    pub status: u16,
}

/// Server-side apply ownership of one object: (manager, on status) → the leaf paths it owns.
type Ownership = HashMap<(String, bool), BTreeSet<Vec<String>>>;

#[derive(Default)]
struct Inner {
    rv: u64,
    uid: u64,
    objects: BTreeMap<Key, Value>,
    history: HashMap<Resource, VecDeque<Change>>,
    /// Per resource: watches from a resourceVersion below this get 410 Gone.
    floor: HashMap<Resource, u64>,
    history_limit: usize,
    /// Server-side apply: (object, manager, subresource) → the leaf paths the manager owns.
    managed: HashMap<Key, Ownership>,
    calls: Vec<Call>,
    record_calls: bool,
    /// How many watches were answered 410 Gone.
    gone: u64,
}

/// The fake API server. Cloning shares it.
#[derive(Clone)]
pub struct FakeApi {
    inner: Arc<Mutex<Inner>>,
    changes: broadcast::Sender<Change>,
    version: watch::Sender<u64>,
    /// Bumped to end every open watch (as when an API server restarts).
    kick: watch::Sender<u64>,
    schema: Arc<Option<jsonschema::Validator>>,
    /// Requests to hold back, in the order the holds were made.
    holds: Arc<Mutex<Vec<HoldRule>>>,
    /// The server's clock (timestamps it sets); the wall clock unless a test sets one.
    clock: Arc<Mutex<Option<ServerClock>>>,
    pub addr: SocketAddr,
}

/// A clock a test hands the fake (see [`FakeApi::set_clock`]).
type ServerClock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// A request as a [`FakeApi::hold`] rule sees it.
#[derive(Debug, Clone)]
pub struct Request {
    /// Who calls (as in [`Call::user`]).
    pub user: String,
    /// `GET`, `PATCH`, …
    pub method: String,
    /// The path, e.g. `/apis/coordination.k8s.io/v1/namespaces/ns/leases/name`.
    pub path: String,
    /// The query string.
    pub query: String,
}

/// What the requests caught by a hold are waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gate {
    Closed,
    /// Go on to the store (late).
    Open,
    /// Never reach the store and are never answered (as if lost with a crashed client).
    Dropped,
}

struct HoldRule {
    id: u64,
    matches: Box<dyn Fn(&Request) -> bool + Send + Sync>,
    gate: watch::Sender<Gate>,
    caught: watch::Sender<Vec<Request>>,
}

/// Requests held in flight by [`FakeApi::hold`]. Dropping it releases them.
pub struct Hold {
    api: FakeApi,
    id: u64,
    gate: watch::Sender<Gate>,
    caught: watch::Receiver<Vec<Request>>,
}

impl std::fmt::Debug for Hold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hold")
            .field("id", &self.id)
            .field("caught", &*self.caught.borrow())
            .finish_non_exhaustive()
    }
}

impl Hold {
    /// The requests caught so far (held, or already let go).
    pub fn caught(&self) -> Vec<Request> {
        self.caught.borrow().clone()
    }

    /// Waits until a caught request satisfies `check`; panics after `within`.
    pub async fn wait_caught(
        &self,
        what: &str,
        within: Duration,
        check: impl Fn(&Request) -> bool,
    ) -> Request {
        let mut caught = self.caught.clone();
        let found = tokio::time::timeout(
            within,
            caught.wait_for(|requests| requests.iter().any(&check)),
        )
        .await;
        match found {
            Ok(Ok(requests)) => requests
                .iter()
                .find(|r| check(r))
                .cloned()
                .expect("wait_for returned a matching list"),
            _ => panic!("timed out after {within:?} waiting for a held request: {what}"),
        }
    }

    fn stop_catching(&self) {
        self.api
            .holds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|rule| rule.id != self.id);
    }

    /// Lets the held requests reach the store now (late, even when their client went away, as
    /// requests delayed in the network do) and stops holding new ones.
    pub fn release(self) {
        drop(self);
    }

    /// Drops the held requests without them reaching the store (their client, if still there,
    /// never gets an answer), as if they were lost with a crashed process; stops holding new
    /// ones.
    pub fn drop_held(self) {
        self.stop_catching();
        self.gate.send_replace(Gate::Dropped);
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.stop_catching();
        self.gate.send_if_modified(|gate| {
            if *gate == Gate::Closed {
                *gate = Gate::Open;
                true
            } else {
                false
            }
        });
    }
}

fn kind_of(resource: &str) -> (&'static str, &'static str) {
    match resource {
        "pods" => ("v1", "Pod"),
        "secrets" => ("v1", "Secret"),
        "events" => ("v1", "Event"),
        "conclave.dev/conferences" => ("conclave.dev/v1alpha1", "Conference"),
        "coordination.k8s.io/leases" => ("coordination.k8s.io/v1", "Lease"),
        "events.k8s.io/events" => ("events.k8s.io/v1", "Event"),
        _ => ("v1", "Unknown"),
    }
}

fn has_status_subresource(resource: &str) -> bool {
    matches!(resource, "pods" | "conclave.dev/conferences")
}

fn status(code: u16, reason: &str, message: impl Into<String>) -> Response {
    let body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message.into(),
        "reason": reason,
        "code": code,
    });
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        axum::Json(body),
    )
        .into_response()
}

/// 409 Conflict for a write based on a resourceVersion that is no longer the object's.
fn conflict(resource: &str, name: &str) -> Response {
    status(
        409,
        "Conflict",
        format!(
            "Operation cannot be fulfilled on {resource} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
        ),
    )
}

fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl std::fmt::Debug for FakeApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeApi")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl FakeApi {
    /// Starts the fake on an ephemeral port of 127.0.0.1.
    pub async fn start() -> FakeApi {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local addr");
        let (changes, _) = broadcast::channel(1 << 16);
        let (version, _) = watch::channel(0);
        let (kick, _) = watch::channel(0);
        let crd = <crds::Conference as kube::CustomResourceExt>::crd();
        let schema = crd.spec.versions[0]
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .map(|s| serde_json::to_value(s).expect("schema json"))
            .expect("schema");
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft4)
            .should_validate_formats(true)
            .with_format("duration", |s: &str| crds::parse_duration(s).is_some())
            .with_format("uint32", |_: &str| true)
            .with_format("uint16", |_: &str| true)
            .build(&schema)
            .expect("schema compiles");
        let api = FakeApi {
            inner: Arc::new(Mutex::new(Inner {
                history_limit: 100_000,
                record_calls: true,
                ..Inner::default()
            })),
            changes,
            version,
            kick,
            schema: Arc::new(Some(validator)),
            holds: Arc::new(Mutex::new(Vec::new())),
            clock: Arc::new(Mutex::new(None)),
            addr,
        };
        let router = Router::new().fallback(handle).with_state(api.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        api
    }

    /// A kube client talking to this fake.
    pub fn client(&self) -> kube::Client {
        let url: http::Uri = format!("http://{}", self.addr).parse().expect("uri");
        let mut config = kube::Config::new(url);
        config.default_namespace = "default".into();
        config.read_timeout = Some(Duration::from_secs(300));
        kube::Client::try_from(config).expect("client")
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A kube client that identifies as `user` (a bearer token, as a service account's token
    /// identifies it to a real API server), so that [`rbac::observed`] tells its calls apart
    /// from the test's own.
    pub fn client_as(&self, user: &str) -> kube::Client {
        let url: http::Uri = format!("http://{}", self.addr).parse().expect("uri");
        let mut config = kube::Config::new(url);
        config.default_namespace = "default".into();
        config.read_timeout = Some(Duration::from_secs(300));
        config.headers.push((
            http::header::AUTHORIZATION,
            http::HeaderValue::from_str(&format!("Bearer {user}")).expect("a token is a header"),
        ));
        kube::Client::try_from(config).expect("client")
    }

    /// Makes the server's timestamps (creation, deletion) follow `now` instead of the wall
    /// clock, e.g. a test's virtual clock.
    pub fn set_clock(&self, now: impl Fn() -> DateTime<Utc> + Send + Sync + 'static) {
        *self.clock.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(now));
    }

    /// The server's time now.
    pub fn now(&self) -> DateTime<Utc> {
        let clock = self.clock.lock().unwrap_or_else(|e| e.into_inner()).clone();
        clock.map_or_else(Utc::now, |now| now())
    }

    /// Holds every request for which `matches` is true from now on, until the returned [`Hold`]
    /// releases them (they then reach the store, late) or drops them: a hung renew, a paused
    /// client, a write delayed in the network. A held request is answered only then; its client
    /// may give up meanwhile, and a released request still reaches the store.
    pub fn hold(&self, matches: impl Fn(&Request) -> bool + Send + Sync + 'static) -> Hold {
        let (gate, _) = watch::channel(Gate::Closed);
        let (caught, caught_rx) = watch::channel(Vec::new());
        let mut holds = self.holds.lock().unwrap_or_else(|e| e.into_inner());
        let id = holds.iter().map(|h| h.id).max().unwrap_or(0) + 1;
        holds.push(HoldRule {
            id,
            matches: Box::new(matches),
            gate: gate.clone(),
            caught,
        });
        Hold {
            api: self.clone(),
            id,
            gate,
            caught: caught_rx,
        }
    }

    /// The gate a request waits at, if a hold catches it.
    fn held(&self, request: &Request) -> Option<watch::Receiver<Gate>> {
        let holds = self.holds.lock().unwrap_or_else(|e| e.into_inner());
        let rule = holds.iter().find(|rule| (rule.matches)(request))?;
        rule.caught
            .send_modify(|caught| caught.push(request.clone()));
        Some(rule.gate.subscribe())
    }

    /// Stops keeping a log of calls (benchmarks).
    pub fn record_calls(&self, on: bool) {
        self.lock().record_calls = on;
    }

    /// Keeps at most `limit` watch events per resource; older resourceVersions get 410.
    pub fn set_history_limit(&self, limit: usize) {
        self.lock().history_limit = limit;
    }

    /// Forgets every watch event so far: any watch resuming from an older resourceVersion gets
    /// 410 Gone and must re-list.
    pub fn compact(&self) {
        let mut inner = self.lock();
        let rv = inner.rv;
        let resources: Vec<Resource> = inner.history.keys().cloned().collect();
        for resource in resources {
            inner.history.insert(resource.clone(), VecDeque::new());
            inner.floor.insert(resource, rv + 1);
        }
    }

    /// Ends every open watch; watchers reconnect from their last resourceVersion (and get 410
    /// Gone when [`FakeApi::compact`] dropped it).
    pub fn end_watches(&self) {
        self.kick.send_modify(|n| *n += 1);
    }

    /// The object, if it exists.
    pub fn get(&self, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        self.lock()
            .objects
            .get(&Key {
                resource: resource.into(),
                namespace: namespace.into(),
                name: name.into(),
            })
            .cloned()
    }

    /// Every object of a resource.
    pub fn list(&self, resource: &str) -> Vec<Value> {
        self.lock()
            .objects
            .iter()
            .filter(|(k, _)| k.resource == resource)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// How many watches were answered 410 Gone (resourceVersion compacted away or too slow).
    pub fn gone_answers(&self) -> u64 {
        self.lock().gone
    }

    /// The calls answered so far.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// Waits until `check` returns `Some`, re-checking after every write and every recorded call;
    /// panics after `within`.
    pub async fn wait_for<T>(
        &self,
        what: &str,
        within: Duration,
        mut check: impl FnMut(&FakeApi) -> Option<T>,
    ) -> T {
        let mut version = self.version.subscribe();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            version.borrow_and_update();
            if let Some(found) = check(self) {
                return found;
            }
            match tokio::time::timeout_at(deadline, version.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => {
                    panic!("timed out after {within:?} waiting for {what}")
                }
            }
        }
    }

    fn publish(&self, inner: &mut Inner, resource: &str, kind: &'static str, object: Value) {
        let change = Change {
            resource: resource.to_owned(),
            rv: inner.rv,
            kind,
            object: Arc::new(object),
        };
        let limit = inner.history_limit;
        let history = inner.history.entry(resource.to_owned()).or_default();
        history.push_back(change.clone());
        while history.len() > limit {
            if let Some(dropped) = history.pop_front() {
                inner.floor.insert(resource.to_owned(), dropped.rv + 1);
            }
        }
        let _ = self.changes.send(change);
        self.version.send_replace(inner.rv);
    }
}

struct Target {
    resource: Resource,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

fn parse_path(path: &str) -> Option<Target> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match segments.as_slice() {
        ["api", "v1", rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some((*ns).to_owned()), rest),
        rest => (None, rest),
    };
    let (resource, name, subresource) = match rest {
        [resource] => (*resource, None, None),
        [resource, name] => (*resource, Some((*name).to_owned()), None),
        [resource, name, sub] => (*resource, Some((*name).to_owned()), Some((*sub).to_owned())),
        _ => return None,
    };
    let resource = if group.is_empty() {
        resource.to_owned()
    } else {
        format!("{group}/{resource}")
    };
    Some(Target {
        resource,
        namespace,
        name,
        subresource,
    })
}

fn query_map(uri: &Uri) -> HashMap<String, String> {
    uri.query()
        .map(|q| {
            url_decode_pairs(q)
                .into_iter()
                .collect::<HashMap<String, String>>()
        })
        .unwrap_or_default()
}

fn url_decode_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                if let Ok(b) = u8::from_str_radix(hex, 16) {
                    out.push(b);
                    i += 2;
                } else {
                    out.push(b'%');
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `a=b,c!=d,e,!f` against an object's labels.
fn matches_selector(selector: &str, object: &Value) -> bool {
    let labels = object
        .pointer("/metadata/labels")
        .and_then(Value::as_object);
    let label = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
    selector
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .all(|term| {
            if let Some((k, v)) = term.split_once("!=") {
                label(k.trim()) != Some(v.trim())
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                label(k.trim()) == Some(v.trim())
            } else if let Some(k) = term.strip_prefix('!') {
                label(k).is_none()
            } else {
                label(term).is_some()
            }
        })
}

fn rv_of(object: &Value) -> Option<&str> {
    object
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
}

/// Leaf paths of an applied object (arrays are atomic leaves).
fn leaves(value: &Value, prefix: &mut Vec<String>, out: &mut BTreeSet<Vec<String>>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                prefix.push(k.clone());
                leaves(v, prefix, out);
                prefix.pop();
            }
        }
        _ => {
            out.insert(prefix.clone());
        }
    }
}

fn remove_path(value: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = value;
    for p in parents {
        match node.get_mut(p) {
            Some(next) => node = next,
            None => return,
        }
    }
    if let Some(map) = node.as_object_mut() {
        map.remove(last);
    }
}

/// Removes objects left empty by removals (but not the top level).
/// The fields an apply sets and its manager owns: everything but the object's identity
/// (apiVersion, kind, name, namespace, resourceVersion), which nobody owns and an apply that
/// leaves them out never removes.
fn apply_scope(applied: &Value) -> Value {
    let mut scope = applied.clone();
    if let Some(m) = scope.as_object_mut() {
        m.remove("apiVersion");
        m.remove("kind");
        if let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("name");
            meta.remove("namespace");
            meta.remove("resourceVersion");
        }
    }
    scope
}

fn prune_empty(value: &mut Value) {
    if let Some(map) = value.as_object_mut() {
        for v in map.values_mut() {
            prune_empty(v);
        }
        map.retain(|_, v| !matches!(v, Value::Object(m) if m.is_empty()));
    }
}

fn deep_merge(target: &mut Value, applied: &Value) {
    match (target, applied) {
        (Value::Object(t), Value::Object(a)) => {
            for (k, v) in a {
                match t.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => {
                        deep_merge(existing, v)
                    }
                    _ => {
                        t.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (t, a) => *t = a.clone(),
    }
}

async fn handle(
    AxumState(api): AxumState<FakeApi>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    // kubectl (client-go) sends no bearer token over plain HTTP; its User-Agent names it.
    let kubectl = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|agent| agent.starts_with("kubectl/"));
    let user = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or(if kubectl { "kubectl" } else { "test" })
        .to_owned();
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let incoming = Incoming {
        request: Request {
            user,
            method: method.to_string(),
            path: uri.path().to_owned(),
            query: uri.query().unwrap_or("").to_owned(),
        },
        method,
        uri,
        content_type,
        accept,
        body,
    };
    let Some(mut gate) = api.held(&incoming.request) else {
        return answer(&api, incoming).await;
    };
    // Detached, so that a request whose client gave up still reaches the store when released,
    // as a request delayed in the network does.
    let task = tokio::spawn(async move {
        let passed = gate.wait_for(|g| *g != Gate::Closed).await.map(|g| *g);
        if !matches!(passed, Ok(Gate::Open)) {
            // Lost on its way: no answer ever comes.
            std::future::pending::<()>().await;
        }
        answer(&api, incoming).await
    });
    task.await
        .unwrap_or_else(|_| status(500, "InternalError", "the held request failed"))
}

/// A request, owned, on its way to the store.
struct Incoming {
    request: Request,
    method: Method,
    uri: Uri,
    content_type: String,
    accept: String,
    body: Bytes,
}

/// Answers a request and logs the call.
async fn answer(api: &FakeApi, incoming: Incoming) -> Response {
    let Incoming {
        request,
        method,
        uri,
        content_type,
        accept,
        body,
    } = incoming;
    let query = query_map(&uri);
    let response = match parse_path(uri.path()) {
        None => match discovery::answer(uri.path(), &api.addr.to_string()) {
            Some(answer) if method == Method::GET => axum::Json(answer).into_response(),
            _ => status(404, "NotFound", format!("no route for {}", uri.path())),
        },
        Some(target) => route(api, &method, target, &query, &content_type, &accept, &body).await,
    };
    let mut inner = api.lock();
    if inner.record_calls {
        inner.calls.push(Call {
            user: request.user,
            method: request.method,
            path: request.path,
            query: request.query,
            content_type,
            status: response.status().as_u16(),
        });
        drop(inner);
        // A refused or read-only call changes no object, but wait_for may be waiting for it.
        api.version.send_modify(|_| {});
    }
    response
}

async fn route(
    api: &FakeApi,
    method: &Method,
    target: Target,
    query: &HashMap<String, String>,
    content_type: &str,
    accept: &str,
    body: &Bytes,
) -> Response {
    let parsed = || -> Result<Value, Response> {
        serde_json::from_slice(body).map_err(|e| status(400, "BadRequest", e.to_string()))
    };
    match (method.clone(), &target.name) {
        (Method::GET, None) if query.get("watch").is_some_and(|w| w == "true" || w == "1") => {
            watch_response(api, &target, query)
        }
        (Method::GET, None) => list(api, &target, query, accept),
        (Method::GET, Some(name)) => {
            let key = key(&target, name);
            let inner = api.lock();
            match inner.objects.get(&key) {
                Some(object) if table::wanted(accept) => axum::Json(table::of(
                    &target.resource,
                    std::slice::from_ref(object),
                    &inner.rv.to_string(),
                ))
                .into_response(),
                Some(object) => axum::Json(object.clone()).into_response(),
                None => status(
                    404,
                    "NotFound",
                    format!("{} \"{name}\" not found", target.resource),
                ),
            }
        }
        (Method::POST, None) => match parsed() {
            Ok(object) => create(api, &target, object),
            Err(r) => r,
        },
        (Method::PUT, Some(name)) => match parsed() {
            Ok(object) => replace(api, &target, name, object),
            Err(r) => r,
        },
        (Method::PATCH, Some(name)) => patch(api, &target, name, query, content_type, body),
        (Method::DELETE, Some(name)) => delete(api, &target, name, query, body),
        _ => status(405, "MethodNotAllowed", "not supported by the fake"),
    }
}

fn key(target: &Target, name: &str) -> Key {
    Key {
        resource: target.resource.clone(),
        namespace: target.namespace.clone().unwrap_or_default(),
        name: name.to_owned(),
    }
}

fn list(api: &FakeApi, target: &Target, query: &HashMap<String, String>, accept: &str) -> Response {
    let selector = query.get("labelSelector").cloned().unwrap_or_default();
    let inner = api.lock();
    let items: Vec<Value> = inner
        .objects
        .iter()
        .filter(|(k, _)| {
            k.resource == target.resource
                && target
                    .namespace
                    .as_ref()
                    .is_none_or(|ns| *ns == k.namespace)
        })
        .filter(|(_, v)| matches_selector(&selector, v))
        .map(|(_, v)| v.clone())
        .collect();
    if table::wanted(accept) {
        return axum::Json(table::of(&target.resource, &items, &inner.rv.to_string()))
            .into_response();
    }
    let (api_version, kind) = kind_of(&target.resource);
    axum::Json(json!({
        "apiVersion": api_version,
        "kind": format!("{kind}List"),
        "metadata": { "resourceVersion": inner.rv.to_string() },
        "items": items,
    }))
    .into_response()
}

fn watch_response(api: &FakeApi, target: &Target, query: &HashMap<String, String>) -> Response {
    let selector = query.get("labelSelector").cloned().unwrap_or_default();
    let from: u64 = query
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|v| v.parse().ok())
        .unwrap_or(290u64);
    let resource = target.resource.clone();
    let namespace = target.namespace.clone();
    let wanted = move |change: &Change| {
        change.resource == resource
            && namespace.as_ref().is_none_or(|ns| {
                change
                    .object
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    == Some(ns.as_str())
            })
            && matches_selector(&selector, &change.object)
    };
    let gone = || {
        json!({"type": "ERROR", "object": {
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "too old resource version", "reason": "Expired", "code": 410 }})
    };
    // Subscribe and copy the backlog under one lock so no change falls in between.
    let (backlog, mut live, expired) = {
        let mut inner = api.lock();
        let floor = inner.floor.get(&target.resource).copied().unwrap_or(0);
        let expired = from != 0 && from + 1 < floor;
        if expired {
            inner.gone += 1;
        }
        let backlog: Vec<Change> = inner
            .history
            .get(&target.resource)
            .map(|h| h.iter().filter(|c| c.rv > from).cloned().collect())
            .unwrap_or_default();
        (backlog, api.changes.subscribe(), expired)
    };
    let lagged = api.inner.clone();
    let mut kicked = api.kick.subscribe();
    kicked.mark_unchanged();
    let line = |v: Value| Bytes::from(format!("{v}\n"));
    let event = |c: &Change| json!({"type": c.kind, "object": *c.object});
    let stream = async_stream(move |tx| async move {
        if expired {
            let _ = tx.send(line(gone())).await;
            return;
        }
        let mut last = from;
        for change in backlog.iter().filter(|c| wanted(c)) {
            last = change.rv;
            if tx.send(line(event(change))).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::sleep(Duration::from_secs(timeout));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                _ = kicked.changed() => return,
                received = live.recv() => match received {
                    Ok(change) => {
                        if change.rv <= last || !wanted(&change) {
                            continue;
                        }
                        last = change.rv;
                        if tx.send(line(event(&change))).await.is_err() {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        lagged.lock().unwrap_or_else(|e| e.into_inner()).gone += 1;
                        let _ = tx.send(line(gone())).await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    });
    Response::builder()
        .status(200)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| status(500, "InternalError", "body"))
}

/// A stream fed by a task through a bounded channel.
fn async_stream<F, Fut>(produce: F) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Bytes>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    tokio::spawn(produce(tx));
    futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|bytes| (Ok(bytes), rx))
    })
}

impl FakeApi {
    fn validate(&self, resource: &str, object: &Value) -> Result<(), Response> {
        if resource != "conclave.dev/conferences" {
            return Ok(());
        }
        if let Some(validator) = self.schema.as_ref() {
            let errors: Vec<String> = validator
                .iter_errors(object)
                .map(|e| format!("{e} at {}", e.instance_path))
                .collect();
            if !errors.is_empty() {
                return Err(status(422, "Invalid", errors.join("; ")));
            }
        }
        Ok(())
    }

    /// Stores `object` at `key` as a write of an existing or new object; handles generation,
    /// no-op writes and deletion once the last finalizer is gone.
    fn commit(
        &self,
        inner: &mut Inner,
        key: &Key,
        old: Option<&Value>,
        mut object: Value,
    ) -> Value {
        if let Some(old) = old {
            // Identity and bookkeeping the client may not change.
            for field in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "name",
                "namespace",
            ] {
                match old.pointer(&format!("/metadata/{field}")) {
                    Some(v) => {
                        object["metadata"][field] = v.clone();
                    }
                    None => {
                        if let Some(m) = object["metadata"].as_object_mut() {
                            m.remove(field);
                        }
                    }
                }
            }
            let generation = old
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            let spec_changed = old.get("spec") != object.get("spec");
            object["metadata"]["generation"] = json!(if spec_changed {
                generation + 1
            } else {
                generation
            });
            object["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
            if &object == old {
                return object;
            }
        }
        inner.rv += 1;
        object["metadata"]["resourceVersion"] = json!(inner.rv.to_string());
        // Like the API server: an object marked for deletion goes with its last finalizer,
        // unless a graceful deletion (a pod's) is still running.
        let deleting = object.pointer("/metadata/deletionTimestamp").is_some();
        let graceful = object
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64)
            .is_some_and(|grace| grace > 0);
        let finalizers_left = object
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty());
        if deleting && !graceful && !finalizers_left {
            inner.objects.remove(key);
            inner.managed.remove(key);
            self.publish(inner, &key.resource, "DELETED", object.clone());
        } else {
            inner.objects.insert(key.clone(), object.clone());
            self.publish(
                inner,
                &key.resource,
                if old.is_some() { "MODIFIED" } else { "ADDED" },
                object.clone(),
            );
        }
        object
    }
}

fn create(api: &FakeApi, target: &Target, mut object: Value) -> Response {
    let namespace = target.namespace.clone().unwrap_or_default();
    let mut inner = api.lock();
    let name = match object.pointer("/metadata/name").and_then(Value::as_str) {
        Some(name) => name.to_owned(),
        None => match object
            .pointer("/metadata/generateName")
            .and_then(Value::as_str)
        {
            Some(prefix) => format!("{prefix}{:05}", inner.uid + 1),
            None => return status(422, "Invalid", "metadata.name is required"),
        },
    };
    let key = key(target, &name);
    if inner.objects.contains_key(&key) {
        return status(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", target.resource),
        );
    }
    inner.uid += 1;
    let (api_version, kind) = kind_of(&target.resource);
    object["apiVersion"] = json!(api_version);
    object["kind"] = json!(kind);
    let meta = object["metadata"]
        .as_object_mut()
        .map(std::mem::take)
        .unwrap_or_default();
    let mut meta: Map<String, Value> = meta;
    meta.insert("name".into(), json!(name));
    if !namespace.is_empty() {
        meta.insert("namespace".into(), json!(namespace));
    }
    meta.insert(
        "uid".into(),
        json!(format!("00000000-0000-0000-0000-{:012}", inner.uid)),
    );
    meta.insert("creationTimestamp".into(), json!(rfc3339(api.now())));
    meta.insert("generation".into(), json!(1));
    meta.remove("resourceVersion");
    meta.remove("deletionTimestamp");
    object["metadata"] = Value::Object(meta);
    if has_status_subresource(&target.resource)
        && let Some(map) = object.as_object_mut()
    {
        map.remove("status");
    }
    if let Err(r) = api.validate(&target.resource, &object) {
        return r;
    }
    let stored = api.commit(&mut inner, &key, None, object);
    (StatusCode::CREATED, axum::Json(stored)).into_response()
}

/// Applies the subresource rule: writes to the main resource keep the old status; writes to
/// `/status` change only the status.
fn scope_write(target: &Target, old: &Value, mut new: Value) -> Value {
    if !has_status_subresource(&target.resource) {
        return new;
    }
    if target.subresource.as_deref() == Some("status") {
        let mut scoped = old.clone();
        match new.get_mut("status").map(Value::take) {
            Some(status) if !status.is_null() => scoped["status"] = status,
            _ => {
                if let Some(m) = scoped.as_object_mut() {
                    m.remove("status");
                }
            }
        }
        scoped
    } else {
        match old.get("status") {
            Some(status) => new["status"] = status.clone(),
            None => {
                if let Some(m) = new.as_object_mut() {
                    m.remove("status");
                }
            }
        }
        new
    }
}

fn replace(api: &FakeApi, target: &Target, name: &str, object: Value) -> Response {
    let key = key(target, name);
    let mut inner = api.lock();
    let Some(old) = inner.objects.get(&key).cloned() else {
        return status(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", target.resource),
        );
    };
    if let Some(rv) = rv_of(&object)
        && Some(rv) != rv_of(&old)
    {
        return conflict(&target.resource, name);
    }
    let new = scope_write(target, &old, object);
    if let Err(r) = api.validate(&target.resource, &new) {
        return r;
    }
    let stored = api.commit(&mut inner, &key, Some(&old), new);
    axum::Json(stored).into_response()
}

fn patch(
    api: &FakeApi,
    target: &Target,
    name: &str,
    query: &HashMap<String, String>,
    content_type: &str,
    body: &Bytes,
) -> Response {
    let key = key(target, name);
    let mut inner = api.lock();
    let old = inner.objects.get(&key).cloned();
    let content_type = content_type.split(';').next().unwrap_or("").trim();
    let patched = match content_type {
        "application/apply-patch+yaml" => {
            let applied: Value = match serde_json::from_slice(body)
                .or_else(|_| serde_yaml::from_slice::<Value>(body))
            {
                Ok(v) => v,
                Err(e) => return status(400, "BadRequest", e.to_string()),
            };
            let Some(manager) = query.get("fieldManager").filter(|m| !m.is_empty()) else {
                return status(422, "Invalid", "fieldManager is required for apply");
            };
            let on_status = target.subresource.as_deref() == Some("status");
            // As the API server does, a resourceVersion in the applied object is a precondition.
            if let (Some(old), Some(rv)) = (&old, rv_of(&applied))
                && Some(rv) != rv_of(old)
            {
                return conflict(&target.resource, name);
            }
            let base = match &old {
                Some(old) => old.clone(),
                None if !on_status => {
                    drop(inner);
                    let created = create(api, target, applied.clone());
                    if created.status() == StatusCode::CREATED {
                        let mut inner = api.lock();
                        let mut owned = BTreeSet::new();
                        leaves(&apply_scope(&applied), &mut Vec::new(), &mut owned);
                        inner
                            .managed
                            .entry(key)
                            .or_default()
                            .insert((manager.clone(), false), owned);
                    }
                    return created;
                }
                None => {
                    return status(
                        404,
                        "NotFound",
                        format!("{} \"{name}\" not found", target.resource),
                    );
                }
            };
            let mut owned = BTreeSet::new();
            let scope = apply_scope(&applied);
            leaves(&scope, &mut Vec::new(), &mut owned);
            let slot = (manager.clone(), on_status);
            let managers = inner.managed.entry(key.clone()).or_default();
            let previous = managers.get(&slot).cloned().unwrap_or_default();
            let mut result = base;
            for path in previous.difference(&owned) {
                let others_own = managers
                    .iter()
                    .any(|((m, _), paths)| m != manager && paths.contains(path));
                if !others_own {
                    remove_path(&mut result, path);
                }
            }
            prune_empty(&mut result);
            deep_merge(&mut result, &scope);
            // Other managers lose the fields this apply takes over (force).
            for ((m, _), paths) in managers.iter_mut() {
                if m != manager {
                    for path in &owned {
                        paths.remove(path);
                    }
                }
            }
            managers.insert(slot, owned);
            result
        }
        "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
            let Some(old) = &old else {
                return status(
                    404,
                    "NotFound",
                    format!("{} \"{name}\" not found", target.resource),
                );
            };
            let patch: Value = match serde_json::from_slice(body) {
                Ok(v) => v,
                Err(e) => return status(400, "BadRequest", e.to_string()),
            };
            if let Some(rv) = rv_of(&patch)
                && Some(rv) != rv_of(old)
            {
                return conflict(&target.resource, name);
            }
            let mut result = old.clone();
            json_patch::merge(&mut result, &patch);
            result
        }
        "application/json-patch+json" => {
            let Some(old) = &old else {
                return status(
                    404,
                    "NotFound",
                    format!("{} \"{name}\" not found", target.resource),
                );
            };
            let ops: Vec<json_patch::PatchOperation> = match serde_json::from_slice(body) {
                Ok(v) => v,
                Err(e) => return status(400, "BadRequest", e.to_string()),
            };
            let mut result = old.clone();
            // Like the apiserver, a `test` for null passes on a missing path.
            let ops: Vec<json_patch::PatchOperation> = ops
                .into_iter()
                .filter(|op| match op {
                    json_patch::PatchOperation::Test(t) => {
                        !(t.value.is_null() && result.pointer(t.path.as_str()).is_none())
                    }
                    _ => true,
                })
                .collect();
            if let Err(e) = json_patch::patch(&mut result, &ops) {
                return status(422, "Invalid", e.to_string());
            }
            result
        }
        other => return status(415, "UnsupportedMediaType", format!("content type {other}")),
    };
    let Some(old) = old else {
        return status(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", target.resource),
        );
    };
    let new = scope_write(target, &old, patched);
    if let Err(r) = api.validate(&target.resource, &new) {
        return r;
    }
    let stored = api.commit(&mut inner, &key, Some(&old), new);
    axum::Json(stored).into_response()
}

/// The grace period a DELETE asks for: `gracePeriodSeconds` in the DeleteOptions body or the
/// query.
fn asked_grace(query: &HashMap<String, String>, body: &Bytes) -> Option<i64> {
    let from_body = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|options| options.get("gracePeriodSeconds").and_then(Value::as_i64));
    from_body.or_else(|| query.get("gracePeriodSeconds").and_then(|v| v.parse().ok()))
}

/// The seconds of a pod's graceful deletion, as the API server's pod strategy decides: asked
/// for, else `spec.terminationGracePeriodSeconds` (defaulted to 30); 0 for a pod that was never
/// scheduled or has already finished.
fn pod_grace(pod: &Value, asked: Option<i64>) -> i64 {
    let period = asked.unwrap_or_else(|| {
        pod.pointer("/spec/terminationGracePeriodSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(30)
    });
    let scheduled = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    let finished = matches!(
        pod.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    );
    if !scheduled || finished {
        0
    } else if period < 0 {
        1
    } else {
        period
    }
}

fn parse_time(value: Option<&Value>) -> Option<DateTime<Utc>> {
    value
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

fn delete(
    api: &FakeApi,
    target: &Target,
    name: &str,
    query: &HashMap<String, String>,
    body: &Bytes,
) -> Response {
    let key = key(target, name);
    let mut inner = api.lock();
    let Some(old) = inner.objects.get(&key).cloned() else {
        return status(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", target.resource),
        );
    };
    // Pods are deleted gracefully: the first DELETE gives the kubelet its grace period (it stops
    // the containers meanwhile), the kubelet's final DELETE with grace 0 removes the pod.
    if target.resource == "pods" {
        let asked = asked_grace(query, body);
        let current = old
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64);
        let deleting = old.pointer("/metadata/deletionTimestamp").is_some();
        let marked_for = |period: i64, at: DateTime<Utc>| {
            let mut marked = old.clone();
            marked["metadata"]["deletionTimestamp"] = json!(rfc3339(at));
            marked["metadata"]["deletionGracePeriodSeconds"] = json!(period);
            marked
        };
        let graceful = match (deleting, current) {
            // Already deleting: only a shorter grace period changes anything.
            (true, Some(current)) if current > 0 => match asked {
                Some(period) if period < current => {
                    let at = parse_time(old.pointer("/metadata/deletionTimestamp"))
                        .unwrap_or_else(|| api.now())
                        - chrono::Duration::seconds(current)
                        + chrono::Duration::seconds(period.max(0));
                    Some(marked_for(period.max(0), at))
                }
                _ => return axum::Json(old).into_response(),
            },
            (true, _) => None,
            (false, _) => match pod_grace(&old, asked) {
                0 => None,
                period => {
                    let mut marked =
                        marked_for(period, api.now() + chrono::Duration::seconds(period));
                    let generation = old
                        .pointer("/metadata/generation")
                        .and_then(Value::as_i64)
                        .unwrap_or(1);
                    marked["metadata"]["generation"] = json!(generation + 1);
                    Some(marked)
                }
            },
        };
        if let Some(mut marked) = graceful.filter(|m| {
            m.pointer("/metadata/deletionGracePeriodSeconds")
                .and_then(Value::as_i64)
                .is_some_and(|p| p > 0)
        }) {
            inner.rv += 1;
            marked["metadata"]["resourceVersion"] = json!(inner.rv.to_string());
            inner.objects.insert(key.clone(), marked.clone());
            api.publish(&mut inner, &key.resource, "MODIFIED", marked.clone());
            return axum::Json(marked).into_response();
        }
    }
    let has_finalizers = old
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty());
    if has_finalizers {
        if old.pointer("/metadata/deletionTimestamp").is_some() {
            return axum::Json(old).into_response();
        }
        let mut marked = old.clone();
        marked["metadata"]["deletionTimestamp"] = json!(rfc3339(api.now()));
        marked["metadata"]["deletionGracePeriodSeconds"] = json!(0);
        inner.rv += 1;
        marked["metadata"]["resourceVersion"] = json!(inner.rv.to_string());
        inner.objects.insert(key.clone(), marked.clone());
        api.publish(&mut inner, &key.resource, "MODIFIED", marked.clone());
        return (StatusCode::ACCEPTED, axum::Json(marked)).into_response();
    }
    inner.objects.remove(&key);
    inner.managed.remove(&key);
    inner.rv += 1;
    let mut gone = old;
    gone["metadata"]["resourceVersion"] = json!(inner.rv.to_string());
    api.publish(&mut inner, &key.resource, "DELETED", gone.clone());
    axum::Json(gone).into_response()
}

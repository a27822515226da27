//! A real OpenID Connect provider for login tests: `tests/oidc/provider.mjs` (npm
//! `oidc-provider`, a certified implementation) run with Node on a free loopback port.
//!
//! Standard library only, so the API's tests include this file too (`#[path]`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The client Conclave is at the test provider, and its secret.
pub const CLIENT_ID: &str = "conclave";
/// The test client's secret.
pub const CLIENT_SECRET: &str = "conclave-test-client-secret";

/// A running test provider; stopped when dropped.
#[derive(Debug)]
pub struct OidcProvider {
    child: Child,
    config: PathBuf,
    /// Its issuer URL, `http://127.0.0.1:PORT`.
    pub issuer: String,
}

/// A user of the test provider: login, password and the groups claim.
#[derive(Debug, Clone)]
pub struct TestUser {
    /// The login name (and `sub`).
    pub login: &'static str,
    /// The password on the provider's login page.
    pub password: &'static str,
    /// The display name (`name`).
    pub name: &'static str,
    /// The groups (`groups` claim).
    pub groups: &'static [&'static str],
}

fn json_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_list(items: &[&str]) -> String {
    format!(
        "[{}]",
        items
            .iter()
            .map(|item| json_string(item))
            .collect::<Vec<_>>()
            .join(",")
    )
}

/// The folder of the provider script.
fn script_dir() -> PathBuf {
    // Both crates that use this (api, tests) sit one level below the workspace root.
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("BUG: a crate folder has a parent")
        .join("tests/oidc")
}

impl OidcProvider {
    /// Starts the provider with one confidential client whose redirect URI is
    /// `{public_url}/api/v1/auth/oidc/callback`, and `users`.
    ///
    /// # Panics
    /// When Node or the npm packages are missing (naming what installs them), or the provider
    /// does not come up within 30 s.
    pub fn start(public_url: &str, users: &[TestUser]) -> Self {
        Self::launch(public_url, users, true)
    }

    /// Like [`OidcProvider::start`], for a client the provider gives no refresh tokens (as
    /// Entra ID without `offline_access`).
    pub fn start_without_refresh_tokens(public_url: &str, users: &[TestUser]) -> Self {
        Self::launch(public_url, users, false)
    }

    fn launch(public_url: &str, users: &[TestUser], refresh: bool) -> Self {
        let dir = script_dir();
        assert!(
            dir.join("node_modules/oidc-provider/package.json")
                .is_file(),
            "the test OpenID Connect provider's npm packages are missing: run `npm ci` in {} (scripts/test.sh does)",
            dir.display()
        );
        let users = users
            .iter()
            .map(|user| {
                format!(
                    "{}: {{\"password\": {}, \"claims\": {{\"name\": {}, \"email\": {}, \"zoneinfo\": \"Europe/Berlin\", \"groups\": {}}}}}",
                    json_string(user.login),
                    json_string(user.password),
                    json_string(user.name),
                    json_string(&format!("{}@example.org", user.login)),
                    json_list(user.groups)
                )
            })
            .collect::<Vec<_>>()
            .join(",");
        let config = format!(
            "{{\"clients\": [{{\"client_id\": {}, \"client_secret\": {}, \"redirect_uris\": [{}], \"post_logout_redirect_uris\": [{}], \"grant_types\": {}}}], \"users\": {{{users}}}}}",
            json_string(CLIENT_ID),
            json_string(CLIENT_SECRET),
            json_string(&format!("{public_url}/api/v1/auth/oidc/callback")),
            json_string(&format!("{public_url}/login")),
            if refresh {
                json_list(&["authorization_code", "refresh_token"])
            } else {
                json_list(&["authorization_code"])
            },
        );
        let path = std::env::temp_dir().join(format!(
            "conclave-oidc-{}-{}.json",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        ));
        std::fs::write(&path, config).expect("writing the provider's configuration");
        let mut child = Command::new("node")
            .arg(dir.join("provider.mjs"))
            .arg(&path)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|error| {
                panic!("starting node (Node.js 20 or newer is needed for the test OpenID Connect provider): {error}")
            });
        let stdout = child.stdout.take().expect("BUG: stdout is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
        let issuer = line
            .split("\"issuer\":\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .map(str::to_owned);
        let Some(issuer) = issuer else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the test OpenID Connect provider did not start within 30 s (printed {line:?}); see its stderr above"
            );
        };
        Self {
            child,
            config: path,
            issuer,
        }
    }

    /// The provider's port.
    fn port(&self) -> u16 {
        self.issuer
            .rsplit(':')
            .next()
            .and_then(|port| port.parse().ok())
            .expect("BUG: the issuer names a port")
    }

    /// POSTs a JSON body to a test control and returns the answer's body; panics unless 200.
    fn control(&self, path: &str, body: &str) -> String {
        let port = self.port();
        let mut stream =
            TcpStream::connect(("127.0.0.1", port)).expect("the test provider answers");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("a read timeout");
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream
            .write_all(request.as_bytes())
            .expect("sending to the test provider");
        let mut answer = String::new();
        stream
            .read_to_string(&mut answer)
            .expect("the test provider's answer");
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "the test provider refused {path}: {answer}"
        );
        answer
            .split("\r\n\r\n")
            .nth(1)
            .unwrap_or_default()
            .to_owned()
    }

    /// Rotates the signing key: a new one signs from now on and is the only one published.
    pub fn rotate_key(&self) {
        self.control("/test/rotate", "{}");
    }

    /// Disables (or enables again) a user: a disabled one cannot log in, and its refresh
    /// tokens are refused.
    pub fn set_disabled(&self, login: &str, disabled: bool) {
        self.control(
            &format!("/test/users/{login}"),
            &format!("{{\"disabled\": {disabled}}}"),
        );
    }

    /// Replaces a user's groups.
    pub fn set_groups(&self, login: &str, groups: &[&str]) {
        self.control(
            &format!("/test/users/{login}"),
            &format!("{{\"claims\": {{\"groups\": {}}}}}", json_list(groups)),
        );
    }

    /// Makes the token endpoint answer wrongly signed-over ID tokens from now on: `nonce` (a
    /// wrong nonce), `expired`, `audience` (another client's), `unknownKey` (signed with a key
    /// the provider does not publish); `None` for correct ones again.
    pub fn tamper_id_tokens(&self, how: Option<&str>) {
        let body = match how {
            Some(how) => format!("{{\"tamper\": {}}}", json_string(how)),
            None => "{\"tamper\": null}".to_owned(),
        };
        self.control("/test/id-token", &body);
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.config);
    }
}

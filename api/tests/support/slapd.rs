//! A real OpenLDAP server for the LDAP login tests: Debian's `slapd`, started unprivileged on
//! free loopback ports with a configuration folder of its own (cn=config built with
//! `slapadd -n0`), LDAPS and StartTLS with a CA made for the test (openssl CLI), and a small
//! directory loaded over LDAP (so the memberof overlay fills in `memberOf`):
//!
//! - `alice` (Alice Liddell): in `staff` only (a group no level is given for); her
//!   `description` holds a time zone (`Europe/Paris`), carol's something that is none;
//! - `bob` (Bob Builder): in `video-moderators` and `staff`;
//! - `carol` (Carol Danvers): in `video-admins`;
//! - `dave`: marked disabled (`employeeType: disabled`, matched by [`DISABLED_FILTER`]);
//! - the service account `cn=conclave,ou=services,dc=example,dc=org`.
//!
//! A missing `slapd` or `openssl` fails the test loudly; `scripts/test.sh` installs them.

#![allow(dead_code, clippy::unwrap_used)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BASE: &str = "dc=example,dc=org";
pub const PEOPLE: &str = "ou=people,dc=example,dc=org";
pub const GROUPS: &str = "ou=groups,dc=example,dc=org";
pub const ROOT_DN: &str = "cn=admin,dc=example,dc=org";
pub const ROOT_PASSWORD: &str = "root-secret";
pub const SERVICE_DN: &str = "cn=conclave,ou=services,dc=example,dc=org";
pub const SERVICE_PASSWORD: &str = "service-secret";
pub const ADMINS: &str = "cn=video-admins,ou=groups,dc=example,dc=org";
pub const MODERATORS_PLUS: &str = "cn=video-moderators-plus,ou=groups,dc=example,dc=org";
pub const MODERATORS: &str = "cn=video-moderators,ou=groups,dc=example,dc=org";
pub const STAFF: &str = "cn=staff,ou=groups,dc=example,dc=org";
pub const DISABLED_FILTER: &str = "(employeeType=disabled)";

/// The password of `uid=NAME` in the test directory.
pub fn password_of(name: &str) -> String {
    format!("{name}-directory-password")
}

/// A running slapd; stopped when dropped.
pub struct Slapd {
    child: Child,
    dir: tempfile::TempDir,
    /// The plain port (StartTLS).
    pub ldap_port: u16,
    /// The LDAPS port.
    pub ldaps_port: u16,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn run(program: &str, args: &[&str], dir: &Path) {
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|err| {
            panic!("{program} is required for the LDAP tests ({err}); scripts/test.sh installs slapd, ldap-utils and openssl")
        });
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn run_with_input(program: &str, args: &[&str], input: &str) {
    use std::io::Write;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| {
            panic!("{program} is required for the LDAP tests ({err}); scripts/test.sh installs ldap-utils")
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{program} failed on\n{input}\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Makes a CA (`NAME.pem`, `NAME.key`) in `dir`.
fn make_ca(dir: &Path, name: &str) {
    run(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-subj",
            &format!("/CN=Conclave test {name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
        dir,
    );
}

fn person(name: &str, full: &str, extra: &str) -> String {
    let surname = full.split(' ').next_back().unwrap();
    format!(
        "dn: uid={name},{PEOPLE}\nobjectClass: inetOrgPerson\nuid: {name}\ncn: {full}\nsn: {surname}\n\
         displayName: {full}\nmail: {name}@example.org\nuserPassword: {}\n{extra}\n",
        password_of(name)
    )
}

fn group(dn: &str, members: &[&str]) -> String {
    let cn = dn.split(',').next().unwrap().trim_start_matches("cn=");
    let mut ldif = format!("dn: {dn}\nobjectClass: groupOfNames\ncn: {cn}\n");
    for member in members {
        ldif.push_str(&format!("member: uid={member},{PEOPLE}\n"));
    }
    ldif.push('\n');
    ldif
}

impl Slapd {
    /// Starts slapd with the test directory.
    pub fn start() -> Slapd {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path();
        make_ca(path, "ca");
        make_ca(path, "other-ca");
        std::fs::write(
            path.join("server.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        run(
            "openssl",
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=localhost",
            ],
            path,
        );
        run(
            "openssl",
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.pem",
                "-days",
                "2",
                "-extfile",
                "server.ext",
            ],
            path,
        );
        let config_dir = path.join("slapd.d");
        let data_dir = path.join("data");
        std::fs::create_dir_all(&config_dir).unwrap();
        std::fs::create_dir_all(&data_dir).unwrap();
        let p = path.display();
        let config = format!(
            "dn: cn=config\nobjectClass: olcGlobal\ncn: config\nolcPidFile: {p}/slapd.pid\n\
             olcTLSCACertificateFile: {p}/ca.pem\nolcTLSCertificateFile: {p}/server.pem\n\
             olcTLSCertificateKeyFile: {p}/server.key\n\n\
             dn: cn=module{{0}},cn=config\nobjectClass: olcModuleList\ncn: module{{0}}\n\
             olcModulePath: /usr/lib/ldap\nolcModuleLoad: back_mdb\nolcModuleLoad: memberof\n\n\
             dn: cn=schema,cn=config\nobjectClass: olcSchemaConfig\ncn: schema\n\n\
             include: file:///etc/ldap/schema/core.ldif\n\n\
             include: file:///etc/ldap/schema/cosine.ldif\n\n\
             include: file:///etc/ldap/schema/inetorgperson.ldif\n\n\
             dn: olcDatabase={{-1}}frontend,cn=config\nobjectClass: olcDatabaseConfig\n\
             objectClass: olcFrontendConfig\nolcDatabase: {{-1}}frontend\nolcSizeLimit: 500\n\n\
             dn: olcDatabase={{0}}config,cn=config\nobjectClass: olcDatabaseConfig\n\
             olcDatabase: {{0}}config\nolcAccess: {{0}}to * by * none\n\n\
             dn: olcDatabase={{1}}mdb,cn=config\nobjectClass: olcDatabaseConfig\n\
             objectClass: olcMdbConfig\nolcDatabase: {{1}}mdb\nolcSuffix: {BASE}\n\
             olcRootDN: {ROOT_DN}\nolcRootPW: {ROOT_PASSWORD}\nolcDbDirectory: {p}/data\n\
             olcDbMaxSize: 33554432\n\
             olcAccess: {{0}}to attrs=userPassword by anonymous auth by * none\n\
             olcAccess: {{1}}to * by dn.exact=\"{SERVICE_DN}\" read by self read by * none\n\n\
             dn: olcOverlay={{0}}memberof,olcDatabase={{1}}mdb,cn=config\n\
             objectClass: olcOverlayConfig\nobjectClass: olcMemberOf\nolcOverlay: {{0}}memberof\n\
             olcMemberOfGroupOC: groupOfNames\nolcMemberOfMemberAD: member\n\
             olcMemberOfMemberOfAD: memberOf\n"
        );
        std::fs::write(path.join("config.ldif"), config).unwrap();
        run(
            "/usr/sbin/slapadd",
            &["-n", "0", "-F", "slapd.d", "-l", "config.ldif"],
            path,
        );
        let ldap_port = free_port();
        let ldaps_port = free_port();
        let log = std::fs::File::create(path.join("slapd.log")).unwrap();
        let child = Command::new("/usr/sbin/slapd")
            .args([
                "-h",
                &format!("ldap://127.0.0.1:{ldap_port}/ ldaps://127.0.0.1:{ldaps_port}/"),
                "-F",
                config_dir.to_str().unwrap(),
                // In the foreground (any -d keeps it attached), logging only what goes wrong.
                "-d",
                "0",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|err| {
                panic!("/usr/sbin/slapd is required for the LDAP tests ({err}); scripts/test.sh installs it")
            });
        let mut slapd = Slapd {
            child,
            dir,
            ldap_port,
            ldaps_port,
        };
        slapd.wait_until_listening();
        slapd.load();
        slapd
    }

    /// Waits (bounded) until both ports accept connections; fails with slapd's log otherwise.
    fn wait_until_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("slapd exited ({status}) at start:\n{}", self.log());
            }
            let up = |port| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
            if up(self.ldap_port) && up(self.ldaps_port) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "slapd did not listen within 20 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn load(&self) {
        let mut ldif = format!(
            "dn: {BASE}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n\n\
             dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people\n\n\
             dn: {GROUPS}\nobjectClass: organizationalUnit\nou: groups\n\n\
             dn: ou=services,{BASE}\nobjectClass: organizationalUnit\nou: services\n\n\
             dn: {SERVICE_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n\
             cn: conclave\nuserPassword: {SERVICE_PASSWORD}\n\n"
        );
        ldif.push_str(&person(
            "alice",
            "Alice Liddell",
            "description: Europe/Paris\n",
        ));
        ldif.push_str(&person("bob", "Bob Builder", ""));
        ldif.push_str(&person(
            "carol",
            "Carol Danvers",
            "description: Not/AZone\n",
        ));
        ldif.push_str(&person("dave", "Dave Disabled", "employeeType: disabled\n"));
        ldif.push_str(&group(ADMINS, &["carol"]));
        ldif.push_str(&group(MODERATORS, &["bob"]));
        ldif.push_str(&group(STAFF, &["alice", "bob"]));
        self.ldap_tool("ldapadd", &ldif);
    }

    fn ldap_tool(&self, tool: &str, ldif: &str) {
        let url = format!("ldap://127.0.0.1:{}", self.ldap_port);
        run_with_input(
            tool,
            &["-x", "-H", &url, "-D", ROOT_DN, "-w", ROOT_PASSWORD],
            ldif,
        );
    }

    /// Applies an LDIF change (`changetype: modify`, `delete`, …) as the directory's root.
    pub fn modify(&self, ldif: &str) {
        self.ldap_tool("ldapmodify", ldif);
    }

    /// Adds `uid=NAME` to the group `group_dn`.
    pub fn add_to_group(&self, group_dn: &str, name: &str) {
        self.modify(&format!(
            "dn: {group_dn}\nchangetype: modify\nadd: member\nmember: uid={name},{PEOPLE}\n"
        ));
    }

    /// Removes `uid=NAME` from the group `group_dn`.
    pub fn remove_from_group(&self, group_dn: &str, name: &str) {
        self.modify(&format!(
            "dn: {group_dn}\nchangetype: modify\ndelete: member\nmember: uid={name},{PEOPLE}\n"
        ));
    }

    /// The CA that signed the server's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A CA that signed nothing this server shows.
    pub fn other_ca_file(&self) -> PathBuf {
        self.dir.path().join("other-ca.pem")
    }

    pub fn ldaps_url(&self) -> String {
        format!("ldaps://127.0.0.1:{}", self.ldaps_port)
    }

    pub fn ldap_url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.ldap_port)
    }

    /// A file with the service account's password.
    pub fn service_password_file(&self) -> PathBuf {
        let path = self.dir.path().join("bind-password");
        std::fs::write(&path, format!("{SERVICE_PASSWORD}\n")).unwrap();
        path
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("slapd.log")).unwrap_or_default()
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

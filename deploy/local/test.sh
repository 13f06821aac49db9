#!/usr/bin/env bash
# Runs every check and every test: formatting, lints, the protobuf lint, unit, integration and
# end-to-end tests (real nats-server, real HTTP servers on loopback). This is the command CI runs.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

deploy/local/setup.sh
export PATH="$root/.tools/bin:$PATH"

echo "== cargo fmt" >&2
cargo fmt --all -- --check
echo "== cargo clippy" >&2
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== buf lint" >&2
buf lint
echo "== build (the end-to-end tests run the real binary)" >&2
cargo build --workspace --bins --locked
echo "== tests" >&2
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi

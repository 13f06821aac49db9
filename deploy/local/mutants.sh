#!/usr/bin/env bash
# Mutation check of the code behind igrelay's promises (docs/testing.md): cargo-mutants changes
# one thing at a time in the files below (a condition negated, a value replaced, a body emptied)
# and runs the tests of the crate; a mutant the tests do not catch ("missed") is a promise no test
# holds. Slow (each mutant rebuilds and retests its crate): run it on a quiet machine.
#
#   deploy/local/mutants.sh              # every file below
#   deploy/local/mutants.sh -- --list    # extra arguments go to cargo mutants
#
# Results: mutants.out/ (missed.txt lists the mutants no test caught).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

deploy/local/setup.sh
export PATH="$root/.tools/bin:$PATH"

if ! cargo mutants --version >/dev/null 2>&1; then
  echo "== installing cargo-mutants" >&2
  cargo install --locked cargo-mutants
fi

files=(
  crates/dispatch/src/process.rs
  crates/dispatch/src/validate.rs
  crates/dispatch/src/limiter.rs
  crates/dispatch/src/lease.rs
  crates/gateway/src/auth.rs
  crates/core/src/webhook.rs
  crates/ingest/src/parse.rs
  crates/accounts/src/lib.rs
)
args=()
for f in "${files[@]}"; do
  [[ -f "$f" ]] || { echo "mutants.sh: $f does not exist (moved?); update the list" >&2; exit 2; }
  args+=(--file "$f")
done
[[ "${1:-}" == "--" ]] && shift

# The tests start real nats-server processes: keep them to one job so timing-sensitive tests
# are not starved; a generous timeout (multiplier of the unmutated run) for the slow ones.
tool=()
cargo nextest --version >/dev/null 2>&1 && tool=(--test-tool nextest)
echo "== cargo mutants on ${#files[@]} files" >&2
cargo mutants "${args[@]}" "${tool[@]}" --jobs 1 --timeout-multiplier 3 "$@"

#!/usr/bin/env bash
# Runs igrelay locally: every service in one process, the Graph API emulator as Meta, and a
# nats-server it starts itself. Extra arguments go to `igrelay dev` (try --help).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
deploy/local/setup.sh
export PATH="$root/.tools/bin:$PATH"
exec cargo run --locked -p igrelay -- dev "$@"

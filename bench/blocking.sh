#!/usr/bin/env bash
# Many blocking queries held at once: praetor's RSS with them all held, and
# write-to-wake latency for writes to random watched keys.
#
#   bench/blocking.sh [KEYS] [WRITES]     (defaults 10000 and 1000)
#
# Builds praetor and bench/blocking in release mode (into $CARGO_TARGET_DIR,
# default target/), starts `praetor agent -dev` on a free loopback port (DNS
# off) with the open-file limit raised, runs bench-blocking against it (see
# bench/blocking/src/main.rs), and stops the agent.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
KEYS=${1:-10000}
WRITES=${2:-1000}
target=${CARGO_TARGET_DIR:-$root/target}

log() { echo "==> $*" >&2; }

# One socket per query on each side, plus room for the rest.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
if (($(ulimit -n) < KEYS + 1000)); then
    log "open-file limit $(ulimit -n) is too low for $KEYS queries"
    exit 1
fi

log "building praetor and bench-blocking (release, $target)"
(cd "$root" && CARGO_TARGET_DIR=$target cargo build --release -q -p praetor -p bench-blocking)

agent_pid=
cleanup() {
    if [[ -n "$agent_pid" ]]; then
        kill "$agent_pid" 2>/dev/null || true
        wait "$agent_pid" 2>/dev/null || true
    fi
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
agent_log=$(mktemp /tmp/praetor-blocking-bench.XXXXXX.log)
"$target/release/praetor" agent -dev -http-port "$port" -dns-port -1 -node bench >"$agent_log" 2>&1 &
agent_pid=$!
for _ in $(seq 1 1000); do
    curl -sf -o /dev/null "http://127.0.0.1:$port/v1/status/leader" && break
    sleep 0.01
done
log "praetor on :$port (pid $agent_pid), open-file limit $(ulimit -n), load $(cut -d' ' -f1-3 /proc/loadavg), agent log $agent_log"
"$target/release/bench-blocking" "127.0.0.1:$port" "$agent_pid" "$KEYS" "$WRITES"

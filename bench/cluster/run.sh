#!/usr/bin/env bash
# Cluster benchmark (issue 7): three praetor servers with CLIENTS idle
# client agents in one LAN pool, against as many real serf agents. See the
# docstring of bench/cluster/pool.py for what is measured.
#
#   PRAETOR=target/release/praetor bench/cluster/run.sh
#
# Builds the release binary when PRAETOR is unset. Prints a JSON summary;
# record it in bench/RESULTS.md by hand.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
if [[ -z "${PRAETOR:-}" ]]; then
    (cd "$root" && cargo build --release -p praetor)
    PRAETOR="$root/target/release/praetor"
fi
command -v serf >/dev/null || { echo "serf is not installed (apt-get install serf)" >&2; exit 1; }
command -v dig >/dev/null || { echo "dig is not installed (apt-get install bind9-dnsutils)" >&2; exit 1; }
# Hundreds of agents each hold a few sockets and threads.
ulimit -n 65536 2>/dev/null || true
venv="$root/target/test-venv"
py="$venv/bin/python"
[[ -x "$py" ]] || py=python3
PRAETOR="$PRAETOR" exec "$py" "$here/pool.py"

#!/usr/bin/env bash
# Discovery benchmarks (issue 3): DNS service lookups per second (dnsperf)
# and /v1/health/service?passing requests per second (wrk) over a catalog of
# 1,000 services x 10 instances, then 5,000 HTTP/TCP checks at a 10 s
# interval: the agent's CPU and RSS.
#
#   bench/discovery.sh
#
# Builds praetor in release mode into $CARGO_TARGET_DIR (default target/),
# installs dnsperf and wrk if missing, stops everything it started.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
target=${CARGO_TARGET_DIR:-$root/target}
SERVICES=1000 INSTANCES=10 NODES=500 CHECKS=5000

log() { echo "==> $*" >&2; }
for tool in dnsperf wrk; do
    command -v "$tool" >/dev/null || { apt-get update -qq && apt-get install -y -qq "$tool" >/dev/null; }
done
(cd "$root" && CARGO_TARGET_DIR=$target cargo build --release -q -p praetor)
bin="$target/release/praetor"
work=$(mktemp -d /tmp/praetor-discovery.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_ready() { for _ in $(seq 1 500); do curl -sf -o /dev/null "http://127.0.0.1:$1/v1/status/leader" && return; sleep 0.01; done; exit 1; }

http=$(free_port); dns=$(free_port)
"$bin" agent -dev -node bench -http-port "$http" -dns-port "$dns" -log-level warn >"$work/agent.log" 2>&1 &
agent=$!; pids+=("$agent"); wait_ready "$http"
log "agent on :$http, DNS :$dns (pid $agent), load $(cut -d' ' -f1-3 /proc/loadavg)"

start=$(date +%s.%N)
python3 "$here/discovery_load.py" fill "$http" "$SERVICES" "$INSTANCES" "$NODES"
log "catalog: $SERVICES services x $INSTANCES instances on $NODES nodes in $(echo "$(date +%s.%N) - $start" | bc) s; RSS $(awk '/VmRSS/{print $2/1024 " MB"}' /proc/$agent/status)"

echo "== correctness sample"
dig @127.0.0.1 -p "$dns" +short svc-42.service.consul A | sort
dig @127.0.0.1 -p "$dns" +short svc-42.service.consul SRV | wc -l

python3 "$here/discovery_load.py" queries "$work/queries.txt" "$SERVICES" 100000
echo "== dnsperf (20 s, 4 clients, 2 threads)"
dnsperf -s 127.0.0.1 -p "$dns" -d "$work/queries.txt" -l 20 -c 4 -T 2 -q 200 2>&1 | grep -E "Queries sent|Queries completed|Queries lost|Response codes|Queries per second|Average Latency|Latency StdDev"

echo "== wrk /v1/health/service/<svc>?passing (64 connections, 2 threads, 15 s)"
wrk -t2 -c64 -d15s --latency -s "$here/wrk/health.lua" "http://127.0.0.1:$http" -- "$SERVICES" | grep -E "Requests/sec|99%|Non-2xx|Socket errors|Latency  "

echo "== $CHECKS checks at 10 s interval"
target_http=$(free_port)
"$bin" agent -dev -node target -http-port "$target_http" -dns-port -1 -log-level warn >"$work/target.log" 2>&1 &
pids+=("$!"); wait_ready "$target_http"
log "RSS before checks: $(awk '/VmRSS/{print $2/1024 " MB"}' /proc/$agent/status)"
python3 "$here/discovery_load.py" checks "$http" "$CHECKS" "127.0.0.1:$target_http" "127.0.0.1:$target_http" 10s
sleep 12   # let every check pass its random first-run stagger
python3 "$here/discovery_load.py" sample "$agent" 60
curl -s "http://127.0.0.1:$http/v1/agent/checks" | python3 -c 'import json,sys; c=json.load(sys.stdin); from collections import Counter; print(Counter(v["Status"] for v in c.values()))'

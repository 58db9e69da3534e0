#!/usr/bin/env bash
# KV throughput and latency: praetor's dev agent against etcd, same machine,
# same run.
#
#   bench/kv.sh
#
# Builds praetor in release mode (into $CARGO_TARGET_DIR, default target/),
# starts `praetor agent -dev` on a free loopback port (DNS off), preloads
# $KEYS keys of 256 bytes, and runs wrk ($CONNS keep-alive connections,
# $THREADS threads, $DURATION each) for GET then PUT of random preloaded keys.
# Then the same against etcd (Debian etcd-server, one member on a free
# loopback port, temp data dir, --unsafe-no-fsync to match the in-memory dev
# agent) through its JSON gateway: /v3/kv/range (linearizable, its default,
# and serializable) and /v3/kv/put.
# Also: praetor's RSS after the run and the median of 5 startup times
# (spawn to the first 200 on /v1/status/leader).
#
# Environment: KEYS (1000), DURATION (15s), WARMUP (3s), CONNS (64),
# THREADS (2), PRAETOR (a praetor binary; skips the build), OUT (where wrk's
# output is kept; default a temp dir).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
KEYS=${KEYS:-1000}
DURATION=${DURATION:-15s}
WARMUP=${WARMUP:-3s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
OUT=${OUT:-$(mktemp -d /tmp/praetor-kv-bench.XXXXXX)}
mkdir -p "$OUT"

pids=()
tmpdirs=()
cleanup() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    for dir in "${tmpdirs[@]}"; do
        rm -rf "$dir"
    done
}
trap cleanup EXIT

log() { echo "==> $*" >&2; }

need() {
    local bin=$1 pkg=$2
    if ! command -v "$bin" >/dev/null; then
        log "installing $pkg"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null
    fi
}
need wrk wrk
need etcd etcd-server
need curl curl
need python3 python3

if [[ -z "${PRAETOR:-}" ]]; then
    target=${CARGO_TARGET_DIR:-$root/target}
    log "building praetor (release, $target)"
    (cd "$root" && CARGO_TARGET_DIR=$target cargo build --release -q -p praetor)
    PRAETOR=$target/release/praetor
fi

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_http() { # URL [curl args...]: until it answers 200, at most 10 s
    local url=$1
    shift
    for _ in $(seq 1 1000); do
        if curl -sf -o /dev/null "$@" "$url"; then
            return 0
        fi
        sleep 0.01
    done
    log "no answer from $url"
    return 1
}

rss_mb() {
    awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"
}

# preload praetor|etcd PORT: KEYS keys bench/k/<i> of 256 bytes, on one
# keep-alive connection, each answer checked.
preload() {
    python3 - "$1" "$2" "$KEYS" <<'EOF'
import base64, http.client, json, sys
kind, port, keys = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
value = b"x" * 256
conn = http.client.HTTPConnection("127.0.0.1", port)
for i in range(keys):
    key = f"bench/k/{i}"
    if kind == "praetor":
        conn.request("PUT", f"/v1/kv/{key}", body=value)
        reply = conn.getresponse()
        body = reply.read()
        ok = reply.status == 200 and body.strip() == b"true"
    else:
        doc = {"key": base64.b64encode(key.encode()).decode(),
               "value": base64.b64encode(value).decode()}
        conn.request("POST", "/v3/kv/put", body=json.dumps(doc),
                     headers={"Content-Type": "application/json"})
        reply = conn.getresponse()
        body = reply.read()
        ok = reply.status == 200 and b"revision" in body
    if not ok:
        sys.exit(f"preload {kind} {key}: {reply.status} {body[:200]!r}")
EOF
}

# run_wrk NAME URL SCRIPT ARGS...: one measured run; prints "req/s p99".
run_wrk() {
    local name=$1 url=$2 script=$3
    shift 3
    wrk -t"$THREADS" -c"$CONNS" -d"$WARMUP" -s "$script" "$url" -- "$@" >"$OUT/$name.warmup.txt"
    echo "load before $name: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/load.txt"
    wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -s "$script" "$url" -- "$@" >"$OUT/$name.txt"
    if grep -q -e "Non-2xx" -e "Socket errors" "$OUT/$name.txt"; then
        log "$name: errors during the run:"
        grep -e "Non-2xx" -e "Socket errors" "$OUT/$name.txt" >&2
    fi
    local rps p99
    rps=$(awk '/^Requests\/sec:/ { print $2 }' "$OUT/$name.txt")
    p99=$(awk '$1 == "99%" { print $2 }' "$OUT/$name.txt")
    echo "$rps $p99"
}

log "load: $(cat /proc/loadavg); output in $OUT"

# --- startup time: spawn to the first 200 on /v1/status/leader, median of 5
startup=$(python3 - "$PRAETOR" <<'EOF'
import http.client, socket, statistics, subprocess, sys, time
binary = sys.argv[1]
times = []
for _ in range(5):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    start = time.perf_counter()
    agent = subprocess.Popen(
        [binary, "agent", "-dev", "-http-port", str(port), "-dns-port", "-1", "-node", "bench"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                conn.request("GET", "/v1/status/leader")
                reply = conn.getresponse()
                reply.read()
                if reply.status == 200:
                    break
            except OSError:
                pass
            if agent.poll() is not None:
                sys.exit("praetor exited during startup")
            time.sleep(0.0002)
        times.append(time.perf_counter() - start)
    finally:
        agent.terminate()
        agent.wait()
print(" ".join(f"{t * 1000:.1f}" for t in sorted(times)), f"median={statistics.median(times) * 1000:.1f}")
EOF
)
log "praetor startup (ms, sorted): $startup"

# --- praetor
port=$(free_port)
"$PRAETOR" agent -dev -http-port "$port" -dns-port -1 -node bench >"$OUT/praetor.log" 2>&1 &
praetor_pid=$!
pids+=("$praetor_pid")
wait_http "http://127.0.0.1:$port/v1/status/leader"
preload praetor "$port"
log "praetor $("$PRAETOR" version | head -1) on :$port (pid $praetor_pid), $KEYS keys preloaded, RSS $(rss_mb "$praetor_pid") MB"
read -r p_get_rps p_get_p99 < <(run_wrk praetor-get "http://127.0.0.1:$port" "$here/wrk/praetor.lua" get "$KEYS")
log "praetor GET: $p_get_rps req/s, p99 $p_get_p99"
read -r p_put_rps p_put_p99 < <(run_wrk praetor-put "http://127.0.0.1:$port" "$here/wrk/praetor.lua" put "$KEYS")
log "praetor PUT: $p_put_rps req/s, p99 $p_put_p99"
p_rss=$(rss_mb "$praetor_pid")
log "praetor RSS after the run: $p_rss MB"
kill "$praetor_pid"
wait "$praetor_pid" 2>/dev/null || true

# --- etcd
etcd_dir=$(mktemp -d /tmp/praetor-kv-bench-etcd.XXXXXX)
tmpdirs+=("$etcd_dir")
eport=$(free_port)
pport=$(free_port)
etcd --name bench --data-dir "$etcd_dir" --unsafe-no-fsync \
    --listen-client-urls "http://127.0.0.1:$eport" --advertise-client-urls "http://127.0.0.1:$eport" \
    --listen-peer-urls "http://127.0.0.1:$pport" --initial-advertise-peer-urls "http://127.0.0.1:$pport" \
    --initial-cluster "bench=http://127.0.0.1:$pport" --log-level warn >"$OUT/etcd.log" 2>&1 &
etcd_pid=$!
pids+=("$etcd_pid")
wait_http "http://127.0.0.1:$eport/v3/kv/range" -X POST -d '{"key":"AA=="}'
preload etcd "$eport"
log "$(etcd --version | head -1) on :$eport (pid $etcd_pid), $KEYS keys preloaded"
read -r e_get_rps e_get_p99 < <(run_wrk etcd-get "http://127.0.0.1:$eport" "$here/wrk/etcd.lua" range "$KEYS")
log "etcd range: $e_get_rps req/s, p99 $e_get_p99"
read -r e_sget_rps e_sget_p99 < <(run_wrk etcd-get-serializable "http://127.0.0.1:$eport" "$here/wrk/etcd.lua" srange "$KEYS")
log "etcd serializable range: $e_sget_rps req/s, p99 $e_sget_p99"
read -r e_put_rps e_put_p99 < <(run_wrk etcd-put "http://127.0.0.1:$eport" "$here/wrk/etcd.lua" put "$KEYS")
log "etcd put: $e_put_rps req/s, p99 $e_put_p99"
e_rss=$(rss_mb "$etcd_pid")

cat <<EOF

| | praetor | etcd (--unsafe-no-fsync) |
|---|---|---|
| GET req/s | $p_get_rps | $e_get_rps |
| GET p99 | $p_get_p99 | $e_get_p99 |
| GET req/s, etcd serializable range | | $e_sget_rps |
| GET p99, etcd serializable range | | $e_sget_p99 |
| PUT req/s | $p_put_rps | $e_put_rps |
| PUT p99 | $p_put_p99 | $e_put_p99 |
| RSS after the run (MB) | $p_rss | $e_rss |

praetor startup, spawn to first 200 on /v1/status/leader (ms, 5 runs sorted): $startup
wrk: $THREADS threads, $CONNS connections, $DURATION per run after a $WARMUP warm-up, $KEYS keys of 256 bytes
$(cat "$OUT/load.txt")
wrk output: $OUT
EOF

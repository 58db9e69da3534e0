#!/usr/bin/env bash
# Raft KV benchmark: praetor (3 servers) against etcd (3 members), side by
# side in one run on this machine. See bench/raft/README.md.
#
#   bench/raft/run.sh                 # etcd, then praetor (3 servers)
#   bench/raft/run.sh --praetor-dev   # praetor as one in-memory dev agent
#                                     # (no Raft, no fsync, no failover: a
#                                     # check of the plumbing, not a result)
#   bench/raft/run.sh --only etcd     # one side only (etcd | praetor)
#
# Per system: populate KEYS keys (VALUE_SIZE bytes), then writes and
# linearizable reads at concurrency 1 (leader) and CONCURRENCY (spread over
# all members, then leader only), WARMUP + DURATION seconds each; then
# FAILOVER_RUNS times: concurrency-1 writes, kvload kill -9s the leader after
# KILL_AFTER s and times the first acknowledged write sent after the kill.
#
# Environment: DURATION (5), WARMUP (1), KEYS (10000), VALUE_SIZE (256),
# CONCURRENCY (64), THREADS (kvload runtime threads, 1), RAFT_MULTIPLIER (1),
# KILL_AFTER (2), FAILOVER_RUNS (3: the killed member is restarted on its
# data dir between runs), ETCD_PORT_BASE (32379: members use BASE, BASE+2, BASE+4
# for clients and the next port for peers), DATA_ROOT (/var/tmp; must not be
# tmpfs, where fsync costs nothing), ETCD_CHECK_PERF (unset; s|m|l|xl adds
# `etcdctl check perf` as a gRPC reference, 60 s), PRAETOR and KVLOAD
# (binaries; both set skips the build), OUT (logs and results; default a
# temp dir), KEEP=1 keeps the data dirs.
#
# Everything it starts it stops, on error too. Nothing is written to
# bench/RESULTS.md: the table is printed, record it by hand.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

PRAETOR_DEV=0
ONLY=""
while [[ $# -gt 0 ]]; do
    case $1 in
    --praetor-dev) PRAETOR_DEV=1 ;;
    --only)
        ONLY=${2:?--only etcd|praetor}
        shift
        ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "unknown argument: $1" >&2
        exit 2
        ;;
    esac
    shift
done

DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
KEYS=${KEYS:-10000}
VALUE_SIZE=${VALUE_SIZE:-256}
CONCURRENCY=${CONCURRENCY:-64}
THREADS=${THREADS:-1}
RAFT_MULTIPLIER=${RAFT_MULTIPLIER:-1}
KILL_AFTER=${KILL_AFTER:-2}
FAILOVER_RUNS=${FAILOVER_RUNS:-3}
ETCD_PORT_BASE=${ETCD_PORT_BASE:-32379}
DATA_ROOT=${DATA_ROOT:-/var/tmp}
OUT=${OUT:-$(mktemp -d /tmp/praetor-raft-bench.XXXXXX)}
mkdir -p "$OUT"
: >"$OUT/results.txt"

log() { echo "==> $*" >&2; }
die() {
    log "error: $*"
    exit 1
}

# --- everything started here is stopped here
pids=()
work=""
cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    pids=()
    if [[ -n $work && ${KEEP:-0} != 1 ]]; then
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# stop PID...: SIGTERM, wait, and forget them.
stop() {
    local pid keep=()
    for pid in "$@"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        [[ " $* " == *" $pid "* ]] || keep+=("$pid")
    done
    pids=("${keep[@]}")
}

# --- tools
need() {
    local bin=$1 pkg=$2
    if ! command -v "$bin" >/dev/null; then
        log "installing $pkg"
        if [[ -z ${apt_updated:-} ]]; then
            apt-get update -qq
            apt_updated=1
        fi
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null
    fi
}
[[ $ONLY == praetor ]] || {
    need etcd etcd-server
    need etcdctl etcd-client
}
need curl curl

if [[ -z ${PRAETOR:-} || -z ${KVLOAD:-} ]]; then
    target=${CARGO_TARGET_DIR:-$root/target}
    log "building praetor and kvload (release, $target)"
    (cd "$root" && CARGO_TARGET_DIR=$target cargo build --release -q -p praetor -p bench-kvload)
    PRAETOR=${PRAETOR:-$target/release/praetor}
    KVLOAD=${KVLOAD:-$target/release/kvload}
fi

mkdir -p "$DATA_ROOT"
if [[ $(stat -f -c %T "$DATA_ROOT") == tmpfs ]]; then
    die "DATA_ROOT=$DATA_ROOT is tmpfs: fsync would cost nothing; point DATA_ROOT at a disk"
fi
work=$(mktemp -d "$DATA_ROOT/praetor-raft-bench.XXXXXX")

# in_use IP PORT: something accepts TCP there.
in_use() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# --- results: one kvload line per run, as "SYSTEM NAME key=value..."
record() { # SYSTEM NAME LINE
    echo "$1 $2 $3" >>"$OUT/results.txt"
}

# kv SYSTEM NAME KVLOAD-ARGS...: one kvload run, recorded (or FAILED).
kv() {
    local system=$1 name=$2 line
    shift 2
    echo "load before $system $name: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/load.txt"
    if line=$("$KVLOAD" "$@" --threads "$THREADS" 2>>"$OUT/kvload-$system.log"); then
        log "$system $name: $line"
    else
        log "$system $name: FAILED (see $OUT/kvload-$system.log)"
        tail -3 "$OUT/kvload-$system.log" >&2
        line="failed=1"
    fi
    record "$system" "$name" "$line"
}

# workloads SYSTEM TARGET ENDPOINTS: the load runs, the same for both.
workloads() {
    local system=$1 target=$2 endpoints=$3
    local common=(--target "$target" --endpoints "$endpoints" --keys "$KEYS" --value-size "$VALUE_SIZE")
    local timed=(--duration "$DURATION" --warmup "$WARMUP")
    kv "$system" populate populate "${common[@]}" --concurrency 16
    kv "$system" write_c1_leader write "${common[@]}" "${timed[@]}" --concurrency 1 --leader-only
    kv "$system" write_cN_all write "${common[@]}" "${timed[@]}" --concurrency "$CONCURRENCY"
    kv "$system" write_cN_leader write "${common[@]}" "${timed[@]}" --concurrency "$CONCURRENCY" --leader-only
    kv "$system" read_c1_leader read "${common[@]}" "${timed[@]}" --concurrency 1 --leader-only
    kv "$system" read_cN_all read "${common[@]}" "${timed[@]}" --concurrency "$CONCURRENCY"
    kv "$system" read_cN_leader read "${common[@]}" "${timed[@]}" --concurrency "$CONCURRENCY" --leader-only
}

declare -A pid_of # endpoint -> pid of the member serving it

# forget PID: reap a process that is gone (killed by kvload) and drop it.
forget() {
    local pid keep=()
    { wait "$1"; } 2>/dev/null || true
    for pid in "${pids[@]}"; do
        [[ $pid == "$1" ]] || keep+=("$pid")
    done
    pids=("${keep[@]}")
}

# wait_whole TARGET ENDPOINTS SECONDS: until every member answers and all
# name the same leader; fails if a member process has exited.
wait_whole() {
    local target=$1 endpoints=$2 deadline=$((SECONDS + $3)) ep
    until "$KVLOAD" leader --target "$target" --endpoints "$endpoints" >/dev/null 2>"$OUT/wait.err"; do
        for ep in ${endpoints//,/ }; do
            if ! kill -0 "${pid_of[$ep]}" 2>/dev/null; then
                log "the member serving $ep (pid ${pid_of[$ep]}) exited"
                return 1
            fi
        done
        if ((SECONDS >= deadline)); then
            log "no agreed leader after $3 s: $(cat "$OUT/wait.err")"
            return 1
        fi
        sleep 0.2
    done
}

# failovers SYSTEM TARGET ENDPOINTS RESTART: FAILOVER_RUNS times, kill -9
# the leader under concurrency-1 writes (the leader's endpoint first, so the
# client starts on the member that dies); then RESTART ENDPOINT brings that
# member back on its data dir and the next run waits for the whole cluster.
failovers() {
    local system=$1 target=$2 endpoints=$3 restart=$4 r leader others pid
    for r in $(seq 1 "$FAILOVER_RUNS"); do
        if ! leader=$("$KVLOAD" leader --target "$target" --endpoints "$endpoints" 2>>"$OUT/kvload-$system.log"); then
            log "$system failover $r: no agreed leader"
            record "$system" "failover_$r" "failed=1"
            return
        fi
        others=$(tr ',' '\n' <<<"$endpoints" | grep -vxF "$leader" | paste -sd,)
        pid=${pid_of[$leader]}
        log "$system failover $r: leader $leader (pid $pid), kill -9 after ${KILL_AFTER}s"
        kv "$system" "failover_$r" failover --target "$target" --endpoints "$leader,$others" \
            --keys "$KEYS" --value-size "$VALUE_SIZE" \
            --kill-pid "$pid" --kill-after "$KILL_AFTER"
        forget "$pid"
        ((r < FAILOVER_RUNS)) || break
        "$restart" "$leader"
        if ! wait_whole "$target" "$endpoints" 60; then
            log "$system: the cluster did not come back after failover $r; no more failover runs"
            return
        fi
    done
}

# --- etcd: 3 members on 127.0.0.1, default durability (WAL fsync)
etcd_cluster=""
etcd_endpoints=""
for i in 1 2 3; do
    c=$((ETCD_PORT_BASE + 2 * (i - 1)))
    etcd_cluster+="${etcd_cluster:+,}e$i=http://127.0.0.1:$((c + 1))"
    etcd_endpoints+="${etcd_endpoints:+,}127.0.0.1:$c"
done

start_etcd() { # ENDPOINT (127.0.0.1:CLIENT-PORT); its data dir survives restarts
    local c=${1#*:} i
    i=$(((c - ETCD_PORT_BASE) / 2 + 1))
    etcd --name "e$i" --data-dir "$work/etcd/e$i" \
        --listen-client-urls "http://$1" --advertise-client-urls "http://$1" \
        --listen-peer-urls "http://127.0.0.1:$((c + 1))" --initial-advertise-peer-urls "http://127.0.0.1:$((c + 1))" \
        --initial-cluster "$etcd_cluster" --initial-cluster-state new \
        --initial-cluster-token praetor-raft-bench \
        --log-level warn >>"$OUT/etcd-e$i.log" 2>&1 &
    pids+=($!)
    pid_of[$1]=$!
}

run_etcd() {
    local ep c
    for ep in ${etcd_endpoints//,/ }; do
        c=${ep#*:}
        in_use 127.0.0.1 "$c" && die "127.0.0.1:$c is in use (set ETCD_PORT_BASE)"
        in_use 127.0.0.1 $((c + 1)) && die "127.0.0.1:$((c + 1)) is in use (set ETCD_PORT_BASE)"
    done
    for ep in ${etcd_endpoints//,/ }; do
        start_etcd "$ep"
    done
    wait_whole etcd "$etcd_endpoints" 30 || die "etcd did not start (logs in $OUT)"
    log "$(etcd --version | head -1), 3 members ($etcd_endpoints), data in $work/etcd"
    etcdctl --endpoints "$etcd_endpoints" endpoint status -w table >&2 || true
    workloads etcd etcd "$etcd_endpoints"
    if [[ -n ${ETCD_CHECK_PERF:-} ]]; then
        log "etcd: etcdctl check perf --load=$ETCD_CHECK_PERF (gRPC reference, 60 s)"
        local perf
        perf=$(etcdctl --endpoints "$etcd_endpoints" check perf --load="$ETCD_CHECK_PERF" 2>&1 |
            tr '\r' '\n' | grep -E 'Throughput|Slowest|Stddev|ERROR' | tr '\n' ' ' || true)
        log "etcd check perf: $perf"
        echo "etcd, etcdctl check perf --load=$ETCD_CHECK_PERF (gRPC, 256 B keys, 1 KiB values, rate-capped): $perf" >>"$OUT/check-perf.txt"
    fi
    failovers etcd etcd "$etcd_endpoints" start_etcd
    stop "${pids[@]}"
}

# --- praetor: 3 servers on 127.0.0.1-3 with the default ports, or one dev agent
start_praetor() { # ENDPOINT (127.0.0.N:8500); its data dir survives restarts
    local ip=${1%:*} n
    n=${ip##*.}
    mkdir -p "$work/praetor/s$n"
    printf '{"performance": {"raft_multiplier": %s}}\n' "$RAFT_MULTIPLIER" >"$work/praetor/s$n.json"
    "$PRAETOR" agent -server -bootstrap-expect=3 -node="s$n" -data-dir="$work/praetor/s$n" \
        -bind="$ip" -client="$ip" -retry-join=127.0.0.1 \
        -config-file="$work/praetor/s$n.json" >>"$OUT/praetor-s$n.log" 2>&1 &
    pids+=($!)
    pid_of[$1]=$!
}

run_praetor() {
    local endpoints ep port
    if [[ $PRAETOR_DEV == 1 ]]; then
        endpoints=127.0.0.1:8500
        in_use 127.0.0.1 8500 && die "127.0.0.1:8500 is in use"
        "$PRAETOR" agent -dev -client=127.0.0.1 -node=bench -dns-port=-1 >"$OUT/praetor-dev.log" 2>&1 &
        pids+=($!)
        pid_of[$endpoints]=$!
    else
        endpoints=127.0.0.1:8500,127.0.0.2:8500,127.0.0.3:8500
        for ep in ${endpoints//,/ }; do
            for port in 8300 8301 8500; do
                in_use "${ep%:*}" "$port" && die "${ep%:*}:$port is in use"
            done
        done
        for ep in ${endpoints//,/ }; do
            start_praetor "$ep"
        done
    fi
    if ! wait_whole praetor "$endpoints" 60; then
        tail -n 3 "$OUT"/praetor-*.log >&2
        die "praetor did not start (logs in $OUT)"
    fi
    log "$("$PRAETOR" version | head -1): $endpoints, leader $("$KVLOAD" leader --target praetor --endpoints "$endpoints")"
    workloads praetor praetor "$endpoints"
    if [[ $PRAETOR_DEV == 1 ]]; then
        log "praetor failover: skipped (one dev agent)"
    else
        failovers praetor praetor "$endpoints" start_praetor
    fi
    stop "${pids[@]}"
}

log "load: $(cat /proc/loadavg); nproc $(nproc); output in $OUT; data in $work"
[[ $ONLY == praetor ]] || run_etcd
[[ $ONLY == etcd ]] || run_praetor

# --- the table
get() { # SYSTEM NAME FIELD
    awk -v s="$1" -v n="$2" -v f="$3" '$1 == s && $2 == n {
        for (i = 3; i <= NF; i++) { split($i, kv, "="); if (kv[1] == f) { print kv[2]; exit } } }' "$OUT/results.txt"
}
ratio() { # A B: A/B to 2 places, or blank
    awk -v a="$1" -v b="$2" 'BEGIN { if (a != "" && b != "" && b + 0 > 0) printf "%.2f", a / b }'
}
row() { # LABEL NAME
    local pr er pp ep pe ee
    pr=$(get praetor "$2" ops_per_s)
    er=$(get etcd "$2" ops_per_s)
    pp=$(get praetor "$2" p99_ms)
    ep=$(get etcd "$2" p99_ms)
    pe=$(get praetor "$2" errors)
    ee=$(get etcd "$2" errors)
    echo "| $1 | ${pr:--} | ${er:--} | $(ratio "$pr" "$er") | ${pp:--} | ${ep:--} | ${pe:--} | ${ee:--} |"
}
each() { # SYSTEM FIELD: the field of every failover run, " / "-separated
    local r v out=""
    for r in $(seq 1 "$FAILOVER_RUNS"); do
        v=$(get "$1" "failover_$r" "$2")
        out+="${out:+ / }${v:--}"
    done
    echo "$out"
}
median() { # SYSTEM FIELD: the median of the failover runs' numeric FIELD
    local r
    for r in $(seq 1 "$FAILOVER_RUNS"); do
        get "$1" "failover_$r" "$2"
    done | sort -g | awk '{ v[NR] = $1 } END { if (NR) print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'
}
praetor_kind="3 servers, raft_multiplier=$RAFT_MULTIPLIER"
[[ $PRAETOR_DEV == 1 ]] && praetor_kind="ONE DEV AGENT: in memory, no Raft, no fsync"
c=$CONCURRENCY
cat <<EOF

praetor: $praetor_kind; etcd: 3 members, WAL fsync (default). HTTP/JSON both sides.
$VALUE_SIZE-byte values, $KEYS keys, ${WARMUP}s warm-up + ${DURATION}s per run, kvload threads $THREADS, $(nproc) cores shared with the servers.

| workload | praetor ops/s | etcd ops/s | praetor/etcd | praetor p99 ms | etcd p99 ms | praetor errors | etcd errors |
|---|---|---|---|---|---|---|---|
$(row "write c=1 (leader)" write_c1_leader)
$(row "write c=$c (all members)" write_cN_all)
$(row "write c=$c (leader)" write_cN_leader)
$(row "read c=1 (leader)" read_c1_leader)
$(row "read c=$c (all members)" read_cN_all)
$(row "read c=$c (leader)" read_cN_leader)

| failover (kill -9 leader), $FAILOVER_RUNS runs | praetor | etcd |
|---|---|---|
| kill -> first ack of a write sent after it (ms), median | $(median praetor failover_ms) | $(median etcd failover_ms) |
| the same, each run | $(each praetor failover_ms) | $(each etcd failover_ms) |
| last ack before -> first ack after (ms), each run | $(each praetor gap_ms) | $(each etcd gap_ms) |
| failed attempts after the kill, each run | $(each praetor failures_after) | $(each etcd failures_after) |

$(cat "$OUT/check-perf.txt" 2>/dev/null || true)
$(cat "$OUT/load.txt")
raw kvload lines: $OUT/results.txt
EOF

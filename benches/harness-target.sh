#!/usr/bin/env bash
# Starts dgidgi as a target of the side-by-side harness in ../shared/bench (compare.sh), on the
# fleet of benches/fixtures/load-fleet.yaml pointing at the harness's fake upstream.
#
#   harness-target.sh PORT [floor|bare|metered|redis]
#     floor    not dgidgi: the load benchmark's minimal hyper reverse proxy (check the key, stream
#              through), what any proxy costs on this machine; needs `cargo bench --bench load --no-run`
#     bare     the tenant's own key: no platform limits, no budget, no ledger (the proxy alone)
#     metered  a platform tenant with every limit and a blocking budget, the SQLite ledger on
#     redis    metered, with the counters in a redis-server this script starts (and stops), on
#              the CPUs this script is not pinned to (the harness's load CPUs): in production
#              Redis runs on a host of its own, and its CPU is not the gateway's. REDIS_CPUS
#              (a taskset list) puts it elsewhere; REDIS_CPUS=same keeps it on the gateway's.
#
#   ./compare.sh \
#     --target 'dgidgi=http://127.0.0.1:18080/v1,Authorization: Bearer dgk_load_0123456789abcdef0123456789' \
#     --target-cmd "dgidgi=$PWD/benches/harness-target.sh 18080 bare"
#
# Environment from the harness: UPSTREAM_BASE (http://127.0.0.1:19000/v1), UPSTREAM_KEY.
set -euo pipefail
PORT=${1:-18080}
MODE=${2:-bare}
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${DGIDGI_BIN:-$ROOT/target/release/dgidgi}"
if [[ $MODE == floor ]]; then
  # The newest build of benches/load.rs runs as the floor proxy under this variable.
  LOAD_BIN=$(ls -t "$ROOT"/target/release/deps/load-* 2>/dev/null | grep -v '\.d$' | head -1) || true
  [[ -x $LOAD_BIN ]] || { echo "harness-target.sh: build it first: cargo bench --bench load --no-run" >&2; exit 1; }
  UP=${UPSTREAM_BASE:-http://127.0.0.1:19000/v1}; UP=${UP#http://}; UP=${UP%%/*}
  DGIDGI_LOAD_FLOOR_PROXY="$UP $PORT ${UPSTREAM_KEY:-sk-fake-upstream-bench}" exec "$LOAD_BIN"
fi
STATE="$(mktemp -d)"
trap 'rm -rf "$STATE"' EXIT   # until the watcher below takes over
case $MODE in
  bare) TENANT='{source: tenant, providers: [{name: own}], allowPlatformFallback: false}' ;;
  metered | redis) TENANT='{budget: {monthlyUsd: 100000000, alertThresholds: [50, 80, 100], action: block}}' ;;
  *) echo "harness-target.sh: unknown mode $MODE (floor, bare, metered, redis)" >&2; exit 2 ;;
esac
sed -e "s|@UPSTREAM_KEY@|${UPSTREAM_KEY:-sk-fake-upstream-bench}|g" \
    -e "s|@UPSTREAM_BASE@|${UPSTREAM_BASE:-http://127.0.0.1:19000/v1}|g" \
    -e "s|@TENANT@|$TENANT|" "$ROOT/benches/fixtures/load-fleet.yaml" > "$STATE/fleet.yaml"
"$BIN" render -f "$STATE/fleet.yaml" --config-dir "$STATE/config" --log warn
ARGS=(gateway --config-dir "$STATE/config" --listen "127.0.0.1:$PORT" --admin-listen 127.0.0.1:0 --log warn)
[[ $MODE == bare ]] || ARGS+=(--state-dir "$STATE/state")
if [[ $MODE == redis ]]; then
  RPORT=$((PORT + 1000))
  # The CPUs outside this script's affinity (compare.sh pins it to the gateway's), if any; no
  # pinning where taskset is missing or refuses the list (a container's cpuset).
  PIN=()
  if command -v taskset >/dev/null; then
    MINE=$(taskset -pc $$ | awk -F': ' '{print $2}')
    [[ -n ${REDIS_CPUS:-} ]] || REDIS_CPUS=$(python3 -c 'import os
print(",".join(str(c) for c in range(os.cpu_count()) if c not in os.sched_getaffinity(0)))' 2>/dev/null || true)
    [[ -n $REDIS_CPUS && $REDIS_CPUS != same ]] || REDIS_CPUS=$MINE
    taskset -c "$REDIS_CPUS" true 2>/dev/null && PIN=(taskset -c "$REDIS_CPUS")
  fi
  # Daemonized, so it is not part of the gateway's process tree (whose RSS the harness sums);
  # a watcher outside the tree stops it when the gateway goes.
  "${PIN[@]}" redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
    --pidfile "$STATE/redis.pid" --logfile "$STATE/redis.log"
  for _ in $(seq 100); do redis-cli -p "$RPORT" ping >/dev/null 2>&1 && break; sleep 0.05; done
  redis-cli -p "$RPORT" ping >/dev/null || { echo "harness-target.sh: redis-server did not start" >&2; exit 1; }
  setsid -f bash -c "while kill -0 $$ 2>/dev/null; do sleep 0.5; done; kill \$(cat '$STATE/redis.pid'); rm -rf '$STATE'" >/dev/null 2>&1
  ARGS+=(--redis-url "redis://127.0.0.1:$RPORT/")
else
  setsid -f bash -c "while kill -0 $$ 2>/dev/null; do sleep 0.5; done; rm -rf '$STATE'" >/dev/null 2>&1
fi
trap - EXIT
exec "$BIN" "${ARGS[@]}"

#!/usr/bin/env bash
# Starts dgidgi as a target of the side-by-side harness in ../shared/bench (compare.sh):
# renders a one-provider config pointing at the harness's fake upstream and serves it.
#
#   ./compare.sh --peers "" \
#     --target 'ours=http://127.0.0.1:18080/v1,Authorization: Bearer dgk_bench_0123456789abcdef0123456789' \
#     --target-cmd "ours=$PWD/benches/harness-target.sh 18080"
#
# Environment from the harness: UPSTREAM_BASE (http://127.0.0.1:19000/v1), UPSTREAM_KEY.
set -euo pipefail
PORT=${1:-18080}
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${DGIDGI_BIN:-$ROOT/target/release/dgidgi}"
STATE="$(mktemp -d)"
trap 'rm -rf "$STATE"' EXIT
cat > "$STATE/bench.yaml" <<YAML
apiVersion: v1
kind: Secret
metadata: {name: upstream-key, namespace: dgidgi-system}
stringData: {apiKey: "${UPSTREAM_KEY:-sk-fake-upstream-bench}"}
---
apiVersion: llm.dgidgi.io/v1alpha1
kind: LlmProvider
metadata: {name: upstream, namespace: dgidgi-system}
spec: {type: openai-compatible, baseUrl: "${UPSTREAM_BASE:-http://127.0.0.1:19000/v1}", credentialsRef: {name: upstream-key}}
---
apiVersion: llm.dgidgi.io/v1alpha1
kind: LlmTenant
metadata: {name: bench, namespace: bench}
spec: {limits: {}}
---
apiVersion: v1
kind: Namespace
metadata: {name: bench, labels: {llm.dgidgi.io/tier: enterprise}}
---
apiVersion: v1
kind: Secret
metadata: {name: bench-llm-access-default, namespace: bench}
stringData: {accessKey: dgk_bench_0123456789abcdef0123456789}
YAML
"$BIN" render -f "$STATE/bench.yaml" --config-dir "$STATE/config" --log warn
exec "$BIN" gateway --config-dir "$STATE/config" --listen "127.0.0.1:$PORT" --admin-listen 127.0.0.1:0 --log warn

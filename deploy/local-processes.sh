#!/usr/bin/env bash
# Runs the multi-process layout Kubernetes uses, on one machine: N worker processes and a router
# process, each its own JVM, on loopback. Ctrl-C stops them all.
#   deploy/local-processes.sh [--model DIR] [--workers N] [--replicas R] [--port P]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODEL=() WORKERS=3 REPLICAS=1 PORT=50051 BASE=50061
while [[ $# -gt 0 ]]; do
  case "$1" in
    --model) MODEL=(--model "$2"); shift 2 ;;
    --workers) WORKERS="$2"; shift 2 ;;
    --replicas) REPLICAS="$2"; shift 2 ;;
    --port) PORT="$2"; shift 2 ;;
    -h|--help) sed -n '2,5p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
"$ROOT/moe" --version >/dev/null   # builds once, before the processes start in parallel
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait' EXIT INT TERM
addresses=()
for ((i = 0; i < WORKERS; i++)); do
  port=$((BASE + i))
  "$ROOT/moe" worker "${MODEL[@]}" --port "$port" --id "worker-$i" --shard "$i/$WORKERS" --replicas "$REPLICAS" \
    --metrics-port "$((9410 + i))" &
  pids+=($!)
  addresses+=("127.0.0.1:$port")
done
sleep 3
"$ROOT/moe" router "${MODEL[@]}" --port "$PORT" --workers "$(IFS=,; echo "${addresses[*]}")" --replicas "$REPLICAS" &
pids+=($!)
wait

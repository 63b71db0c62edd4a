#!/usr/bin/env bash
# Resident memory of `moe local` (coordinator, workers and router in one process) before and after
# storms of 96 concurrent 8192-token MoeForward calls (issue 11's storm): prints the RSS at baseline
# (after 200 small calls and 20 s idle), right after each storm, and 30 s later.
# usage: bench/storm-rss.sh LABEL   (MOE_JAVA_OPTS and the MALLOC_* variables pass through to ./moe)
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export JAVA_HOME="${JAVA_HOME:-/usr/lib/jvm/temurin-25-jdk-amd64}"
port=$((50200 + RANDOM % 500))
./moe local --port $port --http-port -1 > /tmp/storm-rss-$1.log 2>&1 &
pid=$!
for i in $(seq 1 120); do ./moe probe --target 127.0.0.1:$port --requests 1 --tokens 4 >/dev/null 2>&1 && break; sleep 1; done
jpid=$(pgrep -f "moe.jar local --port $port" | head -1)
rss() { awk '/VmRSS/{print int($2/1024)}' /proc/$jpid/status; }
./moe probe --target 127.0.0.1:$port --requests 200 --tokens 64 --concurrency 4 >/dev/null 2>&1
sleep 20; base=$(rss)
for storm in 1 2 3; do
  ./moe probe --target 127.0.0.1:$port --requests 96 --tokens 8192 --concurrency 96 > /tmp/storm-rss-$1-storm$storm.log 2>&1
  peak=$(rss); sleep 30; after=$(rss)
  echo "$1 storm $storm: baseline ${base} MiB, right after ${peak} MiB, 30 s later ${after} MiB ($(tail -1 /tmp/storm-rss-$1-storm$storm.log | cut -c1-120))"
done
kill $pid; wait $pid 2>/dev/null

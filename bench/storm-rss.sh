#!/usr/bin/env bash
# Resident memory of `moe local` (coordinator, workers and router in one process) before and after
# storms of 96 concurrent 8192-token MoeForward calls (issue 11's storm): prints the RSS at baseline
# (after 200 small calls and 20 s idle), right after each storm, 30 s and 90 s later (gRPC's idle
# executor threads end after 60 s), and where the growth at 90 s is: Native Memory Tracking's
# categories that moved by 1 MiB or more against the baseline, and RSS outside what the JVM tracks
# (glibc's free lists, libraries). NMT's own bookkeeping adds about 4 MiB to every figure.
# usage: bench/storm-rss.sh LABEL   (MOE_JAVA_OPTS and the MALLOC_* variables pass through to ./moe)
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export JAVA_HOME="${JAVA_HOME:-/usr/lib/jvm/temurin-25-jdk-amd64}"
port=$((50200 + RANDOM % 500))
MOE_JAVA_OPTS="-XX:NativeMemoryTracking=summary ${MOE_JAVA_OPTS:-}" ./moe local --port $port --http-port -1 > /tmp/storm-rss-$1.log 2>&1 &
pid=$!
for i in $(seq 1 120); do ./moe probe --target 127.0.0.1:$port --requests 1 --tokens 4 >/dev/null 2>&1 && break; sleep 1; done
jpid=$(pgrep -f "moe.jar local --port $port" | head -1)
rss() { awk '/VmRSS/{print int($2/1024)}' /proc/$jpid/status; }
pct() { awk -v a="$1" -v b="$base" 'BEGIN{printf "%+.0f %%", 100*(a-b)/b}'; }
nmt() { "$JAVA_HOME/bin/jcmd" $jpid VM.native_memory "$@"; }
# "-  Other (reserved=..., committed=96708KB +88084KB)" -> "Other +86 MiB"; the total line -> RSS outside NMT
attribution() {
  local r; r=$(awk '/VmRSS/{print $2}' /proc/$jpid/status)
  nmt summary.diff | awk -v rss="$r" -v rss0="$rss0" '
    /^Total:/ { match($0, /committed=[0-9]+KB/); c = substr($0, RSTART + 10, RLENGTH - 12); d = 0
                if (match($0, /committed=[0-9]+KB [+-][0-9]+KB/)) { s = substr($0, RSTART, RLENGTH); sub(/.*KB /, "", s); d = s + 0 }
                out = sprintf("outside NMT %+d MiB", ((rss - c) - (rss0 - (c - d))) / 1024) }
    /^-/ && match($0, /committed=[0-9]+KB [+-][0-9]+KB/) {
      name = $0; sub(/^- */, "", name); sub(/ *\(.*/, "", name)
      s = substr($0, RSTART, RLENGTH); sub(/.*KB /, "", s)
      if (s + 0 >= 1024 || s + 0 <= -1024) cats = cats sprintf("%s %+d MiB, ", name, (s + 0) / 1024) }
    END { print cats out }'
}
./moe probe --target 127.0.0.1:$port --requests 200 --tokens 64 --concurrency 4 >/dev/null 2>&1
sleep 20; base=$(rss); nmt baseline >/dev/null; rss0=$(awk '/VmRSS/{print $2}' /proc/$jpid/status)
echo "$1 baseline ${base} MiB"
for storm in 1 2 3; do
  ./moe probe --target 127.0.0.1:$port --requests 96 --tokens 8192 --concurrency 96 > /tmp/storm-rss-$1-storm$storm.log 2>&1
  peak=$(rss); sleep 30; at30=$(rss); sleep 60; at90=$(rss)
  echo "$1 storm $storm: right after ${peak} MiB, 30 s later ${at30} MiB ($(pct $at30)), 90 s later ${at90} MiB ($(pct $at90)) ($(tail -1 /tmp/storm-rss-$1-storm$storm.log | cut -c1-100))"
  echo "$1 storm $storm at 90 s against the baseline: $(attribution)"
done
kill $pid; wait $pid 2>/dev/null

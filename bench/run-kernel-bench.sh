#!/usr/bin/env bash
# Runs the expert-FFN kernel benchmarks (see bench/RESULTS.md). Build first:
#   JAVA_HOME=/usr/lib/jvm/temurin-25-jdk-amd64 ./mvnw -B -q -pl proto,core,expert-worker,router,bench package -DskipTests
#   bench/native/build.sh            # only for the single-thread native comparison
# then e.g.  bench/run-kernel-bench.sh ffn   |   bench/run-kernel-bench.sh single-thread --rows 256
#            bench/run-kernel-bench.sh cpu-time BF16 1,16,256 9    (single-core A/B by thread CPU time;
#            extra JVM flags for it in BENCH_JVM_FLAGS, e.g. BENCH_JVM_FLAGS=-XX:LoopUnrollLimit=0)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
java="${JAVA_HOME:-/usr/lib/jvm/temurin-25-jdk-amd64}/bin/java"
cp="$root/bench/target/classes:$(cat "$root/bench/target/classpath.txt")"
cd "$root"
if [[ "${1:-}" == cpu-time ]]; then
    shift
    exec "$java" --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED -XX:ActiveProcessorCount=1 \
        -Xmx4g ${BENCH_JVM_FLAGS:-} -cp "$cp" dev.moecluster.bench.jmh.CpuTimeKernelComparison "$@"
fi
exec "$java" --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED -cp "$cp" \
    dev.moecluster.bench.jmh.KernelBenchmarks "$@"

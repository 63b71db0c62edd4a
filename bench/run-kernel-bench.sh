#!/usr/bin/env bash
# Runs the expert-FFN kernel benchmarks (see bench/RESULTS.md). Build first:
#   JAVA_HOME=/usr/lib/jvm/temurin-25-jdk-amd64 ./mvnw -B -q -pl proto,core,expert-worker,router,bench package -DskipTests
# (the native kernel is core's, carried in its jar: core/src/main/c/build-native.sh rebuilds it)
# then e.g.  bench/run-kernel-bench.sh ffn   |   bench/run-kernel-bench.sh single-thread --rows 256
#            bench/run-kernel-bench.sh cpu-time BF16 1,4,16,256 9   (single-core A/B by thread CPU time, with
#            memory bandwidth measured first; extra JVM flags in BENCH_JVM_FLAGS, e.g. -XX:LoopUnrollLimit=0)
#            bench/run-kernel-bench.sh wall-time BF16 1,4,16,256 5  (the same on all cores, by wall clock)
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
if [[ "${1:-}" == wall-time ]]; then
    shift
    exec "$java" --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED \
        -Xmx4g ${BENCH_JVM_FLAGS:-} -cp "$cp" dev.moecluster.bench.jmh.CpuTimeKernelComparison "${1:-BF16}" "${2:-1,16,256}" "${3:-5}" wall
fi
exec "$java" --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED -cp "$cp" \
    dev.moecluster.bench.jmh.KernelBenchmarks "$@"

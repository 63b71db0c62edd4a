#!/usr/bin/env bash
# Builds what bench/gpu/check.sh needs on the GPU machine, which has no JDK and no network, into
# bench/gpu/kit/ (ignored by git; name it in the device tool's carry):
#   kit/jre    a jlink'd Java 25 runtime with only the modules the check loads
#   kit/jars   moe-expert-worker, moe-core, moe-proto, protobuf-java, jcuda (classes only)
#   kit/lib    libJCudaDriver-12.0.0-linux-x86_64.so from jcuda-natives (JCuda tries java.library.path
#              first; the other natives in that jar, 24 MiB of them, are not needed)
# The carried tree (this repository plus the kit) must stay under 64 MiB; the script checks.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
export JAVA_HOME="${JAVA_HOME:-/usr/lib/jvm/temurin-25-jdk-amd64}"
KIT=bench/gpu/kit
DEPS="$(mktemp -d)"
trap 'rm -rf "$DEPS"' EXIT

./mvnw -B -q -pl proto,core,expert-worker -DskipTests package dependency:copy-dependencies \
  -DincludeScope=runtime -DoutputDirectory="$DEPS"

rm -rf "$KIT"
mkdir -p "$KIT/jars" "$KIT/lib"
cp proto/target/moe-proto-*.jar core/target/moe-core-*.jar expert-worker/target/moe-expert-worker-*.jar "$KIT/jars/"
cp "$DEPS"/jcuda-[0-9]*.jar "$DEPS"/protobuf-java-[0-9]*.jar "$KIT/jars/"
unzip -q -j -o "$DEPS"/jcuda-natives-*-linux-x86_64.jar 'lib/libJCudaDriver-*-linux-x86_64.so' -d "$KIT/lib"

"$JAVA_HOME/bin/jlink" \
  --add-modules java.base,java.logging,jdk.incubator.vector,jdk.unsupported \
  --strip-debug --no-header-files --no-man-pages --compress=zip-9 \
  --output "$KIT/jre"

# The check's own classes must load with this runtime: here (no GPU) it must say so and exit 2.
set +e
"$KIT/jre/bin/java" --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED \
  -Djava.library.path="$KIT/lib" -cp "$KIT/jars/*" dev.moecluster.worker.cuda.DeviceCheck --only a >"$DEPS/smoke" 2>&1
rc=$?
set -e
if [[ $rc -ne 2 && $rc -ne 0 ]]; then
  cat "$DEPS/smoke"; echo "prepare.sh: the kit's runtime cannot run DeviceCheck (exit $rc)" >&2; exit 1
fi
grep -v "^WARNING: Using incubator" "$DEPS/smoke" | sed 's/^/  smoke test: /'

kit_kib=$(du -sk "$KIT" | cut -f1)
tree_kib=$(git ls-files -z | xargs -0 du -ck 2>/dev/null | tail -1 | cut -f1)
total_mib=$(( (kit_kib + tree_kib) / 1024 ))
du -sh "$KIT"/* | sed 's/^/  /'
echo "kit $((kit_kib / 1024)) MiB + tracked files $((tree_kib / 1024)) MiB = ${total_mib} MiB carried (limit 64 MiB)"
if (( total_mib >= 64 )); then
  echo "prepare.sh: too large to carry" >&2; exit 1
fi

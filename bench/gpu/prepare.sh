#!/usr/bin/env bash
# Builds what bench/gpu/check.sh needs on the GPU machine, which has no JDK and no network, as one
# compressed file, bench/gpu/kit/kit.tar.xz (ignored by git; name bench/gpu/kit in the device tool's
# carry). Unpacked it holds:
#   jre    a jlink'd Java 25 runtime with the modules the check loads (stored uncompressed: xz
#          compresses the whole kit far better than jlink's zip)
#   jars   the moe command (cli/target/moe.jar) and the runtime jars `moe bench moe-layer` and
#          DeviceCheck load. Left out, to fit the device tool's 64 MiB: Hazelcast (the check runs a
#          static local cluster, no coordinator), JMH, and the other platforms' natives in the
#          tokenizer and JCuda jars
#   lib    libJCudaDriver-12.0.0-linux-x86_64.so (JCuda tries java.library.path first)
# and, beside it, bench/gpu/kit/dense_check (issue 12's dense kernels, build-dense-check.sh; no JDK needed).
# Before packing, the kit runs here: DeviceCheck must say "no GPU" and exit 2, and a tiny
# `moe bench moe-layer` on the cpu backend must pass its check against the reference.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
export JAVA_HOME="${JAVA_HOME:-/usr/lib/jvm/temurin-25-jdk-amd64}"
KIT=bench/gpu/kit
STAGE="$(mktemp -d)"
trap 'rm -rf "$STAGE"' EXIT

./mvnw -B -q -pl cli -am package -DskipTests

mkdir -p "$STAGE/jars" "$STAGE/lib" "$STAGE/tok"
cp cli/target/moe.jar "$STAGE/jars/"
for jar in cli/target/lib/*.jar; do
  case "$(basename "$jar")" in
    hazelcast-*|jmh-*|jopt-simple-*|commons-math3-*|jcuda-natives-*) ;;
    tokenizers-*)
      # only the linux-x86_64 native library of DJL's tokenizers (the jar carries four platforms)
      (cd "$STAGE/tok" && unzip -q "$OLDPWD/$jar" && rm -rf native/lib/linux-aarch64 native/lib/osx-* native/lib/win-* \
        && zip -q -r -0 "$STAGE/jars/$(basename "$jar")" .) ;;
    *) cp "$jar" "$STAGE/jars/" ;;
  esac
done
unzip -q -j -o cli/target/lib/jcuda-natives-*-linux-x86_64.jar 'lib/libJCudaDriver-*-linux-x86_64.so' -d "$STAGE/lib"
rm -rf "$STAGE/tok"

"$JAVA_HOME/bin/jlink" \
  --add-modules java.base,java.logging,java.management,java.naming,jdk.management,jdk.httpserver,jdk.incubator.vector,jdk.unsupported \
  --strip-debug --no-header-files --no-man-pages --compress=zip-0 \
  --output "$STAGE/jre" 2>&1 | grep -v "^WARNING: Using incubator" || true

JAVA=("$STAGE/jre/bin/java" --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED
  -Djava.library.path="$STAGE/lib" -cp "$STAGE/jars/*")
set +e
"${JAVA[@]}" dev.moecluster.worker.cuda.DeviceCheck --only a >"$STAGE/smoke" 2>&1
rc=$?
set -e
if [[ $rc -ne 2 && $rc -ne 0 ]]; then
  cat "$STAGE/smoke"; echo "prepare.sh: the kit cannot run DeviceCheck (exit $rc)" >&2; exit 1
fi
grep -v "^WARNING" "$STAGE/smoke" | sed 's/^/  smoke test: /'
if ! "${JAVA[@]}" -Djava.io.tmpdir="$STAGE" dev.moecluster.cli.Moe bench moe-layer --hidden 128 --intermediate 256 \
    --requests 2 --warmup 1 --tokens 8 >"$STAGE/smoke" 2>&1; then
  cat "$STAGE/smoke"; echo "prepare.sh: the kit cannot run moe bench moe-layer" >&2; exit 1
fi
grep -E "^check:" "$STAGE/smoke" | sed 's/^/  smoke test: bench moe-layer /'
rm -rf "$STAGE/smoke" "$STAGE/moe-cluster-bench"

rm -rf "$KIT"
mkdir -p "$KIT"
# issue 12's dense-kernel check (check.sh router): a standalone binary beside the tarball
if command -v nvcc >/dev/null 2>&1 || [[ -x /usr/local/cuda/bin/nvcc ]]; then
  bash bench/gpu/build-dense-check.sh "$KIT/dense_check"
  "$KIT/dense_check" >/dev/null 2>&1 && rc=0 || rc=$?
  [[ $rc -eq 2 ]] || echo "prepare.sh: dense_check should say 'no CUDA device' here (exit 2), exit $rc" >&2
else
  echo "prepare.sh: no nvcc here: check.sh router will need nvcc on the GPU machine" >&2
fi
echo "  packing (xz, about a minute)..."
tar -C "$STAGE" -cf - jre jars lib | xz -T0 -6 > "$KIT/kit.tar.xz"

kit_kib=$(du -sk "$KIT" | cut -f1)
tree_kib=$(git ls-files -z | xargs -0 du -ck 2>/dev/null | tail -1 | cut -f1)
total_mib=$(( (kit_kib + tree_kib) / 1024 ))
echo "kit $((kit_kib / 1024)) MiB + tracked files $((tree_kib / 1024)) MiB = ${total_mib} MiB carried (limit 64 MiB)"
if (( total_mib >= 64 )); then
  echo "prepare.sh: too large to carry" >&2; exit 1
fi

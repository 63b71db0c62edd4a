#!/usr/bin/env bash
# The cuda backend's device check (issue 6), for the GPU machine: no JDK, no network. Prepare the kit
# here first with bench/gpu/prepare.sh, then run through the device tool with carry ["bench/gpu/kit"]:
#   bash bench/gpu/check.sh            (about 4 minutes; every step is bounded by a timeout, < 8 minutes)
#   bash bench/gpu/check.sh cluster    (only (c), about 2 minutes)
#   bash bench/gpu/check.sh fp8        (only (f): (c) on an FP8 checkpoint, issue 13; about 3 minutes)
#   bash bench/gpu/check.sh router     (only (r), issue 12's dense kernels, about 1 minute; needs no JDK:
#                                       bench/gpu/kit/dense_check, or the device's nvcc to build it)
# Prints (0) the GPU and, where nvcc and cuobjdump exist there, the kernels' registers, spills and
# tensor-core instructions (the mma.sync kernels and the Hopper wgmma/TMA kernels); (b) torch.matmul
# (bf16) and torch._scaled_mm (fp8) on the FFN shapes; DeviceCheck: (a) cuda vs cpu correctness of
# every tile the device loads (on compute capability 9.0 the Hopper tiles too), bf16 and FP8 expert
# weights, and (b) our TFLOP/s per tile beside torch's and the FP8-weight kernels' through the backend,
# ending with the summary table for bench/RESULTS.md; then (c)
# MoeForward through a local cluster whose workers use the cuda backend, checked against the
# in-process reference, with cluster vs in-process throughput and the device kernels' share of the
# workers' round time (issue 10 asks >= 50 %). Logs go to $OUT (the device tool's folder) or
# /tmp/moe-check.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
LOGS="${OUT:-/tmp/moe-check}"
mkdir -p "$LOGS"
export PYTHONUNBUFFERED=1
status=0
ONLY="${1:-all}"

echo "== (0) device =="
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,power.limit --format=csv || true
if [[ "$ONLY" == router ]]; then
  echo
  echo "== (r) the router's dense kernels (core/src/main/cuda/dense.cu) against the host, and next to PyTorch eager =="
  BIN=bench/gpu/kit/dense_check
  if command -v nvcc >/dev/null 2>&1; then
    # built here when the device has nvcc: its glibc, not the preparing machine's
    timeout 180 bash bench/gpu/build-dense-check.sh "$LOGS/dense_check" && BIN="$LOGS/dense_check"
    timeout 120 nvcc -cubin -arch=sm_90 -O3 -Xptxas -v -o "$LOGS/dense.sm_90.cubin" core/src/main/cuda/dense.cu 2>&1 \
      | grep -E "Compiling entry|registers|spill" | paste - - - \
      | sed -E "s/.*entry function '([^']*)'.* ([0-9]+) bytes spill stores.*Used ([0-9]+) registers.*/  \1: \3 registers, \2 bytes spilled/"
  fi
  if [[ ! -x "$BIN" ]]; then
    echo "check.sh: $BIN is missing and there is no nvcc here: run bench/gpu/build-dense-check.sh $BIN (prepare.sh does) and carry bench/gpu/kit" >&2
    exit 2
  fi
  timeout 150 python3 bench/gpu/torch_dense.py "$LOGS/torch_dense.tsv" 2>&1 | tail -n 8 || echo "torch_dense.py failed or timed out"
  timeout 300 "$BIN" --torch "$LOGS/torch_dense.tsv" 2>&1 | tee "$LOGS/dense_check.log"
  status=${PIPESTATUS[0]}
  [[ $status -eq 124 ]] && echo "check.sh: dense_check timed out after 300 s"
  exit "$status"
fi
if [[ ! -f bench/gpu/kit/kit.tar.xz ]]; then
  echo "check.sh: bench/gpu/kit/kit.tar.xz is missing: run bench/gpu/prepare.sh and carry bench/gpu/kit" >&2
  exit 2
fi
KIT="$(mktemp -d)"
trap 'rm -rf "$KIT"' EXIT
if command -v xz >/dev/null 2>&1; then
  tar -C "$KIT" -xJf bench/gpu/kit/kit.tar.xz
else
  python3 -c "import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])" bench/gpu/kit/kit.tar.xz "$KIT"
fi
JAVA=("$KIT/jre/bin/java" --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED
  -Djava.library.path="$KIT/lib" -cp "$KIT/jars/*")
if [[ "$ONLY" == fp8 ]]; then
  echo
  echo "== (f) MoeForward through a local cluster of cuda workers serving an FP8 checkpoint (Meta's Maverick FP8 layout), checked against the in-process reference =="
  # Scout's expert shape, routed experts in e4m3 with per-channel scales (generated here, quantized from
  # the same-seed bf16 model); the workers keep them in FP8 on the GPU and run the moe_*_fp8_* kernels.
  timeout 180 "${JAVA[@]}" -Xmx32g dev.moecluster.cli.Moe gen-model --arch llama4 --fp8-experts --layers 2 \
    --hidden 5120 --intermediate 8192 --experts 8 --out "$KIT/fp8-model" 2>&1 | grep -vE "^WARNING" | tail -n 2
  timeout 240 "${JAVA[@]}" -Xmx64g -Djava.io.tmpdir="$KIT" dev.moecluster.cli.Moe bench moe-layer --backend cuda \
    --model "$KIT/fp8-model" --workers 2 --tokens 256 --requests 20 --warmup 5 --concurrency 4 2>&1 \
    | grep -vE "^WARNING|^\s+at " | tee "$LOGS/cluster-fp8.log"
  status=${PIPESTATUS[0]}
  [[ $status -eq 124 ]] && echo "check.sh: the FP8 cluster check timed out after 240 s"
  if [[ $status -ne 0 ]]; then echo "RESULT: FP8 cluster check FAIL (exit $status)"; else echo "RESULT: FP8 cluster check PASS"; fi
  exit "$status"
fi
if [[ "$ONLY" == all ]]; then
if command -v nvcc >/dev/null 2>&1; then
  # The same source as the committed PTX, compiled for sm_90 here only to read the compiler's report.
  timeout 120 nvcc -cubin -arch=sm_90 -O3 -Xptxas -v -o "$LOGS/moe_ffn.sm_90.cubin" \
    expert-worker/src/main/cuda/moe_ffn.cu 2>&1 | grep -E "Compiling entry|registers|spill" | paste - - - \
    | sed -E "s/.*entry function '([^']*)'.* ([0-9]+) bytes spill stores.*Used ([0-9]+) registers.*/  \1: \3 registers, \2 bytes spilled/"
  if command -v cuobjdump >/dev/null 2>&1; then
    cuobjdump --dump-sass "$LOGS/moe_ffn.sm_90.cubin" > "$LOGS/moe_ffn.sm_90.sass" 2>&1
    echo "  SASS: $(grep -c HMMA "$LOGS/moe_ffn.sm_90.sass") HMMA, $(grep -c LDSM "$LOGS/moe_ffn.sm_90.sass") LDSM, $(grep -c LDGSTS "$LOGS/moe_ffn.sm_90.sass") LDGSTS, $(grep -cE 'LDL|STL' "$LOGS/moe_ffn.sm_90.sass") local-memory instructions"
  fi
  # The Hopper kernels; ptxas says here if it serialized the wgmma (a C7510-style warning).
  timeout 120 nvcc -cubin -arch=sm_90a -O3 -Xptxas -v -o "$LOGS/moe_ffn_sm90.sm_90a.cubin" \
    expert-worker/src/main/cuda/moe_ffn_sm90.cu 2>&1 | tee "$LOGS/moe_ffn_sm90.ptxas.log" | grep -E "Compiling entry|registers|spill" | paste - - - \
    | sed -E "s/.*entry function '([^']*)'.* ([0-9]+) bytes spill stores.*Used ([0-9]+) registers.*/  \1: \3 registers, \2 bytes spilled/"
  grep -iE "warning|serializ" "$LOGS/moe_ffn_sm90.ptxas.log" | sed 's/^/  ptxas: /'
  if command -v cuobjdump >/dev/null 2>&1; then
    cuobjdump --dump-sass "$LOGS/moe_ffn_sm90.sm_90a.cubin" > "$LOGS/moe_ffn_sm90.sm_90a.sass" 2>&1
    echo "  SASS (sm_90a): $(grep -c HGMMA "$LOGS/moe_ffn_sm90.sm_90a.sass") HGMMA, $(grep -c UTMALDG "$LOGS/moe_ffn_sm90.sm_90a.sass") UTMALDG, $(grep -c SYNCS "$LOGS/moe_ffn_sm90.sm_90a.sass") SYNCS, $(grep -cE 'LDL|STL' "$LOGS/moe_ffn_sm90.sm_90a.sass") local-memory instructions"
  fi
fi

echo
echo "== (b) torch.matmul (bf16) and torch._scaled_mm (fp8) on the same shapes =="
timeout 150 python3 bench/gpu/torch_ffn.py "$LOGS/torch.tsv" 2>&1 | tail -n 20 || echo "torch_ffn.py failed or timed out"

echo
timeout 240 "${JAVA[@]}" -Xmx48g dev.moecluster.worker.cuda.DeviceCheck --torch "$LOGS/torch.tsv" 2>&1 \
  | grep -v "^WARNING: Using incubator" | tee "$LOGS/devicecheck.log"
status=${PIPESTATUS[0]}
[[ $status -eq 124 ]] && echo "check.sh: DeviceCheck timed out after 240 s"

fi

echo
echo "== (c) MoeForward through a local cluster of cuda workers, checked against the in-process reference =="
# Llama 4 Scout's expert shape (2 MoE layers of 8 experts, 4 GiB of bf16 weights, generated here);
# the in-process side is the cpu reference on this machine's cores.
timeout 240 "${JAVA[@]}" -Xmx64g -Djava.io.tmpdir="$KIT" dev.moecluster.cli.Moe bench moe-layer --backend cuda \
  --hidden 5120 --intermediate 8192 --experts 8 --workers 2 --tokens 256 --requests 20 --warmup 5 --concurrency 4 2>&1 \
  | grep -vE "^WARNING|^\s+at " | tee "$LOGS/cluster.log"
cluster=${PIPESTATUS[0]}
[[ $cluster -eq 124 ]] && echo "check.sh: the cluster check timed out after 240 s"
if [[ $cluster -ne 0 ]]; then
  echo "RESULT: cluster check FAIL (exit $cluster)"
  [[ $status -eq 0 ]] && status=$cluster
else
  echo "RESULT: cluster check PASS"
fi
exit "$status"

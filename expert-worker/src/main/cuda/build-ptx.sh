#!/usr/bin/env bash
# Compiles the kernels to PTX: the one place that names nvcc's flags, used by the Maven build (profile
# cuda-ptx), by PtxFreshnessTest and by hand. Usage: build-ptx.sh OUT_DIR (writes OUT_DIR/moe_ffn.ptx
# and OUT_DIR/moe_ffn_sm90a.ptx).
#
# moe_ffn.ptx, compute_80: mma.sync with bf16 operands, ldmatrix and cp.async are sm_80 instructions,
# and the driver compiles the PTX for the GPU it runs on when cuModuleLoadData loads it, so one file
# serves Ampere, Ada, Hopper and later: the fallback everywhere.
# moe_ffn_sm90a.ptx, sm_90a: wgmma, TMA (cp.async.bulk.tensor), mbarrier transaction counts and
# setmaxnreg exist only on the "a" (architecture-specific) target, whose PTX loads on compute
# capability 9.0 alone; the backend loads it there (FfnKernels).
# No -lineinfo: it would write this machine's source path into the PTX.
set -euo pipefail
out="$(realpath -m "${1:?usage: build-ptx.sh OUT_DIR}")"
mkdir -p "$out"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
nvcc="${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}"
cd "$here"   # a relative source name keeps the PTX free of absolute paths
"$nvcc" -ptx -arch=compute_80 -std=c++17 -O3 -o "$out/moe_ffn.ptx" moe_ffn.cu
"$nvcc" -ptx -arch=sm_90a -std=c++17 -O3 -o "$out/moe_ffn_sm90a.ptx" moe_ffn_sm90.cu

#!/usr/bin/env bash
# Compiles dense.cu (the dense model's device kernels) to PTX: the one place that names nvcc's flags,
# used by DensePtxFreshnessTest and by hand. Usage: build-ptx.sh OUT.ptx
#
# compute_80 PTX, as expert-worker's moe_ffn.ptx: the driver compiles it for the GPU it runs on
# (sm_90 on H100/H200) when cuModuleLoadData loads it. No -lineinfo: it would write this machine's
# source path into the PTX.
set -euo pipefail
out="$(realpath -m "${1:?usage: build-ptx.sh OUT.ptx}")"
mkdir -p "$(dirname "$out")"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
nvcc="${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}"
cd "$here"   # a relative source name keeps the PTX free of absolute paths
"$nvcc" -ptx -arch=compute_80 -std=c++17 -O3 -o "$out" dense.cu

#!/usr/bin/env bash
# Builds bench/gpu/dense_check.cu (the dense kernels' device check, issue 12) into OUT with nvcc:
# sm_90 machine code for H100/H200 plus compute_80 PTX for any other GPU of sm_80 or later, the CUDA
# runtime and libstdc++ linked statically, so the GPU machine needs only its driver and glibc. Usage: build-dense-check.sh OUT
set -euo pipefail
out="$(realpath -m "${1:?usage: build-dense-check.sh OUT}")"
mkdir -p "$(dirname "$out")"
cd "$(dirname "${BASH_SOURCE[0]}")"
nvcc="${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}"
"$nvcc" -O3 -std=c++17 -cudart static -Xcompiler -static-libstdc++,-static-libgcc -gencode arch=compute_90,code=sm_90 -gencode arch=compute_80,code=compute_80 \
  -o "$out" dense_check.cu

#!/usr/bin/env bash
# Builds the experimental AVX2/FMA GEMM into bench/native/build/libmoegemm.so.
# Needs gcc and a CPU with AVX2 and FMA. -mavx2 -mfma rather than -march=native so the library does
# not pick up AVX-512 on a machine that has it: the point is to compare like with like.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "$here/build"
gcc -O3 -mavx2 -mfma -fPIC -shared -std=c11 -Wall -Wextra \
    -o "$here/build/libmoegemm.so" "$here/moe_gemm_avx2.c"
echo "$here/build/libmoegemm.so"

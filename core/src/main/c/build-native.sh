#!/usr/bin/env bash
# Builds core's native GEMM (moe_gemm.c) into the library the jar carries:
#   core/src/main/c/build-native.sh [OUT]   (default: core/src/main/resources/native/linux-x86_64/libmoegemm.so)
# and writes OUT.source next to it: the source's SHA-256 and the compiler that built it, which
# NativeGemmFreshnessTest checks. Commit both. No -march: the kernels pick AVX2/FMA by function
# attribute, and moe_gemm_isa() says at run time whether the CPU has them.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/../resources/native/linux-x86_64/libmoegemm.so}"
mkdir -p "$(dirname "$out")"
gcc -O3 -fPIC -shared -std=c11 -Wall -Wextra -Werror -Wl,--build-id=none -o "$out" "$here/moe_gemm.c"
{
    echo "sha256 $(sha256sum "$here/moe_gemm.c" | cut -d' ' -f1)"
    echo "compiler $(gcc --version | head -1)"
} > "$out.source"
echo "$out"

#!/usr/bin/python3
"""The expert FFN of bench/.../ExpertFfnBenchmark in PyTorch, for the ours/torch ratio in RESULTS.md.

SwiGLU down(silu(gate(x)) * up(x)) with H=2048, I=5632, weights in Linear layout [out, in], and x in
the same dtype as the weights, as transformers runs it. Prints GFLOP/s (6*rows*H*I per FFN) per
(dtype, rows): the median over samples, with the slowest and fastest sample as the spread.

Use Debian's torch: /usr/bin/python3 bench/torch_ffn.py [--threads 2] [--rows 1,16,256] [--dtypes bf16,f32]
or PyTorch 2.13 from the local wheel store in a venv. --clock cpu times by this thread's CPU time
(time.thread_time) rather than wall time: with --threads 1 torch computes on the calling thread, so
this matches bench/run-kernel-bench.sh cpu-time on a machine shared with other work.
"""
import argparse
import os
import statistics
import time

import torch
import torch.nn.functional as F

HIDDEN = 2048
INTERMEDIATE = 5632
DTYPES = {"bf16": torch.bfloat16, "f32": torch.float32}


def flops(rows):
    return 2.0 * rows * 3 * HIDDEN * INTERMEDIATE


def cpu_flags():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    return set()


def loaded_blas():
    with open("/proc/self/maps") as f:
        paths = {line.split()[-1] for line in f if "blas" in line}
    return ", ".join(sorted(paths)) or "none mapped"


def ffn(x, gate, up, down):
    return F.linear(F.silu(F.linear(x, gate)) * F.linear(x, up), down)


CLOCK = time.perf_counter


def measure(dtype, rows, samples, min_sample_s, max_total_s):
    g = torch.Generator().manual_seed(0)
    bound = HIDDEN ** -0.5
    gate = ((torch.rand(INTERMEDIATE, HIDDEN, generator=g) * 2 - 1) * bound).to(dtype)
    up = ((torch.rand(INTERMEDIATE, HIDDEN, generator=g) * 2 - 1) * bound).to(dtype)
    down = ((torch.rand(HIDDEN, INTERMEDIATE, generator=g) * 2 - 1) * INTERMEDIATE ** -0.5).to(dtype)
    x = (torch.rand(rows, HIDDEN, generator=g) * 2 - 1).to(dtype)
    with torch.inference_mode():
        start = CLOCK()
        ffn(x, gate, up, down)  # warm-up; also sizes the samples
        first = CLOCK() - start
        calls = max(1, int(min_sample_s / max(first, 1e-6)))
        # Slow configurations (the bf16 fallback takes seconds per FFN) get fewer samples, never fewer than 3.
        samples = max(3, min(samples, int(max_total_s / (first * calls))))
        for _ in range(calls):
            ffn(x, gate, up, down)
        rates = []
        for _ in range(samples):
            start = CLOCK()
            for _ in range(calls):
                ffn(x, gate, up, down)
            elapsed = (CLOCK() - start) / calls
            rates.append(flops(rows) / elapsed / 1e9)
    return statistics.median(rates), min(rates), max(rates), samples, calls


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rows", default="1,16,256")
    p.add_argument("--dtypes", default="bf16,f32")
    p.add_argument("--samples", type=int, default=10)
    p.add_argument("--min-sample-s", type=float, default=1.0, help="each sample repeats the FFN for at least this long")
    p.add_argument("--max-total-s", type=float, default=60.0, help="cap on measuring time per configuration")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="wall: time.perf_counter; cpu: this thread's CPU time (use with --threads 1)")
    a = p.parse_args()
    global CLOCK
    CLOCK = time.thread_time if a.clock == "cpu" else time.perf_counter

    torch.set_num_threads(a.threads)
    flags = cpu_flags()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"mkldnn available {torch.backends.mkldnn.is_available()}")
    print("cpu flags: " + " ".join(sorted(f for f in flags if f in ("avx2", "fma", "f16c") or f.startswith("avx512")
                                          or f.startswith("amx"))))
    print(f"avx512_bf16 present: {'avx512_bf16' in flags} (torch uses oneDNN for bf16 matmul only with AVX-512)")
    print(f"BLAS mapped: {loaded_blas()}")
    print(f"LD_LIBRARY_PATH={os.environ.get('LD_LIBRARY_PATH', '')}")
    print(f"clock {a.clock}; load average {open('/proc/loadavg').read().strip()}")
    print(f"Expert FFN H={HIDDEN} I={INTERMEDIATE}; GFLOP/s = 6*rows*H*I / time; median [min, max] over samples")
    print(f"{'dtype':5} {'rows':>5} {'GFLOP/s':>9} {'min':>8} {'max':>8} {'ms/FFN':>10} {'samples':>8} {'calls':>6}")
    for name in a.dtypes.split(","):
        for rows in (int(r) for r in a.rows.split(",")):
            med, lo, hi, samples, calls = measure(DTYPES[name], rows, a.samples, a.min_sample_s, a.max_total_s)
            print(f"{name:5} {rows:5d} {med:9.2f} {lo:8.2f} {hi:8.2f} {flops(rows) / med / 1e6:10.2f} {samples:8d} {calls:6d}",
                  flush=True)


if __name__ == "__main__":
    main()

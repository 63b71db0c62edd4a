"""torch's side of the device check: the expert-FFN shapes of DeviceCheck through torch.matmul.

For 8 experts x {16, 256, 2048} rows at hidden 5120 / intermediate 8192 (Llama 4 Scout), bf16 on the
GPU, times (1) the two matmuls per expert alone, x @ gate_up^T and act @ down^T ("torch_matmul"), and
(2) the whole FFN with silu(gate) * up in between ("torch_ffn"), and (3) where the GPU has fp8 tensor
cores (compute capability 8.9 or later), the same two matmuls in fp8 e4m3 through torch._scaled_mm with
per-row activation scales and per-output-channel weight scales, bf16 out ("torch_scaled_mm": the
reference an fp8 expert kernel is measured against; tensor-wide scales where this torch has no rowwise
scaling), with CUDA events, median of repeats after warm-up, random inputs. Writes TSV lines
"name<TAB>rows<TAB>ms<TAB>tflops" to the file named by the first argument; prints why if torch or a GPU
is missing, and exits 0 either way.
"""
import statistics
import sys

HIDDEN, INTER, EXPERTS = 5120, 8192, 8
ROWS = (16, 256, 2048)
WARMUP, REPS = 3, 20


def quantize_rows(t, torch):
    """e4m3 values and f32 scales, one per row: row / scale fits e4m3's +-448."""
    scale = t.float().abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 448.0
    return (t.float() / scale).to(torch.float8_e4m3fn), scale


def time_ms(fn, torch):
    times = []
    for rep in range(WARMUP + REPS):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        if rep >= WARMUP:
            times.append(start.elapsed_time(end))
    return statistics.median(times)


def main(out_path):
    try:
        import torch
    except ImportError as e:
        print(f"torch: not available ({e}); the table shows n/a for torch")
        return
    if not torch.cuda.is_available():
        print("torch: no CUDA device visible; the table shows n/a for torch")
        return
    dev = torch.device("cuda")
    torch.manual_seed(0)
    print(f"torch {torch.__version__} on {torch.cuda.get_device_name(0)}")
    bf16 = torch.bfloat16
    gate_up = [torch.empty(2 * INTER, HIDDEN, device=dev, dtype=bf16).uniform_(-1, 1) * (3 / HIDDEN) ** 0.5
               for _ in range(EXPERTS)]
    down = [torch.empty(HIDDEN, INTER, device=dev, dtype=bf16).uniform_(-1, 1) * (3 / INTER) ** 0.5
            for _ in range(EXPERTS)]
    lines = []
    for rows in ROWS:
        x = [torch.empty(rows, HIDDEN, device=dev, dtype=bf16).uniform_(-1, 1) for _ in range(EXPERTS)]
        act = [torch.empty(rows, INTER, device=dev, dtype=bf16).uniform_(-1, 1) for _ in range(EXPERTS)]

        def matmuls():
            for e in range(EXPERTS):
                torch.matmul(x[e], gate_up[e].t())
                torch.matmul(act[e], down[e].t())

        def ffn():
            for e in range(EXPERTS):
                h = torch.matmul(x[e], gate_up[e].t())
                a = torch.nn.functional.silu(h[:, :INTER]) * h[:, INTER:]
                torch.matmul(a, down[e].t())

        flops = 6.0 * EXPERTS * rows * HIDDEN * INTER
        timed = [("torch_matmul", matmuls), ("torch_ffn", ffn)]
        fp8 = fp8_matmuls(torch, rows, x, act, gate_up, down)
        if fp8 is not None:
            timed.append(("torch_scaled_mm", fp8))
        for name, fn in timed:
            ms = time_ms(fn, torch)
            tflops = flops / ms / 1e9
            print(f"{name:15s} rows/expert {rows:5d}: {ms:8.3f} ms = {tflops:6.1f} TFLOP/s")
            lines.append(f"{name}\t{rows}\t{ms:.4f}\t{tflops:.2f}")
        del x, act
    with open(out_path, "w") as f:
        f.write("\n".join(lines) + "\n")


def fp8_matmuls(torch, rows, x, act, gate_up, down):
    """The two matmuls per expert in fp8 through torch._scaled_mm, or None (printing why) where unavailable."""
    if torch.cuda.get_device_capability() < (8, 9) or not hasattr(torch, "_scaled_mm"):
        if rows == ROWS[0]:
            print("torch._scaled_mm: needs fp8 tensor cores (compute capability 8.9+) and torch 2.1+; skipped")
        return None
    bf16 = torch.bfloat16
    xq = [quantize_rows(t, torch) for t in x]
    aq = [quantize_rows(t, torch) for t in act]
    # Weights [N, K] quantized per output channel; _scaled_mm takes B column-major, so pass w.t().
    guq = [quantize_rows(w, torch) for w in gate_up]
    dnq = [quantize_rows(w, torch) for w in down]

    def rowwise(a, b):
        return torch._scaled_mm(a[0], b[0].t(), scale_a=a[1], scale_b=b[1].t(), out_dtype=bf16)

    def tensorwise(a, b):
        one = torch.ones((), device=a[0].device, dtype=torch.float32)
        return torch._scaled_mm(a[0], b[0].t(), scale_a=one, scale_b=one, out_dtype=bf16)

    mm = rowwise
    try:
        mm(xq[0], guq[0])
    except (RuntimeError, TypeError) as e:
        if rows == ROWS[0]:
            print(f"torch._scaled_mm: no rowwise scaling here ({str(e).splitlines()[0]}); timing tensor-wide scales")
        mm = tensorwise
        try:
            mm(xq[0], guq[0])
        except (RuntimeError, TypeError) as e2:
            print(f"torch._scaled_mm failed ({str(e2).splitlines()[0]}); skipped")
            return None
    if rows == ROWS[0]:
        ref = torch.matmul(x[0], gate_up[0].t()).float()
        got = mm(xq[0], guq[0]).float()
        print(f"torch._scaled_mm ({mm.__name__} scales) vs bf16 matmul, rel. error {((got - ref).norm() / ref.norm()).item():.2e}")

    def run():
        for e in range(EXPERTS):
            mm(xq[e], guq[e])
            mm(aq[e], dnq[e])

    return run


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "torch.tsv")

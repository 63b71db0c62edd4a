"""torch's side of the device check: the expert-FFN shapes of DeviceCheck through torch.matmul.

For 8 experts x {16, 256, 2048} rows at hidden 5120 / intermediate 8192 (Llama 4 Scout), bf16 on the
GPU, times (1) the two matmuls per expert alone, x @ gate_up^T and act @ down^T ("torch_matmul"), and
(2) the whole FFN with silu(gate) * up in between ("torch_ffn"), with CUDA events, median of repeats
after warm-up, random inputs. Writes TSV lines "name<TAB>rows<TAB>ms<TAB>tflops" to the file named by
the first argument; prints why if torch or a GPU is missing, and exits 0 either way.
"""
import statistics
import sys

HIDDEN, INTER, EXPERTS = 5120, 8192, 8
ROWS = (16, 256, 2048)
WARMUP, REPS = 3, 20


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
        for name, fn in (("torch_matmul", matmuls), ("torch_ffn", ffn)):
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
            ms = statistics.median(times)
            tflops = flops / ms / 1e9
            print(f"{name:12s} rows/expert {rows:5d}: {ms:8.3f} ms = {tflops:6.1f} TFLOP/s")
            lines.append(f"{name}\t{rows}\t{ms:.4f}\t{tflops:.2f}")
        del x, act
    with open(out_path, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "torch.tsv")

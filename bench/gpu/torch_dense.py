"""torch's side of the router's device check (issue 12): decode attention through PyTorch eager.

At Llama 4 Scout's attention shape (40 query heads, 8 kv heads, head_dim 128, bf16), batch 1, 16 and 64
with 2,048 cached tokens each: torch.nn.functional.scaled_dot_product_attention of one query token
against contiguous k/v with enable_gqa=True (eager has no paged cache; this is the work dense_check's
kv write + split-K attention + combine do for one layer), CUDA events, median of repeats after warm-up.
Writes TSV lines "sdpa_decode<TAB>batch<TAB>context<TAB>microseconds" to the file named by the first
argument; prints why if torch or a GPU is missing, and exits 0 either way.
"""
import statistics
import sys

HEADS, KV_HEADS, HEAD_DIM, CONTEXT = 40, 8, 128, 2048
BATCHES = (1, 16, 64)
WARMUP, REPS, INNER = 5, 15, 20


def main(out_path):
    try:
        import torch
        import torch.nn.functional as F
    except ImportError as e:
        print(f"torch: not available ({e}); the table shows - for torch")
        return
    if not torch.cuda.is_available():
        print("torch: no CUDA device visible; the table shows - for torch")
        return
    dev = torch.device("cuda")
    torch.manual_seed(0)
    print(f"torch {torch.__version__} on {torch.cuda.get_device_name(0)}")
    lines = []
    for batch in BATCHES:
        q = torch.randn(batch, HEADS, 1, HEAD_DIM, device=dev, dtype=torch.bfloat16)
        k = torch.randn(batch, KV_HEADS, CONTEXT, HEAD_DIM, device=dev, dtype=torch.bfloat16)
        v = torch.randn(batch, KV_HEADS, CONTEXT, HEAD_DIM, device=dev, dtype=torch.bfloat16)

        def step():
            return F.scaled_dot_product_attention(q, k, v, enable_gqa=True)

        for _ in range(WARMUP):
            step()
        times = []
        for _ in range(REPS):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(INNER):
                step()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) * 1000 / INNER)
        us = statistics.median(times)
        print(f"  sdpa decode batch {batch:3d} context {CONTEXT}: {us:8.1f} us")
        lines.append(f"sdpa_decode\t{batch}\t{CONTEXT}\t{us:.2f}")
    with open(out_path, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/torch_dense.tsv")

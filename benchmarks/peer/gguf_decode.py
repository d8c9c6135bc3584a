"""Peer for `weft generate` on a GGUF model: Hugging Face transformers (PyTorch CPU) loading
the same file (`from_pretrained(dir, gguf_file=...)`, dequantised to f32 like weft's import).

    python gguf_decode.py MODEL.gguf --threads 2 --new 64 --prompt-out prompt512.txt

Prints one JSON line:
- `decode_tokens_per_s`: greedy decoding with transformers' KV cache, (N - 1) new tokens
  over the time of generate(N) minus generate(1) (the prefill), as weft counts it;
- `prefill_512_s`: one forward of a 512-token prompt keeping only the last position's
  logits (`logits_to_keep=1`, what generation needs);
- `forward_512_s`: the same forward with all 512 × vocab logits;
- `greedy`: the continuation of "The capital of France is" (6 tokens).
Each time is the median of `--repeats` runs after one warm-up. `--prompt-out` writes the
512-token prompt text so weft can be given the same tokens.
"""

import argparse
import json
import os
import statistics
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("gguf")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--new", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--prompt-out")
    ap.add_argument("--source", help="text to cut the 512-token prompt from")
    a = ap.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    import transformers

    torch.set_num_threads(a.threads)
    d, f = os.path.split(os.path.abspath(a.gguf))
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, torch_dtype=torch.float32)
    model.eval()

    def timed(fn):
        fn()
        ts = []
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return statistics.median(ts)

    ids = tok("The capital of France is", return_tensors="pt").input_ids
    gen = dict(do_sample=False, pad_token_id=tok.eos_token_id)
    with torch.inference_mode():
        out = model.generate(ids, max_new_tokens=6, **gen)
        greedy = tok.decode(out[0, ids.shape[1]:])
        one = timed(lambda: model.generate(ids, max_new_tokens=1, min_new_tokens=1, **gen))
        full = timed(
            lambda: model.generate(ids, max_new_tokens=a.new, min_new_tokens=a.new, **gen)
        )
    decode_tps = (a.new - 1) / (full - one)

    text = open(a.source).read() if a.source else ("The quick brown fox jumps over the lazy dog. " * 200)
    long_ids = tok(text, return_tensors="pt").input_ids[:, :512]
    prompt = tok.decode(long_ids[0])
    again = tok(prompt, return_tensors="pt").input_ids
    if again.shape[1] != 512:
        sys.exit(f"the 512-token prompt re-tokenizes to {again.shape[1]} tokens")
    if a.prompt_out:
        with open(a.prompt_out, "w") as fh:
            fh.write(prompt)
    with torch.inference_mode():
        prefill = timed(lambda: model(again, logits_to_keep=1))
        forward = timed(lambda: model(again))

    print(
        json.dumps(
            {
                "peer": "transformers",
                "transformers": transformers.__version__,
                "torch": torch.__version__,
                "threads": a.threads,
                "greedy": greedy,
                "decode_new_tokens": a.new,
                "decode_tokens_per_s": round(decode_tps, 2),
                "prefill_512_s": round(prefill, 3),
                "forward_512_s": round(forward, 3),
            }
        )
    )


if __name__ == "__main__":
    main()

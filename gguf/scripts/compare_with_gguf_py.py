#!/usr/bin/env python3
"""Checks weft-gguf against the `gguf` Python package on a real model file: every tensor is
dequantised by both (ours through the `gguf_dump` example) and compared bit for bit.

    cargo build --release -p weft-gguf --example gguf_dump
    venv/bin/python gguf/scripts/compare_with_gguf_py.py MODEL.gguf target/release/examples/gguf_dump
"""

import os
import subprocess
import sys
import tempfile

import numpy as np
from gguf import GGUFReader, quants


def main(path, exe):
    reader = GGUFReader(path)
    worst, failed = 0, 0
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "t.f32")
        for t in reader.tensors:
            subprocess.run([exe, path, t.name, out], check=True, capture_output=True)
            ours = np.fromfile(out, dtype="<f4")
            ref = quants.dequantize(t.data, t.tensor_type).astype(np.float32).reshape(-1)
            if ours.size != ref.size:
                print(f"{t.name}: {ours.size} values, gguf-py has {ref.size}")
                failed += 1
                continue
            diff = int(np.count_nonzero(ours.view(np.uint32) != ref.view(np.uint32)))
            if diff:
                print(f"{t.name} ({t.tensor_type.name}): {diff} of {ref.size} values differ")
                failed += 1
            worst = max(worst, diff)
    print(f"{len(reader.tensors)} tensors compared bit for bit; {failed} differ "
          f"(most differing values in one tensor: {worst})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))

#!/usr/bin/env python3
"""Makes the Fashion-MNIST subset that candletop compiles into its binary (`--data embedded`).

Takes a stratified, seeded sample of the full dataset (as installed by Debian's
`dataset-fashion-mnist` package) and writes it as gzipped IDX files beside this script.
Pure standard library, deterministic: running it again gives the same bytes.

    python3 assets/make_embedded_subset.py [SOURCE_DIR]
"""

import gzip
import random
import struct
import sys
from pathlib import Path

SOURCE = Path(sys.argv[1] if len(sys.argv) > 1 else "/usr/share/datasets/fashion-mnist")
OUT = Path(__file__).resolve().parent / "fashion-mnist-subset"
PER_CLASS = {"train": 1000, "t10k": 200}
SEED = 20261127


def read_idx(path):
    data = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
    rank = data[3]
    dims = struct.unpack(">" + "I" * rank, data[4 : 4 + 4 * rank])
    return dims, data[4 + 4 * rank :]


def write_idx(path, dims, payload):
    header = bytes([0, 0, 8, len(dims)]) + struct.pack(">" + "I" * len(dims), *dims)
    # mtime=0 keeps the output byte-for-byte reproducible.
    with open(path, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", compresslevel=9, mtime=0) as g:
        g.write(header + payload)


def main():
    OUT.mkdir(exist_ok=True)
    rng = random.Random(SEED)
    for split, per_class in PER_CLASS.items():
        (n, h, w), pixels = read_idx(SOURCE / f"{split}-images-idx3-ubyte.gz")
        (_,), labels = read_idx(SOURCE / f"{split}-labels-idx1-ubyte.gz")
        chosen = []
        for c in range(10):
            members = [i for i in range(n) if labels[i] == c]
            chosen += rng.sample(members, per_class)
        chosen.sort()
        size = h * w
        images = b"".join(pixels[i * size : (i + 1) * size] for i in chosen)
        write_idx(OUT / f"{split}-images-idx3-ubyte.gz", (len(chosen), h, w), images)
        write_idx(OUT / f"{split}-labels-idx1-ubyte.gz", (len(chosen),), bytes(labels[i] for i in chosen))
        print(f"{split}: {len(chosen)} images ({per_class} per class)")


if __name__ == "__main__":
    main()

"""What recording one epoch of a user's run costs: `Recorder.epoch` on 10,000 target and 10,000 source points in two
feature spaces (512-d and 2048-d), on the CPU, median of --repeats epochs (each written to the run folder).

    python bench/record_overhead.py [--classes 31] [--repeats 5] [--threads N]

The recorder runs only when the loop calls it: it adds nothing to the training steps themselves.
"""
import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from sdrc.record import Recorder


def inputs(n: int, k: int, dims: tuple[int, ...], seed: int):
    "Features with some class structure, labels and logits, as a loop would hand them over."
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, k, (n,), generator=g)
    feats = [torch.randn(k, d, generator=g)[y] * 2 + torch.randn(n, d, generator=g) for d in dims]
    logits = torch.nn.functional.one_hot(y, k).float() * 3 + torch.randn(n, k, generator=g)
    return feats, y, logits


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=10_000)
    parser.add_argument("--classes", type=int, default=31)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dims = (2048, 512)
    feats_s, y_s, _ = inputs(args.points, args.classes, dims, 0)
    feats_t, y_t, logits_t = inputs(args.points, args.classes, dims, 1)
    seconds = []
    with tempfile.TemporaryDirectory() as tmp, Recorder(Path(tmp) / "run", [str(c) for c in range(args.classes)]) as rec:
        for epoch in range(args.repeats + 1):  # the first epoch warms up (allocations, first K-means)
            start = time.perf_counter()
            rec.epoch(epoch, source=(feats_s, y_s), target=(feats_t, logits_t), target_labels=y_t)
            seconds.append(time.perf_counter() - start)
    timed = seconds[1:]
    print(f"Recorder.epoch, {args.points:,} target + {args.points:,} source points, spaces {dims}, K = {args.classes}, "
          f"{torch.get_num_threads()} threads: median {statistics.median(timed):.2f} s "
          f"(min {min(timed):.2f}, max {max(timed):.2f}, first epoch {seconds[0]:.2f} s)")


if __name__ == "__main__":
    main()

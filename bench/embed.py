"""Seconds per epoch of the aligned UMAP layouts at 5,000 points, the effect of alignment, and the explorer's epoch switch.

Builds a synthetic run record (no training): 5,000 target and 500 source points in a 128-d space whose 10
clusters tighten epoch by epoch, then
  (a) times `embed_run(method="umap")` per epoch (the first epoch, which compiles numba code, reported apart),
  (b) compares the mean point displacement between consecutive epochs with and without Procrustes alignment,
  (c) times a `ClusterExplorer` epoch switch (setting the slider), median over repeated switches.
Targets: (a) <= 5 s per epoch after the first on 2 cores; (c) <= 100 ms per switch.

    python bench/embed.py [--points 5000] [--epochs 6] [--threads 2]
"""
import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from sdrc.snapshots import EpochRecord, RunRecord, RunWriter
from sdrc.viz import ClusterExplorer, embed_run, mean_displacement, pca_2d, umap_2d


def synthetic_run(folder: Path, n: int, epochs: int, k: int = 10, dim: int = 128, seed: int = 0) -> RunRecord:
    "A run folder whose target clusters tighten over the epochs."
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dim)) * 3
    y, ys = rng.integers(0, k, n), rng.integers(0, k, 500)
    noise, noise_s = rng.normal(size=(n, dim)), rng.normal(size=(500, dim))
    writer = RunWriter.create(folder, {"config": {"method": "synthetic"}, "classes": [str(c) for c in range(k)]})
    for e in range(epochs):
        spread = 3.0 / (1 + e)
        feats, feats_s = centres[y] + spread * noise, centres[ys] + spread * noise_s
        p = np.full((n, k), 0.1 / (k - 1))
        p[np.arange(n), y] = 0.9
        record = EpochRecord(target_index=np.arange(n), target_y=y, target_p=p, target_q=p, target_pred=y, target_cluster=y,
                             source_index=np.arange(500), source_y=ys, source_weight=np.ones(500), target_feat=[feats],
                             source_feat=[feats_s], target_phat=[p], centres=[centres])
        writer.add_epoch(e, dict(acc_f=0.9, acc_centre_0=0.9, cluster_acc=0.9, entropy_p=0.5, entropy_q=0.5), record)
    return RunRecord.open(folder)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    folder = Path(tempfile.mkdtemp()) / "run"
    run = synthetic_run(folder, args.points, args.epochs)

    times = []
    for e in range(1, args.epochs + 1):  # embed one more epoch at a time: the cache holds the earlier ones
        partial = RunRecord(run.folder, run.meta, run.epochs)
        partial.epoch_numbers = lambda e=e: list(range(e))
        start = time.perf_counter()
        emb = embed_run(partial, space=0, method="umap", progress=False)
        times.append(time.perf_counter() - start)
    print(f"(a) UMAP, {args.points} target + 500 source points, {torch.get_num_threads()} threads")
    print(f"    first epoch (includes numba compilation): {times[0]:.1f} s")
    print(f"    later epochs, each started from the previous layout: median {statistics.median(times[1:]):.2f} s "
          f"(min {min(times[1:]):.2f}, max {max(times[1:]):.2f})")

    raw = np.stack([umap_2d(run.record(e).target_feat[0].astype(np.float32)) for e in range(min(3, args.epochs))])
    print("(b) mean displacement between consecutive epochs, in units of the layout's spread")
    print(f"    aligned UMAP (init + Procrustes): {mean_displacement(emb.coords[:3, :emb.n_target]):.3f}")
    print(f"    independent UMAP per epoch:       {mean_displacement(raw):.3f}")
    pca = np.stack([pca_2d(run.record(e).target_feat[0].astype(np.float32)) for e in range(args.epochs)])
    print(f"    independent PCA per epoch:        {mean_displacement(pca):.3f}")

    explorer = ClusterExplorer(run, space=0, embedding=emb)
    switches = []
    for i in range(30):
        start = time.perf_counter()
        explorer.slider.value = i % args.epochs
        switches.append((time.perf_counter() - start) * 1e3)
    print(f"(c) explorer epoch switch at {args.points} points: median {statistics.median(switches):.1f} ms "
          f"(max {max(switches):.1f} ms)")


if __name__ == "__main__":
    main()

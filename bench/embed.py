"""The viewers' speed: UMAP layouts per epoch, alignment, the explorer's epoch switch (one run and two side by side),
and how soon a followed run shows an epoch after it is written.

Builds synthetic run records (no training): 2,048 target and 500 source points in a 128-d space whose 10 clusters
tighten epoch by epoch, then measures
  (a) `embed_run(method="umap")` per epoch, warm (the first epoch, which compiles numba code, reported apart);
  (b) the mean point displacement between consecutive epochs with and without Procrustes alignment;
  (c) a `ClusterExplorer` epoch switch (setting the slider), median over repeated switches;
  (d) the same with two runs side by side;
  (e) for `ClusterExplorer(follow=True)` (UMAP, polling every 0.5 s): seconds from an epoch's record being written
      to the explorer's slider reaching it, median over the epochs written while it follows.
Targets on the 2-core machine: (a) <= 5 s, (c) <= 100 ms, (d) <= 150 ms, (e) <= 2 s.

    python bench/embed.py [--points 2048] [--epochs 6] [--threads 2]
"""
import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from sdrc.explorer import ClusterExplorer
from sdrc.snapshots import EpochRecord, RunRecord, RunWriter
from sdrc.viz import embed_run, mean_displacement, pca_2d, procrustes_align, umap_2d


class SyntheticRun:
    "A run folder whose target clusters tighten over the epochs, written one epoch at a time."

    def __init__(self, folder: Path, n: int, epochs: int, k: int = 10, dim: int = 128, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.k, self.n, self.rng = k, n, rng
        self.centres = rng.normal(size=(k, dim)) * 3
        self.y, self.ys = rng.integers(0, k, n), rng.integers(0, k, 500)
        self.noise, self.noise_s = rng.normal(size=(n, dim)), rng.normal(size=(500, dim))
        meta = {"config": {"method": "synthetic", "epochs": epochs}, "classes": [str(c) for c in range(k)],
                "data": {"source_train": {"name": "source"}, "target_train": {"name": "target"}}}
        self.writer = RunWriter.create(folder, meta)

    def write(self, e: int) -> None:
        spread = 3.0 / (1 + e)
        feats, feats_s = self.centres[self.y] + spread * self.noise, self.centres[self.ys] + spread * self.noise_s
        p = np.full((self.n, self.k), 0.1 / (self.k - 1))
        p[np.arange(self.n), self.y] = 0.9
        record = EpochRecord(target_index=np.arange(self.n), target_y=self.y, target_p=p, target_q=p, target_pred=self.y,
                             target_cluster=self.y, source_index=np.arange(500), source_y=self.ys,
                             source_weight=np.ones(500), target_feat=[feats], source_feat=[feats_s], target_phat=[p],
                             centres=[self.centres])
        self.writer.add_epoch(e, dict(acc_f=0.9, acc_centre_0=0.9, cluster_acc=0.9, entropy_p=0.5, entropy_q=0.5,
                                      pred_sizes=[0.1] * self.k, collapsed=False), record)


def switch_ms(explorer: ClusterExplorer, epochs: int, repeats: int = 30) -> float:
    "Median milliseconds of one epoch switch of the explorer."
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        explorer.slider.value = i % epochs
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=2048)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    root = Path(tempfile.mkdtemp())
    synthetic = SyntheticRun(root / "a", args.points, args.epochs)
    for e in range(args.epochs):
        synthetic.write(e)
    synthetic.writer.close()
    run = RunRecord.open(root / "a")

    times = []
    for e in range(1, args.epochs + 1):  # embed one more epoch at a time: the cache holds the earlier ones
        partial = RunRecord(run.folder, run.meta, run.epochs[:e])
        start = time.perf_counter()
        emb = embed_run(partial, space=0, method="umap", progress=False)
        times.append(time.perf_counter() - start)
    print(f"(a) UMAP layout of {args.points} + 500 points: first epoch {times[0]:.1f} s (with numba's compilation), "
          f"then a median {statistics.median(times[1:]):.2f} s per epoch (max {max(times[1:]):.2f} s)")

    raw = np.stack([umap_2d(run.record(e).target_feat[0].astype(np.float32)) for e in range(min(3, args.epochs))])
    aligned = emb.coords[:min(3, args.epochs), :args.points]
    print(f"(b) mean displacement between epochs: {mean_displacement(aligned):.2f} aligned, {mean_displacement(raw):.2f} "
          f"independent UMAPs (in units of the layout's spread)")
    pca = np.stack([pca_2d(run.record(e).target_feat[0].astype(np.float32)) for e in range(args.epochs)])
    pca_aligned = np.stack([pca[0]] + [procrustes_align(pca[e], pca[e - 1]) for e in range(1, args.epochs)])
    print(f"    PCA: {mean_displacement(pca_aligned):.2f} aligned, {mean_displacement(pca):.2f} unaligned")

    one = ClusterExplorer(run.folder, space=0, method="umap")
    print(f"(c) explorer epoch switch, one run: median {switch_ms(one, args.epochs):.0f} ms")
    shutil.copytree(root / "a", root / "b")
    two = ClusterExplorer([root / "a", root / "b"], space=0, method="umap")
    print(f"(d) explorer epoch switch, two runs side by side: median {switch_ms(two, args.epochs):.0f} ms")

    live = SyntheticRun(root / "live", args.points, args.epochs, seed=1)
    live.write(0)
    explorer = ClusterExplorer(root / "live", space=0, method="umap", follow=True, poll_seconds=0.5)
    delays = []
    for e in range(1, args.epochs):
        live.write(e)
        written = time.perf_counter()
        while explorer.slider.max < e:
            time.sleep(0.01)
        delays.append(time.perf_counter() - written)
        time.sleep(0.5)
    explorer.stop()
    live.writer.close()
    print(f"(e) a followed run shows a new epoch a median {statistics.median(delays):.2f} s after its record is written "
          f"(max {max(delays):.2f} s; UMAP, polling every 0.5 s)")


if __name__ == "__main__":
    main()

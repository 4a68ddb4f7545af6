"""Target accuracy of source-only, DANN and SRDC (paper and official presets) on the digit pairs, on the CPU.

Runs every (pair, method, seed) for --epochs epochs, appending each finished run to --results (JSON lines, so
an interrupted benchmark continues where it stopped), then writes a markdown table: target test accuracy at
the final epoch and at the best epoch (mean ± std over seeds), the largest share of the target predicted as
one class at the end, and wall time per run. Each run's per-epoch accuracies and label-free scores are kept in the
results file too (`history`), for the model-selection study (bench/selection.py). The target test splits are small (400 MNIST-M images), so the table
also gives the final accuracy on the unlabelled target images the run trained on (the transductive protocol of
the paper's main tables: 1,600 MNIST-M, 4,000 MNIST, 7,291 USPS images).

    SDRC_DATA=../shared/data python bench/digits.py [--epochs 30] [--seeds 0 1 2] [--out bench/digits.md]

Several processes may run it at once (e.g. one per core, with OMP_NUM_THREADS=1): each claims a run before starting it
(a file in .digits_results.claims/ beside the results; delete a claim to run that row again).
"""
import argparse
import functools
import json
import os
import statistics
import subprocess
import time
from pathlib import Path

import torch

from sdrc.data import digit_pair
from sdrc.recipe import Recipe, Runtime
from sdrc.scores import SCORES
from sdrc.train import train

PAIRS = ("mnist:usps", "usps:mnist", "mnist:mnistm")
METHODS = {"source-only": dict(method="source-only"), "DANN": dict(method="dann"),
           "SRDC paper": dict(method="srdc", preset="paper"), "SRDC official": dict(method="srdc", preset="official"),
           # p-hat normalised by its sum (DEC) instead of a softmax, and a sharper kernel: does feature clustering count?
           "SRDC official + p̂ sum": dict(method="srdc", preset="official", overrides=dict(kernel_norm="sum")),
           "SRDC paper + p̂ sum": dict(method="srdc", preset="paper", overrides=dict(kernel_norm="sum")),
           "SRDC official + p̂ sum, α = 10": dict(method="srdc", preset="official",
                                                  overrides=dict(kernel_norm="sum", alpha=10.0))}
SPACES = (0, 1)  # the digit network's backbone z and bottleneck b


def run_one(pair_name: str, method: str, seed: int, epochs: int, pair=None) -> dict:
    "Train one run (on `pair`, or the whole digit pair `pair_name`) and return its summary."
    if pair is None:
        source, target = pair_name.split(":")
        pair = digit_pair(source, target)  # grey pairs on one channel, MNIST-M in colour
    commit()  # read before training: the code this process runs
    start = time.perf_counter()
    history = train(pair, Recipe(**METHODS[method], epochs=epochs, seed=seed, record_samples=0),
                    Runtime(progress=False, log=lambda line: print(f"  {line}", flush=True)))
    best, last = max(history, key=lambda m: m["acc_f"]), history[-1]
    return dict(pair=pair_name, method=method, seed=seed, epochs=epochs, final=last["acc_f"], best=best["acc_f"],
                final_transductive=last["acc_f_train"], final_per_class=last.get("acc_f_per_class"),
                best_epoch=best["epoch"], largest_pred=last["largest_pred"],
                collapsed_epochs=sum(m["collapsed"] for m in history[1:]), seconds=time.perf_counter() - start,
                entropy_phat=[last[f"entropy_phat_{j}"] for j in SPACES],
                target_feature_terms=[last.get(f"train_tgt_feat_{j}") for j in SPACES],
                agree_centre=[last[f"agree_centre_{j}"] for j in SPACES],
                acc_learned=[last.get(f"acc_learned_{j}") for j in SPACES],
                learned_gap=[last.get(f"learned_gap_{j}") for j in SPACES], commit=commit(),
                history={key: [m.get(key) for m in history] for key in HISTORY})


HISTORY = ("acc_f", "acc_f_train", "acc_f_per_class", "collapsed", "largest_pred", "entropy_p", *(f"score_{name}" for name in SCORES))


@functools.cache
def commit() -> str | None:
    """The commit of the code that ran (with '+' when the checkout has changes), for the results file: read once, when
    the first run of the process starts, since a process runs the code it imported then, whatever is committed later."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "sdrc"], capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+" if dirty else "")


def mean_std(values: list[float]) -> str:
    "'mean ± std' in percent."
    if len(values) == 1:
        return f"{100 * values[0]:.1f}"
    return f"{100 * statistics.mean(values):.1f} ± {100 * statistics.stdev(values):.1f}"


def pair_of_means(rows: list[dict], key: str) -> str:
    "'z / b' means over the runs that measured `key` (one value per clustering space), or an em dash."
    rows = [r for r in rows if r.get(key) and None not in r[key]]
    if not rows:
        return "—"
    return " / ".join(f"{statistics.mean(r[key][j] for r in rows):.2f}" for j in SPACES) + (f" ({len(rows)})" if len(rows) < 3 else "")


def table(results: list[dict]) -> str:
    """The markdown table of all finished runs. The p-hat columns give the entropy of p-hat, the target's feature-space
    terms and how often the nearest K-means centroid agrees with f, each at the end, in spaces z / b."""
    lines = ["| pair | method | seeds | final acc % | best acc % | transductive final acc % | largest class share at the end "
             "| H(p̂) z / b (log K = 2.30) | target feature terms z / b | nearest centroid agrees with f, z / b | minutes per run |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for pair_name in PAIRS:
        for method in METHODS:
            rows = [r for r in results if r["pair"] == pair_name and r["method"] == method]
            if not rows:
                continue
            lines.append(f"| {pair_name.replace(':', ' → ')} | {method} | {len(rows)} | "
                         f"{mean_std([r['final'] for r in rows])} | {mean_std([r['best'] for r in rows])} | "
                         f"{mean_std([r['final_transductive'] for r in rows])} | {max(r['largest_pred'] for r in rows):.2f} | "
                         f"{pair_of_means(rows, 'entropy_phat')} | {pair_of_means(rows, 'target_feature_terms')} | "
                         f"{pair_of_means(rows, 'agree_centre')} | {statistics.mean(r['seconds'] for r in rows) / 60:.1f} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", nargs="+", default=list(PAIRS), choices=PAIRS)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--results", default="bench/digits_results.jsonl")
    parser.add_argument("--out", default="bench/digits.md")
    parser.add_argument("--with-history", action="store_true",
                        help="run again the rows recorded before per-epoch histories were kept (for bench/selection.py)")
    args = parser.parse_args()
    results_path = Path(args.results)
    for pair_name in args.pairs:
        for method in args.methods:
            for seed in args.seeds:
                if any(r["pair"] == pair_name and r["method"] == method and r["seed"] == seed and r["epochs"] == args.epochs
                       and ("history" in r or not args.with_history) for r in read_results(results_path)):
                    continue
                if not claim(results_path, pair_name, method + (" with history" if args.with_history else ""), seed,
                             args.epochs):
                    continue  # another benchmark process is running it
                print(f"{pair_name} {method} seed {seed}", flush=True)
                result = run_one(pair_name, method, seed, args.epochs)
                with open(results_path, "a") as f:
                    f.write(json.dumps(result) + "\n")
                write_table(results_path, args)
    print(write_table(results_path, args))


def claim(results_path: Path, pair_name: str, method: str, seed: int, epochs: int) -> bool:
    "Claim one run for this process (a file created exclusively), so that several benchmark processes share the work."
    claims = results_path.with_name(f".{results_path.stem}.claims")
    claims.mkdir(exist_ok=True)
    name = f"{pair_name}_{method}_{seed}_{epochs}".replace(":", "-").replace(" ", "_").replace("/", "-")
    try:
        os.close(os.open(claims / name, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def read_results(results_path: Path) -> list[dict]:
    """Every finished run in the results file (other benchmark processes may be appending to it), one per pair, method,
    seed and epochs: a run recorded again with its per-epoch history (--with-history) replaces the one without."""
    rows = [json.loads(line) for line in results_path.read_text().splitlines()] if results_path.exists() else []
    latest = {}
    for row in rows:
        key = (row["pair"], row["method"], row["seed"], row["epochs"], row.get("regime"))
        if key not in latest or "history" in row or "history" not in latest[key]:
            latest[key] = row
    return list(latest.values())


def finals_by_seed(rows: list[dict], pair_name: str, method: str, epochs: int) -> dict[int, float]:
    "The final target accuracy of each seed's run of `method` on `pair_name` for `epochs` epochs."
    return {r["seed"]: r["final"] for r in rows if r["pair"] == pair_name and r["method"] == method and r["epochs"] == epochs}


def write_table(results_path: Path, args) -> str:
    "Write atomically (after every run, so a stopped benchmark still leaves its table) and return the markdown table."
    results = [r for r in read_results(results_path) if r["epochs"] == args.epochs]
    text = (f"Digits benchmark: {args.epochs} epochs, CPU ({torch.get_num_threads()} threads), target test accuracy\n\n"
            + table(results) + "\n")
    out = Path(args.out)
    partial = out.with_name(f".{out.name}.{os.getpid()}.partial")  # several benchmark processes may write at once
    partial.write_text(text)
    partial.replace(out)
    return text


if __name__ == "__main__":
    main()

"""SRDC on features you bring: does it beat the baselines a practitioner would try first?

Makes two feature files of MNIST→USPS (the format `sdrc train --features` reads) and trains on each:
  pixels-PCA:      the 32×32 pixels, reduced to 64 dimensions by a PCA fitted on the source's training images;
  LeNet source-only: the 128-d bottleneck of the digit network trained on the source alone (--backbone-epochs epochs,
                   seed 0), for both domains: a frozen backbone's embeddings, as a practitioner would have them.
On each, at --seeds: source-only with the default head for features, a logistic-regression probe fitted on the
source (scikit-learn, the strong plain baseline), DANN and SRDC `official` (--epochs epochs each). Each result is
appended to --results (JSON lines); the table gives final and best target test accuracy.

    SDRC_DATA=../shared/data python bench/features.py [--seeds 0 1 2] [--epochs 30] [--smoke]
"""
import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression

sys.path.insert(0, str(Path(__file__).parent))
from digits import mean_std  # noqa: E402

from sdrc.evidence import compare  # noqa: E402

from sdrc.data import DomainPair, digit_pair, feature_pair  # noqa: E402
from sdrc.observe import extract  # noqa: E402
from sdrc.recipe import Recipe, Runtime  # noqa: E402
from sdrc.train import Trainer, train  # noqa: E402

QUIET = Runtime(progress=False, log=None)
METHODS = {"source-only (default head)": dict(method="source-only"), "DANN": dict(method="dann"),
           "SRDC official": dict(method="srdc", preset="official")}


def save_features(path: Path, splits: dict[str, tuple[np.ndarray, np.ndarray]], classes) -> Path:
    "A feature file: `{split}_features` and `{split}_labels` for source, source_test, target, target_test, and classes."
    arrays = {f"{name}_{kind}": array for name, (x, y) in splits.items()
              for kind, array in (("features", x.astype(np.float32)), ("labels", y.astype(np.int64)))}
    np.savez(path, classes=np.array(classes), **arrays)
    return path


def _named(pair: DomainPair) -> dict:
    "The four splits under the feature file's names."
    return {"source": pair.source_train, "source_test": pair.source_test, "target": pair.target_train,
            "target_test": pair.target_test}


def pixels_pca(pair: DomainPair, folder: Path, dims: int = 64) -> Path:
    "The pixels of every split, projected on the source training images' first `dims` principal components."
    flat = {name: (d.inputs(d.x).flatten(1).numpy(), d.y.numpy()) for name, d in _named(pair).items()}
    pca = PCA(dims, random_state=0).fit(flat["source"][0])
    return save_features(folder / "pixels_pca.npz", {n: (pca.transform(x), y) for n, (x, y) in flat.items()}, pair.classes)


def lenet_source_only(pair: DomainPair, folder: Path, epochs: int) -> Path:
    "The bottleneck features of the digit network trained on the source alone, for every split."
    trainer = Trainer(pair, Recipe(method="source-only", epochs=epochs, seed=0, record_samples=0), QUIET)
    trainer.fit()
    named = _named(pair)
    extracted = extract(trainer.model, list(named.values()), pair.source_train)
    return save_features(folder / "lenet_source_only.npz",
                         {n: (e.feats[-1].cpu().numpy(), d.y.numpy()) for (n, d), e in zip(named.items(), extracted)},
                         pair.classes)


def probe(pair: DomainPair) -> float:
    "Target test accuracy of a logistic regression fitted on the source's training features."
    model = LogisticRegression(max_iter=2000).fit(pair.source_train.x.numpy(), pair.source_train.y.numpy())
    return float(model.score(pair.target_test.x.numpy(), pair.target_test.y.numpy()))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--backbone-epochs", type=int, default=10)
    parser.add_argument("--results", type=Path, default=Path("bench/features_results.jsonl"))
    parser.add_argument("--out", type=Path, default=Path("bench/features.md"))
    parser.add_argument("--smoke", action="store_true", help="128 images per split, 1 backbone epoch: checks the script")
    args = parser.parse_args()
    pair = digit_pair("mnist", "usps")
    pair = pair.head(128, 128) if args.smoke else pair
    with tempfile.TemporaryDirectory() as tmp:
        files = {"pixels-PCA": pixels_pca(pair, Path(tmp)),
                 "LeNet source-only": lenet_source_only(pair, Path(tmp), 1 if args.smoke else args.backbone_epochs)}
        for name, path in files.items():
            features = feature_pair(path)
            rows = [dict(features=name, method="logistic-regression probe", seed=0, epochs=0, final=probe(features),
                         best=None)]
            for method, kw in METHODS.items():
                for seed in args.seeds:
                    history = train(features, Recipe(**kw, epochs=args.epochs, seed=seed, record_samples=0), QUIET)
                    rows.append(dict(features=name, method=method, seed=seed, epochs=args.epochs, final=history[-1]["acc_f"],
                                     best=max(m["acc_f"] for m in history), dims=features.source_train.x.shape[1]))
            with open(args.results, "a") as f:
                f.writelines(json.dumps(r) + "\n" for r in rows)
    print(write_table(args.results, args.out, args.epochs))


def _against_seeds(value: float, seeds: list[float]) -> str:
    "Where one deterministic value lies against the seeds of another method."
    return (f"below all {len(seeds)} seeds" if value < min(seeds) else f"above all {len(seeds)} seeds" if value > max(seeds)
            else "within the seeds' range")


def read_rows(results_path: Path) -> list[dict]:
    "Every result in the results file."
    return [json.loads(line) for line in results_path.read_text().splitlines()] if results_path.exists() else []


def write_table(results_path: Path, out: Path, epochs: int) -> str:
    "The table of every method on every feature set (the probe has no epochs), written atomically."
    rows = [r for r in read_rows(results_path) if r["epochs"] in (0, epochs)]
    lines = [f"Features brought to sdrc: MNIST → USPS, {epochs} epochs, target test accuracy %\n",
             "| features | method | seeds | final | best | final against source-only |", "|---|---|---|---|---|---|"]
    for name in dict.fromkeys(r["features"] for r in rows):
        baseline = [r["final"] for r in rows if (r["features"], r["method"]) == (name, "source-only (default head)")]
        for method in ["logistic-regression probe", *METHODS]:
            mine = [r for r in rows if (r["features"], r["method"]) == (name, method)]
            mine = [r for r in mine if r["method"] != "logistic-regression probe"] or mine[-1:]  # the probe is deterministic
            if mine:
                best = [r["best"] for r in mine if r["best"] is not None]
                finals = [r["final"] for r in mine]
                verdict = ("" if method.startswith("source-only") or len(baseline) < 2 else compare(finals, baseline).verdict
                           if len(finals) > 1 else _against_seeds(finals[0], baseline))  # the probe is one deterministic fit
                lines.append(f"| {name} | {method} | {len(mine)} | {mean_std(finals)} | {mean_std(best) if best else '—'} | "
                             f"{verdict} |")
    text = "\n".join(lines) + "\n"
    partial = out.with_name(f".{out.name}.{os.getpid()}.partial")
    partial.write_text(text)
    partial.replace(out)
    return text


if __name__ == "__main__":
    main()

"""The trainer's results must not move: runs recorded as golden files (tests/golden/) are replayed and compared.

Each golden file holds, per run, the recipe, the per-epoch metrics, a digest of the final weights (network, centres,
the method's extra module) and of the last epoch's record. On the machine kind they were recorded on (same torch
version and CPU capability, replayed with the recorded thread count) the replay must match bit for bit; elsewhere floating-point kernels may round differently,
so metrics and weight sums are compared to a tolerance instead: 1e-3 for the toy runs; for two epochs of a
convolutional network on real digits, 1e-2 for the metrics and 5e-2 for the weight sums (between torch 2.14 and 2.11
they moved by up to 0.0063 and 2.4 %).
"""
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sdrc.data import digit_pair, make_domain_pair
from sdrc.io import read_arrays
from sdrc.recipe import Recipe, Runtime
from sdrc.snapshots import RunRecord, epoch_file
from sdrc.train import Trainer

GOLDEN = Path(__file__).with_name("golden")
TOY = json.loads((GOLDEN / "toy_runs.json").read_text())
DIGITS = json.loads((GOLDEN / "digits_runs.json").read_text())


def same_machine_kind(golden: dict) -> bool:
    return golden["torch"] == torch.__version__ and golden["cpu_capability"] == torch.backends.cpu.get_cpu_capability()


def weight_digest(trainer: Trainer) -> tuple[str, dict]:
    "sha256 over the final tensors (named as in the golden files) and the sum of each."
    named = [(f"model.{k}", v) for k, v in trainer.model.state_dict().items()]
    named += [(f"centres.{k}", v) for k, v in trainer.centres.state_dict().items()]
    if trainer.extra is not None:
        named += [(f"extra.{k}", v) for k, v in trainer.extra.state_dict().items()]
    h, sums = hashlib.sha256(), {}
    for name, t in named:
        t = t.detach().cpu().contiguous()
        h.update(name.encode())
        h.update(t.numpy().tobytes())
        sums[name] = float(t.double().sum())
    return h.hexdigest(), sums


def record_digest(folder: Path, epoch: int) -> str:
    arrays, h = read_arrays(folder / epoch_file(epoch)), hashlib.sha256()
    for key in sorted(arrays):
        h.update(key.encode())
        h.update(np.ascontiguousarray(arrays[key]).tobytes())
    return h.hexdigest()


def replay_and_compare(pair, golden_run: dict, exact: bool, folder: Path, threads: int, tolerance: float = 1e-3,
                       weight_tolerance: float = 1e-3) -> None:
    runtime = Runtime(progress=False, log=None, threads=threads)  # the thread count decides how sums are rounded
    trainer = Trainer(pair, Recipe(**golden_run["recipe"]), runtime, out=folder)
    history = trainer.fit()
    assert len(history) == len(golden_run["history"])
    for mine, theirs in zip(history, golden_run["history"]):
        for key, value in theirs.items():  # every metric the golden run recorded (new metrics may be added)
            assert mine[key] == (value if exact else pytest.approx(value, rel=tolerance, abs=tolerance)), (mine["epoch"], key)
    digest, sums = weight_digest(trainer)
    if exact:
        assert digest == golden_run["weights_sha256"]
        assert record_digest(folder, RunRecord.open(folder).epoch_numbers()[-1]) == golden_run["last_record_sha256"]
    else:
        assert sums == pytest.approx(golden_run["weight_sums"], rel=weight_tolerance, abs=weight_tolerance)


@pytest.mark.parametrize("golden_run", TOY["runs"], ids=lambda r: f"{r['recipe']['method']}-{r['recipe']['preset']}-{r['recipe']['ablation']}")
def test_toy_run_of_every_method_is_unchanged(golden_run, tmp_path):
    spec = {k: v for k, v in TOY["pair"].items() if k != "kind"}
    replay_and_compare(make_domain_pair(**spec), golden_run, same_machine_kind(TOY), tmp_path / "run", TOY["threads"])


def test_two_epochs_of_the_default_digits_run_are_unchanged(digits_root, tmp_path):
    pair = digit_pair(DIGITS["pair"]["source"], DIGITS["pair"]["target"], root=digits_root)
    replay_and_compare(pair, DIGITS["runs"][0], same_machine_kind(DIGITS), tmp_path / "run", DIGITS["threads"],
                       tolerance=1e-2, weight_tolerance=5e-2)


# ---------------------------------------------------------------- re-recording

def record_run(pair, recipe: dict, folder: Path, threads: int) -> dict:
    "One golden run: its recipe, per-epoch metrics, weight digest and sums, and the digest of its last record."
    trainer = Trainer(pair, Recipe(**recipe), Runtime(progress=False, log=None, threads=threads), out=folder)
    history = trainer.fit()
    digest, sums = weight_digest(trainer)
    history = [{k: v for k, v in m.items() if not k.endswith("seconds")} for m in history]  # timings vary by run
    return dict(recipe=recipe, history=history, weights_sha256=digest, weight_sums=sums,
                last_record_sha256=record_digest(folder, RunRecord.open(folder).epoch_numbers()[-1]))


def moved(before: dict, after: dict) -> str:
    "What changed between two recordings of a run: the largest change of a metric shared by both, and of a weight sum."
    metric = max((abs(a[k] - b[k]), k) for a, b in zip(after["history"], before["history"]) for k in b
                 if k in a and isinstance(b[k], (int, float)) and not isinstance(b[k], bool))
    acc = max(abs(a["acc_f"] - b["acc_f"]) for a, b in zip(after["history"], before["history"]))
    weights = max(abs(after["weight_sums"][k] - v) / max(abs(v), 1e-12) for k, v in before["weight_sums"].items())
    return f"acc_f moved by up to {acc:.4f}; largest metric change {metric[0]:.4g} ({metric[1]}); weight sums by up to {weights:.2%}"


def record(which: str, out_folder: Path) -> None:
    "Re-record golden file `which` ('toy' or 'digits') on this machine, printing what moved in each run."
    import tempfile
    path = GOLDEN / f"{which}_runs.json"
    before = json.loads(path.read_text())
    if which == "toy":
        pair = make_domain_pair(**{k: v for k, v in before["pair"].items() if k != "kind"})
    else:
        import os
        pair = digit_pair(before["pair"]["source"], before["pair"]["target"], root=os.environ.get("SDRC_DATA"))
    runs = []
    for old in before["runs"]:
        with tempfile.TemporaryDirectory(dir=out_folder) as tmp:
            runs.append(record_run(pair, old["recipe"], Path(tmp) / "run", before["threads"]))
        print(f"{which} {old['recipe']}: {moved(old, runs[-1])}", flush=True)
    after = dict(before, torch=torch.__version__, cpu_capability=torch.backends.cpu.get_cpu_capability(), runs=runs)
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(after, indent=1) + "\n")
    partial.replace(path)


if __name__ == "__main__":  # python tests/test_golden.py toy digits: re-record after a change that moves results on purpose
    import sys
    import tempfile
    with tempfile.TemporaryDirectory() as scratch:
        for name in sys.argv[1:] or ["toy", "digits"]:
            record(name, Path(scratch))

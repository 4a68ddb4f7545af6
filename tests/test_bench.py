"""The one-call GPU session script and its CPU-side check, at smoke sizes on the CPU: a GPU machine is lent for minutes,
so the script that uses them must already work, fit what can come back, and stop in time."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _session(out, data, *extra, timeout=900):
    return subprocess.run([sys.executable, str(BENCH / "gpu_session.py"), "--out", str(out), "--data", str(data), *extra],
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def smoke_session(digits_root, tmp_path_factory):
    "Every step of the session at smoke sizes on the CPU, then the check that opens what it wrote."
    out = tmp_path_factory.mktemp("gpu_session")
    done = _session(out, digits_root, "--smoke", "--budget", "850")
    assert done.returncode == 0, done.stderr[-3000:]
    return out, json.loads((out / "results.json").read_text())


def test_every_step_runs_and_torchrun_matches_a_plain_run(smoke_session):
    _, results = smoke_session
    steps = results["steps"]
    assert list(steps) == ["plain", "step", "torchrun", "compile", "step_compile"]
    assert all(step["rc"] == 0 for step in steps.values()), {k: s.get("rc", s) for k, s in steps.items()}
    for name in ("plain", "torchrun", "compile"):
        assert steps[name]["epochs"] == 1 and 0.5 < steps[name]["final_acc"] <= 1
    assert results["torchrun_vs_plain"] == dict(identical=True, max_abs_difference=0.0)  # one process: the same run
    assert steps["step"]["reference_images_per_s"] > 0 and steps["step_compile"]["compile"] is True
    assert steps["step"]["host_syncs_per_epoch"] > 0  # on the CPU the loss is checked at every step: the count sees it


def test_what_comes_back_fits_the_trip(smoke_session):
    "At most 8 files, each under 16 MiB, no folders: what the GPU machine's $OUT can return."
    out, results = smoke_session
    files = sorted(p.name for p in out.iterdir())
    assert files == ["checkpoint_plain.pt", "log.txt", "profile.txt", "results.json", "run_compile.tar",
                     "run_plain.tar", "run_torchrun.tar"]
    assert all(size < 16 * 2**20 for size in results["files"].values())
    assert "one training epoch" in (out / "profile.txt").read_text()


def test_the_runs_open_on_the_cpu(smoke_session, digits_root, tmp_path):
    "gpu_check opens every run (info, report, explorer), side by side, and resumes the first from its checkpoint."
    out, _ = smoke_session
    table = tmp_path / "gpu.md"
    done = subprocess.run([sys.executable, str(BENCH / "gpu_check.py"), str(out), "--data", str(digits_root),
                           "--markdown", str(table)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    checks = json.loads((out / "checks.json").read_text())
    assert set(checks["opened"]) == {"plain", "torchrun", "compile"}
    assert all(o["explorer_epochs"] == 2 and o["info"] == 0 and o["report"] == 0 for o in checks["opened"].values())
    assert checks["side_by_side"] == 0 and (out / "side_by_side.html").is_file()
    resumed = checks["resume_on_cpu"]
    assert resumed["rc"] == 0 and resumed["cpu_reobserved_acc"] == resumed["gpu_final_acc"]  # both on the CPU here
    text = table.read_text()
    assert "| (b) sdrc's step" in text and "torchrun vs plain, per-epoch metrics | identical" in text


def test_a_session_out_of_time_skips_its_steps_and_says_so(digits_root, tmp_path):
    done = _session(tmp_path, digits_root, "--smoke", "--budget", "20", timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    steps = json.loads((tmp_path / "results.json").read_text())["steps"]
    assert set(steps) == {"plain", "step", "torchrun", "compile", "step_compile"}
    assert all("s left, the step needs about" in step["skipped"] for step in steps.values())


def test_a_session_without_the_digit_bundle_stops_before_it_starts(tmp_path):
    done = _session(tmp_path / "out", tmp_path, timeout=120)
    assert done.returncode == 2 and "the digit bundle is not in" in done.stderr
    assert not (tmp_path / "out").exists()


def test_the_small_data_regimes_are_what_they_say(digits_root, monkeypatch):
    "The regimes at full size: 2,000 source images; 1,800 or 500 target images; a long tail of 10 to 1, in both splits."
    monkeypatch.setenv("SDRC_DATA", str(digits_root))
    sys.path.insert(0, str(BENCH))
    from small_data import regime_pair
    small, dslr = regime_pair("mnist:usps", "small", 0), regime_pair("mnist:usps", "DSLR-sized", 0)
    assert (len(small.source_train), len(small.target_train), len(dslr.target_train)) == (2000, 1800, 500)
    assert len(small.target_test) == len(dslr.target_test) == 2007  # the test split kept whole
    counts = small.source_train.class_counts()
    assert max(counts) - min(counts) < 0.05 * 2000  # MNIST's near balance, kept in proportion
    tail = regime_pair("usps:mnist", "long-tailed", 1)
    train, test = tail.target_train.class_counts(), tail.target_test.class_counts()
    assert round(max(train) / min(train)) == 10 and round(max(test) / min(test)) == 10
    assert [c for c in range(10) if train[c] == min(train)] == [c for c in range(10) if test[c] == min(test)]  # same rare class
    assert regime_pair("usps:mnist", "long-tailed", 2).target_train.class_counts() != train  # another seed, another tail


def test_the_small_data_benchmark_runs_and_appends(digits_root, tmp_path):
    "At smoke sizes, one run per regime: each appended with its regime, sizes and mean per-class accuracy, and tabled."
    results, out = tmp_path / "results.jsonl", tmp_path / "table.md"
    done = subprocess.run([sys.executable, str(BENCH / "small_data.py"), "--smoke", "--epochs", "1", "--seeds", "0",
                           "--pairs", "usps:mnist", "--methods", "SRDC official", "--results", str(results), "--out", str(out)],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "SDRC_DATA": str(digits_root)})
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert [r["regime"] for r in rows] == ["small", "long-tailed", "DSLR-sized"]
    assert all(r["target_sizes"] == [64, 64] and 0 <= r["final_per_class"] <= 1 and r["epochs"] == 1 for r in rows)
    assert out.read_text().count("| usps → mnist | SRDC official | 1 |") == 3


def test_the_small_data_table_gives_verdicts_against_official_and_the_decision():
    "Made-up runs: a variant far above official in one cell and far below in another is named there, nowhere else."
    sys.path.insert(0, str(BENCH))
    from small_data import decision, table

    def runs(regime, method, finals):
        return [dict(regime=regime, pair="mnist:usps", method=method, seed=s, final=f, best=f, final_transductive=f,
                     final_per_class=f, largest_pred=0.1, target_sizes=[100, 100]) for s, f in enumerate(finals)]
    variant = {"small": [0.96, 0.97, 0.98], "long-tailed": [0.70, 0.71, 0.72], "DSLR-sized": [0.90, 0.92, 0.91]}
    results = [r for regime, finals in variant.items() for r in
               runs(regime, "SRDC official", [0.90, 0.91, 0.92]) + runs(regime, "SRDC official + p̂ sum", finals)]
    rows = {line.split(" | ")[0][2:] + " " + line.split(" | ")[2]: line for line in table(results).splitlines()[2:]}
    assert "| higher; higher |" in rows["small SRDC official + p̂ sum"]
    assert "| lower; lower |" in rows["long-tailed SRDC official + p̂ sum"]
    assert "| no difference; no difference |" in rows["DSLR-sized SRDC official + p̂ sum"]
    assert "|  |" in rows["small SRDC official"]  # the reference has no verdict against itself
    assert decision(results) == (
        "- SRDC official + p̂ sum against SRDC official, 6 comparisons: higher in small mnist→usps (accuracy), small "
        "mnist→usps (per-class accuracy); lower in long-tailed mnist→usps (accuracy), long-tailed mnist→usps (per-class "
        "accuracy).")


def test_the_features_benchmark_makes_its_files_and_table(digits_root, tmp_path):
    "At smoke sizes: both feature sets made in the format sdrc train --features reads, every method run, a table written."
    results, out = tmp_path / "results.jsonl", tmp_path / "table.md"
    done = subprocess.run([sys.executable, str(BENCH / "features.py"), "--smoke", "--epochs", "1", "--seeds", "0",
                           "--results", str(results), "--out", str(out)],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "SDRC_DATA": str(digits_root)})
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert {(r["features"], r["method"]) for r in rows} == {
        (f, m) for f in ("pixels-PCA", "LeNet source-only")
        for m in ("logistic-regression probe", "source-only (default head)", "DANN", "SRDC official")}
    assert all(0 <= r["final"] <= 1 for r in rows)
    assert out.read_text().count("| pixels-PCA |") == 4

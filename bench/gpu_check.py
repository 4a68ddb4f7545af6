"""Open what bench/gpu_session.py brought back from a GPU machine, on this (CPU) machine, and tabulate it.

    python bench/gpu_check.py FOLDER [--data PATH] [--markdown bench/gpu.md]

FOLDER holds results.json, run_NAME.tar and checkpoint_plain.pt. The check:
  * unpacks each run and opens it where no GPU is: `sdrc info`, its report (`sdrc report`), the ClusterExplorer
    stepped through every epoch, and the first two runs side by side;
  * resumes the first run on the CPU from its CUDA checkpoint (the run is finished, so this re-observes its last
    epoch with the CPU's float32 arithmetic: the accuracy there against the GPU's);
  * compares each run's final accuracy with the CPU runs of the same recipe (bench/digits_results.jsonl);
  * prints the measured table, with the targets beside the figures (--markdown also writes it to a file).
What it found is also written to FOLDER/checks.json.
Exits non-zero if anything fails to open.
"""
import argparse
import json
import os
import shutil
import statistics
import sys
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]
from digits import finals_by_seed, read_results  # noqa: E402
from sdrc.cli import main as sdrc  # noqa: E402
from sdrc.explorer import ClusterExplorer  # noqa: E402
from sdrc.io import atomic_write, write_json  # noqa: E402
from sdrc.snapshots import RunRecord  # noqa: E402

MIB = 2**20


def unpack(folder: Path) -> list[Path]:
    "Each run_NAME.tar into FOLDER/runs/NAME (refusing members that would land outside it); the run folders."
    runs = folder / "runs"
    for tar_path in sorted(folder.glob("run_*.tar")):
        with tarfile.open(tar_path) as tar:
            tar.extractall(runs, filter="data")
    return sorted(p for p in runs.iterdir() if p.is_dir()) if runs.is_dir() else []


def open_everywhere(run: Path) -> dict:
    "`sdrc info`, `sdrc report` and the explorer at every epoch, on this machine: what each gave."
    opened = dict(info=sdrc(["info", str(run)]), report=sdrc(["report", str(run)]))
    explorer = ClusterExplorer(run)
    for index in range(len(explorer.epochs)):
        explorer.slider.value = index
    opened.update(explorer_epochs=len(explorer.epochs), report_mib=(run / "report.html").stat().st_size / MIB)
    return opened


def resume_on_cpu(run: Path, checkpoint: Path, data, record_samples: int) -> dict:
    "Resume a copy of the finished run from its CUDA checkpoint on the CPU: the last epoch re-observed here."
    copy = run.with_name(run.name + "_resumed_on_cpu")
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(run, copy)
    shutil.copyfile(checkpoint, copy / "checkpoint.pt")
    meta = RunRecord.open(run).meta["config"]
    rc = sdrc(["train", "--resume", "--device", "cpu", "--no-report", "--out", str(copy), "--epochs", str(meta["epochs"]),
               "--record-samples", str(record_samples), *(["--data", str(data)] if data else [])])
    gpu, cpu = RunRecord.open(run).metric("acc_f")[-1], RunRecord.open(copy).metric("acc_f")[-1]
    return dict(rc=rc, gpu_final_acc=gpu, cpu_reobserved_acc=cpu)


def cpu_spread(pair: str = "mnist:usps", method: str = "SRDC official", epochs: int = 30) -> dict:
    "Final accuracies of the CPU runs of the same recipe, over seeds."
    finals = list(finals_by_seed(read_results(REPO / "bench" / "digits_results.jsonl"), pair, method, epochs).values())
    if len(finals) < 2:
        raise SystemExit(f"bench/digits_results.jsonl holds {len(finals)} CPU run(s) of {method} on {pair}: at least 2 are "
                         f"needed for a spread; run `python bench/digits.py --pairs {pair} --methods '{method}'` first")
    return dict(seeds=len(finals), mean=statistics.mean(finals), std=statistics.stdev(finals), low=min(finals), high=max(finals))


def step_rows(step: dict):
    "(what, measured, target) rows of bench/gpu_step.py's figures."
    if "reference_images_per_s" in step:
        yield "(a) released-code-style ResNet-50 step, fp32", f"{step['reference_images_per_s']:.0f} images/s", ""
    if "sdrc_images_per_s" in step:
        yield "(b) sdrc's step (bf16, channels-last)", f"{step['sdrc_images_per_s']:.0f} images/s" + (
            f", {step['speedup']:.2f}× (a)" if "speedup" in step else ""), "≥ 3× (a)"
        yield "(c) observation, share of an Office-31-sized epoch", f"{step['observe_s']:.2f} s, {step['observe_share']:.1%}", "≤ 15 %"
    for key, value in step.items():
        if key.startswith("kmeans_"):
            yield f"(d) K-means {key[7:-2].replace('x', '×', 1).replace('_k', ', K=')}, 5 iterations", f"{1e3 * value:.1f} ms", (
                "≤ 100 ms" if key == "kmeans_200000x2048_k345_s" else "")
    if "disk_images_per_s" in step:
        yield "(f) (b) with JPEG files read by loader workers", f"{step['disk_images_per_s']:.0f} images/s, " \
            f"{step['disk_images_per_s'] / step['sdrc_images_per_s']:.0%} of (b)", "keeps up with (b)"
    if "host_syncs_per_epoch" in step:
        yield "host waits in one training epoch", f"{step['host_syncs_per_epoch']} in {step['profile_steps']} steps", "not one per step"


def table(results: dict, checks: dict) -> str:
    "The measured figures as a markdown table."
    steps, spread = results["steps"], checks["cpu_spread"]
    rows = [("machine", f"{results['environment']['gpu']}, torch {results['environment']['torch']}", "")]
    rows += list(step_rows(steps.get("step", {})))
    if "sdrc_images_per_s" in steps.get("step_compile", {}):
        rows.append(("(b) with torch.compile", f"{steps['step_compile']['sdrc_images_per_s']:.0f} images/s", ""))
    for name in ("plain", "torchrun", "compile"):
        run = steps.get(name, {})
        if "final_acc" in run:
            label = f"(e) `sdrc train`, MNIST→USPS, {run['epochs']} epochs" + {"plain": "", "torchrun": ", torchrun 1 process",
                                                               "compile": ", --compile"}[name]
            rows.append((label, f"{run['wall_s']:.0f} s wall ({run['train_s_median']:.2f} s training + "
                                f"{run['observe_s_median']:.2f} s observing per epoch), {run['final_acc']:.1%}, "
                                f"peak {run['peak_gpu_mib']} MiB", "≤ 60 s, ≥ 95 %" if name == "plain" else ""))
        elif name in steps:
            rows.append((f"(e) {name}", json.dumps(run), ""))
    rows.append(("CPU runs, same recipe", f"{spread['mean']:.1%} ± {spread['std']:.1%} over {spread['seeds']} seeds "
                 f"({spread['low']:.1%}–{spread['high']:.1%})", ""))
    if "torchrun_vs_plain" in results:
        rows.append(("torchrun vs plain, per-epoch metrics", "identical" if results["torchrun_vs_plain"]["identical"]
                     else f"differ by up to {results['torchrun_vs_plain']['max_abs_difference']:.4f}", "the same"))
    return "\n".join(["| what | measured | target |", "|---|---|---|", *(f"| {a} | {b} | {c} |" for a, b, c in rows)])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="what bench/gpu_session.py wrote")
    parser.add_argument("--data", default=os.environ.get("SDRC_DATA"), help="the digit bundle (for the resume)")
    parser.add_argument("--markdown", type=Path, help="also write the table to this file")
    args = parser.parse_args()
    results = json.loads((args.folder / "results.json").read_text())
    runs = unpack(args.folder)
    checks = dict(cpu_spread=cpu_spread(), opened={run.name: open_everywhere(run) for run in runs})
    if len(runs) >= 2:
        checks["side_by_side"] = sdrc(["report", str(runs[0]), str(runs[1]), "--out", str(args.folder / "side_by_side.html")])
    plain = args.folder / "runs" / "plain"
    if (args.folder / "checkpoint_plain.pt").is_file() and plain.is_dir():
        samples = RunRecord.open(plain).meta["config"]["record_samples"]
        checks["resume_on_cpu"] = resume_on_cpu(plain, args.folder / "checkpoint_plain.pt", args.data, samples)
    spread = checks["cpu_spread"]
    for name, step in results["steps"].items():
        if "final_acc" in step:
            step["within_cpu_range"] = spread["low"] <= step["final_acc"] <= spread["high"]
            step["cpu_std_from_mean"] = (step["final_acc"] - spread["mean"]) / spread["std"]
    checks["accuracy"] = {name: {k: step.get(k) for k in ("final_acc", "within_cpu_range", "cpu_std_from_mean")}
                          for name, step in results["steps"].items() if "final_acc" in step}
    print(json.dumps(checks, indent=1))
    write_json(args.folder / "checks.json", checks)
    text = table(results, checks)
    print(text)
    if args.markdown:
        atomic_write(args.markdown, lambda tmp: tmp.write_text(text + "\n"))
    failed = [name for name, o in checks["opened"].items() if o["info"] or o["report"]]
    failed += ["side by side"] * bool(checks.get("side_by_side")) + ["resume"] * bool(checks.get("resume_on_cpu", {}).get("rc"))
    if failed or not runs:
        sys.exit(f"gpu_check: did not open on this machine: {', '.join(failed) or 'no runs came back'}")


if __name__ == "__main__":
    main()

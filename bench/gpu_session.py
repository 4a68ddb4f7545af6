"""Every GPU measurement sdrc reports, in one call to a machine lent for a short time, results written as they come.

In order of importance, each step skipped when the time left (--budget) is less than it needs:
  1. `sdrc train` on MNIST→USPS (SRDC official, 30 epochs, bf16) with the GPU's peak memory sampled by nvidia-smi:
     the wall time of benchmark (e) and the per-epoch times and final accuracy;
  2. bench/gpu_step.py (a)–(d), (f) and a torch.profiler table of one ResNet-50 epoch (written to profile.txt);
  3. the same run as 1 under `torchrun --standalone --nproc_per_node 1`: the same metrics?
  4. the same run as 1 with `--compile`: time per epoch, accuracy;
  5. bench/gpu_step.py (b), (c) with torch.compile.
Then the run folders are packed for the trip back: each as run_NAME.tar (records and run.json), and the first run's
checkpoint as checkpoint_plain.pt. results.json holds every figure; log.txt everything the steps printed.

On a CUDA machine from a checkout (sdrc need not be installed; torch, torchvision, numpy, scipy, scikit-learn, tqdm and
pillow are enough: no plotting library is needed there), with the digit bundle in FOLDER:
    PYTHONUNBUFFERED=1 python3 bench/gpu_session.py --data FOLDER --out OUT --budget 540
Then, on any machine with sdrc installed, open what it wrote where there is no GPU and compare it with the CPU runs:
    python bench/gpu_check.py OUT
Check the script itself on a CPU (tiny sizes, one epoch; measures nothing useful):
    python bench/gpu_session.py --smoke --out /tmp/gpu_smoke
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from sdrc.io import atomic_write, write_json  # noqa: E402
from sdrc.snapshots import RunRecord  # noqa: E402

LAUNCHER = "from sdrc.cli import entry_point\nentry_point()\n"
# 31 records of 256 samples are about 13 MB a run: each packed run stays under 16 MiB, easy to copy off a remote machine.
FULL = dict(device="cuda", epochs=30, record_samples=256, step_args=[], estimates=dict(
    plain=90, step=240, torchrun=90, compile=150, step_compile=200))
SMOKE = dict(device="cpu", epochs=1, record_samples=32, step_args=["--smoke"], estimates=dict(
    plain=60, step=120, torchrun=60, compile=240, step_compile=180))


class GpuMemory:
    "The most GPU memory in use while the `with` block runs, sampled by nvidia-smi every 200 ms (None without nvidia-smi)."

    def __enter__(self):
        self.peak_mib, self.process = None, None
        if shutil.which("nvidia-smi"):
            self.process = subprocess.Popen(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits",
                                             "-lms", "200"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            self.reader = threading.Thread(target=self._read, daemon=True)
            self.reader.start()
        return self

    def _read(self):
        for line in self.process.stdout:
            if line.strip().isdigit():
                self.peak_mib = max(self.peak_mib or 0, int(line))

    def __exit__(self, *exc):
        if self.process is not None:
            self.process.terminate()
            self.process.wait()
            self.reader.join(timeout=5)


class Session:
    "The clock, the log and the results of one session; results.json is rewritten (atomically) after every step."

    def __init__(self, out: Path, budget: float):
        self.out, self.budget, self.start = out, budget, time.monotonic()
        self.results = dict(budget_s=budget, steps={})
        out.mkdir(parents=True, exist_ok=True)
        self.log_path = out / "log.txt"

    def left(self) -> float:
        return self.budget - (time.monotonic() - self.start)

    def log(self, text: str) -> None:
        print(text, flush=True)
        with open(self.log_path, "a") as log:
            log.write(text + "\n")

    def save(self) -> None:
        write_json(self.out / "results.json", self.results)

    def command(self, name: str, argv: list[str], estimate: float, reserve: float = 30) -> dict | None:
        "Run `argv` as step `name` if the time left allows; its wall time, exit status and peak GPU memory."
        if self.left() - reserve < estimate:
            self.results["steps"][name] = dict(skipped=f"{self.left():.0f} s left, the step needs about {estimate} s")
            self.log(f"== {name}: skipped ({self.results['steps'][name]['skipped']})")
            self.save()
            return None
        self.log(f"== {name}: {' '.join(argv)}")
        started = time.monotonic()
        with GpuMemory() as memory, open(self.log_path, "a") as log:
            try:
                rc = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, timeout=self.left() - reserve,
                                    env=dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"),
                                    cwd=REPO).returncode
            except subprocess.TimeoutExpired:
                rc = "timed out"
        step = dict(rc=rc, wall_s=time.monotonic() - started, peak_gpu_mib=memory.peak_mib)
        self.results["steps"][name] = step
        self.log(f"== {name}: rc {rc}, {step['wall_s']:.1f} s, peak GPU memory {memory.peak_mib} MiB")
        self.save()
        return step


def environment() -> dict:
    "The machine: GPU, driver, torch, CUDA, cuDNN, Python, CPU cores."
    import torch
    smi = shutil.which("nvidia-smi")
    gpu = subprocess.run([smi, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                         capture_output=True, text=True).stdout.strip() if smi else None
    return dict(gpu=gpu, torch=torch.__version__, cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
                python=sys.version.split()[0], cpus=os.cpu_count())


def run_summary(folder: Path) -> dict:
    "What a finished run's records say: accuracies, and the median seconds of an epoch's training and observation."
    run = RunRecord.open(folder)
    acc = run.metric("acc_f")
    train = [s for s in run.metric("train_seconds") if s is not None]
    observe = [s for s in run.metric("observe_seconds") if s is not None]
    return dict(epochs=len(acc) - 1, final_acc=acc[-1], best_acc=max(acc), final_acc_transductive=run.metric("acc_f_train")[-1],
                train_s_median=statistics.median(train) if train else None, observe_s_median=statistics.median(observe),
                history=[{k: m.get(k) for k in ("acc_f", "acc_f_train", "cluster_acc", "entropy_q")} for m in run.epochs])


def same_metrics(a: dict, b: dict) -> dict:
    "Per-epoch differences between two runs' recorded metrics."
    diffs = [abs(x[k] - y[k]) for x, y in zip(a["history"], b["history"], strict=True) for k in x]
    return dict(identical=max(diffs) == 0, max_abs_difference=max(diffs))


def train_step(session: Session, name: str, s: dict, args, runs: Path, launch: list[str], extra: list[str]) -> None:
    "A `sdrc train` step; its run's summary is added to the results."
    folder = runs / name
    argv = [*launch, "train", "--data", str(args.data), "--device", s["device"], "--epochs", str(s["epochs"]),
            "--record-samples", str(s["record_samples"]), "--no-report", "--out", str(folder), *extra]
    step = session.command(name, argv, s["estimates"][name])
    if step is not None and step["rc"] == 0:
        step.update(run_summary(folder))
        session.save()


def gpu_step(session: Session, name: str, s: dict, args, parts: str, extra: list[str]) -> None:
    "A bench/gpu_step.py step; its JSON is added to the results."
    out = session.out / f"{name}.json"
    argv = [sys.executable, str(REPO / "bench" / "gpu_step.py"), "--out", str(out), "--parts", parts, *s["step_args"], *extra]
    step = session.command(name, argv, s["estimates"][name])
    if step is not None and out.is_file():
        step.update(json.loads(out.read_text()))
        out.unlink()  # its figures are in results.json: one file fewer to bring back
        session.save()


def pack(session: Session, runs: Path) -> None:
    "Each run folder as run_NAME.tar without its checkpoint; the first run's checkpoint beside them."
    def write_tar(folder: Path, tmp: Path) -> None:
        with tarfile.open(tmp, "w") as tar:
            for path in sorted(folder.iterdir()):
                if path.name != "checkpoint.pt" and not path.name.startswith("."):
                    tar.add(path, arcname=f"{folder.name}/{path.name}")
    for folder in sorted(p for p in runs.iterdir() if p.is_dir()):
        atomic_write(session.out / f"run_{folder.name}.tar", lambda tmp: write_tar(folder, tmp))
    if (runs / "plain" / "checkpoint.pt").is_file():
        atomic_write(session.out / "checkpoint_plain.pt", lambda tmp: shutil.copyfile(runs / "plain" / "checkpoint.pt", tmp))
    session.results["files"] = {p.name: p.stat().st_size for p in sorted(session.out.iterdir()) if p.is_file()}
    too_big = [name for name, size in session.results["files"].items() if size > 16 * 2**20]
    if too_big:
        session.log(f"== over the 16 MiB a file may have to come back: {', '.join(too_big)}")
    session.save()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path, help="folder for results.json, log.txt and the packed runs")
    parser.add_argument("--data", type=Path, default=os.environ.get("SDRC_DATA"), help="the digit bundle's folder")
    parser.add_argument("--budget", type=float, default=540, help="seconds this session may take (default: 540)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU: checks the script itself")
    args = parser.parse_args()
    if args.data is None or not (Path(args.data) / "digits_real.npz").is_file() and not Path(args.data).is_file():
        parser.error(f"the digit bundle is not in {args.data} (pass --data FOLDER holding digits_real.npz)")
    s = SMOKE if args.smoke else FULL
    session = Session(args.out, args.budget)
    session.results.update(environment=environment(), smoke=args.smoke)
    session.log(json.dumps(session.results["environment"]))
    session.save()
    with tempfile.TemporaryDirectory() as tmp:
        launcher, runs = Path(tmp) / "sdrc_cli.py", Path(tmp) / "runs"
        launcher.write_text(LAUNCHER)
        plain = [sys.executable, str(launcher)]
        train_step(session, "plain", s, args, runs, plain, [])
        gpu_step(session, "step", s, args, "abcdf", ["--profile", str(session.out / "profile.txt")])
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1", str(launcher)]
        train_step(session, "torchrun", s, args, runs, torchrun, [])
        train_step(session, "compile", s, args, runs, plain, ["--compile"])
        gpu_step(session, "step_compile", s, args, "b", ["--compile"])
        steps = session.results["steps"]
        if "history" in steps["plain"] and "history" in steps["torchrun"]:
            session.results["torchrun_vs_plain"] = same_metrics(steps["plain"], steps["torchrun"])
        if runs.is_dir():
            pack(session, runs)
    session.log(f"== done in {session.budget - session.left():.0f} s; files: {session.results.get('files')}")


if __name__ == "__main__":
    main()

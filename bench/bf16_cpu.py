"""Does bf16 change SRDC's results? The GPU's training arithmetic, reproduced on the CPU.

On a GPU the trainer runs its training steps under bf16 autocast (the loss itself upcasts to float32). This runs the
default MNIST→USPS recipe (SRDC official, 30 epochs, 1 thread) with the same autocast switched on for the CPU, so the
final accuracies can be set against the float32 CPU runs of bench/digits_results.jsonl, seed for seed. It answers
the numerical question only; speed is bench/gpu_step.py's.

    python bench/bf16_cpu.py [--seeds 0 1 2] [--epochs 30] [--data PATH] [--out bench/bf16_cpu.jsonl]
"""
import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH.parent), str(BENCH)]
from digits import finals_by_seed, read_results  # noqa: E402
from sdrc.data import digit_pair  # noqa: E402
from sdrc.io import atomic_write  # noqa: E402
from sdrc.recipe import Recipe, Runtime  # noqa: E402
from sdrc.train import train  # noqa: E402

_autocast = torch.autocast


def bf16_everywhere(device_type, dtype=None, enabled=True, **kwargs):
    "torch.autocast, with the trainer's bf16 region (enabled only on CUDA) switched on for the CPU too."
    return _autocast(device_type, dtype=dtype, enabled=enabled or dtype is torch.bfloat16, **kwargs)


def run(seed: int, epochs: int, data) -> dict:
    "One bf16 run of the default recipe: its final, best and transductive accuracies and seconds."
    start = time.perf_counter()
    history = train(digit_pair("mnist", "usps", root=data), Recipe(preset="official", epochs=epochs, seed=seed, record_samples=0),
                    Runtime(device="cpu", threads=1, progress=False, log=None))
    return dict(seed=seed, epochs=epochs, final=history[-1]["acc_f"], best=max(m["acc_f"] for m in history),
                final_transductive=history[-1]["acc_f_train"], seconds=time.perf_counter() - start)


def float32_runs(epochs: int) -> dict:
    "The float32 CPU runs of the same recipe, by seed."
    return finals_by_seed(read_results(BENCH / "digits_results.jsonl"), "mnist:usps", "SRDC official", epochs)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--data", default=os.environ.get("SDRC_DATA"))
    parser.add_argument("--out", type=Path, help="append each run as a JSON line to this file")
    args = parser.parse_args()
    torch.autocast = bf16_everywhere
    reference, finals = float32_runs(args.epochs), []
    for seed in args.seeds:
        row = run(seed, args.epochs, args.data)
        finals.append(row["final"])
        if args.out:  # the file rewritten whole after each run: a stopped sweep keeps what it finished, never half a line
            kept = args.out.read_text() if args.out.is_file() else ""
            atomic_write(args.out, lambda tmp: tmp.write_text(kept + json.dumps(row) + "\n"))
        fp32 = f"{reference[seed]:.2%}" if seed in reference else "not run"
        print(f"seed {seed}: bf16 {row['final']:.2%} (float32 {fp32}), {row['seconds']:.0f} s", flush=True)
    if len(finals) > 1 and len(reference) > 1:
        print(f"bf16 {statistics.mean(finals):.2%} ± {statistics.stdev(finals):.2%} over {len(finals)} seeds; float32 "
              f"{statistics.mean(reference.values()):.2%} ± {statistics.stdev(reference.values()):.2%} over {len(reference)}")


if __name__ == "__main__":
    main()

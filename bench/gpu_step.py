"""SRDC training speed on one GPU: the released code's step against sdrc's, the per-epoch overhead, K-means, a digit run.

Random images and random weights (no downloads). What it measures, in order:
  (a) a training step in the released code's style: fp32, ResNet-50 + 2048→512 bottleneck, 64 source + 64 target
      images at 224², separate forward passes, SRDC losses with broadcast distances, SGD;
  (b) sdrc's training epoch on the same model and batch (bf16 autocast, channels-last, no host synchronisation per
      step, optionally torch.compile) on an Office-31-sized pair (2,817 source, 795 target images: Amazon→Webcam);
  (c) the observation that starts each epoch (feature extraction of every image, K-means in both spaces,
      dataset-level Q, source weights), as images/s and as a share of the training epoch;
  (d) 5 K-means iterations on 100,000×2048 with K=65 and on 200,000×2048 with K=345;
  (e) a full MNIST→USPS SRDC run of 30 epochs (needs the digit bundle: --data or $SDRC_DATA; skipped without it);
  (f) the epoch of (b) with the images read from JPEG files (random 300×300 pictures written to a temporary folder)
      through `ImageList`, the paper's transforms, DataLoader worker processes and pinned memory: does the data
      pipeline keep up with the GPU?
Each part also records the peak GPU memory it allocated. --profile FILE adds a torch.profiler table of one training
epoch of (b) and one observation, and counts the host synchronisations in that epoch. Prints a table with the targets
beside the measurements, and writes them as JSON to --out.

    python bench/gpu_step.py [--out gpu_step.json] [--compile] [--data PATH] [--parts abcdef] [--profile FILE]
    python bench/gpu_step.py --smoke     # tiny sizes on the CPU: checks the script itself, measures nothing useful
"""
import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from loss_overhead import released_code_style  # noqa: E402

from sdrc.cluster import kmeans  # noqa: E402
from sdrc.data import DomainPair, ImageList, TensorDomain, digit_pair, test_transform, train_transform  # noqa: E402
from sdrc.io import atomic_write, write_json  # noqa: E402
from sdrc.models import resnet50_net  # noqa: E402
from sdrc.observe import observe  # noqa: E402
from sdrc.recipe import Recipe, Runtime  # noqa: E402
from sdrc.train import Trainer, train  # noqa: E402

FULL = dict(device="cuda", image=224, n_source=2817, n_target=795, classes=31, batch=64, ref_steps=30,
            kmeans=((100_000, 2048, 65), (200_000, 2048, 345)), digit_epochs=30, workers=12)
SMOKE = dict(device="cpu", image=32, n_source=48, n_target=24, classes=4, batch=8, ref_steps=2,
             kmeans=((2_000, 64, 5), (4_000, 64, 10)), digit_epochs=1, workers=2)
PARTS = "abcdef"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(fn, device, repeats: int = 5, warmup: int = 1) -> float:
    "Median wall time of `fn()`, waiting for the GPU before and after each call."
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def random_domain(n: int, size: int, classes: int, name: str, device, g: torch.Generator) -> TensorDomain:
    "n random uint8 RGB images with random labels, held on `device`."
    x = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
    return TensorDomain(x, torch.randint(0, classes, (n,), generator=g), name, tuple(map(str, range(classes)))).to(device)


def reference_images_per_second(s: dict, device) -> float:
    "(a) The released code's style: fp32, NCHW, two forward passes, broadcast-distance SRDC losses, SGD."
    model = resnet50_net(s["classes"], weights=None).to(device)
    centres = [torch.zeros(s["classes"], d, device=device, requires_grad=True) for d in model.feature_dims]
    opt = torch.optim.SGD([*model.parameters(), *centres], lr=1e-3, momentum=0.9)
    g = torch.Generator().manual_seed(0)
    xs, xt = (torch.randn(s["batch"], 3, s["image"], s["image"], generator=g).to(device) for _ in range(2))
    ys = torch.randint(0, s["classes"], (s["batch"],), generator=g).to(device)
    model.train()

    def step():
        out_s, out_t = model(xs), model(xt)
        loss = released_code_style(dict(logits_s=out_s.logits, y_s=ys, logits_t=out_t.logits, feats_s=out_s.feats,
                                        feats_t=out_t.feats, centres=centres))
        opt.zero_grad()
        loss.backward()
        opt.step()

    seconds = median_seconds(lambda: [step() for _ in range(s["ref_steps"])], device, repeats=3)
    return 2 * s["batch"] * s["ref_steps"] / seconds


def peak_memory_gib(device, fn):
    "`fn()` and the most GPU memory it allocated, in GiB (None on the CPU)."
    if device.type != "cuda":
        return fn(), None
    torch.cuda.reset_peak_memory_stats(device)
    result = fn()
    return result, torch.cuda.max_memory_allocated(device) / 2**30


def warm_trainer(pair: DomainPair, s: dict, device, compile_model: bool, num_workers: int = 0):
    "A ResNet-50 trainer (random weights) on `pair` after one warm-up epoch (and compilation), a way to observe, and the first observation."
    recipe = Recipe(preset="official", epochs=10, batch_size=s["batch"], backbone_lr_mult=0.1, warmup_epochs=0,
                    record_samples=0)
    runtime = Runtime(device=str(device), compile=compile_model, workers=num_workers, progress=False, log=None)
    trainer = Trainer(pair, recipe, runtime, model=resnet50_net(s["classes"], weights=None))
    look = lambda epoch: observe(trainer.model, trainer.domains, epoch, recipe, num_workers=num_workers)  # noqa: E731
    obs = look(0)
    trainer.train_epoch(obs, 0)
    return trainer, look, obs


def time_epoch(pair: DomainPair, s: dict, device, compile_model: bool, num_workers: int = 0, repeats: int = 3) -> dict:
    "Median seconds of sdrc's training epoch and of its observation on `pair` (ResNet-50, random weights), after a warm-up epoch."
    trainer, look, obs = warm_trainer(pair, s, device, compile_model, num_workers)
    observe_s = median_seconds(lambda: look(1), device, repeats=repeats, warmup=0)
    epoch = median_seconds(lambda: trainer.train_epoch(obs, 1), device, repeats=repeats, warmup=0)
    steps = -(-max(s["n_source"], s["n_target"]) // s["batch"])
    return dict(epoch_s=epoch, observe_s=observe_s, images_per_s=2 * s["batch"] * steps / epoch)


def office_sized_pair(s: dict) -> DomainPair:
    "An Office-31-sized pair of random images held in memory (the target's test split is its training split)."
    g = torch.Generator().manual_seed(0)
    source, target = (random_domain(n, s["image"], s["classes"], name, "cpu", g)
                      for n, name in ((s["n_source"], "source"), (s["n_target"], "target")))
    return DomainPair(source, source, target, target, source.classes)


def sdrc_epoch(s: dict, device, compile_model: bool) -> dict:
    "(b) and (c): sdrc's training epoch and its observation on an Office-31-sized random pair held in memory."
    t = time_epoch(office_sized_pair(s), s, device, compile_model)
    n_images = s["n_source"] + 2 * s["n_target"]  # source train, target train and target test are extracted
    return dict(sdrc_images_per_s=t["images_per_s"], epoch_s=t["epoch_s"], observe_s=t["observe_s"],
                observe_share=t["observe_s"] / t["epoch_s"], extract_images_per_s=n_images / t["observe_s"])


def jpeg_domain(folder: Path, n: int, classes: int, name: str, g: torch.Generator, smoke: bool) -> ImageList:
    "n random 300×300 JPEG pictures in class folders, read with the paper's transforms (64² crops for --smoke)."
    names = tuple(f"c{k:03d}" for k in range(classes))
    for i in range(n):
        path = folder / name / names[i % classes] / f"{i:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = torch.randint(0, 256, (300, 300, 3), dtype=torch.uint8, generator=g).numpy()
        Image.fromarray(pixels).save(path, quality=90)
    resize, crop = (72, 64) if smoke else (256, 224)
    return ImageList(folder / name, names, transform=train_transform(resize, crop), eval_transform=test_transform(resize, crop),
                     name=name)


def disk_epoch(s: dict, device, compile_model: bool, smoke: bool) -> dict:
    "(f) the training epoch and observation of (b), with the images read from disk by DataLoader workers."
    g = torch.Generator().manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        source, target = (jpeg_domain(Path(tmp), n, s["classes"], name, g, smoke)
                          for n, name in ((s["n_source"], "source"), (s["n_target"], "target")))
        t = time_epoch(DomainPair(source, source, target, target, source.classes), s, device, compile_model,
                       num_workers=s["workers"], repeats=2)
    return dict(disk_images_per_s=t["images_per_s"], disk_epoch_s=t["epoch_s"], disk_observe_s=t["observe_s"])


def kmeans_seconds(n: int, d: int, k: int, device) -> float:
    "(d) 5 Lloyd iterations from the first k points."
    x = torch.randn(n, d, device=device)
    return median_seconds(lambda: kmeans(x, x[:k], 5), device)


def digit_run_seconds(epochs: int, device, data) -> float | None:
    "(e) SRDC (official) on MNIST→USPS, or None without the digit bundle."
    try:
        pair = digit_pair("mnist", "usps", root=data)
    except FileNotFoundError as err:
        print(f"(e) skipped: {err}", file=sys.stderr)
        return None
    start = time.perf_counter()
    history = train(pair, Recipe(preset="official", epochs=epochs, record_samples=0),
                    Runtime(device=str(device), progress=False, log=None))
    sync(device)
    print(f"(e) final target accuracy {history[-1]['acc_f']:.4f}", file=sys.stderr)
    return time.perf_counter() - start


def host_syncs(events) -> int:
    "How many times the host waited for a tensor's value (`.item()`, `bool()`, `float()`) among profiled events."
    return sum(e.count for e in events if e.key == "aten::_local_scalar_dense")


def profile_epoch(s: dict, device, compile_model: bool, path: str) -> dict:
    "One training epoch and one observation of (b) under torch.profiler: a table of the top operations, written to `path`."
    from torch.profiler import ProfilerActivity, profile
    trainer, look, obs = warm_trainer(office_sized_pair(s), s, device, compile_model)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    sort = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
    with profile(activities=activities) as epoch_prof:
        trainer.train_epoch(obs, 1)
        sync(device)
    with profile(activities=activities) as observe_prof:
        look(2)
        sync(device)
    steps = -(-max(s["n_source"], s["n_target"]) // s["batch"])
    text = (f"one training epoch ({steps} steps), {device}, compile={compile_model}\n"
            + epoch_prof.key_averages().table(sort_by=sort, row_limit=25)
            + "\n\none observation (extraction + K-means + Q + weights)\n"
            + observe_prof.key_averages().table(sort_by=sort, row_limit=25))
    atomic_write(path, lambda tmp: tmp.write_text(text))
    return dict(profile_steps=steps, host_syncs_per_epoch=host_syncs(epoch_prof.key_averages()))


def measure(s: dict, device, args) -> dict:
    "The parts of (a)–(f) that `args.parts` names, each with its peak GPU memory."
    r, memory = {}, {}
    if "a" in args.parts:
        r["reference_images_per_s"], memory["a"] = peak_memory_gib(device, lambda: reference_images_per_second(s, device))
    if "b" in args.parts or "c" in args.parts:
        epoch, memory["b"] = peak_memory_gib(device, lambda: sdrc_epoch(s, device, args.compile))
        r.update(epoch)
    if "a" in r and "sdrc_images_per_s" in r:
        r["speedup"] = r["sdrc_images_per_s"] / r["reference_images_per_s"]
    if "d" in args.parts:
        for n, d, k in s["kmeans"]:
            r[f"kmeans_{n}x{d}_k{k}_s"], memory[f"d {n}x{d}"] = peak_memory_gib(device, lambda: kmeans_seconds(n, d, k, device))
    if "e" in args.parts:
        r["digit_run_s"], memory["e"] = peak_memory_gib(device, lambda: digit_run_seconds(s["digit_epochs"], device, args.data))
    if "f" in args.parts:
        disk, memory["f"] = peak_memory_gib(device, lambda: disk_epoch(s, device, args.compile, args.smoke))
        r.update(disk)
    if args.profile:
        r.update(profile_epoch(s, device, args.compile, args.profile))
    r["peak_memory_gib"] = memory
    return r


def table_rows(r: dict, s: dict):
    "(what, measured, target) for each measured part."
    (n1, d1, k1), (n2, d2, k2) = s["kmeans"]
    if "reference_images_per_s" in r:
        yield "(a) released-code-style step", f"{r['reference_images_per_s']:.0f} images/s", ""
    if "sdrc_images_per_s" in r:
        ratio = f" ({r['speedup']:.2f}×)" if "speedup" in r else ""
        yield "(b) sdrc step", f"{r['sdrc_images_per_s']:.0f} images/s{ratio}", "≥ 3× (a)"
        yield "(c) observation: extraction + K-means + Q + weights", f"{r['observe_s']:.2f} s, {r['observe_share']:.1%} of an epoch", "≤ 15 %"
        yield "(c) extraction throughput", f"{r['extract_images_per_s']:.0f} images/s", ""
    if f"kmeans_{n1}x{d1}_k{k1}_s" in r:
        yield f"(d) K-means {n1:,}×{d1}, K={k1}, 5 iterations", f"{1e3 * r[f'kmeans_{n1}x{d1}_k{k1}_s']:.1f} ms", ""
        yield f"(d) K-means {n2:,}×{d2}, K={k2}, 5 iterations", f"{1e3 * r[f'kmeans_{n2}x{d2}_k{k2}_s']:.1f} ms", "≤ 100 ms"
    if "digit_run_s" in r:
        digit = "skipped" if r["digit_run_s"] is None else f"{r['digit_run_s']:.1f} s"
        yield f"(e) MNIST→USPS, {s['digit_epochs']} epochs", digit, "≤ 60 s"
    if "disk_images_per_s" in r:
        share = f" ({r['disk_images_per_s'] / r['sdrc_images_per_s']:.0%} of (b))" if "sdrc_images_per_s" in r else ""
        yield f"(f) (b) read from JPEG files, {s['workers']} workers", f"{r['disk_images_per_s']:.0f} images/s{share}", ""
        yield "(f) observation from JPEG files", f"{r['disk_observe_s']:.2f} s", ""
    if "host_syncs_per_epoch" in r:
        yield "host synchronisations in a training epoch", f"{r['host_syncs_per_epoch']} in {r['profile_steps']} steps", "O(1) on a GPU"
    for part, gib in r["peak_memory_gib"].items():
        if gib is not None:
            yield f"peak GPU memory, ({part})", f"{gib:.2f} GiB", ""


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="gpu_step.json")
    parser.add_argument("--data", default=os.environ.get("SDRC_DATA"))
    parser.add_argument("--compile", action="store_true", help="torch.compile sdrc's model")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU")
    parser.add_argument("--parts", default=PARTS, help=f"which of (a)–(f) to measure (default: {PARTS})")
    parser.add_argument("--profile", metavar="FILE", help="profile one training epoch of (b) and one observation into FILE")
    args = parser.parse_args()
    if not args.parts or set(args.parts) - set(PARTS):
        parser.error(f"--parts takes letters of {PARTS}, got {args.parts!r}")
    s = SMOKE if args.smoke else FULL
    device = torch.device(s["device"])
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA device; use --smoke to check the script on the CPU")
    torch.backends.cudnn.benchmark = True
    r = dict(device=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu", torch=torch.__version__,
             compile=args.compile, smoke=args.smoke)
    r.update(measure(s, device, args))
    write_json(args.out, r)  # atomic: a stopped benchmark leaves no half-written file
    print(f"{r['device']}, torch {r['torch']}, compile={args.compile}{' (smoke sizes)' if args.smoke else ''}")
    for what, value, target in table_rows(r, s):
        print(f"{what:<55} {value:>32}  {target}")

if __name__ == "__main__":
    main()

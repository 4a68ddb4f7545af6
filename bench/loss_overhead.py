"""Time SDRCLoss forward+backward against a plain cross-entropy on the same logits, on the CPU.

Batch 64 source + 64 target, K=65 (Office-Home), two feature spaces of width 2048 and 512 as in the
paper's ResNet-50 setup. Prints medians over repeated runs and their ratio.

    python bench/loss_overhead.py [--repeats 200] [--threads 2]
"""
import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from sdrc.core import SDRCLoss


def make_batch(n=64, k=65, dims=(2048, 512), seed=0):
    "Random logits, labels, features and centres shaped like one SRDC iteration."
    g = torch.Generator().manual_seed(seed)
    def leaf(*shape):
        return torch.randn(*shape, generator=g).requires_grad_()
    return dict(logits_s=leaf(n, k), y_s=torch.randint(0, k, (n,), generator=g), logits_t=leaf(n, k),
                feats_s=[leaf(n, d) for d in dims], feats_t=[leaf(n, d) for d in dims],
                centres=[leaf(k, d) for d in dims])


def released_code_style(b, lam=0.5, alpha=1.0):
    """The same official-preset loss written the way the released code computes it: distances through an
    N×K×D broadcast, softmax of the kernel, Q per batch. A reference point for sdrc's implementation."""
    def kernel(z, mu):
        return (1 + (z.unsqueeze(1) - mu.unsqueeze(0)).pow(2).sum(2) / alpha).pow(-(alpha + 1) / 2)

    def target_term(out):
        p = F.softmax(out, 1)
        q = p / p.sum(0, keepdim=True).pow(0.5)
        q = q / q.sum(1, keepdim=True)
        return -(q * F.log_softmax(out, 1)).sum(1).mean()

    loss = F.cross_entropy(b["logits_s"], b["y_s"]) + lam * target_term(b["logits_t"])
    for zs, zt, mu in zip(b["feats_s"], b["feats_t"], b["centres"]):
        loss = loss + lam * (target_term(kernel(zt, mu)) + F.cross_entropy(kernel(zs, mu), b["y_s"]))
    return loss


def median_ms(step, repeats, warmup=10):
    "Median wall time of `step()` in milliseconds."
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def check_same_value(b):
    "The reference and SDRCLoss compute the same number, so the timings compare like with like."
    ours = SDRCLoss(65, "official")(**b, lam=0.5).loss.item()
    ref = released_code_style(b).item()
    assert abs(ours - ref) <= 1e-4 * abs(ref), (ours, ref)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    b = make_batch()
    check_same_value(b)

    def cross_entropy():
        loss = F.cross_entropy(b["logits_s"], b["y_s"]) + F.cross_entropy(b["logits_t"], b["logits_t"].argmax(1))
        loss.backward()

    rows = [("cross-entropy (source + target)", median_ms(cross_entropy, args.repeats)),
            ("released-code-style SRDC loss", median_ms(lambda: released_code_style(b).backward(), args.repeats))]
    for preset, checks in (("official", True), ("official", False)):
        loss_fn = SDRCLoss(65, preset, check_inputs=checks)
        rows.append((f"SDRCLoss {preset}, check_inputs={checks}",
                     median_ms(lambda: loss_fn(**b, lam=0.5).loss.backward(), args.repeats)))
    base = rows[0][1]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch 64+64, K=65, features 2048+512")
    print(f"{'what':<40} {'median ms':>10} {'ratio':>7}")
    for name, ms in rows:
        print(f"{name:<40} {ms:>10.3f} {ms / base:>7.1f}")


if __name__ == "__main__":
    main()

"""Which epoch would each label-free score have picked? Read from the digits benchmark's per-epoch histories.

For every (pair, method) of bench/digits_results.jsonl and every score of sdrc.scores, over the runs (seeds): how many
points of target test accuracy the score's pick loses against the best epoch (chosen with the target's labels) and
gains or loses against simply taking the last epoch (mean ± std), how often it picks an epoch flagged as a collapse or
more than 5 points below the run's best, and its weighted Spearman with the accuracy over the epochs. Writes a markdown
table (--out) and prints it.

    python bench/selection.py [--results bench/digits_results.jsonl] [--out bench/selection.md]
"""
import argparse
import json
import statistics
from pathlib import Path

from sdrc.evidence import compare
from sdrc.scores import SCORES
from sdrc.select import choices

BAD = 0.05  # a pick more than 5 points below the run's best epoch


def run_choices(row: dict) -> dict[str, dict]:
    "The choices of one benchmark run, by score (and 'last epoch')."
    history = dict(row["history"], epoch=list(range(len(row["history"]["acc_f"]))))
    return {c["score"]: c for c in choices(history)}


def summary(rows: list[dict], score: str) -> dict:
    "Over the runs of one (pair, method): what choosing by `score` costs and how often it picks badly."
    picks = [(run_choices(r)[score], r["history"]) for r in rows if score in run_choices(r)]
    if not picks:
        return {}
    vs_best = [100 * (c["acc"] - c["best"]) for c, _ in picks]
    vs_last = [100 * (c["acc"] - c["final"]) for c, _ in picks]
    bad = sum(h["collapsed"][c["epoch"]] or c["acc"] < c["best"] - BAD for c, h in picks)
    ws = [c["weighted_spearman"] for c, _ in picks if c["weighted_spearman"] == c["weighted_spearman"]]
    verdict = "" if score == "last epoch" else compare([c["acc"] for c, _ in picks], [c["final"] for c, _ in picks], paired=True).verdict
    return dict(n=len(picks), vs_best=vs_best, vs_last=vs_last, bad=bad, ws=statistics.mean(ws) if ws else None, verdict=verdict)


def pm(values: list[float]) -> str:
    return f"{statistics.mean(values):+.1f} ± {statistics.stdev(values):.1f}" if len(values) > 1 else f"{values[0]:+.1f}"


def table(results: list[dict]) -> str:
    "One line per (pair, method, score)."
    lines = ["| pair | method | score | runs | pick − best epoch (points) | pick − last epoch (points) | against the last epoch "
             "| bad picks | weighted Spearman |", "|---|---|---|---|---|---|---|---|---|"]
    keys = sorted({(r["pair"], r["method"]) for r in results if "history" in r}, key=lambda k: (k[0], k[1]))
    for pair, method in keys:
        rows = [r for r in results if r["pair"] == pair and r["method"] == method and "history" in r]
        for score in (*SCORES, "last epoch"):
            s = summary(rows, score)
            if s:
                ws = "—" if s["ws"] is None else f"{s['ws']:+.2f}"
                lines.append(f"| {pair.replace(':', ' → ')} | {method} | {score} | {s['n']} | {pm(s['vs_best'])} | "
                             f"{pm(s['vs_last'])} | {s['verdict']} | {s['bad']} | {ws} |")
    return "\n".join(lines)


def overall(results: list[dict], methods: tuple[str, ...]) -> str:
    "Every score over all the runs of `methods` on every pair: mean loss against the best and the last epoch."
    rows = [r for r in results if r["method"] in methods and "history" in r]
    if not rows:
        return f"No run of {', '.join(methods)} kept its per-epoch history."
    lines = [f"Over {len(rows)} runs ({', '.join(methods)}, every pair and seed):", "",
             "| score | pick − best epoch (points) | pick − last epoch (points) | against the last epoch | bad picks "
             "| weighted Spearman |", "|---|---|---|---|---|---|"]
    for score in (*SCORES, "last epoch"):
        s = summary(rows, score)
        if s:
            ws = "—" if s["ws"] is None else f"{s['ws']:+.2f}"
            lines.append(f"| {score} | {pm(s['vs_best'])} | {pm(s['vs_last'])} | {s['verdict']} | {s['bad']} of {s['n']} | {ws} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", default="bench/digits_results.jsonl")
    parser.add_argument("--out", default="bench/selection.md")
    args = parser.parse_args()
    results = [json.loads(line) for line in Path(args.results).read_text().splitlines()]
    srdc = tuple(sorted({r["method"] for r in results if r["method"].startswith("SRDC")}))
    text = ("Label-free model selection on the digits benchmark (30 epochs; epochs 1–30 are the candidates). 'Against the "
            "last epoch': the verdict on each run's pick against its last epoch, run by run (sdrc.evidence.compare, paired)."
            "\n\n"
            + overall(results, srdc) + "\n\n" + overall(results, ("source-only", "DANN")) + "\n\nBy pair and method:\n\n"
            + table(results) + "\n")
    out = Path(args.out)
    partial = out.with_name(f".{out.name}.partial")
    partial.write_text(text)
    partial.replace(out)
    print(text)


if __name__ == "__main__":
    main()

"""Batch-norm statistics on small sets: recomputed over the training data before each validation
(`--precise-bn`, PreciseBN in kit/train/averaging.py) against the running averages alone (the
default), side by side at the same seeds; prints the held-out scores, the validation score
after the first epoch, the first layer group's rate the second finder read, and the time.

A pretrained network keeps the recipe's batch on a small set (kit/data/loader.py train_batch),
so a few hundred photos make a few batches an epoch, where the running statistics lag most
(from scratch the batch shrinks until an epoch has 16).

Sets (benchmarks/distill.py's, made as it makes them from what installed wheels ship; a seed
moves the validation split too): 300 and 600 transfer photos of 64 px (invasive's recipe at
64 px, batch 32: 7 and 15 batches an epoch; AUC on three times as many test photos), and 300
photos of nine breeds through the recipe `kit new` writes (96 px, batch 64: 3 batches an
epoch; log loss on 900).

Run: `python -m benchmarks.precise_bn [--work DIR] [--seeds 3]` on a quiet machine (about 25
minutes on 2 CPU cores). Results are kept in DIR/precise_bn.jsonl: a run that was cut off goes
on where it stopped.
"""

import argparse
import os
import sys
import time
from pathlib import Path

import fastprogress.fastprogress as fastprogress
import pandas as pd

import kit
from benchmarks import pages
from benchmarks.distill import SETS, held_out, make
from benchmarks.head_cycles import gained
from benchmarks.lr import keep, read_rows

TODO = (("transfer", 300), ("transfer", 600), ("breeds", 300))  # (set, labelled images)
RULES = ("running averages (the default)", "recomputed (`--precise-bn`)")


def measure(work: Path, seeds: int) -> list[dict]:
    """Each (set, size, seed) both ways, appended to precise_bn.jsonl as it ends."""
    path = work / "precise_bn.jsonl"
    rows = read_rows(path)
    have = {(r["set"], r["labelled"], r["seed"], r["rule"]) for r in rows}
    for name, labelled in TODO:
        recipe, metric, fields = SETS[name]
        home = work / f"labelled-{labelled}"  # distill.py's layout: the breeds recipe in it
        home.mkdir(parents=True, exist_ok=True)
        os.chdir(home)
        folder = home / name / "data"
        if not folder.exists():
            make(name, folder, labelled)
        for seed in range(seeds):
            for rule in RULES:
                if (name, labelled, seed, rule) in have:
                    continue
                start = time.perf_counter()
                options = dict(seed=seed, fold_seed=seed, precise_bn=rule == RULES[1], **fields)
                with pages.quiet(work / "runs.log"):
                    got = kit.run(recipe, data=folder, out=work / "out", **options)
                run_dir = Path(got["run_dir"])
                history = pd.read_csv(run_dir / "history.csv")
                rows.append(keep(path, {
                    "set": name, "labelled": labelled, "seed": seed, "rule": rule,
                    "score": held_out(metric, folder, run_dir), "metric": metric,
                    "first_valid": float(history.iloc[0, -1]), "epochs": len(history),
                    "lr_low": got.get("lr_low"), "run": run_dir.name,
                    "seconds": round(time.perf_counter() - start, 1),
                }))  # fmt: skip
    return rows


def report(rows: list[dict]) -> None:
    """One row per (set, rule): held-out scores seed by seed, their mean, the validation score
    after the first epoch (mean), the mean time; for the recomputed statistics, the gain at
    each seed (AUC in points, log loss as itself, lower better)."""
    print(
        "\n| set | batch-norm statistics at validation | held-out score, seed by seed | mean "
        "| validation after epoch 1 (mean) | first group's rate, seed by seed | mean time | "
        "gained, seed by seed (mean) | better at |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    df = pd.DataFrame(rows)
    for (name, labelled), d in df.groupby(["set", "labelled"], sort=False):
        metric = d["metric"].iloc[0]
        base = d[d["rule"] == RULES[0]].set_index("seed")
        for rule in RULES:
            t = d[d["rule"] == rule].set_index("seed")
            t = t[t.index.isin(base.index)]
            rates = " ".join(f"{x:.0e}" for x in t["lr_low"])
            scores = " ".join(f"{s:.4f}" for s in t["score"])
            line = (f"| {name} {labelled} ({metric}) | {rule} | {scores} | "
                    f"{t['score'].mean():.4f} | {t['first_valid'].mean():.3f} | {rates} | "
                    f"{t['seconds'].mean():.0f} s |")  # fmt: skip
            if rule == RULES[0]:
                print(line + " | |")
                continue
            print(f"{line} {gained(metric, t, base)} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, default=Path(".bench/precise-bn"))
    p.add_argument("--seeds", type=int, default=3)
    args = p.parse_args()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    fastprogress.NO_BAR = True
    report(measure(work, args.seeds))


if __name__ == "__main__":
    sys.exit(pages.run(main, "precise_bn"))

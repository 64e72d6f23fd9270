"""The pretrained head stage's length: `--head-cycles 3` (the seed's `fit(lr, 3, cycle_len=1)`,
the invasive recipe's until this benchmark) against 1 (the recipe default, `kit new`'s), side by
side at the same seeds; prints each set's held-out score and wall time for both, seed by seed.

A head epoch costs about as much as an unfrozen one: fastai's freeze keeps batch-norm layers
training, so the backward pass still runs through the whole body. Two head epochs fewer are
about a fifth of a transfer run's ten epochs.

Sets: benchmarks/equal_time.py's photo sets (made as it makes them, in the same work folder, all
from what installed wheels ship): the invasive sample's 400x300 JPEG photos at 128 px, 3,000
transfer photos of 64 px as JPEG and as PNG (invasive's recipe), and 2,700 photos of nine breeds
at 64 px through the recipe `kit new` writes (log loss); and 600 transfer photos of 64 px as PNG
(200 test), made here as equal_time makes its 3,000, where an epoch is 15 steps. A seed moves
the validation split too (`--fold-seed`). Every run is `kit run` in its own process, timed
whole, and scored on held-out test labels no run saw.

Run: `python -m benchmarks.head_cycles [--work DIR] [--seeds 3]` on a quiet machine (about 55
minutes on 2 CPU cores). Results are kept in DIR/head_cycles.jsonl: a run that was cut off goes
on where it stopped.
"""

import argparse
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks import equal_time, pages
from benchmarks.equal_time import kit_run, made
from benchmarks.lr import keep, read_rows
from benchmarks.photo_sets import write_transfer

SMALL = "transfer 600 64 px PNG"
SETS = ("photos 400x300 JPEG", SMALL, "transfer 64 px JPEG", "transfer 64 px PNG",
        "breeds 64 px PNG")  # fmt: skip
CYCLES = (3, 1)  # before, then the candidate
LOWER = {"logloss"}  # metrics where lower is better


def gained(metric: str, now: pd.DataFrame, before: pd.DataFrame) -> str:
    """`now`'s score against `before`'s, seed by seed (both indexed by seed): each gain (a score
    out of 1 in points, log loss as itself, lower better), their mean, and at how many seeds
    `now` was better, as two table cells."""
    scale, form = (-1, ".4f") if metric in LOWER else (100, ".2f")
    gains = [scale * (now.at[i, "score"] - before.at[i, "score"]) for i in now.index]
    listed = " ".join(f"{g:+{form}}" for g in gains)
    return f"{listed} ({np.mean(gains):+{form}}) | {sum(g > 0 for g in gains)} of {len(gains)}"


def sets(work: Path) -> dict:
    """name: (its folder, the kit's recipe and flags, its metric, how to make it): equal_time's,
    and SMALL."""
    png = ("invasive", "--size", "64", "--ext", ".png")
    small = (work / "transfer-600-png", png, "auc",
             lambda folder: write_transfer(folder, 600, 200, 64, ext=".png"))  # fmt: skip
    return equal_time.sets_to_make(work) | {SMALL: small}


def measure(work: Path, seeds: int) -> list[dict]:
    """Each (set, seed) at 3 head cycles and at 1, appended to head_cycles.jsonl as it ends."""
    path = work / "head_cycles.jsonl"
    rows = read_rows(path)
    have = {(r["set"], r["seed"], r["head_cycles"]) for r in rows}
    for name in SETS:
        folder, how, metric, write = sets(work)[name]
        made(folder, write)
        for seed in range(seeds):
            for n in CYCLES:
                if (name, seed, n) in have:
                    continue
                out = work / "out" / f"head-cycles-{name.replace(' ', '_')}-{seed}-{n}"
                shutil.rmtree(out, ignore_errors=True)  # a run cut off half-way starts again
                flags = ("--head-cycles", str(n), "--seed", str(seed), "--fold-seed", str(seed))
                got = kit_run(folder, (*how, *flags), metric, out)
                rows.append(keep(path, {"set": name, "seed": seed, "head_cycles": n, **got}))
    return rows


def report(rows: list[dict]) -> None:
    """One row per (set, head cycles): the scores seed by seed and their mean, the mean time,
    and for 1 cycle what it gained at each seed against 3 (AUC in points, log loss as itself,
    lower better) and its time against theirs."""
    print(
        "\n| set | head cycles | held-out score, seed by seed | mean | mean time | "
        "gained against 3 cycles, seed by seed (mean) | better at | time against 3 cycles |"
    )
    print("|---|---|---|---|---|---|---|---|")  # fmt: skip
    df = pd.DataFrame(rows)
    for name in SETS:
        d = df[df["set"] == name]
        if d.empty:
            continue
        metric = sets(Path())[name][2]
        base = d[d["head_cycles"] == CYCLES[0]].set_index("seed")
        for n in CYCLES:
            t = d[d["head_cycles"] == n].set_index("seed")
            t = t[t.index.isin(base.index)]
            scores = " ".join(f"{s:.4f}" for s in t["score"])
            line = (f"| {name} ({metric}) | {n} | {scores} | {t['score'].mean():.4f} | "
                    f"{t['seconds'].mean():.0f} s |")  # fmt: skip
            if n == CYCLES[0]:
                print(line + " | | |")
                continue
            ratio = t["seconds"].sum() / base.loc[t.index, "seconds"].sum()
            print(f"{line} {gained(metric, t, base)} | {ratio:.2f}x |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, default=Path(".bench/equal-time"))
    p.add_argument("--seeds", type=int, default=3)
    args = p.parse_args()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("KIT_CACHE", str(work / "cache"))
    report(measure(work, args.seeds))


if __name__ == "__main__":
    sys.exit(pages.run(main, "head_cycles"))

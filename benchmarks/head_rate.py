"""The pretrained head's learning rate: minimum's reading with the floor auto's runs now have
for a new head on a frozen pretrained body (kit/train/finder.py HEAD_LEAST), against the same
reading without it, side by side at the same seeds; prints the head rates, their spread over
the seeds, and the held-out scores.

minimum reads a tenth of the rate at the finder curve's lowest smoothed loss. Where that curve
bottoms out flat, noise places its lowest point anywhere along the bottom and the reading swings
with the seed; below HEAD_LEAST the run trains the head at HEAD_LEAST instead. A reading at or
above it is not moved: there the run with the floor is the run without it, kept once.

Sets: those of benchmarks/augment.py on which its runs' head finder read below the floor at some
seed (made from what installed wheels ship; scores on held-out labels no run saw): 600 transfer
photos of 64 px (PNG, AUC on 1,000), also with --start-size 64 --size 96; 300 photos and the same
turned by multiples of 90 degrees (`invasive`, 64 px, AUC on 300), with the augmentations under
which the readings fell below it; and, at one seed, benchmarks/equal_time.py's 3,000 transfer
photos of 64 px, JPEG and PNG (the README's table).

Run: `python -m benchmarks.head_rate [--work DIR] [--seeds 3]` (about 40 minutes on 2 idle
cores; DIR is benchmarks/augment.py's, whose data sets and caches it shares). Results are kept in
DIR/head_rate.jsonl: a run that was cut off goes on where it stopped.
"""

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks import pages
from benchmarks.augment import AUGMENT, auc, data_sets
from benchmarks.lr import keep, rate_range, read_rows, train
from benchmarks.photo_sets import write_transfer
from kit.train import finder

BEFORE, NOW = "no floor (before)", f"at least {finder.HEAD_LEAST:g} (auto now)"
# the augmentations under which augment.py's head readings fell below the floor at some seed
PHOTOS = ("`--dihedral`", "`--crop-scale 0.35`", "`--saturation 0.3 --hue 0.05`",
          "`--auto-augment trivial`")  # fmt: skip
TURNED = ("the recipe's defaults", *PHOTOS, "`--erase 0.25`")


def sets(work: Path, seeds: int) -> dict:
    """name: (recipe, folder, options, scores, seeds), most from benchmarks/augment.py's sets."""
    made = data_sets(work, 3000, 300)

    def at(name: str, trick: str = "the recipe's defaults", **more) -> tuple:
        recipe, folder, options, scores, _ = made[name]
        return recipe, folder, options | AUGMENT[trick] | more, scores, range(1, seeds + 1)

    todo = {"transfer 600 PNG, 64 px": at("transfer 64 px PNG, pretrained")}
    for ext in (".jpg", ".png"):  # benchmarks/equal_time.py's and the README's 3,000 photos
        folder = work / f"transfer-3000{ext.replace('.', '-')}"
        if not folder.exists():
            write_transfer(folder, 3000, 1000, 64, ext=ext)
        name = f"transfer 3,000 {ext[1:].upper()}, 64 px"
        todo[name] = ("invasive", folder, {"size": 64}, {"auc": auc}, [1])  # one seed: 2 min a run
    todo["transfer 600 PNG, 64 px, `--start-size 64 --size 96`"] = at(
        "transfer 64 px PNG, pretrained", size=96, start_size=64
    )
    for trick in PHOTOS:
        todo[f"photos 300, 64 px, {trick}"] = at("photos, pretrained", trick)
    for trick in TURNED:
        todo[f"turned photos 300, 64 px, {trick}"] = at("turned photos, pretrained", trick)
    return todo


def measure(work: Path, todo: dict) -> list[dict]:
    """Each (set, seed) without the floor and with it, appended to head_rate.jsonl as it ends."""
    path = work / "head_rate.jsonl"
    done = read_rows(path)
    have = {(d["data"], d["rule"], d["seed"]): d for d in done}
    for name, (recipe, folder, options, scores, seeds) in todo.items():

        def score_all(sub, folder, scores=scores):
            return {k: f(sub, folder) for k, f in scores.items()}

        for seed in seeds:
            before = have.get((name, BEFORE, seed))
            if before is None:
                least, finder.HEAD_LEAST = finder.HEAD_LEAST, 0.0
                try:
                    got = train(work, recipe, folder, options, score_all, seed)
                finally:
                    finder.HEAD_LEAST = least
                before = keep(path, {"data": name, "rule": BEFORE, "seed": seed} | got)
                done.append(before)
            if (name, NOW, seed) in have:
                continue
            row = {"data": name, "rule": NOW, "seed": seed}
            if before["head_lr"] >= finder.HEAD_LEAST:  # not moved: the same run
                row |= {k: before[k] for k in ("score", "lr", "head_lr", "lr_low", "seconds")}
                row["same"] = True
            else:
                row |= train(work, recipe, folder, options, score_all, seed)
            done.append(keep(path, row))
    return done


def report(rows: list[dict]) -> None:
    """One row per (set, rule): the head rates (range and spread over the seeds), the mean
    held-out score, and each seed's points from the run without the floor."""
    print(
        "\n| data set | head rate | head rates (spread) | held-out score (mean of seeds) | "
        "points from no floor, seed by seed (mean) | better at | seeds where the floor moved "
        "the rate |"
    )
    print("|---|---|---|---|---|---|---|")
    df = pd.DataFrame(rows)
    for name, d in df.groupby("data", sort=False):
        base = d[d["rule"] == BEFORE].set_index("seed")
        for rule in (BEFORE, NOW):
            t = d[d["rule"] == rule].set_index("seed")
            m = next(iter(t["score"].iloc[0]))
            diffs = [100 * (t.at[i, "score"][m] - base.at[i, "score"][m]) for i in t.index]
            gains = " ".join(f"{g:+.2f}" for g in diffs) + f" ({np.mean(diffs):+.2f})"
            moved = int(t["same"].ne(True).sum()) if "same" in t else len(t)
            now = rule == NOW
            print(f"| {name} | {rule} | {rate_range(t['head_lr'])} | "
                  f"{m} {np.mean([s[m] for s in t['score']]):.4f} | {gains if now else ''} | "
                  f"{f'{sum(x > 0 for x in diffs)} of {len(diffs)}' if now else ''} | "
                  f"{f'{moved} of {len(t)}' if now else ''} |")  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work", type=Path, default=Path("/tmp/kit-bench-augment"))
    p.add_argument("--seeds", type=int, default=3)
    args = p.parse_args()
    args.work = args.work.resolve()
    args.work.mkdir(parents=True, exist_ok=True)
    os.chdir(args.work)  # kit new writes, and kit finds, the breeds recipe in ./competitions
    report(measure(args.work, sets(args.work, args.seeds)))


if __name__ == "__main__":
    sys.exit(pages.run(main, "head_rate"))

"""The learning-rate finder's length on small sets: fastai's 100 steps against the kit's bound
(kit/train/finder.py `steps`: two passes over the training batches, 30 steps at least, 100 at
most, the loss smoothed over the same share of the sweep).

On a small set 100 steps are many epochs over the same few batches (33 on the invasive sample,
whose whole schedule is 30 steps), so the finder can cost more than the training. Every set
here has fewer than 50 training batches, so the bound shortens its finder; each is trained with
the recipe's defaults at three seeds (a seed moves the validation split too), once with the
bounded finder and once with 100 steps, all else the same, and scored on held-out test labels.
The sets are made as `benchmarks/lr.py` makes them, plus the invasive sample as bundled.

Run: `python benchmarks/finder.py [--work DIR] [--seeds 3]`. About 30 minutes on 2 CPU cores;
it picks up where it stopped (results.jsonl).
"""

import argparse
import contextlib
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from competitions import invasive
from kit.train import finder

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lr import data_sets, keep, read_rows, train  # noqa: E402  (benchmarks/lr.py)

CONFIGS = {"bounded": finder.PASSES, "100 steps": 10**6}  # PASSES: 10**6 passes is fastai's 100


@contextlib.contextmanager
def passes(n: int):
    kept, finder.PASSES = finder.PASSES, n
    try:
        yield
    finally:
        finder.PASSES = kept


def sets(work: Path) -> dict:
    """The small sets of benchmarks/lr.py, and the invasive sample as bundled."""
    chosen = {k: v[:4] for k, v in data_sets(work).items() if not k.startswith("digits 8k")}
    sample = work / "invasive-sample"
    if not sample.exists():
        sample.mkdir()
        invasive.write_sample(sample)
    chosen["invasive sample, pretrained"] = ("invasive", sample, dict(invasive.SAMPLE),
                                             chosen["photos 600, pretrained"][3])  # fmt: skip
    return chosen


def planned_steps(run_dir: Path) -> int:
    """The steps the run's (first) finder planned, from its sweep: each step multiplies the rate
    by (END_LR / START_LR) ** (1 / steps)."""
    csv = min(run_dir.glob("lr_find*.csv"))  # lr_find.csv, or lr_find_frozen.csv first
    lrs = pd.read_csv(csv)["lr"]
    return round(np.log(finder.END_LR / finder.START_LR) / np.log(lrs.iloc[1] / lrs.iloc[0]))


def report(rows: list[dict]) -> None:
    df = pd.DataFrame(rows)
    print("\n| data set | finder | steps per finder | held-out score, mean (min-max) "
          "| points from 100 steps, seed by seed (mean) | seconds per run (mean) |"
          "\n|---|---|---|---|---|---|")  # fmt: skip
    for name, group in df.groupby("data", sort=False):
        base = group[group["config"] == "100 steps"].set_index("seed")["score"]
        for config, g in group.groupby("config", sort=False):
            s = g.set_index("seed")["score"]
            diff = ((s - base.loc[s.index]) * 100).round(2)
            points = (
                ""
                if config == "100 steps"
                else (" ".join(f"{d:+.2f}" for d in diff) + f" ({diff.mean():+.2f})")
            )
            print(
                f"| {name} | {config} | {g['steps'].iloc[0]} | {s.mean():.4f} "
                f"({s.min():.4f}-{s.max():.4f}) | {points} | {g['seconds'].mean():.0f} |"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path(".bench/finder"))
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    path = args.work / "results.jsonl"
    rows = read_rows(path)
    have = {(d["data"], d["config"], d["seed"]) for d in rows}
    for name, (recipe, folder, options, score) in sets(args.work).items():
        for seed in range(1, args.seeds + 1):
            for config, n in CONFIGS.items():
                if (name, config, seed) in have:
                    continue
                with passes(n):
                    row = {"data": name, "config": config, "seed": seed}
                    row.update(train(args.work, recipe, folder, options, score, seed))
                row["steps"] = planned_steps(Path(row["run_dir"]))
                rows.append(keep(path, row))
    report(rows)


if __name__ == "__main__":
    main()

"""Training tricks benchmark: prints the README's table of the tricks competitors use against
the recipes' defaults.

On three of the data sets of benchmarks/lr.py (made from what installed wheels ship, see there),
at three seeds each (a seed moves the validation split too), `kit run` trains with the recipe's
defaults, the finder's rate included, and once more with each trick switched on, all else the
same: label smoothing, MixUp, CutMix, a moving average of the weights, fewer and more epochs
(SGDR cycles double in length: `--cycles 2, 3, 4` train the last stage 3, 7 and 15 epochs), and,
from scratch, a digit net twice as wide (64 channels in its first stage, not 32). Every run is
scored on held-out test labels that no run saw.

Run: `python -m benchmarks.tricks [--work DIR] [--seeds 3]`. Results are kept in
DIR/tricks.jsonl: a run that was cut off goes on where it stopped. About 40 minutes on 2 cores.

`--schedules` prints instead the table that chose the default maximum for the plan's rule
(kit/train/plan.py: a stage stops at a cycle that gained less than the score's noise): the
recipe's cycles trained exactly (--exact-cycles, the schedule before the rule), and the rule
with the recipe's maximum and with larger ones, on the same sets and seeds; epochs trained and
held-out scores (robust to a loaded machine), seconds only indicative. Kept in schedules.jsonl.
"""

import argparse
import json
import sys
from functools import partial
from pathlib import Path

import pandas as pd

from benchmarks.lr import data_sets, keep, read_rows, train
from kit.train.models import KIT_NETS, DigitNet

WIDE = "digitnet_wide"
KIT_NETS[WIDE] = partial(DigitNet, width=64)  # for this benchmark only
TRICKS = {
    "the recipe's defaults": {},
    "`--label-smoothing 0.1`": {"label_smoothing": 0.1},
    "`--mixup 0.4`": {"mixup": 0.4},
    "`--cutmix 1.0`": {"cutmix": 1.0},
    "`--ema 0.999`": {"ema": 0.999},
    "`--cycles 2` (fewer epochs)": {"cycles": 2},
    "`--cycles 4` (more epochs)": {"cycles": 4},
    "digitnet twice as wide": {"arch": WIDE},
}
SETS = ("digits 8k, from scratch", "digits 1.4k, from scratch", "photos 600, pretrained")
SCHEDULES = {
    "the recipe's cycles, exactly": {"exact_cycles": True},
    "the rule, the recipe's maximum": {},
    "the rule, `--cycles 4`": {"cycles": 4},
}


def applies(changes: dict, data: str) -> bool:
    """The wider digit net is for the digits from scratch only."""
    return changes.get("arch") != WIDE or "from scratch" in data


def measure(work: Path, seeds: int, tricks=TRICKS, file="tricks.jsonl", sets=SETS) -> list[dict]:
    """Every (data set, trick, seed) not yet in `file`, appended as it finishes."""
    path = work / file
    done = read_rows(path)
    have = {(d["data"], d["trick"], d["seed"]) for d in done}
    found = data_sets(work)
    for name in sets:
        recipe, folder, options, score, _ = found[name]
        for seed in range(1, seeds + 1):
            for trick, changes in tricks.items():
                if (name, trick, seed) in have or not applies(changes, name):
                    continue
                row = {"data": name, "trick": trick, "seed": seed}
                row.update(train(work, recipe, folder, options, score, seed, **changes))
                row["epochs"] = json.loads((Path(row["run_dir"]) / "metrics.json").read_text())[
                    "epochs"
                ]
                done.append(keep(path, row))
    return done


def report_schedules(rows: list[dict]) -> None:
    """Epochs and held-out scores of each schedule, against the recipe's cycles exactly."""
    df = pd.DataFrame(rows)
    print("\n| data set | schedule | epochs, seed by seed | held-out score, mean (min-max) "
          "| points from the exact schedule, seed by seed (mean) | seconds per run |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for name, d in df.groupby("data", sort=False):
        base = d[d["trick"] == next(iter(SCHEDULES))].set_index("seed")["score"]
        for trick in SCHEDULES:
            t = d[d["trick"] == trick].set_index("seed").sort_index()
            if t.empty:
                continue
            gain = 100 * (t["score"] - base).dropna()
            gains = f"{' '.join(f'{g:+.2f}' for g in gain)} ({gain.mean():+.2f})"
            epochs = " ".join(str(int(e)) for e in t["epochs"])
            scores = f"{t['score'].mean():.4f} ({t['score'].min():.4f}-{t['score'].max():.4f})"
            print(f"| {name} | {trick} | {epochs} | {scores} | {gains} "
                  f"| {t['seconds'].mean():.0f} |")  # fmt: skip


def report(rows: list[dict]) -> None:
    df = pd.DataFrame(rows)
    print(
        "\n| data set | training | held-out score, mean (min-max) | points from the defaults, "
        "seed by seed (mean) | better at | seconds per run |"
    )
    print("|---|---|---|---|---|---|")
    for name, d in df.groupby("data", sort=False):
        base = d[d["trick"] == next(iter(TRICKS))].set_index("seed")["score"]
        for trick in TRICKS:
            t = d[d["trick"] == trick].set_index("seed")
            if t.empty:
                continue
            gain = 100 * (t["score"] - base).dropna()
            gains, wins = "", ""
            if TRICKS[trick]:  # the defaults are the baseline
                gains = f"{' '.join(f'{g:+.2f}' for g in gain)} ({gain.mean():+.2f})"
                wins = f"{(gain > 0).sum()} of {len(gain)} seeds"
            scores = f"{t['score'].mean():.4f} ({t['score'].min():.4f}-{t['score'].max():.4f})"
            print(f"| {name} | {trick} | {scores} | {gains} | {wins} | {t['seconds'].mean():.0f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work", type=Path, default=Path("/tmp/kit-bench-lr"))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--schedules", action="store_true", help="the plan's maximum, not the tricks")
    p.add_argument("--sets", nargs="+", default=SETS, help="a part of the data sets")
    args = p.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.schedules:
        report_schedules(measure(args.work, args.seeds, SCHEDULES, "schedules.jsonl", args.sets))
    else:
        report(measure(args.work, args.seeds, sets=args.sets))


if __name__ == "__main__":
    from benchmarks import pages  # the docs page: what this printed

    # --schedules prints another table: its own page, so that it never replaces the tricks'
    sys.exit(pages.run(main, "schedules" if "--schedules" in sys.argv else "tricks"))

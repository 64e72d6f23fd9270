"""The unfrozen body's rate on pretrained weights: read off a second finder run (the default)
against a fixed share of the top rate with no second finder (`--no-refind --lr-mult 10`, `3` and
`1`) and against one fixed rate (`--body-lr 2e-3`), side by side at the same seeds; prints each
set's held-out score, the first layer group's rate and the wall time for each.

After the head stage the top layers keep half the head's rate (fastai's `fine_tune` rule). The
default then runs the finder again on the unfrozen network and takes the first layer group's
rate from its curve, between a hundredth of the top and the top; `--no-refind` skips that run and
takes the top over `--lr-mult`; `--body-lr` skips it
and takes that rate, or the top where that is lower.

Sets, all from what installed wheels ship: benchmarks/distill.py's small sets (300 and 600
transfer photos of 64 px through invasive's recipe, AUC on three times as many test photos; 300
photos of nine breeds through the recipe `kit new` writes, 96 px, log loss on 900) and
benchmarks/equal_time.py's larger ones (the invasive sample's 400x300 JPEG photos at 128 px,
3,000 transfer photos of 64 px as PNG, 2,700 breeds at 64 px), each made as its module makes
it. A seed moves the validation split too (`--fold-seed`). Every run is `kit run` in its own
process, timed whole, and scored on held-out test labels no run saw.

Run: `python -m benchmarks.body_rate [--work DIR] [--seeds 3] [--rules 0 4]` on a quiet machine
(about two hours on 2 CPU cores for every rule; `--rules` picks some by their place in RULES,
the default always run). Seeds run in turn over every set, so a pass cut short still compares
whole seeds; each rule is compared with the default at the seeds both finished. Results are
kept in DIR/body_rate.jsonl: a run that was cut off goes on where it stopped.
"""

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import pandas as pd

from benchmarks import equal_time, pages
from benchmarks.head_cycles import gained
from benchmarks.lr import keep, read_rows
from benchmarks.photo_sets import write_breeds, write_transfer

RULES = {  # name: the run's flags
    "second finder (the default)": (),
    "a tenth of the top": ("--no-refind", "--lr-mult", "10"),
    "a third of the top": ("--no-refind", "--lr-mult", "3"),
    "the top (one rate throughout)": ("--no-refind", "--lr-mult", "1"),
    "2e-3, at most the top": ("--body-lr", "2e-3"),
}


def sets(work: Path) -> dict:
    """name: (its folder, the recipe and flags, its metric, how to make it)."""
    large = equal_time.sets_to_make(work)

    def small(kind: str, n: int):
        write = write_transfer if kind == "transfer" else write_breeds
        return lambda folder: write(folder, n, 3 * n, 64)

    out = {
        "transfer 300, 64 px JPEG": (work / "transfer-300", ("invasive", "--size", "64"), "auc",
                                     small("transfer", 300)),
        "transfer 600, 64 px JPEG": (work / "transfer-600", ("invasive", "--size", "64"), "auc",
                                     small("transfer", 600)),
        "breeds 300, 96 px (kit new's recipe)": (work / "breeds-300", ("breeds",), "logloss",
                                                 small("breeds", 300)),
    }  # fmt: skip
    for name, shown in (("photos 400x300 JPEG", "photos 400x300 JPEG"),
                        ("transfer 64 px PNG", "transfer 3,000, 64 px PNG"),
                        ("breeds 64 px PNG", "breeds 2,700, 64 px PNG")):  # fmt: skip
        out[shown] = large[name]
    return out


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)


def measure(work: Path, seeds: int, rules: list[str]) -> list[dict]:
    """Each (seed, set, rule) of `rules`, appended to body_rate.jsonl as it ends."""
    path = work / "body_rate.jsonl"
    rows = read_rows(path)
    have = {(r["set"], r["seed"], r["rule"]) for r in rows}
    for seed in range(seeds):
        for name, (folder, how, metric, write) in sets(work).items():
            equal_time.made(folder, write)
            for rule in rules:
                if (name, seed, rule) in have:
                    continue
                # one folder of runs per set: `kit new`'s recipe is written once a set
                out = work / "out" / slug(name) / f"{seed}-{slug(rule)}"
                shutil.rmtree(out, ignore_errors=True)  # a run cut off half-way starts again
                seeded = ("--seed", str(seed), "--fold-seed", str(seed))
                got = equal_time.kit_run(folder, (*how, *RULES[rule], *seeded), metric, out)
                if got.get("score") is not None:
                    (run_dir,) = (out / "runs" / how[0]).iterdir()
                    got["lr_low"] = json.loads((run_dir / "metrics.json").read_text())["lr_low"]
                rows.append(keep(path, {"set": name, "seed": seed, "rule": rule, **got}))
    return rows


def report(rows: list[dict], work: Path) -> None:
    """One row per (set, rule) over the seeds at which both it and the default finished: the
    scores seed by seed and their mean, the first group's rate seed by seed, the mean time, and
    for each other rule what it gained at each seed against the default (AUC in points, log
    loss as itself, lower better) and its time against the default's at those seeds."""
    print(
        "\n| set | first layer group's rate | seeds | held-out score, seed by seed | mean | "
        "rate, seed by seed | mean time | gained against the default, seed by seed (mean) | "
        "better at | time against the default |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")  # fmt: skip
    df = pd.DataFrame(rows)
    default = next(iter(RULES))
    for name, (_, _, metric, _) in sets(work).items():
        d = df[(df["set"] == name) & df["score"].notna()]
        base = d[d["rule"] == default].set_index("seed").sort_index()
        for rule in RULES:
            t = d[d["rule"] == rule].set_index("seed").sort_index()
            t = t[t.index.isin(base.index)]
            if t.empty:
                continue
            seeds = " ".join(str(s) for s in t.index)
            scores = " ".join(f"{s:.4f}" for s in t["score"])
            rates = " ".join(f"{r:.1e}" for r in t["lr_low"])
            mean, seconds = t["score"].mean(), t["seconds"].mean()
            line = (f"| {name} ({metric}) | {rule} | {seeds} | {scores} | {mean:.4f} | "
                    f"{rates} | {seconds:.0f} s |")  # fmt: skip
            if rule == default:
                print(line + " | | |")
                continue
            ratio = t["seconds"].sum() / base.loc[t.index, "seconds"].sum()
            print(f"{line} {gained(metric, t, base.loc[t.index])} | {ratio:.2f}x |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, default=Path(".bench/body-rate"))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--rules", type=int, nargs="+", default=list(range(len(RULES))),
                   help="which rules to run, by their place in RULES (0: the default)")  # fmt: skip
    args = p.parse_args()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("KIT_CACHE", str(work / "cache"))
    rules = [list(RULES)[i] for i in sorted({0, *args.rules})]
    report(measure(work, args.seeds, rules), work)


if __name__ == "__main__":
    sys.exit(pages.run(main, "body_rate"))

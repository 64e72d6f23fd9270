"""The finder's cost: the kit's sweep (kit/train/finder.py: from 1e-5 at fastai's step, halfway
stopping once its loss has climbed back) against fastai's 100 steps from 1e-7, on the same
weights. Prints the rates each reads and the steps each takes.

On each data set of benchmarks/lr.py, at each seed (a seed moves the validation split too), the
learner is built as `kit run` builds it; fastai's sweep runs twice (two batch orders: how far
its own reading moves with the batches alone) and the kit's once, each from the same weights,
each read by the recipe's rule. Where the recipe trains a head first, the head then trains for
its cycles at fastai's rate, everything is unfrozen, and the three sweeps run again; that rate
is the first layer group's, kept within [head/2/lr_mult, head/2] (kit/train/sgdr.py).

With `--scores`, `kit run` trains each set at each seed twice more, with the kit's sweep and
with fastai's (every rule on fastai's whole sweep), all else the recipe's defaults, and both are
scored on held-out test labels (benchmarks/lr.py `train`).

Run: `python -m benchmarks.finder [--work DIR] [--seeds 3] [--scores]` from the repository
root. About 30 minutes on 2 CPU cores, 90 with --scores; results are kept in DIR/*.jsonl, so a
run that was cut off goes on where it stopped.
"""

import argparse
import contextlib
import io
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.lr import data_sets, keep, read_rows, train
from kit.pipeline import prepare
from kit.train import finder
from kit.train.finder import choose, resolve, run_sweep, stage_rule
from kit.train.learner import build_learner
from kit.train.sgdr import fit_sgdr, unfrozen_rates

SWEEPS = ("fastai", "fastai, other batches", "kit")


def one_sweep(learn, rule: str, how: str, seed: int) -> dict:
    """One finder run from the learner's weights (lr_find puts them back): rate and steps."""
    learn.dls.train.gen.manual_seed(seed * 1000 + (2 if how.startswith("fastai,") else 1))
    torch.manual_seed(seed)
    start = time.perf_counter()
    if how == "kit":
        lrs, losses = run_sweep(learn, rule)
    else:
        learn.lr_find(suggest_funcs=None, show_plot=False)  # fastai's: 100 steps from 1e-7
        lrs, losses = learn.recorder.lrs, [float(v) for v in learn.recorder.losses]
    rate = choose(lrs, losses, rule)[0]
    return {"rate": rate, "steps": len(lrs), "seconds": round(time.perf_counter() - start, 1)}


def sweeps(work: Path, name: str, recipe: str, folder: Path, options: dict, seed: int) -> list:
    """Every sweep at one seed: the rows of its first stage, then (after a head) its second."""
    with contextlib.redirect_stdout(io.StringIO()):  # the kit's own lines: not the page's
        job = prepare(recipe, data=folder, out=work / "out", seed=seed, fold_seed=seed,
                      **options)  # fmt: skip
        r = job.recipe
        learn = build_learner(r, job.data, job.device, job.weights, work / "out",
                              np.flatnonzero(job.fold == 0))  # fmt: skip
    rule = resolve(r.lr_rule, r.pretrained)
    learn.create_opt()
    if r.head_cycles:
        learn.freeze()
    first = "head" if r.head_cycles else "all"
    rows = [{"data": name, "seed": seed, "stage": first, "sweep": how,
             **one_sweep(learn, rule, how, seed)} for how in SWEEPS]  # fmt: skip
    if not r.head_cycles:
        return rows
    head = rows[0]["rate"]
    with learn.no_logging(), contextlib.redirect_stdout(io.StringIO()):
        fit_sgdr(learn, r.head_cycles, r.head_cycle_len, 1, head)
    learn.unfreeze()
    for how in SWEEPS:
        got = one_sweep(learn, stage_rule(rule, True), how, seed)
        got["rate"] = unfrozen_rates(r, got["rate"], head)[1]  # the first group's, clamped
        rows.append({"data": name, "seed": seed, "stage": "all", "sweep": how, **got})
    return rows


def measure(work: Path, sets: dict, seeds: int) -> list[dict]:
    path = work / "sweeps.jsonl"
    rows = read_rows(path)
    have = {(d["data"], d["seed"]) for d in rows}
    for name, (recipe, folder, options, _, _) in sets.items():
        for seed in range(1, seeds + 1):
            if (name, seed) not in have:
                rows += [keep(path, row) for row in sweeps(work, name, recipe, folder, options,
                                                            seed)]  # fmt: skip
    return rows


def ratios(rows: list[dict], a: str, b: str) -> list[float]:
    """Each seed's rate of sweep `a` over sweep `b`."""
    rate = {(r["seed"], r["sweep"]): r["rate"] for r in rows}
    return [rate[s, a] / rate[s, b] for s in sorted({r["seed"] for r in rows})]


def spread(values: list[float]) -> str:
    """Ratios as the table shows them: the median, and the farthest either way."""
    far = max(values, key=lambda v: max(v, 1 / v))
    return f"{statistics.median(values):.2f} (farthest {far:.2f})"


def report(rows: list[dict]) -> None:
    print(
        "\n| data set | stage | fastai's rate, 100 steps from 1e-7 | steps | fastai's, other "
        "batches / fastai's | kit's sweep / fastai's | kit's steps |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, stage in dict.fromkeys((r["data"], r["stage"]) for r in rows):
        d = [r for r in rows if r["data"] == name and r["stage"] == stage]
        fastai = [r for r in d if r["sweep"] == "fastai"]
        kit = [r for r in d if r["sweep"] == "kit"]
        rates = [r["rate"] for r in fastai]
        steps = lambda rs: f"{statistics.mean(r['steps'] for r in rs):.0f}"  # noqa: E731
        print(f"| {name} | {stage} | {min(rates):.1e} to {max(rates):.1e} | {steps(fastai)} | "
              f"{spread(ratios(d, 'fastai, other batches', 'fastai'))} | "
              f"{spread(ratios(d, 'kit', 'fastai'))} | {steps(kit)} |")  # fmt: skip


@contextlib.contextmanager
def fastais_sweep():
    """Every rule on fastai's whole sweep, as before the kit's sweep."""
    kept, finder.OWN = finder.OWN, ()
    try:
        yield
    finally:
        finder.OWN = kept


def scores(work: Path, sets: dict, seeds: int) -> None:
    """`kit run` with the kit's sweep and with fastai's, held-out scores side by side."""
    path = work / "scores.jsonl"
    rows = read_rows(path)
    have = {(d["data"], d["sweep"], d["seed"]) for d in rows}
    for name, (recipe, folder, options, score, _) in sets.items():
        for seed in range(1, seeds + 1):
            for how in ("fastai", "kit"):
                if (name, how, seed) not in have:
                    with fastais_sweep() if how == "fastai" else contextlib.nullcontext():
                        got = train(work, recipe, folder, options, score, seed)
                    rows.append(keep(path, {"data": name, "sweep": how, "seed": seed, **got}))
    print("\n| data set | sweep | held-out score, mean (min-max) | head rate | first group's "
          "| wall time, mean |\n|---|---|---|---|---|---|")  # fmt: skip
    for name in sets:
        for how in ("fastai", "kit"):
            d = [r for r in rows if r["data"] == name and r["sweep"] == how]
            s = [r["score"] for r in d]
            head = " ".join(f"{r['head_lr']:.1e}" for r in d if r["head_lr"]) or "-"
            low = " ".join(f"{r['lr_low']:.1e}" for r in d)
            print(
                f"| {name} | {how} | {statistics.mean(s):.4f} ({min(s):.4f}-{max(s):.4f}) | "
                f"{head} | {low} | {statistics.mean(r['seconds'] for r in d):.0f} s |"
            )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work", type=Path, default=Path("/tmp/kit-bench-finder"))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--sets", help="names of benchmarks/lr.py's sets, separated by ';'")
    p.add_argument("--scores", action="store_true", help="also train and score both sweeps")
    args = p.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    sets = data_sets(args.work)
    if args.sets:
        sets = {k: v for k, v in sets.items() if k in args.sets.split(";")}
    report(measure(args.work, sets, args.seeds))
    if args.scores:
        scores(args.work, sets, args.seeds)


if __name__ == "__main__":
    from benchmarks import pages  # the docs page: what this printed

    sys.exit(pages.run(main, "finder"))

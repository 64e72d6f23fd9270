"""Learning-rate rule benchmark: prints the README's stability table.

On each data set, at each of three seeds (a seed moves the validation split too: `fold_seed` is
set to it), `kit run` trains with the recipe's defaults once per learning-rate rule compared
(`--lr-rule`: the finder runs, the rule reads its rate from the curve) and once per rate of a
fixed grid (`--lr`, both stages). Every run is scored on held-out test labels it never saw.
Then every rule is also read off the finder curves the runs saved (`lr_find*.csv`), which
shows each rule's spread on the very same curves.

Data sets, all made from what installed wheels ship:
- digits 8k, from scratch: the `mnist` recipe on a train.csv of 8,000 augmented copies of the
  bundled sample's 1,437 training digits (built as in benchmarks/mnist.py), tested on 3,600
  augmented copies of the 360 held-out digits;
- digits 1.4k, from scratch: the bundled sample itself (1,437 training digits, 360 test);
- photos, pretrained: the `invasive` recipe (EfficientNet-Lite0 ImageNet weights, frozen head
  stage, then everything) at 64 px on 600 photos from the sample's generator, tested on 400;
- digits 1.4k, pretrained: the bundled sample through the same ImageNet weights (the stem's
  colours summed for grey input) at 48 px, with the invasive recipe's head stage.

Run: `python -m benchmarks.lr [--work DIR] [--seeds 3]`. Results are kept in
DIR/results.jsonl: a run that was cut off goes on where it stopped. About 3 hours on 2 cores.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd
from sklearn.metrics import roc_auc_score

from benchmarks import pages
from benchmarks.mnist import build_folder
from competitions import invasive, mnist
from kit.pipeline import run
from kit.train.finder import RULES, choose

GRID = (3e-4, 1e-3, 3e-3, 1e-2, 3e-2)
# Pretrained heads take higher rates: their grid goes a step further.
PRETRAINED_GRID = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
# Trained end to end (every rule is also read off the curves): from scratch, and pretrained
COMPARED = ("valley", "halfway")
PRETRAINED_COMPARED = ("valley", "minimum")
FINDERS = ("lr_find_frozen", "lr_find")  # head stage, then everything


def data_sets(work: Path) -> dict:
    """name: (recipe, folder, options, score(submission, folder), configs)"""
    sample = work / "digits-1.4k"
    if not sample.exists():
        sample.mkdir()
        mnist.write_sample(sample)
    big = work / "digits-8k"
    if not big.exists():
        build_folder(sample, big, rows=8000)
    photos = work / "photos"
    if not photos.exists():
        photos.mkdir()
        invasive.write_sample(photos, n_train=600, n_test=400)

    def accuracy(sub, folder):
        return float((sub["Label"] == pd.read_csv(folder / "solution.csv")["Label"]).mean())

    def auc(sub, folder):
        truth = pd.read_csv(folder / "solution.csv").set_index("name").loc[sub["name"]]
        return float(roc_auc_score(truth["invasive"], sub["invasive"]))

    # ImageNet weights on grey digits: the stem's colours summed, a head stage first (as invasive)
    pretrained = dict(arch="tf_efficientnet_lite0", pretrained=True, size=48, precision="fp32",
                      head_cycles=3, lr_mult=100)  # fmt: skip
    scratch = configs(COMPARED, GRID)
    photo_grid = configs(COMPARED + PRETRAINED_COMPARED[1:], GRID + (1e-1,))
    grey = configs(PRETRAINED_COMPARED, PRETRAINED_GRID)
    return {
        "digits 8k, from scratch": ("mnist", big, {}, accuracy, scratch),
        "digits 1.4k, from scratch": ("mnist", sample, {}, accuracy, scratch),
        "photos 600, pretrained": ("invasive", photos, {"size": 64}, auc, photo_grid),
        "digits 1.4k, pretrained": ("mnist", sample, pretrained, accuracy, grey),
    }


def configs(rules: tuple, grid: tuple) -> list[str]:
    return list(rules) + [f"{g:g}" for g in grid]


def train(work: Path, recipe: str, folder: Path, options: dict, score, seed: int, **changes):
    """One `kit run` with the data set's options and `changes`: its test score, rates and run
    folder."""
    start = time.perf_counter()
    with pages.quiet(work / "runs.log"):
        out = run(recipe, data=folder, out=work / "out", show=False, seed=seed, fold_seed=seed,
                  **(options | changes))  # fmt: skip
    return {
        "score": score(pd.read_csv(out["submission"]), folder),
        "lr": out.get("lr"),
        "head_lr": out.get("head_lr"),
        "lr_low": out.get("lr_low"),
        "seconds": round(time.perf_counter() - start, 1),
        "run_dir": out["run_dir"],
    }


def read_rows(path: Path) -> list[dict]:
    """The runs a benchmark kept in `path` (JSON lines), so that a cut-off run goes on."""
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def keep(path: Path, row: dict) -> dict:
    """One finished run, appended to `path` and shown on stderr (the page keeps the tables)."""
    print(json.dumps(row), file=sys.stderr, flush=True)
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")
    return row


def measure(work: Path, sets: dict, seeds: int) -> list[dict]:
    """Every (data set, config, seed) not yet in results.jsonl, appended as it finishes."""
    path = work / "results.jsonl"
    done = read_rows(path)
    have = {(d["data"], d["config"], d["seed"]) for d in done}
    for name, (recipe, folder, options, score, todo) in sets.items():
        for seed in range(1, seeds + 1):
            for config in todo:
                if (name, config, seed) in have:
                    continue
                row = {"data": name, "config": config, "seed": seed}
                lr = {"lr": float(config)} if config[0].isdigit() else {"lr_rule": config}
                row.update(train(work, recipe, folder, options, score, seed, **lr))
                done.append(keep(path, row))
    return done


def spread(rates) -> float:
    return max(rates) / min(rates)


def read_rules(rows: list[dict]) -> pd.DataFrame:
    """Every rule's rate read off the first finder curve of each run that ran the finder."""
    out = []
    for row in rows:
        if row["config"] not in RULES:
            continue
        run_dir = Path(row["run_dir"])
        finder = next(run_dir / f"{f}.csv" for f in FINDERS if (run_dir / f"{f}.csv").exists())
        df = pd.read_csv(finder)
        for rule in RULES:
            rate = choose(df["lr"].tolist(), df["loss"].tolist(), rule)[0]
            out.append({"data": row["data"], "run": row["config"], "seed": row["seed"],
                        "rule": rule, "rate": rate})  # fmt: skip
    return pd.DataFrame(out)


def rate_range(rates: pd.Series) -> str:
    rates = rates.dropna()
    return f"{rates.min():.1e} to {rates.max():.1e} ({spread(rates):.1f}x)" if len(rates) else ""


def report(rows: list[dict], sets: dict) -> None:
    df = pd.DataFrame(rows)
    df = df[[c in sets[d][-1] for d, c in zip(df["data"], df["config"])]]
    print(
        "\n| data set | learning rate | chosen by the first finder (spread) | by the second "
        "| held-out score, mean (min-max) | points from the best grid rate |"
    )
    print("|---|---|---|---|---|---|")
    for name, d in df.groupby("data", sort=False):
        means = d.groupby("config")["score"].mean()
        configs = sets[name][-1]
        best = means[[c for c in configs if c not in RULES]].idxmax()
        for config in configs:
            c = d[d["config"] == config]
            pretrained = c["head_lr"].notna().all()
            first = rate_range(c["head_lr"] if pretrained else c["lr"])
            second = rate_range(c["lr_low"]) if pretrained else ""
            label = f"`--lr-rule {config}`" if config in RULES else f"`--lr {config}`"
            if config == best:
                label += " (best of the grid)"
            if config not in RULES:
                first = second = ""
            print(f"| {name} | {label} | {first} | {second} | {c['score'].mean():.4f} "
                  f"({c['score'].min():.4f}-{c['score'].max():.4f}) | "
                  f"{100 * (c['score'].mean() - means[best]):+.2f} |")  # fmt: skip
    curves = read_rules(df.to_dict("records"))
    print("\nEvery rule read off the same curves (the first finder of every run above):\n")
    print("| data set | " + " | ".join(RULES) + " |")
    print("|---|" + "---|" * len(RULES))
    for name, c in curves.groupby("data", sort=False):
        cells = [rate_range(c.loc[c["rule"] == rule, "rate"]) for rule in RULES]
        print(f"| {name} | " + " | ".join(cells) + " |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work", type=Path, default=Path("/tmp/kit-bench-lr"))
    p.add_argument("--seeds", type=int, default=3)
    args = p.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    sets = data_sets(args.work)
    report(measure(args.work, sets, args.seeds), sets)


if __name__ == "__main__":
    sys.exit(pages.run(main, "lr"))

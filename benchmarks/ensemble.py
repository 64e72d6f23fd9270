"""Ensemble benchmark: prints the README's stacking table.

On each bundled sample, two different models are trained with the same 5 stratified folds
(`kit run NAME --sample --folds 5`), then blended with `kit ensemble --method mean|weighted|
stack`. For every member and blend: the out-of-fold score over all training images (for the
weighted and stacked blends cross-validated on the same folds, so it is honest) and the score
of its submission on the sample's held-out test labels. The rows also say which runs submit
their TTA predictions and the weighted blend's weights; each recipe's best out-of-fold score is
in bold.

Run: `python benchmarks/ensemble.py [--work DIR] [--folds 5]`. About 15 minutes on 2 cores.
"""

import argparse
import sys
from pathlib import Path

import fastprogress.fastprogress as fastprogress
import pandas as pd

import kit
from kit.ensemble import ensemble
from kit.evaluate.metrics import best, score
from kit.files import read_json
from kit.recipe import load_competition, override

# Two different models per sample: the recipe's own, and a second that differs in what it sees
MODELS = {
    "mnist": [
        ("digitnet, augmented", {}),
        ("digitnet, no augmentation, no TTA", dict(rotate=0, shift=0, zoom=1, tta=False)),
    ],
    "invasive": [
        ("EfficientNet-Lite0 128 px", {}),
        ("EfficientNet-Lite0 96 px, no flips", dict(size=96, flip=False)),
    ],
}


def test_score(name: str, out: Path, run_dir: str, metric: str) -> float:
    """The run's submitted test probabilities scored on the sample's held-out labels."""
    comp = load_competition(name)
    folder = out / "data" / f"{name}-sample"
    sample = override(comp.RECIPE, **getattr(comp, "SAMPLE", {}))
    y = comp.load(folder, sample).test_y.numpy()
    preds = pd.read_csv(Path(run_dir) / "test_preds.csv")
    submitted = read_json(Path(run_dir) / "metrics.json")["submitted"]
    suffix = "_tta" if submitted == "tta" else ""
    cols = [c for c in preds.columns if c.startswith("p_") and c.endswith(suffix)]
    cols = [c for c in cols if suffix or not c.endswith("_tta")]
    return score(metric, y, preds[cols].to_numpy())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", default=".bench/ensemble", type=Path)
    parser.add_argument("--folds", default=5, type=int)
    parser.add_argument("--recipes", nargs="+", default=list(MODELS))
    args = parser.parse_args()
    fastprogress.NO_BAR = True
    args.work.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.recipes:
        out = args.work / name
        metric = load_competition(name).RECIPE.metric
        recipe = f"{name} ({'AUC' if metric == 'auc' else metric})"
        runs, first = [], len(rows)
        for label, options in MODELS[name]:
            with pages.quiet(args.work / "runs.log"):  # the kit's own lines: not the page's
                result = kit.run(name, sample=True, out=out, folds=args.folds, **options)
            runs.append(result["run_dir"])
            kind = "_tta" if result["submitted"] == "tta" else ""  # what the run submits
            label += ", TTA" if kind else ""
            rows.append([recipe, label, result[f"valid{kind}_{metric}"],
                         result[f"folds{kind}_{metric}_std"],
                         test_score(name, out, result["run_dir"], metric)])  # fmt: skip
        for method in ("mean", "weighted", "stack"):
            with pages.quiet(args.work / "runs.log"):
                blend = ensemble(name, runs, method, out=out)
            weights = [m["weight"] for m in blend["members"] if "weight" in m]
            note = f" (weights {', '.join(f'{w:.2f}' for w in weights)})" if weights else ""
            rows.append([recipe, f"`{method}` blend{note}", blend[f"valid_{metric}"], None,
                         test_score(name, out, blend["run_dir"], metric)])  # fmt: skip
        top = best(metric, {i: rows[i][2] for i in range(first, len(rows))})
        for i in range(first, len(rows)):
            rows[i][2] = f"**{rows[i][2]:.4f}**" if i == top else f"{rows[i][2]:.4f}"
    print(f"\n| recipe | model | out-of-fold score ({args.folds} folds) | fold std | "
          "held-out test score |\n|---|---|---|---|---|")  # fmt: skip
    for recipe, label, oof, std, test in rows:
        spread = f"{std:.4f}" if std is not None else ""
        print(f"| {recipe} | {label} | {oof} | {spread} | {test:.4f} |".replace("|  |", "| |"))
    sys.stdout.flush()


if __name__ == "__main__":
    import pages  # the docs page: what this printed

    sys.exit(pages.run(main, "ensemble"))

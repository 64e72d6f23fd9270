"""Distillation benchmark: an ensemble of k-fold runs, and one student distilled from it
(`kit distill`), on sets with few labelled and many test images.

Three sets, each with its test labels kept aside in solution.csv and scored here on the
submission each run writes:

- digits from scratch: scikit-learn's 1,797 digits in the Digit Recognizer layout, `--labelled`
  of them for training and the rest the test set (competitions/mnist.py's write_sample);
  the house digitnet;
- transfer 64 px JPEG: the invasive transfer task (benchmarks/photo_sets.py), `--labelled`
  training photos and three times as many test photos; EfficientNet-Lite0 from its packaged
  ImageNet weights, at 64 px (AUC);
- breeds 64 px PNG: nine classes in the dog-breed layout (benchmarks/photo_sets.py), as many;
  the recipe `kit new` writes for the folder, as it writes it (Lite0 upscaling the photos to
  96 px; log loss).

On each: `--members` runs of the recipe with `--folds` folds (seeds 0, 1, ...), their
`kit ensemble --method stack` (which keeps the stack, a weighted blend, the mean or the best
member, whichever its out-of-fold score earns), one plain single-split model (what the student
would be without a teacher), and the student distilled from the ensemble with the test images
as extra soft-labelled training images (the default) and without them (a code competition's
hidden test set is not there to train on). Each row: its models, its validation score (out of
fold for the k-fold runs and the blend; the student's on its held-out split against the true
labels), its held-out test score (the claim), and for the ensemble, a member and the students
the seconds per 1,000 test images that `kit predict` takes.

Run: `python -m benchmarks.distill [--work DIR] [--labelled 300] [--folds 3] [--members 2]
[--sets digits transfer breeds] [--quick]`. `--quick` checks the script on tiny sets with one
short cycle per model; its numbers mean nothing and its page is not written.
"""

import argparse
import os
import sys
from pathlib import Path

import fastprogress.fastprogress as fastprogress
import pandas as pd

import kit
from benchmarks import pages
from benchmarks.equal_time import score
from benchmarks.photo_sets import write_breeds, write_transfer
from competitions import mnist
from kit.ensemble import ensemble
from kit.files import read_json
from kit.new import write_recipe

# set: (recipe, metric, fields of every run on it)
SETS = {
    "digits": ("mnist", "accuracy", {}),
    "transfer": ("invasive", "auc", {"size": 64}),
    "breeds": ("breeds", "logloss", {}),  # kit new's recipe as written: 96 px
}
NAMES = {"digits": "digits from scratch", "transfer": "transfer 64 px JPEG (Lite0)",
         "breeds": "breeds 64 px PNG (kit new's recipe)"}  # fmt: skip
QUICK = dict(cycles=1, cycle_mult=1, exact_cycles=True, tta=False)  # one short cycle a model


def make(name: str, folder: Path, labelled: int) -> None:
    """The set's folder, as the module's docstring says (breeds: its recipe written too, into
    ./competitions, where kit finds local recipes)."""
    if name == "digits":
        folder.mkdir(parents=True)
        mnist.write_sample(folder, 0, labelled)
    elif name == "transfer":
        write_transfer(folder, labelled, 3 * labelled, 64)
    else:
        write_breeds(folder, labelled, 3 * labelled, 64)
    if name == "breeds" and not Path("competitions/breeds.py").exists():
        write_recipe("breeds", folder, "logloss", "dog-breed-identification")


def held_out(metric: str, folder: Path, run_dir: Path) -> float:
    """The run's submission scored on the set's solution.csv."""
    return score(metric, folder, pd.read_csv(run_dir / "submission.csv"))


def valid_score(metric: str, run_dir: Path) -> float:
    """The validation (out-of-fold) score of what the run submits (log loss: calibrated, if
    its submission is)."""
    record = read_json(run_dir / "metrics.json")
    if record.get("calibrated"):
        return record["logloss_after_calibration"]
    return record[f"valid{'_tta' if record.get('submitted') == 'tta' else ''}_{metric}"]


def predict_seconds(recipe: str, run_dir: Path, folder: Path, out: Path, device: str) -> float:
    """`kit predict`'s seconds per 1,000 test images for the run."""
    return kit.predict(recipe, run_dir.name, data=folder, out=out, device=device)[
        "seconds_per_1000"
    ]


def one_set(name: str, args, work: Path) -> list[list]:
    """The rows of one set: members, their ensemble, a plain model, the two students."""
    recipe, metric, fields = SETS[name]
    folder, out = work / name / "data", work / name / "out"
    if not folder.exists():
        make(name, folder, args.labelled)
    common = dict(
        data=folder, out=out, device=args.device, **fields, **(QUICK if args.quick else {})
    )
    rows, members = [], []

    def row(label, models, run_dir, timed=False):
        seconds = predict_seconds(recipe, run_dir, folder, out, args.device) if timed else None
        rows.append([NAMES[name], label, models, valid_score(metric, run_dir),
                     held_out(metric, folder, run_dir), seconds])  # fmt: skip

    for seed in range(args.members):
        run_dir = Path(kit.run(recipe, folds=args.folds, seed=seed, **common)["run_dir"])
        members.append(run_dir)
        row(f"{args.folds}-fold run, seed {seed}", args.folds, run_dir, timed=seed == 0)
    if len(members) > 1:
        blend = ensemble(recipe, [m.name for m in members], "stack", out=out)
        teacher = Path(blend["run_dir"])
        row(f"ensemble (kept: {blend['method']})", args.folds * len(members), teacher, timed=True)
    else:
        teacher = members[0]
    row("one model, no teacher", 1, Path(kit.run(recipe, **common)["run_dir"]))
    for test in (True, False):
        student = Path(
            kit.run(recipe, distill=teacher.name, distill_test=test, **common)["run_dir"]
        )
        label = "student" + (", test images too" if test else ", training images only")
        row(label, 1, student, timed=True)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", default=".bench/distill", type=Path)
    parser.add_argument("--labelled", default=300, type=int, help="training images per set")
    parser.add_argument("--folds", default=3, type=int)
    parser.add_argument("--members", default=2, type=int, help="k-fold runs in the ensemble")
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quick", action="store_true", help="tiny sets, one short cycle")
    args = parser.parse_args()
    if args.quick:
        args.labelled, args.folds = 60, 2
    fastprogress.NO_BAR = True
    work = args.work.resolve() / ("quick" if args.quick else f"labelled-{args.labelled}")
    work.mkdir(parents=True, exist_ok=True)
    os.chdir(work)  # kit new writes, and kit finds, the breeds recipe in ./competitions
    with pages.quiet(work / "runs.log"):  # the runs' lines; the page is the table
        rows = [r for name in args.sets for r in one_set(name, args, work)]
    print(f"\n{args.labelled} labelled images a set, three times as many test images "
          f"(digits: all {1797 - args.labelled} others); {args.folds} folds; the house "
          "schedule")  # fmt: skip
    print("| set | model | models | validation score | held-out test score | "
          "`kit predict` s per 1,000 images |\n|---|---|---|---|---|---|")  # fmt: skip
    for set_, label, models, valid, test, seconds in rows:
        timed = f"{seconds:.1f}" if seconds is not None else ""
        print(f"| {set_} | {label} | {models} | {valid:.4f} | {test:.4f} | {timed} |")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(pages.run(main, "distill"))

"""Augmentation, imbalance and small-photo benchmark: prints the README's table of each trick's
gain and time against the recipes' defaults.

Data sets, all made from what installed wheels ship (as benchmarks/mnist.py and benchmarks/lr.py
make them), each scored on held-out test labels no run saw:
- digits, from scratch: `mnist` on a train.csv of augmented copies of the bundled sample's
  training digits (--digits rows), tested on 10 copies of each of the 360 held-out digits;
- photos, pretrained: `invasive` at 64 px (EfficientNet-Lite0 ImageNet weights) on photos from
  the sample's generator (--photos training, 300 test), AUC;
- turned photos, pretrained: the same photos, train and test, each turned by a random multiple
  of 90 degrees (an orientation-free set: aerial, microscopy), AUC;
- skewed digits: the bundled sample with class c kept at a share 0.1**(c/9) (digit 0 whole, 9 at
  a tenth), train and test alike, scored by accuracy and macro F1 (`--balance`);
- skewed breeds, pretrained: the breeds below with the c-th breed kept at a share 0.1**(c/8),
  train and test alike (228 training photos), at 96 px, macro F1 (`--balance`);
- small colour photos: the photos at 25 px and 150 of them, as `kit new` would see a small set
  (the network and size `kit new` chooses);
- small photos, pretrained, at their own size and upscaled (`--size`): 600 transfer photos of
  64 px saved as PNG (benchmarks/photo_sets.py; invasive's recipe, AUC on 1,000 test photos) and
  600 photos of nine breeds at 64 px (the recipe `kit new` writes; log loss and accuracy on 900);
  trained at 64 px with a final cycle at 96 (`--start-size 64 --size 96`: progressive
  resizing); upscaled once more with `--time-limit` set to the 64 px run's own time at that
  seed (the score at equal wall time).

Run: `python -m benchmarks.augment [--work DIR] [--seeds 3]` (about an hour on 2 idle cores).
Results are kept in DIR/augment.jsonl: a run that was cut off goes on where it stopped.
"""

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from sklearn.metrics import f1_score, roc_auc_score

from benchmarks import pages
from benchmarks.equal_time import ARCH, FASTAI_EPOCHS, fastai_breeds, score
from benchmarks.invasive import plain_fastai, timm_checkpoint
from benchmarks.lr import keep, read_rows, train
from benchmarks.mnist import build_folder, keras_baseline
from benchmarks.photo_sets import write_breeds, write_transfer
from competitions import invasive, mnist
from kit.errors import KitError
from kit.new import write_recipe

AUGMENT = {  # name: recipe fields; "colour" tricks only on colour sets
    "the recipe's defaults": {},
    "`--dihedral`": {"dihedral": True},
    "`--crop-scale 0.35`": {"crop_scale": 0.35},
    "`--erase 0.25`": {"erase": 0.25},
    "`--saturation 0.3 --hue 0.05`": {"saturation": 0.3, "hue": 0.05},
    "`--auto-augment trivial`": {"auto_augment": "trivial"},
}
BALANCE = {"`--balance none`": {"balance": "none"}, "`--balance weights`": {"balance": "weights"}}
# what `kit new` wrote before (digitnet at the photos' own size) and the pretrained choices
SMALL = {
    "digitnet at 25 px (kit new before)": dict(arch="digitnet", pretrained=False, size=25,
                                               head_cycles=0, lr_mult=1.0),
    "EfficientNet-Lite0 at 64 px": dict(size=64),
    "EfficientNet-Lite0 at 96 px": dict(size=96),
    "EfficientNet-Lite0 at 128 px": dict(size=128),
}  # fmt: skip
# ImageNet weights learned at 224 px: small photos at their own size, or upscaled once in the cache
# and at equal time: `--time-limit` set to the first row's own seconds at the same seed
SIZES = {"`--size 64` (the photos' own)": {}, "`--size 96`": {"size": 96},
         "`--size 128`": {"size": 128},
         "`--size 96 --start-size 64`": {"size": 96, "start_size": 64},
         "`--size 96` in the 64 px run's time": {"size": 96, "time_limit": "first row"},
         "`--size 128` in the 64 px run's time": {"size": 128,
                                                   "time_limit": "first row"}}  # fmt: skip


# each set's peer as a competitor writes it, timed whole in this process (as in equal_time.py)
KERAS = {"the seed's Keras CNN (the peer)": {"peer": True}}
FASTAI = {"plain fastai at 64 px, `fine_tune(3)` (the peer)": {"peer": True}}


def peer(work: Path, recipe: str, folder: Path, seed: int) -> dict:
    """The peer's held-out score and seconds on one set: the seed's Keras CNN on digits; plain
    fastai (lr_find's valley, fine_tune(3), TTA; the same ImageNet weights) on photos at 64 px."""
    from fastai.torch_core import set_seed

    set_seed(seed)
    start = time.perf_counter()
    if recipe == "mnist":
        got = {"accuracy": keras_baseline(folder, seed)["test_accuracy"]}
    else:
        weights = timm_checkpoint(ARCH, work)
        with pages.quiet(work / "fastai.log"):  # its epoch tables: the log, not the page
            if recipe == "invasive":
                ext = ".png" if next((folder / "train").glob("*.png"), None) else ".jpg"
                got = {"auc": plain_fastai(folder, 64, FASTAI_EPOCHS, 1, weights, ext)["test_auc"]}
            else:
                got = {"log loss": fastai_breeds(folder, weights)["score"]}
    return {"score": got, "seconds": round(time.perf_counter() - start, 1)}


def accuracy(sub, folder):
    return float((sub["Label"] == pd.read_csv(folder / "solution.csv")["Label"]).mean())


def macro_f1(sub, folder):
    return float(f1_score(pd.read_csv(folder / "solution.csv")["Label"], sub["Label"],
                          average="macro"))  # fmt: skip


def auc(sub, folder):
    truth = pd.read_csv(folder / "solution.csv").set_index("name").loc[sub["name"]]
    return float(roc_auc_score(truth["invasive"], sub["invasive"]))


def breed_labels(sub, folder) -> tuple[np.ndarray, np.ndarray]:
    """(true breeds, the submission's likeliest breeds) of the test photos, in `sub`'s order."""
    truth = pd.read_csv(folder / "solution.csv").set_index("id").loc[sub["id"], "breed"]
    return truth.to_numpy(), sub.set_index("id").idxmax(axis=1).to_numpy()


def breeds_accuracy(sub, folder):
    truth, predicted = breed_labels(sub, folder)
    return float((predicted == truth).mean())


def turned(src: Path, dest: Path, seed: int = 0) -> None:
    """A copy of the photo folder `src` with every image turned by a random multiple of 90."""
    shutil.copytree(src, dest)
    rng = np.random.default_rng(seed)
    turns = (None, Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180,
             Image.Transpose.ROTATE_270)  # fmt: skip
    for path in sorted(dest.glob("*/*.jpg")):
        turn = turns[rng.integers(4)]
        if turn is not None:
            Image.open(path).transpose(turn).save(path, quality=90)


def shrunk(src: Path, dest: Path, side: int, n_train: int) -> None:
    """A copy of the photo folder `src` at `side` px, its first `n_train` training photos."""
    shutil.copytree(src, dest)
    labels = pd.read_csv(dest / "train_labels.csv")
    for path in (dest / "train").glob("*.jpg"):
        if int(path.stem) > n_train:
            path.unlink()
    labels[labels["name"] <= n_train].to_csv(dest / "train_labels.csv", index=False)
    for path in dest.glob("*/*.jpg"):
        Image.open(path).resize((side, side), Image.Resampling.BOX).save(path, quality=95)


def skewed(sample: Path, dest: Path, seed: int = 0) -> None:
    """The digit sample with digit c kept at a share 0.1**(c/9), train and test alike."""
    dest.mkdir()
    rng = np.random.default_rng(seed)

    def keep_rows(labels):
        return rng.random(len(labels)) < 0.1 ** (labels.to_numpy().astype(int) / 9)

    train_df = pd.read_csv(sample / "train.csv")
    train_df[keep_rows(train_df["label"])].to_csv(dest / "train.csv", index=False)
    solution, test = pd.read_csv(sample / "solution.csv"), pd.read_csv(sample / "test.csv")
    kept = keep_rows(solution["Label"])
    test[kept].to_csv(dest / "test.csv", index=False)
    ids = range(1, int(kept.sum()) + 1)
    pd.DataFrame({"ImageId": ids, "Label": solution["Label"][kept].to_numpy()}).to_csv(
        dest / "solution.csv", index=False
    )
    pd.DataFrame({"ImageId": ids, "Label": 0}).to_csv(dest / "sample_submission.csv", index=False)


def skewed_breeds(src: Path, dest: Path, seed: int = 0) -> None:
    """A copy of the breeds folder `src` with the c-th breed (alphabetically) kept at a share
    0.1**(c/8), train and test alike."""
    shutil.copytree(src, dest)
    rng = np.random.default_rng(seed)
    names = sorted(pd.read_csv(src / "labels.csv")["breed"].unique())
    for split, table in (("train", "labels.csv"), ("test", "solution.csv")):
        df = pd.read_csv(dest / table)
        share = 0.1 ** (df["breed"].map(names.index) / (len(names) - 1))
        kept = rng.random(len(df)) < share
        for i in df["id"][~kept]:
            (dest / split / f"{i}.png").unlink()
        df[kept].to_csv(dest / table, index=False)
        if split == "test":
            sample = pd.read_csv(dest / "sample_submission.csv")
            sample[kept.to_numpy()].to_csv(dest / "sample_submission.csv", index=False)


def breeds_f1(sub, folder):
    return float(f1_score(*breed_labels(sub, folder), average="macro"))


def data_sets(work: Path, digits: int, photos: int) -> dict:
    """name: (recipe, folder, options, {score name: score(submission, folder)}, tricks)"""
    sample = work / "digits-1.4k"
    if not sample.exists():
        sample.mkdir()
        mnist.write_sample(sample)
    big, pics = work / f"digits-{digits}", work / f"photos-{photos}"
    if not big.exists():
        build_folder(sample, big, rows=digits)
    if not pics.exists():
        pics.mkdir()
        invasive.write_sample(pics, n_train=photos, n_test=300)
    if not (work / "turned").exists():
        turned(pics, work / "turned")
    if not (work / "skewed").exists():
        skewed(sample, work / "skewed")
    if not (work / "small").exists():
        shrunk(pics, work / "small", 25, 150)
    png, breeds = work / "transfer-64px-png", work / "breeds-64px"
    if not png.exists():
        write_transfer(png, 600, 1000, 64, ext=".png")
    if not breeds.exists():
        write_breeds(breeds, 600, 900, 64)
    if not (work / "skewed-breeds").exists():
        skewed_breeds(breeds, work / "skewed-breeds")
    if not (work / "competitions" / "breeds.py").exists():  # kit new, as a user would
        with pages.quiet(work / "runs.log"):
            write_recipe("breeds", breeds, "logloss", "dog-breed-identification")
    grey = {k: v for k, v in AUGMENT.items() if "saturation" not in v}
    photo = {"size": 64}
    return {
        "digits, from scratch": ("mnist", big, {}, {"accuracy": accuracy}, grey | KERAS),
        "photos, pretrained": ("invasive", pics, photo, {"auc": auc}, AUGMENT | FASTAI),
        "turned photos, pretrained": ("invasive", work / "turned", photo, {"auc": auc},
                                      AUGMENT | FASTAI),
        "skewed digits, from scratch": ("mnist", work / "skewed", {"metric": "f1_macro"},
                                        {"accuracy": accuracy, "macro F1": macro_f1}, BALANCE),
        "skewed breeds, pretrained": ("breeds", work / "skewed-breeds",
                                      {"metric": "f1_macro", "size": 96},
                                      {"macro F1": breeds_f1, "accuracy": breeds_accuracy},
                                      BALANCE),
        "150 photos at 25 px": ("invasive", work / "small", {}, {"auc": auc}, SMALL),
        "transfer 64 px PNG, pretrained": ("invasive", png, {"size": 64}, {"auc": auc},
                                           SIZES | FASTAI),
        "breeds 64 px PNG, pretrained": ("breeds", breeds, {"size": 64},
                                         {"log loss": lambda sub, f: score("logloss", f, sub),
                                          "accuracy": breeds_accuracy}, SIZES | FASTAI),
    }  # fmt: skip


def measure(work: Path, sets: dict, seeds: int, only: list | None) -> list[dict]:
    """Every (data set, trick, seed) not yet in augment.jsonl, appended as it finishes."""
    path = work / "augment.jsonl"
    done = read_rows(path)
    have = {(d["data"], d["trick"], d["seed"]) for d in done}
    for name, (recipe, folder, options, scores, tricks) in sets.items():
        if only and not any(o in name for o in only):
            continue
        for seed in range(1, seeds + 1):
            for trick, changes in tricks.items():
                if (name, trick, seed) in have:
                    continue

                def score_all(sub, folder, scores=scores):
                    return {k: f(sub, folder) for k, f in scores.items()}

                if changes.get("time_limit") == "first row":
                    first = (name, next(iter(tricks)), seed)
                    limit = next(
                        d["seconds"] for d in done if (d["data"], d["trick"], d["seed"]) == first
                    )
                    changes = changes | {"time_limit": limit / 60}
                row = {"data": name, "trick": trick, "seed": seed}
                if changes.get("peer"):
                    done.append(keep(path, row | peer(work, recipe, folder, seed)))
                    continue
                try:
                    row.update(train(work, recipe, folder, options, score_all, seed, **changes))
                except KitError as e:  # a time limit too short for one epoch: said in the row
                    row.update(score=None, refused=str(e), seconds=0.0)
                done.append(keep(path, row))
    return done


LOWER = ("log loss",)  # scores where lower is better


def report(rows: list[dict], sets: dict) -> None:
    """One row per (data set, trick): the mean score, each seed's gain over the set's first row
    at the same seed, in points of the first score (log loss: its own units), and the time."""
    df = pd.DataFrame(rows)
    print(
        "\n| data set | training | held-out score (mean of seeds) | points from the first row, "
        "seed by seed (mean) | better at | seconds per run (median) | time against the first row |"
    )
    print("|---|---|---|---|---|---|---|")  # fmt: skip
    for name, d in df.groupby("data", sort=False):
        tricks = list(sets[name][-1])
        base = d[d["trick"] == tricks[0]].set_index("seed")
        for trick in tricks:
            t = d[d["trick"] == trick].set_index("seed")
            if t.empty or base.empty:
                continue
            if t["score"].isna().any():
                why = t["refused"].dropna().iloc[0].split(";")[0]
                print(f"| {name} | {trick} | refused at {t['score'].isna().sum()} of {len(t)} "
                      f"seeds: {why} |  |  |  |  |")  # fmt: skip
                continue
            metrics = list(t["score"].iloc[0])
            cells = [f"{m} {np.mean([s[m] for s in t['score']]):.4f}" for m in metrics]
            seeds = [i for i in t.index if i in base.index]
            m = metrics[0]
            diffs = [t.at[i, "score"][m] - base.at[i, "score"][m] for i in seeds]
            better = sum(d < 0 if m in LOWER else d > 0 for d in diffs)
            points = [d if m in LOWER else 100 * d for d in diffs]
            gains = " ".join(f"{g:+.2f}" for g in points) + f" ({np.mean(points):+.2f})"
            # the median: the first run on a set (and size) also builds its resize cache
            ratio = t["seconds"].median() / base["seconds"].median()
            print(f"| {name} | {trick} | {', '.join(cells)} | "
                  f"{gains if trick != tricks[0] else ''} | "
                  f"{f'{better} of {len(seeds)}' if trick != tricks[0] else ''} | "
                  f"{t['seconds'].median():.0f} | {ratio:.2f}x |")  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work", type=Path, default=Path("/tmp/kit-bench-augment"))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--digits", type=int, default=3000, help="training rows of the digit set")
    p.add_argument("--photos", type=int, default=300, help="training photos")
    p.add_argument("--only", nargs="*", help="data sets whose names hold one of these words")
    args = p.parse_args()
    args.work = args.work.resolve()
    args.work.mkdir(parents=True, exist_ok=True)
    os.chdir(args.work)  # kit new writes, and kit finds, the breeds recipe in ./competitions
    sets = data_sets(args.work, args.digits, args.photos)
    report(measure(args.work, sets, args.seeds, args.only), sets)


if __name__ == "__main__":
    sys.exit(pages.run(main, "augment"))

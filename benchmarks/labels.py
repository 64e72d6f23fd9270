"""Multi-label and top-k competitions read through `kit new`, against plain fastai.

Two folders made from scikit-learn's real digit scans (tests/label_kinds_data.py), laid out as
the competitions are, each scored on its held-out test labels:

- multi-label, as Planet (`train_v2.csv` of `image_name,tags`, train-jpg/, test-jpg/; samples-
  averaged F2): each 32x32 image a 2x2 grid showing 1-3 of the digits 0-5, tagged by the digits
  present. `kit new` + `kit run` with the recipe as written (a sigmoid per tag, BCE, per-tag
  thresholds tuned on validation) against fastai as a competitor writes it: `ImageDataLoaders.
  from_df(label_delim=" ")` (a MultiCategoryBlock), `Resize(64)`, `aug_transforms`,
  `vision_learner` with the same packaged EfficientNet-Lite0 ImageNet weights the kit ships,
  `accuracy_multi`, `lr_find`, `fine_tune`, `tta`, the tags at fastai's 0.5.
- top-k, as Humpback Whale (`train.csv` of `Image,Id`; MAP@5): whales are the digits 1-9 in one
  of several inks, 1 to a handful of images each (some seen once), and `new_whale` the 0 in any
  ink. The kit's defaults against a single-label fastai learner's 5 likeliest labels (a
  DataBlock whose CategoryBlock knows every whale: fastai refuses a validation label its
  training split lacks, which a random split of whales seen once always makes).

Both sides start from the folder on disk and end with test predictions; wall time includes
everything between.
"""

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import fastprogress.fastprogress as fastprogress
import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from invasive import timm_checkpoint  # noqa: E402  (benchmarks/invasive.py)
from label_kinds_data import humpback, planet  # noqa: E402

ARCH = "tf_efficientnet_lite0"


def kit_run(folder: Path, work: Path, name: str) -> tuple[pd.DataFrame, float]:
    """`kit new` then `kit run` with the recipe as written: the submission and the seconds."""
    start = time.perf_counter()
    kit = [sys.executable, "-m", "kit.cli"]
    subprocess.run([*kit, "new", name, "--data", str(folder)], cwd=work, check=True)
    subprocess.run([*kit, "run", name], cwd=work, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    (sub,) = (work / "submissions" / name).glob("*.csv")
    return pd.read_csv(sub), seconds


def pretrained(dls, metrics, work: Path):
    """fastai's vision_learner as a competitor calls it, `pretrained=True`, pointed at the same
    packaged ImageNet weights instead of a download: fastai freezes the body and adds the
    weights' normalisation."""
    from fastai.vision.all import vision_learner

    weights = dict(file=str(timm_checkpoint(ARCH, work)))
    return vision_learner(dls, ARCH, pretrained=True, metrics=metrics,
                          pretrained_cfg_overlay=weights)  # fmt: skip


def fastai_tags(folder: Path, epochs: int, work: Path) -> tuple[list, float]:
    """Plain fastai, multi-label: each test image's tags at 0.5, and the seconds."""
    start = time.perf_counter()
    from fastai.vision.all import (
        ImageDataLoaders,
        Resize,
        accuracy_multi,
        aug_transforms,
    )

    df = pd.read_csv(folder / "train_v2.csv")
    dls = ImageDataLoaders.from_df(
        df, folder, fn_col="image_name", label_col="tags", label_delim=" ", folder="train-jpg",
        suff=".jpg", valid_pct=0.2, seed=42, bs=64, item_tfms=Resize(64),
        batch_tfms=aug_transforms(size=64),
    )  # fmt: skip
    learn = pretrained(dls, accuracy_multi, work)
    learn.fine_tune(epochs, learn.lr_find(show_plot=False).valley)
    ids = pd.read_csv(folder / "sample_submission.csv")["image_name"]
    probs, _ = learn.tta(dl=dls.test_dl([folder / "test-jpg" / f"{i}.jpg" for i in ids]))
    tags = [[dls.vocab[j] for j in np.flatnonzero(row)] for row in (probs >= 0.5).numpy()]
    return tags, time.perf_counter() - start


def fastai_top5(folder: Path, epochs: int, work: Path) -> tuple[list, float]:
    """Plain fastai, one label per image: each test image's 5 likeliest whales, and the seconds."""
    start = time.perf_counter()
    from fastai.vision.all import (
        CategoryBlock,
        ColReader,
        DataBlock,
        ImageBlock,
        RandomSplitter,
        Resize,
        accuracy,
        aug_transforms,
    )

    df = pd.read_csv(folder / "train.csv")
    block = DataBlock(
        blocks=(ImageBlock, CategoryBlock(vocab=sorted(df["Id"].unique()))),
        get_x=ColReader("Image", pref=folder / "train"), get_y=ColReader("Id"),
        splitter=RandomSplitter(0.2, seed=42), item_tfms=Resize(64),
        batch_tfms=aug_transforms(size=64),
    )  # fmt: skip
    dls = block.dataloaders(df, bs=64)
    learn = pretrained(dls, accuracy, work)
    learn.fine_tune(epochs, learn.lr_find(show_plot=False).valley)
    ids = pd.read_csv(folder / "sample_submission.csv")["Image"]
    probs, _ = learn.tta(dl=dls.test_dl([folder / "test" / i for i in ids]))
    top = probs.argsort(dim=1, descending=True)[:, :5].numpy()
    return [[dls.vocab[j] for j in row] for row in top], time.perf_counter() - start


def score_tags(folder: Path, tags: list) -> float:
    """Samples-averaged F2 of each test image's tags, as Kaggle scores Planet (an image given no
    right tag, or none at all, scores 0)."""
    truth = pd.read_csv(folder / "solution.csv")["label"].str.split().tolist()
    scores = []
    for want, given in zip(truth, tags):
        hits = len(set(want) & set(given))
        p, r = hits / max(len(given), 1), hits / len(want)
        scores.append(5 * p * r / (4 * p + r) if hits else 0.0)
    return float(np.mean(scores))


def score_ranked(folder: Path, ranked: list) -> float:
    """MAP@5: 1/rank of the right whale among the 5 given, 0 when it is not among them."""
    truth = pd.read_csv(folder / "solution.csv")["label"].tolist()
    return float(
        np.mean([1 / (r.index(t) + 1) if t in r[:5] else 0 for t, r in zip(truth, ranked)])
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path(".bench/labels"))
    parser.add_argument("--train", type=int, default=1000, help="Planet-style training images")
    parser.add_argument("--test", type=int, default=300, help="Planet-style test images")
    parser.add_argument("--inks", type=int, default=5, help="whales per digit (1-6)")
    parser.add_argument("--most", type=int, default=8, help="images of the best-seen whale")
    parser.add_argument("--epochs", type=int, default=5, help="fastai's fine_tune epochs")
    args = parser.parse_args()
    work = args.work.resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    os.environ.setdefault("KIT_CACHE", str(work / "cache"))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    fastprogress.NO_BAR = True

    tags_dir = work / "planet-understanding-the-amazon-from-space"
    planet(tags_dir, args.train, args.test)
    whales_dir = work / "humpback-whale-identification"
    humpback(whales_dir, args.inks, args.most, new=4 * args.inks)
    n_whales = pd.read_csv(whales_dir / "train.csv")["Id"].nunique()

    # fastai's epoch tables go to a log, not the page (kit_run's commands print from their own
    # processes, under the DEVNULL or terminal kit_run gives them)
    with pages.quiet(work / "fastai.log"):
        sub, kit_tags_s = kit_run(tags_dir, work, "planet")
        kit_tags = score_tags(tags_dir, sub["tags"].str.split().tolist())
        fa_tags, fa_tags_s = fastai_tags(tags_dir, args.epochs, work)
        sub, kit_top_s = kit_run(whales_dir, work, "whales")
        kit_top = score_ranked(whales_dir, sub["Id"].str.split().tolist())
        fa_top, fa_top_s = fastai_top5(whales_dir, args.epochs, work)

    print(f"\n| {args.train:,} training images, 2 CPU cores | held-out score | wall time |"
          "\n|---|---|---|")  # fmt: skip
    print(f"| multi-label (F2): plain fastai, MultiCategoryBlock, accuracy_multi, fine_tune("
          f"{args.epochs}), tta, tags at 0.5 | {score_tags(tags_dir, fa_tags):.4f} | "
          f"{fa_tags_s:.0f} s |")  # fmt: skip
    print(f"| multi-label (F2): `kit new` + `kit run`, defaults | {kit_tags:.4f} | "
          f"{kit_tags_s:.0f} s |")  # fmt: skip
    print(f"| top-5 of {n_whales} whales (MAP@5): plain fastai, single-label learner's top 5, "
          f"fine_tune({args.epochs}), tta | {score_ranked(whales_dir, fa_top):.4f} | "
          f"{fa_top_s:.0f} s |")  # fmt: skip
    print(f"| top-5 of {n_whales} whales (MAP@5): `kit new` + `kit run`, defaults | {kit_top:.4f} "
          f"| {kit_top_s:.0f} s |")  # fmt: skip


if __name__ == "__main__":
    import pages  # the docs page: what this printed

    sys.exit(pages.run(main, "labels"))

"""A competition neither packaged recipe knows, read through `kit new`, against plain fastai.

The folder is laid out as Plant Seedlings is (`train/<species>/*.png`, `test/*.png`,
`sample_submission.csv` with `file,species`, scored by micro F1): scikit-learn's 1,797 real
digit scans drawn as 32x32 colour PNGs (coloured ink on a tinted ground), the ten digits
named after ten of the competition's species; the same 1,437 / 360 split as the Digit
Recognizer sample. Both sides start from the folder on disk and end with test predictions:

- `kit new seedlings --data DIR` then `kit run seedlings`, defaults;
- plain fastai as a competitor writes it in a notebook: `ImageDataLoaders.from_folder`,
  `Resize(64)`, `aug_transforms`, `vision_learner(..., pretrained=True)` with the same
  packaged EfficientNet-Lite0 ImageNet weights the kit ships (so fastai freezes the body and
  adds the weights' normalisation), `lr_find` on the frozen body, `fine_tune(5)`, `tta`.
"""

import argparse
import json
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
from sklearn.datasets import load_digits
from sklearn.metrics import f1_score
from sklearn.model_selection import train_test_split

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import pages  # noqa: E402  (benchmarks/pages.py: the docs page, what this printed)
from invasive import timm_checkpoint  # noqa: E402  (benchmarks/invasive.py)
from layouts_data import PLANTS, digit_image  # noqa: E402


def write_folder(dest: Path) -> None:
    d = load_digits()
    rng = np.random.default_rng(0)
    train, test = train_test_split(np.arange(len(d.target)), test_size=0.2, random_state=0,
                                   stratify=d.target)  # fmt: skip
    for i in train:
        path = dest / "train" / PLANTS[d.target[i]] / f"{i:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        digit_image(d.images[i], 32, rng, True).save(path)
    (dest / "test").mkdir()
    files = [f"{rng.integers(16**9):09x}.png" for _ in test]
    for i, name in zip(test, files):
        digit_image(d.images[i], 32, rng, True).save(dest / "test" / name)
    pd.DataFrame({"file": files, "species": PLANTS[0]}).to_csv(dest / "sample_submission.csv",
                                                               index=False)  # fmt: skip
    truth = [PLANTS[d.target[i]] for i in test]
    pd.DataFrame({"file": files, "species": truth}).to_csv(dest / "solution.csv", index=False)


def kit_run(folder: Path, work: Path) -> dict:
    start = time.perf_counter()
    kit = [sys.executable, "-m", "kit.cli"]
    subprocess.run([*kit, "new", "seedlings", "--data", str(folder)], cwd=work, check=True)
    subprocess.run([*kit, "run", "seedlings"], cwd=work, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    (sub,) = (work / "submissions" / "seedlings").glob("*.csv")
    (run_dir,) = (work / "runs" / "seedlings").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {"f1": score(folder, pd.read_csv(sub)["species"]), "seconds": seconds,
            "lr": metrics["lr"], "rule": metrics["lr_rule"].split(":")[0]}  # fmt: skip


def plain_fastai(folder: Path, weights: Path, epochs: int = 5) -> dict:
    """`pretrained=True` (pointed at `weights`, the same ImageNet weights, instead of a
    download), so fastai freezes the body, normalises as the weights expect and finds the rate
    on the frozen body, as it does for a competitor."""
    start = time.perf_counter()
    from fastai.vision.all import ImageDataLoaders, Resize, accuracy, aug_transforms, vision_learner

    dls = ImageDataLoaders.from_folder(
        folder, train="train", valid_pct=0.2, seed=42, bs=64, item_tfms=Resize(64),
        batch_tfms=aug_transforms(size=64),
    )  # fmt: skip
    learn = vision_learner(dls, "tf_efficientnet_lite0", pretrained=True, metrics=accuracy,
                           pretrained_cfg_overlay=dict(file=str(weights)))  # fmt: skip
    sample = pd.read_csv(folder / "sample_submission.csv")
    with pages.quiet(folder.parent / "fastai.log"):  # its epoch tables: the log, not the page
        lr = learn.lr_find(show_plot=False).valley
        learn.fine_tune(epochs, lr)
        probs, _ = learn.tta(dl=dls.test_dl([folder / "test" / f for f in sample["file"]]))
    labels = [dls.vocab[i] for i in probs.argmax(1)]
    return {"f1": score(folder, labels), "lr": lr, "seconds": time.perf_counter() - start}


def score(folder: Path, predicted) -> float:
    truth = pd.read_csv(folder / "solution.csv")["species"]
    return float(f1_score(truth, list(predicted), average="micro"))


def cell(value: float, best: float) -> str:
    """A score as the README's table shows it: the best in bold."""
    return f"**{value:.4f}**" if value == best else f"{value:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path(".bench/layouts"))
    args = parser.parse_args()
    work = args.work.resolve()
    shutil.rmtree(work, ignore_errors=True)
    folder = work / "plant-seedlings-classification"
    write_folder(folder)
    os.environ.setdefault("KIT_CACHE", str(work / "cache"))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    fastprogress.NO_BAR = True
    kit = kit_run(folder, work)
    fastai = plain_fastai(folder, timm_checkpoint("tf_efficientnet_lite0", work))
    best = max(kit["f1"], fastai["f1"])
    print("\n| class folders, 1,437 digits 32x32 colour, 2 CPU cores | test micro F1 | wall time |"
          "\n|---|---|---|")  # fmt: skip
    print(f"| plain fastai: from_folder, vision_learner (EfficientNet-Lite0 ImageNet), lr_find "
          f"(valley: {fastai['lr']:.1e}), fine_tune(5), tta | {cell(fastai['f1'], best)} "
          f"| {fastai['seconds']:.0f} s |")  # fmt: skip
    print(f"| `kit new` + `kit run`, defaults ({kit['rule']}: {kit['lr']:.1e}) "
          f"| {cell(kit['f1'], best)} | {kit['seconds']:.0f} s |")  # fmt: skip


if __name__ == "__main__":
    sys.exit(pages.run(main, "layouts"))

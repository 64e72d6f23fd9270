"""Invasive Species benchmark: prints the README's tables.

1. Test AUC against wall time on the bundled sample: `kit run invasive --sample` (the recipe's
   defaults) against plain fastai as a competitor writes it in a notebook
   (`ImageDataLoaders.from_df`, `vision_learner(..., pretrained=True)` with the same
   EfficientNet-Lite0 ImageNet weights, so fastai freezes the body and adds the weights'
   normalisation, `lr_find` on the frozen body, `fine_tune` for the same number of epochs,
   `tta`).
2. The same comparison on a transfer task of a few thousand photos (`--transfer`, 3,000 by
   default, and a third as many test photos) at 64 px: crops of the temple and portrait photos
   with a small patch pasted in, the dahlia (invasive) or leaves of the same photo (not), saved
   at 85x64 as a competition's resized copy would be, once as JPEGs and once as PNGs, which are
   cheap to decode, where plain fastai is at its best (`benchmarks/photo_sets.py`).
3. Images/s the data pipeline delivers at 224 px: the kit's resized cache (batches from uint8
   tensors, augmented on the batch) against decoding full-size 1154x866 JPEGs per item with
   PIL (as a loader without a cache does), and the one-off cost of building the cache.
4. One epoch of the kit's training loop against the bare model's forward/backward on
   preloaded tensors.

Run: `python benchmarks/invasive.py [--work DIR]`. About 25 minutes on 2 CPU cores.
"""

import argparse
import dataclasses
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import fastprogress.fastprogress as fastprogress
import numpy as np
import pandas as pd
import timm
import torch
from fastai.callback.core import Callback
from PIL import Image
from sklearn.metrics import roc_auc_score
from torch.nn import functional as F

from competitions import invasive
from kit.data.augment import random_augment
from kit.data.folds import split
from kit.data.images import load_photos
from kit.data.loader import TensorLoader
from kit.pipeline import prepare
from kit.train.learner import build_learner
from kit.train.weights import find_weights, load_weights

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pages  # noqa: E402  (benchmarks/pages.py: the docs page, what this printed)
from photo_sets import write_transfer  # noqa: E402  (benchmarks/photo_sets.py)


def kit_run(out: Path, *flags: str) -> dict:
    """`kit run invasive FLAGS`, as a user runs it."""
    start = time.perf_counter()
    cmd = [sys.executable, "-m", "kit.cli", "run", "invasive", *flags, "--out", str(out)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    run_dir = max((out / "runs" / "invasive").iterdir(), key=lambda p: p.stat().st_mtime)
    return {**json.loads((run_dir / "metrics.json").read_text()), "seconds": seconds}


def timm_checkpoint(arch: str, work: Path) -> Path:
    """The packaged ImageNet weights saved under timm's own key names (the package ships them
    under another implementation's), so that timm's `pretrained=True` loads them offline."""
    path = work / f"{arch}-timm.pth"
    if not path.exists():
        model = timm.create_model(arch, num_classes=0)
        load_weights(model, find_weights(arch))
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), path)
    return path


def plain_fastai(
    folder: Path, size: int, epochs: int, freeze_epochs: int, weights: Path, ext: str = ".jpg"
) -> dict:
    """What a competitor writes in a notebook with fastai's high-level API: `pretrained=True`
    (here pointed at `weights`, the same ImageNet weights, instead of a download), so fastai
    freezes the body, normalises as the weights expect and finds the rate on the frozen body."""
    start = time.perf_counter()
    from fastai.vision.all import (
        ImageDataLoaders,
        Resize,
        RocAucBinary,
        aug_transforms,
        vision_learner,
    )

    df = pd.read_csv(folder / "train_labels.csv")
    dls = ImageDataLoaders.from_df(
        df, folder, folder="train", suff=ext, valid_pct=0.2, seed=42, bs=32,
        item_tfms=Resize(size), batch_tfms=aug_transforms(size=size, max_zoom=1.1, max_rotate=10),
    )  # fmt: skip
    learn = vision_learner(dls, invasive.RECIPE.arch, pretrained=True, metrics=RocAucBinary(),
                           pretrained_cfg_overlay=dict(file=str(weights)))  # fmt: skip
    test = pd.read_csv(folder / "sample_submission.csv")
    with pages.quiet(folder.parent / "fastai.log"):  # its epoch tables: the log, not the page
        lr = learn.lr_find(show_plot=False).valley
        learn.fine_tune(epochs, lr, freeze_epochs=freeze_epochs)
        test_dl = dls.test_dl([folder / "test" / f"{n}{ext}" for n in test["name"]])
        probs, _ = learn.tta(dl=test_dl)
    truth = pd.read_csv(folder / "solution.csv").set_index("name").loc[test["name"], "invasive"]
    return {"test_auc": roc_auc_score(truth, probs[:, 1].numpy()), "lr": lr,
            "seconds": time.perf_counter() - start}  # fmt: skip


def synthetic_photos(folder: Path, n: int, seed: int = 0) -> list[Path]:
    """`n` 1154x866 JPEGs made from the sample's photos, the competition's size."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    sources = [invasive.source_photo(name) for name in invasive.SOURCES]
    files = []
    for i in range(n):
        photo = sources[i % len(sources)].resize((1154, 866), Image.BICUBIC)
        noise = rng.integers(-8, 9, (866, 1154, 3))
        pixels = np.clip(np.asarray(photo, dtype=np.int16) + noise, 0, 255).astype(np.uint8)
        files.append(folder / f"{i}.jpg")
        Image.fromarray(pixels).save(files[-1], quality=90)
    return files


def decode_full(files: list[Path], size: int, bs: int) -> float:
    """Images/s of decoding full-size JPEGs per item, resizing, batching (no cache)."""
    start = time.perf_counter()
    for i in range(0, len(files), bs):
        batch = [np.asarray(Image.open(f).convert("RGB").resize((size, size), Image.BILINEAR))
                 for f in files[i : i + bs]]  # fmt: skip
        torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).float()
    return len(files) / (time.perf_counter() - start)


def cached_pipeline(x: torch.Tensor, bs: int) -> float:
    """Images/s of the kit's loader: uint8 batches from memory, augmented and normalised."""
    r = invasive.RECIPE
    loader = TensorLoader(x, torch.zeros(len(x), dtype=torch.long), bs, ([0.5] * 3, [0.5] * 3),
                          shuffle=True, augment=lambda xb, g: random_augment(xb, r, g),
                          channels_last=True)  # fmt: skip
    start = time.perf_counter()
    for _ in range(3):
        for _ in loader:
            pass
    return 3 * len(x) / (time.perf_counter() - start)


class TrainTimer(Callback):
    """Seconds of each epoch's training phase (validation excluded)."""

    def before_fit(self):
        self.seconds = []

    def before_train(self):
        self.start = time.perf_counter()

    def after_train(self):
        self.seconds.append(time.perf_counter() - self.start)


def loop_overhead(sample: Path, out: Path, copies: int = 5) -> tuple[float, float, int]:
    """Seconds for one training epoch (after a warm-up epoch) of the kit's loop and of a bare
    loop over the same model, batch size and photos (the sample, `copies` times)."""
    job = prepare("invasive", data=sample, out=out, size=128, valid_pct=0.1)
    d = job.data
    job.data = dataclasses.replace(d, x=d.x.repeat(copies, 1, 1, 1), y=d.y.repeat(copies),
                                   names=d.names * copies)  # fmt: skip
    valid = split(job.data.y, job.recipe.valid_pct, job.recipe.seed)[1]
    learn = build_learner(job.recipe, job.data, job.device, job.weights, out, valid)
    timer = TrainTimer()
    with learn.no_logging():
        learn.fit(2, 1e-4, cbs=[timer])
    n = len(learn.dls.train) * learn.dls.train.bs
    model, bs = learn.model, job.recipe.bs
    x = ((job.data.x[:n].float() / 255 - 0.5) / 0.5).contiguous(memory_format=torch.channels_last)
    y = job.data.y[:n]
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    model.train()
    seconds = []
    for _ in range(2):
        start = time.perf_counter()
        for idx in torch.randperm(n).split(bs):
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        seconds.append(time.perf_counter() - start)
    return timer.seconds[-1], seconds[-1], n


def transfer_table(work: Path, n: int, arch: str, size: int = 64, ext: str = ".jpg") -> None:
    """The kit's defaults against plain fastai on the transfer task: `n` training photos and
    n // 3 test photos at `size` px, saved as `ext` (JPEG or PNG: benchmarks/photo_sets.py)."""
    folder = work / f"transfer-{n}{'-png' * (ext == '.png')}"
    if not folder.exists():
        write_transfer(folder, n, n // 3, size, ext=ext)
    kit = kit_run(work / "out", "--data", str(folder), "--size", str(size), "--ext", ext)
    epochs, head = kit["epochs"], invasive.RECIPE.head_cycles
    fastai = plain_fastai(folder, size, epochs - head, head, timm_checkpoint(arch, work), ext)
    kind = "PNG" if ext == ".png" else "JPEG"
    print(f"\n| transfer task: {n:,} training photos, {n // 3:,} test, {size} px {kind}, {epochs} "
          "epochs each | test AUC | wall time | vs plain fastai |\n|---|---|---|---|")  # fmt: skip
    print(f"| plain fastai: from_df, vision_learner, lr_find (valley: {fastai['lr']:.1e}), "
          f"fine_tune({epochs - head}, freeze_epochs={head}), tta | {fastai['test_auc']:.4f} | "
          f"{fastai['seconds']:.0f} s | 1.00x |")  # fmt: skip
    rule = kit["lr_rule"].split(":")[0]
    print(f"| `kit run invasive --size {size} --ext {ext}` ({rule}: head {kit['head_lr']:.1e}, "
          f"then {kit['lr']:.1e}) | {kit['test_auc']:.4f} | {kit['seconds']:.0f} s | "
          f"{kit['seconds'] / fastai['seconds']:.2f}x |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path(".bench/invasive"))
    parser.add_argument("--photos", type=int, default=96, help="synthetic full-size photos")
    parser.add_argument("--transfer", type=int, default=3000, help="transfer task's photos")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    fastprogress.NO_BAR = True  # the plain-fastai notebook's bars would flood the log

    kit = kit_run(args.work / "out", "--sample")
    r = dataclasses.replace(invasive.RECIPE, **invasive.SAMPLE)
    epochs = kit["epochs"]
    fastai = plain_fastai(args.work / "out" / "data" / "invasive-sample", r.size,
                          epochs - r.head_cycles, r.head_cycles,
                          timm_checkpoint(r.arch, args.work))  # fmt: skip
    head = r.head_cycles
    rule = kit["lr_rule"].split(":")[0]  # "minimum rule", or "fixed by --lr X"
    print(f"\n| on the sample ({r.size} px, {epochs} epochs each) | test AUC | wall time "
          "| vs plain fastai |\n|---|---|---|---|")  # fmt: skip
    print(f"| plain fastai: from_df, vision_learner, lr_find (valley: {fastai['lr']:.1e}), "
          f"fine_tune({epochs - head}, freeze_epochs={head}), tta | {fastai['test_auc']:.4f} | "
          f"{fastai['seconds']:.0f} s | 1.00x |")  # fmt: skip
    print(f"| `kit run invasive --sample` ({rule}: head {kit['head_lr']:.1e}, then "
          f"{kit['lr']:.1e}) | {kit['test_auc']:.4f} | {kit['seconds']:.0f} s | "
          f"{kit['seconds'] / fastai['seconds']:.2f}x |")  # fmt: skip

    for ext in (".jpg", ".png"):  # PNG: cheap to decode, where plain fastai is at its best
        transfer_table(args.work, args.transfer, r.arch, ext=ext)

    files = synthetic_photos(args.work / "full-size", args.photos)
    shutil.rmtree(args.work / "cache-224", ignore_errors=True)  # built afresh, timed
    start = time.perf_counter()
    x, _ = load_photos(files, args.work / "cache-224", 224, "synthetic")
    build = len(files) / (time.perf_counter() - start)
    full, cached = decode_full(files, 224, 32), cached_pipeline(x, 32)
    print("\n| data pipeline at 224 px, batch 32, 2 cores | images/s |\n|---|---|")
    print(f"| decode full-size 1154x866 JPEGs per item, resize | {full:.0f} |")
    print(f"| kit: resized cache in memory, batch augmentation | {cached:.0f} |")
    print(f"| building the cache once (parallel, JPEG draft mode) | {build:.0f} |")

    kit_s, bare_s, n = loop_overhead(args.work / "out" / "data" / "invasive-sample", args.work)
    print(f"\n| one epoch, {r.arch}, 128 px, {n} images | seconds | ratio |\n|---|---|---|")
    print(f"| bare forward/backward on preloaded tensors | {bare_s:.1f} | 1.00 |")
    print(f"| kit's fastai loop | {kit_s:.1f} | {kit_s / bare_s:.2f} |")


if __name__ == "__main__":
    sys.exit(pages.run(main, "invasive"))

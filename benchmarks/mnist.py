"""Digit Recognizer benchmark: prints the README's tables.

1. Accuracy against wall time, on the same data: the seed's Keras CNN (Conv32-Pool-Conv64-Pool-
   Dropout-Dense, Adam, batch 128, early stopping with patience 2, validation_split 0.1) in
   plain PyTorch, against `kit run mnist` with the recipe's defaults. Both train on a
   42,000-row train.csv of augmented copies of the sample's training digits and are scored on
   the sample's 360 held-out digits, which no copy was made from.
2. Training images/s: the kit's fastai loop (batches from uint8 tensors, augmentation,
   normalisation) against a bare PyTorch loop over the same model, batch size and precision
   on preloaded tensors. Both are warmed up with one epoch, then timed alternately, REPEATS
   epochs each: the median and the range (min-max) are printed.
3. Peak memory (max RSS) of `kit run mnist` on the 42,000-row train.csv.

Run: `python benchmarks/mnist.py [--rows 42000] [--work DIR]`. Takes about 15 minutes on 2 cores.
`--quick` checks that the script works in a minute or two (2,000 rows, one SGDR cycle, 2 timed
epochs each): its numbers mean nothing.
"""

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch
from fastai.callback.core import Callback
from torch import nn
from torch.nn import functional as F

from competitions import mnist
from kit.data.augment import random_augment
from kit.data.folds import split
from kit.pipeline import prepare
from kit.train.learner import build_learner, norm_stats, resolve_precision
from kit.train.models import create_model

REPEATS = 5  # timed epochs of each training loop, after a warm-up epoch each


def augmented_copies(df: pd.DataFrame, rows: int, gen: torch.Generator) -> pd.DataFrame:
    """`rows` rows: each digit of `df` once, then augmented copies of random digits, shuffled."""
    labels = df.pop("label").to_numpy() if "label" in df else None
    x = torch.tensor(df.to_numpy(), dtype=torch.float32).view(-1, 1, 28, 28) / 255
    pick = torch.randint(len(x), (rows,), generator=gen)
    pick[: len(x)] = torch.arange(len(x))
    copies = random_augment(x[pick], mnist.RECIPE, gen)
    copies[: len(x)] = x
    pixels = (copies * 255).round().clamp(0, 255).to(torch.uint8).view(rows, -1).numpy()
    order = torch.randperm(rows, generator=gen).numpy()  # Keras validates on the last 10%
    out = pd.DataFrame(pixels[order], columns=[f"pixel{i}" for i in range(784)])
    if labels is not None:
        out.insert(0, "label", labels[pick.numpy()][order])
    return out


def build_folder(sample: Path, dest: Path, rows: int, test_copies: int = 10, seed: int = 0):
    """A Kaggle-layout folder: train.csv holds `rows` augmented copies of the sample's training
    digits; test.csv `test_copies` copies of each held-out digit (the originals among them)."""
    gen = torch.Generator().manual_seed(seed)
    dest.mkdir(parents=True, exist_ok=True)
    augmented_copies(pd.read_csv(sample / "train.csv"), rows, gen).to_csv(
        dest / "train.csv", index=False
    )
    label = pd.read_csv(sample / "solution.csv")["Label"].rename("label")
    test = pd.concat([label, pd.read_csv(sample / "test.csv")], axis=1)  # in one frame, at once
    test = augmented_copies(test, len(test) * test_copies, gen)
    ids = range(1, len(test) + 1)
    pd.DataFrame({"ImageId": ids, "Label": test.pop("label")}).to_csv(
        dest / "solution.csv", index=False
    )
    test.to_csv(dest / "test.csv", index=False)
    pd.DataFrame({"ImageId": ids, "Label": 0}).to_csv(dest / "sample_submission.csv", index=False)


def keras_cnn(classes: int = 10) -> nn.Module:
    """The seed's Keras model, layer for layer."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(0.5), nn.Linear(64 * 5 * 5, classes),
    )  # fmt: skip


def keras_baseline(folder: Path, seed: int = 0) -> dict:
    """The seed's recipe: Adam, batch 128, up to 30 epochs, EarlyStopping(min_delta=0.0005,
    patience=2) on val_loss, validation_split=0.1 (Keras holds out the last 10% of rows)."""
    start = time.perf_counter()
    torch.manual_seed(seed)
    train = pd.read_csv(folder / "train.csv")
    labels = train.pop("label").astype(str)
    classes = sorted(labels.unique())
    y = torch.tensor(labels.map({c: i for i, c in enumerate(classes)}).to_numpy())
    x = torch.tensor(train.to_numpy(), dtype=torch.float32).view(-1, 1, 28, 28) / 255
    test = torch.tensor(pd.read_csv(folder / "test.csv").to_numpy(), dtype=torch.float32)
    test = test.view(-1, 1, 28, 28) / 255
    n_val = len(x) // 10
    xt, yt, xv, yv = x[:-n_val], y[:-n_val], x[-n_val:], y[-n_val:]
    model, best, waited, ran = keras_cnn(len(classes)), float("inf"), 0, 0
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for epoch in range(1, 31):
        ran = epoch
        model.train()
        for i in torch.randperm(len(xt)).split(128):
            loss = F.cross_entropy(model(xt[i]), yt[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            val_loss = F.cross_entropy(model(xv), yv).item()
        if val_loss < best - 0.0005:
            best, waited = val_loss, 0
        else:
            waited += 1
            if waited >= 2:
                break
    with torch.no_grad():
        pred = [classes[i] for i in model(test).argmax(1)]
    solution = pd.read_csv(folder / "solution.csv", dtype=str)["Label"].to_numpy()
    return {"test_accuracy": float((pred == solution).mean()), "epochs": ran,
            "seconds": time.perf_counter() - start}  # fmt: skip


def kit_run(folder: Path, out: Path, extra: tuple[str, ...] = ()) -> dict:
    """`kit run mnist` with the recipe's defaults (and `extra` flags), as a user runs it, in its
    own process."""
    start = time.perf_counter()
    cmd = [sys.executable, "-m", "kit.cli", "run", "mnist", "--data", str(folder), "--out",
           str(out), *extra]  # fmt: skip
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    run_dir = max((out / "runs" / "mnist").iterdir())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {**metrics, "seconds": seconds, "peak_mib": peak_mib}


class TrainTimer(Callback):
    """Seconds and images of the training phase of each epoch (validation excluded)."""

    def before_train(self):
        self.start, self.images = time.perf_counter(), 0

    def after_batch(self):
        if self.training:
            self.images += len(self.yb[0])

    def after_train(self):
        self.speed = self.images / (time.perf_counter() - self.start)


def kit_loop(folder: Path) -> Callable[[], float]:
    """The kit's fastai loop with the recipe's defaults: a function that trains one epoch and
    returns its training images/s."""
    job = prepare("mnist", data=folder, device="cpu", valid_pct=0.01)
    valid = split(job.data.y, job.recipe.valid_pct, job.recipe.seed)[1]
    learn = build_learner(job.recipe, job.data, job.device, job.weights, folder, valid)
    timer = TrainTimer()

    def epoch() -> float:
        with learn.no_logging():
            learn.fit(1, 1e-3, cbs=[timer])
        return timer.speed

    return epoch


def bare_loop(folder: Path) -> Callable[[], float]:
    """A bare PyTorch loop over the same model, batch size and precision, on preloaded
    normalised tensors, no augmentation: a function that trains one epoch and returns its
    training images/s."""
    r = mnist.RECIPE
    data = mnist.load(folder, r)
    torch.manual_seed(0)
    model = create_model(r.arch, 10, 1).to(memory_format=torch.channels_last)
    mean, std = norm_stats(model, data.x)
    x = ((data.x.float() / 255 - mean[0]) / std[0]).contiguous(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    bf16 = resolve_precision(r.precision, torch.device("cpu")) == "bf16"
    n = int(len(x) * 0.99)  # the images the kit's loop trains on (1% validates)

    def epoch() -> float:
        model.train()
        start = time.perf_counter()
        for idx in torch.randperm(len(x))[:n].split(r.bs):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = F.cross_entropy(model(x[idx]).float(), data.y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        return n / (time.perf_counter() - start)

    return epoch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=42_000)
    parser.add_argument("--work", type=Path, default=Path(".bench"))
    parser.add_argument("--repeats", type=int, default=REPEATS, help="timed epochs per loop")
    parser.add_argument("--skip-accuracy", action="store_true", help="only the speed table")
    parser.add_argument("--quick", action="store_true", help="2,000 rows, 1 cycle, 2 repeats")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.repeats = 2_000, 2
    sample, folder = args.work / "sample", args.work / f"digits-{args.rows}-v2"
    if not sample.exists():
        sample.mkdir(parents=True)
        mnist.write_sample(sample)
    if not folder.exists():
        build_folder(sample, folder, args.rows)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.rows:,} rows")
    if not args.skip_accuracy:
        extra = ("--cycles", "1") if args.quick else ()
        accuracy_table(folder, args.work / "out", args.rows, extra)
    speed_table(folder, args.repeats)


def accuracy_table(folder: Path, out: Path, rows: int, extra: tuple[str, ...] = ()) -> None:
    held_out = len(pd.read_csv(folder / "solution.csv"))
    keras, kit = keras_baseline(folder), kit_run(folder, out, extra)
    rule = kit["lr_rule"].split(":")[0]  # "halfway rule", or "fixed by --lr X"
    print(
        f"\n| {rows:,}-row train.csv, 2 CPU cores | held-out accuracy ({held_out:,} digits) "
        "| epochs | wall time |\n|---|---|---|---|"
    )
    print(
        f"| seed's Keras CNN in PyTorch, early stopping | {keras['test_accuracy']:.4f} "
        f"| {keras['epochs']} | {keras['seconds']:.0f} s |"
    )
    print(
        f"| `kit run mnist`, defaults ({rule}: {kit['lr']:.1e}) | {kit['test_accuracy']:.4f} "
        f"| {kit['epochs']} | {kit['seconds']:.0f} s |"
    )
    print(f"\npeak memory of `kit run mnist` on {rows:,} rows: {kit['peak_mib']:.0f} MiB (max RSS)")


def speed_table(folder: Path, repeats: int) -> None:
    loops = {
        "bare PyTorch loop on preloaded tensors": bare_loop(folder),
        "kit: fastai Learner, batches from uint8, augmentation": kit_loop(folder),
    }
    for epoch in loops.values():
        epoch()  # warm-up, untimed: the first autocast, kernel and allocator set-up
    speeds = {name: [] for name in loops}
    for i in range(repeats):
        order = list(loops) if i % 2 == 0 else list(loops)[::-1]  # drift hits both alike
        for name in order:
            speeds[name].append(loops[name]())
    bare, kit = speeds.values()
    ratios = [k / b for k, b in zip(kit, bare)]  # each round's pair, timed side by side
    r = mnist.RECIPE
    print(
        f"\n| training loop, {r.arch}, batch {r.bs}, {r.precision}; median of {repeats} epochs "
        "(min-max) | images/s | ratio |\n|---|---|---|"
    )
    bare_row, kit_row = (
        f"{statistics.median(v):.0f} ({min(v):.0f}-{max(v):.0f})" for v in (bare, kit)
    )
    ratio = f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"
    bare_name, kit_name = loops
    print(f"| {bare_name} | {bare_row} | 1.00 |\n| {kit_name} | {kit_row} | {ratio} |")


if __name__ == "__main__":
    import pages  # the docs page: what this printed

    sys.exit(pages.run(main, "mnist"))

"""A from-scratch benchmark that does not saturate: 62 classes of printed characters.

The digits, capitals and small letters (0-9, A-Z, a-z) drawn from every typeface in
matplotlib's wheel that has all 62 (DejaVu Sans, Sans Mono and Serif, STIX and Computer Modern
in their weights and slants), each image a new draw: size, position, slant, rotation, stroke
weight, blur and noise, white on black at 28x28 like MNIST, in Kaggle's Digit Recognizer layout
(`train.csv` of label,pixel0..pixel783, `test.csv`, `sample_submission.csv`). Scaled to a
square, c/C, o/O/0, s/S, v/V, w/W, x/X, z/Z and l/I/1 differ little or not at all, so accuracy
sits well below 99% (0.90-0.95 after 7-15 epochs on 15,000-60,000 images): a schedule's length
shows in it.

The table weighs the schedule's length against the data's size: `kit new` reads the folder
(a from-scratch digitnet at 28 px, as the mnist recipe), and `kit run` trains it with the
recipe's 3 SGDR cycles (7 epochs) and with 2 (3 epochs) and 4 (15 epochs), at each training-set
size and seed, scored on held-out test images drawn the same way; the seed's Keras CNN
(benchmarks/mnist.py, 62 outputs) trained on the same rows is the anchor for time.

Run: `python -m benchmarks.glyphs [--sizes 15000 60000] [--seeds 2] [--work DIR]`. About 50
minutes on 2 CPU cores; it picks up where it stopped (results.jsonl).
"""

import argparse
import json
import string
import subprocess
import sys
import time
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from fontTools.ttLib import TTFont
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from benchmarks.lr import keep, read_rows

CHARS = string.digits + string.ascii_uppercase + string.ascii_lowercase
CYCLES = (2, 3, 4)  # SGDR cycles with everything trainable: 3, 7 and 15 epochs; 3 is the default
TEST = 10_000
# faces whose character map covers the 62 but draws other things: a placeholder box for every
# character (LastResort), and TeX's symbols and large delimiters (cmsy, cmex)
NOT_LETTERS = ("LastResort", "cmsy", "cmex")
# the mnist recipe's training settings over what `kit new` writes (which leaves them at the
# house defaults): bf16, batches of 128, 10% held out, shifts, black borders, no lighting
MNIST = ("--precision", "bf16", "--bs", "128", "--valid-pct", "0.1", "--shift", "0.1",
         "--pad-mode", "zeros", "--lighting", "0")  # fmt: skip


def fonts() -> list[Path]:
    """The typefaces matplotlib's wheel ships that draw all 62 characters."""
    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    found = []
    for path in sorted(folder.glob("*.ttf")):
        if path.name.startswith(NOT_LETTERS):
            continue
        cmap = TTFont(path, lazy=True).getBestCmap() or {}
        if all(ord(c) in cmap for c in CHARS):
            found.append(path)
    return found


def glyph(font: ImageFont.FreeTypeFont, char: str, rng: np.random.Generator) -> np.ndarray:
    """One 28x28 drawing of `char`: drawn large, thickened or thinned, slanted, rotated, scaled
    to a random height and put at a random place, then shrunk, blurred and given noise."""
    canvas = Image.new("L", (160, 160))
    ImageDraw.Draw(canvas).text((40, 20), char, fill=255, font=font)
    weight = rng.choice(
        [None, ImageFilter.MaxFilter(3), ImageFilter.MinFilter(3)], p=[0.6, 0.25, 0.15]
    )
    if weight is not None:
        canvas = canvas.filter(weight)
    shear = rng.uniform(-0.25, 0.25)
    canvas = canvas.transform(canvas.size, Image.AFFINE, (1, shear, -shear * 80, 0, 1, 0),
                              Image.BILINEAR)  # fmt: skip
    canvas = canvas.rotate(rng.uniform(-12, 12), Image.BILINEAR, center=(80, 80))
    box = canvas.getbbox()
    if box is None:
        return np.zeros((28, 28), np.uint8)
    ink = canvas.crop(box)
    height = rng.uniform(14, 24)  # pixels of the 28: every character drawn at any size
    scale = height / max(ink.size[1], ink.size[0] * 0.8)
    w, h = max(1, round(ink.size[0] * scale)), max(1, round(ink.size[1] * scale))
    ink = ink.resize((min(w, 28), min(h, 28)), Image.LANCZOS)
    out = Image.new("L", (28, 28))
    out.paste(ink, (int(rng.integers(0, 29 - ink.size[0])), int(rng.integers(0, 29 - ink.size[1]))))
    out = out.filter(ImageFilter.GaussianBlur(rng.uniform(0, 0.8)))
    pixels = np.asarray(out, np.float32) + rng.normal(0, rng.uniform(0, 20), (28, 28))
    return np.clip(pixels, 0, 255).astype(np.uint8)


def draw(n: int, rng: np.random.Generator, faces: list) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(0, len(CHARS), n)
    which = rng.integers(0, len(faces), n)
    pixels = np.stack([glyph(faces[f], CHARS[c], rng) for c, f in zip(labels, which)])
    return labels, pixels.reshape(n, -1)


def write_folder(dest: Path, n_train: int, seed: int = 0) -> None:
    """`n_train` training glyphs and TEST test glyphs in the Digit Recognizer layout; the test
    labels go to solution.csv."""
    rng = np.random.default_rng(seed)
    faces = [ImageFont.truetype(str(p), 64) for p in fonts()]
    dest.mkdir(parents=True)
    columns = [f"pixel{i}" for i in range(784)]
    labels, pixels = draw(n_train, rng, faces)
    train = pd.DataFrame(pixels, columns=columns)
    train.insert(0, "label", [CHARS[i] for i in labels])
    train.to_csv(dest / "train.csv", index=False)
    labels, pixels = draw(TEST, rng, faces)
    pd.DataFrame(pixels, columns=columns).to_csv(dest / "test.csv", index=False)
    ids = np.arange(1, TEST + 1)
    pd.DataFrame({"ImageId": ids, "Label": "A"}).to_csv(dest / "sample_submission.csv", index=False)
    truth = pd.DataFrame({"ImageId": ids, "Label": [CHARS[i] for i in labels]})
    truth.to_csv(dest / "solution.csv", index=False)


def accuracy(folder: Path, submission: Path) -> float:
    truth = pd.read_csv(folder / "solution.csv", dtype=str)["Label"]
    return float((pd.read_csv(submission, dtype=str)["Label"] == truth).mean())


def kit_run(work: Path, name: str, folder: Path, cycles: int, seed: int) -> dict:
    """`kit run NAME --cycles C --seed S` in its own process, as a user runs it."""
    start = time.perf_counter()
    cmd = [sys.executable, "-m", "kit.cli", "run", name, "--data", str(folder),
           "--cycles", str(cycles), "--seed", str(seed), *MNIST]  # fmt: skip
    subprocess.run(cmd, cwd=work, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    run_dir = max((work / "runs" / name).iterdir(), key=lambda p: p.stat().st_mtime)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    sub = max((work / "submissions" / name).glob("*.csv"), key=lambda p: p.stat().st_mtime)
    return {"score": accuracy(folder, sub), "epochs": metrics["epochs"], "lr": metrics["lr"],
            "seconds": round(seconds, 1)}  # fmt: skip


def measure(work: Path, sizes: list[int], seeds: int) -> list[dict]:
    """Every (size, training, seed) not yet in results.jsonl, appended as it finishes."""
    from benchmarks.mnist import keras_baseline

    path = work / "results.jsonl"
    rows = read_rows(path)
    have = {(d["rows"], d["training"], d["seed"]) for d in rows}
    for size in sizes:
        folder, home = work / f"glyphs-{size}", work / f"kit-{size}"
        if not folder.exists():
            write_folder(folder, size)
        if not (home / "competitions" / "glyphs.py").exists():
            home.mkdir(parents=True, exist_ok=True)
            kit = [
                sys.executable,
                "-m",
                "kit.cli",
                "new",
                "glyphs",
                "--data",
                str(folder),
                "--metric",
                "accuracy",
            ]
            subprocess.run(kit, cwd=home, check=True)
        for seed in range(1, seeds + 1):
            for training in ["keras", *(f"cycles {c}" for c in CYCLES)]:
                if (size, training, seed) in have:
                    continue
                row = {"rows": size, "training": training, "seed": seed}
                if training == "keras":
                    k = keras_baseline(folder, seed)
                    row |= {"score": k["test_accuracy"], "epochs": k["epochs"],
                            "seconds": round(k["seconds"], 1)}  # fmt: skip
                else:
                    row |= kit_run(home, "glyphs", folder, int(training.split()[1]), seed)
                rows.append(keep(path, row))
    return rows


def report(rows: list[dict]) -> None:
    df = pd.DataFrame(rows)
    print("\n| training rows | training | epochs | held-out accuracy, mean (min-max) "
          "| points from 3 cycles, seed by seed (mean) | seconds (mean) | time vs Keras CNN |"
          "\n|---|---|---|---|---|---|---|")  # fmt: skip
    for size, group in df.groupby("rows"):
        base = group[group["training"] == "cycles 3"].set_index("seed")["score"]
        keras_s = group[group["training"] == "keras"]["seconds"].mean()
        for training in ["keras", *(f"cycles {c}" for c in CYCLES)]:
            g = group[group["training"] == training]
            if g.empty:
                continue
            s = g.set_index("seed")["score"]
            diff = ((s - base.reindex(s.index)) * 100).round(2)
            points = (
                ""
                if training in ("cycles 3", "keras")
                else (" ".join(f"{d:+.2f}" for d in diff) + f" ({diff.mean():+.2f})")
            )
            name = (
                "seed's Keras CNN, early stopping"
                if training == "keras"
                else (
                    f"`kit run`, `--cycles {training.split()[1]}`"
                    + (" (the default)" if training == "cycles 3" else "")
                )
            )
            epochs = "-".join(str(e) for e in sorted({int(e) for e in g["epochs"]}))
            print(
                f"| {size:,} | {name} | {epochs} | {s.mean():.4f} ({s.min():.4f}-{s.max():.4f}) "
                f"| {points} | {g['seconds'].mean():.0f} | {g['seconds'].mean() / keras_s:.2f}x |"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path(".bench/glyphs"))
    parser.add_argument("--sizes", type=int, nargs="+", default=[15_000, 60_000])
    parser.add_argument("--seeds", type=int, default=2)
    args = parser.parse_args()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    report(measure(work, args.sizes, args.seeds))


if __name__ == "__main__":
    from benchmarks import pages  # the docs page: what this printed

    sys.exit(pages.run(main, "glyphs"))

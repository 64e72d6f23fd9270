"""Score at equal time: the kit given exactly its peer's wall time, and the default run's time.

On each set the peer runs first, in its own process, timed whole (imports included, as a
notebook's run is): on the transfer sets plain fastai as a competitor writes it
(`vision_learner` with the same packaged EfficientNet-Lite0 ImageNet weights, `lr_find`'s
valley, `fine_tune(3)`: 1 frozen epoch and 3 unfrozen, `tta`), on the from-scratch digits the
seed's Keras CNN (benchmarks/mnist.py: Adam, batch 128, early stopping). Then `kit run` with
the recipe's defaults (its time against the peer's), then `kit run --time-limit` set to the
peer's minutes, each in its own process too. Every run is scored on held-out test labels that
no run saw.

The sets, all made from what installed wheels ship:
- photos 400x300 JPEG: the invasive recipe's bundled sample generator (120 training photos, 48
  test) at the sample's 128 px;
- transfer 64 px JPEG and PNG: the invasive layout, 3,000 training and 1,000 test photos of
  85x64 (benchmarks/photo_sets.py), the same photos in both formats;
- breeds 64 px PNG: the dog-breed layout, 9 classes, 2,700 training and 900 test photos
  (benchmarks/photo_sets.py), read through `kit new` (log loss);
- seedlings 32 px PNG: benchmarks/layouts.py's Plant Seedlings folder of real digit scans, read
  through `kit new` (micro F1); its peer is that benchmark's plain fastai (`fine_tune(5)`);
- digits 28 px, from scratch: benchmarks/mnist.py's 42,000-row train.csv of augmented copies of
  the sample's training digits, tested on copies of its 360 held-out digits.

Run: `python -m benchmarks.equal_time [--work DIR] [--sets NAME,...]` from the repository root,
on a quiet machine: about 45 minutes on 2 CPU cores. `--quick` (a tenth of the photos, 4,000
digit rows) checks the script in about 10 minutes; its numbers mean nothing. Results are kept
in DIR/results.jsonl: a run that was cut off goes on where it stopped.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from sklearn.metrics import f1_score, log_loss, roc_auc_score

from benchmarks import layouts, mnist, pages
from benchmarks.invasive import plain_fastai, timm_checkpoint
from benchmarks.photo_sets import write_breeds, write_transfer
from competitions import invasive
from competitions import mnist as digits

ARCH = "tf_efficientnet_lite0"  # the packaged ImageNet weights, for both sides
FASTAI_EPOCHS = 3  # fine_tune(3): fastai's own freeze_epochs=1 first, 4 epochs in all


def sets(work: Path, quick: bool) -> dict:
    """name: (its folder, the kit's recipe and flags, its metric); made on first use."""
    n, rows = (300, 4000) if quick else (3000, 42_000)
    return {
        "photos 400x300 JPEG": (work / "sample", ("invasive", "--size", "128"), "auc"),
        "transfer 64 px JPEG": (work / f"transfer-{n}", ("invasive", "--size", "64"), "auc"),
        "transfer 64 px PNG": (work / f"transfer-{n}-png",
                               ("invasive", "--size", "64", "--ext", ".png"), "auc"),
        "breeds 64 px PNG": (work / f"breeds-{n}", ("breeds", "--size", "64"), "logloss"),
        "seedlings 32 px PNG": (work / "seedlings", ("seedlings",), "f1"),
        "digits 28 px from scratch": (work / f"digits-{rows}", ("mnist",), "accuracy"),
    }  # fmt: skip


def make(name: str, folder: Path, quick: bool) -> None:
    """The set's folder, as the module's docstring says."""
    n = 300 if quick else 3000
    if name.startswith("photos"):
        folder.mkdir(parents=True)
        invasive.write_sample(folder)
    elif name.startswith("transfer"):
        write_transfer(folder, n, n // 3, 64, ext=".png" if "PNG" in name else ".jpg")
    elif name.startswith("breeds"):
        write_breeds(folder, n * 9 // 10, n * 3 // 10, 64)
    elif name.startswith("seedlings"):
        layouts.write_folder(folder)
    else:
        sample = folder.parent / "digits-sample"

        def write_sample(partial: Path) -> None:
            partial.mkdir(parents=True)
            digits.write_sample(partial)  # the sample writer lives with the recipe

        made(sample, write_sample)
        mnist.build_folder(sample, folder, int(folder.name.split("-")[1].split(".")[0]))


def sets_to_make(work: Path, quick: bool = False) -> dict:
    """name: (its folder, the kit's recipe and flags, its metric, how to make it)."""
    return {name: (*spec, lambda folder, name=name: make(name, folder, quick))
            for name, spec in sets(work, quick).items()}  # fmt: skip


def made(folder: Path, write: Callable[[Path], None]) -> None:
    """`folder` as `write` makes it, unless it exists: made whole under another name, then
    renamed, so that a set cut off while made is made again, never taken for whole."""
    if folder.exists():
        return
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    write(partial)
    partial.rename(folder)


def score(metric: str, folder: Path, sub: pd.DataFrame) -> float:
    """The submission's test score against solution.csv, in the metric's own terms."""
    truth = pd.read_csv(folder / "solution.csv", dtype={0: str})
    sub = sub.astype({sub.columns[0]: str}).set_index(sub.columns[0])
    truth = truth.set_index(truth.columns[0]).loc[sub.index]
    if metric == "auc":
        return float(roc_auc_score(truth["invasive"], sub["invasive"]))
    if metric == "logloss":
        return float(log_loss(truth["breed"], sub[sorted(sub.columns)], labels=sorted(sub.columns)))
    if metric == "f1":
        return float(f1_score(truth["species"], sub["species"], average="micro"))
    return float((truth["Label"].astype(str) == sub["Label"].astype(str)).mean())


def peer(name: str, folder: Path, work: Path) -> dict:
    """The peer's run on one set, in this process: its test score and what it chose."""
    import fastprogress.fastprogress as fastprogress

    fastprogress.NO_BAR = True  # the notebook's bars would flood the log
    weights = timm_checkpoint(ARCH, work)
    if name.startswith(("photos", "transfer")):
        size = 128 if name.startswith("photos") else 64
        ext = ".png" if "PNG" in name else ".jpg"
        got = plain_fastai(folder, size, FASTAI_EPOCHS, 1, weights, ext)
        return {"score": got["test_auc"], "lr": got["lr"]}
    if name.startswith("breeds"):
        return fastai_breeds(folder, weights)
    if name.startswith("seedlings"):
        got = layouts.plain_fastai(folder, weights)
        return {"score": got["f1"], "lr": got["lr"]}
    got = mnist.keras_baseline(folder)
    return {"score": got["test_accuracy"], "epochs": got["epochs"]}


def fastai_breeds(folder: Path, weights: Path) -> dict:
    """Plain fastai on the dog-breed layout: from_df, vision_learner, lr_find, fine_tune, tta."""
    from fastai.vision.all import ImageDataLoaders, Resize, accuracy, aug_transforms, vision_learner

    df = pd.read_csv(folder / "labels.csv")
    dls = ImageDataLoaders.from_df(
        df, folder, folder="train", suff=".png", label_col="breed", valid_pct=0.2, seed=42,
        bs=64, item_tfms=Resize(64), batch_tfms=aug_transforms(size=64),
    )  # fmt: skip
    learn = vision_learner(dls, ARCH, pretrained=True, metrics=accuracy,
                           pretrained_cfg_overlay=dict(file=str(weights)))  # fmt: skip
    lr = learn.lr_find(show_plot=False).valley
    learn.fine_tune(FASTAI_EPOCHS, lr)
    sample = pd.read_csv(folder / "sample_submission.csv")
    probs, _ = learn.tta(dl=dls.test_dl([folder / "test" / f"{i}.png" for i in sample["id"]]))
    sub = pd.DataFrame(probs.numpy(), columns=list(dls.vocab)).assign(id=sample["id"])
    return {"score": score("logloss", folder, sub[["id", *dls.vocab]]), "lr": lr}


def timed(cmd: list[str], cwd: Path) -> tuple[float, str]:
    """Seconds the command took, and its output's last line (its error's, after "! ")."""
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        return seconds, "! " + (done.stderr.strip().splitlines() or ["failed"])[-1]
    return seconds, (done.stdout.strip().splitlines() or [""])[-1]


def kit_run(folder: Path, how: tuple, metric: str, out: Path, limit_s: float = 0.0) -> dict:
    """`kit run` as a user runs it (for a `kit new` recipe, `kit new` first), scored here."""
    recipe, *flags = how
    kit = [sys.executable, "-m", "kit.cli"]
    cwd = out.parent / f"{recipe}-recipe"
    if recipe not in ("invasive", "mnist") and not (cwd / "competitions").exists():
        cwd.mkdir(parents=True, exist_ok=True)
        given = {"f1": "f1_micro"}.get(metric, metric)  # a folder name says no Kaggle slug
        subprocess.run([*kit, "new", recipe, "--data", str(folder), "--metric", given], cwd=cwd,
                       check=True)  # fmt: skip
    flags += ["--time-limit", f"{limit_s / 60:.3f}"] if limit_s else []
    seconds, last = timed([*kit, "run", recipe, "--data", str(folder), "--out", str(out),
                           *flags], cwd.resolve() if cwd.exists() else Path.cwd())  # fmt: skip
    if last.startswith("!"):
        return {"seconds": seconds, "score": None, "error": last[2:]}
    (sub,) = (out / "submissions" / recipe).glob("*.csv")
    (run_dir,) = (out / "runs" / recipe).iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {
        "seconds": seconds,
        "score": score(metric, folder, pd.read_csv(sub)),
        "epochs": metrics.get("epochs"),
        "lr": metrics.get("lr"),
    }


def measure(work: Path, names: list[str], quick: bool) -> list[dict]:
    """Peer, kit default, kit at the peer's time, on every set; kept as they finish."""
    from benchmarks.lr import keep, read_rows

    path = work / "results.jsonl"
    rows = read_rows(path)
    have = {(r["set"], r["run"]) for r in rows}
    for name in names:
        folder, how, metric, write = sets_to_make(work, quick)[name]
        made(folder, write)
        if (name, "peer") not in have:
            cmd = [sys.executable, "-m", "benchmarks.equal_time", "--peer", name, "--work",
                   str(work)] + ["--quick"] * quick  # fmt: skip
            seconds, last = timed(cmd, Path.cwd())
            rows.append(keep(path, {"set": name, "run": "peer", "seconds": seconds,
                                    **json.loads(last)}))  # fmt: skip
        peer_s = next(r["seconds"] for r in rows if (r["set"], r["run"]) == (name, "peer"))
        for run, limit in (("default", 0.0), ("equal time", peer_s)):
            if (name, run) not in have:
                out = work / "out" / f"{name.replace(' ', '_')}-{run.replace(' ', '_')}"
                got = kit_run(folder, how, metric, out, limit)
                rows.append(keep(path, {"set": name, "run": run, **got}))
    return rows


def report(rows: list[dict], names: list[str]) -> None:
    def cell(r):
        if r.get("score") is None:
            return f"refused: {r.get('error', '')[:60]}", f"{r['seconds']:.0f} s"
        return f"{r['score']:.4f}", f"{r['seconds']:.0f} s"

    print("\n| set | peer | peer's score | peer's time | kit, defaults | time | vs peer "
          "| kit at the peer's time | time |\n|---|---|---|---|---|---|---|---|---|")  # fmt: skip
    for name in names:
        got = {r["run"]: r for r in rows if r["set"] == name}
        if len(got) < 3:
            continue
        p, d, e = got["peer"], got["default"], got["equal time"]
        who = "Keras CNN" if name.startswith("digits") else "plain fastai"
        metric = sets(Path(), False)[name][2]
        print(f"| {name} ({metric}) | {who} | {cell(p)[0]} | {cell(p)[1]} | {cell(d)[0]} | "
              f"{cell(d)[1]} | {d['seconds'] / p['seconds']:.2f}x | {cell(e)[0]} | "
              f"{cell(e)[1]} |")  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, default=Path(".bench/equal-time"))
    p.add_argument("--sets", help="comma-separated set names (default: all)")
    p.add_argument("--quick", action="store_true", help="small sets: checks the script works")
    p.add_argument("--peer", help=argparse.SUPPRESS)  # one peer run, in its own process
    args = p.parse_args()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("KIT_CACHE", str(work / "cache"))
    if args.peer:
        print(json.dumps(peer(args.peer, sets(work, args.quick)[args.peer][0], work)))
        return
    names = args.sets.split(",") if args.sets else list(sets(work, args.quick))
    # every set this work folder holds whole, in the module's order: one pass, run in parts
    report(measure(work, names, args.quick), list(sets(work, args.quick)))


if __name__ == "__main__":
    sys.exit(main() if "--peer" in sys.argv else pages.run(main, "equal_time"))

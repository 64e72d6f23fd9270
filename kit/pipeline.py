"""`kit run` as a short list of named steps, callable from the CLI or a notebook."""

import dataclasses
import platform
import shutil
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import torch
from fastai.torch_core import set_seed
from fastcore.imports import IN_NOTEBOOK

from kit import distributed
from kit.augment import tta_views
from kit.budget import Clock, check_up_front, fitted
from kit.data import Data, dataloaders, test_loader
from kit.errors import KitError
from kit.folds import FOLDS_CSV, assign_folds, read_folds
from kit.interpret import interpret
from kit.layouts import load as read_layout
from kit.layouts import make_submission, submission_shape
from kit.lr import describe, resolve
from kit.metrics import at_least_as_good, best, calibrate, score, temperature
from kit.models import check_arch, create_model, timm_body
from kit.paths import (
    building,
    data_dir,
    discard_run_dir,
    finish_run_dir,
    in_kaggle_notebook,
    new_run_dir,
    output_root,
    replacing,
)
from kit.recipe import Recipe, load_competition, override, recipe_fields
from kit.records import read_json, write_json
from kit.report import write_report
from kit.submission import check_submission, read_sample, write_new
from kit.train import (
    average_weights,
    find_lr,
    fine_tune_sgdr,
    make_learner,
    predict,
    resolve_device,
    resolve_precision,
    snapshot_paths,
    update_bn,
)
from kit.weights import pretrained_model, resolve_weights


def write_sample(name: str, dest: str | Path) -> Path:
    """Write the recipe's bundled sample, in the competition's layout, into a new folder."""
    dest, comp = Path(dest), load_competition(name)
    if not hasattr(comp, "write_sample"):
        raise KitError(f"recipe {name} has no bundled sample; give its data with --data")
    if dest.exists() and any(dest.iterdir()):
        raise KitError(f"{dest} is not empty; give a new folder for the sample")
    with building(dest) as partial:
        comp.write_sample(partial)
    return dest


@dataclass
class Job:
    """Everything resolved before training starts."""

    comp: ModuleType  # the competitions/<name>.py module
    recipe: Recipe
    root: Path  # where runs/ and submissions/ go
    folder: Path  # the competition data
    data: Data
    device: torch.device
    weights: Path | None  # the checkpoint for a pretrained recipe (None: timm's download)
    fold: np.ndarray  # each training item's fold; a single split validates on fold 0
    started: float  # time.monotonic() when the run began: --time-limit counts from here
    clock: Clock | None = None  # the time limit, once the run has a folder to keep its plan in


def prepare(
    name,
    data=None,
    sample=False,
    out=None,
    device="auto",
    weights=None,
    folds_csv=None,
    **overrides,
):
    """Resolve the recipe, folders, device and weights, read the data and its folds (from
    `folds_csv` when given): everything that can fail on bad input happens here, before any
    output is created."""
    started = time.monotonic()
    comp = load_competition(name)
    given = {k: v for k, v in overrides.items() if v is not None}
    r = override(comp.RECIPE, **(getattr(comp, "SAMPLE", {}) if sample else {}) | given)
    check_arch(r.arch)
    weights = resolve_weights(r.arch, weights) if r.pretrained else None
    dev = distributed.setup(resolve_device(device), r.folds)
    root = output_root(out)
    with distributed.main_first():  # one process writes the sample (and any image cache)
        if sample:
            folder = root / "data" / f"{name}-sample"
            if not folder.exists():
                write_sample(name, folder)
        else:
            folder = data_dir(name, r.slug, data, getattr(comp, "DATA", None))
        d = getattr(comp, "load", read_layout)(folder, r)  # a recipe may wrap the reader
    fold = read_folds(folds_csv, d.names, r.folds) if folds_csv else assign_folds(d, r, folder)
    return Job(comp, r, root, folder, d, dev, weights, fold, started)


def norm_stats(model: torch.nn.Module, x: torch.Tensor) -> tuple[list, list]:
    """The pretrained network's normalisation if it has one, else the training data's own."""
    cfg = getattr(timm_body(model), "pretrained_cfg", None)
    if cfg and "mean" in cfg and len(cfg["mean"]) == x.shape[1]:
        return list(cfg["mean"]), list(cfg["std"])
    sample = x[:: max(1, len(x) // 5000)].float() / 255
    return sample.mean((0, 2, 3)).tolist(), sample.std((0, 2, 3)).clamp(min=1e-3).tolist()


def build_learner(job: Job, path: Path, valid_idx: np.ndarray):
    """Model, data loaders (the items at `valid_idx` for validation) and Learner, seeded."""
    r, data = job.recipe, job.data
    set_seed(r.seed, reproducible=True)
    n, chans = len(data.classes), data.x.shape[1]
    if r.pretrained:
        model = pretrained_model(r.arch, n, chans, job.weights)
    else:
        model = create_model(r.arch, n, chans, size=r.size)
    dls = dataloaders(data, r, norm_stats(model, data.x), job.device, valid_idx)
    learn = make_learner(model, dls, r, path, resolve_precision(r.precision, job.device))
    return distributed.attach(learn, r.sync_bn)


def lr_find(name: str, show=None, **options) -> float:
    """Run only the learning-rate finder (body frozen when the recipe trains a head first).

    Takes `run`'s options."""
    job = prepare(name, **options)
    r = job.recipe
    folder = job.root / "runs" / name / "lr-find"
    folder.mkdir(parents=True, exist_ok=True)
    learn = build_learner(job, folder, np.flatnonzero(job.fold == 0))
    learn.create_opt()
    if r.head_cycles:
        learn.freeze()
    png = folder / f"{datetime.now():%Y%m%d-%H%M%S}-{r.arch}.png"
    return find_lr(
        learn, png, resolve(r.lr_rule, r.pretrained), IN_NOTEBOOK if show is None else show
    )


def run(name: str, show=None, resume: str | None = None, nproc=None, torchrun="", **options):
    """Train `name`'s recipe and write its run folder and a checked submission.

    Options: `data=PATH`, `sample=True`, `out=DIR`, `device=`, `weights=FILE`, and any recipe
    field (`arch=`, `cycles=`, `folds=`, `lr=`...); `resume=RUN_ID` continues an interrupted
    run instead; `nproc=N|"auto"` trains in N processes started by torchrun (`torchrun=` its
    own options, e.g. "--nnodes 2 ..."). Returns the metrics and the paths written.
    """
    if nproc is not None and not distributed.in_worker():
        n = distributed.resolve_nproc(
            nproc, options.get("device") or "auto", options.get("sync_bn")
        )
        if n > 1:
            root = output_root(options.get("out"))
            show = IN_NOTEBOOK if show is None else show
            return distributed.launch(name, n, root, options, resume, torchrun, show)
    if resume:
        return resume_run(name, resume, show, **options)
    job = prepare(name, **options)
    run_id, partial = distributed.share(lambda: start_run(job, name))
    return finish(job, name, run_id, partial, show)


def start_run(job: Job, name: str) -> tuple[str, Path]:
    """A new partial run folder holding what the run was asked to do."""
    run_id, partial = new_run_dir(job.root, name, job.recipe.arch)
    write_json(partial / "recipe.json", dataclasses.asdict(job.recipe))
    write_json(partial / "job.json", {"data": str(job.folder.resolve()), "weights": job.weights})
    pd.DataFrame({"item": job.data.names, "fold": job.fold}).to_csv(
        partial / FOLDS_CSV, index=False
    )
    return run_id, partial


def resume_run(name: str, run_id: str, show=None, out=None, device="auto", **options) -> dict:
    """Continue the interrupted run `run_id` with its own recipe and data, from its last
    checkpoint; folds already trained are not trained again."""
    given = sorted(k for k, v in options.items() if v not in (None, False))
    if given:
        raise KitError(f"--resume continues a run with its own recipe and data; drop "
                       f"--{given[0].replace('_', '-')}")  # fmt: skip
    runs = output_root(out) / "runs" / name
    partial = runs / f".{run_id}.partial"
    if (runs / run_id).is_dir():
        raise KitError(f"run {run_id} has finished; nothing to resume (`kit runs {name}`)")
    if not (partial / "job.json").is_file():
        waiting = sorted(p.name[1:-8] for p in runs.glob(".*.partial")) if runs.is_dir() else []
        hint = f"; runs that can be resumed: {', '.join(waiting)}" if waiting else ""
        raise KitError(f"no interrupted run {run_id!r} in {runs}{hint}")
    saved = read_json(partial / "job.json")
    recipe = {
        f.name: v
        for f in recipe_fields()
        if (v := read_json(partial / "recipe.json").get(f.name)) is not None
    }
    recipe.setdefault("fold_seed", recipe.get("seed"))  # a run from before folds had a seed
    folds_csv = partial / FOLDS_CSV  # the very folds it started with (a single split: fold 0)
    job = prepare(
        name,
        data=saved["data"],
        out=out,
        device=device,
        weights=saved["weights"],
        folds_csv=folds_csv if folds_csv.is_file() else None,
        **recipe,
    )
    print(f"resuming run {run_id}")
    return finish(job, name, run_id, partial, show)


def finish(job: Job, name: str, run_id: str, partial: Path, show) -> dict:
    """Train (or carry on training) in the partial run folder, then give it its name."""
    r, d, root = job.recipe, job.data, job.root
    show = IN_NOTEBOOK if show is None else show
    sample_df = read_sample(job.folder)
    if sample_df is None:
        print("warning: no sample_submission.csv; ids and order come from the test folder")
    print(f"run {run_id}: {len(d.x)} training images, {len(d.test_x)} test images, "
          f"on {job.device}")  # fmt: skip
    if r.time_limit:
        job.clock = Clock(r.time_limit, job.started, partial / "budget.json", len(d.test_x))
    try:
        with distributed.workspace(partial) as work:
            metrics = train_and_predict(job, work, sample_df, show)
        if not distributed.is_main():
            return metrics
        write_report(partial, run_id)
        final = finish_run_dir(partial, run_id)
    except BaseException:
        if not distributed.is_main():
            raise
        if any(partial.rglob("checkpoint.pth")) or any(partial.rglob("preds.npz")):
            print(f"run {run_id} stopped; continue it with `kit run {name} --resume {run_id}`",
                  file=sys.stderr)  # fmt: skip
        else:
            discard_run_dir(partial)
        raise
    submission = publish(root, name, final)
    report(job.recipe, metrics, final, submission)  # the schedule a time limit kept
    return {**metrics, "run_dir": str(final), "submission": str(submission)}


def publish(root: Path, name: str, run_dir: Path) -> Path:
    """Copy a finished run's submission to submissions/<name>/<run-id>.csv (never over a file),
    and in a Kaggle notebook to submission.csv, the file Kaggle scores."""
    dest = root / "submissions" / name / f"{run_dir.name}.csv"
    submission = write_new((run_dir / "submission.csv").read_text(), dest)
    if in_kaggle_notebook():
        shutil.copyfile(submission, root / "submission.csv")
    return submission


def train_unit(job: Job, folder: Path, valid_idx: np.ndarray, show) -> dict:
    """Train one model with `valid_idx` held out; its predictions, rates and history.

    Checkpoints every epoch; a unit that finished (preds.npz) is read back, not retrained."""
    done = folder / "preds.npz"
    if done.exists():
        return {**dict(np.load(done)), **read_json(folder / "unit.json")}
    folder.mkdir(exist_ok=True)
    learn = build_learner(job, folder, valid_idx)
    ckpt = folder / "checkpoint.pth"
    saved = torch.load(ckpt, weights_only=False) if ckpt.exists() else None
    if job.clock and job.clock.plan is None and saved is None:
        check_up_front(learn, job.recipe, job.clock)  # before any training
    rates, history = fine_tune_sgdr(learn, job.recipe, folder, show, saved, job.clock)
    if job.clock:  # the schedule the time limit kept (TTA included) is the recipe from here on
        job.recipe = fitted(job.recipe, job.clock.plan)
    unit = {"rates": rates, "history": history, "process": distributed.rank()}
    if job.recipe.snapshots:
        preds, unit["averaging"] = weight_averaging(learn, job, folder, valid_idx)
    else:
        preds = predictions(learn, job.data, job.recipe)
    write_json(folder / "unit.json", unit)
    with replacing(done) as tmp:
        np.savez(tmp, **preds)
    ckpt.unlink(missing_ok=True)
    return {**preds, **unit}


def weight_averaging(learn, job: Job, folder: Path, valid_idx: np.ndarray) -> tuple[dict, dict]:
    """Predictions of the last snapshot, of all snapshots averaged (snapshot ensembling) and
    of their averaged weights (SWA, batch-norm statistics recomputed); the one that scores best
    on validation is kept, and all three scores are reported."""
    r, y = job.recipe, job.data.y[valid_idx].numpy()
    states = [torch.load(path, map_location="cpu") for path in snapshot_paths(folder)]
    snaps = []
    for state in states:
        learn.model.load_state_dict(state)
        snaps.append(predictions(learn, job.data, r))
    learn.model.load_state_dict(average_weights(states))
    update_bn(learn)
    candidates = {
        "last": snaps[-1],
        "snapshots": {k: np.mean([p[k] for p in snaps], axis=0) for k in snaps[0]},
        "swa": predictions(learn, job.data, r),
    }
    scores = {}
    for name, p in candidates.items():
        kinds = {k: score(r.metric, y, p[k]) for k in p if k.startswith("valid")}
        scores[name] = kinds[best(r.metric, kinds)]
    chosen = best(r.metric, scores)  # ties go to the first: last, then snapshots
    print("  ".join(f"{k} {v:.4f}" for k, v in scores.items()) + f": keeping {chosen}")
    return candidates[chosen], {**scores, "chosen": chosen}


def train_and_predict(job: Job, run_dir: Path, sample_df, show) -> dict:
    """Every step that writes into the (still partial) run folder; returns the metrics."""
    r, d = job.recipe, job.data
    m, y = r.metric, d.y.numpy()
    main = distributed.is_main()
    if main:
        write_json(run_dir / "versions.json", versions(job.device))
    fold = job.fold
    if r.folds:
        units = [(run_dir / f"fold{k}", np.flatnonzero(fold == k)) for k in range(r.folds)]
    else:
        units = [(run_dir, np.flatnonzero(fold == 0))]
    for k in distributed.my_units(len(units)):  # all, or this process's folds
        if r.folds:
            print(f"fold {k + 1}/{r.folds}: {len(units[k][1])} held out")
        train_unit(job, *units[k], show)
    distributed.barrier()
    if not main:
        return {}
    results = [train_unit(job, folder, v, show) for folder, v in units]  # read back, not retrained
    r = job.recipe = fitted(job.recipe, job.clock.plan) if job.clock else job.recipe

    idx = np.concatenate([v for _, v in units])
    kinds = ["", "_tta"] if r.tta else [""]
    preds = {}
    for kind in kinds:  # out-of-fold (or validation) predictions, and test averaged over folds
        preds[f"valid{kind}"] = np.concatenate([u[f"valid{kind}"] for u in results])
        preds[f"test{kind}"] = np.mean([u[f"test{kind}"] for u in results], axis=0)
    scores = {f"valid{kind}_{m}": score(m, y[idx], preds[f"valid{kind}"]) for kind in kinds}
    if r.folds:
        for kind in kinds:
            per_fold = [score(m, y[v], u[f"valid{kind}"]) for (_, v), u in zip(units, results)]
            scores[f"folds{kind}_{m}"] = per_fold
            scores[f"folds{kind}_{m}_std"] = float(np.std(per_fold))
    tta_wins = r.tta and at_least_as_good(m, scores[f"valid_tta_{m}"], scores[f"valid_{m}"])
    suffix = "_tta" if tta_wins else ""
    test_probs = preds[f"test{suffix}"]
    if m == "logloss":  # Kaggle punishes overconfidence: calibrate, if that helps out of sample
        groups = fold[idx] if r.folds else np.arange(len(idx)) % 2
        scores |= temperature_scaling(y[idx], preds[f"valid{suffix}"], groups)
        if scores["calibrated"]:
            test_probs = calibrate(test_probs, scores["temperature"])
    if d.test_y is not None:
        scores[f"test_{m}"] = score(m, d.test_y.numpy(), test_probs)

    names = [d.names[i] for i in idx]
    history = [
        {**({"fold": k} if r.folds else {}), **h}
        for k, u in enumerate(results)
        for h in u["history"]
    ]
    pd.DataFrame(history).to_csv(run_dir / "history.csv", index_label="epoch")
    extra = {"fold": fold[idx]} if r.folds else {}
    write_probs(
        run_dir / ("oof.csv" if r.folds else "valid_preds.csv"),
        "item",
        names,
        d.classes,
        preds,
        "valid",
        y[idx],
        extra,
    )
    write_probs(run_dir / "test_preds.csv", "id", d.test_ids, d.classes, preds, "test")
    interpret(run_dir, d.x[idx], names, y[idx], preds[f"valid{suffix}"], d.classes, show)

    sub = make_submission(r, sample_df, d.test_ids, test_probs, d.classes)
    labels = d.classes if submission_shape(r, sample_df, d.classes) == "label" else None
    check_submission(sub, sample_df, d.test_ids, labels)
    write_new(sub.to_csv(index=False), run_dir / "submission.csv")
    metrics = {
        **scores,
        **(results[0]["rates"] if not r.folds else {}),
        "lr_rule": describe(r.lr, resolve(r.lr_rule, r.pretrained)),
        **({"averaging": [u["averaging"] for u in results]} if r.snapshots else {}),
        "folds": r.folds,
        "processes": distributed.world(),
        "epochs": len(history),
        **({"budget": job.clock.plan} if job.clock else {}),
        "seconds": round(time.monotonic() - job.started, 1),
        "submitted": "tta" if suffix else "plain",
        "skipped_train_images": d.skipped,
        "weights": str(job.weights) if job.weights else None,
        "data": str(job.folder.resolve()),  # whose sample_submission.csv `kit submit` checks
        "classes": d.classes,
    }
    write_json(run_dir / "metrics.json", metrics)
    return metrics


def temperature_scaling(y: np.ndarray, probs: np.ndarray, groups: np.ndarray) -> dict:
    """Log loss before and after temperature scaling, each group's predictions scaled by a
    temperature fitted on the other groups (folds, or halves of the validation set), so the
    "after" is out of sample; the temperature for the test set is fitted on all of them."""
    after = np.empty_like(probs, dtype=np.float64)
    for g in np.unique(groups):
        held = groups == g
        after[held] = calibrate(probs[held], temperature(y[~held], probs[~held]))
    before, after = score("logloss", y, probs), score("logloss", y, after)
    t = temperature(y, probs)
    print(f"temperature scaling (T={t:.2f}): log loss {before:.4f} -> {after:.4f} out of sample"
          f"{'' if after < before else '; not applied'}")  # fmt: skip
    return {"temperature": t, "logloss_before_calibration": before,
            "logloss_after_calibration": after, "calibrated": bool(after < before)}  # fmt: skip


def predictions(learn, d: Data, r: Recipe) -> dict:
    """Validation and test probabilities, plain and, if the recipe asks, with TTA."""
    loaders = {"valid": learn.dls.valid, "test": test_loader(d, learn.dls.valid)}
    preds = {split: predict(learn, dl) for split, dl in loaders.items()}
    if r.tta:
        preds |= {f"{split}_tta": predict(learn, dl, tta_views(r)) for split, dl in loaders.items()}
    return preds


def write_probs(
    path: Path,
    key: str,
    ids: list,
    classes: list,
    preds: dict,
    split: str,
    y: np.ndarray | None = None,
    extra: dict | None = None,
) -> None:
    """Per-item class probabilities, plain and with TTA, as CSV."""
    df = pd.DataFrame({key: ids, **(extra or {})})
    if y is not None:
        df["label"] = [classes[i] for i in y]
    for kind, probs in preds.items():
        if kind.startswith(split):
            suffix = "_tta" if kind.endswith("tta") else ""
            for c, label in enumerate(classes):
                df[f"p_{label}{suffix}"] = probs[:, c]
    df.to_csv(path, index=False)


def versions(device: torch.device) -> dict:
    import fastai
    import sklearn
    import timm

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "fastai": fastai.__version__,
        "timm": timm.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "scikit-learn": sklearn.__version__,
        "platform": platform.platform(),
        "device": str(device),
        "gpu": torch.cuda.get_device_name() if device.type == "cuda" else None,
    }


def report(r: Recipe, metrics: dict, run_dir: Path, submission: Path) -> None:
    m = r.metric
    line = f"{'out-of-fold' if r.folds else 'valid'} {m} {metrics[f'valid_{m}']:.4f}"
    if r.tta:
        line += f"  with TTA {metrics[f'valid_tta_{m}']:.4f}"
    if f"test_{m}" in metrics:
        line += f"  test {m} {metrics[f'test_{m}']:.4f} (held-out sample labels)"
    print(line)
    if r.folds:
        kind = "_tta" if metrics["submitted"] == "tta" else ""
        per_fold = ", ".join(f"{v:.4f}" for v in metrics[f"folds{kind}_{m}"])
        print(f"per fold: {per_fold} (std {metrics[f'folds{kind}_{m}_std']:.4f})")
    print(f"run folder: {run_dir}\nsubmission: {submission}")

"""`kit run` as a short list of named steps, callable from the CLI or a notebook.

prepare            the recipe, data, folds, device and weights: every check on the input
start_run          a partial run folder holding what the run was asked to do
train_model        one model per fold (or one), each in its own folder (kit/train/)
combine            out-of-fold (or validation) predictions, test predictions averaged
score_run          the metric, plain and with TTA, per fold; calibration for log loss, per-tag
                   thresholds for a multi-label F-beta
write_predictions  history.csv and the prediction CSVs
interpret          the interpretation plots (kit/evaluate/)
checked_submission the submission, checked against sample_submission.csv (kit/data/)
write_report       report.html, then the folder takes its name and the submission is
                   published to submissions/<name>/
"""

import dataclasses
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import torch
from fastcore.imports import IN_NOTEBOOK

from kit import distill, pseudo
from kit.data.folds import FOLDS_CSV, assign_folds, read_folds
from kit.data.layouts import Data
from kit.data.layouts import load as read_layout
from kit.data.sample import write_sample
from kit.data.submission import checked_submission, read_sample
from kit.evaluate.calibration import temperature_scaling
from kit.evaluate.interpret import interpret
from kit.evaluate.metrics import MULTI_LABEL, at_least_as_good, score
from kit.evaluate.predictions import Predictions, averaged, concatenated, scores, table
from kit.evaluate.thresholds import threshold_tuning
from kit.files import write_json, write_new
from kit.paths import data_dir, output_root
from kit.recipe import Recipe, load_competition, override
from kit.resume import resume_options
from kit.runs.folder import (
    arch_label,
    finish_run_dir,
    new_run_dir,
    publish,
    stopped,
    versions,
)
from kit.runs.record import Record, score_key, write_record
from kit.runs.report import write_report
from kit.train import distributed, launch
from kit.train.budget import Clock, with_plan
from kit.train.cam import maps_of
from kit.train.finder import bounds, describe, find_lr, resolve
from kit.train.fit import Trained, train_model
from kit.train.learner import build_learner, resolve_device
from kit.train.models import check_arch
from kit.train.weights import resolve_weights


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
    dev = distributed.setup(resolve_device(device))
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


def lr_find(name: str, show=None, **options) -> float:
    """Run only the learning-rate finder (body frozen when the recipe trains a head first).

    Takes `run`'s options."""
    job = prepare(name, **options)
    r = job.recipe
    folder = job.root / "runs" / name / "lr-find"
    folder.mkdir(parents=True, exist_ok=True)
    learn = build_learner(
        r, job.data, job.device, job.weights, folder, np.flatnonzero(job.fold == 0)
    )
    learn.create_opt()
    if r.head_cycles:
        learn.freeze()
    png = folder / f"{datetime.now():%Y%m%d-%H%M%S}-{arch_label(r.arch)}.png"
    rule, show = resolve(r.lr_rule, r.pretrained), IN_NOTEBOOK if show is None else show
    return find_lr(learn, png, rule, show, bounds(r.pretrained, frozen=bool(r.head_cycles)))


def run(name: str, show=None, resume: str | None = None, nproc=None, torchrun="", **options):
    """Train `name`'s recipe and write its run folder and a checked submission.

    Options: `data=PATH`, `sample=True`, `out=DIR`, `device=`, `weights=FILE`, and any recipe
    field (`arch=`, `cycles=`, `folds=`, `lr=`...); `resume=RUN_ID` continues an interrupted
    run instead; `nproc=N|"auto"` trains in N processes started by torchrun (`torchrun=` its
    own options, e.g. "--nnodes 2 ..."). Returns the metrics and the paths written.
    """
    if nproc is not None and not distributed.in_worker():
        if resume:  # options it cannot honour refused here, before any process starts
            given = {k: v for k, v in options.items() if k not in ("out", "device")}
            resume_options(output_root(options.get("out")), name, resume, given)
        n = launch.resolve_nproc(nproc, options.get("device") or "auto", options.get("sync_bn"))
        if n > 1:  # --pseudo-label's and --distill's bad input said before any process starts
            pseudo.run_options(name, distill.run_options(name, options))  # in the order below
            root = output_root(options.get("out"))
            show = IN_NOTEBOOK if show is None else show
            return launch.launch(name, n, root, options, resume, torchrun, show)
    with distributed.timeouts_in_one_line():  # in a process started by torchrun
        if resume:
            return resume_run(name, resume, show, **options)
        options = distill.run_options(name, options)  # --distill RUN: one student, checked
        job = prepare(name, **pseudo.run_options(name, options))  # --pseudo-label: RUN's folds
        distill.check(job)  # --distill: RUN's probabilities are this data's
        run_id, partial = distributed.on_main(lambda: start_run(job, name))
        return complete_run(job, name, run_id, partial, show)


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
    checkpoint (on this machine's `device`); folds already trained are not trained again.
    `options` that would change the run are refused (kit/resume.py)."""
    partial, saved = resume_options(output_root(out), name, run_id, options)
    folds_csv = partial / FOLDS_CSV  # the very folds it started with (a single split: fold 0)
    job = prepare(
        name,
        out=out,
        device=device,
        folds_csv=folds_csv if folds_csv.is_file() else None,
        **saved,
    )
    print(f"resuming run {run_id}")
    return complete_run(job, name, run_id, partial, show)


def complete_run(job: Job, name: str, run_id: str, partial: Path, show) -> dict:
    """Train (or carry on training) in the partial run folder, then give it its name."""
    r, d = job.recipe, job.data
    show = IN_NOTEBOOK if show is None else show
    sample = read_sample(job.folder)
    if sample is None:
        print("warning: no sample_submission.csv; ids and order come from the test folder")
    print(f"run {run_id}: {len(d.x)} training images, {len(d.test_x)} test images, "
          f"on {job.device}")  # fmt: skip
    clock = None
    if r.time_limit:
        clock = Clock(r.time_limit, job.started, partial / "budget.json", len(d.test_x))
    try:
        with distributed.workspace(partial, r.folds) as work:
            metrics = train_and_predict(job, work, sample, show, clock)
        if not distributed.is_main():
            return metrics
        write_report(partial, run_id)
        final = finish_run_dir(partial, run_id)
    except BaseException:
        if distributed.is_main():
            stopped(partial, name, run_id)
        raise
    submission = publish(job.root, name, final)
    print_summary(r.metric, Record.from_json(metrics), final, submission)
    return {**metrics, "run_dir": str(final), "submission": str(submission)}


def held_out(job: Job) -> list[tuple[str, np.ndarray]]:
    """(sub-folder, held-out items) of each model the run trains: fold0/, fold1/... with
    --folds, else one model in the run folder itself, validated on fold 0."""
    if job.recipe.folds:
        return [(f"fold{k}", np.flatnonzero(job.fold == k)) for k in range(job.recipe.folds)]
    return [("", np.flatnonzero(job.fold == 0))]


def train_and_predict(job: Job, run_dir: Path, sample, show, clock: Clock | None) -> dict:
    """Every step that writes into the (still partial) run folder; returns the metrics."""
    r, d = job.recipe, job.data
    if distributed.is_main():
        write_json(run_dir / "versions.json", versions(job.device))
    models = [(run_dir / sub, valid) for sub, valid in held_out(job)]

    def train(k: int) -> Trained:
        data = pseudo.fold_data(job, k, models[k][0])  # --pseudo-label: test images added
        data = distill.fold_data(job, data, models[k][0])  # --distill: RUN's soft targets
        return train_model(r, data, job.device, job.weights, *models[k], show, clock)

    for k in distributed.my_folds(r.folds):  # all, or this process's folds
        if r.folds:
            print(f"fold {k + 1}/{r.folds}: {len(models[k][1])} held out")
        train(k)
    if clock:
        clock.join()  # a process with no fold to train still takes part in rank 0's plan
    distributed.wait_for_all()  # the others' folds may take hours
    if not distributed.is_main():
        return {}
    trained = [train(k) for k in range(len(models))]  # read back, not trained again
    r = with_plan(r, clock.plan) if clock else r  # the schedule a time limit kept, TTA included
    idx = np.concatenate([valid for _, valid in models])
    y = d.y.numpy()[idx]
    valid, test = combine(trained)
    scored = score_run(r, y, valid, [t.valid for t in trained], job.fold[idx])
    decision = Record.from_json({**scored, "classes": d.classes})
    tta = decision.tta
    test_probs = decision.decided(test.chosen(tta))
    thresholds = decision.thresholds if decision.thresholded else None
    if d.test_y is not None:
        scored[score_key(r.metric, "test")] = score(r.metric, d.test_y.numpy(), test_probs)

    history = write_predictions(job, r, run_dir, trained, valid, test, idx, y)
    images = torch.utils.data.Subset(d.x, idx)  # read one image at a time: no copy of the set
    maps = maps_of(run_dir, r, d.classes, job.device, images, [v for _, v in models])  # Grad-CAM
    interpret(run_dir, images, valid.ids, y, valid.chosen(tta), d.classes, show,
              thresholds=thresholds, maps=maps)  # fmt: skip
    sub = checked_submission(r, sample, d.test_ids, test_probs, d.classes)
    write_new(sub.to_csv(index=False), run_dir / "submission.csv")
    record = Record.from_json({
        **scored,
        **(trained[0].record["rates"] if not r.folds else {}),
        "lr_rule": describe(r.lr, resolve(r.lr_rule, r.pretrained)),
        **({"averaging": [t.record["averaging"] for t in trained]} if r.snapshots else {}),
        "folds": r.folds,
        "processes": distributed.world(),
        "epochs": len(history),
        "plan": [t.record.get("plan") for t in trained],  # each model's cycles and decisions
        **({"budget": clock.plan} if clock else {}),
        "seconds": round(time.monotonic() - job.started, 1),
        "skipped_train_images": d.skipped,
        "weights": str(job.weights) if job.weights else None,
        "data": str(job.folder.resolve()),  # whose sample_submission.csv `kit submit` checks
        "classes": d.classes,
    })  # fmt: skip
    return write_record(run_dir, record)


def combine(trained: list[Trained]) -> tuple[Predictions, Predictions]:
    """Every model's validation predictions in turn (out-of-fold with --folds), and the test
    predictions averaged over the models."""
    return concatenated([t.valid for t in trained]), averaged([t.test for t in trained])


def score_run(r: Recipe, y: np.ndarray, valid: Predictions, per_fold: list, fold) -> dict:
    """The metric on validation (out of fold) with and without TTA, and per fold, under
    metrics.json's names; which predictions are submitted (`submitted`: tta or plain, TTA if it
    scored at least as well); for log loss, whether temperature scaling helps out of sample; for
    a multi-label F-beta, whether per-tag thresholds do."""
    m = r.metric
    found = scores(m, y, valid)
    out = {score_key(m, "valid", tta): s for tta, s in found.items()}
    if r.folds:
        for tta in found:
            each = [score(m, y[fold == k], p.chosen(tta)) for k, p in enumerate(per_fold)]
            key = score_key(m, "folds", tta)
            out |= {key: each, f"{key}_std": float(np.std(each))}
    tta = r.tta and at_least_as_good(m, found[True], found[False])
    if m == "logloss":  # Kaggle punishes overconfidence: calibrate, if that helps out of sample
        groups = fold if r.folds else np.arange(len(y)) % 2
        out |= temperature_scaling(y, valid.chosen(tta), groups)
    if m in MULTI_LABEL:  # F-beta scores the tags decided: tune a threshold per tag
        groups = fold if r.folds else np.arange(len(y)) % 2
        out |= threshold_tuning(m, y, valid.chosen(tta), groups)
    return out | {"submitted": "tta" if tta else "plain"}


def write_predictions(job: Job, r: Recipe, run_dir: Path, trained, valid, test, idx, y) -> list:
    """history.csv (one row per epoch, returned) and the prediction CSVs: valid_preds.csv (or
    oof.csv with --folds, items `idx` labelled `y`) and test_preds.csv."""
    d = job.data
    history = [
        {**({"fold": k} if r.folds else {}), **h}
        for k, t in enumerate(trained)
        for h in t.record["history"]
    ]
    pd.DataFrame(history).to_csv(run_dir / "history.csv", index_label="epoch")
    extra = {"fold": job.fold[idx]} if r.folds else {}
    table(valid, "item", d.classes, y, extra).to_csv(
        run_dir / ("oof.csv" if r.folds else "valid_preds.csv"), index=False
    )
    table(test, "id", d.classes).to_csv(run_dir / "test_preds.csv", index=False)
    return history


def print_summary(m: str, record: Record, run_dir: Path, submission: Path) -> None:
    """The scores in one line (per fold in a second), and where the run and submission are."""
    line = f"{'out-of-fold' if record.folds else 'valid'} {m} {record.score(m):.4f}"
    if record.score(m, tta=True) is not None:
        line += f"  with TTA {record.score(m, tta=True):.4f}"
    if record.score(m, "test") is not None:
        line += f"  test {m} {record.score(m, 'test'):.4f} (held-out sample labels)"
    print(line)
    if record.folds:
        per_fold = ", ".join(f"{v:.4f}" for v in record.score(m, "folds", record.tta))
        std = record.get(score_key(m, "folds", record.tta) + "_std")
        print(f"per fold: {per_fold} (std {std:.4f})")
    print(f"run folder: {run_dir}\nsubmission: {submission}")

"""`kit run` as a short list of named steps, callable from the CLI or a notebook."""

import dataclasses
import platform
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import torch
from fastai.torch_core import set_seed
from fastcore.imports import IN_NOTEBOOK
from sklearn.metrics import roc_auc_score

from kit.augment import tta_views
from kit.data import Data, dataloaders, test_loader
from kit.errors import KitError
from kit.interpret import interpret
from kit.models import check_arch, create_model, timm_body
from kit.paths import (
    data_dir,
    discard_run_dir,
    finish_run_dir,
    in_kaggle_notebook,
    new_run_dir,
    output_root,
)
from kit.recipe import Recipe, load_competition, override
from kit.records import write_json
from kit.submission import check_submission, read_sample, write_new
from kit.train import (
    find_lr,
    fine_tune_sgdr,
    make_learner,
    predict,
    resolve_device,
    resolve_precision,
)
from kit.weights import pretrained_model, resolve_weights


def score(metric: str, y: np.ndarray, probs: np.ndarray) -> float:
    if metric == "auc":
        return float(roc_auc_score(y, probs[:, 1]))
    return float((probs.argmax(1) == y).mean())


def write_sample(name: str, dest: str | Path) -> Path:
    """Write the recipe's bundled sample, in the competition's layout, into a new folder."""
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise KitError(f"{dest} is not empty; give a new folder for the sample")
    partial = dest.parent / f".{dest.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        load_competition(name).write_sample(partial)
        if dest.exists():
            dest.rmdir()
        partial.rename(dest)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
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


def prepare(name, data=None, sample=False, out=None, device="auto", weights=None, **overrides):
    """Resolve the recipe, folders, device and weights, and read the data: everything that can
    fail on bad input happens here, before any output is created."""
    comp = load_competition(name)
    given = {k: v for k, v in overrides.items() if v is not None}
    r = override(comp.RECIPE, **(getattr(comp, "SAMPLE", {}) if sample else {}) | given)
    check_arch(r.arch)
    weights = resolve_weights(r.arch, weights) if r.pretrained else None
    dev = resolve_device(device)
    root = output_root(out)
    if sample:
        folder = root / "data" / f"{name}-sample"
        if not folder.exists():
            write_sample(name, folder)
    else:
        folder = data_dir(name, r.slug, data)
    return Job(comp, r, root, folder, comp.load(folder, r), dev, weights)


def norm_stats(model: torch.nn.Module, x: torch.Tensor) -> tuple[list, list]:
    """The pretrained network's normalisation if it has one, else the training data's own."""
    cfg = getattr(timm_body(model), "pretrained_cfg", None)
    if cfg and "mean" in cfg and len(cfg["mean"]) == x.shape[1]:
        return list(cfg["mean"]), list(cfg["std"])
    sample = x[:: max(1, len(x) // 5000)].float() / 255
    return sample.mean((0, 2, 3)).tolist(), sample.std((0, 2, 3)).clamp(min=1e-3).tolist()


def build_learner(job: Job, path: Path):
    """Model, data loaders and Learner for one run, seeded."""
    r, data = job.recipe, job.data
    set_seed(r.seed, reproducible=True)
    n, chans = len(data.classes), data.x.shape[1]
    if r.pretrained:
        model = pretrained_model(r.arch, n, chans, job.weights)
    else:
        model = create_model(r.arch, n, chans)
    dls, valid_idx = dataloaders(data, r, norm_stats(model, data.x), job.device)
    learn = make_learner(model, dls, r, path, resolve_precision(r.precision, job.device))
    return learn, valid_idx


def lr_find(name: str, show=None, **options) -> float:
    """Run only the learning-rate finder (body frozen when the recipe trains a head first).

    Takes `run`'s options."""
    job = prepare(name, **options)
    r = job.recipe
    folder = job.root / "runs" / name / "lr-find"
    folder.mkdir(parents=True, exist_ok=True)
    learn, _ = build_learner(job, folder)
    learn.create_opt()
    if r.head_cycles:
        learn.freeze()
    png = folder / f"{datetime.now():%Y%m%d-%H%M%S}-{r.arch}.png"
    suggestion = find_lr(learn, png, IN_NOTEBOOK if show is None else show)
    print(f"suggested learning rate {suggestion:.2e}; plot: {png}")
    return suggestion


def run(name: str, show=None, **options) -> dict:
    """Train `name`'s recipe and write its run folder and a checked submission.

    Options: `data=PATH`, `sample=True`, `out=DIR`, `device=`, `weights=FILE`, and any recipe
    field (`arch=`, `cycles=`, `lr=`...). Returns the metrics and the paths written.
    """
    job = prepare(name, **options)
    r, d, root = job.recipe, job.data, job.root
    show = IN_NOTEBOOK if show is None else show
    sample_df = read_sample(job.folder)
    if sample_df is None:
        print("warning: no sample_submission.csv; ids and order come from the test folder")
    run_id, partial = new_run_dir(root, name, r.arch)
    print(f"run {run_id}: {len(d.x)} training images, {len(d.test_x)} test images, "
          f"on {job.device}")  # fmt: skip
    try:
        metrics = train_and_predict(job, partial, sample_df, show)
        final = finish_run_dir(partial, run_id)
    except BaseException:
        discard_run_dir(partial)
        raise
    submission = write_new(
        (final / "submission.csv").read_text(), root / "submissions" / name / f"{run_id}.csv"
    )
    if in_kaggle_notebook():
        shutil.copyfile(submission, root / "submission.csv")
    report(r, metrics, final, submission)
    return {**metrics, "run_dir": str(final), "submission": str(submission)}


def train_and_predict(job: Job, run_dir: Path, sample_df, show) -> dict:
    """Every step that writes into the (still partial) run folder; returns the metrics."""
    r, d = job.recipe, job.data
    write_json(run_dir / "recipe.json", dataclasses.asdict(r))
    write_json(run_dir / "versions.json", versions(job.device))
    learn, valid_idx = build_learner(job, run_dir)
    rates, history = fine_tune_sgdr(learn, r, run_dir, show)
    pd.DataFrame(history).to_csv(run_dir / "history.csv", index_label="epoch")

    preds = predictions(learn, d, r)
    y_valid = d.y[valid_idx].numpy()
    scores = {
        f"{k}_{r.metric}": score(r.metric, y_valid, v)
        for k, v in preds.items()
        if k.startswith("valid")
    }
    m = r.metric  # submit what scored better on validation, TTA when tied
    suffix = "_tta" if r.tta and scores[f"valid_tta_{m}"] >= scores[f"valid_{m}"] else ""
    test_probs = preds[f"test{suffix}"]
    if d.test_y is not None:
        scores[f"test_{r.metric}"] = score(r.metric, d.test_y.numpy(), test_probs)

    names = [d.names[i] for i in valid_idx]
    write_probs(run_dir / "valid_preds.csv", "item", names, d.classes, preds, "valid", y_valid)
    write_probs(run_dir / "test_preds.csv", "id", d.test_ids, d.classes, preds, "test")
    interpret(run_dir, d.x[valid_idx], names, y_valid, preds[f"valid{suffix}"], d.classes, show)

    sub = job.comp.submission(d.test_ids, test_probs, d.classes)
    check_submission(sub, sample_df, d.test_ids, d.classes if r.metric == "accuracy" else None)
    write_new(sub.to_csv(index=False), run_dir / "submission.csv")
    metrics = {
        **scores,
        **rates,
        "epochs": len(history),
        "submitted": "tta" if suffix else "plain",
        "skipped_train_images": d.skipped,
        "weights": str(job.weights) if job.weights else None,
        "data": str(job.folder.resolve()),  # whose sample_submission.csv `kit submit` checks
        "classes": [c.item() if hasattr(c, "item") else c for c in d.classes],
    }
    write_json(run_dir / "metrics.json", metrics)
    return metrics


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
) -> None:
    """Per-item class probabilities, plain and with TTA, as CSV."""
    df = pd.DataFrame({key: ids})
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
    line = f"valid {m} {metrics[f'valid_{m}']:.4f}"
    if r.tta:
        line += f"  with TTA {metrics[f'valid_tta_{m}']:.4f}"
    if f"test_{m}" in metrics:
        line += f"  test {m} {metrics[f'test_{m}']:.4f} (held-out sample labels)"
    print(line)
    print(f"run folder: {run_dir}\nsubmission: {submission}")

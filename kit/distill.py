"""Distillation: `kit distill NAME RUN` (`kit run NAME --distill RUN`) trains one student network
on the teacher RUN's probabilities as soft targets, so that what a k-fold run or an ensemble
knows is submitted at one model's inference time.

RUN is a finished k-fold run or `kit ensemble` run of this recipe: its oof.csv holds, for every
training image, probabilities from models that never trained on that image (an ensemble's: the
blend its own out-of-fold score is computed from; a log-loss run's at the temperature its
submission is calibrated with, as it submits them). A training image's target is
(1 - alpha) x those probabilities + alpha x its true label (--distill-alpha, 0.5 by default: the
true class keeps at least half of the target, so no label known to be wrong is taught, and the
teacher's other classes still carry what it learnt of look-alikes). With --distill-test (the
default) the test images train too, their targets the teacher's test probabilities: they have
no labels to leak, they are the images the student will be asked about, and where a competition
has few labelled images and many test images they are most of what there is to learn from (they
cost training time in proportion: --no-distill-test drops them).

The student is one model (no --folds), validated on the recipe's held-out split (--valid-pct,
--fold-seed) against the TRUE labels with the recipe's metric. That score is a little
optimistic: the targets of the student's training images came from fold models that trained on
the student's validation images, so a little of those images' labels reaches the student through
its targets. The held-out test score (benchmarks/distill.py) is the claim.

Tricks on soft targets: label smoothing smooths them further; MixUp and CutMix blend them as
they blend hard labels; --balance weights counts each class by its share of the targets.
"""

import dataclasses
from pathlib import Path

import numpy as np
import torch

from kit.data.layouts import Data
from kit.ensemble import load_member
from kit.errors import KitError
from kit.evaluate.calibration import calibrate
from kit.paths import output_root
from kit.pseudo import with_pseudo
from kit.recipe import load_competition
from kit.runs.folder import finished_run
from kit.runs.record import read_record


@dataclasses.dataclass
class Distilled(Data):
    """Data whose training items learn `soft` targets (the learner's training loader serves
    them, kit/train/learner.py); `y` keeps the true labels, which validation scores."""

    soft: torch.Tensor | None = None  # float32 (items, classes), one row per item of x


def run_options(name: str, options: dict) -> dict:
    """kit run's `options` for a student of --distill RUN (one model: folds 0); a KitError,
    before anything is written, where RUN cannot teach it."""
    run = options.get("distill")
    if not run:
        return options
    if options.get("pseudo_label"):
        raise KitError("--distill and --pseudo-label do not go together; distill a run that "
                       "was trained with --pseudo-label instead")  # fmt: skip
    if options.get("folds"):
        raise KitError(f"--distill trains one student, validated on a held-out split; drop "
                       f"--folds {options['folds']}")  # fmt: skip
    alpha = options.get("distill_alpha")
    if alpha is not None and not 0 <= alpha <= 1:
        raise KitError(f"--distill-alpha must be between 0 and 1, e.g. 0.5 (got {alpha})")
    load_competition(name)  # an unknown recipe is said as such, not as a missing run
    teacher(output_root(options.get("out")) / "runs" / name, name, run)
    return {**options, "folds": 0}  # a recipe that defaults to folds still trains one student


def teacher(runs: Path, name: str, run: str) -> Path:
    """RUN's folder; a KitError when it is not a finished run of `name` with out-of-fold
    probabilities (a k-fold run or an ensemble)."""
    path = finished_run(runs, name, run)
    if not (path / "oof.csv").is_file():
        raise KitError(f"run {run} has no out-of-fold probabilities to distill; give a k-fold "
                       "run (--folds K) or a `kit ensemble` of them")  # fmt: skip
    return path


def check(job) -> None:
    """With --distill, RUN's probabilities are checked to be this data's (before the run's
    folder is made)."""
    if job.recipe.distill:
        targets(job)


def targets(job) -> tuple[np.ndarray, np.ndarray]:
    """(every training item's target, in the data's order; the teacher's test probabilities):
    the teacher's out-of-fold probabilities mixed with the true labels by --distill-alpha."""
    r, d = job.recipe, job.data
    runs = job.root / "runs" / r.name
    m = load_member(runs, r.name, str(teacher(runs, r.name, r.distill)))
    names = [str(n) for n in d.names]
    if [str(c) for c in m["classes"]] != [str(c) for c in d.classes] or m["test_ids"] != [
        str(i) for i in d.test_ids
    ]:
        raise KitError(f"run {r.distill} predicted other classes or test images than this data "
                       "has; distill a run of the same data")  # fmt: skip
    if sorted(m["items"]) != sorted(names):
        raise KitError(f"run {r.distill} holds out-of-fold probabilities for other training "
                       "images than this data's; distill a run of the same data")  # fmt: skip
    probs, test = m["oof"], m["test"]
    record = read_record(m["path"])
    if record.calibrated:  # the probabilities RUN submits: an overconfident net's, softened
        probs, test = calibrate(probs, record.temperature), calibrate(test, record.temperature)
    index = {n: i for i, n in enumerate(names)}
    oof = np.zeros((len(names), len(d.classes)), np.float32)
    oof[[index[i] for i in m["items"]]] = probs
    y = d.y.numpy()
    truth = y.astype(np.float32) if r.multi_label else np.eye(len(d.classes), dtype=np.float32)[y]
    return (1 - r.distill_alpha) * oof + r.distill_alpha * truth, test.astype(np.float32)


def fold_data(job, data: Data, folder: Path) -> Data:
    """The data the student trains on (its model's folder `folder`): with --distill, each
    training image's target from RUN and, with --distill-test, the test images added with RUN's
    test probabilities as theirs (their `y` RUN's class, or tags at 0.5: never validated); said in
    a line. A model already trained is read back and needs none."""
    r = job.recipe
    if not r.distill or (folder / "preds.npz").exists():
        return data
    soft, test = targets(job)
    n_test = len(test) if r.distill_test else 0
    if n_test:
        labels = (test >= 0.5).astype(np.float32) if r.multi_label else test.argmax(1)
        data = with_pseudo(data, np.arange(n_test), labels)
        soft = np.concatenate([soft, test])
    held = int((job.fold == 0).sum())  # the student's validation images: true labels only
    print(f"distilling {r.distill}: {len(job.data.x) - held} training images learn its "
          f"out-of-fold probabilities (true label's share {r.distill_alpha:g}), {n_test} test "
          f"images its test probabilities; {held} held out for validation")  # fmt: skip
    fields = {f.name: getattr(data, f.name) for f in dataclasses.fields(Data)}
    return Distilled(**fields, soft=torch.from_numpy(soft))

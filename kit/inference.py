"""`kit predict`: a finished run's models on a test set, training nothing. A code competition
re-runs a notebook on a hidden test set that replaces the public one: the notebook predicts it
with a run trained elsewhere (`kit kernel --predict` ships the run and the notebook).

Every model of the run predicts as it did at training time: one model, every fold's, the
snapshots or averaged weights it kept, with its TTA choice and temperature (or a multi-label
task's per-tag thresholds); an ensemble run through its members, blended as `kit ensemble`
blended them. Only the test images (or test CSV) and the sample are read, a batch at a time.
"""

import time
from pathlib import Path

import numpy as np

from kit.data.archives import unpack
from kit.data.augment import tta_views
from kit.data.stream import stream_test_set
from kit.data.submission import checked_submission, read_sample, submission_shape
from kit.ensemble import load_member, thresholded
from kit.evaluate.blend import fit_blend
from kit.evaluate.metrics import ON_PROBABILITIES
from kit.files import read_json
from kit.paths import data_dir, output_root
from kit.recipe import saved_recipe
from kit.runs.folder import finished_run, member_runs, publish_text
from kit.runs.record import Record, read_record
from kit.runs.records import predicted_stem
from kit.train.learner import resolve_device
from kit.train.saved import load_models, probabilities


def predict(name: str, run: str, data=None, out=None, device="auto") -> dict:
    """Predict the test set of `data` (default: searched as `kit run` does) with the finished run
    `run` of `name` (its id under out/runs/<name>/, or its folder), and publish a checked
    submission as a new file in submissions/<name>/ (in a Kaggle notebook, submission.csv too).

    Returns the submission's path, the number of test images and the seconds per 1,000."""
    root = output_root(out)
    run_dir = finished_run(root / "runs" / name, name, run)
    record = read_record(run_dir)
    members = member_runs(run_dir, name)
    recipes = [saved_recipe(read_json(m / "recipe.json")) for m in members]
    first, classes = recipes[0], record.classes
    fix = "give the folder that holds the test images with --data"
    folder = data_dir(name, first.slug, data, record.data, fix)
    if first.layout != "pixels" and not (folder / first.test_dir).is_dir():
        unpack(folder)  # Kaggle's archives, as `kit run` unpacks them
    sample = read_sample(folder)
    submission_shape(first, sample, classes)  # a sample of another competition stops here
    dev = resolve_device(device)
    tests = [stream_test_set(folder, r, sample, m.name) for r, m in zip(recipes, members)]
    models = [load_models(m, r, len(classes), dev) for r, m in zip(recipes, members)]

    print(f"predicting {len(tests[0].ids)} test images of {folder} with run {run_dir.name} "
          f"on {dev}")  # fmt: skip
    start = time.perf_counter()
    probs = []
    for r, m, test, groups in zip(recipes, members, tests, models):
        views = tta_views(r) if read_record(m).tta else [None]
        probs.append(probabilities(groups, test.batches(r.bs, dev), views, r, dev))
    seconds = time.perf_counter() - start
    n = len(tests[0].ids)
    print(f"{n} images in {seconds:.1f} s: {1000 * seconds / n:.1f} s per 1,000 images")

    if record.ensemble:
        test_probs = blend(run_dir.parent, name, members, record, probs)
    else:
        test_probs = record.decided(probs[0])
    sub = checked_submission(first, sample, tests[0].ids, test_probs, classes)
    stem = predicted_stem(root, name, run_dir.name)
    submission = publish_text(root, name, stem, sub.to_csv(index=False))
    print(f"submission: {submission}")
    return {"submission": str(submission), "images": n, "seconds_per_1000": 1000 * seconds / n}


def blend(runs: Path, name: str, members: list[Path], record: Record, probs: list) -> np.ndarray:
    """The members' test probabilities blended as `kit ensemble` blended them: the blend is
    fitted again on the members' out-of-fold predictions (the same fit, so the same blend), and
    a tuned threshold (per tag, for a multi-label task) applied where the metric scores labels."""
    found = [load_member(runs, name, str(m)) for m in members]
    metric = found[0]["metric"]
    fitted, _ = fit_blend(record.method, [f["oof"] for f in found], found[0]["y"], metric)
    blended = fitted(probs)
    if record.threshold is not None and metric not in ON_PROBABILITIES:
        return thresholded(blended, record.threshold)
    return record.decided(blended)

"""`kit ensemble`: stacked generalization over k-fold runs that share their folds.

Every blend is scored honestly: whatever it fits (weights, a meta-model, a binary task's
threshold, a multi-label task's per-tag thresholds) is fitted on the other folds' out-of-fold
predictions and scored on the held-out fold; what is used for the test set is then fitted on all
of them. A blend that fits more than the mean (greedy weights, a meta-model) is kept only where
it beats the simpler ones, the best member alone included, by more than the noise of the score
on these folds (kit/evaluate/blend.py choose_blend): otherwise the simpler one is submitted.
"""

import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from kit.data.submission import checked_submission, read_sample
from kit.errors import KitError
from kit.evaluate.blend import (
    METHODS,
    choose_blend,
    cross_validated_accuracy,
    fit_blend,
    greedy_weights,
    tune_threshold,
)
from kit.evaluate.metrics import MULTI_LABEL, ON_PROBABILITIES, score
from kit.evaluate.predictions import Predictions, multi_hot, table
from kit.evaluate.review import relabel
from kit.evaluate.thresholds import decide, threshold_tuning
from kit.files import read_json, write_json, write_new
from kit.paths import output_root
from kit.recipe import load_competition, saved_recipe
from kit.runs.folder import discard_run_dir, finish_run_dir, finished_run, new_run_dir, publish
from kit.runs.record import Record, read_record, write_record


def load_member(runs: Path, name: str, run: str) -> dict:
    """One finished k-fold run's out-of-fold and test probabilities (TTA if it submitted TTA)."""
    path = finished_run(runs, name, run)
    if not (path / "oof.csv").is_file():
        raise KitError(f"run {run} has no out-of-fold predictions; train it with --folds K")
    recipe, record = read_json(path / "recipe.json"), read_record(path)
    kind = "_tta" if record.tta else ""
    classes = [str(c) for c in record.classes]
    text = dict(dtype={"item": str, "label": str, "id": str}, keep_default_na=False)  # 000123
    oof, test = pd.read_csv(path / "oof.csv", **text), pd.read_csv(path / "test_preds.csv", **text)
    cols = [f"p_{c}{kind}" for c in classes]
    multi = bool(recipe.get("multi_label"))
    labels = oof["label"]
    if multi:  # space-separated tags
        y = multi_hot(labels.str.split().tolist(), classes)
    else:
        y = labels.map({c: i for i, c in enumerate(classes)}).to_numpy()
    return {
        "run": path.name,
        "path": path,
        "metric": recipe["metric"],
        "classes": record.classes,
        "items": oof["item"].tolist(),
        "fold": oof["fold"].to_numpy(),
        "y": y,
        "multi_label": multi,
        "test_ids": test["id"].tolist(),
        "oof": oof[cols].to_numpy(),
        "test": test[cols].to_numpy(),
        "data": record.data,
        "recipe": recipe,  # as the run saved it: the submission it writes
    }


CONTRACT = ("metric", "sub_shape", "multi_label", "top_k", "positive")  # what a submission holds


def thresholded(probs: np.ndarray, threshold: float) -> np.ndarray:
    """A binary task's probabilities as one-hot labels, class 1 at P(class 1) >= `threshold`."""
    return np.stack([probs[:, 1] < threshold, probs[:, 1] >= threshold], 1) * 1.0


def check_members(members: list) -> None:
    first = members[0]
    for m in members[1:]:
        if m["items"] != first["items"] or not np.array_equal(m["fold"], first["fold"]):
            raise KitError(f"runs {first['run']} and {m['run']} have different folds; ensemble "
                           "runs trained on the same data with the same --folds and --fold-seed "
                           "(or folds.csv); --seed, arch and size may differ")  # fmt: skip
        if m["classes"] != first["classes"] or m["test_ids"] != first["test_ids"]:
            raise KitError(f"runs {first['run']} and {m['run']} predict different classes or "
                           "test items")  # fmt: skip
        for key in CONTRACT:
            if m["recipe"].get(key) != first["recipe"].get(key):
                raise KitError(f"runs {first['run']} and {m['run']} write different submissions "
                               f"({key} {first['recipe'].get(key)!r} and "
                               f"{m['recipe'].get(key)!r}); ensemble runs made with the same "
                               f"--{key.replace('_', '-')}")  # fmt: skip


def ensemble(name: str, runs: list, method="mean", tune=False, out=None, data=None) -> dict:
    """Blend k-fold runs of `name` by `method`; write the blend as a new run with a checked
    submission. Prints each member's out-of-fold score and the blend's."""
    if method not in METHODS:
        raise KitError(f"--method must be one of {', '.join(METHODS)}")
    load_competition(name)  # an unknown recipe is one line
    root = output_root(out)
    runs_dir = root / "runs" / name
    if len(set(runs)) < 2:
        raise KitError("give at least two different runs to ensemble")
    members = [load_member(runs_dir, name, run) for run in runs]
    check_members(members)
    first, m = members[0], members[0]["metric"]
    y, fold = first["y"], first["fold"]
    oofs, tests = [x["oof"] for x in members], [x["test"] for x in members]
    if tune and (len(first["classes"]) != 2 or first["multi_label"]):
        raise KitError(f"--tune-threshold needs a binary task; {name} has "
                       f"{len(first['classes'])} classes; a multi-label task's F-beta tunes "
                       "a threshold per tag by itself")  # fmt: skip

    kept, cv, scores, why = choose_blend(method, m, oofs, y, fold)
    blend_oof = cv[kept]
    blend, fitted = fit_blend(kept, oofs, y, m)
    blend_test = blend(tests)
    rows = [{"run": x["run"], "oof": score(m, y, x["oof"])} for x in members]
    if "weighted" in cv:
        for row, w in zip(rows, fitted if kept == "weighted" else greedy_weights(oofs, y)):
            row["weight"] = float(w)
    result = {"method": kept, "asked": method, "members": rows, f"valid_{m}": scores[kept]}
    if kept == "best":
        result["best_member"] = members[fitted]["run"]
    for row in rows:
        weight = f"  weight {row['weight']:.2f}" if "weight" in row else ""
        print(f"{row['run']:40} out-of-fold {m} {row['oof']:.4f}{weight}")
    for tried, value in scores.items():
        what = "best member" if tried == "best" else f"{tried} blend"
        print(f"{what:40} out-of-fold {m} {value:.4f}"
              f"{' (cross-validated on the same folds)' if tried != 'mean' else ''}")  # fmt: skip
    if len(scores) > 1:
        result["choice"] = why
        print(why)
    threshold = 0.5
    if tune:
        threshold, _ = tune_threshold(y, blend_oof[:, 1])  # on every fold: the test set's
        acc = cross_validated_accuracy(y, blend_oof[:, 1], fold)
        at_half = float(((blend_oof[:, 1] >= 0.5) == y).mean())
        result |= {"threshold": threshold, "accuracy_at_threshold": acc, "accuracy_at_0.5": at_half}
        print(f"threshold {threshold:.3f} (tuned on every fold): out-of-fold accuracy {acc:.4f}, "
              f"each fold at the threshold tuned on the others (0.5: {at_half:.4f})")  # fmt: skip
        if m in ON_PROBABILITIES:
            print(f"  {m} does not depend on a threshold: the submission keeps probabilities")
    if m in MULTI_LABEL:  # per-tag thresholds, tuned fold by fold as a run tunes them
        result |= threshold_tuning(m, y, blend_oof, fold)

    folder = Path(data) if data else Path(first["data"])
    sample = read_sample(folder)
    probs = blend_test
    if tune and m not in ON_PROBABILITIES:  # labels from the tuned threshold
        probs = thresholded(blend_test, threshold)
    if result.get("thresholded"):  # the tags from the tuned per-tag thresholds
        probs = decide(blend_test, result["thresholds"])
    classes = first["classes"]
    sub = checked_submission(saved_recipe(first["recipe"]), sample, first["test_ids"], probs,
                             classes)  # fmt: skip

    run_id, partial = new_run_dir(root, name, f"ensemble-{method}")
    try:
        # the members' recipe (what the submission is made by), as an ensemble of them
        write_json(partial / "recipe.json", {**first["recipe"], "arch": f"ensemble-{method}",
                                             "members": list(runs)})  # fmt: skip
        shutil.copyfile(first["path"] / "folds.csv", partial / "folds.csv")
        oof = Predictions(first["items"], blend_oof)
        table(oof, "item", classes, y, {"fold": fold}).to_csv(partial / "oof.csv", index=False)
        test = Predictions(first["test_ids"], blend_test)
        table(test, "id", classes).to_csv(partial / "test_preds.csv", index=False)
        write_new(sub.to_csv(index=False), partial / "submission.csv")
        if not first["multi_label"]:  # the labels the blend's out-of-fold predictions doubt
            doubted = relabel(first["items"], y, blend_oof, blend_oof.argmax(1), classes)
            doubted.to_csv(partial / "relabel.csv", index=False)
        record = Record.from_json({**result, "classes": classes, "data": str(folder)})
        metrics = write_record(partial, record)
        final = finish_run_dir(partial, run_id)
    except BaseException:
        discard_run_dir(partial)
        raise
    submission = publish(root, name, final)
    print(f"run folder: {final}\nsubmission: {submission}")
    return {**metrics, "run_dir": str(final), "submission": str(submission)}

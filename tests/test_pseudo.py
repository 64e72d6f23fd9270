"""--pseudo-label RUN: fold k trains on exactly the test images fold k's own model in RUN labelled
confidently; labels from the whole ensemble would leak, the kit's do not; bad input is one line;
a resumed run ends as an uninterrupted one, and across processes each fold takes the same."""

import contextlib
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import kit
from kit import pipeline
from kit.cli import main
from kit.data.layouts import Data
from kit.pseudo import confident, with_pseudo

# two epochs per fold, a pinned rate (no finder), no TTA and no plots: about 8 s a run
FAST = dict(cycles=2, cycle_len=1, cycle_mult=1, lr=3e-3, seed=3, bs=64, tta=False)
THRESHOLD = 0.5  # two epochs' model is unsure: this takes some of the test images, not all
KIT = Path(sys.executable).with_name("kit")


@contextlib.contextmanager
def recorded(stop_at: str = ""):
    """kit.run with no plots, each model's training data kept: (fold folder name, Data); an
    interrupt (as Ctrl-C) where the model in the folder named `stop_at` would train."""
    seen = []
    train = pipeline.train_model

    def spy(r, data, *args, **kw):
        if args[2].name == stop_at:
            raise KeyboardInterrupt
        seen.append((args[2].name, data))
        return train(r, data, *args, **kw)

    with pytest.MonkeyPatch.context() as m:
        m.setattr(pipeline, "interpret", lambda *a, **k: None)
        m.setattr(pipeline, "maps_of", lambda *a, **k: None, raising=False)
        m.setattr(pipeline, "train_model", spy)
        yield seen


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A 2-fold run, and a run pseudo-labelled by it (its printed lines and training data)."""
    out = tmp_path_factory.mktemp("pseudo")
    with recorded():
        base = kit.run("mnist", sample=True, out=out, folds=2, **FAST)
    base_id = base["run_dir"].rsplit("/", 1)[-1]
    printed = io.StringIO()
    with recorded() as seen, contextlib.redirect_stdout(printed):
        labelled = kit.run("mnist", sample=True, out=out, pseudo_label=base_id,
                           pseudo_threshold=THRESHOLD, **FAST)  # fmt: skip
    return out, base_id, labelled, printed.getvalue(), seen


def test_fold_k_trains_on_exactly_fold_ks_confident_test_images(runs):
    out, base_id, labelled, printed, seen = runs
    base, run = out / "runs" / "mnist" / base_id, labelled["run_dir"]
    data = kit.pipeline.prepare("mnist", sample=True, out=out).data
    n = len(data.x)
    assert labelled["folds"] == 2  # RUN's folds, not asked for
    assert (base / "folds.csv").read_text() == (
        out / "runs" / "mnist" / run / "folds.csv"
    ).read_text()
    chosen = []
    for k in (0, 1):
        probs = np.load(base / f"fold{k}" / "preds.npz")["test"]  # fold k's own model
        rows = np.flatnonzero(probs.max(1) >= THRESHOLD)
        assert 0 < len(rows) < len(probs)
        table = pd.read_csv(f"{run}/fold{k}/pseudo.csv", dtype={"id": str, "label": str})
        assert list(table["id"]) == [data.test_ids[i] for i in rows]
        assert list(table["label"]) == [data.classes[i] for i in probs[rows].argmax(1)]
        assert np.allclose(table["confidence"], probs[rows].max(1), atol=1e-5)
        folder, fold_data = seen[k]
        assert folder == f"fold{k}" and len(fold_data.x) == n + len(rows)
        assert torch.equal(fold_data.x[:n], data.x) and torch.equal(fold_data.y[:n], data.y)
        assert torch.equal(fold_data.x[n:], data.test_x[rows])
        assert fold_data.y[n:].tolist() == probs[rows].argmax(1).tolist()
        assert f"fold {k + 1}: {len(rows)} of 360 test images pseudo-labelled by fold {k}'s " \
               f"model in {base_id}" in printed  # fmt: skip
        chosen.append(set(rows))
    assert chosen[0] != chosen[1]  # each fold its own model's labels, not one set for all
    recipe = json.loads((out / "runs" / "mnist" / run / "recipe.json").read_text())
    assert recipe["pseudo_label"] == base_id and recipe["pseudo_threshold"] == THRESHOLD


def test_a_resumed_pseudo_labelled_run_ends_as_an_uninterrupted_one(runs, tmp_path):
    """Stopped before its second fold trains, resumed: the same test images and labels, the
    same predictions (the data is assembled again, the same)."""
    out, base_id, labelled, *_ = runs
    out = shutil.copytree(out, tmp_path / "out")
    with recorded(stop_at="fold1"), pytest.raises(KeyboardInterrupt):
        kit.run("mnist", sample=True, out=out, pseudo_label=base_id,
                pseudo_threshold=THRESHOLD, **FAST)  # fmt: skip
    partial = next((out / "runs" / "mnist").glob(".*.partial"))
    with recorded():
        resumed = kit.run("mnist", resume=partial.name[1 : -len(".partial")], out=out)
    whole, again = Path(labelled["run_dir"]), Path(resumed["run_dir"])
    for k in (0, 1):
        assert (whole / f"fold{k}/pseudo.csv").read_text() == (
            again / f"fold{k}/pseudo.csv"
        ).read_text()
        a, b = np.load(whole / f"fold{k}/preds.npz"), np.load(again / f"fold{k}/preds.npz")
        assert np.array_equal(a["valid"], b["valid"]) and np.array_equal(a["test"], b["test"])
    assert resumed["valid_accuracy"] == labelled["valid_accuracy"]


def nearest(train_x, train_y, x, classes=5) -> np.ndarray:
    """A 1-nearest-neighbour model's probabilities: 0.9 on its neighbour's label (it memorises)."""
    a, b = x.reshape(len(x), -1).float(), train_x.reshape(len(train_x), -1).float()
    label = train_y[torch.cdist(a, b).argmin(1)].numpy()
    probs = np.full((len(x), classes), 0.1 / (classes - 1))
    probs[np.arange(len(x)), label] = 0.9
    return probs


def test_labels_from_the_whole_ensemble_leak_fold_ks_validation_labels_and_the_kits_do_not():
    """Labels that are pure noise, and test images that repeat the training images (as Kaggle's
    near-duplicates do). Fold k's own model knows nothing of fold k's held-out images, so with
    its labels the out-of-fold score stays at chance, as the held-out one; the ensemble's other
    fold models memorised them, so with its labels fold k learns its own validation labels."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (200, 1, 4, 4), dtype=torch.uint8, generator=gen)
    y = torch.randint(0, 5, (200,), generator=gen)
    fresh = torch.randint(0, 256, (200, 1, 4, 4), dtype=torch.uint8, generator=gen)
    fresh_y = torch.randint(0, 5, (200,), generator=gen)
    d = Data(x, y, list("abcde"), [str(i) for i in range(200)], x.clone(), list(range(200)))
    fold = np.arange(200) % 5
    models = [nearest(x[fold != k], y[fold != k], d.test_x) for k in range(5)]
    ensemble = np.mean(models, 0)

    def scores(labels_of) -> tuple[float, float]:
        """(out-of-fold, held-out) accuracy of fold models retrained with the pseudo-labels."""
        oof, held = np.zeros(200), []
        for k in range(5):
            rows, labels, _ = confident(labels_of(k), 0.7)
            train = np.flatnonzero(fold != k)
            e = with_pseudo(d, rows, labels)
            keep = np.concatenate([train, len(x) + np.arange(len(rows))])
            oof[fold == k] = nearest(e.x[keep], e.y[keep], x[fold == k]).argmax(1)
            held.append((nearest(e.x[keep], e.y[keep], fresh).argmax(1) == fresh_y.numpy()).mean())
        return (oof == y.numpy()).mean(), np.mean(held)

    kits, kits_held = scores(lambda k: models[k])
    leaky, leaky_held = scores(lambda k: ensemble)
    assert leaky > 0.9 and leaky - leaky_held > 0.6  # the ensemble's labels: a false 90%+
    assert kits < 0.4 and abs(kits - kits_held) < 0.15  # chance (0.2) out of fold and held out


def test_a_multi_label_image_is_taken_only_where_every_tag_is_sure():
    probs = np.array([[0.97, 0.02, 0.99], [0.97, 0.6, 0.99], [0.5, 0.5, 0.5], [0.01, 0.08, 0.95]])
    rows, labels, sure = confident(probs, 0.9, multi_label=True)
    assert rows.tolist() == [0, 3] and sure == pytest.approx([0.97, 0.92])
    assert labels.tolist() == [[1, 0, 1], [0, 0, 1]]
    y = torch.tensor([[1, 1, 0]], dtype=torch.float32)
    d = Data(torch.zeros(1, 1, 2, 2, dtype=torch.uint8), y, list("abc"), ["t0"],
             torch.arange(16, dtype=torch.uint8).view(4, 1, 2, 2), list("wxyz"))  # fmt: skip
    e = with_pseudo(d, rows, labels)
    assert e.y.tolist() == [[1, 1, 0], [1, 0, 1], [0, 0, 1]] and e.y.dtype == torch.float32
    assert torch.equal(e.x[1:], d.test_x[[0, 3]]) and e.names == ["t0", "test:w", "test:z"]


def finished_copy(out, base_id, tmp_path, **changes):
    """A copy of the 2-fold run under a new id, its recipe.json or metrics.json changed."""
    runs = out / "runs" / "mnist"
    copy = shutil.copytree(runs / base_id, runs / f"{base_id}-{tmp_path.name}")
    for file, values in changes.items():
        path = copy / file
        path.write_text(json.dumps({**json.loads(path.read_text()), **values}))
    return copy.name


@pytest.mark.parametrize(
    "argv, change, message",
    [
        ([], {"recipe.json": {"name": "invasive"}}, "was trained for invasive, not mnist"),
        ([], {"metrics.json": {"folds": 0}}, "is not a k-fold run"),
        (["--folds", "3"], {}, "drop --folds 3"),
        (["--fold-seed", "5"], {}, "drop --fold-seed 5"),
        (["--pseudo-threshold", "1.5"], {}, "--pseudo-threshold must be between 0 and 1"),
        ([], "unfinished", "is still incomplete"),
        ([], "missing", "no finished run"),
        (["--nproc", "2", "--device", "cpu", "--folds", "3"], {}, "drop --folds 3"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(runs, tmp_path, capsys, argv, change, message):
    out, base_id, *_ = runs
    out = shutil.copytree(out, tmp_path / "out")
    if change == "unfinished":
        (out / "runs" / "mnist" / ".20990101-000000-x.partial").mkdir()
        run = "20990101-000000-x"
    elif change == "missing":
        run = "no-such-run"
    else:
        run = finished_copy(out, base_id, tmp_path, **change)
    before = sorted(p.name for p in (out / "runs" / "mnist").iterdir())
    code = main(["run", "mnist", "--sample", "--out", str(out), "--pseudo-label", run, *argv])
    err = capsys.readouterr().err
    assert code == 1 and message in err and len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in (out / "runs" / "mnist").iterdir()) == before


def test_across_processes_each_fold_takes_the_test_images_it_takes_in_one(runs, tmp_path):
    """--nproc 2: the two folds train side by side, one per process, each adding exactly the
    test images (and labels) that its fold's model in RUN gave it in one process."""
    out, base_id, labelled, *_ = runs
    out = shutil.copytree(out, tmp_path / "out")
    # one epoch a fold: the test images a fold takes come from RUN, not from its own training
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in {**FAST, "cycles": 1}.items() if k != "tta"]
    done = subprocess.run([KIT, "run", "mnist", "--sample", "--out", out, "--pseudo-label", base_id,
                           "--pseudo-threshold", str(THRESHOLD), "--nproc", "2", "--device", "cpu",
                           "--no-tta", *flags], capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    runs_dir, one = out / "runs" / "mnist", Path(labelled["run_dir"]).name
    (two,) = [p for p in runs_dir.iterdir() if p.name not in (base_id, one)]
    units = [json.loads((two / f"fold{k}" / "unit.json").read_text()) for k in (0, 1)]
    assert [u["process"] for u in units] == [0, 1]  # side by side, one fold each
    for k in (0, 1):
        taken = (two / f"fold{k}" / "pseudo.csv").read_text()
        assert taken == (runs_dir / one / f"fold{k}" / "pseudo.csv").read_text()
        assert len(taken.splitlines()) > 1  # some test images, to compare
    assert json.loads((two / "recipe.json").read_text())["pseudo_label"] == base_id

"""`kit distill NAME RUN`: one student trained on RUN's out-of-fold probabilities (and its test
probabilities for the test images), validated on the true labels; a normal run for `kit predict`
and the inference notebook's model dataset; resumed from its recipe; trained across processes;
bad input is one line."""

import contextlib
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

import kit
from competitions import invasive
from kit import distill, pipeline
from kit.cli import main
from kit.ensemble import ensemble
from kit.evaluate.calibration import calibrate
from kit.kaggle.kernel import kernel
from kit.recipe import override
from kit.train import fit
from kit.train.learner import class_weights, loss_function

# one epoch per model, a pinned rate (no finder), no TTA and no plots
FAST = ["--cycles", "1", "--cycle-len", "1", "--cycle-mult", "1", "--lr", "3e-3", "--seed", "3",
        "--no-tta"]  # fmt: skip
TEXT = {"item": str, "label": str, "id": str}
KIT = Path(sys.executable).with_name("kit")


@contextlib.contextmanager
def recorded():
    """kit runs with no plots, each Learner built kept with the data it was built from."""
    seen = []
    build = fit.build_learner

    def spy(r, data, *args, **kw):
        learn = build(r, data, *args, **kw)
        seen.append((data, learn))
        return learn

    with pytest.MonkeyPatch.context() as m:
        m.setattr(pipeline, "interpret", lambda *a, **k: None)
        m.setattr(pipeline, "maps_of", lambda *a, **k: None)
        m.setattr(fit, "build_learner", spy)
        yield seen


def newest(out: Path) -> Path:
    return max((out / "runs" / "mnist").glob("2*"), key=lambda p: p.stat().st_mtime_ns)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A 2-fold teacher and its student, made by `kit distill` (its printed lines and the
    Learner it trained)."""
    out = tmp_path_factory.mktemp("distill")
    common = ["--sample", "--out", str(out), *FAST]
    with recorded():
        assert main(["run", "mnist", "--folds", "2", *common]) == 0
    teacher = newest(out)
    printed = io.StringIO()
    with recorded() as seen, contextlib.redirect_stdout(printed):
        assert main(["distill", "mnist", teacher.name, *common]) == 0
    return out, teacher, newest(out), printed.getvalue(), seen


def columns(classes) -> list[str]:
    return [f"p_{c}" for c in classes]


def test_the_student_learns_the_teachers_probabilities_and_is_scored_on_the_true_labels(runs):
    out, teacher, student, printed, seen = runs
    d = pipeline.prepare("mnist", sample=True, out=out).data
    n, n_test = len(d.x), len(d.test_x)
    ((data, learn),) = seen  # one model, not one per fold
    oof = pd.read_csv(teacher / "oof.csv", dtype=TEXT)
    rows = [d.names.index(i) for i in oof["item"]]
    truth = np.eye(10)[d.y.numpy()[rows]]
    soft = data.soft.numpy()
    target = 0.5 * oof[columns(d.classes)].to_numpy() + 0.5 * truth  # --distill-alpha 0.5
    assert np.allclose(soft[rows], target, atol=1e-5)
    test = pd.read_csv(teacher / "test_preds.csv", dtype=TEXT)[columns(d.classes)].to_numpy()
    assert len(data.x) == n + n_test and torch.equal(data.x[n:], d.test_x)
    assert np.allclose(soft[n:], test, atol=1e-5)  # the test images: the teacher's probabilities

    train, valid = learn.dls.train, learn.dls.valid
    assert train.y is data.soft and set(range(n, n + n_test)) <= set(train.rows.tolist())
    assert not set(valid.rows.tolist()) & set(train.rows.tolist())
    _, yb = next(iter(train))  # training batches: probability vectors
    assert yb.dtype == torch.float32 and yb.shape[1] == 10
    assert (
        torch.allclose(yb.sum(1), torch.ones(len(yb)), atol=1e-3) and (yb.max(1).values < 1).any()
    )
    _, yb = next(iter(valid))  # validation batches: the true labels
    assert yb.dtype == torch.int64 and torch.equal(yb, d.y[valid.rows[: len(yb)]])
    scored = pd.read_csv(student / "valid_preds.csv", dtype=TEXT)
    assert list(scored["label"]) == [d.classes[i] for i in d.y[valid.rows]]

    recipe = json.loads((student / "recipe.json").read_text())
    assert recipe["distill"] == teacher.name and recipe["folds"] == 0
    metrics = json.loads((student / "metrics.json").read_text())
    assert metrics["folds"] == 0 and 0 < metrics["valid_accuracy"] <= 1
    held = len(valid.rows)
    assert (f"distilling {teacher.name}: {n - held} training images learn its out-of-fold "
            f"probabilities (true label's share 0.5), {n_test} test images its test "
            f"probabilities; {held} held out for validation") in printed  # fmt: skip


def same_labels(a: Path, b: Path) -> None:
    assert pd.read_csv(a).equals(pd.read_csv(b))


def test_a_student_predicts_through_kit_predict_and_the_inference_notebooks_model(runs, tmp_path):
    out, _, student, *_ = runs
    out = shutil.copytree(out, tmp_path / "out")
    result = kit.predict("mnist", student.name, out=out)
    assert result["images"] == 360
    same_labels(Path(result["submission"]), student / "submission.csv")
    folder = kernel("mnist", tmp_path / "k", user="someone", predict=student.name, out=out)
    data = json.loads((student / "metrics.json").read_text())["data"]
    shipped = kit.predict("mnist", str(folder / "model" / student.name), data=data,
                          out=tmp_path / "elsewhere")  # fmt: skip
    same_labels(Path(shipped["submission"]), student / "submission.csv")


def test_an_ensembles_targets_are_its_blended_out_of_fold_probabilities(runs, tmp_path):
    """The teacher blended (mean) with a copy of itself whose probabilities are all 0.1."""
    out, teacher, *_ = runs
    out = shutil.copytree(out, tmp_path / "out")
    runs_dir = out / "runs" / "mnist"
    other = shutil.copytree(runs_dir / teacher.name, runs_dir / f"{teacher.name}-flat")
    for name in ("oof.csv", "test_preds.csv"):
        table = pd.read_csv(other / name, dtype=TEXT)
        table[[c for c in table if c.startswith("p_")]] = 0.1
        table.to_csv(other / name, index=False)
    blend = Path(ensemble("mnist", [teacher.name, other.name], "mean", out=out)["run_dir"])
    job = pipeline.prepare("mnist", sample=True, out=out, distill=blend.name, distill_alpha=0.0)
    soft, test = distill.targets(job)
    d, oof = job.data, pd.read_csv(teacher / "oof.csv", dtype=TEXT)
    rows = [d.names.index(i) for i in oof["item"]]
    assert np.allclose(soft[rows], 0.5 * oof[columns(d.classes)].to_numpy() + 0.05, atol=1e-5)
    mine = pd.read_csv(teacher / "test_preds.csv", dtype=TEXT)[columns(d.classes)].to_numpy()
    assert np.allclose(test, 0.5 * mine + 0.05, atol=1e-5)


def test_a_calibrated_teacher_teaches_the_probabilities_it_submits(runs, tmp_path):
    """A log-loss run's temperature (here set by hand) applies to its targets, as to its
    submission."""
    out, teacher, *_ = runs
    out = shutil.copytree(out, tmp_path / "out")
    copy = out / "runs" / "mnist" / teacher.name
    record = json.loads((copy / "metrics.json").read_text())
    (copy / "metrics.json").write_text(
        json.dumps({**record, "calibrated": True, "temperature": 3.0})
    )
    job = pipeline.prepare("mnist", sample=True, out=out, distill=teacher.name, distill_alpha=0.0)
    soft, test = distill.targets(job)
    d, oof = job.data, pd.read_csv(teacher / "oof.csv", dtype=TEXT)
    rows = [d.names.index(i) for i in oof["item"]]
    assert np.allclose(soft[rows], calibrate(oof[columns(d.classes)].to_numpy(), 3.0), atol=1e-5)
    assert soft[rows].max() < oof[columns(d.classes)].to_numpy().max()  # softened
    mine = pd.read_csv(teacher / "test_preds.csv", dtype=TEXT)[columns(d.classes)].to_numpy()
    assert np.allclose(test, calibrate(mine, 3.0), atol=1e-5)


def test_a_resumed_student_is_the_student_again(runs, tmp_path):
    """The student's folder as it was before its first checkpoint, resumed: the same targets
    (rebuilt from recipe.json's --distill) and so the same predictions."""
    out, _, student, *_ = runs
    out = shutil.copytree(out, tmp_path / "out")
    partial = out / "runs" / "mnist" / ".20990101-000000-digitnet.partial"
    partial.mkdir()
    for name in ("recipe.json", "job.json", "folds.csv"):
        shutil.copyfile(student / name, partial / name)
    printed = io.StringIO()
    with recorded(), contextlib.redirect_stdout(printed):
        resumed = kit.run("mnist", resume="20990101-000000-digitnet", out=out)
    assert "distilling " in printed.getvalue()
    again = Path(resumed["run_dir"])
    for name in ("valid_preds.csv", "test_preds.csv"):
        assert (again / name).read_text() == (student / name).read_text(), name


@pytest.mark.parametrize(
    "argv, change, message",
    [
        ([], {"recipe.json": {"name": "invasive"}}, "was trained for invasive, not mnist"),
        ([], "student", "has no out-of-fold probabilities to distill; give a k-fold run"),
        ([], "other items", "other training images than this data's"),
        (["--folds", "3"], {}, "drop --folds 3"),
        (["--pseudo-label", "x"], {}, "--distill and --pseudo-label do not go together"),
        (["--distill-alpha", "1.5"], {}, "--distill-alpha must be between 0 and 1"),
        ([], "unfinished", "is still incomplete"),
        ([], "missing", "no finished run"),
        (["--nproc", "2", "--device", "cpu", "--folds", "3"], {}, "drop --folds 3"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(runs, tmp_path, capsys, argv, change, message):
    out, teacher, student, *_ = runs
    out = shutil.copytree(out, tmp_path / "out")
    runs_dir = out / "runs" / "mnist"
    run = shutil.copytree(runs_dir / teacher.name, runs_dir / f"{teacher.name}-copy").name
    if change == "unfinished":
        (runs_dir / ".20990101-000000-x.partial").mkdir()
        run = "20990101-000000-x"
    elif change == "missing":
        run = "no-such-run"
    elif change == "student":  # one model on a split: no out-of-fold probabilities
        run = student.name
    elif change == "other items":
        oof = pd.read_csv(runs_dir / run / "oof.csv", dtype=TEXT)
        oof.loc[0, "item"] = "not-an-item"
        oof.to_csv(runs_dir / run / "oof.csv", index=False)
    else:
        for file, values in change.items():
            path = runs_dir / run / file
            path.write_text(json.dumps({**json.loads(path.read_text()), **values}))
    before = sorted(p.name for p in runs_dir.iterdir())
    code = main(["distill", "mnist", run, "--sample", "--out", str(out), *argv])
    err = capsys.readouterr().err
    assert code == 1 and message in err and len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in runs_dir.iterdir()) == before


def test_the_students_loss_takes_probability_targets_and_class_indices():
    """Training batches carry probability vectors (MixUp's blend too), validation class indices:
    one loss for both, smoothed and weighted as asked; soft class weights count the targets."""
    r = override(invasive.RECIPE, distill="RUN", label_smoothing=0.1, balance="weights")
    logits, soft = torch.randn(6, 2), torch.softmax(torch.randn(6, 2), 1)
    loss = loss_function(r, torch.tensor([1.0, 3.0]))
    smoothed = 0.9 * soft + 0.05
    expected = -(torch.tensor([1.0, 3.0]) * smoothed * F.log_softmax(logits, 1)).sum(1).mean()
    assert torch.allclose(loss(logits, soft), expected, atol=1e-6)
    hard = torch.tensor([0, 1, 1, 0, 1, 1])
    assert torch.allclose(loss(logits, hard), F.cross_entropy(logits, hard, torch.tensor(
        [1.0, 3.0]), label_smoothing=0.1))  # fmt: skip
    train = SimpleNamespace(y=torch.tensor([[0.9, 0.1], [0.7, 0.3], [0.2, 0.8]]), rows=None,
                            device=torch.device("cpu"))  # fmt: skip
    assert torch.allclose(class_weights(r, train), torch.tensor([3 / 3.6, 3 / 2.4]))


def test_a_student_trains_across_processes_on_the_teachers_targets(runs, tmp_path):
    """--nproc 2: one student, two processes (DDP), each training on its share of every batch
    of the teacher's targets; a normal run of the same digits, validated on the same split."""
    out, teacher, student, *_ = runs
    out = shutil.copytree(out, tmp_path / "out")
    argv = ["distill", "mnist", teacher.name, "--sample", "--out", out, *FAST, "--nproc", "2"]
    done = subprocess.run([KIT, *argv, "--device", "cpu"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f"distilling {teacher.name}:" in done.stdout  # rank 0 says what it learns from
    two = newest(out)
    assert json.loads((two / "recipe.json").read_text())["distill"] == teacher.name
    one, both = (json.loads((p / "metrics.json").read_text()) for p in (student, two))
    assert (one["processes"], both["processes"]) == (1, 2)
    held, alone = (pd.read_csv(p / "valid_preds.csv", dtype=TEXT) for p in (two, student))
    assert held["item"].tolist() == alone["item"].tolist()
    # the processes' shares of validation put together, scored on the true labels
    right = held[columns(range(10))].to_numpy().argmax(1) == held["label"].astype(int).to_numpy()
    assert both["valid_accuracy"] == pytest.approx(right.mean())

"""`kit predict`: finished runs (one model, k folds with snapshots, an ensemble) predicting a test
set without training, compared with what the same runs wrote at training time."""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import kit
from kit.cli import main
from kit.data.augment import tta_views
from kit.data.stream import stream_test_set
from kit.data.submission import read_sample
from kit.ensemble import ensemble
from kit.files import read_json
from kit.kaggle.kernel import kernel
from kit.recipe import saved_recipe
from kit.train.saved import kept_weights, load_models, probabilities

PHOTOS = dict(size=64, head_cycles=1, cycles=1, lr=3e-3)  # tta on: plain and TTA both kept
DIGITS = dict(folds=2, cycles=2, cycle_mult=1, snapshots=True, lr=3e-3, bs=64)


def first_digits(sample: Path, dest: Path, train: int = 480, test: int = 120) -> Path:
    """The first rows of the bundled digits: every model, view and snapshot predicts every
    image, so a third of them take a third of the time (the whole sample: 38 s to set up)."""
    dest.mkdir()
    pd.read_csv(sample / "train.csv").head(train).to_csv(dest / "train.csv", index=False)
    for name in ("test.csv", "sample_submission.csv", "solution.csv"):
        pd.read_csv(sample / name).head(test).to_csv(dest / name, index=False)
    return dest


@pytest.fixture(scope="module")
def runs(tmp_path_factory, mnist_sample):
    """A photo run (one pretrained model), two digit runs on the same 2 folds (the first with
    snapshots) and their stacked ensemble, all in one output folder."""
    out = tmp_path_factory.mktemp("predict")
    photo = kit.run("invasive", sample=True, out=out, **PHOTOS)
    digits = first_digits(mnist_sample, tmp_path_factory.mktemp("digits") / "digit-recognizer")
    a = kit.run("mnist", data=digits, out=out, **DIGITS)
    b = kit.run("mnist", data=digits, out=out, **(DIGITS | dict(snapshots=False, seed=8)))
    ids = [Path(x["run_dir"]).name for x in (a, b)]
    blend = ensemble("mnist", ids, "stack", out=out)
    found = {"photo": photo, "folds": a, "ensemble": blend}
    return out, {k: Path(v["run_dir"]) for k, v in found.items()}


@pytest.fixture
def out(runs, tmp_path):
    """A private copy of the output folder, which a test may add to or spoil."""
    return shutil.copytree(runs[0], tmp_path / "out")


def name_of(run_dir: Path) -> str:
    return run_dir.parent.name


def submissions(out: Path) -> list[Path]:
    return sorted((out / "submissions").rglob("*.csv"))


def same_submission(a: Path, b: Path) -> None:
    """The same ids in the same order, and the same values (labels equal, probabilities within
    float tolerance)."""
    x, y = pd.read_csv(a), pd.read_csv(b)
    assert list(x.columns) == list(y.columns) and x.iloc[:, 0].tolist() == y.iloc[:, 0].tolist()
    for col in x.columns[1:]:
        if x[col].dtype.kind == "f":
            assert np.allclose(x[col], y[col], atol=1e-5), col
        else:
            assert x[col].tolist() == y[col].tolist(), col


@pytest.mark.parametrize("which", ["photo", "folds", "ensemble"])
def test_predict_writes_the_submission_the_run_wrote(runs, out, which):
    run = out / "runs" / name_of(runs[1][which]) / runs[1][which].name
    before = submissions(out)
    result = kit.predict(name_of(run), run.name, out=out)
    written = Path(result["submission"])
    assert written not in before and len(submissions(out)) == len(before) + 1
    assert written.parent == out / "submissions" / name_of(run)
    assert written.name.startswith(f"{run.name}-predict-")
    same_submission(written, run / "submission.csv")
    assert result["images"] == len(pd.read_csv(run / "submission.csv"))


@pytest.mark.parametrize("which", ["photo", "folds"])
def test_saved_models_give_the_runs_test_probabilities_with_and_without_tta(runs, which):
    """Every model the run kept (the best epoch; per fold, the snapshot/SWA choice), fed as at
    training time, gives test_preds.csv's probabilities, plain and with TTA."""
    run = runs[1][which]
    r = saved_recipe(read_json(run / "recipe.json"))
    metrics = read_json(run / "metrics.json")
    folder = Path(metrics["data"])
    test = stream_test_set(folder, r, read_sample(folder), run.name)
    cpu = torch.device("cpu")
    groups = load_models(run, r, len(metrics["classes"]), cpu)
    written = pd.read_csv(run / "test_preds.csv")
    for views, kind in (([None], ""), (tta_views(r), "_tta")):
        probs = probabilities(groups, test.batches(r.bs, cpu), views, r, cpu)
        expected = written[[f"p_{c}{kind}" for c in metrics["classes"]]].to_numpy()
        assert np.allclose(probs, expected, atol=1e-5), kind
    if which == "folds":
        chosen = [read_json(run / f"fold{k}" / "unit.json")["averaging"]["chosen"] for k in (0, 1)]
        assert set(chosen) <= {"last", "snapshots", "swa"}
        assert (run / "fold0" / "swa.pth").exists() == (chosen[0] == "swa")


def test_a_new_test_set_is_predicted_without_any_training_image(runs, out, tmp_path):
    """A code competition's hidden folder: other images under new ids, a new sample, no train/
    and no labels. Copies of public test images get the probabilities the run gave them."""
    run = runs[1]["photo"]
    public = Path(read_json(run / "metrics.json")["data"])
    hidden = tmp_path / "hidden"
    (hidden / "test").mkdir(parents=True)
    old = pd.read_csv(public / "sample_submission.csv")["name"].tolist()
    copies = {f"h{i:04d}": old_id for i, old_id in enumerate(reversed(old[:10]))}
    for new_id, old_id in copies.items():
        shutil.copyfile(public / "test" / f"{old_id}.jpg", hidden / "test" / f"{new_id}.jpg")
    photos = sorted((public / "train").glob("*.jpg"))[:25]
    others = {f"x{i}": p for i, p in enumerate(photos)}
    for new_id, photo in others.items():
        shutil.copyfile(photo, hidden / "test" / f"{new_id}.jpg")
    ids = list(copies) + list(others)
    pd.DataFrame({"name": ids, "invasive": 0.5}).to_csv(hidden / "sample_submission.csv",
                                                          index=False)  # fmt: skip
    runs_before = sorted(p.name for p in (out / "runs" / "invasive").iterdir())

    result = kit.predict("invasive", str(out / "runs" / "invasive" / run.name), data=hidden,
                         out=out)  # fmt: skip
    sub = pd.read_csv(result["submission"])
    assert sub["name"].tolist() == ids and result["images"] == 35
    assert sub["invasive"].between(0, 1).all()
    given = pd.read_csv(run / "submission.csv").set_index("name")["invasive"]
    again = sub.set_index("name")["invasive"]
    for new_id, old_id in copies.items():
        assert again[new_id] == pytest.approx(given[old_id], abs=1e-5)
    assert sorted(p.name for p in (out / "runs" / "invasive").iterdir()) == runs_before


def error(capsys, *argv) -> str:
    code = main(list(map(str, argv)))
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("kit: error: ") and err.count("\n") == 1, err
    return err


def test_bad_input_is_one_line_and_writes_nothing(runs, out, tmp_path, capsys):
    photo, folds = runs[1]["photo"].name, runs[1]["folds"].name
    before = submissions(out)
    where = ["--out", out]

    assert "no finished run 'nope'" in error(capsys, "predict", "mnist", "nope", *where)
    partial = out / "runs" / "mnist" / ".20990101-000000-digitnet.partial"
    partial.mkdir()
    assert "still incomplete" in error(capsys, "predict", "mnist", "20990101-000000-digitnet",
                                       *where)  # fmt: skip
    assert "was trained for invasive, not mnist" in error(
        capsys, "predict", "mnist", out / "runs" / "invasive" / photo, *where
    )

    (damaged,) = kept_weights(out / "runs" / "mnist" / folds / "fold1")[-1:]  # a snapshot or SWA
    damaged.write_bytes(damaged.read_bytes()[:1000])
    assert "cannot be read as a digitnet model" in error(capsys, "predict", "mnist", folds, *where)

    assert "the folder that holds the test images with --data" in error(
        capsys, "predict", "invasive", photo, "--data", tmp_path / "nowhere", *where
    )
    public = Path(read_json(out / "runs" / "invasive" / photo / "metrics.json")["data"])
    grey = shutil.copytree(public, tmp_path / "grey")
    for f in (grey / "test").glob("*.jpg"):
        Image.open(f).convert("L").save(f)
    assert "test images are grey" in error(capsys, "predict", "invasive", photo, "--data", grey,
                                           *where)  # fmt: skip

    other = shutil.copytree(public, tmp_path / "other")
    sample = pd.read_csv(other / "sample_submission.csv")
    sample["extra"] = 0.5
    sample.to_csv(other / "sample_submission.csv", index=False)
    assert "2 value columns" in error(capsys, "predict", "invasive", photo, "--data", other,
                                      *where)  # fmt: skip

    model = out / "runs" / "invasive" / photo / "model.pth"
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    assert "model.pth cannot be read as a tf_efficientnet_lite0 model" in error(
        capsys, "predict", "invasive", photo, *where
    )
    model.unlink()
    assert "model.pth is missing" in error(capsys, "predict", "invasive", photo, *where)
    assert submissions(out) == before


def test_the_model_dataset_holds_what_predict_reads_and_nothing_else(runs, out, tmp_path):
    """`kit kernel --predict` of an ensemble: the blend's records and, beside it, each member's
    records and kept weights; predicting from that folder alone gives the same submission."""
    run = runs[1]["ensemble"]
    folder = kernel("mnist", tmp_path / "k", user="someone", predict=run.name, out=out)
    meta = json.loads((folder / "kernel-metadata.json").read_text())
    assert meta["dataset_sources"] == ["someone/kit-wheels", "someone/kit-mnist-model"]
    assert meta["id"] == "someone/kit-mnist-predict" and meta["enable_internet"] is False
    model = folder / "model"
    shipped = sorted(str(p.relative_to(model)) for p in model.rglob("*") if p.is_file())
    members = [row["run"] for row in read_json(run / "metrics.json")["members"]]
    assert f"{run.name}/recipe.json" in shipped and "dataset-metadata.json" in shipped
    for m in members:
        kept = [p for p in shipped if p.startswith(f"{m}/")]
        assert f"{m}/fold0/unit.json" in kept and f"{m}/oof.csv" in kept
        assert all(Path(p).suffix in (".json", ".csv", ".pth") for p in kept)
        assert not any(p.endswith(("preds.npz", "report.html", ".png", "history.csv"))
                       for p in kept)  # fmt: skip
    elsewhere = tmp_path / "elsewhere"
    result = kit.predict("mnist", str(model / run.name), out=elsewhere,
                         data=read_json(run / "metrics.json")["data"])  # fmt: skip
    same_submission(Path(result["submission"]), run / "submission.csv")
    nb = json.loads((folder / meta["code_file"]).read_text())
    assert 'kit.predict("mnist", os.path.dirname(found[0]))' in "".join(nb["cells"][-1]["source"])

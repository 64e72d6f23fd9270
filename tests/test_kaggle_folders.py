"""Kaggle folders as they really are (issue 18): `kit new NAME --data DIR`, then `kit run NAME`
with the recipe as written, through the CLI; each submission checked against the sample as
text (columns, ids and their order, what each column holds). One tiny run serves each folder:
the folder is what is tested, not the model."""

import csv
import json
import re
import shutil

import kaggle_folders
import layouts_data
import pandas as pd
import pytest
from fake_kaggle import TOKEN, FakeKaggle
from kagglesdk.kaggle_env import KaggleEnv, _env_to_endpoint

from kit.cli import main
from kit.data.folds import assign_folds
from kit.data.layouts import load as read_layout
from kit.recipe import load_competition, override

TINY = ["--lr", "1e-3", "--cycles", "1", "--no-tta", "--bs", "32"]  # one epoch, no finder
WHOLE = re.compile(r"-?(0|[1-9][0-9]*)")


def rows(path) -> list[list[str]]:
    """A CSV's cells as written."""
    with open(path, newline="") as f:
        return list(csv.reader(f))


def matches_sample(sub_path, sample_path, shape: str, classes: list) -> None:
    """The submission as Kaggle's scorer reads it: the sample's header, its ids as written in
    its order, and labels among `classes` written as the sample writes them (whole numbers
    where it writes whole numbers), or probabilities in [0, 1]."""
    sub, sample = rows(sub_path), rows(sample_path)
    assert sub[0] == sample[0]
    assert [r[0] for r in sub[1:]] == [r[0] for r in sample[1:]]
    for j in range(1, len(sample[0])):
        got, shown = [r[j] for r in sub[1:]], [r[j] for r in sample[1:]]
        if shape == "label":
            assert set(got) <= set(classes)
            if all(WHOLE.fullmatch(v) for v in shown):
                assert all(WHOLE.fullmatch(v) for v in got)
        else:
            assert not all(WHOLE.fullmatch(v) for v in got)  # 0.73, never a label
            assert all(0 <= float(v) <= 1 for v in got)


def new_and_run(parent, folder, name, new=(), run=TINY) -> dict:
    """`kit new NAME --data FOLDER`, then `kit run NAME`, in a fresh working folder."""
    work = parent / "work"
    work.mkdir()
    with layouts_data.working_in(work):
        assert main(["new", name, "--data", str(folder), *new]) == 0
        assert main(["run", name, *run]) == 0
        recipe = load_competition(name).RECIPE
    (run_dir,) = (work / "runs" / name).iterdir()
    (sub,) = (work / "submissions" / name).glob("*.csv")
    path = next((work / "competitions").glob("*.py"))
    return dict(folder=folder, work=work, recipe=recipe, run_dir=run_dir, submission=sub,
                text=path.read_text(), file=path,
                metrics=json.loads((run_dir / "metrics.json").read_text()))  # fmt: skip


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """Each folder written once, `kaggle_folders.write(name, ...)`, for the tests to share."""
    cache = {}

    def folder(name):
        if name not in cache:
            cache[name] = kaggle_folders.write(name, tmp_path_factory.mktemp(name))
        return cache[name]

    return folder


def spoiled_run(source, tmp_path, capsys, spoil, new=()) -> str:
    """Copy `source`, write its recipe, spoil the copy, run: the one line of error; nothing is
    written."""
    folder = shutil.copytree(source, tmp_path / source.name)
    with layouts_data.working_in(tmp_path):
        assert main(["new", "x", "--data", str(folder), *new]) == 0
        spoil(folder)
        capsys.readouterr()
        code = main(["run", "x", *TINY])
    err = capsys.readouterr().err.strip()
    assert code == 1 and err.splitlines() == [err] and err.startswith("kit: error: ")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.csv"))
    assert not (tmp_path / "submissions").exists()
    return err


# --- 1, 6, 11: Kannada-MNIST, typed as its slug: Dig-MNIST.csv beside train.csv, text ids ----


@pytest.fixture(scope="module")
def kannada(made, tmp_path_factory):
    """`kit new Kannada-MNIST`, two 2-fold runs under that name, their ensemble and a
    prediction with the first."""
    folds = [*TINY, "--folds", "2"]
    ran = new_and_run(tmp_path_factory.mktemp("kannada"), made("kannada"), "Kannada-MNIST",
                      run=folds)  # fmt: skip
    with layouts_data.working_in(ran["work"]):
        assert main(["run", "Kannada-MNIST", *folds, "--seed", "2"]) == 0
        runs = sorted(p.name for p in (ran["work"] / "runs" / "Kannada-MNIST").iterdir())
        assert main(["ensemble", "Kannada-MNIST", *runs, "--method", "mean"]) == 0
        assert main(["predict", "Kannada-MNIST", runs[0]]) == 0
    return ran | {"runs": runs}


def test_train_csv_is_the_training_set_and_the_other_labelled_csv_is_named(kannada):
    r = kannada["recipe"]
    assert r.labels_csv == "train.csv" and r.layout == "pixels"
    assert (
        "labels_csv='train.csv',  # the training set; also labelled, left out: Dig-MNIST.csv"
        in (kannada["text"])
    )
    d = read_layout(kannada["folder"], r)
    assert len(d.x) == len(pd.read_csv(kannada["folder"] / "train.csv"))  # not Dig-MNIST's 80
    assert d.classes == [str(k) for k in range(10)]


def test_pixel_ids_stay_text_in_every_submission(kannada):
    """00000... as test.csv writes them: the run's, the ensemble's and kit predict's."""
    work, sample = kannada["work"], kannada["folder"] / "sample_submission.csv"
    subs = sorted((work / "submissions" / "Kannada-MNIST").glob("*.csv"))
    assert len(subs) == 4  # two runs, the ensemble, the prediction
    for sub in subs:
        matches_sample(sub, sample, "label", [str(k) for k in range(10)])
    assert rows(subs[0])[1][0] == "00000"


def test_a_recipe_named_as_its_slug_works_in_every_command(kannada, monkeypatch, tmp_path, capsys):
    """Written to Kannada_MNIST.py, run, ensembled, predicted, listed and submitted as typed;
    every file submitted is checked against the sample, a predicted one with its run's score."""
    assert kannada["file"].name == "Kannada_MNIST.py" and kannada["recipe"].name == "Kannada-MNIST"
    assert {p.name for p in (kannada["work"] / "runs" / "Kannada-MNIST").iterdir()} >= set(
        kannada["runs"]
    )
    with layouts_data.working_in(kannada["work"]):
        assert main(["list"]) == 0
        assert any(
            line.startswith("Kannada-MNIST ") for line in capsys.readouterr().out.split("\n")
        )
        assert main(["runs", "Kannada-MNIST"]) == 0
        assert "ensemble-mean" in capsys.readouterr().out
    fake = FakeKaggle()
    try:
        monkeypatch.setitem(_env_to_endpoint, KaggleEnv.PROD, fake.url)
        for var in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_CONFIG_DIR", "KAGGLE_KERNEL_RUN_TYPE"):
            monkeypatch.delenv(var, raising=False)
        monkeypatch.setenv("HOME", str(tmp_path))
        monkeypatch.setenv("KAGGLE_API_TOKEN", TOKEN)
        monkeypatch.setattr("kit.kaggle.competition.POLL_SECONDS", 0.01)
        fake.zips["Kannada-MNIST"] = b"-"
        subs = sorted((kannada["work"] / "submissions" / "Kannada-MNIST").glob("*.csv"))
        own = tmp_path / "mine.csv"  # no run wrote it: checked against the sample kit new found
        own.write_bytes(subs[0].read_bytes())
        with layouts_data.working_in(kannada["work"]):
            for sub in [*subs, own]:
                code = main(["submit", "Kannada-MNIST", str(sub)])
                assert code == 0, capsys.readouterr().err
        assert fake.calls("PUT") == [sub.read_bytes() for sub in [*subs, own]]
        said = re.findall(r"submitting \S+ to Kannada-MNIST: '([^']*)'", capsys.readouterr().out)
        assert [m.startswith("kit ") and ": valid acc" in m for m in said] == [True] * 4 + [False]
        first = kannada["work"] / "runs" / "Kannada-MNIST" / kannada["runs"][0]
        filed = json.loads((first / "submissions.json").read_text())
        mine = [s.name for s in subs if s.stem.startswith(first.name)]  # its own and predicted
        assert len(mine) == 2 and sorted(e["file"].split("/")[-1] for e in filed) == mine
    finally:
        fake.close()


def test_names_that_cannot_be_a_file_are_refused_in_one_line(tmp_path, capsys, made):
    with layouts_data.working_in(tmp_path):
        assert main(["new", "dog breed", "--data", str(made("kannada"))]) == 1
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and "dog-breed-identification works" in err
    assert not (tmp_path / "competitions").exists()


# --- 2: SIIM-ISIC: metadata columns, jpeg/train and jpeg/test, patients ----------------------


@pytest.fixture(scope="module")
def siim(made, tmp_path_factory):
    return new_and_run(tmp_path_factory.mktemp("siim"), made("siim"), "siim")


def test_the_label_is_the_column_the_sample_names_and_patients_group(siim):
    r = siim["recipe"]
    assert (r.labels_csv, r.id_col, r.label_col, r.group_col) == (
        "train.csv", "image_name", "target", "patient_id")  # fmt: skip
    assert (r.train_dir, r.test_dir, r.ext) == ("jpeg/train", "jpeg/test", ".jpg")
    assert (r.metric, r.sub_shape) == ("auc", "probability")
    matches_sample(siim["submission"], siim["folder"] / "sample_submission.csv", r.sub_shape, [])


def test_no_patient_is_on_both_sides_of_a_fold(siim):
    train = pd.read_csv(siim["folder"] / "train.csv", dtype=str)
    patient = dict(zip(train["image_name"] + ".jpg", train["patient_id"]))
    split = pd.read_csv(siim["run_dir"] / "folds.csv", dtype=str)  # the run's validation split
    assert set(split["fold"]) == {"0", "1"}
    assert (split.groupby(split["item"].map(patient))["fold"].nunique() == 1).all()
    d = read_layout(siim["folder"], siim["recipe"])
    fold = assign_folds(d, override(siim["recipe"], folds=3), siim["folder"])
    by_patient = pd.Series(fold).groupby(pd.Series(d.groups)).nunique()
    assert set(fold) == {0, 1, 2} and (by_patient == 1).all()


# --- 4: the sample and the labels CSV under other names, zipped --------------------------------

NAMES = [
    ("sampleSubmission.csv", "train.csv"),
    ("sample_submission_v2.csv", "labels.csv"),
    ("sample_submission.csv.zip", "train_labels.csv"),
    ("sample_submission_v2.csv.zip", "train_v2.csv"),
]


@pytest.fixture(scope="module")
def cactus(tmp_path_factory):
    return layouts_data.write("cactus", tmp_path_factory.mktemp("cactus"))


@pytest.mark.parametrize("sample, labels", NAMES)
def test_the_sample_and_labels_under_other_names(sample, labels, cactus, tmp_path):
    folder = shutil.copytree(cactus, tmp_path / cactus.name)
    kaggle_folders.renamed(folder, sample, labels)
    run = TINY if labels == "train_v2.csv" else None  # one of them trained, as a user would
    with layouts_data.working_in(tmp_path):
        assert main(["new", "cactus", "--data", str(folder)]) == 0
        r = load_competition("cactus").RECIPE
        assert r.labels_csv == labels and r.sub_shape == "probability"
        d = read_layout(folder, r)
        expected = rows(folder / sample.removesuffix(".zip"))
        assert d.test_ids == [row[0] for row in expected[1:]]
        if run:
            assert main(["run", "cactus", *run]) == 0
            (sub,) = (tmp_path / "submissions" / "cactus").glob("*.csv")
            matches_sample(sub, folder / sample.removesuffix(".zip"), r.sub_shape, [])


@pytest.mark.parametrize("train, test", [("jpeg/train", "jpeg/test"), ("train-jpg", "test-jpg"),
                                         ("train_images", "test_images")])  # fmt: skip
def test_image_folders_under_other_names(train, test, cactus, tmp_path):
    """SIIM-ISIC's jpeg/train/, Planet's train-jpg/, APTOS's train_images/."""
    folder = shutil.copytree(cactus, tmp_path / cactus.name)
    for old, new in (("train/train", train), ("test/test", test)):
        (folder / new).parent.mkdir(parents=True, exist_ok=True)
        (folder / old).rename(folder / new)
    with layouts_data.working_in(tmp_path):
        assert main(["new", "cactus", "--data", str(folder)]) == 0
        r = load_competition("cactus").RECIPE
    assert (r.train_dir, r.test_dir) == (train, test)
    d = read_layout(folder, r)
    assert d.test_ids == [row[0] for row in rows(folder / "sample_submission.csv")[1:]]


# --- 5: Plant Pathology 2020: training and test images in one folder --------------------------


@pytest.fixture(scope="module")
def plant(made, tmp_path_factory):
    return new_and_run(tmp_path_factory.mktemp("plant"), made("plant"), "plant",
                       new=["--metric", "auc"])  # fmt: skip


def test_test_images_beside_the_training_images_are_told_apart_by_the_csvs(plant):
    r = plant["recipe"]
    assert (r.train_dir, r.test_dir, r.ext, r.label_col) == ("images", "images", ".jpg", "label")
    assert r.sub_shape == "probabilities"
    d = read_layout(plant["folder"], r)
    assert len(d.x) == 160 and len(d.test_x) == 40  # of the 200 images in images/
    matches_sample(plant["submission"], plant["folder"] / "sample_submission.csv", r.sub_shape, [])
    assert "test_auc" in plant["metrics"]  # multi-class AUC over the held-out labels


def test_a_sample_id_with_no_image_in_the_shared_folder_is_one_line(made, tmp_path, capsys):
    err = spoiled_run(made("plant"), tmp_path, capsys,
                      lambda f: (f / "images" / "Test_3.jpg").unlink())  # fmt: skip
    assert "sample_submission.csv names 1 images missing from images/, e.g. Test_3.jpg" in err


# --- 6, 7: APTOS: all-digit hex ids, integer grades; classes named by number ------------------


@pytest.fixture(scope="module")
def aptos(made, tmp_path_factory):
    return new_and_run(tmp_path_factory.mktemp("aptos"), made("aptos"), "aptos")


def test_all_digit_ids_keep_their_leading_zero(aptos):
    r = aptos["recipe"]
    assert (r.id_col, r.label_col, r.metric, r.ext) == ("id_code", "diagnosis", "qwk", ".png")
    sample = aptos["folder"] / "sample_submission.csv"
    assert all(row[0].startswith("0") and row[0].isdigit() for row in rows(sample)[1:])
    assert read_layout(aptos["folder"], r).test_ids == [row[0] for row in rows(sample)[1:]]
    matches_sample(aptos["submission"], sample, "label", ["0", "1", "2", "3", "4"])
    assert "test_qwk" in aptos["metrics"]  # solution.csv's ids matched as text too


def test_labels_written_as_decimals_are_written_as_the_sample_writes_them(made, tmp_path):
    folder = shutil.copytree(made("aptos"), tmp_path / "aptos2019-blindness-detection")
    train = pd.read_csv(folder / "train.csv", dtype=str)
    train["diagnosis"] = train["diagnosis"] + ".0"  # 2.0: a CSV saved with a missing value
    train.to_csv(folder / "train.csv", index=False)
    with layouts_data.working_in(tmp_path):
        assert main(["new", "aptos", "--data", str(folder)]) == 0
        assert read_layout(folder, load_competition("aptos").RECIPE).classes == list("01234")


@pytest.fixture(scope="module")
def numbered(made, tmp_path_factory):
    return new_and_run(tmp_path_factory.mktemp("numbered"), made("numbered"), "numbered",
                       new=["--metric", "qwk"])  # fmt: skip


def test_classes_named_by_number_are_grades_in_numeric_order(numbered):
    classes = [str(k) for k in range(12)]
    assert numbered["metrics"]["classes"] == classes  # 10 after 9: QWK's grades
    sample = numbered["folder"] / "sample_submission.csv"
    matches_sample(numbered["submission"], sample, "label", classes)
    assert [row[0] for row in rows(numbered["submission"])[1:3]] == ["0160", "0161"]


def test_labels_the_sample_cannot_write_stop_before_training(made, tmp_path, capsys):
    err = spoiled_run(made("numbered"), tmp_path, capsys,
                      lambda f: (f / "train" / "11").rename(f / "train" / "eleven"),
                      new=["--metric", "qwk"])  # fmt: skip
    assert "sample_submission.csv writes label as whole numbers (e.g. 0)" in err
    assert "'eleven'" in err

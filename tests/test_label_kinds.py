"""One-hot, multi-label and top-k competitions (Plant Pathology, Planet, Humpback Whale):
`kit new` then `kit run` with the recipe as written, through the CLI, each submission checked
against the sample as text; for the multi-label kind also folds, an ensemble and `kit predict`."""

import json
import re
import shutil

import label_kinds_data
import layouts_data
import pandas as pd
import pytest

import kit
from kit.cli import main
from kit.recipe import load_competition

# What `kit new` must find in each folder (recipe fields as written in the file).
EXPECTED = {
    "pathology": dict(layout="csv", metric="mauc", train_dir="images", test_dir="images",
                      label_col="healthy,multiple_diseases,rust,scab", multi_label=False,
                      ext=".jpg", sub_shape="probabilities"),
    "planet": dict(layout="csv", labels_csv="train_v2.csv", id_col="image_name", label_col="tags",
                   multi_label=True, metric="f2", train_dir="train-jpg", test_dir="test-jpg",
                   ext=".jpg", sub_shape="tags"),
    "whales": dict(layout="csv", id_col="Image", label_col="Id", metric="map5", multi_label=False,
                   sub_shape="top_k", top_k=5, ext=""),
}  # fmt: skip
TINY = ["--lr", "3e-3", "--cycles", "1", "--bs", "32"]  # one epoch at a pinned rate
# the fold runs at the images' own 32 px, no head stage: what they check is the folds, the blend
# and predict, not the recipe's size (96 px took 4x as long)
FOLD_RUN = [*TINY, "--folds", "2", "--size", "32", "--head-cycles", "0"]


@pytest.fixture(scope="module")
def kind_runs(tmp_path_factory):
    """kind name -> `kit new NAME --data DIR`, then `kit run NAME` (tiny), in a fresh working
    folder; each made once, when a test first asks for it."""
    made = {}

    def run(name: str) -> dict:
        if name not in made:
            parent = tmp_path_factory.mktemp(name)
            folder = label_kinds_data.write(name, parent)
            work = parent / "work"
            work.mkdir()
            with layouts_data.working_in(work):
                assert main(["new", name, "--data", str(folder)]) == 0
                assert main(["run", name, *TINY]) == 0
                recipe = load_competition(name).RECIPE
            (run_dir,) = (work / "runs" / name).iterdir()
            metrics = json.loads((run_dir / "metrics.json").read_text())
            made[name] = {"name": name, "folder": folder, "work": work, "run_dir": run_dir,
                          "recipe": recipe, "metrics": metrics}  # fmt: skip
        return made[name]

    return run


@pytest.fixture(params=list(label_kinds_data.KINDS))
def kind_run(request, kind_runs):
    return kind_runs(request.param)


def test_kit_new_reads_the_label_kind(kind_run):
    r = kind_run["recipe"]
    for field, value in EXPECTED[kind_run["name"]].items():
        assert getattr(r, field) == value, field


def rows(path) -> list[tuple[str, str]]:
    """A CSV's lines as (id, the rest), as Kaggle's scorer reads the text."""
    lines = path.read_text().splitlines()
    return [tuple(line.split(",", 1)) for line in lines]


def test_the_submission_matches_the_sample_as_text(kind_run):
    name, folder = kind_run["name"], kind_run["folder"]
    (path,) = (kind_run["work"] / "submissions" / name).glob("*.csv")
    got, sample = rows(path), rows(folder / "sample_submission.csv")
    assert got[0] == sample[0]  # the header, as written
    assert [i for i, _ in got[1:]] == [i for i, _ in sample[1:]]  # ids as written, in order
    values = [v for _, v in got[1:]]
    classes = [str(c) for c in kind_run["metrics"]["classes"]]
    if name == "pathology":  # one probability per disease, in the sample's column order
        probs = [[float(p) for p in v.split(",")] for v in values]
        assert all(len(p) == 4 and all(0 <= x <= 1 for x in p) for p in probs)
        assert all(abs(sum(p) - 1) < 1e-4 for p in probs)
    elif name == "planet":  # one or more tags, space-separated, none twice
        assert all(re.fullmatch(r"[a-z_]+( [a-z_]+)*", v) for v in values)
        tags = [v.split(" ") for v in values]
        assert all(set(t) <= set(classes) and len(set(t)) == len(t) for t in tags)
    else:  # the 5 likeliest whales, best first, as the run's test probabilities rank them
        labels = [v.split(" ") for v in values]
        assert all(len(set(w)) == 5 and set(w) <= set(classes) for w in labels)
        kind = "_tta" if kind_run["metrics"]["submitted"] == "tta" else ""
        preds = pd.read_csv(kind_run["run_dir"] / "test_preds.csv")
        probs = preds[[f"p_{c}{kind}" for c in classes]].to_numpy()
        assert [w[0] for w in labels] == [classes[i] for i in probs.argmax(1)]


def test_it_scores_on_held_out_labels(kind_run):
    m, metrics = kind_run["recipe"].metric, kind_run["metrics"]
    assert 0 <= metrics[f"valid_{m}"] <= 1 and 0 <= metrics[f"test_{m}"] <= 1
    if m == "f2":  # at 0.5 an undertrained model lists one tag; tuned thresholds list more
        assert metrics["thresholded"] and len(metrics["thresholds"]) == 6
        assert metrics["f2_after_thresholds"] > metrics["f2_before_thresholds"]
        assert metrics["test_f2"] > 0.5


def test_kit_predict_writes_the_submission_the_run_wrote(kind_run):
    """The saved model through the loss's activation (a sigmoid per tag for Planet) and the run's
    tuned thresholds: the same submission, to the byte for labels."""
    run, work = kind_run["run_dir"], kind_run["work"]
    result = kit.predict(kind_run["name"], run.name, out=work)
    same_submission(result["submission"], run / "submission.csv")


def same_submission(a, b):
    x, y = pd.read_csv(a), pd.read_csv(b)
    assert list(x.columns) == list(y.columns) and x.iloc[:, 0].tolist() == y.iloc[:, 0].tolist()
    for col in x.columns[1:]:
        if x[col].dtype.kind == "f":
            assert (abs(x[col] - y[col]) < 1e-5).all(), col
        else:
            assert x[col].tolist() == y[col].tolist(), col


def test_whales_seen_once_train(kind_runs):
    """No whale is left out of training for being too small to stratify."""
    kind_run = kind_runs("whales")
    train = pd.read_csv(kind_run["folder"] / "train.csv")
    folds = pd.read_csv(kind_run["run_dir"] / "folds.csv").set_index("item")["fold"]
    counts = train["Id"].value_counts()
    once = train[train["Id"].isin(counts[counts == 1].index)]
    assert len(once) >= 3 and (folds[once["Image"]] == 1).all()  # fold 0 validates
    assert set(kind_run["metrics"]["classes"]) == set(train["Id"])


def test_multi_label_interpretation_and_report(kind_runs):
    run = kind_runs("planet")["run_dir"]
    per_tag = pd.read_csv(run / "per_tag.csv")
    assert per_tag["tag"].tolist() == label_kinds_data.TAGS
    assert list(per_tag.columns) == ["tag", "images", "predicted", "precision", "recall", "false",
                                     "missed"]  # fmt: skip
    assert per_tag["images"].sum() == pd.read_csv(run / "valid_preds.csv")["label"].str.split(
    ).str.len().sum()  # fmt: skip
    assert (run / "top_losses.png").is_file() and len(list(run.glob("class_*.png"))) == 6
    assert not (run / "confusion_matrix.png").exists()
    page = (run / "report.html").read_text()
    assert "Per tag" in page and "at per-tag thresholds (out of sample)" in page


def test_multi_label_folds_and_an_ensemble(kind_runs, capsys):
    """Two 2-fold runs (with and without TTA) stacked per tag: out-of-fold thresholds, a checked
    tags submission, and `kit predict` of the ensemble giving that same submission."""
    work, name = kind_runs("planet")["work"], "planet"
    with layouts_data.working_in(work):
        for extra in ([], ["--no-tta", "--seed", "2"]):
            assert main(["run", name, *FOLD_RUN, *extra]) == 0
        runs = sorted(p.name for p in (work / "runs" / name).iterdir() if (p / "oof.csv").is_file())
        assert main(["ensemble", name, *runs, "--method", "stack"]) == 0
        assert main(["ensemble", name, *runs, "--tune-threshold"]) == 1
    assert "tunes a threshold per tag by itself" in capsys.readouterr().err
    (blend,) = (work / "runs" / name).glob("*ensemble-stack")
    metrics = json.loads((blend / "metrics.json").read_text())
    assert len(metrics["thresholds"]) == 6 and "f2_after_thresholds" in metrics
    oof = pd.read_csv(blend / "oof.csv")
    assert len(oof) == 200 and set(oof["fold"]) == {0, 1}
    assert oof["label"].str.split().map(lambda t: set(t) <= set(label_kinds_data.TAGS)).all()
    with layouts_data.working_in(work):  # an ensemble's submission follows the recipe found here
        result = kit.predict(name, blend.name, out=work)
    same_submission(result["submission"], blend / "submission.csv")


# --- bad input: one line, a non-zero exit, nothing written ---


def run_spoiled(source, tmp_path, capsys, spoil, run_args=()):
    """Copy `source`, write its recipe, spoil the copy, run: (exit code, stderr line)."""
    folder = shutil.copytree(source, tmp_path / source.name)
    with layouts_data.working_in(tmp_path):
        assert main(["new", "x", "--data", str(folder)]) == 0
        spoil(folder)
        capsys.readouterr()
        code = main(["run", "x", *run_args])
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and err.startswith("kit: error: ")
    assert not (tmp_path / "submissions").exists()
    return code, err


def set_row(csv, row, **values):
    df = pd.read_csv(csv)
    for col, v in values.items():
        df.loc[row, col] = v
    df.to_csv(csv, index=False)


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    parent = tmp_path_factory.mktemp("sources")
    return {"pathology": label_kinds_data.write("pathology", parent),
            "planet": label_kinds_data.write("planet", parent),
            "cactus": layouts_data.write("cactus", parent)}  # fmt: skip


BAD = {
    "a one-hot row of zeros": (
        "pathology", lambda f: set_row(f / "train.csv", 4, healthy=0, multiple_diseases=0, rust=0,
                                       scab=0), (),
        "train.csv row 6 has no class: each of healthy, multiple_diseases, rust, scab is 0"),
    "a one-hot row of two ones": (
        "pathology", lambda f: set_row(f / "train.csv", 7, healthy=0, multiple_diseases=0, rust=1,
                                       scab=1), (),
        "train.csv row 9 has 2 classes (rust, scab): the labels are multi-label; set "
        "multi_label=True in the recipe (or pass --multi-label)"),
    "an empty tags row": (
        "planet", lambda f: set_row(f / "train_v2.csv", 3, tags=""), (),
        "train_v2.csv has no tags on row 5"),
    "map5 on a binary task": (
        "cactus", lambda f: None, ("--metric", "map5"),
        "--metric map5 scores the 5 likeliest of many classes; this task has 2 (0, 1): use auc, "
        "logloss or accuracy"),
}  # fmt: skip


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_line(case, sources, tmp_path, capsys):
    which, spoil, args, message = BAD[case]
    code, err = run_spoiled(sources[which], tmp_path, capsys, spoil, args)
    assert code == 1 and message in err, err


def test_kit_new_reads_k_and_map_at_k_off_the_sample(tmp_path):
    """Without a known slug: a sample listing 5 labels per image means the 5 likeliest, scored
    by MAP@5."""
    folder = label_kinds_data.write("whales", tmp_path)
    with layouts_data.working_in(tmp_path):
        assert main(["new", "x", "--data", str(folder), "--slug", "some-whales"]) == 0
        r = load_competition("x").RECIPE
    assert (r.metric, r.sub_shape, r.top_k) == ("map5", "top_k", 5)
    text = (tmp_path / "competitions" / "x.py").read_text()
    assert "metric='map5',  # sample_submission.csv lists 5 labels per image" in text

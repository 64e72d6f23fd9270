"""`kit submit` checks a run's file by the rules the run wrote it by (its saved recipe.json, the
flags it ran with), not by the recipe as packaged: a tiny real run per flag, through the CLI,
then the upload to the fake Kaggle; and a file in the packaged recipe's shape is refused."""

import re
from pathlib import Path

import label_kinds_data
import layouts_data
import pandas as pd
import pytest
from fake_kaggle import TOKEN, FakeKaggle
from kagglesdk.kaggle_env import KaggleEnv, _env_to_endpoint

from kit.cli import main

TINY = ["--lr", "3e-3", "--cycles", "1", "--bs", "32", "--no-tta"]  # one epoch, pinned rate


@pytest.fixture
def kaggle(monkeypatch, tmp_path):
    """The fake Kaggle, signed in, with every competition these tests submit to."""
    fake = FakeKaggle()
    monkeypatch.setitem(_env_to_endpoint, KaggleEnv.PROD, fake.url)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("KAGGLE_API_TOKEN", TOKEN)
    monkeypatch.delenv("KIT_DATA", raising=False)
    monkeypatch.setattr("kit.kaggle.competition.POLL_SECONDS", 0.01)
    yield fake
    fake.close()


def edit(recipe: Path, **fields) -> None:
    """Set recipe fields in the file `kit new` wrote, as a user edits it."""
    text = recipe.read_text()
    for field, value in fields.items():
        line = f"    {field}={value!r},"
        text, n = re.subn(rf"^    {field}=.*$", line, text, flags=re.M)
        if not n:
            text = text.replace("\n)\n", f"\n{line}\n)\n")
    recipe.write_text(text)


def trained(tmp_path, writer, layout: str, flags: list, **fields) -> tuple[Path, Path]:
    """`kit new` on a small folder of `layout` (its recipe edited by `fields`), then a tiny
    `kit run` with `flags`: the working folder and the run's submission."""
    folder = writer.write(layout, tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    with layouts_data.working_in(work):
        assert main(["new", layout, "--data", str(folder)]) == 0
        edit(work / "competitions" / f"{layout}.py", **fields)
        assert main(["run", layout, *TINY, *flags]) == 0
    (sub,) = (work / "submissions" / layout).glob("*.csv")
    return work, sub


def submit(capsys, work: Path, layout: str) -> tuple[int, str, str]:
    capsys.readouterr()
    with layouts_data.working_in(work):
        code = main(["submit", layout, "--no-wait"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def uploaded(kaggle) -> list[bytes]:
    return kaggle.calls("PUT")


def refused(kaggle, code: int, err: str) -> bool:
    return (
        code == 1
        and "does not match" in err
        and "nothing was uploaded" in err
        and not (kaggle.calls("StartSubmissionUpload"))
    )


def respell(sub: Path, column: str, values) -> None:
    """Write the run's file again with `column` holding `values`, as a user might."""
    df = pd.read_csv(sub, dtype=str, keep_default_na=False)
    df[column] = values
    df.to_csv(sub, index=False)


def test_a_sub_shape_label_run_is_checked_as_labels(kaggle, tmp_path, capsys):
    """Cactus as packaged submits the probability of a cactus; this run submits 0/1 labels."""
    work, sub = trained(tmp_path, layouts_data, "cactus", ["--sub-shape", "label"])
    assert set(pd.read_csv(sub, dtype=str)["has_cactus"]) <= {"0", "1"}
    kaggle.zips["aerial-cactus-identification"] = b"-"
    code, out, err = submit(capsys, work, "cactus")
    assert code == 0, err
    assert "one of 2 labels in has_cactus" in out
    assert uploaded(kaggle) == [sub.read_bytes()]

    kaggle.received.clear()
    respell(sub, "has_cactus", "0.25")  # what the packaged recipe submits: refused for this run
    code, _, err = submit(capsys, work, "cactus")
    assert refused(kaggle, code, err), err


@pytest.mark.parametrize(
    "recipe_metric, run_metric, spoilt",
    [("auc", "accuracy", "0.25"), ("accuracy", "auc", "1")],
)
def test_a_metric_flag_is_checked_by_the_shape_it_submits(
    kaggle, tmp_path, capsys, recipe_metric, run_metric, spoilt
):
    """A recipe that leaves the shape to the metric (sub_shape auto): a --metric accuracy run
    submits labels, a --metric auc run probabilities; the message scores the run's metric."""
    work, sub = trained(tmp_path, layouts_data, "cactus", ["--metric", run_metric],
                        sub_shape="auto", metric=recipe_metric)  # fmt: skip
    kaggle.zips["aerial-cactus-identification"] = b"-"
    code, out, err = submit(capsys, work, "cactus")
    assert code == 0, err
    said = "one of 2 labels" if run_metric == "accuracy" else "the probability of class '1'"
    assert said in out
    assert uploaded(kaggle) == [sub.read_bytes()]
    message = kaggle.calls("CreateSubmission")[0]["submissionDescription"]
    assert message.startswith(f"kit {sub.stem}: valid {run_metric} ")

    kaggle.received.clear()
    respell(sub, "has_cactus", spoilt)  # the other shape, which the packaged recipe submits
    code, _, err = submit(capsys, work, "cactus")
    assert refused(kaggle, code, err), err


def test_a_multi_label_run_is_checked_as_tags(kaggle, tmp_path, capsys):
    """Planet's recipe edited to one label per image; the run with --multi-label submits tags."""
    work, sub = trained(tmp_path, label_kinds_data, "planet", ["--multi-label", "--metric", "f2"],
                        multi_label=False, metric="accuracy", sub_shape="auto")  # fmt: skip
    assert pd.read_csv(sub, dtype=str)["tags"].str.contains(" ").any()
    kaggle.zips["planet-understanding-the-amazon-from-space"] = b"-"
    code, out, err = submit(capsys, work, "planet")
    assert code == 0, err
    assert "the tags (of 6) in tags" in out
    assert uploaded(kaggle) == [sub.read_bytes()]


def test_a_top_k_run_is_checked_for_its_k(kaggle, tmp_path, capsys):
    """Humpback Whale's recipe lists 5 whales per image; the run with --top-k 3 lists 3."""
    work, sub = trained(tmp_path, label_kinds_data, "whales", ["--top-k", "3"])
    ids = pd.read_csv(sub, dtype=str)["Id"]
    assert (ids.str.split().str.len() == 3).all()
    kaggle.zips["humpback-whale-identification"] = b"-"
    code, out, err = submit(capsys, work, "whales")
    assert code == 0, err
    assert "the 3 likeliest of" in out
    assert uploaded(kaggle) == [sub.read_bytes()]

    kaggle.received.clear()
    classes = sorted({w for row in ids for w in row.split()})
    five = [" ".join([*row.split(), *[c for c in classes if c not in row.split()][:2]])
            for row in ids]  # fmt: skip
    respell(sub, "Id", five)  # 5 whales a row, as the packaged recipe submits
    code, _, err = submit(capsys, work, "whales")
    assert refused(kaggle, code, err), err
    assert "holds 5 labels on row 1; a top-3 submission holds 3" in err


def test_a_positive_run_is_submitted_as_the_probability_of_its_class(kaggle, tmp_path, capsys):
    """Dogs vs Cats submits the probability of a dog; the run with --positive cat, of a cat.
    The file alone cannot tell the two apart: what is checked and sent names the run's class."""
    work, sub = trained(tmp_path, layouts_data, "dogscats", ["--positive", "cat"])
    kaggle.zips["dogs-vs-cats-redux-kernels-edition"] = b"-"
    code, out, err = submit(capsys, work, "dogscats")
    assert code == 0, err
    assert "the probability of class 'cat' in label" in out
    assert uploaded(kaggle) == [sub.read_bytes()]


def test_an_ensemble_submits_and_is_checked_as_its_members_do(kaggle, tmp_path, capsys):
    """Two k-fold runs with --sub-shape label: their ensemble writes labels, as they do (not
    the packaged recipe's probabilities), and `kit submit` checks it so; an ensemble of runs
    that write different submissions is one line."""
    label = ["--sub-shape", "label", "--folds", "2"]
    work, _ = trained(tmp_path, layouts_data, "cactus", label)
    with layouts_data.working_in(work):
        assert main(["run", "cactus", *TINY, *label, "--seed", "1"]) == 0
        assert main(["run", "cactus", *TINY, "--folds", "2", "--seed", "2"]) == 0
    runs = sorted(p.name for p in (work / "runs" / "cactus").iterdir())
    capsys.readouterr()
    with layouts_data.working_in(work):
        assert main(["ensemble", "cactus", runs[2], runs[0]]) == 1
    assert (
        "write different submissions (sub_shape 'probability' and 'label')"
        in capsys.readouterr().err
    )
    with layouts_data.working_in(work):
        assert main(["ensemble", "cactus", runs[0], runs[1]]) == 0
    (sub,) = (work / "submissions" / "cactus").glob("*ensemble*.csv")
    assert set(pd.read_csv(sub, dtype=str)["has_cactus"]) <= {"0", "1"}
    kaggle.zips["aerial-cactus-identification"] = b"-"
    code, out, err = submit(capsys, work, "cactus")  # the newest file: the ensemble's
    assert code == 0, err
    assert "one of 2 labels in has_cactus" in out
    assert uploaded(kaggle) == [sub.read_bytes()]

"""CSVs as competitions ship them: in another encoding (with a note), with a BOM or
Windows line ends, cut short or a header alone, an archive under a CSV's name, labels written
1.0, ids with their folder and spaces after commas. `kit new` and the layout's reader on each,
through the CLI: read as they should be, or one line, a non-zero exit and nothing written."""

import zipfile

import pandas as pd
import pytest
from quirks_data import WORDS, kit_new, recipe, refused, rewrite

from kit.data.layouts import load as read_layout

# --- the CSV: encodings, line ends, cut short --------------------------------------------------


def as_words(folder, encoding):
    """Labels crème/thé in train.csv written in `encoding`, the sample writing labels."""
    train = pd.read_csv(folder / "train.csv", dtype=str)
    train["label"] = [WORDS[int(v)] for v in train["label"]]
    train.to_csv(folder / "train.csv", index=False, encoding=encoding)
    sample = pd.read_csv(folder / "sample_submission.csv", dtype=str).assign(label=WORDS[0])
    sample.to_csv(folder / "sample_submission.csv", index=False)


@pytest.mark.parametrize("encoding", ["cp1252", "latin-1", "utf-16", "utf-8-sig"])
def test_a_csv_in_another_encoding_is_read(encoding, folder, tmp_path, capsys):
    as_words(folder, encoding)
    assert kit_new(folder, tmp_path, "--metric", "accuracy") == 0
    if encoding in ("cp1252", "latin-1"):
        assert "train.csv is not UTF-8; read as cp1252" in capsys.readouterr().out
    assert read_layout(folder, recipe(tmp_path)).classes == sorted(WORDS)


def test_a_sample_in_cp1252_is_read(folder, tmp_path, capsys):
    """Class names with accents as the sample's columns, saved by Excel on Windows."""
    train = pd.read_csv(folder / "train.csv", dtype=str)
    train.assign(label=[WORDS[int(v)] for v in train["label"]]).to_csv(folder / "train.csv",
                                                                       index=False)  # fmt: skip
    sample = pd.read_csv(folder / "sample_submission.csv", dtype=str).drop(columns="label")
    sample.assign(**{w: 0.5 for w in WORDS}).to_csv(folder / "sample_submission.csv",
                                                    index=False, encoding="cp1252")  # fmt: skip
    assert kit_new(folder, tmp_path, "--metric", "logloss") == 0
    assert "sample_submission.csv is not UTF-8; read as cp1252" in capsys.readouterr().out
    r = recipe(tmp_path)
    assert r.sub_shape == "probabilities" and read_layout(folder, r).classes == WORDS


def test_a_csv_that_is_an_archive_is_one_line(folder, tmp_path, capsys):
    with zipfile.ZipFile(tmp_path / "train.zip", "w") as z:
        z.write(folder / "train.csv", "train.csv")
    (tmp_path / "train.zip").replace(folder / "train.csv")  # a zip saved under the CSV's name
    err = refused(kit_new(folder, tmp_path), tmp_path, capsys)
    assert "train.csv is a zip archive, not a CSV" in err


@pytest.mark.parametrize("ends", ["\r\n", "\r\n+bom"])
def test_windows_line_ends_and_a_bom(ends, folder, tmp_path):
    for name in ("train.csv", "sample_submission.csv"):
        rewrite(folder / name, lambda b: (b"\xef\xbb\xbf" if "bom" in ends else b"")
                + b.replace(b"\n", b"\r\n"))  # fmt: skip
    assert kit_new(folder, tmp_path) == 0
    r = recipe(tmp_path)
    assert (r.id_col, r.label_col) == ("id", "label")
    d = read_layout(folder, r)
    assert d.classes == ["0", "1"] and d.test_ids[0] == "0040.jpg" and d.test_y is not None


SPOILED = {
    "cut short in a row": (lambda b: b[: b.rindex(b",")], "train.csv has no label on row 41"),
    "cut short in a quote": (lambda b: b + b'"0050.jpg,1\n', "train.csv is not a readable CSV"),
    "a header only": (lambda b: b.split(b"\n")[0] + b"\n", "train.csv has a header but no rows"),
}


SAMPLE_SPOILED = {
    "cut short in a row": "sample_submission.csv is cut short: its last row (11)",
    "cut short in a quote": "sample_submission.csv is not a readable CSV",
    "a header only": "sample_submission.csv has a header but no rows",
}


@pytest.mark.parametrize("csv", ["train.csv", "sample_submission.csv"])
@pytest.mark.parametrize("case", SPOILED)
def test_a_csv_cut_short_is_one_line(case, csv, folder, tmp_path, capsys):
    change, message = SPOILED[case]
    rewrite(folder / csv, change)
    if csv != "train.csv":  # the sample's rows: 10 of id and probability
        message = SAMPLE_SPOILED[case]
    err = refused(kit_new(folder, tmp_path), tmp_path, capsys)
    assert message in err, err


def test_labels_written_as_decimals_are_whole_numbers(folder, tmp_path):
    """0.0 and 1.0 (a CSV saved by a tool that made the column float) are the classes 0 and 1,
    as the solution and --positive name them, even where the sample writes probabilities."""
    rewrite(
        folder / "train.csv", lambda b: b.replace(b",0\n", b",0.0\n").replace(b",1\n", b",1.0\n")
    )
    assert b",1.0\n" in (folder / "train.csv").read_bytes()
    assert kit_new(folder, tmp_path) == 0
    assert "label_col='label',  # 2 classes, 0 " in (tmp_path / "competitions" / "x.py").read_text()
    d = read_layout(folder, recipe(tmp_path))
    assert d.classes == ["0", "1"] and d.test_y is not None


def test_ids_with_their_folder_and_spaces_after_commas(folder, tmp_path):
    """train.csv `id, label` with ids train/0000.jpg, the sample's test/0040.jpg: the sample's
    ids are submitted as written."""
    for name in ("train.csv", "sample_submission.csv", "solution.csv"):
        df = pd.read_csv(folder / name, dtype=str)
        df["id"] = ("train/" if name == "train.csv" else "test/") + df["id"]
        df.to_csv(folder / name, index=False)
    rewrite(folder / "train.csv", lambda b: b.replace(b",", b", "))
    assert kit_new(folder, tmp_path) == 0
    r = recipe(tmp_path)
    assert (r.id_col, r.label_col, r.train_dir, r.test_dir) == ("id", "label", "train", "test")
    d = read_layout(folder, r)
    assert len(d.x) == 40 and d.classes == ["0", "1"] and d.test_ids[0] == "test/0040.jpg"
    assert d.test_y is not None


@pytest.mark.parametrize("csv", ["train.csv", "test.csv"])
def test_a_pixel_csv_cut_short_is_one_line_in_kit_new(csv, mnist_copy, tmp_path, capsys):
    rewrite(mnist_copy / csv, lambda b: b[: b.rindex(b",") - 300])  # the last row half there
    err = refused(kit_new(mnist_copy, tmp_path), tmp_path, capsys)
    assert f"{csv} is missing a value on row" in err and "may be cut short" in err, err


def test_a_sample_naming_a_class_with_a_space_is_a_label(folder, tmp_path):
    """The sample filled with `crème brûlée`, a class: one label per image, not the 2 likeliest."""
    names = ["crème brûlée", "thé vert"]
    train = pd.read_csv(folder / "train.csv", dtype=str)
    train.assign(label=[names[int(v)] for v in train["label"]]).to_csv(folder / "train.csv",
                                                                       index=False)  # fmt: skip
    sample = pd.read_csv(folder / "sample_submission.csv", dtype=str).assign(label=names[0])
    sample.to_csv(folder / "sample_submission.csv", index=False)
    assert kit_new(folder, tmp_path, "--metric", "accuracy") == 0
    r = recipe(tmp_path)
    assert r.sub_shape == "label" and read_layout(folder, r).classes == names

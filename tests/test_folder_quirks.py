"""Folders as competitions ship them (issue 25): CSVs in another encoding, cut short or with a
header only, labels written 1.0, file names in another case or Unicode form, one class, a
missing or empty test photo, a photo past PIL's decompression-bomb limit. `kit new` and the
layout's reader on each, through the CLI: read as they should be, or one line, a non-zero exit
and nothing written."""

import shutil
import unicodedata
import zipfile

import layouts_data
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from kit.cli import main
from kit.data.layouts import load as read_layout
from kit.data.readers import pixel_csv
from kit.recipe import load_competition

WORDS = ["crème", "thé"]  # labels that UTF-8 and cp1252 write differently


def tiny(dest, n_train=40, n_test=10, names=("0", "1"), fill="0.5"):
    """A csv layout of real digit scans (0s and 1s), 32x32 JPEGs: train.csv `id,label` naming
    train/*.jpg, sample_submission.csv the test/*.jpg filled with `fill`, solution.csv."""
    rng = np.random.default_rng(0)
    (tx, ty), (vx, vy) = layouts_data.split(n_train, n_test, 2)
    ids = [f"{i:04d}.jpg" for i in range(n_train + n_test)]
    layouts_data.draw(dest, [*tx, *vx], n_train, ("train", "test"), ids, 32, rng)
    pd.DataFrame({"id": ids[:n_train], "label": [names[t] for t in ty]}).to_csv(
        dest / "train.csv", index=False)  # fmt: skip
    pd.DataFrame({"id": ids[n_train:], "label": fill}).to_csv(dest / "sample_submission.csv",
                                                             index=False)  # fmt: skip
    layouts_data.solution(dest, ids[n_train:], [names[t] for t in vy])
    return dest


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return tiny(tmp_path_factory.mktemp("quirks") / "some-cactus")


@pytest.fixture
def folder(source, tmp_path):
    return shutil.copytree(source, tmp_path / source.name)


def kit_new(folder, tmp_path, *args):
    """`kit new x --data FOLDER --metric auc` in tmp_path: the exit code."""
    with layouts_data.working_in(tmp_path):
        return main(["new", "x", "--data", str(folder), "--metric", "auc", *args])


def recipe(tmp_path):
    with layouts_data.working_in(tmp_path):
        return load_competition("x").RECIPE


def refused(code, tmp_path, capsys) -> str:
    """The one line of a refusal; nothing was written."""
    err = capsys.readouterr().err.strip()
    assert code == 1 and err.splitlines() == [err] and err.startswith("kit: error: "), err
    assert not (tmp_path / "competitions").exists()
    return err


def rewrite(path, change):
    path.write_bytes(change(path.read_bytes()))


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


@pytest.mark.parametrize("case", SPOILED)
def test_a_csv_cut_short_is_one_line(case, folder, tmp_path, capsys):
    change, message = SPOILED[case]
    rewrite(folder / "train.csv", change)
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


# --- the images: names, a missing or empty one, a huge one; one class --------------------------


def rename_images(folder, change):
    for path in sorted(folder.glob("t*/*.jpg")):
        path.rename(path.with_name(change(path.name)))


def respell_ids(folder, change):
    for name in ("train.csv", "sample_submission.csv", "solution.csv"):
        df = pd.read_csv(folder / name, dtype=str)
        df["id"] = df["id"].map(change)
        df.to_csv(folder / name, index=False)


def upper_case(folder):
    rename_images(folder, lambda n: n.replace(".jpg", ".JPG"))  # the CSVs still say .jpg


def accents(folder):
    """Names with spaces and accents, the files' names decomposed (é as e and an accent), as a
    Mac writes them, the CSVs' composed."""
    respell_ids(folder, lambda i: f"café crème {i}")
    rename_images(folder, lambda n: unicodedata.normalize("NFD", f"café crème {n}"))


def mixed_extensions(folder):
    """Ids without an extension, one image in five a .png."""
    respell_ids(folder, lambda i: i.removesuffix(".jpg"))
    for k, path in enumerate(sorted(folder.glob("t*/*.jpg"))):
        if k % 5 == 0:
            Image.open(path).save(path.with_suffix(".png"))
            path.unlink()


@pytest.mark.parametrize("spell", [upper_case, accents, mixed_extensions])
def test_images_are_found_however_their_names_are_spelled(spell, folder, tmp_path):
    spell(folder)
    assert kit_new(folder, tmp_path) == 0
    d = read_layout(folder, recipe(tmp_path))
    sample = pd.read_csv(folder / "sample_submission.csv", dtype=str)
    assert len(d.x) == 40 and d.test_ids == sample["id"].tolist() and d.test_y is not None


@pytest.mark.parametrize("layout", ["folders", "filenames"])
def test_classes_named_in_decomposed_unicode_are_the_samples(layout, folder, tmp_path):
    """train/crème/ or train/crème.0.jpg unzipped on a Mac (è as e and an accent), the sample's
    columns composed: the same classes."""
    train = pd.read_csv(folder / "train.csv", dtype=str)
    for i, (name, label) in enumerate(zip(train["id"], train["label"])):
        word = unicodedata.normalize("NFD", WORDS[int(label)])
        dest = f"{word}/{name}" if layout == "folders" else f"{word}.{i}.jpg"
        (folder / "train" / dest).parent.mkdir(exist_ok=True)
        (folder / "train" / name).rename(folder / "train" / dest)
    (folder / "train.csv").unlink()
    sample = pd.read_csv(folder / "sample_submission.csv", dtype=str)
    sample[WORDS] = 0.5
    sample.drop(columns="label").to_csv(folder / "sample_submission.csv", index=False)
    assert kit_new(folder, tmp_path, "--metric", "logloss") == 0
    r = recipe(tmp_path)
    assert (r.layout, r.sub_shape) == (layout, "probabilities")
    assert read_layout(folder, r).classes == WORDS


def test_one_class_is_one_line(folder, tmp_path, capsys):
    train = pd.read_csv(folder / "train.csv", dtype=str).assign(label="1")
    train.to_csv(folder / "train.csv", index=False)
    err = refused(kit_new(folder, tmp_path), tmp_path, capsys)
    assert "the training labels hold only one class (1)" in err


@pytest.mark.parametrize("spoil, message", [
    (lambda p: p.unlink(), "sample_submission.csv names 1 images missing from test/"),
    (lambda p: p.write_bytes(b""), "test image 0045.jpg is empty (0 bytes)"),
])  # fmt: skip
def test_a_missing_or_empty_test_photo_is_one_line(spoil, message, folder, tmp_path, capsys):
    spoil(folder / "test" / "0045.jpg")
    err = refused(kit_new(folder, tmp_path), tmp_path, capsys)
    assert message in err, err


def test_a_photo_past_the_decompression_bomb_limit_is_one_line(folder, tmp_path, capsys,
                                                               monkeypatch):  # fmt: skip
    """A few huge photos among small ones: PIL refuses to open one (DecompressionBombError, not
    an OSError) past twice Image.MAX_IMAGE_PIXELS; here the limit is lowered, not the photo
    made huge."""
    big = folder / "train" / "0007.jpg"
    Image.open(big).resize((64, 64)).save(big)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1500)  # 32x32 opens, 64x64 is past 2 x 1500
    err = refused(kit_new(folder, tmp_path), tmp_path, capsys)
    assert "0007.jpg is 64x64, past PIL's decompression-bomb limit" in err, err


# --- the pixel layout: resized a chunk at a time ------------------------------------------------


def test_pixels_are_resized_a_chunk_at_a_time_to_the_same_values(monkeypatch, tmp_path):
    """Digit Recognizer at 224 px: 42,000 images in float32 at once are 8.4 GB; a chunk at a
    time holds only the uint8 result and one chunk in float32."""
    rng = np.random.default_rng(0)
    n, side, size = 50, 28, 64
    df = pd.DataFrame(rng.integers(0, 256, (n, side * side)),
                      columns=[f"pixel{i}" for i in range(side * side)])  # fmt: skip
    x = torch.from_numpy(df.to_numpy().astype(np.uint8)).view(-1, 1, side, side)
    whole = F.interpolate(x.float(), size=(size, size), mode="bilinear", antialias=True)
    expected = whole.round().clamp(0, 255).to(torch.uint8)
    rows, interpolate = [], F.interpolate

    def counted(t, *a, **k):
        rows.append(len(t))
        return interpolate(t, *a, **k)

    monkeypatch.setattr(pixel_csv, "CHUNK_BYTES", 7 * size * size * 4)  # 7 images a chunk
    monkeypatch.setattr(F, "interpolate", counted)
    got = pixel_csv.pixels(df, tmp_path / "train.csv", size)
    assert got.dtype == torch.uint8 and torch.equal(got, expected)
    assert max(rows) == 7 and sum(rows) == n

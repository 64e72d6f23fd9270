"""Photo folders as competitions ship them: file names in another case or Unicode
form or of mixed extensions, classes named in decomposed Unicode, one class, a missing or empty
test photo, a photo past PIL's decompression-bomb limit, what a Mac or a notebook leaves beside
the data; and the pixel layout resized a chunk at a time. `kit new` and the layout's reader on
each, through the CLI: read as they should be, or one line, a non-zero exit and nothing
written."""

import shutil
import unicodedata

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from quirks_data import WORDS, kit_new, recipe, refused

from kit.data.layouts import load as read_layout
from kit.data.readers import pixel_csv

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
    assert "0007.jpg is 64 x 64 = 4,096 pixels (limit 3,000), more than PIL decodes" in err, err


def test_a_big_photo_under_kit_max_image_pixels_is_measured(folder, tmp_path, monkeypatch):
    """KIT_MAX_IMAGE_PIXELS lifts the limit for kit new as for kit run (kit/data/photos.py)."""
    big = folder / "train" / "0007.jpg"
    Image.open(big).resize((64, 64)).save(big)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1500)
    monkeypatch.setenv("KIT_MAX_IMAGE_PIXELS", "5000")
    assert kit_new(folder, tmp_path) == 0


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


# --- what a Mac or a notebook leaves beside the data ---------------------------------------------


def test_mac_and_notebook_leftovers_are_not_images(folder, tmp_path):
    """._0040.jpg beside each photo (AppleDouble metadata, unzipped on a Mac), __MACOSX/ and
    .ipynb_checkpoints/ with photos in it; no sample, so the test folder's files are the test
    set."""
    for path in sorted(folder.glob("t*/*.jpg")):
        (path.parent / f"._{path.name}").write_bytes(b"\x00\x05\x16\x07" + bytes(200))
    shutil.copytree(folder / "test", folder / "__MACOSX" / "test")
    shutil.copytree(folder / "test", folder / "test" / ".ipynb_checkpoints")
    (folder / "sample_submission.csv").unlink()
    assert kit_new(folder, tmp_path) == 0
    r = recipe(tmp_path)
    assert (r.train_dir, r.test_dir) == ("train", "test")
    d = read_layout(folder, r)
    assert (
        len(d.x) == 40 and d.skipped == 0 and d.test_ids == [f"{i:04d}.jpg" for i in range(40, 50)]
    )


def test_a_notebooks_checkpoint_folder_is_no_class(folder, tmp_path):
    train = pd.read_csv(folder / "train.csv", dtype=str)
    for name, label in zip(train["id"], train["label"]):
        (folder / "train" / label).mkdir(exist_ok=True)
        (folder / "train" / name).rename(folder / "train" / label / name)
    (folder / "train.csv").unlink()
    shutil.copytree(folder / "train" / "1", folder / "train" / ".ipynb_checkpoints")
    assert kit_new(folder, tmp_path) == 0
    assert read_layout(folder, recipe(tmp_path)).classes == ["0", "1"]

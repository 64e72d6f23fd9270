"""`kit new` chooses the network, size and orientation from what it sees: how many images, how
small, photos or glyphs, with an up or without."""

import layouts_data
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from competitions import invasive
from kit.new import LEAST, SCRATCH_FROM, UPSCALED, inspect_folder, looks, model_fields

TURNS = (None, Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180, Image.Transpose.ROTATE_270)


def photo_folder(dest, n=200, side=24, turned=False):
    """A csv layout of `n` small colour photos (the invasive sample's scenes: temple, flower,
    portrait), each turned by a random multiple of 90 degrees if `turned`, and 8 test photos."""
    rng = np.random.default_rng(0)
    sources = {name: invasive.source_photo(name) for name in invasive.SOURCES}
    ids, labels = [f"{i}.png" for i in range(n + 8)], rng.random(n + 8) < 0.5
    for split in ("train", "test"):
        (dest / split).mkdir(parents=True)
    for i, (name, label) in enumerate(zip(ids, labels)):
        im = invasive.sample_photo(sources, bool(label), rng).resize((side, side), Image.BOX)
        turn = TURNS[rng.integers(4)] if turned else None
        (im.transpose(turn) if turn else im).save(dest / ("train" if i < n else "test") / name)
    pd.DataFrame({"id": ids[:n], "label": labels[:n].astype(int)}).to_csv(dest / "train.csv",
                                                                          index=False)  # fmt: skip
    pd.DataFrame({"id": ids[n:], "label": 0.5}).to_csv(dest / "sample_submission.csv", index=False)
    return dest


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("choices")
    photos, turned = photo_folder(root / "photos"), photo_folder(root / "turned", turned=True)
    glyphs = layouts_data.write("cactus", root)  # coloured digits, 32 px
    return photos, turned, glyphs


def test_looks_tells_photos_from_glyphs_and_an_up_from_none(folders):
    photos, turned, glyphs = folders
    assert looks(sorted((photos / "train").iterdir())) == (False, False)
    assert looks(sorted((turned / "train").iterdir())) == (False, True)
    assert looks(sorted((glyphs / "train" / "train").iterdir())) == (True, False)
    assert looks(sorted((turned / "train").iterdir())[:60]) == (False, False)  # too few to tell


def test_few_small_colour_photos_get_imagenet_weights_upscaled():
    few = model_fields(25, False, "25x25 RGB", 150, (False, False))
    assert few["arch"][0] == "tf_efficientnet_lite0" and few["pretrained"][0]
    assert few["size"][0] == UPSCALED and "upscaled" in few["size"][1]
    many = model_fields(25, False, "25x25 RGB", SCRATCH_FROM, (False, False))
    assert many["arch"][0] == "digitnet" and "enough to learn from" in many["arch"][1]
    glyphs = model_fields(25, False, "25x25 RGB", 150, (True, False))
    assert glyphs["arch"][0] == "digitnet" and glyphs["flip"][0] is False
    # photos between: never under LEAST px for ImageNet weights, larger ones at their own size
    mid = model_fields(64, False, "64x64 RGB", 600, (False, False))["size"]
    assert mid[0] == LEAST > 64 and "upscaled" in mid[1]
    assert model_fields(160, False, "160x160 RGB", 600, (False, False))["size"][0] == 160
    grey = model_fields(28, True, "28x28 grey", 150, (True, False))
    assert grey["arch"][0] == "digitnet" and "dihedral" not in grey


def test_kit_new_suggests_dihedral_for_photos_without_an_up_and_says_why(folders):
    photos, turned, _ = folders
    fields = inspect_folder(turned, metric="auc")
    assert fields["dihedral"] == (True, "they look alike turned any way: no up")
    assert fields["arch"][0] == "tf_efficientnet_lite0" and fields["size"][0] == UPSCALED
    assert "dihedral" not in inspect_folder(photos, metric="auc")

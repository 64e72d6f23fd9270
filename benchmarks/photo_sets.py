"""The transfer benchmarks' photo sets, made from the photos installed wheels ship (scikit-learn's
temple and dahlia, matplotlib's portrait of Grace Hopper and its gift-box icon).

Every photo is a random 4:3 crop of the temple or the portrait at a random scale, mirrored half
of the time, in a random light, with a small patch pasted in; it is saved already small (85x64,
`side` px high), as a competition's resized copy would be:

- invasive layout (`write_transfer`): the patch is the dahlia's bloom (invasive, 60% of the
  photos) or leaves from the same photo (not), 12-30% of the photo's height; `train/<n>.jpg`
  (JPEG, quality 90) or `.png`, `train_labels.csv` (name,invasive), `sample_submission.csv`,
  and the test labels in `solution.csv`;
- dog-breed layout (`write_breeds`): nine classes, each one patch (the bloom, the leaves, the
  pagoda's roof, the temple's trees, the lake, the face, the flag, the medals, the gift box) at
  20-45% of the height; `train/<id>.png` with 32-hex ids, `labels.csv` (id,breed),
  `sample_submission.csv` (id and one probability column per breed, in alphabetical order, as
  Kaggle ships it), the test labels in `solution.csv` (id,breed).

PNG is cheap to decode: on those sets a loader that decodes every photo every epoch (plain
fastai) pays little for it, so no table depends on the peer's decoding cost.
"""

import hashlib
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from PIL import Image

from competitions import invasive

LEAVES = (0, 0, 170, 170)  # the top left of scikit-learn's flower.jpg: leaves, no bloom
# (photo, box) of each breed's patch; the names are the competition's, the photos are not dogs
BREEDS = {
    "afghan_hound": ("flower", invasive.BLOOM),
    "beagle": ("flower", LEAVES),
    "border_collie": ("temple", (80, 10, 240, 170)),  # the pagoda's roof
    "chihuahua": ("temple", (480, 140, 640, 330)),  # trees
    "dingo": ("temple", (300, 210, 480, 300)),  # the lake
    "golden_retriever": ("hopper", (150, 110, 370, 360)),  # the face
    "pug": ("hopper", (0, 0, 150, 230)),  # the flag
    "samoyed": ("hopper", (300, 450, 480, 560)),  # the medals
    "whippet": ("gift", (0, 0, 128, 128)),
}


def sources() -> dict:
    """The source photos by name: the invasive sample's three and the gift box."""
    photos = {name: invasive.source_photo(name) for name in invasive.SOURCES}
    gift = Path(matplotlib.__file__).parent / "mpl-data/sample_data/Minduka_Present_Blue_Pack.png"
    photos["gift"] = Image.open(gift).convert("RGB")
    return photos


def transfer_photo(photos: dict, invasive_: bool, rng, side: int) -> Image.Image:
    """A temple or portrait crop with the bloom (invasive) or leaves pasted in, `side` px high."""
    photo = invasive.scene(photos[rng.choice(["temple", "hopper"])], rng)
    patch = photos["flower"].crop(invasive.BLOOM if invasive_ else LEAVES)
    invasive.paste(photo, patch, rng, (0.12, 0.3))
    return invasive.lit(photo, rng).resize((side * 4 // 3, side))


def write_transfer(dest: Path, n_train: int, n_test: int, side: int, seed=1, ext=".jpg") -> None:
    """The invasive transfer task in the competition's layout, as the sample is written (60%
    invasive; test labels in solution.csv), its photos saved as `ext` (.jpg or .png)."""
    dest.mkdir(parents=True)
    invasive.write_sample(
        dest,
        n_train,
        n_test,
        seed,
        ext=ext,
        photo=lambda photos, label, rng: transfer_photo(photos, label, rng, side),
    )


def save(photo: Image.Image, path: Path) -> None:
    photo.save(path, **({"quality": 90} if path.suffix == ".jpg" else {}))


def breed_photo(photos: dict, breed: str, rng, side: int) -> Image.Image:
    """A temple or portrait crop with `breed`'s patch pasted in, `side` px high."""
    photo = invasive.scene(photos[rng.choice(["temple", "hopper"])], rng)
    source, box = BREEDS[breed]
    invasive.paste(photo, photos[source].crop(box), rng, (0.2, 0.45))
    return invasive.lit(photo, rng).resize((side * 4 // 3, side))


def write_breeds(dest: Path, n_train: int, n_test: int, side: int, seed: int = 2) -> None:
    """Nine classes in Dog Breed Identification's layout, as PNGs (the module's docstring)."""
    rng, photos, names = np.random.default_rng(seed), sources(), sorted(BREEDS)
    for split, n in (("train", n_train), ("test", n_test)):
        (dest / split).mkdir(parents=True)
        breeds = [names[i] for i in rng.integers(len(names), size=n)]
        ids = [hashlib.md5(f"{split}{seed}{i}".encode()).hexdigest() for i in range(n)]
        for i, breed in zip(ids, breeds):
            breed_photo(photos, breed, rng, side).save(dest / split / f"{i}.png")
        df = pd.DataFrame({"id": ids, "breed": breeds})
        if split == "train":
            df.to_csv(dest / "labels.csv", index=False)
        else:
            df.to_csv(dest / "solution.csv", index=False)
            sample = pd.DataFrame({"id": ids} | {b: 1 / len(names) for b in names})
            sample.to_csv(dest / "sample_submission.csv", index=False)

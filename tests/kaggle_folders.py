"""Kaggle folders laid out exactly as real competitions ship them, the ones that broke `kit new`
and `kit run` (issue 18): a second labelled CSV, metadata columns, train and test images in
one folder, text ids, numbered classes. Made from scikit-learn's real digit scans, as
layouts_data.py makes its folders; each has `solution.csv` (test id, label).
"""

import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
from layouts_data import digit_image, draw, save, solution, split


def pixel_rows(scans, rng) -> np.ndarray:
    return np.stack([np.asarray(digit_image(s, 28, rng, False)).ravel() for s in scans])


def pixel_csv(path: Path, first: str, values, rows: np.ndarray) -> None:
    df = pd.DataFrame(rows, columns=[f"pixel{i}" for i in range(rows.shape[1])])
    df.insert(0, first, values)
    df.to_csv(path, index=False)


def kannada(dest: Path) -> str:
    """Kannada-MNIST: train.csv `label,pixel0..`, and beside it Dig-MNIST.csv with the same
    columns (a second, harder set Kaggle ships for checking, not for training); test.csv
    `id,pixel0..`; sample_submission `id,label`. Ids written as text, 00000 to 00059."""
    rng = np.random.default_rng(21)
    (tx, ty), (vx, vy) = split(200, 60, 10, seed=21)
    (dx, dy), _ = split(80, 0, 10, seed=22)
    dest.mkdir(parents=True)
    pixel_csv(dest / "train.csv", "label", ty, pixel_rows(tx, rng))
    pixel_csv(dest / "Dig-MNIST.csv", "label", dy, pixel_rows(dx, rng))
    ids = [f"{i:05d}" for i in range(len(vx))]
    pixel_csv(dest / "test.csv", "id", ids, pixel_rows(vx, rng))
    pd.DataFrame({"id": ids, "label": 0}).to_csv(dest / "sample_submission.csv", index=False)
    solution(dest, ids, vy)
    return "Kannada-MNIST"


def siim(dest: Path) -> str:
    """SIIM-ISIC Melanoma: train.csv `image_name,patient_id,sex,age_approx,
    anatom_site_general_challenge,diagnosis,benign_malignant,target` (diagnosis and
    benign_malignant restate the target), several images per patient; JPEGs in jpeg/train/ and
    jpeg/test/, DICOMs (unread) in train/ and test/; test.csv the test images' metadata;
    sample_submission `image_name,target`. Melanoma: the digit is a 1. AUC."""
    rng = np.random.default_rng(23)
    (tx, ty), (vx, vy) = split(160, 40, 2, seed=23)
    names = [f"ISIC_{n:07d}" for n in rng.choice(10**7, len(tx) + len(vx), replace=False)]
    draw(dest, [*tx, *vx], len(tx), ("jpeg/train", "jpeg/test"), [f"{n}.jpg" for n in names],
         32, rng)  # fmt: skip
    for where, name in (("train", names[0]), ("test", names[-1])):
        save_bytes(dest / where / f"{name}.dcm", b"DICM")
    patients = [f"IP_{n:07d}" for n in rng.choice(10**7, 40, replace=False)]

    def metadata(n, pick):
        return {
            "patient_id": [patients[i] for i in pick(n)],
            "sex": rng.choice(["male", "female", ""], n),
            "age_approx": rng.choice(["30.0", "45.0", "60.0", ""], n),
            "anatom_site_general_challenge": rng.choice(["torso", "head/neck", ""], n),
        }

    train = pd.DataFrame({"image_name": names[: len(tx)],
                          **metadata(len(tx), lambda n: rng.integers(0, 30, n))})  # fmt: skip
    train["diagnosis"] = [
        "melanoma" if t else rng.choice(["nevus", "unknown", "lentigo NOS"]) for t in ty
    ]
    train["benign_malignant"] = ["malignant" if t else "benign" for t in ty]
    train["target"] = ty
    train.to_csv(dest / "train.csv", index=False)
    test_names = names[len(tx) :]
    test = {"image_name": test_names, **metadata(len(vx), lambda n: rng.integers(30, 40, n))}
    pd.DataFrame(test).to_csv(dest / "test.csv", index=False)
    pd.DataFrame({"image_name": test_names, "target": 0}).to_csv(
        dest / "sample_submission.csv", index=False)  # fmt: skip
    solution(dest, test_names, vy)
    return "siim-isic-melanoma-classification"


PLANT = ["healthy", "multiple_diseases", "rust", "scab"]


def plant_pathology(dest: Path) -> str:
    """Plant Pathology 2020: training and test photos in one folder, images/Train_0.jpg and
    images/Test_0.jpg, told apart only by the CSVs: train.csv `image_id,label`, test.csv
    `image_id`, sample_submission `image_id,healthy,multiple_diseases,rust,scab`. (Kaggle's
    train.csv holds the label one-hot; here it is one column.) Mean column-wise AUC."""
    rng = np.random.default_rng(24)
    (tx, ty), (vx, vy) = split(160, 40, 4, seed=24)
    train_ids = [f"Train_{i}" for i in range(len(tx))]
    test_ids = [f"Test_{i}" for i in range(len(vx))]
    draw(dest, [*tx, *vx], len(tx), ("images", "images"),
         [f"{i}.jpg" for i in train_ids + test_ids], 32, rng)  # fmt: skip
    pd.DataFrame({"image_id": train_ids, "label": [PLANT[t] for t in ty]}).to_csv(
        dest / "train.csv", index=False)  # fmt: skip
    pd.DataFrame({"image_id": test_ids}).to_csv(dest / "test.csv", index=False)
    sample = pd.DataFrame({"image_id": test_ids, **{c: 0.25 for c in PLANT}})
    sample.to_csv(dest / "sample_submission.csv", index=False)
    solution(dest, test_ids, [PLANT[t] for t in vy])
    return "plant-pathology-2020-fgvc7"


def aptos(dest: Path) -> str:
    """APTOS 2019 Blindness Detection: train.csv `id_code,diagnosis` (grades 0-4), PNGs in
    train_images/ and test_images/, sample_submission `id_code,diagnosis`. id_code is hex, and
    every test id here happens to be all digits with a leading 0 (012345678901). QWK."""
    rng = np.random.default_rng(25)
    (tx, ty), (vx, vy) = split(150, 40, 5, seed=25)
    train_ids = [f"{rng.integers(16**12):012x}" for _ in tx]
    test_ids = [f"0{n:011d}" for n in rng.choice(10**11, len(vx), replace=False)]
    draw(dest, [*tx, *vx], len(tx), ("train_images", "test_images"),
         [f"{i}.png" for i in train_ids + test_ids], 32, rng)  # fmt: skip
    pd.DataFrame({"id_code": train_ids, "diagnosis": ty}).to_csv(dest / "train.csv", index=False)
    pd.DataFrame({"id_code": test_ids, "diagnosis": 0}).to_csv(
        dest / "sample_submission.csv", index=False)  # fmt: skip
    solution(dest, test_ids, vy)
    return "aptos2019-blindness-detection"


def numbered_classes(dest: Path) -> str:
    """Class folders named by number, train/0 to train/11, test/0001.png...; sample_submission
    `id,label` with ids 0001... (no extension) and the label 0. Classes 10 and 11 are the digits
    0 and 1 drawn inverted."""
    rng = np.random.default_rng(26)
    (tx, ty), (vx, vy) = split(160, 40, 10, seed=26)
    flip = rng.random(len(tx) + len(vx)) < 0.3
    labels = [int(d) + 10 * bool(f and d < 2) for d, f in zip([*ty, *vy], flip)]
    for i, (scan, label) in enumerate(zip([*tx, *vx], labels)):
        image = digit_image(scan if label < 10 else 16 - scan, 32, rng, True)
        where = f"train/{label}/{i:04d}.png" if i < len(tx) else f"test/{i:04d}.png"
        save(image, dest / where)
    ids = [f"{i:04d}" for i in range(len(tx), len(tx) + len(vx))]
    pd.DataFrame({"id": ids, "label": 0}).to_csv(dest / "sample_submission.csv", index=False)
    solution(dest, ids, labels[len(tx) :])
    return "numbered-classes"


def renamed(folder: Path, sample: str, labels: str) -> None:
    """Give the sample and the labels CSV of `folder` other names Kaggle uses; a sample name
    ending .zip is the sample zipped, as some competitions ship it."""
    csv = folder / "sample_submission.csv"
    if sample.endswith(".zip"):
        with zipfile.ZipFile(folder / sample, "w") as z:
            z.write(csv, sample.removesuffix(".zip"))
        csv.unlink()
    elif sample != csv.name:
        csv.rename(folder / sample)
    (folder / "train.csv").rename(folder / labels)


def save_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


FOLDERS = {
    "kannada": kannada,
    "siim": siim,
    "plant": plant_pathology,
    "aptos": aptos,
    "numbered": numbered_classes,
}


def write(name: str, parent: Path) -> Path:
    """The folder `name`, named after its competition's slug, under `parent`."""
    tmp = parent / f"{name}-tmp"
    slug = FOLDERS[name](tmp)
    return tmp.rename(parent / slug)

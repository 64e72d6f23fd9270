"""Kaggle-style competition folders drawn by hypothesis for tests/test_folder_generator.py:
what a folder holds (`folders`, a strategy of plain dicts), how it is written (`write_folder`),
and the ways a folder is spoiled (SPOILS). Photos are real handwritten digits (scikit-learn's),
drawn in colour and saved in every format competitions ship."""

import struct
import unicodedata
import zlib

import layouts_data
import numpy as np
import pandas as pd
from hypothesis import strategies as st
from PIL import Image

KNOWN_BUGS: dict[str, str] = {}  # quirk -> the open bug it hits (left out of the strategy)


# --- photos in each format: the drawing, and how each format writes it ----------------------


def grey16(im):
    return Image.fromarray(np.asarray(im.convert("L")).astype(np.uint16) * 257)


def grey_float(im):
    return Image.fromarray((np.asarray(im.convert("L")) / 255).astype(np.float32))


def exif_rotated(im, path):
    """Stored turned a quarter, EXIF orientation 6 saying how to turn it back (a phone's)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    im.transpose(Image.Transpose.ROTATE_90).save(path, exif=exif, quality=95)


FORMATS = {  # name: (extension, writer)
    "jpeg": (".jpg", lambda im, p: im.save(p, quality=95)),
    "cmyk jpeg": (".jpg", lambda im, p: im.convert("CMYK").save(p, quality=95)),
    "grey jpeg": (".jpg", lambda im, p: im.convert("L").save(p)),
    "exif-rotated jpeg": (".jpg", exif_rotated),
    "huge jpeg": (".jpg", lambda im, p: im.resize((1600, 1200)).save(p, quality=80)),
    "png": (".png", lambda im, p: im.save(p)),
    "16-bit png": (".png", lambda im, p: grey16(im).save(p)),
    "palette png": (".png", lambda im, p: im.quantize(32).save(p)),
    "rgba png": (".png", lambda im, p: im.convert("RGBA").save(p)),
    "tiff": (".tif", lambda im, p: im.save(p, compression="tiff_lzw")),
    "16-bit tiff": (".tif", lambda im, p: grey16(im).save(p)),
    "float tiff": (".tif", lambda im, p: grey_float(im).save(p)),
    "webp": (".webp", lambda im, p: im.save(p, lossless=True)),
}


def photo(scan, rng) -> Image.Image:
    """A real handwritten digit drawn in colour, 32 x 32."""
    return layouts_data.digit_image(scan, 32, rng, True)


# --- a folder: what is drawn, and how it is written -----------------------------------------


ALL = ("csv", "folders")
FREE_QUIRKS = ("upper-case extensions", "names with spaces and accents", "a BOM", "CRLF line ends",
               "stray files", "sample rows shuffled", "photos of several sizes")  # fmt: skip


@st.composite
def folders(draw, layouts=ALL) -> dict:
    layout = draw(st.sampled_from(layouts))
    classes = draw(st.sampled_from([["0", "1"], ["cat", "dog"], ["1", "2", "3"],
                                    ["crème brûlée", "thé vert", "café"]]))  # fmt: skip
    shapes = ["label", "probabilities"] + (["probability"] if len(classes) == 2 else [])
    on = {q: draw(st.booleans()) for q in FREE_QUIRKS}
    csv_ids = layout == "csv"
    on["ids without extension"] = csv_ids and draw(st.booleans())
    with_ext = csv_ids and not on["ids without extension"]
    on["ids say .jpg, files .JPG"] = (
        with_ext and on["upper-case extensions"] and draw(st.booleans())
    )
    on["file names decomposed (a Mac's)"] = on["names with spaces and accents"] and draw(
        st.booleans())  # fmt: skip
    on["labels written 1.0"] = csv_ids and all(c.isdigit() for c in classes) and draw(st.booleans())
    shape = draw(st.sampled_from(shapes))
    on["the sample's label has a space"] = shape == "label" and " " in classes[0]
    formats = draw(st.lists(st.sampled_from(sorted(FORMATS)), min_size=1, max_size=4, unique=True))
    quirks = [q for q, yes in on.items() if yes and q not in KNOWN_BUGS]
    return dict(layout=layout, classes=classes, shape=shape, formats=formats, quirks=quirks)


def write_csv(path, df: pd.DataFrame, quirks) -> None:
    text = df.to_csv(index=False, lineterminator="\r\n" if "CRLF line ends" in quirks else "\n")
    path.write_bytes(("\ufeff" if "a BOM" in quirks else "").encode() + text.encode("utf-8"))


def file_name(i: int, ext: str, quirks) -> str:
    stem = f"café crème {i:03d}" if "names with spaces and accents" in quirks else f"{i:03d}"
    return stem + (ext.upper() if "upper-case extensions" in quirks else ext)


def csv_id(name: str, quirks) -> str:
    """The id the CSVs write for the file `name`."""
    if "ids without extension" in quirks:
        return name.rsplit(".", 1)[0]
    if "ids say .jpg, files .JPG" in quirks:
        stem, ext = name.rsplit(".", 1)
        return f"{stem}.{ext.lower()}"
    return name


def on_disk(name: str, quirks) -> str:
    return unicodedata.normalize("NFD" if "file names decomposed (a Mac's)" in quirks else "NFC",
                                 name)  # fmt: skip


def strays(dest) -> None:
    """What a zip made on a Mac or a Windows folder view leaves beside the photos."""
    for where in ("train", "test"):
        (dest / where / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
        (dest / where / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (dest / "__MACOSX" / "train").mkdir(parents=True)
    (dest / "__MACOSX" / "train" / "._000.jpg").write_bytes(b"\0\5\26\7")


def write_folder(spec: dict, dest) -> dict:
    """The folder `spec` describes: 8 training photos a class and 6 test photos, each photo in
    one of its formats, in turn; sample_submission.csv and solution.csv. The photos' paths."""
    rng = np.random.default_rng(0)
    classes, quirks, k = spec["classes"], spec["quirks"], len(spec["classes"])
    scans, digits = layouts_data.digits(k, 8 * k + 6, seed=1)
    labels = [classes[d] for d in digits]
    names, paths = [], []
    for i, scan in enumerate(scans):
        ext, write = FORMATS[spec["formats"][i % len(spec["formats"])]]
        names.append(file_name(i, ext, quirks))
        where = "test" if i >= 8 * k else (f"train/{labels[i]}" if spec["layout"] == "folders"
                                           else "train")  # fmt: skip
        paths.append(dest / where / on_disk(names[-1], quirks))
        paths[-1].parent.mkdir(parents=True, exist_ok=True)
        im = photo(scan, rng)
        if "photos of several sizes" in quirks:
            im = im.resize((24 + 8 * (i % 4), 32 + 4 * (i % 3)))
        write(im, paths[-1])
    if "stray files" in quirks:
        strays(dest)
    ids = [csv_id(n, quirks) for n in names]
    if spec["layout"] == "csv":
        written = [f"{c}.0" if "labels written 1.0" in quirks else c for c in labels[: 8 * k]]
        write_csv(dest / "train.csv", pd.DataFrame({"id": ids[: 8 * k], "label": written}), quirks)
    order = np.arange(8 * k, len(ids))
    if "sample rows shuffled" in quirks:
        order = rng.permutation(order)
    test_ids = [ids[i] for i in order]
    shown = next(c for c in classes if " " not in c or "the sample's label has a space" in quirks)
    fill = {"label": {"label": shown}, "probability": {"label": 0.5},
            "probabilities": {c: round(1 / k, 3) for c in classes}}  # fmt: skip
    sample = pd.DataFrame({"id": test_ids, **fill[spec["shape"]]})
    write_csv(dest / "sample_submission.csv", sample, quirks)
    pd.DataFrame({"id": test_ids, "label": [labels[i] for i in order]}).to_csv(
        dest / "solution.csv", index=False)  # fmt: skip
    return dict(train=paths[: 8 * k], test=paths[8 * k :])


def metric(spec) -> str:
    return {"label": "accuracy", "probability": "auc", "probabilities": "logloss"}[spec["shape"]]


def claim_size(path, width: int, height: int) -> None:
    """A PNG whose header claims `width` x `height` (PIL reads the size before any pixel)."""
    data = bytearray(path.read_bytes())
    body = b"IHDR" + struct.pack(">II", width, height) + data[24:29]
    data[12:33] = body + struct.pack(">I", zlib.crc32(body))
    path.write_bytes(bytes(data))


def bomb(photo_path):
    """The photo replaced by a PNG (under its own name: PIL reads either) claiming 20000 x 20000
    pixels, past PIL's decompression-bomb limit."""
    Image.new("RGB", (8, 8)).save(photo_path, format="PNG")
    claim_size(photo_path, 20000, 20000)


def cut_short(path):
    data = path.read_bytes()
    path.write_bytes(data[: data.rindex(b",")])  # the last row loses its last value


def header_only(path):
    path.write_bytes(path.read_bytes().splitlines(keepends=True)[0])


def one_class(made, folder):
    """Every training photo in one class: the labels CSV's, or the class folders'."""
    if (folder / "train.csv").exists():
        train = pd.read_csv(folder / "train.csv", dtype=str, encoding="utf-8-sig")
        train.assign(label=train["label"].iloc[0]).to_csv(folder / "train.csv", index=False)
        return
    (folder / "train" / "only").mkdir()
    for path in made["train"]:
        path.rename(folder / "train" / "only" / path.name)
    for empty in folder.glob("train/*"):
        if empty.is_dir() and not any(empty.iterdir()):
            empty.rmdir()


SPOILS = {  # name: (spoil(made, folder), the layouts it applies to)
    "a missing test photo": (lambda made, folder: made["test"][2].unlink(), ALL),
    "an empty test photo": (lambda made, folder: made["test"][2].write_bytes(b""), ALL),
    "one class": (one_class, ALL),
    "train.csv with a header only": (lambda m, f: header_only(f / "train.csv"), ("csv",)),
    "train.csv cut short": (lambda m, f: cut_short(f / "train.csv"), ("csv",)),
    "the sample with a header only": (lambda m, f: header_only(f / "sample_submission.csv"), ALL),
    "the sample cut short": (lambda m, f: cut_short(f / "sample_submission.csv"), ALL),
    "a training photo past the bomb limit": (lambda made, folder: bomb(made["train"][3]), ALL),
    "a test photo past the bomb limit": (lambda made, folder: bomb(made["test"][1]), ALL),
}

"""What to look at by eye: where the model looks (Grad-CAM over chosen images) and the labels
its held-out predictions doubt (relabel.csv, candidate label noise). The grids are drawn with
PIL, not matplotlib: a run writes them in milliseconds, where a matplotlib grid of 32 captioned
images took about a second."""

from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont

CELL = 144  # px of the longer side of each image in a grid (a 28 px digit is drawn 5x)
GAP = 8  # px between cells
LINE = 14  # px per caption line
RELABEL_ROWS = 100  # relabel.csv: a list that a person can look through
RELABEL_SHOWN = 12  # ... of which relabel.png shows the first


def relabel(
    names: list, y: np.ndarray, probs: np.ndarray, pred: np.ndarray, classes
) -> pd.DataFrame:
    """Candidate label noise: the items given another label `pred` at better than even odds,
    most confident first (then least likely label), at most RELABEL_ROWS; the index is the
    items' positions. A model that knows little names none."""
    p_label, p_pred = probs[np.arange(len(y)), y], probs[np.arange(len(y)), pred]
    doubted = np.flatnonzero((pred != y) & (p_pred > 0.5))
    doubted = doubted[np.lexsort((p_label[doubted], -p_pred[doubted]))][:RELABEL_ROWS]
    return pd.DataFrame({"item": [names[i] for i in doubted],
                         "label": [classes[y[i]] for i in doubted],
                         "predicted": [classes[pred[i]] for i in doubted],
                         "p_label": p_label[doubted],
                         "p_predicted": p_pred[doubted]}, index=doubted)  # fmt: skip


def write_relabel(run_dir: Path, images, names, y, probs, pred, classes, show: bool) -> None:
    """relabel.csv, and relabel.png of its first images when it names any."""
    doubted = relabel(names, y, probs, pred, classes)
    doubted.to_csv(run_dir / "relabel.csv", index=False)
    cells = [(images[i], None, f"{item}\nlabel {label}\npredicted {p} ({q:.2f})")
             for i, item, label, p, _, q in doubted[:RELABEL_SHOWN].itertuples()]  # fmt: skip
    if cells:
        rows = [cells[i : i + 4] for i in range(0, len(cells), 4)]
        title = "labels the held-out predictions doubt most (relabel.csv)"
        write_grid(rows, run_dir / "relabel.png", show, title)


def where_it_looks(run_dir, images, names, y, probs, pred, classes, rows, maps, show) -> None:
    """grad_cam.png: the Grad-CAM map of the predicted class over each image of `rows` (lists
    of (item position, why it is shown)), from `maps(items, classes)`; nothing, said in one
    line, when the network has no map to give (None)."""
    rows = [row for row in rows if row]
    items = np.array([i for row in rows for i, _ in row], int)
    cams = maps(items, pred[items])
    if cams is None:
        print(
            "no Grad-CAM: the network's head takes no spatial map (a vision transformer's "
            "tokens, or a 1x1 map: a larger --size gives one)"
        )
        return
    cams = iter(cams)
    cells = [[(images[i], next(cams), f"{why}: {names[i]}\nactual {classes[y[i]]}\nmap of "
               f"{classes[pred[i]]} ({probs[i, pred[i]]:.2f})") for i, why in row]
             for row in rows]  # fmt: skip
    title = "where the model looks: Grad-CAM of the predicted class (top losses, then per class)"
    write_grid(cells, run_dir / "grad_cam.png", show, title)


def tile(image, cam) -> Image.Image:
    """A uint8 (C, H, W) image as RGB at most CELL px a side, under its map (H, W) in jet."""
    pixels = image.permute(1, 2, 0).numpy()
    pixels = np.repeat(pixels, 3, 2) if pixels.shape[2] == 1 else pixels[..., :3]
    if cam is not None:
        heat = matplotlib.colormaps["jet"](np.asarray(cam))[..., :3] * 255
        pixels = (0.55 * pixels + 0.45 * heat).astype(np.uint8)
    out = Image.fromarray(pixels)
    scale = CELL / max(out.size)
    resample = Image.Resampling.NEAREST if scale >= 2 else Image.Resampling.BILINEAR
    return out.resize([max(1, round(s * scale)) for s in out.size], resample)


def fitted(line: str, font, width: int) -> str:
    """`line` cut to `width` px, with an ellipsis where it was cut."""
    while line and font.getlength(line) > width:
        line = line[:-2] + "…"
    return line


def sized_font(size: int):
    """PIL's own font at `size` px (Pillow 10.1+ with FreeType), else its fixed bitmap font."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # an older Pillow: load_default takes no size
        return ImageFont.load_default()


def write_grid(rows: list, path: Path, show: bool, title: str) -> None:
    """A PNG grid of captioned images: `rows` is a list of [(image, map or None, caption), ...]."""
    font, bold = sized_font(11), sized_font(13)
    lines = max([1, *(c.count("\n") + 1 for row in rows for _, _, c in row)])
    cols, band = max([1, *map(len, rows)]), lines * LINE + 4
    width = max(GAP + cols * (CELL + GAP), round(bold.getlength(title)) + 2 * GAP)
    canvas = Image.new("RGB", (width, 28 + len(rows) * (band + CELL + GAP)), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((GAP, 6), title, fill="black", font=bold)
    for r, row in enumerate(rows):
        top = 28 + r * (band + CELL + GAP)
        for c, (image, cam, caption) in enumerate(row):
            left = GAP + c * (CELL + GAP)
            text = "\n".join(fitted(s, font, CELL) for s in caption.split("\n"))
            draw.multiline_text((left, top), text, fill="black", font=font, spacing=3)
            canvas.paste(tile(image, cam), (left, top + band))
    canvas.save(path)
    if show:  # a notebook shows it inline, as it does the matplotlib figures
        from IPython.display import display

        display(canvas)

"""A test set read as a stream of uint8 batches, for `kit predict`: a code competition's hidden
test set may be ten times the public one, so it is never held whole in memory, and no training
images are needed. Images are decoded as training decoded them (kit/data/images.py)."""

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from kit.data.images import decode
from kit.data.readers.files import held_out_items
from kit.data.readers.pixel_csv import pixels
from kit.data.readers.tables import read_csv as read_table
from kit.errors import KitError
from kit.recipe import Recipe

GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")
LOOK = 20  # test images whose colour is compared with the run's


@dataclass
class Stream:
    """The test ids in submission order, and a way to read their images in that order."""

    ids: list
    batches: Callable[..., Iterator[torch.Tensor]]  # (bs, device) -> uint8 (n, C, size, size)


class Files(torch.utils.data.Dataset):
    """Image files decoded and resized one by one, as training decoded them."""

    def __init__(self, files: list[Path], size: int, channels: int, resize: str = "squash"):
        self.files, self.size, self.channels, self.resize = files, size, channels, resize

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i) -> tuple[np.ndarray | None, Path]:
        pixels = decode(self.files[i], self.size, self.channels, self.resize)
        return (None if pixels is None else pixels.reshape(self.size, self.size, -1)), self.files[i]


def collate(items: list) -> tuple[torch.Tensor, Path | None]:
    """A batch of (size, size, channels) images as one uint8 tensor, stacked by numpy (torch's
    stack of uint8 images took a second a batch on 2 busy cores, numpy's a millisecond,
    measured), and the first image that could not be decoded, if any."""
    bad = next((f for pixels, f in items if pixels is None), None)
    if bad is not None:
        return torch.zeros(0), bad
    return torch.from_numpy(np.stack([pixels for pixels, _ in items])), None


def workers(device: torch.device) -> int:
    """DataLoader workers: on a GPU, decoding runs on spare cores beside the network; on the CPU
    none, as every core already runs the network: images are decoded between batches, as a
    bare loop does."""
    return max(1, min(8, (os.cpu_count() or 1) - 1)) if device.type == "cuda" else 0


def file_batches(files: list[Path], r: Recipe, bs: int, device) -> Iterator[torch.Tensor]:
    loader = torch.utils.data.DataLoader(
        Files(files, r.size, r.channels, r.resize),
        batch_size=bs,
        num_workers=workers(device),
        collate_fn=collate,
        pin_memory=device.type == "cuda",
    )
    for xb, bad in loader:
        if bad is not None:
            raise KitError(f"test image {bad} cannot be read, and every test image must be "
                           "predicted; copy the test set again")  # fmt: skip
        yield xb.permute(0, 3, 1, 2)  # NCHW, laid out as channels_last


def check_colour(files: list[Path], channels: int, run: str) -> None:
    """A KitError when none of the first test images has the colour the run was trained on
    (grey for 1 channel, colour for 3): the wrong folder, or the wrong run. A mixed set, with
    some grey photos among colour ones, is read as training read it."""
    modes = []
    for f in files[:LOOK]:
        try:
            with Image.open(f) as im:
                modes.append(im.mode)
        except OSError:
            continue
    grey = [m in GREY_MODES for m in modes]
    if modes and (channels == 1) not in grey:
        kind, trained = ("colour", "grey") if channels == 1 else ("grey", "colour")
        raise KitError(f"the test images are {kind} ({modes[0]}, e.g. {files[0].name}) but run "
                       f"{run} was trained on {trained} images ({channels} channel"
                       f"{'s' if channels > 1 else ''}); predict them with a run trained on "
                       f"{kind} images")  # fmt: skip


def pixel_rows(path: Path, r: Recipe, ids_given: bool, bs: int) -> Iterator[torch.Tensor]:
    """A pixel CSV's rows (without the id column) as batches, read a chunk at a time."""
    for chunk in pd.read_csv(path, chunksize=bs):
        if ids_given:
            chunk = chunk.drop(columns=[r.id_col])
        yield pixels(chunk, path, r.size)


def pixel_set(folder: Path, r: Recipe, sample: pd.DataFrame | None) -> Stream:
    """The pixel layout's test CSV: ids from its id column, the sample, or counted from 1 (as
    kit/data/layouts.py reads them)."""
    path = folder / r.test_csv
    given = r.id_col in read_table(path, "test pixels", nrows=1).columns
    if given:
        ids = read_table(path, "test pixels", (r.id_col,), usecols=[r.id_col])[r.id_col].tolist()
    else:
        n = sum(len(c) for c in pd.read_csv(path, usecols=[0], chunksize=65536))
        same = sample is not None and len(sample) == n
        ids = sample.iloc[:, 0].tolist() if same else [str(i) for i in range(1, n + 1)]
    if not ids:
        raise KitError(f"{path.name} has no rows; there is nothing to predict")
    return Stream(ids, lambda bs, device: pixel_rows(path, r, given, bs))


def stream_test_set(folder: Path, r: Recipe, sample: pd.DataFrame | None, run: str) -> Stream:
    """`folder`'s test set as the recipe's layout reads it: only the test images (or test CSV)
    and the sample are read, and the images' colour is checked against the run's."""
    if r.layout == "pixels":
        return pixel_set(folder, r, sample)
    ids, files = held_out_items(folder, r, sample)
    check_colour(files, r.channels, run)
    return Stream(ids, lambda bs, device: file_batches(files, r, bs, device))

"""Photos into uint8 tensors through a resized copy on disk, built once in parallel."""

import hashlib
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from kit.paths import in_kaggle_notebook

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".gif", ".webp"}


def cache_root() -> Path:
    """$KIT_CACHE; in a Kaggle notebook /tmp/kit-cache, outside the saved output; ~/.cache/kit."""
    if os.environ.get("KIT_CACHE"):
        return Path(os.environ["KIT_CACHE"])
    return Path("/tmp/kit-cache") if in_kaggle_notebook() else Path.home() / ".cache" / "kit"


def cache_dir(folder: Path, size: int, channels: int = 3) -> Path:
    """One cache per data folder, image size and colour (RGB, or grey)."""
    key = hashlib.sha1(str(folder.resolve()).encode()).hexdigest()[:10]
    return cache_root() / f"{folder.name}-{key}" / f"{size}px{'-grey' if channels == 1 else ''}"


def as_mode(im: Image.Image, mode: str) -> Image.Image:
    """Any PIL image (grey, 16-bit, RGBA, palette, CMYK) as 8-bit RGB or grey ("L")."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16/32-bit grey: scale, do not clip
        a = np.asarray(im, dtype=np.float64)
        im = Image.fromarray((255 * a / max(a.max(), 1)).astype(np.uint8))
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        flat = Image.new("RGBA", rgba.size, (255, 255, 255, 255))  # transparent is white
        im = Image.alpha_composite(flat, rgba)
    return im.convert(mode)


def decode(src: Path, size: int, channels: int) -> np.ndarray | None:
    """One image decoded at reduced scale and squashed to (size, size) or (size, size, 3) uint8;
    None for a file that cannot be decoded (corrupt or truncated). Training (through the cache)
    and `kit predict` (streaming) both read images through here, so they see the same pixels."""
    mode = "L" if channels == 1 else "RGB"
    try:
        with Image.open(src) as im:
            im.draft(mode, (size, size))  # JPEG: decode at 1/2, 1/4 or 1/8 scale, much faster
            return np.asarray(as_mode(im, mode).resize((size, size), Image.BICUBIC))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None


def resize_one(job: tuple[Path, Path, int, int]) -> bool:
    """Decode one image (`decode`) and save it as .npy atomically; False if it cannot be read."""
    src, dest, size, channels = job
    pixels = decode(src, size, channels)
    if pixels is None:
        return False
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, pixels)
    os.replace(tmp, dest)  # a half-written file never carries the final name: resumable
    return True


def cached_name(photo: Path) -> str:
    """The cache entry's name: the photo's full path, hashed, so that photos of one name in two
    folders (train/cat/1.jpg, train/dog/1.jpg) never share an entry; its size and time, so that
    a photo replaced by another gets a new one. The same file keeps its entry: resumable."""
    stat = photo.stat()
    where = hashlib.sha1(str(photo.resolve()).encode()).hexdigest()[:10]
    return f"{photo.name}.{where}.{stat.st_size}-{stat.st_mtime_ns}.npy"


def resize_all(entries: dict[Path, Path], size: int, what: str, channels: int) -> set[Path]:
    """Write the resized copy of each photo (key) to its cache entry (value) unless it is
    already there; returns the photos that could not be read."""
    todo = {f: entry for f, entry in entries.items() if not entry.exists()}
    if not todo:
        return set()
    next(iter(todo.values())).parent.mkdir(parents=True, exist_ok=True)
    start, bad = time.perf_counter(), set()
    jobs = [(f, entry, size, channels) for f, entry in todo.items()]
    workers = min(len(todo), os.cpu_count() or 1)
    with ProcessPoolExecutor(workers) as pool:
        results = pool.map(resize_one, jobs, chunksize=max(1, len(jobs) // (8 * workers)))
        for f, ok in zip(todo, progress(results, len(jobs), what)):
            if not ok:
                bad.add(f)
    print(f"resized {len(todo) - len(bad)} {what} photos to {size} px in "
          f"{time.perf_counter() - start:.0f} s (cache: {jobs[0][1].parent})")  # fmt: skip
    return bad


def progress(items, total: int, what: str):
    """fastprogress's bar in a terminal or notebook; silence in logs."""
    from fastcore.imports import IN_NOTEBOOK
    from fastprogress.fastprogress import progress_bar

    if sys.stdout.isatty() or IN_NOTEBOOK:
        return progress_bar(items, total=total, comment=f"resizing {what} photos")
    return items


def read_entry(photo: Path, entry: Path, size: int, channels: int) -> np.ndarray | None:
    """A cache entry's pixels as (size, size, channels); a damaged entry is made again from its
    photo. None when the photo itself cannot be read."""
    shape = (size, size) if channels == 1 else (size, size, 3)
    try:
        pixels = np.load(entry)
        if pixels.shape == shape and pixels.dtype == np.uint8:
            return pixels.reshape(size, size, channels)
    except (OSError, ValueError, EOFError):
        pass
    print(f"warning: rebuilding the damaged cache entry {entry.name}")
    entry.unlink(missing_ok=True)
    if not resize_one((photo, entry, size, channels)):
        return None
    return np.load(entry).reshape(size, size, channels)


def load_photos(files: list[Path], cache: Path, size: int, what: str, channels: int = 3):
    """(uint8 tensor (N, channels, size, size), list of files that could not be read)."""
    entries = {f: cache / cached_name(f) for f in files}
    bad = resize_all(entries, size, what, channels)
    arrays = {}
    for f in files:
        if f not in bad and (pixels := read_entry(f, entries[f], size, channels)) is not None:
            arrays[f] = pixels
    bad = [f for f in files if f not in arrays]
    x = np.stack(list(arrays.values())) if arrays else np.zeros((0, size, size, channels), np.uint8)
    return torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(), bad

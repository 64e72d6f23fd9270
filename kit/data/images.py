"""Photos into uint8 tensors through a resized copy on disk: one memory-mapped array per data
folder, image size and split, built once in parallel (resumable), read by every process
through the OS page cache, never all in memory at once."""

import hashlib
import json
import os
import shutil
import sys
import time
import weakref
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock

from kit.data.photos import decode
from kit.files import write_json
from kit.paths import in_kaggle_notebook

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".gif", ".webp"}
ROWS_PER_JOB = 64  # photos a worker decodes between two marks: what an interruption loses
WRITTEN, UNREADABLE = 1, 2  # a build's mark per photo (0: still to do)
DECODER = 2  # bump when decode() gives other pixels: caches another decoder built are rebuilt
# The cache file behind each mapped array that load_photos returned: its address in memory ->
# (path, header bytes, bytes per photo). Batches read their rows from the file (read_rows)
# rather than through the mapping: under a memory limit smaller than the set (a Kaggle
# container) every page fault on the mapping waits on reclaim, and random batches read through
# it ran at 115 photos/s against 5,000 with pread (benchmarks/memory.py, README).
MAPPED: dict[int, tuple[str, int, int]] = {}


def cache_root() -> Path:
    """$KIT_CACHE; in a Kaggle notebook /tmp/kit-cache, outside the saved output; ~/.cache/kit."""
    if os.environ.get("KIT_CACHE"):
        return Path(os.environ["KIT_CACHE"])
    return Path("/tmp/kit-cache") if in_kaggle_notebook() else Path.home() / ".cache" / "kit"


def cache_dir(folder: Path, size: int, channels: int = 3, resize: str = "squash") -> Path:
    """One cache per data folder, image size, colour (RGB, or grey) and resize (squash keeps the
    name it always had: the caches built before pad and crop existed stay valid)."""
    key = hashlib.sha1(str(folder.resolve()).encode()).hexdigest()[:10]
    grey, mode = "-grey" if channels == 1 else "", "" if resize == "squash" else f"-{resize}"
    return cache_root() / f"{folder.name}-{key}" / f"{size}px{grey}{mode}"


def manifest_key(files: list[Path]) -> str:
    """The photos' paths, sizes and times, in order, hashed: a photo added, removed, replaced
    or moved makes another cache. A stat per photo, no open."""
    h = hashlib.sha1(f"decoder {DECODER}\n".encode())
    for f in files:
        stat = f.stat()
        h.update(f"{f.absolute()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def open_cached(array: Path, record: Path, shape: tuple) -> tuple[np.ndarray, list] | None:
    """(the readable photos' rows, memory-mapped; the unreadable photos' numbers) of a complete
    cache, or None. Copy-on-write: pages come from the OS page cache, shared by every process
    that maps the file; a write changes only the writer's copy, never the file."""
    try:
        done = json.loads(record.read_text())
        x = np.load(array, mmap_mode="c")  # a short or damaged file fails here
    except (OSError, ValueError, EOFError):
        return None
    if x.shape != shape or x.dtype != np.uint8 or done.get("files") != shape[0]:
        return None
    MAPPED[x.ctypes.data] = (str(array), x.offset, int(np.prod(shape[1:])))
    weakref.finalize(x, MAPPED.pop, x.ctypes.data, None)  # gone with the mapping: no stale key
    return x[: done["rows"]], done["unreadable"]


def read_rows(x: torch.Tensor, rows: np.ndarray) -> torch.Tensor | None:
    """`x[rows]` read from the cache file behind `x` with one pread per row (through the page
    cache, so still shared by every process), or None when `x` is not a mapped cache."""
    found = MAPPED.get(x.data_ptr())
    if found is None or x.dtype != torch.uint8 or not x.is_contiguous() or x[0].numel() != found[2]:
        return None  # not the array load_photos returned (or its first rows): gathered in memory
    path, header, size = found
    out = np.empty((len(rows), *x.shape[1:]), np.uint8)
    with open(path, "rb", buffering=0) as f:
        for j, i in enumerate(rows.tolist()):
            if read_at(f, memoryview(out[j]).cast("B"), header + i * size) != size:
                raise OSError(f"{path}: short read at photo {i}")
    return torch.from_numpy(out)


def read_at(f, buffer: memoryview, offset: int) -> int:
    """One pread into `buffer`; a seek and a read where there is no os.preadv (Windows)."""
    if hasattr(os, "preadv"):
        return os.preadv(f.fileno(), [buffer], offset)
    f.seek(offset)
    return f.readinto(buffer)


def start_or_resume(partial: Path, marks_path: Path, shape: tuple) -> np.ndarray:
    """The build's marks, one per photo (0, WRITTEN, UNREADABLE): those of an interrupted build
    of the same photos, or zeros beside a new, empty array."""
    try:
        if np.load(partial, mmap_mode="r").shape == shape:
            return np.memmap(marks_path, np.uint8, "r+", shape=shape[:1])
    except (OSError, ValueError, EOFError):
        pass
    np.lib.format.open_memmap(partial, "w+", np.uint8, shape)  # sparse: no disk until written
    return np.memmap(marks_path, np.uint8, "w+", shape=shape[:1])


def decode_rows(job: tuple[Path, list[int], list[Path], int, int, str]) -> list[bool]:
    """In a worker: decode photos (`decode`) into their rows of the array being built, on disk
    before their marks are; which ones could be read."""
    partial, rows, files, size, channels, resize = job
    x = np.load(partial, mmap_mode="r+")
    ok = []
    for row, f in zip(rows, files):
        pixels = decode(f, size, channels, resize)
        if pixels is not None:
            x[row] = pixels.reshape(size, size, channels).transpose(2, 0, 1)
        ok.append(pixels is not None)
    x.flush()
    return ok


def decode_all(partial: Path, marks: np.ndarray, files: list[Path], size: int, channels: int,
               what: str, resize: str = "squash") -> None:  # fmt: skip
    """Decode the photos not yet marked, in parallel, marking each chunk as it lands."""
    todo = np.flatnonzero(marks == 0)
    workers = min(len(todo), os.cpu_count() or 1)
    step = max(1, min(ROWS_PER_JOB, len(todo) // (4 * workers)))
    jobs = [(partial, todo[i : i + step].tolist(), [files[j] for j in todo[i : i + step]], size,
             channels, resize) for i in range(0, len(todo), step)]  # fmt: skip
    start = time.perf_counter()
    pool = ProcessPoolExecutor(workers)
    try:
        for job, ok in zip(jobs, progress(pool.map(decode_rows, jobs), len(jobs), what)):
            marks[job[1]] = np.where(ok, WRITTEN, UNREADABLE)
    finally:
        pool.shutdown(cancel_futures=True)  # interrupted: drop the jobs not begun, keep the marks
    print(f"resized {len(todo)} {what} photos to {size} px in "
          f"{time.perf_counter() - start:.0f} s (cache: {partial.parent})")  # fmt: skip


def compact(partial: Path, unreadable: np.ndarray) -> int:
    """Move the readable photos' rows up over the unreadable ones, in order; how many."""
    x = np.load(partial, mmap_mode="r+")
    keep = np.setdiff1d(np.arange(len(x)), unreadable)
    for new, old in enumerate(keep):
        if new != old:
            x[new] = x[old]
    x.flush()
    return len(keep)


def build(files: list[Path], cache: Path, name: str, shape: tuple, what: str,
          resize: str = "squash") -> None:  # fmt: skip
    """Write `name`.npy (one row per photo, the unreadable ones' rows last and unused) and its
    record `name`.json; resumable: an interrupted build carries on from its marks. The array
    takes its name only when complete."""
    partial, marks_path = cache / f".{name}.npy.partial", cache / f".{name}.marks"
    marks = start_or_resume(partial, marks_path, shape)
    if (marks == 0).any():
        decode_all(partial, marks, files, shape[2], shape[1], what, resize)
    unreadable = np.flatnonzero(marks == UNREADABLE)
    marks_path.unlink()  # rows move from here on: an interruption now starts over
    rows = compact(partial, unreadable) if len(unreadable) else shape[0]
    write_json(cache / f"{name}.json", {"files": shape[0], "rows": rows,
                                        "unreadable": unreadable.tolist()})  # fmt: skip
    os.replace(partial, cache / f"{name}.npy")


def remove_stale(cache: Path, what: str, keep: str) -> None:
    """Other builds of this split (photos since changed), and the older one-file-per-photo cache."""
    for path in cache.glob(f"*{what}-*"):
        if keep not in path.name:
            path.unlink(missing_ok=True)
    if (cache / what).is_dir():
        shutil.rmtree(cache / what, ignore_errors=True)


def progress(items, total: int, what: str):
    """fastprogress's bar in a terminal or notebook; silence in logs."""
    from fastcore.imports import IN_NOTEBOOK
    from fastprogress.fastprogress import progress_bar

    if sys.stdout.isatty() or IN_NOTEBOOK:
        return progress_bar(items, total=total, comment=f"resizing {what} photos")
    return items


def locked(folder: Path) -> FileLock:
    """An exclusive lock on `folder` (made if missing) for a `with` block: a lock file inside
    it, through filelock, which works on Windows as on Linux and macOS."""
    folder.mkdir(parents=True, exist_ok=True)
    return FileLock(folder / ".lock")


def load_photos(files: list[Path], cache: Path, size: int, what: str, channels: int = 3,
                resize: str = "squash"):  # fmt: skip
    """(uint8 tensor (N, channels, size, size) memory-mapped from the cache folder `cache` (one
    per resize: `cache_dir`), built there first if needed; the files that could not be read, left
    out of it)."""
    shape = (len(files), channels, size, size)
    if not files:
        return torch.zeros(shape, dtype=torch.uint8), []
    name = f"{what}-{manifest_key(files)}"
    found = open_cached(cache / f"{name}.npy", cache / f"{name}.json", shape)
    if found is None:
        with locked(cache):  # two runs at once: one builds, the other waits and reads it
            found = open_cached(cache / f"{name}.npy", cache / f"{name}.json", shape)
            if found is None:
                build(files, cache, name, shape, what, resize)
                remove_stale(cache, what, name)
                found = open_cached(cache / f"{name}.npy", cache / f"{name}.json", shape)
    x, unreadable = found
    return torch.from_numpy(x), [files[i] for i in unreadable]

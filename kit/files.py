"""Writing files safely: in one step (a reader never sees half a file), never over a user's file,
and nothing left behind when a write fails. JSON records and figures are written this way."""

import contextlib
import json
import os
import secrets
import shutil
from pathlib import Path

from kit.errors import KitError


@contextlib.contextmanager
def replacing(path: Path):
    """Yield a temporary path beside `path` to write to; it replaces `path` in one step when
    the block completes, so a reader (or a resumed run) never sees half a file."""
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def building(dest: Path):
    """Yield a hidden partial folder that takes `dest`'s name (absent or empty) only when the
    block completes; on failure nothing is left behind."""
    partial = dest.parent / f".{dest.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        yield partial
        if dest.exists():
            dest.rmdir()
        partial.rename(dest)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def write_new(text: str, dest: Path) -> Path:
    """Write `text` (UTF-8) to `dest` in one step; refuse to replace an existing file. The file
    gets the usual mode (0o666 less the umask), as every other file a user makes."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode("utf-8")
    tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.tmp")
    try:
        write_exclusive(tmp, data)
        os.link(tmp, dest)  # fails if dest exists: a submission is never overwritten
    except FileExistsError:
        raise KitError(f"{dest} already exists; nothing was overwritten") from None
    except OSError:  # no hard links here (exFAT, FAT32, many network mounts)
        try:
            write_exclusive(dest, data)  # O_EXCL: still never over a file
        except FileExistsError:
            raise KitError(f"{dest} already exists; nothing was overwritten") from None
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def write_exclusive(path: Path, data: bytes) -> None:
    """Create `path` (failing if it exists) holding `data`; if the write fails, nothing is left.
    The mode 0o666 is less the umask, as open() would make it."""
    flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    except BaseException:
        path.unlink(missing_ok=True)  # ours: O_EXCL made it
        raise


def read_json(path: Path, default=None):
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return default


def write_json(path: Path, obj) -> None:
    """Replace `path` atomically: a reader never sees half a record."""
    with replacing(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")


def save_figure(fig, path: Path, show: bool) -> None:
    """Write a matplotlib figure as PNG; keep it open for a notebook to show inline, else close
    it."""
    fig.savefig(path, dpi=100, bbox_inches="tight")
    if not show:
        import matplotlib.pyplot as plt

        plt.close(fig)

"""Kaggle's archives, unpacked once: zips (nested too) and 7z files."""

import zipfile
from pathlib import Path

import py7zr

from kit.errors import KitError


def extract(archive: Path, folder: Path) -> None:
    opener = zipfile.ZipFile if archive.suffix == ".zip" else py7zr.SevenZipFile
    with opener(archive) as z:
        z.extractall(folder)


def unpack(folder: Path) -> None:
    """Extract every .zip and .7z in `folder` into it, repeating for archives found inside."""
    done = folder / ".kit-unpacked"
    seen = set(done.read_text().split("\n")) if done.exists() else set()
    while todo := sorted(p for p in [*folder.glob("*.zip"), *folder.glob("*.7z")]
                         if p.name not in seen):  # fmt: skip
        for archive in todo:
            print(f"unpacking {archive.name}")
            try:
                extract(archive, folder)
            except PermissionError:
                raise KitError(f"cannot unpack {archive} in a read-only folder; unpack it into "
                               "a writable folder and pass that with --data") from None  # fmt: skip
            except (zipfile.BadZipFile, py7zr.Bad7zFile, OSError, ValueError) as e:
                raise KitError(f"{archive} is damaged ({e}); download it again") from None
            seen.add(archive.name)
            done.write_text("\n".join(sorted(seen)))

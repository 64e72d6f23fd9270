"""Kaggle's archives, unpacked once: zips (nested too) and 7z files."""

import zipfile
from pathlib import Path

from kit.errors import KitError


def unpack(folder: Path) -> None:
    """Extract every .zip and .7z in `folder` into it, repeating for archives found inside."""
    done = folder / ".kit-unpacked"
    seen = set(done.read_text().split("\n")) if done.exists() else set()
    while todo := sorted(p for p in [*folder.glob("*.zip"), *folder.glob("*.7z")]
                         if p.name not in seen):  # fmt: skip
        for archive in todo:
            print(f"unpacking {archive.name}")
            try:
                if archive.suffix == ".zip":
                    with zipfile.ZipFile(archive) as z:
                        z.extractall(folder)
                else:
                    import py7zr

                    with py7zr.SevenZipFile(archive) as z:
                        z.extractall(folder)
            except PermissionError:
                raise KitError(f"cannot unpack {archive} in a read-only folder; unpack it into "
                               "a writable folder and pass that with --data") from None  # fmt: skip
            except (zipfile.BadZipFile, OSError, ValueError) as e:
                raise KitError(f"{archive} is damaged ({e}); download it again") from None
            seen.add(archive.name)
            done.write_text("\n".join(sorted(seen)))

"""Which layout a downloaded competition folder is in, for `kit new`: the first reader whose
`detect()` finds its layout there (kit/data/readers/)."""

from pathlib import Path

from kit.data.layouts import READERS
from kit.data.readers.contents import labelled_first, look, rel
from kit.data.readers.tables import has_rows
from kit.errors import KitError
from kit.recipe import LAYOUTS


def find_layout(folder: Path, sample) -> dict:
    """The first layout that fits the folder, as {field: (value, comment)}, plus what the
    recipe's other choices need: `_labels` (the training labels, read as `kit run` reads them)
    and `_train` (the training images) or `_size` (the side and greyness of pixel rows); a
    KitError naming what the folder holds when none fits."""
    seen = look(folder, sample)
    for reader in READERS.values():
        found = reader.detect(seen)
        if found is not None:
            return found
    for path in labelled_first(seen):  # the likeliest labels CSV, cut to its header
        has_rows(seen.csvs[path], path)
    dirs = ", ".join(f"{rel(folder, d)}/ ({n})" for d, n in seen.dirs.items())
    what = [f"CSV files {', '.join(p.name for p in seen.csvs) or 'none'}",
            f"image folders {dirs or 'none'}"]  # fmt: skip
    known = "; ".join(READERS[name].NAME for name in LAYOUTS)
    raise KitError(f"cannot recognise the layout of {folder}: found {'; '.join(what)}. The "
                   f"layouts known: {known}")  # fmt: skip

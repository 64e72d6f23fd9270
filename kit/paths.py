"""Where a competition's data is found and where runs and submissions go, on a laptop or in a
Kaggle notebook."""

import os
from pathlib import Path

from kit.errors import KitError


def in_kaggle_notebook() -> bool:
    return "KAGGLE_KERNEL_RUN_TYPE" in os.environ


def kaggle_root() -> Path:
    """/kaggle, or $KIT_KAGGLE_ROOT: a folder that stands in for it (to simulate a notebook)."""
    return Path(os.environ.get("KIT_KAGGLE_ROOT") or "/kaggle")


def kaggle_input() -> Path:
    """Where a Kaggle notebook's attached competitions and datasets are mounted."""
    return kaggle_root() / "input"


def kaggle_working() -> Path:
    """A Kaggle notebook's output folder, the one whose submission.csv Kaggle scores."""
    return kaggle_root() / "working"


def data_candidates(slug: str, data: str | Path | None = None) -> list[Path]:
    """The folders searched for a competition's data, first found wins: --data; $KIT_DATA/<slug>;
    a Kaggle notebook's inputs; ./data/<slug>."""
    if data is not None:
        return [Path(data)]
    found = []
    if os.environ.get("KIT_DATA"):
        found.append(Path(os.environ["KIT_DATA"]) / slug)
    found += [kaggle_input() / "competitions" / slug, kaggle_input() / slug]
    found.append(Path("data") / slug)
    return found


def data_dir(name: str, slug: str, data: str | Path | None = None, also=None, fix=None) -> Path:
    """The competition folder, searched in the usual places, then in `also` (where `kit new`
    found it); a KitError saying how to get one when there is none (`fix`, else `kit run`'s)."""
    candidates = data_candidates(slug, data) + ([Path(also)] if also and data is None else [])
    for path in candidates:
        if path.is_dir():
            return path
    where = str(candidates[0]) if data is not None else ", ".join(str(p) for p in candidates)
    fix = fix or f"try the bundled sample with `kit run {name} --sample`"
    raise KitError(f"no data for {name} at {where}; fetch it with `kit download {name}`, or {fix}")


def output_root(out: str | Path | None = None) -> Path:
    """Where runs/ and submissions/ live: --out, /kaggle/working in a notebook, else here."""
    if out is not None:
        return Path(out)
    return kaggle_working() if in_kaggle_notebook() else Path.cwd()

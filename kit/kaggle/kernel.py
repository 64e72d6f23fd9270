"""`kit kernel`: a Kaggle notebook that installs the kit offline from a wheels dataset and runs a
recipe, or (with --predict RUN, for code competitions) predicts with a run trained elsewhere from
a model dataset; with --push, the datasets and the notebook sent to Kaggle.

A notebook rather than a script: Kaggle's viewer shows a notebook's outputs as they were when it
ran (the learning-rate finder, the confusion matrix, the image grids, the progress tables),
while a script kernel shows only its log. One kernel has one code file, so there is no script
beside it to keep in step.
"""

import json
from pathlib import Path

from kit.errors import KitError
from kit.files import building
from kit.kaggle.client import client, quiet, talking_to, username
from kit.kaggle.datasets import (
    KAGGLE_LACKS,
    build_wheels,
    model_dataset,
    push_dataset,
    wait_until_ready,
)
from kit.paths import output_root
from kit.recipe import load_competition, packaged_dir, recipe_file
from kit.runs.folder import finished_run

INTRO = """\
# kit {name}

Trains kit's `{name}` recipe with the internet off and writes `/kaggle/working/submission.csv`,
the file Kaggle scores; the run folder (checkpoints, plots, predictions) is under
`/kaggle/working/runs/`. Made by `kit kernel {name}`.

Attached: the competition's data and the dataset `{wheels}` (the kit's wheels, made by
`kit kernel {name} DIR --push`). Change the recipe in `OPTIONS`."""

OPTIONS = """\
# Recipe fields and run options, as `kit.run` takes them: {"cycles": 4, "folds": 5, "lr": 3e-3};
# "nproc": "auto" trains on both GPUs (DDP, or with "folds" one fold per GPU)
OPTIONS = {}"""

INSTALL = """\
import glob
import os
import re
import subprocess
import sys
import tempfile

try:
    from packaging.tags import sys_tags
except ImportError:
    from pip._vendor.packaging.tags import sys_tags  # pip carries it

# The wheels come from the attached dataset (the internet is off). They go into a folder of
# their own, put first on the path, so Kaggle's installed packages stay as they are. The dataset
# holds a compiled package's wheel for each Python a Kaggle image may have: this one's is taken.
# KIT_KAGGLE_ROOT stands in for /kaggle where a notebook is simulated (the kit's tests).
INPUT = os.path.join(os.environ.get("KIT_KAGGLE_ROOT") or "/kaggle", "input")
found = glob.glob(os.path.join(INPUT, "**", "kit-*.whl"), recursive=True)
if not found:
    raise FileNotFoundError("attach the dataset {wheels}: it holds the kit's wheels")
rank = {{str(tag): i for i, tag in enumerate(sys_tags())}}  # the best fit first
best, packages = {{}}, set()
for wheel in glob.glob(os.path.join(os.path.dirname(found[0]), "*.whl")):
    name, *_, py, abi, platform = os.path.basename(wheel)[:-4].split("-")
    package = re.sub(r"[-_.]+", "_", name).lower()
    packages.add(package)
    fits = [rank[f"{{p}}-{{a}}-{{s}}"] for p in py.split(".") for a in abi.split(".")
            for s in platform.split(".") if f"{{p}}-{{a}}-{{s}}" in rank]
    if fits and min(fits) < best.get(package, (len(rank), ""))[0]:
        best[package] = (min(fits), wheel)
lacking = sorted(packages - set(best))
if lacking:
    python = f"{{sys.version_info.major}}.{{sys.version_info.minor}}"
    raise RuntimeError(f"the dataset {wheels} has no {{lacking[0]}} wheel for this Python "
                       f"({{python}}): push it again with KIT_KAGGLE_PYTHONS={{python}} set")
site = tempfile.mkdtemp(prefix="kit-wheels-")
pip = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--target", site]
subprocess.run([*pip, *(wheel for _, wheel in best.values())], check=True)
sys.path.insert(0, site)
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [site, os.environ.get("PYTHONPATH")]))"""

LOCAL_RECIPE = """\
# The recipe `kit new` wrote: kit finds it in the working folder's competitions/.
import os

WORKING = os.path.join(os.environ.get("KIT_KAGGLE_ROOT") or "/kaggle", "working")
os.makedirs(os.path.join(WORKING, "competitions"), exist_ok=True)
with open(os.path.join(WORKING, "competitions", "{file}"), "w") as f:
    f.write({source!r})"""

RUN = """\
import kit

print(f"kit {{kit.__version__}} from {{os.path.dirname(kit.__file__)}}")
result = kit.run("{name}", **OPTIONS)"""

PREDICT_INTRO = """\
# kit {name}: predict with run {run}

Predicts the competition's test set (on Kaggle's re-run, the hidden one) with the run `{run}`,
trained elsewhere, and writes `/kaggle/working/submission.csv`; it trains nothing and reads no
training images. It prints the time per 1,000 images: check that the hidden test set fits the
competition's time limit. Made by `kit kernel {name} DIR --predict {run}`.

Attached: the competition's data, the dataset `{wheels}` (the kit's wheels) and the dataset
`{model}` (the run's weights and what prediction needs of it)."""

PREDICT = """\
import kit

print(f"kit {{kit.__version__}} from {{os.path.dirname(kit.__file__)}}")
found = glob.glob(os.path.join(INPUT, "**", "{run}", "metrics.json"), recursive=True)
if not found:
    raise FileNotFoundError("attach the dataset {model}: it holds the run {run}")
result = kit.predict("{name}", os.path.dirname(found[0]))"""


def notebook(name: str, wheels: str, local: Path | None = None, model: str = "", run="") -> dict:
    """The kernel as an nbformat 4 notebook: what it is, the options, the install, the recipe
    file if it is a local one (`local`), the run; with a `run` (and its `model` dataset), what
    it is, the install, the recipe file, the prediction."""

    def cell(kind: str, cell_id: str, source: str) -> dict:
        c = {"cell_type": kind, "id": cell_id, "metadata": {}, "source": source}
        return c | ({"execution_count": None, "outputs": []} if kind == "code" else {})

    recipe = LOCAL_RECIPE.format(file=local.name, source=local.read_text()) if local else None
    if run:
        top = [cell("markdown", "intro", PREDICT_INTRO.format(name=name, run=run, wheels=wheels,
                                                              model=model))]  # fmt: skip
        last = cell("code", "predict", PREDICT.format(name=name, run=run, model=model))
    else:
        top = [cell("markdown", "intro", INTRO.format(name=name, wheels=wheels)),
               cell("code", "options", OPTIONS)]  # fmt: skip
        last = cell("code", "run", RUN.format(name=name))
    return {
        "cells": [
            *top,
            cell("code", "install", INSTALL.format(wheels=wheels)),
            *([cell("code", "recipe", recipe)] if recipe else []),
            last,
        ],
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def kernel(
    name: str, folder, push=False, user=None, extra=KAGGLE_LACKS, predict=None, out=None
) -> Path:
    """`kit kernel`: a folder ready for `kaggle kernels push`, holding the notebook and its
    metadata; with `predict` (a finished run), an inference notebook and the model dataset it
    reads (model/); with `push`, the wheels (and model) datasets uploaded and the kernel pushed."""
    r = load_competition(name).RECIPE
    path = recipe_file(name)
    local = path if path.parent != packaged_dir() else None  # not in the kit's wheel: ship it
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise KitError(f"{folder} is not empty; give a new folder for the kernel")
    run_dir = finished_run(output_root(out) / "runs" / name, name, predict) if predict else None
    api = client() if push else None
    user = user or (api.config_values.get("username") if api else username())
    if not user:
        raise KitError("pass --user with your Kaggle user name: it owns the kernel and the "
                       "wheels dataset")  # fmt: skip
    wheels_ref = f"{user}/kit-wheels"
    stem = "kit-" + name.lower().replace("_", "-")  # Kaggle's slugs: lower case and hyphens
    model_ref = f"{user}/{stem}-model" if run_dir else ""
    slug = stem + ("-predict" if run_dir else "")
    metadata = {
        "id": f"{user}/{slug}",
        "title": f"kit {name}" + (" predict" if run_dir else ""),
        "code_file": f"{slug}.ipynb",
        "language": "python",
        "kernel_type": "notebook",
        "is_private": True,
        "enable_gpu": True,
        "enable_tpu": False,
        "machine_shape": "NvidiaTeslaT4",  # Kaggle's two T4s
        "enable_internet": False,  # written out: Kaggle's default is on
        "dataset_sources": [wheels_ref, *([model_ref] if run_dir else [])],
        "competition_sources": [r.slug],
        "kernel_sources": [],
        "model_sources": [],
    }
    run_id = run_dir.name if run_dir else ""
    with building(folder) as partial:
        (partial / "kernel-metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
        code = json.dumps(notebook(name, wheels_ref, local, model_ref, run_id), indent=1) + "\n"
        (partial / metadata["code_file"]).write_text(code)
        if run_dir:
            model_dataset(run_dir, name, partial / "model", model_ref)
        if push:
            build_wheels(partial / "wheels", wheels_ref, extra)
    print(f"wrote the {name} kernel to {folder}")
    if run_dir:
        print(f"wrote the model dataset to {folder / 'model'} ({model_ref})")
    if push:
        push_dataset(api, folder / "wheels", wheels_ref)
        if run_dir:
            push_dataset(api, folder / "model", model_ref, dir_mode="zip")
        by_hand = f"then push the kernel with `kaggle kernels push -p {folder}`"
        wait_until_ready(api, metadata["dataset_sources"], f"wait a few minutes, {by_hand}")
        with talking_to(f"kernel {metadata['id']!r}"), quiet():
            result = api.kernels_push(str(folder))
        if result.error:
            raise KitError(f"Kaggle refused the kernel: {result.error}")
        lacking = [*result.invalid_dataset_sources, *result.invalid_competition_sources]
        if lacking:
            raise KitError(f"Kaggle saved the kernel {result.url} without {', '.join(lacking)}, "
                           f"which it could not attach (a competition's rules not accepted?); "
                           f"{by_hand}")  # fmt: skip
        print(f"pushed the kernel: {result.url} (version {result.version_number})")
    return folder

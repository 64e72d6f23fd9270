"""The kit inside a real Jupyter kernel, with a Kaggle notebook simulated: KAGGLE_KERNEL_RUN_TYPE
set and KIT_KAGGLE_ROOT standing in for /kaggle (input/ and working/ in tmp_path)."""

import json
import os
import shutil
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient

import kit
from kit.kaggle.kernel import build_wheels, kernel

REPO = Path(kit.__file__).resolve().parents[1]
TINY = dict(cycles=1, tta=False, lr=3e-3)  # one epoch; a pinned rate skips the finder's 100 steps


def kaggle_root(tmp_path: Path) -> Path:
    root = tmp_path / "kaggle"
    (root / "input").mkdir(parents=True)
    (root / "working").mkdir()
    return root


def execute(nb, root: Path, pythonpath: str | None) -> nbformat.NotebookNode:
    """Run every cell in a fresh python3 kernel, in the working root as on Kaggle; returns the
    notebook with its outputs (a failing cell raises, with the kernel's traceback)."""
    env = {k: v for k, v in os.environ.items() if k not in ("MPLBACKEND", "KIT_DATA", "PYTHONPATH")}
    env |= {"KAGGLE_KERNEL_RUN_TYPE": "Batch", "KIT_KAGGLE_ROOT": str(root)}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    path = {"metadata": {"path": str(root / "working")}}
    NotebookClient(nb, timeout=600, kernel_name="python3", resources=path).execute(env=env)
    return nb


def outputs(nb) -> list:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]


def images(nb) -> list:
    return [o for o in outputs(nb) if "image/png" in o.get("data", {})]


def text(nb) -> str:
    return "".join(o.text for o in outputs(nb) if o.output_type == "stream")


def test_kit_run_in_a_notebook_shows_plots_and_progress_and_writes_submission_csv(tmp_path):
    root = kaggle_root(tmp_path)
    options = ", ".join(f"{k}={v!r}" for k, v in TINY.items())
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(f'import kit\nr = kit.run("mnist", sample=True, {options})')
    ]
    execute(nb, root, str(REPO))

    run_dir = next((root / "working" / "runs" / "mnist").iterdir())
    pngs = sorted(run_dir.glob("*.png"))
    # curves, confusion matrix, top losses, Grad-CAM, a grid per digit; relabel.png where the
    # held-out predictions doubt a label (relabel.csv names some)
    doubted = len((run_dir / "relabel.csv").read_text().splitlines()) > 1
    assert len(pngs) == 14 + doubted and (run_dir / "relabel.png").exists() == doubted
    assert len(images(nb)) == len(pngs)  # each plot was shown inline, as an image output
    html = [o.data["text/html"] for o in outputs(nb) if "text/html" in o.get("data", {})]
    assert any('class="fastprogress"' in h for h in html)  # the epoch table, as HTML
    assert "\r" not in text(nb)  # no carriage-return bars in the cell's text
    assert "valid accuracy" in text(nb)
    submission = root / "working" / "submission.csv"
    assert submission.read_text() == (run_dir / "submission.csv").read_text()
    assert pd.read_csv(submission)["ImageId"].tolist() == list(range(1, 361))


def tiny_competition(sample: Path, dest: Path, train: int = 200, test: int = 40) -> None:
    """The first rows of the bundled sample, in Kaggle's layout: a quick run for the notebook."""
    dest.mkdir(parents=True)
    pd.read_csv(sample / "train.csv").head(train).to_csv(dest / "train.csv", index=False)
    for name in ("test.csv", "sample_submission.csv"):
        pd.read_csv(sample / name).head(test).to_csv(dest / name, index=False)


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> Path:
    """The kit's own wheel, built by the code `--push` uses: the attached wheels dataset."""
    if not (REPO / "pyproject.toml").exists():
        pytest.skip("needs a source checkout")
    folder = tmp_path_factory.mktemp("wheels") / "kit-wheels"
    build_wheels(folder, "someone/kit-wheels", extra=())
    return folder


def test_the_generated_notebook_installs_the_wheels_offline_and_runs_the_recipe(
    tmp_path, mnist_sample, wheels
):
    """`kit kernel`'s notebook as written, but for its OPTIONS cell, with the kit's own wheel
    (built by the code `--push` uses) in a stand-in for the attached dataset, training in two
    processes that torchrun starts. The kernel's environment is left as it is: the notebook
    installs into a folder of its own, which the processes find through PYTHONPATH."""
    root = kaggle_root(tmp_path)
    tiny_competition(mnist_sample, root / "input" / "digit-recognizer")
    shutil.copytree(wheels, root / "input" / "kit-wheels")
    folder = kernel("mnist", tmp_path / "k", user="someone")
    nb = nbformat.read(folder / "kit-mnist.ipynb", as_version=4)
    options = next(c for c in nb.cells if c.get("id") == "options")
    # what a user edits; two processes on the CPU, as two GPUs on Kaggle
    options.source += f"\nOPTIONS = {TINY | dict(nproc=2, device='cpu')!r}"
    execute(nb, root, None)

    line = next(s for s in text(nb).splitlines() if s.startswith("kit 0.1.0 from "))
    site = Path(line.removeprefix("kit 0.1.0 from ")).parent
    assert site.name.startswith("kit-wheels-") and (site / "competitions").is_dir()
    assert not site.is_relative_to(REPO)  # imported from the installed wheel, not this checkout
    submission = pd.read_csv(root / "working" / "submission.csv")
    assert submission["ImageId"].tolist() == list(range(1, 41))
    (run_dir,) = (root / "working" / "runs" / "mnist").iterdir()
    assert json.loads((run_dir / "metrics.json").read_text())["processes"] == 2
    assert "epoch 0  train_loss" in text(nb) and "\r" not in text(nb)  # streamed into the cell
    assert len(images(nb)) == len(list(run_dir.glob("*.png")))  # and the plots shown after
    shutil.rmtree(site, ignore_errors=True)


def test_the_inference_notebook_predicts_offline_with_no_training_image(
    tmp_path, mnist_sample, wheels
):
    """`kit kernel --predict`: a run trained elsewhere, shipped as the model dataset; the
    competition folder holds only test.csv and the sample, as a code competition's re-run does."""
    trained = tmp_path / "trained"
    tiny_competition(mnist_sample, trained / "digit-recognizer")
    run = Path(kit.run("mnist", data=trained / "digit-recognizer", out=trained, **TINY)["run_dir"])
    root = kaggle_root(tmp_path)
    hidden = root / "input" / "digit-recognizer"
    hidden.mkdir()
    for name in ("test.csv", "sample_submission.csv"):
        shutil.copyfile(trained / "digit-recognizer" / name, hidden / name)
    shutil.copytree(wheels, root / "input" / "kit-wheels")
    folder = kernel("mnist", tmp_path / "k", user="someone", predict=run.name, out=trained)
    shutil.copytree(folder / "model", root / "input" / "kit-mnist-model")
    nb = nbformat.read(folder / "kit-mnist-predict.ipynb", as_version=4)
    execute(nb, root, None)

    line = next(s for s in text(nb).splitlines() if s.startswith("kit 0.1.0 from "))
    assert not Path(line.removeprefix("kit 0.1.0 from ")).is_relative_to(REPO)  # the wheel's kit
    assert "s per 1,000 images" in text(nb)
    written = pd.read_csv(root / "working" / "submission.csv")
    assert written.equals(pd.read_csv(run / "submission.csv"))
    assert not (root / "working" / "runs").exists()  # nothing trained

"""The contract every recipe keeps, checked for each file in competitions/."""

import dataclasses
import subprocess
import sys

import numpy as np
import pytest
import torch

from kit.data.layouts import load as read_layout
from kit.data.sample import write_sample
from kit.data.submission import check_submission, make_submission, read_sample, submission_shape
from kit.recipe import (
    check,
    field_help,
    load_competition,
    packaged_dir,
    recipe_fields,
    recipe_names,
)
from kit.train.learner import resolve_precision

NAMES = recipe_names()


def test_every_recipe_field_has_help():
    assert set(field_help()) >= {f.name for f in recipe_fields()}


@pytest.mark.parametrize("name", NAMES)
def test_recipe_is_valid_and_named_after_its_file(name):
    comp = load_competition(name)
    assert comp.RECIPE.name == name and comp.RECIPE.description
    check(comp.RECIPE)
    check(dataclasses.replace(comp.RECIPE, **getattr(comp, "SAMPLE", {})))


def test_a_competitions_folder_of_kit_new_hides_no_packaged_recipe(tmp_path):
    """Where the working folder is an import root (`python -m kit.cli`, as torchrun starts each
    process of `--nproc`; a notebook, as `python -c`) and holds competitions/ from `kit new`,
    the packaged recipes and the local one are all found."""
    (tmp_path / "competitions").mkdir()
    text = (packaged_dir() / "mnist.py").read_text().replace('name="mnist"', 'name="digits"')
    (tmp_path / "competitions" / "digits.py").write_text(text)
    listed = subprocess.run([sys.executable, "-m", "kit.cli", "list"], cwd=tmp_path,
                            capture_output=True, text=True)  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    assert {line.split()[0] for line in listed.stdout.splitlines() if line} == {*NAMES, "digits"}
    code = "from kit.recipe import load_competition as f; print(f('mnist').__file__, f('digits'))"
    loaded = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                            text=True)  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.startswith(str(packaged_dir() / "mnist.py"))


@pytest.mark.parametrize("name", NAMES)
def test_no_recipe_forces_bf16_on_a_gpu_without_bf16_units(name, monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))  # a T4
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # emulated
    precision = load_competition(name).RECIPE.precision
    assert resolve_precision(precision, torch.device("cuda")) != "bf16"


@pytest.mark.parametrize("name", NAMES)
def test_sample_loads_into_tensors_and_makes_a_valid_submission(name, tmp_path):
    comp = load_competition(name)
    r = dataclasses.replace(comp.RECIPE, **getattr(comp, "SAMPLE", {}))
    folder = write_sample(name, tmp_path / name)
    d = getattr(comp, "load", read_layout)(folder, r)
    assert d.x.dtype == torch.uint8 and d.x.shape[2:] == (r.size, r.size)
    assert d.test_x.shape[1:] == d.x.shape[1:] and len(d.test_x) == len(d.test_ids)
    assert len(d.y) == len(d.x) == len(d.names)
    assert set(d.y.tolist()) == set(range(len(d.classes)))
    assert d.test_y is not None and len(d.test_y) == len(d.test_ids)
    probs = np.full((len(d.test_ids), len(d.classes)), 1 / len(d.classes))
    probs[:, 0] += 0.01  # a definite argmax
    sample = read_sample(folder)
    sub = make_submission(r, sample, d.test_ids, probs / probs.sum(1, keepdims=True), d.classes)
    labels = d.classes if submission_shape(r, sample, d.classes) == "label" else None
    check_submission(sub, sample, d.test_ids, labels)

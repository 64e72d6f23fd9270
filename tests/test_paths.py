"""Where data is looked for and where outputs go."""

from pathlib import Path

import pytest

from kit.errors import KitError
from kit.paths import data_candidates, data_dir, output_root
from kit.runs.folder import new_run_dir
from kit.train.weights import weight_folders


def test_search_order(monkeypatch, tmp_path):
    monkeypatch.setenv("KIT_DATA", str(tmp_path / "store"))
    assert data_candidates("digit-recognizer") == [
        tmp_path / "store" / "digit-recognizer",
        Path("/kaggle/input/competitions/digit-recognizer"),
        Path("/kaggle/input/digit-recognizer"),
        Path("data/digit-recognizer"),
    ]
    assert data_candidates("x", data=tmp_path) == [tmp_path]


def test_first_existing_folder_wins(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data" / "slug").mkdir(parents=True)
    assert data_dir("r", "slug") == Path("data/slug")
    (tmp_path / "store" / "slug").mkdir(parents=True)
    monkeypatch.setenv("KIT_DATA", str(tmp_path / "store"))
    assert data_dir("r", "slug") == tmp_path / "store" / "slug"


def test_missing_data_lists_where_it_looked(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("KIT_DATA", raising=False)
    with pytest.raises(
        KitError,
        match="no data for r at /kaggle/input/competitions/slug, /kaggle/input/slug, data/slug",
    ):
        data_dir("r", "slug")


def test_kaggle_notebook_outputs_go_to_working(monkeypatch, tmp_path):
    monkeypatch.delenv("KAGGLE_KERNEL_RUN_TYPE", raising=False)
    monkeypatch.chdir(tmp_path)
    assert output_root() == tmp_path
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Batch")
    assert output_root() == Path("/kaggle/working")
    assert output_root(tmp_path / "o") == tmp_path / "o"


def test_one_variable_moves_the_kaggle_input_and_working_roots(monkeypatch, tmp_path):
    """KIT_KAGGLE_ROOT stands in for /kaggle: data, outputs and attached weights follow it."""
    monkeypatch.delenv("KIT_DATA", raising=False)
    monkeypatch.delenv("KIT_WEIGHTS", raising=False)
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Batch")
    monkeypatch.setenv("KIT_KAGGLE_ROOT", str(tmp_path))
    comp = tmp_path / "input" / "competitions" / "slug"
    weights = tmp_path / "input" / "datasets" / "someone" / "weights"
    comp.mkdir(parents=True)
    weights.mkdir(parents=True)
    assert data_dir("r", "slug") == comp
    assert output_root() == tmp_path / "working"
    assert weights in weight_folders() and comp in weight_folders()
    monkeypatch.delenv("KAGGLE_KERNEL_RUN_TYPE")  # not in a notebook: no attached datasets
    assert weight_folders() == []


def test_run_ids_are_never_reused(tmp_path):
    ids = {new_run_dir(tmp_path, "mnist", "digitnet")[0] for _ in range(3)}
    assert len(ids) == 3
    partials = sorted(p.name for p in (tmp_path / "runs" / "mnist").iterdir())
    assert all(p.startswith(".") and p.endswith(".partial") for p in partials)

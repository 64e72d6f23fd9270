"""Shared fixtures: small real Kaggle folders built in tmp_path."""

import os
import shutil

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"  # the suite never touches the network
# pytest-xdist's workers share the cores out, so that their threads (and those of the kit's
# processes and torchrun's, which inherit it) do not outnumber the cores
if (workers := int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))) > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))

from competitions import invasive, mnist


def written_sample(tmp_path_factory, comp):
    folder = tmp_path_factory.mktemp(comp.RECIPE.slug)
    comp.write_sample(folder)
    return folder


@pytest.fixture(scope="session")
def mnist_sample(tmp_path_factory):
    """The bundled Digit Recognizer sample (scikit-learn's real digits), written once."""
    return written_sample(tmp_path_factory, mnist)


@pytest.fixture(scope="session")
def photos(tmp_path_factory):
    """The bundled Invasive Species sample (cut from real photos), written once."""
    return written_sample(tmp_path_factory, invasive)


@pytest.fixture
def mnist_copy(mnist_sample, tmp_path):
    """A private copy of the sample that a test may spoil."""
    return shutil.copytree(mnist_sample, tmp_path / "digit-recognizer")


@pytest.fixture
def photos_copy(photos, tmp_path):
    return shutil.copytree(photos, tmp_path / "invasive-species-monitoring")


@pytest.fixture(scope="session", autouse=True)
def photo_cache(tmp_path_factory):
    """Resized photos go to a temporary cache, not the user's ~/.cache/kit."""
    os.environ["KIT_CACHE"] = str(tmp_path_factory.mktemp("kit-cache"))


# the tiny csv folder tests/test_csv_quirks.py and tests/test_folder_quirks.py spoil
@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """quirks_data.tiny's folder, made once per test module."""
    from quirks_data import tiny

    return tiny(tmp_path_factory.mktemp("quirks") / "some-cactus")


@pytest.fixture
def folder(source, tmp_path):
    """A copy of it for one test to spoil."""
    return shutil.copytree(source, tmp_path / source.name)

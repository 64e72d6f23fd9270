"""The resized-photo cache: one memory-mapped array per data folder, size and split, built once,
carried on after an interruption, built again when a photo changes, and read by the loaders
(and by every process of a DDP run) without a copy."""

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import kit.data.images as images
from competitions import invasive
from kit.data.images import read_rows
from kit.data.loader import TensorLoader, dataloaders
from kit.train.learner import build_learner

R = replace(invasive.RECIPE, size=32)  # the bundled sample: 120 training and 48 test photos
PHOTOS = 120 + 48
KIT = Path(sys.executable).with_name("kit")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KIT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def decoded(tmp_path, monkeypatch):
    """How many photos have been decoded so far. Each decode appends a line to a file, so the
    build's worker processes (forked with this patch in place) are counted too."""
    log, real = tmp_path / "decoded.log", images.decode

    def counting(src, *how):  # size, channels, resize
        with open(log, "a") as f:
            f.write(f"{src}\n")
        return real(src, *how)

    monkeypatch.setattr(images, "decode", counting)
    return lambda: len(log.read_text().splitlines()) if log.exists() else 0


def mapped_file(address: int) -> Path | None:
    """The file this process maps at `address` (Linux's /proc/self/maps), if any."""
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        lo, hi = (int(a, 16) for a in fields[0].split("-"))
        if lo <= address < hi:
            return Path(fields[5]) if len(fields) == 6 else None
    return None


def test_the_cache_is_built_once_and_read_back_without_decoding_a_photo(photos, cache, decoded):
    first = invasive.load(photos, R)
    assert decoded() == PHOTOS
    again = invasive.load(photos, R)
    assert decoded() == PHOTOS  # not one photo decoded again
    assert np.array_equal(first.x.numpy(), again.x.numpy())
    arrays = sorted(p.name.split("-")[0] for p in cache.rglob("*.npy"))
    assert arrays == ["test", "train"]  # one array per split, no file per photo
    assert mapped_file(again.x.data_ptr()) == next(cache.rglob("train-*.npy"))


def test_an_interrupted_build_carries_on_where_it_stopped(photos, cache, decoded, monkeypatch):
    real_progress = images.progress

    def interrupted(results, total, what):
        yield next(iter(results))
        raise KeyboardInterrupt  # Ctrl-C, or a notebook's stop, after the first chunk

    monkeypatch.setattr(images, "progress", interrupted)
    with pytest.raises(KeyboardInterrupt):
        invasive.load(photos, R)
    assert not list(cache.rglob("train-*"))  # nothing half-built passes for complete
    assert len(list(cache.rglob(".train-*.npy.partial"))) == 1
    marks = np.fromfile(next(cache.rglob(".train-*.marks")), np.uint8)
    assert 0 < np.count_nonzero(marks) < 120

    monkeypatch.setattr(images, "progress", real_progress)
    before = decoded()
    resumed = invasive.load(photos, R)
    assert decoded() - before == np.count_nonzero(marks == 0) + 48  # the rest, and the test set
    assert not list(cache.rglob(".train-*"))
    monkeypatch.setenv("KIT_CACHE", str(cache.parent / "fresh"))
    fresh = invasive.load(photos, R)
    assert np.array_equal(resumed.x.numpy(), fresh.x.numpy())
    assert np.array_equal(resumed.test_x.numpy(), fresh.test_x.numpy())


def test_a_changed_photo_makes_a_new_array_and_the_stale_one_goes(photos_copy, cache, decoded):
    before = invasive.load(photos_copy, R).x[0].clone()
    shutil.copy(photos_copy / "train" / "2.jpg", photos_copy / "train" / "1.jpg")
    after = invasive.load(photos_copy, R)
    assert not torch.equal(before, after.x[0]) and torch.equal(after.x[0], after.x[1])
    assert decoded() == PHOTOS + 120  # the training set again; the test set is unchanged
    assert len(list(cache.rglob("train-*.npy"))) == 1


def test_a_cache_another_decoder_built_is_built_again(photos, cache, decoded, monkeypatch):
    """decode() now turns phone photos upright and scales 16-bit ones by their depth: a cache
    built before gives other pixels than `kit predict` decodes, so it is not reused."""
    now = images.DECODER
    monkeypatch.setattr(images, "DECODER", now - 1)
    invasive.load(photos, R)
    monkeypatch.setattr(images, "DECODER", now)
    invasive.load(photos, R)
    assert decoded() == 2 * PHOTOS
    assert len(list(cache.rglob("train-*.npy"))) == 1  # the older build removed


def test_an_unreadable_photo_is_left_out_of_a_view_of_the_array(photos_copy, cache):
    (photos_copy / "train" / "3.jpg").write_bytes(b"not a jpeg")
    data = invasive.load(photos_copy, R)
    assert data.skipped == 1 and len(data.x) == 119 and "3.jpg" not in data.names
    assert mapped_file(data.x.data_ptr()) == next(cache.rglob("train-*.npy"))
    again = invasive.load(photos_copy, R)  # the record keeps which photo it was
    assert again.skipped == 1 and np.array_equal(again.x.numpy(), data.x.numpy())


def test_loaders_gather_batches_from_the_mapped_file_as_the_copied_parts_did(photos, cache):
    data = invasive.load(photos, R)
    valid = np.arange(0, 120, 4)
    stats = ([0.5] * 3, [0.25] * 3)
    dls = dataloaders(data, R, stats, "cpu", valid)
    for dl in (dls.train, dls.valid):
        assert dl.x.data_ptr() == data.x.data_ptr()
        assert np.shares_memory(dl.x.numpy(), data.x.numpy())
    # the batches are read from the cache file with pread, not through the mapping
    assert torch.equal(read_rows(data.x, np.array([7, 2])), data.x[[7, 2]])
    assert read_rows(data.x.clone(), np.array([7, 2])) is None  # in memory: gathered there
    # before: each part copied out of the data, the batches drawn from the copy
    train = np.setdiff1d(np.arange(120), valid)
    copied = TensorLoader(data.x[train].clone(), data.y[train], dls.train.bs, stats, shuffle=True,
                          drop_last=True, augment=dls.train.augment, seed=R.seed,
                          channels_last=R.channels_last)  # fmt: skip
    for (xb, yb), (xc, yc) in zip(dls.train, copied, strict=True):
        assert torch.equal(xb, xc) and torch.equal(yb, yc)
    copied_valid = TensorLoader(data.x[valid].clone(), data.y[valid], R.bs, stats)
    for (xb, _), (xc, _) in zip(dls.valid, copied_valid, strict=True):
        assert torch.equal(xb, xc)


def test_training_on_the_mapped_cache_predicts_as_in_memory(photos, cache, tmp_path):
    r = replace(R, arch="digitnet", pretrained=False, bs=16)
    mapped = invasive.load(photos, r)
    in_memory = replace(mapped, x=mapped.x.clone(), test_x=mapped.test_x.clone())
    preds = []
    for data in (mapped, in_memory):
        learn = build_learner(r, data, torch.device("cpu"), None, tmp_path, np.arange(0, 120, 4))
        with learn.no_bar(), learn.no_logging():
            learn.fit(1, 3e-3)
            preds.append(learn.get_preds(dl=learn.dls.valid)[0])
    assert torch.allclose(preds[0], preds[1], atol=1e-6)
    assert not torch.allclose(preds[0], preds[0].mean(0))  # it learnt something per image


def test_two_processes_train_on_one_cache_built_once(tmp_path):
    env = {**os.environ, "KIT_CACHE": str(tmp_path / "cache")}
    argv = ["run", "invasive", "--sample", "--nproc", "2", "--device", "cpu", "--size", "32",
            "--arch", "digitnet", "--no-pretrained", "--lr", "3e-3", "--no-tta", "--head-cycles",
            "0", "--cycles", "1", "--bs", "16", "--out", tmp_path]  # fmt: skip
    done = subprocess.run([KIT, *map(str, argv)], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("resized 120 train photos") == 1  # rank 0 built, rank 1 mapped it
    (run_dir,) = (tmp_path / "runs" / "invasive").iterdir()
    assert json.loads((run_dir / "metrics.json").read_text())["processes"] == 2
    assert len(list((tmp_path / "cache").rglob("train-*.npy"))) == 1


WINDOWS_LIKE = """
import os, sys
sys.modules["fcntl"] = None  # import fcntl raises ImportError, as on Windows
del os.preadv  # Windows has no preadv
"""

READ_PATH = """
import sys
from pathlib import Path
import numpy as np
from kit.cli import main
from kit.data.images import load_photos, read_rows
assert main(["list"]) == 0
files = sorted(Path(sys.argv[1]).glob("*.jpg"))[:9]
x, bad = load_photos(files, Path(sys.argv[2]), 32, "train")
assert not bad and x.shape == (9, 3, 32, 32)
rows = np.array([7, 2, 2, 0])
assert (read_rows(x, rows) == x[rows]).all()
print("read", len(rows), "rows")
"""


def test_kit_list_and_the_cache_work_without_fcntl_or_preadv(photos, tmp_path):
    """Windows has neither: `kit list` died at `import fcntl`, and batches read with preadv."""
    (tmp_path / "sitecustomize.py").write_text(WINDOWS_LIKE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.getcwd()])}
    argv = [sys.executable, "-c", READ_PATH, photos / "train", tmp_path / "cache"]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "invasive" in done.stdout and "read 4 rows" in done.stdout

"""A k-fold run killed mid-fold by a real signal, resumed, ends as if it had never stopped."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from kit.cli import main

KIT = Path(sys.executable).with_name("kit")
ARGS = [
    "--sample",
    "--folds",
    "2",
    "--cycles",
    "3",
    "--cycle-mult",
    "1",
    "--seed",
    "3",
    "--bs",
    "32",
    "--ema",  # a checkpoint keeps the raw weights and their average apart
    "0.9",
]


def kit(*argv, **kw):
    return subprocess.run([KIT, *map(str, argv)], capture_output=True, text=True, **kw)


def as_if_saved_on_a_gpu(path: Path) -> None:
    """Write the checkpoint `path` again as a process on a GPU writes it: the same bytes, every
    storage tagged cuda:0, where torch.load puts it back unless told otherwise."""
    checkpoint = torch.load(path, weights_only=False)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
        torch.save(checkpoint, path)
    tags = set()
    torch.load(path, map_location=lambda s, tag: tags.add(tag) or s, weights_only=False)
    assert tags == {"cuda:0"}


def test_a_killed_run_resumes_from_its_checkpoint_to_the_same_outputs(tmp_path):
    """With --ema, and the checkpoint written on a GPU but resumed where there is none."""
    whole = kit("run", "mnist", *ARGS, "--out", tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr

    out = tmp_path / "killed"
    proc = subprocess.Popen([KIT, "run", "mnist", *ARGS, "--out", out],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    runs = out / "runs" / "mnist"
    deadline = time.monotonic() + 300
    while not list(runs.glob(".*.partial/fold1/checkpoint.pth")):  # fold 2, an epoch in
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended too soon"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    partial = next(runs.glob(".*.partial"))
    run_id = partial.name[1 : -len(".partial")]
    assert not (runs / run_id).exists() and not (out / "submissions").exists()
    fold0 = (partial / "fold0" / "preds.npz").stat().st_mtime_ns
    as_if_saved_on_a_gpu(partial / "fold1" / "checkpoint.pth")

    no_gpu = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    resumed = kit("run", "mnist", "--resume", run_id, "--out", out, env=no_gpu)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming run {run_id}" in resumed.stdout
    assert not partial.exists() and (runs / run_id / "metrics.json").exists()
    assert (runs / run_id / "fold0" / "preds.npz").stat().st_mtime_ns == fold0  # not retrained

    done = next((tmp_path / "whole" / "runs" / "mnist").iterdir())
    for name in ("history.csv", "oof.csv", "test_preds.csv", "submission.csv"):
        assert (runs / run_id / name).read_text() == (done / name).read_text(), name


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--resume", "20990101-000000-digitnet"], "no interrupted run"),
        (["--resume", "20990101-000000-digitnet", "--cycles", "2"], "drop --cycles"),
    ],
)
def test_resume_bad_input_is_one_line(tmp_path, capsys, argv, message):
    code = main(["run", "mnist", *argv, "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and message in err


def test_resuming_a_finished_run_is_refused(tmp_path, capsys):
    (tmp_path / "runs" / "mnist" / "20990101-000000-digitnet").mkdir(parents=True)
    code = main(["run", "mnist", "--resume", "20990101-000000-digitnet", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1 and "has finished" in err

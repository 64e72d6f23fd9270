"""A k-fold run killed mid-fold by a real signal, resumed, ends as if it had never stopped;
options a resume cannot honour are refused."""

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from competitions import mnist
from kit import pipeline
from kit.cli import main
from kit.files import write_json
from kit.recipe import override

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


RUN = "20990101-000000-digitnet"


@pytest.fixture
def stopped_run(tmp_path, mnist_copy):
    """The folder that `kit run mnist --data DATA --lr 0.003 --folds 2 --out OUT` leaves when it
    is stopped before a checkpoint: its recipe and job. Returns (OUT, DATA)."""
    out = tmp_path / "out"
    partial = out / "runs" / "mnist" / f".{RUN}.partial"
    partial.mkdir(parents=True)
    started = override(mnist.RECIPE, lr=0.003, folds=2)
    write_json(partial / "recipe.json", dataclasses.asdict(started))
    write_json(partial / "job.json", {"data": str(mnist_copy), "weights": None})
    return out, mnist_copy


def resume(out, *argv):
    return main(["run", "mnist", "--resume", RUN, "--out", str(out), *map(str, argv)])


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["--no-tta"],
            f"run {RUN} was started with --tta; --resume continues it as it was "
            "started: drop --no-tta, or start a new run with it",
        ),
        (
            ["--folds", "0"],
            "was started with --folds 2; --resume continues it as it was started: drop --folds 0",
        ),
        (
            ["--lr", "0"],
            "was started with --lr 0.003; --resume continues it as it was started: drop --lr 0",
        ),
        (["--cycles", "2"], "was started with --cycles 3; "),
        (["--arch", "resnet18"], "was started with --arch digitnet; "),
        (["--snapshots"], "was started with --no-snapshots; "),
        # a new limit cannot re-plan epochs trained: the schedule it planned is kept
        (["--time-limit", "5"], "was started with --time-limit 0; "),
        (["--folds", "0", "--nproc", "2", "--device", "cpu"], "drop --folds 0"),  # not launched
        (["--weights", "w.pth"], "found its weights without --weights; drop --weights w.pth"),
        (["--sample"], "reads its data from "),
    ],
)
def test_resume_refuses_what_it_cannot_honour(stopped_run, capsys, argv, message):
    out, _ = stopped_run
    code = resume(out, *argv)
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and message in err, err


def test_resume_refuses_other_data_while_its_own_is_there(stopped_run, capsys, tmp_path):
    out, data = stopped_run
    other = shutil.copytree(data, tmp_path / "other")
    assert resume(out, "--data", other) == 1
    err = capsys.readouterr().err
    assert f"run {RUN} reads its data from {data}; drop --data {other}" in err


def trained_job(monkeypatch) -> list:
    """The jobs that resumed runs go on to train (complete_run replaced: nothing trains)."""
    jobs = []
    monkeypatch.setattr(pipeline, "complete_run", lambda job, *args: jobs.append(job) or {})
    return jobs


def test_resume_takes_the_options_it_was_started_with(stopped_run, monkeypatch):
    """The command that started the run, --resume added, continues it."""
    out, data = stopped_run
    jobs = trained_job(monkeypatch)
    assert resume(out, "--data", data, "--lr", "0.003", "--folds", "2", "--tta") == 0
    assert resume(out, "--device", "cpu") == 0
    assert [(j.recipe.lr, j.recipe.folds, j.folder) for j in jobs] == [(0.003, 2, data)] * 2


def test_resume_on_another_machine_takes_the_data_where_it_is_now(stopped_run, monkeypatch,
                                                                  capsys, tmp_path):  # fmt: skip
    out, data = stopped_run
    moved = data.rename(tmp_path / "elsewhere")
    assert resume(out) == 1
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith(
            f"read its data from {data}, which is not there; give the folder where that data is "
            "now with --data PATH"
        )
    )
    jobs = trained_job(monkeypatch)
    assert resume(out, "--data", moved) == 0
    assert jobs[0].folder == moved and jobs[0].recipe.lr == 0.003


def test_resume_of_no_such_run_is_one_line(tmp_path, capsys):
    code = main(["run", "mnist", "--resume", RUN, "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "no interrupted run" in err


def test_resuming_a_finished_run_is_refused(tmp_path, capsys):
    (tmp_path / "runs" / "mnist" / "20990101-000000-digitnet").mkdir(parents=True)
    code = main(["run", "mnist", "--resume", "20990101-000000-digitnet", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1 and "has finished" in err

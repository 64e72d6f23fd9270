"""Several processes on the CPU (gloo), started by torchrun as `--nproc 2 --device cpu` does:
DDP, one fold per process, a process killed mid-epoch, and bad requests; decisions that one
process alone would make differently (planted with a sitecustomize.py in that process), which
rank 0 makes for all; and a stuck process, which ends the run in one line instead of a hang."""

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
import torch
from validation_data import validated

from kit.cli import main
from kit.data.loader import TensorLoader
from kit.errors import KitError
from kit.train import ddp, distributed
from kit.train.launch import failure, stream

KIT = Path(sys.executable).with_name("kit")
CPU2 = ["--nproc", "2", "--device", "cpu"]
QUICK = ["--lr", "3e-3", "--no-tta"]  # a pinned rate: no finder's 100 steps
HANG_S = 240  # a run here takes 20-40 s: one still going after this is stuck


def kit(*argv, **kw):
    return subprocess.run([KIT, *map(str, argv)], capture_output=True, text=True, **kw)


def guarded(*argv, env: dict) -> subprocess.CompletedProcess:
    """`kit *argv`, failing the test if it is still running after HANG_S seconds (a hang);
    then it is killed, with every process it started."""
    proc = subprocess.Popen([KIT, *map(str, argv)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip
    try:
        out, err = proc.communicate(timeout=HANG_S)
    except subprocess.TimeoutExpired:
        for p in [*psutil.Process(proc.pid).children(recursive=True), psutil.Process(proc.pid)]:
            p.kill()
        _, err = proc.communicate()
        pytest.fail(f"still running after {HANG_S} s, stuck; its errors: {err[-2000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def planted(tmp_path: Path, **code) -> dict:
    """The environment for a run in which the process of rank r first runs `code["rank<r>"]`
    (from a sitecustomize.py on PYTHONPATH): one process made to see things differently."""
    site = tmp_path / "site"
    site.mkdir()
    lines = ["import os"]
    for key, source in code.items():
        lines += [f"if os.environ.get('RANK') == '{key.removeprefix('rank')}':",
                  textwrap.indent(textwrap.dedent(source).strip(), "    ")]  # fmt: skip
    (site / "sitecustomize.py").write_text("\n".join(lines) + "\n")
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path}


# Rank 1's loss explodes from a rate of 1e-3 on: its own finder would stop there, rank 0's goes on.
EXPLODES = """
    from fastai.callback.core import Callback
    import kit.train.learner as learner

    class Explode(Callback):
        order = 1
        def after_loss(self):
            if self.training and self.opt.hypers[-1]["lr"] > 1e-3:
                self.learn.loss = self.learn.loss * 1e4

    make = learner.make_learner
    learner.make_learner = lambda *a, **k: make(*a, **k).add_cb(Explode())
"""
# Rank 1's own pricing of the first epoch leaves no time: it would keep 1 cycle, and no TTA.
HURRIES = """
    import kit.train.budget as budget

    plan = budget.fit_schedule
    budget.fit_schedule = lambda r, epoch_s, left_s, *a: plan(r, epoch_s, 0.0, *a)
"""

# This process's accuracy is made up, every epoch better (SIGN 1) or worse (SIGN -1) than the last.
SCORES = """
    from fastai.callback.core import Callback
    import kit.train.learner as learner

    class Score(Callback):
        order = 50.5  # after the Recorder has the epoch's scores, before what reads them
        def after_epoch(self):
            self.recorder.values[-1][-1] = SIGN * self.epoch / 10  # an accuracy: 0, 0.1, 0.2

    make_scored = learner.make_learner
    learner.make_learner = lambda *a, **k: make_scored(*a, **k).add_cb(Score())
"""

# This process's recorded loss is 100 more than it trained on: the loss a DDP run logs is the
# processes' mean, so rank 0 logs 50 more than its own.
LOUD = """
    from fastai.callback.core import Callback
    import kit.train.learner as learner

    class Loud(Callback):
        order = 48  # after the step, before the losses are shared and recorded
        def after_batch(self):
            if self.training:
                self.learn.loss = self.learn.loss + 100

    make_loud = learner.make_learner
    learner.make_learner = lambda *a, **k: make_loud(*a, **k).add_cb(Loud())
"""


def worker(launcher: int, rank: int) -> psutil.Process:
    """The process of `rank` among the launcher's descendants (torchrun's workers)."""
    for p in psutil.Process(launcher).children(recursive=True):
        try:
            if p.environ().get("RANK") == str(rank) and "kit.cli" in p.cmdline():
                return p
        except psutil.Error:
            continue
    raise AssertionError(f"no worker of rank {rank}")


def test_training_shards_are_disjoint_equal_and_cover_the_epoch():
    x, y = torch.zeros(11, 1, 2, 2, dtype=torch.uint8), torch.arange(11)
    shards = [
        TensorLoader(x, y, 4, ([0.0], [1.0]), shuffle=True, drop_last=True).shard(r, 2)
        for r in range(2)
    ]
    assert [dl.bs for dl in shards] == [2, 2]  # the recipe's batch is one step's, over both
    assert [dl.items() for dl in shards] == [5, 5] and [len(dl) for dl in shards] == [2, 2]
    seen = [torch.cat([yb for _, yb in dl]) for dl in shards]
    assert not set(seen[0].tolist()) & set(seen[1].tolist())  # no item twice in one epoch
    valid = [TensorLoader(x, y, 4, ([0.0], [1.0])).shard(r, 2) for r in range(2)]
    assert [torch.cat([yb for _, yb in dl]).tolist() for dl in valid] == [
        list(range(0, 11, 2)),
        list(range(1, 11, 2)),
    ]  # prediction shares: every item once, uneven, none padded


@pytest.mark.parametrize("metric", ["accuracy", "auc", "logloss"])
def test_the_shares_of_a_validation_put_together_score_as_the_whole_set(metric):
    """The loss and metric of two processes' shares (every other item, in batches of 3), put
    together as in a DDP run, equal those of one process validating every item."""
    whole = validated(list(range(11)), metric)
    shares = [validated(list(range(r, 11, 2)), metric) for r in (0, 1)]
    for i, together in enumerate(validated([], metric)):
        ddp.combine(together, [ddp.share(s[i]) for s in shares])
        assert float(together.value) == pytest.approx(float(whole[i].value), abs=1e-6)
        assert float(shares[0][i].value) != pytest.approx(float(whole[i].value), abs=1e-6)


@pytest.mark.parametrize(
    "gpus, argv, message",
    [
        (0, ["--nproc", "2"], "--nproc 2 asks for 2 GPUs, and torch sees none; add --device cpu"),
        (2, ["--nproc", "3"], "--nproc 3 asks for 3 GPUs, and torch sees 2; use --nproc 2"),
        (0, ["--nproc", "two"], "--nproc 'two' is not a number"),
        (0, ["--nproc", "2", "--device", "cpu", "--sync-bn"], "--sync-bn needs CUDA GPUs"),
    ],
)
def test_bad_nproc_is_one_line(monkeypatch, tmp_path, capsys, gpus, argv, message):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    code = main(["run", "mnist", "--sample", "--out", str(tmp_path), *argv])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and message in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("value, minutes", [("", 30), ("0.1", 0.1), ("90", 90)])
def test_kit_dist_timeout_sets_how_long_a_collective_waits(monkeypatch, value, minutes):
    monkeypatch.setenv("KIT_DIST_TIMEOUT", value)
    assert distributed.timeout().total_seconds() == pytest.approx(minutes * 60)


@pytest.mark.parametrize("value", ["half an hour", "0", "-5"])
def test_a_bad_kit_dist_timeout_is_one_line(monkeypatch, value):
    monkeypatch.setenv("KIT_DIST_TIMEOUT", value)
    with pytest.raises(KitError, match="KIT_DIST_TIMEOUT=.*give the minutes"):
        distributed.timeout()


def test_the_launcher_shows_the_output_once_and_keeps_torchrun_s_report_aside(capsys):
    """stream() on a stand-in for torchrun: two processes failing with the same kit error, a
    torchrun log line and its failure report."""
    script = (
        "import sys\n"
        "print('epoch 0  train_loss 1.0')\n"
        "print('kit: error: no data for mnist at x', file=sys.stderr)\n"
        "print('kit: error: no data for mnist at x', file=sys.stderr)\n"
        "print('W1122 00:00:00.000000 1 torch/distributed/run.py:1] OMP_NUM_THREADS', flush=True)\n"
        "print('Traceback (most recent call last):\\n  File \"torch/distributed/run.py\"\\n'\n"
        "      'torch.distributed.elastic.multiprocessing.errors.ChildFailedError: \\n'\n"
        "      '  rank      : 1 (local_rank: 1)\\n  exitcode  : -9 (pid: 7)\\n'\n"
        "      '  rank      : 0 (local_rank: 0)\\n  exitcode  : -15 (pid: 6)')\n"
        "sys.exit(1)\n"
    )
    code, summary, errors = stream([sys.executable, "-c", script], dict(os.environ))
    assert code == 1 and errors == ["kit: error: no data for mnist at x\n"] * 2
    assert capsys.readouterr().out == "epoch 0  train_loss 1.0\n"  # all that is shown
    assert "OMP_NUM_THREADS" in summary and "ChildFailedError" in summary
    assert failure(summary, code, 2, "mnist", "RUN") == (
        "process 1 of 2 was killed by signal 9; torchrun stopped the others; "
        "continue the run with `kit run mnist --resume RUN --nproc 2`"
    )


def test_a_process_aborted_by_its_lost_peer_is_named_after_the_peer_that_was_killed():
    """Rank 1 killed (9); rank 0, waiting in a collective, aborts (6) before torchrun stops it:
    the line names the kill first, whatever the ranks' order."""
    summary = ("  rank      : 0 (local_rank: 0)\n  exitcode  : -6 (pid: 6)\n"
               "  rank      : 1 (local_rank: 1)\n  exitcode  : -9 (pid: 7)\n")  # fmt: skip
    assert failure(summary, 1, 2, "mnist", "RUN").startswith(
        "process 1 of 2 was killed by signal 9; process 0 of 2 was killed by signal 6; "
    )


def test_a_killed_process_stops_all_and_the_ddp_run_resumes_to_one_submission(tmp_path):
    out, env = tmp_path / "o", planted(tmp_path, rank1=LOUD)
    argv = ["run", "mnist", "--sample", *CPU2, *QUICK, "--cycles", "2", "--out", out]
    proc = subprocess.Popen([KIT, *map(str, argv)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip
    runs = out / "runs" / "mnist"
    deadline = time.monotonic() + 300
    while not list(runs.glob(".*.partial/checkpoint.pth")):  # an epoch done, the next begun
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    others = [worker(proc.pid, 0)]
    worker(proc.pid, 1).kill()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert (
        err.strip().splitlines()[-1].startswith("kit: error: process 1 of 2 was killed by signal 9")
    )
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in others)
    partial = next(runs.glob(".*.partial"))
    run_id = partial.name[1 : -len(".partial")]
    assert f"kit run mnist --resume {run_id} --nproc 2" in err
    assert (partial / "checkpoint.pth").exists() and not (out / "submissions").exists()

    resumed = kit("run", "mnist", "--resume", run_id, *CPU2, "--out", out, env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming run {run_id}" in resumed.stdout
    assert [p.name for p in runs.iterdir()] == [run_id]  # one run folder, one submission
    assert [p.name for p in (out / "submissions" / "mnist").iterdir()] == [f"{run_id}.csv"]
    sub = pd.read_csv(out / "submissions" / "mnist" / f"{run_id}.csv")
    assert sub["ImageId"].tolist() == list(range(1, 361))
    metrics = json.loads((runs / run_id / "metrics.json").read_text())
    assert metrics["processes"] == 2 and metrics["epochs"] == 3
    # trained, and in order: chance is 0.1, where random weights or predictions out of order
    # land; 3 epochs scored 0.90 valid, 0.88 test on one CPU (one process, same settings)
    assert metrics["valid_accuracy"] >= 0.5 and metrics["test_accuracy"] >= 0.5
    # each epoch was scored on the whole validation set (each process validated half of it):
    # the best epoch's recorded accuracy is the kept model's, predicted on all 144 digits
    history = pd.read_csv(runs / run_id / "history.csv")
    assert len(history) == 3
    assert (history["train_loss"] > 40).all()  # the loss logged is both processes' (see LOUD)
    assert history["accuracy"].max() == pytest.approx(metrics["valid_accuracy"], abs=1.5 / 144)


def test_folds_train_one_per_process_as_one_process_would(tmp_path):
    done = kit("run", "mnist", "--sample", *CPU2, *QUICK, "--folds", "2", "--cycles", "1",
               "--out", tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    (run_dir,) = (tmp_path / "runs" / "mnist").iterdir()
    assert len(list((tmp_path / "submissions" / "mnist").iterdir())) == 1
    units = [json.loads((run_dir / f"fold{k}" / "unit.json").read_text()) for k in (0, 1)]
    assert [u["process"] for u in units] == [0, 1]  # side by side, one fold each
    oof = pd.read_csv(run_dir / "oof.csv")
    assert sorted(oof["item"]) == sorted(f"train row {i + 1}" for i in range(1437))
    sub = pd.read_csv(run_dir / "submission.csv")
    assert sub["ImageId"].tolist() == list(range(1, 361))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    # the same folds in one process, with the threads each of the two had, on this machine
    # (scores after one epoch differ between CPUs: only a run made here is a fair reference)
    threads = os.environ.get("OMP_NUM_THREADS") or str(max(1, (os.cpu_count() or 1) // 2))
    env = {**os.environ, "OMP_NUM_THREADS": threads}
    one = kit("run", "mnist", "--sample", "--device", "cpu", *QUICK, "--folds", "2", "--cycles",
              "1", "--out", tmp_path / "one", env=env)  # fmt: skip
    assert one.returncode == 0, one.stderr
    (alone,) = (tmp_path / "one" / "runs" / "mnist").iterdir()
    expected = json.loads((alone / "metrics.json").read_text())["folds_accuracy"]
    assert metrics["folds_accuracy"] == pytest.approx(expected, abs=0.03)


def test_sync_bn_turns_every_batch_norm_into_a_synchronised_one(monkeypatch):
    from fastai.data.core import DataLoaders
    from fastai.learner import Learner

    from kit.train.models import create_model

    monkeypatch.setattr(distributed, "ddp", lambda folds: True)
    monkeypatch.setattr(distributed, "rank", lambda: 0)
    monkeypatch.setattr(distributed, "world", lambda: 2)
    x, y = torch.zeros(8, 1, 28, 28, dtype=torch.uint8), torch.zeros(8, dtype=torch.long)
    loader = TensorLoader(x, y, 4, ([0.0], [1.0]))
    model = create_model("digitnet", 10, 1)
    learn = Learner(DataLoaders(loader, loader), model, loss_func=torch.nn.CrossEntropyLoss())
    norms = lambda m: {type(n).__name__ for n in m.modules() if "BatchNorm" in type(n).__name__}  # noqa: E731
    assert norms(learn.model) == {"BatchNorm2d"}
    ddp.attach(learn, sync_bn=True)
    assert norms(learn.model) == {"SyncBatchNorm"}


def test_in_a_ddp_run_rank_0_decides_the_finder_s_stop_the_time_limit_s_cut_and_early_stopping(
    tmp_path,
):
    """Rank 1 alone would stop the finder early, keep 1 of 3 cycles, and stop training after
    2 epochs, where rank 0 stops the finder later, keeps 3 cycles, and improves every epoch."""
    rising, sinking = SCORES.replace("SIGN", "1"), SCORES.replace("SIGN", "-1")
    env = planted(tmp_path, rank0=rising, rank1=EXPLODES + HURRIES + sinking)
    out = tmp_path / "o"
    done = guarded("run", "mnist", "--sample", *CPU2, "--no-tta", "--cycles", "3",
                   "--cycle-mult", "1", "--patience", "1", "--time-limit", "30", "--out", out,
                   env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    (run_dir,) = (out / "runs" / "mnist").iterdir()
    finder = pd.read_csv(run_dir / "lr_find.csv")  # rank 0's, stopped with rank 1's loss
    assert finder["lr"].iloc[-1] < 1e-2 and len(finder) < 100
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["budget"]["cycles"] == 3 and metrics["epochs"] == 3  # as rank 0 decided
    assert json.loads((run_dir / "budget.json").read_text()) == metrics["budget"]


def test_with_folds_every_process_keeps_rank_0_s_plan_and_tta(tmp_path):
    """Three processes for two folds: rank 2 trains none and still takes part in the plan."""
    out = tmp_path / "o"
    done = guarded("run", "mnist", "--sample", "--nproc", "3", "--device", "cpu", "--lr", "3e-3",
                   "--folds", "2", "--cycles", "1", "--time-limit", "30", "--out", out,
                   env=planted(tmp_path, rank1=HURRIES))  # fmt: skip
    assert done.returncode == 0, done.stderr
    (run_dir,) = (out / "runs" / "mnist").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["budget"]["tta"] and "valid_tta_accuracy" in metrics
    assert json.loads((run_dir / "budget.json").read_text()) == metrics["budget"]
    units = [json.loads((run_dir / f"fold{k}" / "unit.json").read_text()) for k in (0, 1)]
    assert [u["process"] for u in units] == [0, 1]


def test_a_stuck_process_ends_the_run_in_one_line_and_a_slow_data_step_is_not_stuck(tmp_path):
    """KIT_DIST_TIMEOUT of 6 s: rank 0 takes longer than that writing the data (the others wait
    for it as long as it takes), then rank 1 never reaches training (rank 0 gives up on it)."""
    code = {
        "rank0": """
            import time
            import kit.pipeline as pipeline
            write = pipeline.write_sample
            pipeline.write_sample = lambda *a: time.sleep(8) or write(*a)
        """,
        "rank1": """
            import time
            import kit.train.fit as fit
            fit.build_learner = lambda *a: time.sleep(600)
        """,
    }
    env = {**planted(tmp_path, **code), "KIT_DIST_TIMEOUT": "0.1"}
    # guarded() fails a run still going after HANG_S (240 s), long before rank 1's 600 s sleep
    # or the default 30 min timeout would end it: one that ends has ended because rank 0 gave up
    done = guarded("run", "mnist", "--sample", *CPU2, *QUICK, "--cycles", "1", "--out",
                   tmp_path / "o", env=env)  # fmt: skip
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("kit: error: process 0 of 2 waited 0.1 min for the others"), last

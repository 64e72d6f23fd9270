"""--time-limit: the schedule chosen for a budget (never wall time: these machines are noisy)."""

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest
import torch

import kit
from competitions import invasive, mnist
from kit.cli import main
from kit.data.augment import tta_views
from kit.recipe import Recipe, override
from kit.train import budget
from kit.train.budget import MARGIN, UNFROZEN, fit_schedule

DIGITS = override(mnist.RECIPE, cycles=4, time_limit=10)  # from scratch: 1 + 2 + 4 + 8 epochs
PHOTOS = override(invasive.RECIPE, time_limit=10, head_cycles=3)  # then 1 + 2 + 4 epochs


def left_for(epochs: float) -> float:
    """The seconds left that fit `epochs` more epochs of 10 s."""
    return epochs * 10 / MARGIN + 1e-6


def test_a_generous_limit_keeps_the_whole_schedule():
    plan = fit_schedule(PHOTOS, 10, left_for(1000), finder=1.5, predict=0.3)
    assert (plan["head_cycles"], plan["cycles"], plan["tta"], plan["finder"]) == (3, 3, True, True)
    assert plan["fits"]


def test_the_last_stage_loses_its_longest_cycles_first():
    plan = fit_schedule(DIGITS, 10, left_for(6), finder=0, predict=0)  # 7 epochs in all
    assert (plan["cycles"], plan["tta"]) == (3, True)
    assert plan["note"] == (
        "time limit 10 min: first epoch 10 s; keeping 3 of 4 cycles (7 epochs), TTA on"
    )
    # short of a whole 4-epoch cycle, a shorter one in the epochs that fit (SGDR anneals it)
    cut = fit_schedule(DIGITS, 10, left_for(5.9), finder=0, predict=0)
    assert (cut["cycles"], cut["last_len"]) == (3, 3)
    assert "keeping 3 of 4 cycles (6 epochs, the last cut to 3)" in cut["note"]
    assert fit_schedule(DIGITS, 10, left_for(0.9), finder=0, predict=0)["cycles"] == 1


def test_then_head_cycles_then_the_second_finder_then_tta_then_the_unfrozen_stage():
    views = len(tta_views(PHOTOS))  # the plain pass is TTA's first view
    finder, predict = 2.0, 0.25

    def plan_for(epochs):
        p = fit_schedule(PHOTOS, 10, left_for(epochs), finder, predict)
        return p["head_cycles"], p["cycles"], p["finder"], p["tta"]

    # one head cycle is spent, and the first finder: what is left, in first-epoch units
    one_cycle_each = 3 + 1 * UNFROZEN + finder * UNFROZEN + predict * views - 1
    assert plan_for(one_cycle_each) == (3, 1, True, True)
    assert plan_for(one_cycle_each - 0.01) == (2, 1, True, True)
    least_with_finder = one_cycle_each - 2
    # the finder's time buys a second cycle, cut to 1 epoch
    assert plan_for(least_with_finder - 0.01) == (1, 2, False, True)
    no_finder = least_with_finder - finder * UNFROZEN
    assert plan_for(no_finder - 0.01) == (1, 1, False, False)
    assert plan_for(no_finder - predict * (views - 1) - 0.01) == (1, 0, False, False)
    tiny = fit_schedule(PHOTOS, 10, 1, finder, predict)
    assert (tiny["head_cycles"], tiny["cycles"]) == (1, 0) and not tiny["fits"]
    assert "even this needs about" in tiny["note"]


def test_cycles_come_back_when_dropping_tta_made_room():
    three = override(DIGITS, cycles=3, cycle_mult=1)  # TTA: 1 + 8 passes of 0.4 epochs
    plan = fit_schedule(three, 10, left_for(1.5), finder=0, predict=0.4)
    assert (plan["cycles"], plan["tta"]) == (2, False)
    assert fit_schedule(three, 10, left_for(1.39), finder=0, predict=0.4)["cycles"] == 1


def test_every_fold_gets_the_same_cut():
    five = override(DIGITS, folds=5)
    assert fit_schedule(five, 10, left_for(5 * 3 - 1), 0, 0)["cycles"] == 2  # 3 epochs a fold
    cut = fit_schedule(five, 10, left_for(5 * 3 - 1.01), 0, 0)  # 2 epochs a fold
    assert (cut["cycles"], cut["last_len"]) == (2, 1)


def test_the_final_stage_at_the_full_size_is_priced_by_its_pixels_and_never_cut():
    """--start-size 64, --size 96 after 15 epochs: each final epoch (unfrozen) costs (96/64)^2
    = 2.25 unfrozen epochs at 64 px, and so does each prediction pass; the unfrozen cycles make
    room for it."""
    r = override(DIGITS, arch="resnet18", size=96, start_size=64, final_epochs=2, tta=False)
    final = 2 * 2.25
    whole = fit_schedule(r, 10, left_for(14 + final + 2.25 * 0.5), finder=0, predict=0.5)
    assert (whole["cycles"], whole["last_len"]) == (4, 0) and whole["fits"]
    cut = fit_schedule(r, 10, left_for(14 + final + 2.25 * 0.5 - 0.01), finder=0, predict=0.5)
    assert (cut["cycles"], cut["last_len"]) == (4, 7)
    assert "the final 2 at 96 px" in cut["note"]
    tiny = fit_schedule(r, 10, left_for(final), finder=0, predict=0.5)  # room for no more
    assert (tiny["cycles"], tiny["last_len"]) == (1, 0) and not tiny["fits"]


@pytest.mark.parametrize("value", ["-1", "-0.5"])
def test_a_negative_limit_is_one_line(tmp_path, capsys, value):
    code = main(["run", "mnist", "--sample", "--time-limit", value, "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "--time-limit must be 0 (no limit)" in err
    assert not (tmp_path / "runs").exists()


def test_a_limit_too_short_for_one_epoch_stops_before_training(tmp_path, capsys):
    code = main(["run", "mnist", "--sample", "--time-limit", "0.001", "--out", str(tmp_path)])
    captured = capsys.readouterr()
    assert code == 1 and captured.err.count("\n") == 1, captured.err
    assert "--time-limit 0.001 min is too short: one epoch takes about" in captured.err
    assert "epoch 0" not in captured.out
    assert list((tmp_path / "runs" / "mnist").iterdir()) == []  # nothing left behind
    assert not (tmp_path / "submissions").exists()


def test_a_run_keeps_the_cycles_and_tta_that_fit(tmp_path, monkeypatch, capsys):
    """Whatever the first epoch measured, grant 1.5 more epochs and price a prediction pass at
    0.4 epochs: TTA's 8 more passes do not fit, and without them 2 of 3 one-epoch cycles do."""
    real = budget.fit_schedule

    def granted(r, epoch_s, left_s, finder, predict):
        return real(r, epoch_s, 1.5 * epoch_s / MARGIN, 0.0, 0.4)

    monkeypatch.setattr(budget, "fit_schedule", granted)
    result = kit.run("mnist", sample=True, out=tmp_path, cycles=3, cycle_mult=1, lr=3e-3,
                     time_limit=30)  # fmt: skip
    printed = capsys.readouterr().out
    assert "keeping 2 of 3 cycles (2 epochs), TTA off" in printed
    assert result["epochs"] == 2 and "valid_tta_accuracy" not in result
    run = Path(result["run_dir"])
    metrics = json.loads((run / "metrics.json").read_text())
    assert (metrics["budget"]["cycles"], metrics["budget"]["tta"]) == (2, False)
    assert json.loads((run / "budget.json").read_text()) == metrics["budget"]
    assert len(pd.read_csv(run / "history.csv")) == 2
    assert json.loads((run / "recipe.json").read_text())["cycles"] == 3  # as asked


def test_the_probe_reads_the_clock_once_a_gpu_has_finished_and_never_waits_on_a_cpu(monkeypatch):
    from fastai.data.core import DataLoaders
    from fastai.learner import Learner

    from kit.data.loader import TensorLoader

    waited = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: waited.append(device))
    budget.synchronize(torch.device("cpu"))
    assert waited == []
    budget.synchronize(torch.device("cuda", 0))
    assert waited == [torch.device("cuda", 0)]

    monkeypatch.setattr(budget, "synchronize", waited.append)
    x, y = torch.zeros(8, 1, 28, 28, dtype=torch.uint8), torch.zeros(8, dtype=torch.long)
    loader = TensorLoader(x, y, 4, ([0.0], [1.0]))
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(28 * 28, 10))
    learn = Learner(DataLoaders(loader, loader), model, loss_func=torch.nn.CrossEntropyLoss())
    budget.probe(learn, n=2)  # before and after each step, after each prediction
    assert waited[1:] == [torch.device("cpu")] * 6


def test_the_time_plan_counts_the_finder_steps_its_rule_takes():
    """The kit's rules sweep fewer steps than fastai's 100 (kit/train/finder.py): the plan
    counts what the run's rule will take, not fastai's most."""
    from kit.train.budget import finder_steps
    from kit.train.finder import NUM_IT, sweep

    r = Recipe(name="t", slug="t")
    assert finder_steps(r) == sweep("minimum")[2] < NUM_IT
    assert finder_steps(dataclasses.replace(r, pretrained=False)) == sweep("halfway")[2] < NUM_IT
    assert finder_steps(dataclasses.replace(r, lr_rule="valley")) == NUM_IT

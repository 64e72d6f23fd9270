"""The house schedule on a fastai Learner: SGDR on the head with the body frozen, then on
everything with discriminative rates, each stage's rate read off the finder's curve, as many
cycles as the plan keeps; the best model kept, a checkpoint after every epoch."""

import math
from pathlib import Path

import numpy as np
from fastai.callback.schedule import ParamScheduler
from fastai.callback.tracker import EarlyStoppingCallback, SaveModelCallback
from fastai.learner import Learner

from kit.evaluate.metrics import greater_is_better
from kit.recipe import Recipe
from kit.train import ddp, distributed
from kit.train.averaging import PreciseBN
from kit.train.budget import Budget
from kit.train.callbacks import Checkpoint, Continue, Snapshots, epoch_row, restore, tensorboard
from kit.train.curves import Steps, plot_curves
from kit.train.finder import bounds, find_lr, resolve, stage_rule
from kit.train.learner import monitor_name
from kit.train.plan import STAGES, Follow, Judge, Plan, epochs
from kit.train.progress import Progress

# --start-size's final cycle at --size learns at this share of the unfrozen stage's rates (as
# FixRes fine-tunes at the test size). Measured (benchmarks/augment.py, 600 photos of 64 px, 96 px
# at the end, 3 seeds): at the full rates the restart undid the 64 px training on 9 breeds (valid
# log loss 1.0 -> 11.8 after the first epoch at 96 px; test log loss 0.92-1.11, every seed worse
# than 64 px throughout's 0.58-0.63); at a tenth 0.42-0.69, better on 2 of 3 seeds. Transfer AUC
# 1.0000 / 1.0000 / 0.9604 against 0.99999 / 1.0000 / 0.9820 at the full rates.
FINAL = 0.1


def cosine_at(ends: list[int], e: float) -> float:
    """SGDR's rate at epoch position `e`, as a share of the top rate: each cycle (ending at the
    epochs in `ends`) starts at 1 and anneals by a cosine to 0 at its end."""
    start = 0
    for end in ends:
        if e < end:
            return (1 + math.cos(math.pi * (e - start) / (end - start))) / 2
        start = end
    return 0.0


def fit_sgdr(learn, n_cycles, cycle_len, cycle_mult, lr, cbs=(), start_epoch=0, ends=None):
    """SGDR: `n_cycles` cosine cycles, each `cycle_mult` times longer than the last; from
    `start_epoch` on when continuing an interrupted stage (the schedule resumes where it was).
    `ends()`, where given, says the cycles' ends at every step: the plan's, which the time limit
    may revise during the fit (a shorter last cycle anneals sooner; Follow then ends the fit).

    fastai's `Learner.fit_sgdr` divides by `cycle_mult - 1`, so it cannot run the seed's
    `cycle_mult=1` stage; this is the same schedule on fastai's ParamScheduler.
    """
    learn.opt.set_hyper("lr", lr)
    lr_max = np.array([h["lr"] for h in learn.opt.hypers])
    ends = ends or (lambda: [epochs(k, cycle_len, cycle_mult) for k in range(1, n_cycles + 1)])
    n_epoch = ends()[-1]

    def rate(pos):  # pos: the share of this fit done, from start_epoch to n_epoch
        return lr_max * cosine_at(ends(), start_epoch + pos * (n_epoch - start_epoch))

    learn.fit(n_epoch - start_epoch, cbs=[ParamScheduler({"lr": rate}), *cbs])
    return [epoch_row(learn, i) for i in range(len(learn.recorder.values))]


def unfrozen_rates(r: Recipe, found: float, head_lr: float | None) -> tuple[float, float]:
    """(last group's rate, first group's rate) once everything trains.

    From scratch, or with a pinned rate: `found` and `found / lr_mult`. After a head stage the
    head keeps half its rate (fastai's `fine_tune` rule, the top) and the first group learns at
    `body_lr` where given, else at the rate the finder read on the unfrozen network but no
    more than `lr_mult` times below the top; never above the top.
    """
    if r.lr or head_lr is None:
        return found, found / r.lr_mult
    top = head_lr / 2
    return top, min(r.body_lr or max(found, top / r.lr_mult), top)


def sized(learn: Learner, size: int | None) -> None:
    """Train and validate at `size` pixels from now on (None: the images' cached size)."""
    learn.dls.train.size = learn.dls.valid.size = size


def fine_tune_sgdr(
    learn: Learner, r: Recipe, run_dir: Path, show=False, checkpoint=None, clock=None
):
    """The house schedule, keeping the best model (run_dir/model.pth) and a checkpoint after
    every epoch (run_dir/checkpoint.pth); given that checkpoint, it carries on from it. The plan
    (kit/train/plan.py) says how many cycles each stage trains; with a `clock`
    (kit/train/budget.py), the time limit cuts it after the first epoch.

    Returns the learning rates used, one row of metrics per epoch, and the plan as it ended.
    """
    monitor, up = monitor_name(learn), greater_is_better(r.metric)
    shares = distributed.world() if ddp.in_ddp(learn) else 1  # processes validating a share
    rule = resolve(r.lr_rule, r.pretrained)
    # where the schedule is: a resumed run's, as its checkpoint saved it, decisions included
    progress = Progress.from_saved(checkpoint["state"]) if checkpoint else Progress()
    progress.plan = plan = progress.plan or Plan.of(r)
    if clock is not None:
        plan.cut(clock.plan)  # a later fold, or a resumed run, keeps the time plan made
    # on a tie the later, more annealed epoch wins
    save = SaveModelCallback(monitor, comp=np.greater_equal if up else np.less_equal,
                             fname="model", reset_on_fit=False)  # fmt: skip
    save.best = -float("inf") if up else float("inf")  # fastai starts np.less_equal at -inf
    # `best` kept across fits with reset_on_fit=False (fastai 2.8.12; tests/test_fastai_contract.py)
    cbs = [save, Checkpoint(run_dir / "checkpoint.pth", progress), Steps(progress),
           Judge(progress, monitor, r.metric, shares), Follow(progress)]  # fmt: skip
    early = None
    if r.patience:
        early = EarlyStoppingCallback(monitor=monitor, comp=np.greater if up else np.less,
                                      patience=r.patience, min_delta=r.min_delta)  # fmt: skip
        cbs.append(early)
    if r.log == "tensorboard":
        cbs.append(tensorboard(run_dir / "tensorboard"))
    if r.precise_bn:
        cbs.append(PreciseBN())
    learn.create_opt()
    if clock is not None:
        cbs.append(Budget(clock, r, plan))
    if r.snapshots:
        last = plan.last_stage()
        cbs.append(Snapshots(run_dir, progress, last, lambda: plan.ends(last)))
    if checkpoint is not None:
        learn.freeze() if progress.stage == "head" else learn.unfreeze()  # clears opt state
        restore(learn, checkpoint)
        kept = [h[monitor] for h in progress.history if h["stage"] == "final"] or [
            h[monitor] for h in progress.history
        ]  # a final stage's best is its own (the model is kept at --size)
        if kept:
            save.best = (max if up else min)(kept)
        if progress.finished(r, monitor):
            learn.load("model", with_opt=False)  # what the end of that stage's fit does
        else:
            values = progress.scores(monitor)
            cbs.append(Continue(checkpoint["smooth"], early, values, r.min_delta, up))
    rates = progress.rates
    for stage in STAGES:
        if progress.finished(r, monitor, stage):
            continue
        start = progress.begin(stage)
        sized(learn, r.start_size if r.start_size and stage != "final" else None)
        if not start:  # (un)freezing clears the optimizer's state: only when a stage begins
            learn.freeze() if stage == "head" else learn.unfreeze()
            if stage == "final":  # the best model is one of this size's: the others predict
                save.best = -float("inf") if up else float("inf")  # at another
                print(f"final cycle at {r.size} px (the others at {r.start_size} px): "
                      f"{plan.final_epochs} epochs, everything trainable", flush=True)  # fmt: skip
        if stage == "head":
            if "head_lr" not in rates:
                rates["head_lr"] = r.lr or find_lr(
                    learn, run_dir / "lr_find_frozen.png", rule, show, bounds(r.pretrained, True)
                )
            lr = rates["head_lr"]
        else:  # the final stage (--start-size) takes the unfrozen stage's rates
            if "lr" not in rates:  # after a head stage the plan may skip this finder run
                unfrozen = stage_rule(rule, "head_lr" in rates)  # (from scratch it is the only)
                finder = stage == "all" and (plan.finder or "head_lr" not in rates)
                png, within = run_dir / "lr_find.png", bounds(r.pretrained)
                found = r.lr or (find_lr(learn, png, unfrozen, show, within) if finder else 0.0)
                rates["lr"], rates["lr_low"] = unfrozen_rates(r, found, rates.get("head_lr"))
            lr = (
                slice(rates["lr_low"], rates["lr"])
                if rates["lr_low"] < rates["lr"]
                else rates["lr"]
            )
        if stage == "final":  # fine-tuning at the new size, not a restart at the top rate
            lr = slice(lr.start * FINAL, lr.stop * FINAL) if isinstance(lr, slice) else lr * FINAL
        # SGDR's first k cycles are a whole schedule: the plan may end the fit at any cycle's end
        ends = lambda stage=stage: plan.ends(stage)  # noqa: E731 (as the plan is revised)
        fit_sgdr(learn, *plan.shape(stage), lr, cbs, start, ends)  # ends on the best
    sized(learn, None)  # validation and test predictions at the size the model ended at
    history = progress.history
    plot_curves(progress.steps, history, monitor, run_dir / "training_curves.png", show)
    return dict(rates), history, plan

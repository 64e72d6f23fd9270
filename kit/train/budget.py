"""--time-limit: fit the schedule (cycles, the second finder run, TTA) into a run's minutes.

Up front, a few batches timed on the real model refuse a budget too small for one epoch; after
the first real epoch, `fit_schedule` (a pure function) cuts the schedule to fit what is left.
SGDR makes the cut clean: each cycle anneals to a low rate on its own, so the first k cycles
of a schedule are a complete schedule. With several processes rank 0 times, decides and writes
the plan, and every process keeps it: processes that cut differently would stop meeting (DDP),
or leave folds with and without TTA."""

import dataclasses
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from fastai.callback.core import Callback

from kit.data.augment import tta_views
from kit.errors import KitError
from kit.files import read_json, write_json
from kit.recipe import Recipe
from kit.train import ddp, distributed
from kit.train.finder import resolve, sweep
from kit.train.plan import Plan, epochs

UNFROZEN = 1.5  # an unfrozen epoch over a frozen one: weight gradients add a third pass to the
# forward and input-gradient passes that a frozen body (batch norm still trains) already costs
MARGIN = 0.9  # plan to use 90% of the time left: interpretation and writing files take the rest


def cost(r: Recipe, p: dict, finder: float, predict: float) -> float:
    """Every model's schedule under plan `p`, in first-epoch units (`finder` and `predict`: one
    finder run and one prediction pass over validation and test, in the same units)."""
    unfrozen = UNFROZEN if r.head_cycles else 1.0  # the first epoch was frozen if a head stage
    area = (r.size / r.start_size) ** 2 if r.start_size else 1.0  # pixels at --size per pixel
    unit = epochs(p["head_cycles"], r.head_cycle_len, 1)  # of the first epoch's (--start-size)
    unit += epochs(p["cycles"], r.cycle_len, r.cycle_mult, p["last_len"]) * unfrozen
    unit += (r.final_epochs if r.start_size else 0) * unfrozen * area  # never cut
    if not r.lr:
        unit += finder  # the first stage's finder
        unit += finder * unfrozen if p["head_cycles"] and p["cycles"] and p["finder"] else 0
    unit += predict * area * (len(tta_views(r)) if p["tta"] else 1)  # plain: TTA's first view
    return unit * max(1, r.folds)


def fit_schedule(r: Recipe, epoch_s: float, left_s: float, finder=0.0, predict=0.0) -> dict:
    """The longest schedule, at most the recipe's, that fits `left_s` seconds after a first
    epoch of `epoch_s` seconds. Cut in this order: the last stage's cycles from the end (down to
    one), the head's cycles (down to one), the second finder run (the unfrozen stage then takes
    fastai's fine_tune rates), TTA, and last the unfrozen stage itself; then the last stage gets
    back the cycles that the later cuts made room for, and where the next whole cycle does not
    fit, a shorter one in the epochs left (SGDR anneals it to the end all the same; dropping it
    left a third of a 2.6-minute budget unused on 3,000 photos at 64 px)."""
    p = {"head_cycles": r.head_cycles, "cycles": r.cycles, "tta": r.tta,
         "finder": Plan.of(r).finder, "last_len": 0}  # fmt: skip
    done = 1 + (0 if r.lr else finder)  # the first epoch and the first finder run are spent

    def fits():
        return (cost(r, p, finder, predict) - done) * epoch_s <= MARGIN * left_s

    cuts = [
        ("cycles", lambda: p["cycles"] > 1),
        ("head_cycles", lambda: p["head_cycles"] > 1),
        ("finder", lambda: p["finder"] and r.head_cycles and r.cycles and not r.lr),
        ("tta", lambda: p["tta"]),
        ("cycles", lambda: p["cycles"] == 1 and p["head_cycles"] >= 1),
    ]
    for key, can in cuts:
        while not fits() and can():
            p[key] = False if isinstance(p[key], bool) else p[key] - 1
    while p["cycles"] < r.cycles:  # give back to training what a later cut freed
        p["cycles"] += 1
        if not fits():
            p["cycles"] -= 1
            break
    if p["cycles"] < r.cycles:  # the next cycle, shortened to the epochs that fit
        p["cycles"] += 1
        whole = r.cycle_len * r.cycle_mult ** (p["cycles"] - 1)
        for n in range(whole - 1, -1, -1):
            p["last_len"] = n
            if not n or fits():
                break
        p["cycles"] -= not p["last_len"]
    need = (cost(r, p, finder, predict) - done) * epoch_s
    return {**p, "fits": need <= MARGIN * left_s, "need_s": need, "left_s": left_s,
            "epoch_s": epoch_s, "note": note(r, p, epoch_s, need, left_s)}  # fmt: skip


def note(r: Recipe, p: dict, epoch_s: float, need: float, left_s: float) -> str:
    """What was kept, in one line."""

    def kept(key, what, n_epochs):
        return f"{p[key]} of {getattr(r, key)} {what} ({n_epochs} epoch{'s' * (n_epochs != 1)})"

    unfrozen = epochs(p["cycles"], r.cycle_len, r.cycle_mult, p["last_len"])
    parts = [kept("cycles", "cycles", unfrozen)]
    if p["last_len"]:
        parts[0] = parts[0][:-1] + f", the last cut to {p['last_len']})"
    if r.head_cycles:
        parts.insert(
            0, kept("head_cycles", "head cycles", epochs(p["head_cycles"], r.head_cycle_len, 1))
        )
        if not r.lr and r.cycles and p["cycles"]:
            parts.append("second finder " + ("on" if p["finder"] else "off (fine_tune's rates)"))
    if r.start_size:
        parts.append(f"the final {r.final_epochs} at {r.size} px")
    parts.append("TTA " + ("on" if p["tta"] else "off"))
    text = f"time limit {r.time_limit:g} min: first epoch {epoch_s:.0f} s; keeping " + ", ".join(
        parts
    )
    if need > MARGIN * left_s:
        text += f"; even this needs about {need:.0f} s of the {left_s:.0f} s left"
    return text


def with_plan(r: Recipe, plan: dict | None) -> Recipe:
    """The recipe with the time plan's schedule, for the steps after training (TTA); unchecked:
    a cut may leave one cycle."""
    if not plan:
        return r
    return dataclasses.replace(r, head_cycles=plan["head_cycles"], cycles=plan["cycles"],
                               tta=plan["tta"])  # fmt: skip


class Clock:
    """A run's time limit: when it started, whether it was checked up front, and the plan once
    the first epoch has been timed (kept in `path`, so that a resumed run keeps it). With
    several processes, rank 0's clock, check and plan hold in all."""

    def __init__(self, minutes: float, started: float, path: Path, n_test: int):
        self.limit_s, self.started, self.path, self.n_test = minutes * 60, started, path, n_test
        self.plan = distributed.on_main(lambda: read_json(path))
        self.checked = False

    def left(self) -> float:
        return self.limit_s - (time.monotonic() - self.started)

    def check(self, verdict) -> None:
        """Rank 0's `verdict()` on the limit (what is wrong, or None) raised in every process."""
        self.checked = True
        wrong = distributed.on_main(verdict)
        if wrong:
            raise KitError(wrong)

    def decide(self, make) -> None:
        """Rank 0's plan `make()`, written down, kept by every process."""

        def made():
            plan = make()
            if plan is not None:
                write_json(self.path, plan)
            return plan

        self.plan = distributed.on_main(made)

    def join(self) -> None:
        """For a process that trained no model (more processes than folds): its part in the
        check and the plan that rank 0 made while training."""
        if self.plan is None:
            if not self.checked:
                self.check(lambda: None)
            self.decide(lambda: None)


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on a GPU, so that the clock reads the time it took."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def probe(learn, n: int = 3) -> tuple[float, float]:
    """Seconds per training step (forward and backward) and per prediction batch, the fastest
    of `n` timed on validation batches; the model, its statistics and the random state are
    left as they were, so a run with a time limit trains exactly as one without."""
    model, rng = learn.model.to(learn.dls.device), torch.get_rng_state()  # fit moves it too
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    kinds = {type(c).__name__ for c in learn.cbs}  # the autocast the run's callbacks apply
    dtype = (
        torch.bfloat16
        if "Autocast" in kinds
        else torch.float16
        if "MixedPrecision" in kinds
        else None
    )
    cast = torch.autocast(learn.dls.device.type, dtype=dtype) if dtype else nullcontext()
    step, pred, device = [], [], learn.dls.device
    for _, (xb, yb) in zip(range(n), learn.dls.valid):
        model.train()
        synchronize(device)
        start = time.perf_counter()
        with cast:
            loss = learn.loss_func(model(xb).float(), yb)
        loss.backward()
        synchronize(device)
        step.append(time.perf_counter() - start)
        model.eval()
        start = time.perf_counter()
        with torch.no_grad(), cast:
            model(xb)
        synchronize(device)
        pred.append(time.perf_counter() - start)
    model.zero_grad(set_to_none=True)
    for k, v in model.named_buffers():
        v.copy_(buffers[k])
    torch.set_rng_state(rng)
    return min(step), min(pred)


def finder_steps(r: Recipe) -> int:
    """The most training steps one finder run takes under `r`'s rule (kit/train/finder.py)."""
    return sweep(resolve(r.lr_rule, r.pretrained))[2]


def check_up_front(learn, r: Recipe, clock: Clock) -> None:
    """Refuse, before training, a limit too short for the least a run does: per model the
    finder (when the rate is not pinned), one epoch and one prediction pass."""
    step_s, pred_s = probe(learn)  # every process: a synchronised batch norm needs them all
    shares = distributed.world() if ddp.in_ddp(learn) else 1  # validated, predicted
    train, valid = len(learn.dls.train), -(-len(learn.dls.valid) // shares)  # batches here
    epoch_s = train * step_s + valid * pred_s
    test = clock.n_test / shares / learn.dls.valid.bs
    least = max(1, r.folds) * (epoch_s + (0 if r.lr else finder_steps(r) * step_s)
                               + (valid + test) * pred_s)  # fmt: skip

    def verdict():
        if least > clock.left():
            return (f"--time-limit {r.time_limit:g} min is too short: one epoch takes about "
                    f"{epoch_s:.0f} s here{'' if r.lr else ', the finder more'}, and the least "
                    f"this run can do is about {least:.0f} s; give at least "
                    f"{(least + clock.limit_s - clock.left()) / 60 * 1.2:.1f} min")  # fmt: skip

    clock.check(verdict)


class Budget(Callback):
    """After the first epoch, fit the schedule to the time left (`clock.plan`) and cut the plan
    to it; Follow (kit/train/plan.py) then ends each stage's fit where the plan ends it."""

    order = 64  # after Checkpoint has counted the epoch, before Follow acts on the plan

    def __init__(self, clock: Clock, r: Recipe, plan: Plan):
        self.clock, self.r, self.plan = clock, r, plan

    def before_train(self):
        self.t_train = time.perf_counter()

    def before_validate(self):
        synchronize(self.dls.device)
        self.train_s = time.perf_counter() - self.t_train
        self.t_valid = time.perf_counter()

    def after_epoch(self):
        if self.clock.plan is None:
            self.decide(self.train_s + time.perf_counter() - self.t_valid)
            self.plan.cut(self.clock.plan)

    def decide(self, epoch_s: float) -> None:
        valid_s = epoch_s - self.train_s
        steps = len(self.dls.train)
        predict = valid_s * (1 + self.clock.n_test / max(1, self.dls.valid.n)) / epoch_s
        finder = finder_steps(self.r) / steps * self.train_s / epoch_s
        self.clock.decide(lambda: fit_schedule(self.r, epoch_s, self.clock.left(), finder, predict))
        print(self.clock.plan["note"], flush=True)

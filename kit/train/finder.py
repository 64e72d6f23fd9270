"""fastai's learning-rate finder, and the rule that turns its curve into one rate: the rules,
measured in benchmarks/lr.py across seeds, folds and data sets; the sweep the kit's own rules
read, cut to the rates that move them (benchmarks/finder.py)."""

import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from fastai.callback.core import Callback, CancelFitException
from fastai.callback.schedule import minimum, slide, steep, valley
from fastai.learner import Learner

from kit.files import save_figure
from kit.train import ddp, distributed

NUM_IT = 100  # fastai's lr_find: 100 steps from 1e-7 to 10
# The rate grows by fastai's step (x1.2, 12.5 steps a decade) in every sweep: the curve's shape
# depends on it (a sweep of 30-100 steps over the same range read rates 2-10x off, reverted)
STEP = (10 / 1e-7) ** (1 / NUM_IT)
START = 5  # the curve's first points: their mean loss is where it starts
# The kit's rules sweep from 1e-5: below it no benchmark set's loss moved, and the 25 steps
# fastai spends there changed no reading beyond the finder's own noise (benchmarks/finder.py).
# halfway stops TAIL steps after the smoothed loss, having fallen by FALL of where it started,
# climbs back BACK of that fall: past the lowest loss, which it reads (curve() drops the TAIL
# steps, as it drops fastai's last five).
START_LR, END_LR = 1e-5, 10.0
FALL, BACK, TAIL = 0.1, 0.5, 5
OWN = ("halfway", "minimum")  # fastai's own rules read fastai's whole sweep
# A curve that does not fall cannot be read (halfway, on a flat or rising one, reads its first
# rate, 6e-7, which trains nothing; minimum a tenth of that). Then 1e-3: fastai's and Adam's
# default rate, a rate from-scratch networks train at; the rates that scored best from scratch
# in benchmarks/lr.py were higher still (valley's 1.3e-4 to 4.8e-4 were 5-10x too low).
SAFE_LR = 1e-3
FLAT = 0.01  # a fall under 1% of the starting loss is noise: real curves fall by a tenth or more
# The most a network from scratch (AdamW) takes: 3e-3 was within 0.01 points of the best rate
# on every from-scratch set measured, and 1e-2 lost on all of them: 0.16 and 8.7 points on
# 8,000 and 1,437 digits (benchmarks/lr.py), 1.4 on 15,000 glyphs of 62 classes (3 epochs:
# 0.876 at 3e-3, 0.862 at 1e-2, 0.785 at 2.3e-2). On those glyphs the finder's loss fell slowly
# over the whole sweep (62 classes barely begin to learn in its 71 steps), and halfway read
# 4.8e-2 and 5.8e-2, where they learnt nothing (test accuracy 0.017: chance).
SCRATCH_MOST = 3e-3
# The least a new head on a frozen pretrained body takes. Its curve often bottoms out flat, to
# within its noise, over a decade (5e-3 to 7e-2 on 600 transfer photos of 64 px), and noise
# places the lowest point anywhere along it: minimum read 1.3e-3 at one seed of three there
# (4e-3 and 8.3e-3 at the others), the head stopped at a validation AUC of 0.75, and the run
# ended 7 points under the others. In benchmarks/lr.py every pretrained set lost at fixed rates
# below it (1e-3: 2.0 and 6.3 points; 3e-3: 0.8 and 3.7) and none lost 0.3 at 1e-2 to 3e-2.
HEAD_LEAST = 5e-3


def crossing(losses: torch.Tensor) -> int:
    """Where the smoothed loss has first come down half of the way from where it started (its
    first points' mean) to its lowest."""
    start, low = float(losses[:START].mean()), float(losses.min())
    return int(torch.nonzero(losses <= max(start - (start - low) / 2, low))[0])


def fell(losses: torch.Tensor) -> bool:
    """Whether the curve falls: its lowest is clearly below its start, and half of that fall is
    reached after the start's own points (a flat or rising curve crosses among them)."""
    start, low = float(losses[:START].mean()), float(losses.min())
    return start - low > FLAT * abs(start) and crossing(losses) >= START


def halfway(lrs: torch.Tensor, losses: torch.Tensor, num_it: int = NUM_IT):
    """The lowest rate at which the smoothed loss has come down half of the way from where it
    started to its lowest: a level crossing on the falling part of the curve, which moves far
    less with the noise of a short run than a slope (steep), a stretch (valley) or where the
    loss turns (minimum). SAFE_LR where the loss never falls."""
    if not fell(losses):
        return SAFE_LR, (SAFE_LR, float(losses[0]))
    i = crossing(losses)
    return float(lrs[i]), (float(lrs[i]), float(losses[i]))


RULES = {"halfway": halfway, "valley": valley, "slide": slide, "minimum": minimum, "steep": steep}
MEANING = {
    "halfway": "the lowest rate at which the loss has fallen half of the way to its lowest "
    "(after a head stage, a tenth of the rate at the lowest loss)",
    "valley": "fastai's valley: two thirds down the longest falling stretch of the curve",
    "slide": "fastai's slide: where the slope of the curve stops changing, from the right",
    "minimum": "a tenth of the rate at the curve's lowest (smoothed) loss",
    "steep": "fastai's steep: where the curve falls fastest",
}


def curve(lrs, losses) -> tuple[torch.Tensor, torch.Tensor]:
    """The part of the finder's curve fastai's suggestions read: without the first tenth and the
    last five steps, and cut at the first NaN loss."""
    lrs, losses = torch.tensor(lrs[NUM_IT // 10 : -5]), torch.tensor(losses[NUM_IT // 10 : -5])
    nan = torch.isnan(losses).nonzero()
    if len(nan):
        lrs, losses = lrs[: int(nan[0])], losses[: int(nan[0])]
    return lrs.double(), losses.double()


def fallback(lrs, losses, rule: str) -> str | None:
    """Why `rule` cannot read the finder's curve and SAFE_LR is used instead; None when it can."""
    x, y = curve(lrs, losses)
    if len(x) < 2:
        return "the finder's loss was NaN at once"
    if rule == "halfway" and not fell(y):
        return "the finder's loss did not fall"
    return None


def choose(lrs, losses, rule: str) -> tuple[float, tuple[float, float]]:
    """`rule`'s rate from the finder's recorded (lrs, smoothed losses), SAFE_LR where there is
    no curve to read, and the point on the curve to mark: (rate, (rate, loss))."""
    x, y = curve(lrs, losses)
    rate = float(RULES[rule](x, y, NUM_IT)[0]) if len(x) >= 2 else SAFE_LR
    if not len(x):
        return rate, (rate, float("nan"))  # nothing to mark it on
    return rate, (rate, float(np.interp(np.log(rate), x.log().numpy(), y.numpy())))


def resolve(rule: str, pretrained: bool) -> str:
    """auto: halfway for a network trained from scratch, minimum for pretrained weights. In
    benchmarks/lr.py halfway held within 1.2x and 0.06 points of the best fixed rate from
    scratch, where valley chose rates 5-10x too low. A frozen pretrained body's curve falls
    steadily until the head diverges, far to the right: there halfway and valley read rates
    5-30x below the best, minimum (a tenth of where the loss bottoms out) within 3x of each other
    and of the best fixed rate."""
    if rule != "auto":
        return rule
    return "minimum" if pretrained else "halfway"


def stage_rule(rule: str, after_head: bool) -> str:
    """The rule for one finder run. Once a trained head is unfrozen the curve barely falls (a
    tenth of its loss, as much as its noise), so a level crossing is noise: halfway reads that
    curve as minimum does."""
    return "minimum" if rule == "halfway" and after_head else rule


def describe(lr: float, rule: str) -> str:
    """Which rule set the rates, in words, for logs, metrics.json and report.html."""
    return f"fixed by --lr {lr:g}" if lr else f"{rule} rule: {MEANING[rule]}"


def sweep(rule: str) -> tuple[float, float, int]:
    """(first rate, last rate, most steps) of the finder's run for `rule`: fastai's for its own
    rules, from START_LR at fastai's step for the kit's (75 steps, not 100)."""
    if rule not in OWN:
        return 1e-7, 10.0, NUM_IT
    steps = round(math.log(END_LR / START_LR) / math.log(STEP))
    return START_LR, START_LR * STEP**steps, steps


def climbed(losses: list[float]) -> bool:
    """Whether the smoothed loss, having fallen by FALL of where it started, has climbed back
    BACK of that fall: the curve is past its lowest point."""
    first = NUM_IT // 10  # curve()'s start
    if len(losses) <= first + START:
        return False
    start, low = float(np.mean(losses[first : first + START])), min(losses[first:])
    return start - low > FALL * abs(start) and losses[-1] > low + BACK * (start - low)


class ClimbBack(Callback):
    """Ends the finder's sweep TAIL steps after its loss climbed back (`climbed`), after the
    Recorder (50) and fastai's LRFinder (60) have seen the step."""

    order = 61

    def before_fit(self):
        self.left = None

    def after_batch(self):
        if self.left is None and climbed([float(v) for v in self.recorder.losses]):
            self.left = TAIL
        elif self.left is not None:
            self.left -= 1
        if self.left == 0:
            raise CancelFitException()


def run_sweep(learn: Learner, rule: str, stop_div=True) -> tuple[list, list]:
    """One finder run of `sweep(rule)`: its rates and smoothed losses."""
    low, high, steps = sweep(rule)
    # minimum reads a curve that falls to the end (a frozen body) or barely falls (a trained
    # head), where noise can look like a climb: it runs to fastai's divergence
    cbs = [ClimbBack()] if rule == "halfway" and rule in OWN else []
    with learn.added_cbs(cbs):
        learn.lr_find(low, high, steps, stop_div=stop_div, suggest_funcs=None, show_plot=False)
    return list(learn.recorder.lrs), [float(v) for v in learn.recorder.losses]


def bounds(pretrained: bool, frozen: bool = False) -> tuple[float, float]:
    """The least and most rate a finder's reading gives: at most SCRATCH_MOST from scratch; at
    least HEAD_LEAST for a new head on a `frozen` pretrained body; no bound otherwise."""
    if not pretrained:
        return 0.0, SCRATCH_MOST
    return (HEAD_LEAST if frozen else 0.0), math.inf


BOUNDED = {"most": "above the most a network from scratch trained well at",
           "least": "below the least a new head on pretrained weights trained well at"}  # fmt: skip


def find_lr(learn: Learner, png: Path, rule: str, show=False, within=(0.0, math.inf)) -> float:
    """fastai's learning-rate finder: the rate `rule` reads from its curve (`within` (least,
    most) a rate it gives), marked on the plot; the plot and the curve (lr_find.csv: rate and
    smoothed loss per step) saved beside it."""
    # in a DDP run every process records the same (mean) loss (ddp.SharedLoss): all stop
    # at the same step, and all agree on whether to look on
    lrs, losses = run_sweep(learn, rule)
    if len(curve(lrs, losses)[0]) < 2:  # the loss rose at once (a trained head): look on
        lrs, losses = run_sweep(learn, rule, stop_div=False)
    rate, point = choose(lrs, losses, rule)
    bounded = min(max(rate, within[0]), within[1])
    if distributed.is_main() and (why := fallback(lrs, losses, rule)):
        print(f"{why}: the {rule} rule cannot read it; learning rate {rate:.0e} instead")
    if distributed.is_main():
        print(f"learning rate {rate:.2e} from the finder ({describe(0, rule)}); plot: {png}")
        if bounded != rate:
            bound = BOUNDED["most" if rate > bounded else "least"]
            print(f"learning rate {bounded:.0e} instead: {rate:.2e} is {bound} "
                  "(kit/train/finder.py)")  # fmt: skip
    learn.recorder.plot_lr_find(suggestions=[point], nms=[f"{rule}: {rate:.2e}"])
    fig = plt.gcf()
    fig.axes[0].set_title(f"learning-rate finder: {rule} rule, {rate:.2e}")
    save_figure(fig, png, show)
    pd.DataFrame({"lr": lrs, "loss": losses}).to_csv(png.with_suffix(".csv"), index=False)
    return ddp.from_main(learn, bounded)  # rank 0's rate, in every process of a DDP run

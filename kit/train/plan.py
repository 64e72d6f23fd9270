"""The house schedule as one object, the Plan: two stages (the head with the body frozen, then
everything), each at most a number of SGDR cycles that grow by cycle_mult, and with --start-size
a third (one cycle of everything at --size, after the two at the smaller size). Decided up
front from the recipe, cut by the time limit after the first epoch (kit/train/budget.py), and
revised at the end of every cycle by the rule: a stage goes on only while its last cycle raised
the validation score by more than that score's noise on this validation set, else it stops
there (SGDR has annealed at a cycle's end) and the best model is kept. fine_tune_sgdr runs it;
the checkpoint keeps it inside Progress, so a resumed run keeps its decisions."""

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from fastai.callback.core import Callback, CancelFitException

from kit.evaluate.metrics import greater_is_better
from kit.recipe import Recipe
from kit.train import distributed

STAGES = ("head", "all", "final")  # in the order they train: the body frozen, then everything,
# then (--start-size) everything at the full size
NAMES = {"head": "head", "all": "unfrozen", "final": "final"}  # as a user reads them


def epochs(cycles: int, cycle_len: int, mult: int, last_len: int = 0) -> int:
    """Epochs in `cycles` SGDR cycles, the first `cycle_len` long, each `mult` times the last
    (the last `last_len` long instead, where given)."""
    lengths = [cycle_len * mult**i for i in range(cycles)]
    if lengths and last_len:
        lengths[-1] = last_len
    return sum(lengths)


@dataclass
class Plan:
    head_cycles: int  # the most cycles of each stage: the recipe's, less the time limit's cut
    cycles: int
    head_cycle_len: int = 1  # the head's cycles do not grow
    cycle_len: int = 1
    cycle_mult: int = 2
    adaptive: bool = True  # the rule on (--exact-cycles: every cycle trains)
    tta: bool = True  # the time limit may turn off TTA and the second finder run
    finder: bool = True
    last_len: int = 0  # the time limit may shorten the unfrozen stage's last cycle (0: as grown)
    final_epochs: int = 0  # the final stage's one cycle (--start-size; 0: no final stage)
    stopped: dict = field(default_factory=dict)  # stage -> its cycles when the rule stopped it
    decisions: list = field(default_factory=list)  # the rule's verdict at each cycle end judged

    @classmethod
    def of(cls, r: Recipe) -> "Plan":
        return cls(r.head_cycles, r.cycles, r.head_cycle_len, r.cycle_len, r.cycle_mult,
                   not r.exact_cycles, r.tta, r.refind and not r.body_lr,
                   final_epochs=r.final_epochs if r.start_size else 0)  # fmt: skip

    def shape(self, stage: str) -> tuple[int, int, int]:
        """(most cycles, first cycle's epochs, growth) of `stage`."""
        if stage == "head":
            return self.head_cycles, self.head_cycle_len, 1
        if stage == "final":
            return int(self.final_epochs > 0), self.final_epochs, 1
        return self.cycles, self.cycle_len, self.cycle_mult

    def ends(self, stage: str) -> list[int]:
        """The stage's epochs at the end of each of its cycles."""
        most, length, mult = self.shape(stage)
        ends = [epochs(k, length, mult) for k in range(1, most + 1)]
        if ends and stage == "all" and self.last_len:
            ends[-1] = (ends[-2] if most > 1 else 0) + self.last_len
        return ends

    def epochs(self, stage: str) -> int:
        """Epochs `stage` trains: its most cycles, or those it had when the rule stopped it."""
        ends = self.ends(stage)
        kept = min(len(ends), self.stopped.get(stage, len(ends)))
        return ends[kept - 1] if kept else 0

    def last_stage(self) -> str:
        return [s for s in STAGES if self.shape(s)[0]][-1]

    def cut(self, budget: dict | None) -> None:
        """Keep what the time limit's plan keeps (budget.fit_schedule's dict)."""
        if budget:
            self.head_cycles, self.cycles = budget["head_cycles"], budget["cycles"]
            self.tta, self.finder = budget["tta"], budget["finder"]
            self.last_len = budget.get("last_len", 0)

    def judge(self, stage: str, cycle: int, gain: float, noise: float) -> dict:
        """Revise the plan after `stage`'s `cycle` (from 1) improved the score by `gain`, against
        the score's `noise`: the stage goes on only if the gain is larger. Returns the decision.

        Tried and not kept: also stopping where the score is within its noise of the best
        possible (no later gain could be told from chance). Measured once, inconclusive: on the
        Invasive sample (24 validation photos) it stopped after 5 epochs at valid AUC 0.972
        (noise 0.036) with the same held-out AUC as the 9 epochs without it (0.9593 both); on
        3,000 transfer JPEGs it did not fire. At a score of exactly 1 the noise estimates are 0,
        so on a small validation set it would stop wherever the set saturates."""
        going = gain > noise
        if not going:
            self.stopped[stage] = cycle
        decision = {"stage": stage, "cycle": cycle, "of": self.shape(stage)[0], "gain": gain,
                    "noise": noise, "went_on": going}  # fmt: skip
        self.decisions.append(decision)
        return decision

    def saved(self) -> dict:
        return asdict(self)


def said(d: dict, monitor: str, up: bool) -> str:
    """A decision in one line; a score out of 1 (`up`: greater is better) in points."""
    scale, unit, digits = (100, " points", 2) if up else (1, "", 4)
    verb = ("raised", "lowered")[(d["gain"] >= 0) != up]
    then = "going on" if d["went_on"] else f"stopping after {d['cycle']} of {d['of']} cycles"
    return (f"{NAMES[d['stage']]} cycle {d['cycle']} of {d['of']} {verb} valid {monitor} by "
            f"{abs(d['gain']) * scale:.{digits}f}{unit}, {'over' if d['went_on'] else 'under'} "
            f"its noise {d['noise'] * scale:.{digits}f}: {then}")  # fmt: skip


def hanley_mcneil(a: float, positives: int, negatives: int) -> float:
    """The standard error of an AUC `a` measured on `positives` and `negatives` (Hanley and
    McNeil 1982: the AUC's variance from the exponential approximation of its two parts)."""
    if positives < 1 or negatives < 1:
        return 0.0
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    var = a * (1 - a) + (positives - 1) * (q1 - a * a) + (negatives - 1) * (q2 - a * a)
    return math.sqrt(max(var, 0.0) / (positives * negatives))


def standard_error(metric: str, score: float, n: int, targets=None, probs=None) -> float:
    """The noise of `score` on a validation set of `n` images (with its `targets` and the
    predicted `probs` where the metric kept them).

    AUC: Hanley-McNeil from the set's positives and negatives; a mean AUC over classes or tags
    (mauc, auc over 3+ classes): the mean of each column's, as if their errors went together.
    Log loss: the standard deviation of the images' own losses over sqrt(n). Every other score:
    the binomial sqrt(s(1-s)/n), exact for accuracy and an upper bound for any mean of per-image
    scores in [0, 1] (MAP@k, samples-F; a variable in [0, 1] with mean s has variance at most
    s(1-s)); for F1-macro and QWK, an approximation at n images.

    A score out of 1 is taken as if the set held one more image of each kind that the model
    could not tell (Laplace's rule of succession): a set the model gets all right says its error
    is small, not nought, so a score at or near 1 keeps a noise of about one image's worth
    (accuracy on n images: 1/n) instead of none, and a stage stops there unless its cycle set
    right more than about one image (without it, any gain at all went on where validation AUC
    reached 0.9999: a noise of nought)."""
    if metric == "logloss" and probs is not None:
        p = np.clip(np.asarray(probs, np.float64), 1e-15, 1)
        losses = -np.log(p[np.arange(len(p)), np.asarray(targets).astype(int)])
        return float(losses.std() / math.sqrt(len(losses)))
    s = min(max(score, 0.0), 1.0)
    if metric in ("auc", "mauc") and targets is not None:
        y = np.asarray(targets)
        columns = probs.shape[1] if probs is not None and probs.ndim == 2 else 2
        truth = y if y.ndim == 2 else np.eye(columns)[y.astype(int)]
        cols = [truth[:, 1]] if columns == 2 and y.ndim == 1 else list(truth.T)
        counts = [(int(c.sum()), int(len(c) - c.sum())) for c in cols]
        return float(np.mean([hanley_mcneil(smoothed_auc(s, p, q), p, q) for p, q in counts]))
    s = (s * n + 1) / (n + 2)
    return math.sqrt(s * (1 - s) / max(n, 1))


def smoothed_auc(a: float, positives: int, negatives: int) -> float:
    """AUC `a` with one more positive and one more negative image ranked at chance against all
    the others: the rule of succession for a share of pairs."""
    pairs = positives * negatives
    return (a * pairs + 0.5 * (positives + negatives + 1)) / ((positives + 1) * (negatives + 1))


def kept_by(learn) -> tuple:
    """(targets, probabilities) of the last validation, where the metric kept them (fastai's
    AccumMetric: auc, log loss and the others scored on the whole set); else (None, None)."""
    metric = learn.metrics[0]
    if not getattr(metric, "targs", None):
        return None, None
    return torch.cat(metric.targs).numpy(), torch.cat(metric.preds).float().numpy()


class Judge(Callback):
    """At the end of each cycle that has a later one in its stage, the rule revises the plan:
    before Checkpoint (55) saves the plan with the epoch, so that a resumed run has the verdict.
    In DDP (`shares` processes validating a share each) rank 0 judges and every process
    follows."""

    order = 54  # after the Recorder (50) has the epoch's values

    def __init__(self, progress, monitor: str, metric: str, shares: int = 1):
        self.progress, self.monitor, self.metric, self.shares = progress, monitor, metric, shares

    def after_epoch(self):
        plan, stage = self.progress.plan, self.progress.stage
        done = self.progress.done() + 1  # Checkpoint counts this epoch next
        ends = plan.ends(stage)
        if not plan.adaptive or done not in ends or done >= plan.epochs(stage):
            return
        names = self.recorder.metric_names[1:-1]
        now = float(self.recorder.values[-1][names.index(self.monitor)])
        cycle = ends.index(done) + 1
        before = self.score_before(cycle - 1)
        if before is None:  # a stage's first cycle: it always goes on
            return
        measured = distributed.on_main if self.shares > 1 else (lambda f: f())
        gain, noise = measured(lambda: self.measure(now, before))
        if not math.isfinite(gain):  # a score undefined on this set (AUC of one class)
            return
        decision = plan.judge(stage, cycle, gain, noise)
        if distributed.is_main():
            print(said(decision, self.monitor, greater_is_better(self.metric)), flush=True)

    def score_before(self, k: int) -> float | None:
        """The score at the end of the cycle before cycle `k` (from 0) of this stage; None for a
        stage's first cycle, which is not judged: unfreezing restarts the optimizer and often
        costs the first unfrozen epoch what the head had (on the Invasive sample: valid AUC
        down 0.25 after it, and stopping there kept the head alone, test AUC 0.90 where plain
        fastai's 4 epochs scored 0.99)."""
        if not k:
            return None
        scores = self.progress.scores(self.monitor)
        return scores[self.progress.plan.ends(self.progress.stage)[k - 1] - 1]

    def measure(self, now: float, before: float) -> tuple[float, float]:
        """(the cycle's gain in the score's good direction, the score's noise)."""
        gain = (now - before) if greater_is_better(self.metric) else (before - now)
        targets, probs = kept_by(self.learn)
        n = len(targets) if targets is not None else self.dls.valid.n * self.shares
        return gain, standard_error(self.metric, now, n, targets, probs)


class Follow(Callback):
    """End a stage's fit at the cycle end where its plan now ends it (the rule stopped it, or the
    time limit cut it): SGDR has annealed the rate there."""

    order = 65  # after Checkpoint, Snapshots, SaveModel and early stopping have seen the epoch

    def __init__(self, progress):
        self.progress = progress

    def after_epoch(self):
        ends_here = self.progress.done() >= self.progress.plan.epochs(self.progress.stage)
        if ends_here and self.epoch + 1 < self.n_epoch:  # the fit itself goes on: cut it
            raise CancelFitException()

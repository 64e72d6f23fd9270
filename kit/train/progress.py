"""Where the house schedule is, as one object rather than a dict its callbacks share: the plan
it follows (kit/train/plan.py), the stage training now, the epochs each stage has done, the
rates the finder set, one row per epoch and one per step. `fine_tune_sgdr` moves it from stage
to stage; Checkpoint ends its epochs and saves it, Steps records its steps, the plan's callbacks
revise and follow the plan; a resumed run starts from the saved copy."""

from dataclasses import asdict, dataclass, field

from kit.evaluate.metrics import greater_is_better
from kit.recipe import Recipe
from kit.train.plan import STAGES, Plan


def early_stop_state(values: list, min_delta: float, greater=True) -> tuple[float, int]:
    """fastai's EarlyStoppingCallback state after seeing `values`: (best, epochs since)."""
    sign = 1 if greater else -1
    best, wait = -float("inf"), 0
    for v in values:
        if sign * v - min_delta > best:
            best, wait = sign * v, 0
        else:
            wait += 1
    return sign * best, wait


@dataclass
class Progress:
    plan: Plan | None = None  # None: the recipe's, as Plan.of makes it
    stage: str | None = None  # None before the first epoch
    epochs: dict = field(default_factory=dict)  # stage -> its epochs trained
    rates: dict = field(default_factory=dict)  # head_lr; lr and lr_low once unfrozen
    history: list = field(default_factory=list)  # {"stage", losses, metric} per epoch
    steps: list = field(default_factory=list)  # {"stage", "epoch", "loss", "lr"} per step

    def done(self, stage: str | None = None) -> int:
        """Epochs `stage` (default: the current one) has trained."""
        return self.epochs.get(stage or self.stage, 0)

    def begin(self, stage: str) -> int:
        """Train `stage` from now on; returns the epochs it already has (a resumed stage's).
        Stages go one way: the head's never follows the unfrozen one's."""
        if self.stage is not None and STAGES.index(stage) < STAGES.index(self.stage):
            raise ValueError(f"stage {stage!r} cannot follow {self.stage!r}")
        self.stage = stage
        return self.done()

    def end_epoch(self, row: dict) -> None:
        """Count an epoch of the current stage, with its losses and metric."""
        self.history.append({"stage": self.stage, **row})
        self.epochs[self.stage] = self.done() + 1

    def scores(self, monitor: str, stage: str | None = None) -> list[float]:
        """The monitored value of each epoch of `stage` (default: the current one)."""
        return [h[monitor] for h in self.history if h["stage"] == (stage or self.stage)]

    def finished(self, r: Recipe, monitor: str, stage: str | None = None) -> bool:
        """Is `stage` (default: the current one) over: the epochs its plan keeps trained (the
        rule may have stopped it), or ended by early stopping? Before the first epoch there is
        nothing to carry on."""
        stage, plan = stage or self.stage, self.plan or Plan.of(r)
        if stage is None or self.done(stage) >= plan.epochs(stage):
            return True
        greater = greater_is_better(r.metric)
        waited = early_stop_state(self.scores(monitor, stage), r.min_delta, greater)[1]
        return bool(r.patience) and waited >= r.patience

    def saved(self) -> dict:
        """As a checkpoint keeps it: plain data."""
        return asdict(self)

    @classmethod
    def from_saved(cls, saved: dict) -> "Progress":
        plan = saved.get("plan")
        return cls(**{**saved, "plan": Plan(**plan) if plan else None})

"""The house schedule as plain data: its two stages (the head with the body frozen, then
everything), each a number of SGDR cycles that grow by cycle_mult, and their epochs."""

from kit.evaluate.metrics import greater_is_better
from kit.recipe import Recipe

# A last SGDR cycle that still raised the validation score by more than a point: the network was
# still learning. In benchmarks/tricks.py and benchmarks/glyphs.py a fourth cycle gained where
# the third had gained a point or more held out (1,437 digits: 8; the glyphs: 1.0-23), and
# nothing where it had gained less (8,000 digits: 0.17; 600 photos: 0.83).
STILL_LEARNING = 0.01


def epochs(cycles: int, cycle_len: int, mult: int) -> int:
    """Epochs in `cycles` SGDR cycles, the first `cycle_len` long, each `mult` times the last."""
    return sum(cycle_len * mult**i for i in range(cycles))


def stages(r: Recipe) -> list[tuple]:
    """(stage, cycles, first cycle's epochs, cycle_mult) for the head stage and the unfrozen one."""
    return [
        ("head", r.head_cycles, r.head_cycle_len, 1),
        ("all", r.cycles, r.cycle_len, r.cycle_mult),
    ]


def stage_epochs(r: Recipe, stage: str) -> int:
    """Epochs in `stage` ("head" or "all") of `r`'s schedule."""
    _, cycles, length, mult = next(s for s in stages(r) if s[0] == stage)
    return epochs(cycles, length, mult)


def still_learning(history: list[dict], r: Recipe, monitor: str) -> str | None:
    """A line for the user when the unfrozen stage's last SGDR cycle (all of it trained) raised
    the validation score by more than STILL_LEARNING: one more cycle may score higher. None
    otherwise, and for a metric that is not a score out of 1 (log loss)."""
    if not greater_is_better(r.metric) or r.cycles < 2:
        return None
    values = [h[monitor] for h in history if h["stage"] == "all"]
    before, last = (epochs(k, r.cycle_len, r.cycle_mult) for k in (r.cycles - 1, r.cycles))
    if len(values) < last:  # cut short: early stopping or the time limit
        return None
    gain = values[last - 1] - values[before - 1]
    if gain <= STILL_LEARNING:
        return None
    more = epochs(r.cycles + 1, r.cycle_len, r.cycle_mult)
    return (
        f"the last cycle raised valid {monitor} by {100 * gain:.1f} points "
        f"({values[before - 1]:.4f} to {values[last - 1]:.4f}): still learning; --cycles "
        f"{r.cycles + 1} trains {more} epochs instead of {last} and may score higher"
    )

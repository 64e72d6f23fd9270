"""The house schedule as plain data: its two stages (the head with the body frozen, then
everything), each a number of SGDR cycles that grow by cycle_mult, and their epochs."""

from kit.recipe import Recipe


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

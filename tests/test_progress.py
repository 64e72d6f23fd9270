"""The house schedule's progress (kit/train/progress.py): the stage machine that fine_tune_sgdr
moves and its callbacks advance, and the copy a checkpoint saves."""

import pytest

from kit.recipe import Recipe
from kit.train.progress import Progress

R = Recipe(name="t", slug="t", head_cycles=2, head_cycle_len=1, cycles=2, cycle_len=1, cycle_mult=2,
           metric="accuracy")  # fmt: skip  # head: 2 epochs; all: 1 + 2 = 3


def test_stages_end_after_their_epochs_and_go_one_way():
    p = Progress()
    assert p.finished(R, "accuracy")  # nothing to carry on before the first epoch
    assert not p.finished(R, "accuracy", "head")
    assert p.begin("head") == 0
    for acc in (0.5, 0.6):
        p.end_epoch({"valid_loss": 1 - acc, "accuracy": acc})
    assert p.finished(R, "accuracy", "head") and p.done("head") == 2
    assert p.begin("all") == 0 and not p.finished(R, "accuracy")
    p.end_epoch({"valid_loss": 0.3, "accuracy": 0.7})
    assert p.scores("accuracy") == [0.7] and p.scores("accuracy", "head") == [0.5, 0.6]
    assert [h["stage"] for h in p.history] == ["head", "head", "all"]
    with pytest.raises(ValueError, match="cannot follow"):
        p.begin("head")


def test_early_stopping_ends_a_stage_and_a_saved_copy_carries_on():
    r = Recipe(**{**R.__dict__, "patience": 2})
    p = Progress()
    p.begin("all")
    for acc in (0.8, 0.7):  # one epoch without a better score: patience 2 not yet run out
        p.end_epoch({"accuracy": acc})
    assert not p.finished(r, "accuracy")
    again = Progress.from_saved(p.saved())  # as a checkpoint keeps it, and a resume reads it
    assert again == p and again.begin("all") == 2
    again.end_epoch({"accuracy": 0.75})
    assert again.finished(r, "accuracy") and not p.finished(r, "accuracy")  # a copy, not shared

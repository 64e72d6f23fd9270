"""The plan (kit/train/plan.py): a stage goes on only while its last SGDR cycle raised the
validation score by more than the score's noise; --cycles is the most; --exact-cycles trains
them all; a resumed run keeps the decisions."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from fastai.callback.core import Callback, CancelFitException
from sklearn.metrics import roc_auc_score

from competitions import mnist
from kit.data.folds import split
from kit.data.loader import dataloaders
from kit.errors import KitError
from kit.recipe import Recipe, check, override
from kit.train import sgdr
from kit.train.finder import HEAD_LEAST
from kit.train.learner import make_learner
from kit.train.models import create_model
from kit.train.plan import Follow, Judge, Plan, said, standard_error
from kit.train.progress import Progress
from kit.train.sgdr import fine_tune_sgdr

NAMES = ["epoch", "train_loss", "valid_loss", "accuracy", "time"]


def judged(plan: Plan, scores: list, n: int = 1000, head=()) -> tuple[int, list]:
    """Feed one accuracy per epoch of the unfrozen stage to the rule (after the `head` stage's
    epochs), as a fit's callbacks see them; returns the epochs trained before the plan ended
    the stage, and the lines printed."""
    progress, lines = Progress(plan=plan), []
    progress.begin("head")
    for s in head:
        progress.end_epoch({"accuracy": s})
    progress.begin("all")
    recorder = SimpleNamespace(metric_names=NAMES, values=[])
    valid = SimpleNamespace(valid=SimpleNamespace(n=n))
    learn = SimpleNamespace(recorder=recorder, metrics=[SimpleNamespace(name="accuracy")],
                            cbs=[], dls=valid, n_epoch=len(scores))  # fmt: skip
    judge, follow = Judge(progress, "accuracy", "accuracy"), Follow(progress)
    judge.learn = follow.learn = learn
    for epoch, s in enumerate(scores):
        learn.epoch = epoch
        recorder.values.append([1.0, 1.0, s])
        plan_before = len(plan.decisions)
        judge.after_epoch()
        progress.end_epoch({"accuracy": s})
        if len(plan.decisions) > plan_before:
            lines.append(plan.decisions[-1])
        try:
            follow.after_epoch()
        except CancelFitException:
            break
    return progress.done("all"), lines


def test_a_stage_stops_at_the_end_of_a_cycle_that_gained_less_than_its_noise(capsys):
    plan = Plan(head_cycles=0, cycles=4, cycle_mult=1)
    # noise of 0.855 on 1,000 images: sqrt(s(1 - s) / 1000) = 1.12 points, s = 856/1002
    trained, decisions = judged(plan, [0.80, 0.85, 0.855, 0.90])
    assert trained == 3 and plan.stopped == {"all": 3} and plan.epochs("all") == 3
    assert [d["went_on"] for d in decisions] == [True, False]
    s = 856 / 1002  # one more image right and one more wrong
    assert decisions[1]["noise"] == pytest.approx(math.sqrt(s * (1 - s) / 1000))
    assert capsys.readouterr().out.splitlines() == [
        "unfrozen cycle 2 of 4 raised valid accuracy by 5.00 points, over its noise 1.13: going on",
        "unfrozen cycle 3 of 4 raised valid accuracy by 0.50 points, under its noise 1.12: "
        "stopping after 3 of 4 cycles",
    ]


def test_a_stage_s_first_cycle_always_goes_on_even_below_the_stage_before():
    """Unfreezing restarts the optimizer: the first unfrozen epoch often scores below the head
    (the Invasive sample's fell 0.25 AUC), and the cycles after it gain. Only a stage's later
    cycles are judged, against its own earlier ones."""
    plan = Plan(head_cycles=1, cycles=3, cycle_mult=1)
    trained, decisions = judged(plan, [0.70, 0.92, 0.95], head=[0.90])
    assert trained == 3 and plan.stopped == {}
    assert [(d["cycle"], d["went_on"]) for d in decisions] == [(2, True)]


def test_a_stage_goes_on_while_each_cycle_gains_more_than_its_noise():
    plan = Plan(head_cycles=0, cycles=3, cycle_mult=2)  # cycles end after epochs 1, 3 and 7
    trained, decisions = judged(plan, [0.5, 0.6, 0.7, 0.71, 0.72, 0.73, 0.8])
    assert trained == 7 and plan.stopped == {}
    assert [(d["cycle"], d["went_on"]) for d in decisions] == [(2, True)]  # the third is the last
    # 10 points in cycle 2: over the noise of 1,000 images (1.55), under that of 10 (15.5)
    slower = [0.5, 0.55, 0.6, 0.61, 0.62, 0.63, 0.65]
    assert judged(Plan(head_cycles=0, cycles=3), slower, n=1000)[0] == 7
    assert judged(Plan(head_cycles=0, cycles=3), slower, n=10)[0] == 3
    # the rule off (--exact-cycles): every cycle, whatever it gained
    exact = Plan(head_cycles=0, cycles=3, cycle_mult=1, adaptive=False)
    assert judged(exact, [0.5, 0.4, 0.3]) == (3, [])


def test_the_noise_of_each_kind_of_score():
    rng = np.random.default_rng(0)
    assert standard_error("accuracy", 0.9, 400) == pytest.approx(0.015, rel=0.02)
    # every image right: about one image's worth, not nought, so a stage that gets all of its
    # validation set right stops unless its last cycle set right more than about one image
    assert standard_error("accuracy", 1.0, 400) == pytest.approx(1 / 400, rel=0.01)
    y = np.r_[np.zeros(240, int), np.ones(360, int)]
    apart = np.stack([1 - y, y], 1).astype(float)  # every positive above every negative
    assert 1 / 600 < standard_error("auc", 1.0, 600, y, apart) < 3 / 600
    # AUC: Hanley-McNeil's standard error against a bootstrap of the same predictions
    y = rng.integers(0, 2, 600)
    p1 = np.clip(0.5 + (y - 0.5) * 0.3 + rng.normal(0, 0.25, len(y)), 0.01, 0.99)
    probs = np.stack([1 - p1, p1], 1)
    auc = roc_auc_score(y, p1)
    draws = [rng.integers(0, len(y), len(y)) for _ in range(300)]
    boot = np.std([roc_auc_score(y[i], p1[i]) for i in draws])
    assert standard_error("auc", auc, len(y), y, probs) == pytest.approx(boot, rel=0.3)
    # log loss: the spread of the images' own losses over sqrt(n)
    losses = -np.log(probs[np.arange(len(y)), y])
    assert standard_error("logloss", losses.mean(), len(y), y, probs) == pytest.approx(
        losses.std() / math.sqrt(len(y))
    )
    # lower is better: a gain is a loss lowered, said as it is, not in points
    decision = Plan(head_cycles=0, cycles=3).judge("all", 2, 0.01, 0.02)
    assert said(decision, "logloss", up=False) == (
        "unfrozen cycle 2 of 3 lowered valid logloss by 0.0100, under its noise 0.0200: "
        "stopping after 2 of 3 cycles"
    )


@pytest.fixture(scope="module")
def digits(mnist_sample):
    return mnist.load(mnist_sample, mnist.RECIPE)


def fitted(digits, folder, checkpoint=None, watch=None, **changes):
    """fine_tune_sgdr from scratch on the sample digits, 4 one-epoch cycles at most; `watch`, a
    callback added to the Learner."""
    r = override(mnist.RECIPE, **({"cycles": 4, "cycle_mult": 1, "bs": 128} | changes))
    folder.mkdir(exist_ok=True)
    torch.manual_seed(0)
    model = create_model(r.arch, 10, in_chans=1)
    valid = split(digits.y, 0.2, 0)[1]
    dls = dataloaders(digits, r, ([0.1], [0.3]), torch.device("cpu"), valid)
    learn = make_learner(model, dls, r, folder, "fp32")
    if watch is not None:
        learn.add_cb(watch)
    return fine_tune_sgdr(learn, r, folder, checkpoint=checkpoint)


class Sides(Callback):
    """The sides of the batches each fit trained and validated on."""

    def __init__(self):
        self.fits = []

    def before_fit(self):
        self.fits.append(set())

    def before_batch(self):
        self.fits[-1].add(self.xb[0].shape[-1])


def test_a_start_size_trains_small_then_a_final_cycle_at_the_full_size_and_keeps_that(
    digits, tmp_path
):
    """--start-size 16 on the 28 px digits (a timm network: it pools any size): the unfrozen
    cycles train and validate on batches shrunk to 16 px, then one final cycle of
    --final-epochs on everything at 28 px; the model kept is that cycle's (its score, at 28 px,
    is what validation gives after the fit), and predictions take 28 px batches."""
    seen = Sides()
    _, history, plan = fitted(digits, tmp_path, watch=seen, arch="resnet10t", lr=3e-3,
                              start_size=16, cycles=1, final_epochs=1, bs=256)  # fmt: skip
    assert [h["stage"] for h in history] == ["all", "final"]
    assert seen.fits == [{16}, {28}] and plan.final_epochs == 1
    learn = seen.learn
    assert learn.dls.train.size is learn.dls.valid.size is None
    assert learn.validate()[1] == pytest.approx(history[-1]["accuracy"])


def test_only_the_head_of_a_pretrained_network_has_a_least_rate(digits, tmp_path, monkeypatch):
    """The first finder run (the body frozen) is bounded below by HEAD_LEAST, the second (after
    the head stage, everything trainable) is not."""
    asked = []

    def find_lr(learn, png, rule, show=False, within=(0.0, math.inf)):
        asked.append((png.name, within))
        return min(max(1e-3, within[0]), within[1])

    monkeypatch.setattr(sgdr, "find_lr", find_lr)
    rates, _, _ = fitted(digits, tmp_path, arch="resnet10t", pretrained=True, head_cycles=1,
                         cycles=1, bs=256, lr_mult=100)  # fmt: skip
    assert asked == [("lr_find_frozen.png", (HEAD_LEAST, math.inf)), ("lr_find.png", (0, math.inf))]
    assert rates == {"head_lr": HEAD_LEAST, "lr": HEAD_LEAST / 2, "lr_low": 1e-3}


def test_a_body_rate_replaces_the_second_finder_run_and_stays_under_the_top(
    digits, tmp_path, monkeypatch
):
    """--body-lr: the first layer group learns at that rate once everything trains (at most
    the top layers' rate), and the finder runs once, on the frozen body only. From scratch
    there is no head stage: --no-refind keeps the finder's one run, and --body-lr is refused."""
    asked = []

    def find_lr(learn, png, rule, show=False, within=(0.0, math.inf)):
        asked.append(png.name)
        return max(within[0], 1e-3)

    monkeypatch.setattr(sgdr, "find_lr", find_lr)
    rates, _, plan = fitted(digits, tmp_path, arch="resnet10t", pretrained=True, head_cycles=1,
                            cycles=1, bs=256, body_lr=1e-3)  # fmt: skip
    assert asked == ["lr_find_frozen.png"] and not plan.finder
    assert rates == {"head_lr": HEAD_LEAST, "lr": HEAD_LEAST / 2, "lr_low": 1e-3}
    high = Recipe(name="t", slug="t", pretrained=True, body_lr=1.0)  # above the top: the top
    assert sgdr.unfrozen_rates(high, 0.0, HEAD_LEAST) == (HEAD_LEAST / 2, HEAD_LEAST / 2)
    asked.clear()
    rates, _, _ = fitted(digits, tmp_path / "scratch", cycles=1, refind=False)
    assert asked == ["lr_find.png"] and rates == {"lr": 1e-3, "lr_low": 1e-3}  # lr_mult 1
    with pytest.raises(KitError, match="--body-lr must be 0"):  # no head stage to follow
        check(override(mnist.RECIPE, body_lr=1e-3))


def test_a_real_fit_stops_where_a_cycle_gained_nothing_and_a_resume_keeps_that(digits, tmp_path):
    """At a rate too small to learn, cycle 2 gains nothing: the stage stops after 2 of the 4
    cycles; with --exact-cycles all 4 train; a run resumed from the last checkpoint, which
    holds the decision, trains nothing more."""
    _, history, plan = fitted(digits, tmp_path / "a", lr=1e-7)
    assert len(history) == 2 and plan.stopped == {"all": 2}
    assert plan.decisions[0]["cycle"] == 2 and not plan.decisions[0]["went_on"]
    saved = torch.load(tmp_path / "a" / "checkpoint.pth", weights_only=False)
    _, again, kept = fitted(digits, tmp_path / "a", checkpoint=saved, lr=1e-7)
    assert again == history and kept == plan
    _, history, plan = fitted(digits, tmp_path / "b", lr=1e-7, exact_cycles=True)
    assert len(history) == 4 and plan.decisions == []


def test_a_real_fit_that_learns_goes_on(digits, tmp_path):
    _, history, plan = fitted(digits, tmp_path, lr=3e-3)
    assert plan.decisions[0]["went_on"]  # a first cycle from random weights: the second gains
    assert 3 <= len(history) <= 4  # --cycles 4 is the most


def test_a_saved_plan_comes_back_whole():
    r = Recipe(name="t", slug="t", cycles=3)
    plan = Plan.of(r)
    assert (plan.head_cycles, plan.cycles, plan.adaptive) == (1, 3, True)
    assert not Plan.of(override(r, exact_cycles=True)).adaptive
    plan.stopped["all"] = 2
    progress = Progress(plan=plan)
    progress.begin("all")
    for _ in range(3):  # cycles end after epochs 1, 3
        progress.end_epoch({"accuracy": 0.5})
    again = Progress.from_saved(progress.saved())
    assert again == progress and again.finished(r, "accuracy")
    assert not Progress(plan=Plan.of(r)).finished(r, "accuracy", "all")


def test_tensorboard_logs_the_whole_schedule_on_one_step_axis(digits, tmp_path):
    """--log tensorboard: fastai's TensorBoardCallback, read back by TensorBoard's own event
    reader: the training loss at every training step of both stages (the head's fit, then the
    unfrozen one's, numbered on), the validation metric once an epoch."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    fitted(digits, tmp_path, lr=3e-3, head_cycles=1, cycles=1, log="tensorboard")
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    losses = [e.step for e in events.Scalars("train_loss")]
    accuracy = [e.step for e in events.Scalars("accuracy")]
    assert losses == list(range(1, len(losses) + 1))  # no step twice: the stages follow on
    assert len(accuracy) == 2 and accuracy[1] == 2 * accuracy[0] == losses[-1]


def test_tensorboard_without_its_package_is_one_line(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec

    def find_spec(name, *args):
        return None if name == "tensorboard" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(KitError, match="pip install tensorboard"):
        override(mnist.RECIPE, log="tensorboard")


class HeadNorm(Callback):
    """At each validation: the running mean of the network's first BatchNorm1d (the pretrained
    head's, on the pooled features), and the mean of its input over the training images with
    the weights of that moment (body in train mode, as the fit sees them; nothing updated)."""

    order = 90  # after the kit's callbacks have seen before_validate

    def __init__(self):
        self.seen = []

    def before_validate(self):
        model = self.learn.model
        norm = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d))
        running = norm.running_mean.clone()
        inputs = []
        hook = norm.register_forward_hook(lambda m, i, o: inputs.append(i[0].mean(0)))
        norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        momenta = [m.momentum for m in norms]
        model.train()
        try:
            with torch.no_grad():
                for m in norms:
                    m.momentum = 0.0  # batch statistics, running ones left as they are
                for xb, _ in self.dls.train.new(shuffle=False):
                    model(xb)
        finally:
            hook.remove()
            for m, v in zip(norms, momenta):
                m.momentum = v
            model.eval()
        self.seen.append((running, torch.stack(inputs).mean(0)))


def test_precise_bn_validates_with_the_training_data_s_norm_statistics(digits, tmp_path):
    """A pretrained head on 1,150 digits in batches of 256: 4 batches an epoch. With
    --precise-bn the head's batch-norm statistics at validation are recomputed from the training
    data; left to momentum 0.1 they are a third of the way from 0 to the features' own."""

    def gap(name: str, precise: bool) -> float:
        watch = HeadNorm()
        fitted(digits, tmp_path / name, watch=watch, arch="resnet10t", pretrained=True,
               head_cycles=1, cycles=0, lr=1e-3, bs=256, precise_bn=precise)  # fmt: skip
        ((running, truth),) = watch.seen
        return float((running - truth).norm() / truth.norm())

    assert gap("recomputed", True) < 0.15  # augmented batches against the plain images
    assert gap("running", False) > 0.4  # 1 - 0.9**4 = 0.34 of the way

"""The shared training pieces on the real sample digits: SGDR, augmentation, TTA, layer groups."""

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from fastai.callback.core import Callback, CancelFitException

from competitions import mnist
from kit.data.augment import affine, random_augment, tta_views
from kit.data.folds import split
from kit.data.loader import dataloaders
from kit.errors import KitError
from kit.recipe import override
from kit.train.callbacks import WeightAverage
from kit.train.learner import make_learner, resolve_precision
from kit.train.models import create_model, layer_groups
from kit.train.predict import view_probs
from kit.train.sgdr import fit_sgdr

# "It learned": chance is 0.1 (ten digits); the fp32 2-3 epoch trainings below scored 0.81-0.98
# (CutMix with EMA lowest) on a 2-core EPYC; another CPU moves them as another seed would
LEARNED = 0.5


@pytest.fixture(scope="module")
def digits(mnist_sample):
    return mnist.load(mnist_sample, mnist.RECIPE)


def learner(digits, tmp_path, **changes):
    r = override(mnist.RECIPE, **{"min_batches": 1, **changes})  # the batch as each test sets it
    torch.manual_seed(0)
    model = create_model(r.arch, 10, in_chans=1)
    dls = dataloaders(digits, r, ([0.1], [0.3]), torch.device("cpu"), split(digits.y, 0.2, 0)[1])
    return make_learner(model, dls, r, tmp_path, "fp32"), r


@pytest.mark.parametrize("n_cycles, cycle_len, cycle_mult, epochs", [(3, 1, 1, 3), (2, 1, 2, 3)])
def test_sgdr_restarts_at_every_cycle(digits, tmp_path, n_cycles, cycle_len, cycle_mult, epochs):
    learn, r = learner(digits, tmp_path, bs=64)
    learn.create_opt()
    history = fit_sgdr(learn, n_cycles, cycle_len, cycle_mult, 3e-3)
    assert len(history) == epochs
    lrs = np.array(learn.recorder.lrs)
    per_epoch = len(learn.dls.train)
    starts = np.cumsum([0] + [cycle_len * cycle_mult**i * per_epoch for i in range(n_cycles)])
    for start, end in zip(starts[:-1], starts[1:]):
        assert lrs[start] == pytest.approx(3e-3, rel=0.05)  # a restart at the top
        assert lrs[end - 1] < 3e-4  # annealed near zero by the cycle's end
    assert history[-1]["accuracy"] > LEARNED  # and it learned something


def test_a_cycle_the_plan_shortens_during_the_fit_anneals_by_its_new_end(digits, tmp_path):
    """The time limit may cut the last cycle after the first epoch: the rate reads the plan's
    ends at every step, so the shortened cycle still ends annealed (a schedule fixed when the
    fit began would stop at half the top rate)."""
    learn, _ = learner(digits, tmp_path, bs=256)
    learn.create_opt()
    ends = [1, 3]

    class Cut(Callback):
        def after_epoch(self):
            if self.epoch == 0:
                ends[-1] = 2  # the time plan, made after the first epoch
            elif self.epoch == 1:
                raise CancelFitException()  # Follow ends the stage at the plan's end

    fit_sgdr(learn, 2, 1, 2, 3e-3, [Cut()], ends=lambda: ends)
    lrs, per_epoch = np.array(learn.recorder.lrs), len(learn.dls.train)
    assert len(lrs) == 2 * per_epoch
    assert lrs[per_epoch] == pytest.approx(3e-3, rel=0.05)  # the second cycle's restart
    assert lrs[-1] < 0.25 * 3e-3  # near the end of a 1-epoch cycle (of a 2-epoch one: 0.69)


def test_discriminative_rates_span_the_three_groups(digits, tmp_path):
    learn, _ = learner(digits, tmp_path, bs=512)
    learn.create_opt()
    fit_sgdr(learn, 1, 1, 1, slice(1e-4, 1e-2))
    tops = [h["lr"] for h in learn.opt.hypers]
    assert len(layer_groups(learn.model)) == 3 and len(tops) == 3


def test_a_small_set_from_scratch_trains_on_batches_small_enough_for_16_steps_an_epoch(digits):
    """At the recipe's 128, the sample's 1,149 training digits would make 8 steps an epoch (and a
    few hundred, one): the batch shrinks, not under 8; validation and pretrained bodies keep
    theirs, and --min-batches 1 keeps the recipe's."""
    stats, valid = ([0.1], [0.3]), split(digits.y, 0.2, 0)[1]

    def loaders(n=1437, **changes):  # the whole sample
        r = override(mnist.RECIPE, **changes)
        part = replace(digits, x=digits.x[:n], y=digits.y[:n])
        return dataloaders(part, r, stats, torch.device("cpu"), valid[valid < n])

    dls = loaders()
    assert (dls.train.n, dls.train.bs, len(dls.train), dls.valid.bs) == (1149, 71, 16, 128)
    assert {xb.shape[0] for xb, _ in dls.train} == {71}
    assert loaders(pretrained=True).train.bs == loaders(min_batches=1).train.bs == 128
    assert loaders(min_batches=4).train.bs == 128  # 8 batches already
    assert loaders(n=100).train.bs == 8  # 82 images: 10 steps of the smallest batch


def test_split_is_stratified_and_seeded(digits):
    train, valid = split(digits.y, 0.1, seed=3)
    again, _ = split(digits.y, 0.1, seed=3)
    assert np.array_equal(train, again) and not set(train) & set(valid)
    share = np.bincount(digits.y[valid].numpy(), minlength=10) / len(valid)
    assert np.allclose(share, 0.1, atol=0.03)


def test_affine_identity_and_mirror(digits):
    x = digits.x[:8].float() / 255
    assert torch.allclose(affine(x, 0.0, 1.0, 0.0, 0.0, 0.0, "zeros"), x, atol=1e-5)
    assert torch.allclose(affine(x, 0.0, 1.0, 0.0, 0.0, 1.0, "zeros"), x.flip(-1), atol=1e-5)
    quarter = affine(x, math.pi / 2, 1.0, 0.0, 0.0, 0.0, "zeros")
    assert torch.allclose(quarter, x.rot90(1, (2, 3)), atol=1e-4) or torch.allclose(
        quarter, x.rot90(-1, (2, 3)), atol=1e-4
    )


def test_augmentation_changes_images_but_keeps_range(digits):
    x = digits.x[:64].float() / 255
    out = random_augment(x, mnist.RECIPE, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and not torch.allclose(out, x)
    assert 0 <= out.min() and out.max() <= 1


def test_tta_views_follow_the_recipe():
    assert len(tta_views(mnist.RECIPE)) == 1 + 1 + 2 + 4  # no mirror for digits
    assert len(tta_views(override(mnist.RECIPE, flip=True, shift=0.0))) == 1 + 1 + 1 + 2


def test_predict_averages_views_into_probabilities(digits, tmp_path):
    learn, r = learner(digits, tmp_path)
    views = view_probs(learn, learn.dls.valid, tta_views(r))
    probs = views.mean(0)  # the TTA prediction
    assert probs.shape == (learn.dls.valid.n, 10)
    assert np.allclose(probs.sum(1), 1, atol=1e-4)
    # TTA's first view is the image itself: the plain prediction, which it stands in for
    assert np.array_equal(views[0], view_probs(learn, learn.dls.valid)[0])


@pytest.mark.parametrize(
    "capability, asked, runs",
    [
        ((7, 5), "auto", "fp16"),  # a T4: PyTorch says it supports bf16, but emulates it
        ((7, 5), "bf16", "fp16"),
        ((7, 5), "fp32", "fp32"),
        ((8, 0), "auto", "bf16"),  # an A100
        ((8, 0), "fp16", "fp16"),
    ],
)
def test_cuda_runs_bf16_only_on_gpus_with_bf16_units(monkeypatch, capability, asked, runs):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_precision(asked, torch.device("cuda")) == runs


def test_fp16_is_fastai_s_mixed_precision_with_its_loss_scaler(digits, tmp_path):
    from fastai.callback.fp16 import AMPMode, MixedPrecision

    learn, r = learner(digits, tmp_path)
    fp16 = make_learner(learn.model, learn.dls, r, tmp_path, "fp16")
    (amp,) = [cb for cb in fp16.cbs if isinstance(cb, MixedPrecision)]
    assert amp.amp_mode == AMPMode.FP16  # fastai then scales the loss with a GradScaler


@pytest.mark.skipif(not torch.ops.mkldnn._is_mkldnn_bf16_supported(), reason="no bf16 on this CPU")
def test_bf16_autocast_trains_on_cpu(digits, tmp_path):
    r = override(mnist.RECIPE, bs=64)
    model = create_model(r.arch, 10, in_chans=1)
    dls = dataloaders(digits, r, ([0.1], [0.3]), torch.device("cpu"), split(digits.y, 0.2, 0)[1])
    learn = make_learner(model, dls, r, tmp_path, "bf16")
    learn.create_opt()
    history = fit_sgdr(learn, 1, 2, 1, 3e-3)
    assert history[-1]["accuracy"] > LEARNED
    assert all(p.dtype == torch.float32 for p in learn.model.parameters())  # weights stay fp32


def test_label_smoothing_and_mixup_train(digits, tmp_path):
    """Both tricks switched on: fastai's smoothed loss and MixUp callback, and it still learns."""
    from fastai.callback.mixup import MixUp
    from fastai.losses import LabelSmoothingCrossEntropyFlat

    learn, r = learner(digits, tmp_path, label_smoothing=0.1, mixup=0.4, bs=64)
    assert isinstance(learn.loss_func, LabelSmoothingCrossEntropyFlat)
    assert learn.loss_func.func.eps == 0.1
    assert any(isinstance(cb, MixUp) for cb in learn.cbs)
    learn.create_opt()
    history = fit_sgdr(learn, 1, 2, 1, 3e-3)
    assert history[-1]["accuracy"] > LEARNED


def test_cutmix_and_a_moving_average_of_the_weights_train(digits, tmp_path):
    """CutMix and the weight average switched on: it still learns, the weights validated and
    left in the model are the average's, and CutMix refuses to run with MixUp."""
    from fastai.callback.mixup import CutMix

    learn, r = learner(digits, tmp_path, cutmix=1.0, ema=0.99, bs=64)
    assert any(isinstance(cb, CutMix) for cb in learn.cbs)
    average = next(cb for cb in learn.cbs if isinstance(cb, WeightAverage))
    learn.lr_find(suggest_funcs=None, show_plot=False, num_it=20)
    assert not hasattr(average, "updates")  # the finder's fit is not averaged
    learn.create_opt()
    history = fit_sgdr(learn, 1, 2, 1, 3e-3)
    assert history[-1]["accuracy"] > LEARNED
    assert average.updates == 2 * len(learn.dls.train)  # one per step
    kept, averaged = learn.model.state_dict(), average.average.module.state_dict()
    assert all(torch.equal(kept[k], averaged[k]) for k in kept)
    with pytest.raises(KitError, match="--mixup must be 0 when --cutmix is on"):
        override(mnist.RECIPE, cutmix=1.0, mixup=0.4)

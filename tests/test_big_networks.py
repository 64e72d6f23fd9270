"""Big networks on small devices: gradient accumulation and clipping, drop path, layer-wise rate
decay; and the aspect-preserving resizes, pixel by pixel."""

import fastai.callback.schedule  # noqa: F401 (Learner.lr_find, as kit/train/finder.py has it)
import numpy as np
import pytest
import timm
import torch
from fastai.callback.core import Callback, CancelFitException
from fastai.callback.fp16 import MixedPrecision
from fastai.callback.training import GradientClip
from PIL import Image

from competitions import mnist
from kit.data.folds import split
from kit.data.images import cache_dir, load_photos
from kit.data.loader import dataloaders
from kit.data.photos import decode
from kit.data.stream import Files
from kit.errors import KitError
from kit.new import model_fields
from kit.recipe import override
from kit.train.callbacks import Accumulate
from kit.train.learner import make_learner
from kit.train.models import create_model
from kit.train.weights import pretrained_model


@pytest.fixture(scope="module")
def digits(mnist_sample):
    return mnist.load(mnist_sample, mnist.RECIPE)


def learner(digits, tmp_path, arch="digitnet", **changes):
    r = override(mnist.RECIPE, arch=arch, bs=16, **changes)
    torch.manual_seed(0)
    model = create_model(r.arch, 10, in_chans=1)
    dls = dataloaders(digits, r, ([0.1], [0.3]), torch.device("cpu"), split(digits.y, 0.2, 0)[1])
    return make_learner(model, dls, r, tmp_path, "fp32")


class Steps(Callback):
    """Counts the optimizer's steps and the gradient norm each step is given, and ends the fit
    after `batches` batches; notes whether any gradient was left when a fit began."""

    order = 90  # every other callback's before_fit first: Accumulate's zeroing included

    def __init__(self, batches: int):
        self.batches, self.norms, self.stale = batches, [], False

    def before_fit(self):
        self.seen, step = 0, self.learn.opt.step
        self.stale |= any(p.grad is not None and p.grad.any() for p in self.model.parameters())

        def counted():
            grads = [p.grad.norm() for p in self.model.parameters() if p.grad is not None]
            self.norms.append(float(torch.stack(grads).norm()))
            step()

        self.learn.opt.step = counted

    def after_fit(self):
        del self.learn.opt.step  # fastai's own again

    def after_batch(self):
        self.seen += 1
        if self.training and self.seen >= self.batches:
            raise CancelFitException()


def test_accumulation_steps_once_per_accumulate_batches_and_the_finder_every_batch(
    digits, tmp_path
):
    plain, accumulated = Steps(12), Steps(12)
    learner(digits, tmp_path).fit(1, 1e-3, cbs=[plain])
    learn = learner(digits, tmp_path, accumulate=4)
    learn.fit(1, 1e-3, cbs=[accumulated])
    assert len(plain.norms) == 12 and len(accumulated.norms) == 3
    # the finder's sweep is a step a batch, as its length and the time limit count it
    finder = Steps(100)
    with learn.added_cbs([finder]):
        learn.lr_find(1e-5, 1e-1, num_it=10, stop_div=False, suggest_funcs=None, show_plot=False)
    assert len(finder.norms) == len(learn.recorder.losses) == 10
    # what a fit leaves unstepped (batches 13-14 of 4-batch steps) never reaches the next fit
    learn.fit(1, 1e-3, cbs=[Steps(14)])
    later = Steps(4)
    learn.fit(1, 1e-3, cbs=[later])
    assert not later.stale and len(later.norms) == 1


def test_clipping_caps_the_gradient_norm_each_step_takes(digits, tmp_path):
    free, clipped = Steps(4), Steps(4)
    learner(digits, tmp_path).fit(1, 1e-3, cbs=[free])
    learner(digits, tmp_path, clip=0.05).fit(1, 1e-3, cbs=[clipped])
    assert min(free.norms) > 0.1  # a new network's gradients: well above the cap
    assert max(clipped.norms) <= 0.05 * 1.001
    # with fp16 (a GPU): a batch that only accumulates skips before the loss scaler steps, and
    # clipping comes after the scaler has unscaled the gradients (fastai's orders)
    assert Accumulate.order < MixedPrecision.order < GradientClip.order


def drop_rates(model: torch.nn.Module) -> list[float]:
    return [m.drop_prob for m in model.modules() if isinstance(m, timm.layers.DropPath)]


def test_drop_path_gives_a_timm_network_stochastic_depth(tmp_path):
    assert drop_rates(create_model("resnet10t", 2, 3)) == []
    rates = drop_rates(create_model("resnet10t", 2, 3, drop_path=0.2))
    assert rates and max(rates) == pytest.approx(0.2)  # timm's rule: rising to it, block by block
    # and with weights loaded from a file, as a pretrained run builds it
    torch.save(timm.create_model("resnet10t").state_dict(), tmp_path / "r10.pth")
    model = pretrained_model("resnet10t", 2, 3, tmp_path / "r10.pth", drop_path=0.2)
    assert max(drop_rates(model)) == pytest.approx(0.2)
    with pytest.raises(KitError, match="digitnet has no drop path"):
        create_model("digitnet", 2, 1, drop_path=0.1)
    with pytest.raises(KitError, match="dla34 has no drop path"):  # a timm CNN without one
        create_model("dla34", 2, 3, drop_path=0.1)


def test_layer_decay_gives_each_layer_a_decayed_share_of_the_rate_above(digits, tmp_path):
    three = learner(digits, tmp_path, arch="resnet10t")
    three.create_opt()
    assert len(three.opt.param_lists) == 3
    learn = learner(digits, tmp_path, arch="resnet10t", layer_decay=0.5)
    learn.create_opt()
    groups = learn.opt.param_lists
    assert len(groups) >= 6  # stem, four stages' blocks, head
    ids = [id(p) for g in groups for p in g]
    assert sorted(ids) == sorted(id(p) for p in learn.model.parameters())  # each once
    learn.opt.set_hyper("lr", slice(1e-6, 1e-2))  # as the house schedule sets the unfrozen rates
    rates = [h["lr"] for h in learn.opt.hypers]
    n = len(rates)
    assert rates == pytest.approx([1e-2 * 0.5 ** (n - 1 - i) for i in range(n)])
    learn.opt.set_hyper("lr", np.array(rates) / 2)  # a scheduler's step: as given
    assert [h["lr"] for h in learn.opt.hypers] == pytest.approx([v / 2 for v in rates])
    # a kit network: a group per block of its body
    own = learner(digits, tmp_path, layer_decay=0.5)
    own.create_opt()
    assert len(own.opt.param_lists) == 6  # five conv blocks and the head


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    """40 x 20: the left quarter red, the rest blue."""
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :10] = (255, 0, 0)
    pixels[:, 10:] = (0, 0, 255)
    path = tmp_path_factory.mktemp("wide") / "wide.png"
    Image.fromarray(pixels).save(path)
    return path


RED, BLUE, BLACK = (255, 0, 0), (0, 0, 255), (0, 0, 0)


def close(pixel, colour) -> bool:
    return bool(np.abs(pixel.astype(int) - colour).max() <= 40)


def test_each_resize_gives_the_pixels_it_promises(wide):
    squash = decode(wide, 8, 3)
    assert close(squash[4, 0], RED) and close(squash[4, 7], BLUE)  # the red quarter, squashed
    assert not any(close(p, BLACK) for p in squash.reshape(-1, 3))
    pad = decode(wide, 8, 3, "pad")  # the whole image, 8 x 4, on black rows above and below
    assert all(close(p, BLACK) for p in pad[[0, 1, 6, 7]].reshape(-1, 3))
    assert close(pad[3, 0], RED) and close(pad[3, 7], BLUE)
    crop = decode(wide, 8, 3, "crop")  # the centre square: columns 10-30, all blue
    assert all(close(p, BLUE) for p in crop.reshape(-1, 3))


def test_the_cache_and_the_stream_keep_each_resize_apart(wide, tmp_path):
    folder = wide.parent
    assert cache_dir(folder, 8).name == "8px"  # squash: the caches built before stay valid
    assert len({cache_dir(folder, 8, 3, m) for m in ("squash", "pad", "crop")}) == 3
    for mode in ("squash", "pad"):
        x, _ = load_photos([wide], cache_dir(folder, 8, 3, mode), 8, "train", 3, mode)
        assert np.array_equal(x[0].permute(1, 2, 0).numpy(), decode(wide, 8, 3, mode))
        streamed, _ = Files([wide], 8, 3, mode)[0]  # `kit predict` reads as training did
        assert np.array_equal(streamed, decode(wide, 8, 3, mode))


def test_kit_new_proposes_a_larger_size_for_large_photos_in_the_comment():
    large = model_fields(900, False, "900x700 colour", 500)["size"]
    assert large[0] == 224 and "--size 320" in large[1]  # proposed, not set
    assert "--size" not in (model_fields(300, False, "300x300 colour", 500)["size"][1] or "")

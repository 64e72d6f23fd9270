"""Each augmentation field changes the batch as it says: the tests look at the pixels."""

import math

import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_sample_images

from competitions import mnist
from kit.data.augment import YIQ, dihedral, random_augment, tta_views
from kit.errors import KitError
from kit.recipe import Recipe, override

# every older trick off, so that a test sees only the one it switches on
PLAIN = Recipe(name="t", slug="t", rotate=0.0, zoom=1.0, shift=0.0, flip=False, lighting=0.0)


@pytest.fixture(scope="module")
def photos() -> torch.Tensor:
    """32 crops of 32 px from scikit-learn's two real photos, in [0, 1]."""
    crops = []
    for img in load_sample_images().images:
        t = torch.tensor(img).permute(2, 0, 1).float() / 255
        crops += [t[:, i : i + 128, j : j + 128] for i in (0, 150, 290) for j in (0, 200, 400)]
    x = F.interpolate(torch.stack(crops), size=32, mode="area")
    return torch.cat([x, x.flip(0)])[:32].contiguous()


def symmetries(im: torch.Tensor) -> list[torch.Tensor]:
    """The 8 images a square image becomes under turns by 90 degrees and mirrors."""
    turns = [im.rot90(k, (-2, -1)) for k in range(4)]
    return turns + [t.flip(-1) for t in turns]


def augment(x, seed=0, **fields):
    return random_augment(x.clone(), override(PLAIN, **fields), torch.Generator().manual_seed(seed))


def test_dihedral_gives_one_of_the_eight_symmetries_pixel_exact(photos):
    out = augment(photos, dihedral=True)
    found = []
    for im, new in zip(photos, out):
        same = [i for i, s in enumerate(symmetries(im)) if torch.equal(s, new)]
        assert same, "not a symmetry of its image"
        found.append(same[0])
    assert len(set(found)) >= 6  # every image draws its own, of the 8


def test_dihedral_function_numbers_all_eight(photos):
    views = [dihedral(photos[:1], k)[0] for k in range(8)]
    assert torch.equal(views[0], photos[0])
    assert len({v.numpy().tobytes() for v in views}) == 8
    assert all(any(torch.equal(v, s) for s in symmetries(photos[0])) for v in views)


def ramps(n=64, side=32) -> torch.Tensor:
    """Channel 0 rises left to right, channel 1 top to bottom, 0 to 1: a crop reads off them."""
    line = (torch.arange(side) + 0.5) / side
    return torch.stack([line.expand(side, side), line.view(-1, 1).expand(side, side)]).expand(
        n, 2, side, side
    )


def test_random_resized_crop_keeps_a_share_of_the_area_and_an_aspect_within_range():
    x = ramps()
    out = augment(x, crop_scale=0.3, crop_ratio=1.5)
    # the ramps' slope inside the image is the crop's width (height) as a share of the side
    w = (out[:, 0, 16, 28] - out[:, 0, 16, 4]) / (x[0, 0, 16, 28] - x[0, 0, 16, 4])
    h = (out[:, 1, 28, 16] - out[:, 1, 4, 16]) / (x[0, 1, 28, 16] - x[0, 1, 4, 16])
    area, aspect = w * h, w / h
    assert (area >= 0.3 - 1e-3).all() and (area <= 1 + 1e-3).all()
    assert (aspect >= 1 / 1.5 - 1e-3).all() and (aspect <= 1.5 + 1e-3).all()
    assert area.min() < 0.45 and aspect.max() > 1.2 and aspect.min() < 0.85  # the ranges are used
    assert (out >= x.min() - 1e-5).all() and (out <= x.max() + 1e-5).all()  # inside the image


def test_random_erasing_fills_one_rectangle_and_leaves_the_rest():
    x = torch.full((64, 3, 32, 32), 0.5)
    out = augment(x, erase=1.0)
    for new in out:
        changed = (new != 0.5).any(0)
        rows, cols = changed.any(1).nonzero().flatten(), changed.any(0).nonzero().flatten()
        box = changed[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
        assert box.all()  # a full rectangle of noise, nothing changed outside it
        assert 0.015 <= changed.float().mean() <= 0.34
        assert new[:, changed].std() > 0.2  # noise, not a flat colour
    half = augment(x, erase=0.5)
    erased = (half != 0.5).flatten(1).any(1).float().mean()
    assert 0.25 < erased < 0.75


def yiq(x):
    return torch.einsum("ij,njhw->nihw", YIQ, x)


def test_saturation_scales_chroma_and_hue_turns_it_keeping_luminance(photos):
    x = 0.35 + 0.3 * photos  # mid-range, so that no pixel is clamped
    for fields in ({"saturation": 0.5}, {"hue": 0.25}):
        out, before = yiq(augment(x, **fields)), yiq(x)
        assert torch.allclose(out[:, 0], before[:, 0], atol=1e-4)  # luminance kept
        a, b = torch.complex(before[:, 1], before[:, 2]), torch.complex(out[:, 1], out[:, 2])
        a, b = a.flatten(1), b.flatten(1)
        c = (a.conj() * b).sum(1) / (a.abs() ** 2).sum(1)  # per image: one scale and one turn
        assert (b - c[:, None] * a).abs().max() < 1e-4  # the same for every pixel
        scale, turn = c.abs(), c.angle()
        if "saturation" in fields:
            assert (scale >= 0.5 - 1e-2).all() and (scale <= 1.5 + 1e-2).all()
            assert scale.max() - scale.min() > 0.3 and turn.abs().max() < 1e-2
        else:
            assert torch.allclose(scale, torch.ones_like(scale), atol=1e-2)
            assert turn.abs().max() <= math.pi / 2 + 1e-2 and turn.abs().max() > 0.5
    grey = photos[:, :1]
    assert torch.equal(augment(grey, saturation=0.5, hue=0.2), grey)


@pytest.mark.parametrize("policy", ["trivial", "rand"])
def test_auto_augment_changes_each_image_its_own_way_and_is_seeded(photos, policy):
    state = torch.get_rng_state()
    out = augment(photos, auto_augment=policy)
    assert torch.equal(state, torch.get_rng_state())  # torch's own generator untouched
    assert out.shape == photos.shape and 0 <= out.min() and out.max() <= 1
    changed = (out - photos).flatten(1).abs().amax(1) > 1e-3
    assert changed.float().mean() > 0.5
    assert torch.equal(out, augment(photos, auto_augment=policy))
    assert not torch.equal(out, augment(photos, seed=1, auto_augment=policy))
    grey = augment(photos[:, :1], auto_augment=policy)
    assert grey.shape == photos[:, :1].shape


def test_tricks_together_keep_the_range_and_the_default_path_is_unchanged(photos):
    r = override(Recipe(name="t", slug="t"), dihedral=True, crop_scale=0.35, erase=0.25,
                 saturation=0.3, hue=0.05)  # fmt: skip
    out = random_augment(photos.clone(), r, torch.Generator().manual_seed(0))
    assert out.shape == photos.shape and 0 <= out.min() and out.max() <= 1
    # no new field on: the draws and the images of the affine path as before the new fields
    a = random_augment(photos.clone(), mnist.RECIPE, torch.Generator().manual_seed(3))
    b = random_augment(photos.clone(), override(mnist.RECIPE), torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_tta_views_with_dihedral_are_the_eight_symmetries_first_the_image(photos):
    r = override(mnist.RECIPE, dihedral=True)
    views = tta_views(r)
    assert len(views) == 8 + 1 + 2 + 4  # the symmetries, then zoom, tilts and shifts as before
    im = photos[:1]
    assert torch.equal(views[0](im), im)  # TTA's first view is the plain prediction
    eight = [v(im)[0] for v in views[:8]]
    assert len({v.numpy().tobytes() for v in eight}) == 8
    assert all(any(torch.equal(v, s) for s in symmetries(im[0])) for v in eight)
    assert len(tta_views(override(PLAIN, crop_scale=0.35))) == 2  # the image, a zoom in


@pytest.mark.parametrize(
    "field, value, says",
    [
        ("crop_scale", 1.5, "--crop-scale must be between 0 (off) and 1"),
        ("crop_ratio", 0.5, "--crop-ratio must be at least 1"),
        ("erase", -0.1, "--erase must be between 0 and 1"),
        ("hue", 0.7, "--hue must be between 0 and 0.5"),
        ("auto_augment", "auto", "--auto-augment must be '' (off), trivial or rand"),
        ("start_size", 224, "--start-size must be 0 (off), or at least 8 pixels and under --size"),
        ("final_epochs", 0, "--final-epochs must be at least 1"),
    ],
)
def test_bad_augmentation_values_are_one_line(field, value, says):
    with pytest.raises(KitError, match=says.replace("(", r"\(").replace(")", r"\)")):
        override(PLAIN, **{field: value})


def skewed_learner(tmp_path, **fields):
    """A learner on 200 labels of three classes in shares 70/20/10 (pixels do not matter)."""
    from fastai.data.core import DataLoaders

    from kit.data.loader import TensorLoader
    from kit.train.learner import make_learner

    y = torch.tensor([0] * 140 + [1] * 40 + [2] * 20)
    x = torch.zeros(len(y), 1, 8, 8, dtype=torch.uint8)
    dl = TensorLoader(x, y, 32, ([0.5], [0.5]), rows=torch.arange(20, 200))  # 120/40/20
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))
    r = override(PLAIN, **fields)
    return make_learner(model, DataLoaders(dl, dl), r, tmp_path, "fp32")


@pytest.mark.parametrize(
    "fields, weighted",
    [
        ({"metric": "f1_macro"}, True),  # auto: every class counts alike in the metric
        ({"metric": "accuracy"}, False),
        ({"metric": "auc", "balance": "weights"}, True),
        ({"metric": "f1_macro", "balance": "none"}, False),
        ({"metric": "f1_macro", "label_smoothing": 0.1}, True),
    ],
)
def test_balance_weights_each_class_by_the_inverse_of_its_share(tmp_path, fields, weighted):
    learn = skewed_learner(tmp_path, **fields)
    out, y = (
        torch.randn(6, 3, generator=torch.Generator().manual_seed(0)),
        torch.tensor([0, 0, 1, 1, 2, 2]),
    )
    w = torch.tensor([180 / (3 * 120), 180 / (3 * 40), 180 / (3 * 20)]) if weighted else None
    eps = fields.get("label_smoothing", 0.0)
    want = F.cross_entropy(out, y, weight=w) if not eps else None
    if eps:  # fastai's smoothing: eps spread over the classes, the rest on the weighted target
        lp = out.log_softmax(1)
        want = eps * (-lp.sum(1)).mean() / 3 + (1 - eps) * F.nll_loss(lp, y, weight=w)
    assert torch.allclose(learn.loss_func(out, y), want, rtol=1e-4)


def test_a_loader_with_a_start_size_shrinks_each_batch_averaging_as_the_cache_does():
    """--start-size: batches shrunk on the device from the cached size. Every 4th column lit
    (255, 0, 0, 0, 255...) shrunk 4 times averages to a quarter lit inside the image; sampling
    without averaging (plain bilinear) would read between the dark columns: 0."""
    from kit.data.loader import TensorLoader

    x = torch.zeros(6, 3, 32, 32, dtype=torch.uint8)
    x[..., ::4] = 255
    dl = TensorLoader(x, torch.zeros(6, dtype=torch.long), 4, ([0.0] * 3, [1 / 255] * 3))
    assert next(iter(dl))[0].shape == (4, 3, 32, 32)  # unset: the cached size
    dl.size = 8
    batches = [xb for xb, _ in dl]
    assert [b.shape for b in batches] == [(4, 3, 8, 8), (2, 3, 8, 8)]
    inner = torch.cat(batches)[..., 1:-1]  # the edges average fewer columns
    assert torch.allclose(inner, torch.full_like(inner, 255 / 4), atol=1e-3)
    assert F.interpolate(x[:1].float(), size=8, mode="bilinear")[..., 1:-1].max() == 0

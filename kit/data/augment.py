"""Augmentation and test-time augmentation on whole batches of float images in [0, 1], on the
device the batch is on. Each trick is a recipe field; every image draws its own."""

import math

import torch
import torch.nn.functional as F

from kit.recipe import Recipe

# RGB to YIQ: Y is the luminance, (I, Q) the chroma plane that hue turns and saturation scales
YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
ERASE_AREA, ERASE_ASPECT = (0.02, 1 / 3), 3.3  # torchvision's RandomErasing defaults


def affine_theta(angle, scale, dx, dy, flip, n: int, device) -> torch.Tensor:
    """The (N, 2, 3) matrices of affine(): output coordinates to input coordinates."""
    full = [
        torch.as_tensor(v, dtype=torch.float32, device=device).expand(n)
        for v in (angle, scale, dx, dy, flip)
    ]
    angle, scale, dx, dy, flip = full
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    mirror = 1 - 2 * flip  # -1 mirrors the x axis
    return torch.stack(
        [
            torch.stack([cos * mirror, -sin, 2 * dx], 1),
            torch.stack([sin * mirror, cos, 2 * dy], 1),
        ],
        1,
    )


def warp(x: torch.Tensor, theta: torch.Tensor, pad_mode: str) -> torch.Tensor:
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=pad_mode, align_corners=False)


def affine(x: torch.Tensor, angle, scale, dx, dy, flip, pad_mode: str) -> torch.Tensor:
    """Rotate (radians), zoom in by `scale`, shift (fractions of the side) and mirror each image.

    Every argument after `x` is a tensor of shape (N,) or a float shared by the batch.
    """
    return warp(x, affine_theta(angle, scale, dx, dy, flip, x.shape[0], x.device), pad_mode)


def crop_theta(theta: torch.Tensor, w, h, cx, cy) -> torch.Tensor:
    """`theta` looking into the crop of width `w`, height `h` (fractions of the side) centred at
    (cx, cy) (in [-1, 1]) instead of the whole image: a random resized crop in the same warp."""
    lin = torch.stack([w, h], 1).unsqueeze(2)  # scales the rows of the map
    centre = torch.stack([cx, cy], 1).unsqueeze(2)
    return torch.cat([theta[:, :, :2] * lin, theta[:, :, 2:] * lin + centre], 2)


def dihedral(x: torch.Tensor, k) -> torch.Tensor:
    """The dihedral symmetry number `k` (0-7, a tensor (N,) or an int) of each square image:
    bit 0 transposes, bit 1 mirrors left-right, bit 2 upside down; pixels are moved, never
    resampled."""
    k = torch.as_tensor(k, device=x.device).expand(x.shape[0]).view(-1, 1, 1, 1)
    x = torch.where(k % 2 == 1, x.transpose(-1, -2), x)
    x = torch.where(k // 2 % 2 == 1, x.flip(-1), x)
    return torch.where(k // 4 == 1, x.flip(-2), x)


def colour(x: torch.Tensor, saturation, hue) -> torch.Tensor:
    """Scale each image's chroma by `saturation` and turn its hue by `hue` (fractions of the
    colour wheel), keeping its luminance: one 3x3 matrix per image, in YIQ."""
    angle = torch.as_tensor(hue, device=x.device) * 2 * math.pi
    s = torch.as_tensor(saturation, dtype=torch.float32, device=x.device)
    cos, sin = torch.cos(angle) * s, torch.sin(angle) * s
    one, zero = torch.ones_like(cos), torch.zeros_like(cos)
    turn = torch.stack([one, zero, zero, zero, cos, -sin, zero, sin, cos], -1).view(-1, 3, 3)
    yiq = YIQ.to(x.device)
    m = torch.linalg.inv(yiq) @ turn @ yiq
    return torch.einsum("nij,njhw->nihw", m, x).clamp_(0, 1)


def erase(x: torch.Tensor, r: Recipe, gen: torch.Generator) -> torch.Tensor:
    """With probability r.erase, a rectangle of each image (2-33% of its area, aspect up to 3.3
    either way) filled with uniform noise."""
    n, _, height, width = x.shape
    u = torch.rand(5, n, generator=gen)
    area = ERASE_AREA[0] + u[0] * (ERASE_AREA[1] - ERASE_AREA[0])
    aspect = torch.exp((2 * u[1] - 1) * math.log(ERASE_ASPECT))
    h = (area * aspect).sqrt().clamp(max=1) * height
    w = (area / aspect).sqrt().clamp(max=1) * width
    top, left = (u[2] * (height - h)).long(), (u[3] * (width - w)).long()
    bottom, right = top + h.long().clamp(min=1), left + w.long().clamp(min=1)
    on = u[4] < r.erase
    rows, cols = torch.arange(height).view(1, -1, 1), torch.arange(width).view(1, 1, -1)
    box = (rows >= top.view(-1, 1, 1)) & (rows < bottom.view(-1, 1, 1))
    box = box & (cols >= left.view(-1, 1, 1)) & (cols < right.view(-1, 1, 1)) & on.view(-1, 1, 1)
    noise = torch.rand(x.shape, generator=device_generator(x.device, gen), device=x.device)
    return torch.where(box.unsqueeze(1).to(x.device), noise, x)


def device_generator(device, gen: torch.Generator) -> torch.Generator:
    """A generator on `device` seeded from `gen`, so noise is drawn where the batch is."""
    return torch.Generator(device).manual_seed(int(torch.randint(2**62, (1,), generator=gen)))


def auto_augment(x: torch.Tensor, policy: str, gen: torch.Generator) -> torch.Tensor:
    """torchvision's TrivialAugment (one random operation of random strength) or RandAugment
    (two, of strength 9 in 31) on each image; seeded from `gen`."""
    from torchvision.transforms import v2

    op = v2.TrivialAugmentWide() if policy == "trivial" else v2.RandAugment()
    with torch.random.fork_rng(devices=[]):  # torchvision draws from torch's global generator
        torch.manual_seed(int(torch.randint(2**62, (1,), generator=gen)))
        return torch.stack([op(im) for im in x])


def random_augment(x: torch.Tensor, r: Recipe, gen: torch.Generator) -> torch.Tensor:
    """The recipe's training augmentation, drawn independently for every image."""
    n = x.shape[0]

    def uniform(lo, hi):
        return torch.rand(n, generator=gen).mul_(hi - lo).add_(lo).to(x.device)

    angle = uniform(-1, 1) * math.radians(r.rotate)
    scale = torch.exp(uniform(-math.log(r.zoom), math.log(r.zoom)))
    dx, dy = uniform(-r.shift, r.shift), uniform(-r.shift, r.shift)
    flip = (torch.rand(n, generator=gen) < 0.5).float().to(x.device) if r.flip else 0.0
    theta = affine_theta(angle, scale, dx, dy, flip, n, x.device)
    if r.crop_scale:  # the share of the area, then the aspect, then where
        area = uniform(r.crop_scale, 1)
        aspect = torch.exp(uniform(-math.log(r.crop_ratio), math.log(r.crop_ratio)))
        w, h = (area * aspect).sqrt().clamp(max=1), (area / aspect).sqrt().clamp(max=1)
        theta = crop_theta(theta, w, h, uniform(-1, 1) * (1 - w), uniform(-1, 1) * (1 - h))
    if r.rotate or r.zoom > 1 or r.shift or r.flip or r.crop_scale:
        x = warp(x, theta, r.pad_mode)
    if r.dihedral:
        x = dihedral(x, torch.randint(8, (n,), generator=gen).to(x.device))
    if r.auto_augment:
        x = auto_augment(x, r.auto_augment, gen)
    if r.lighting:
        contrast = uniform(1 - r.lighting, 1 + r.lighting).view(-1, 1, 1, 1)
        brightness = uniform(-r.lighting / 2, r.lighting / 2).view(-1, 1, 1, 1)
        x = ((x - 0.5) * contrast + 0.5 + brightness).clamp_(0, 1)
    if (r.saturation or r.hue) and x.shape[1] == 3:
        x = colour(x, uniform(1 - r.saturation, 1 + r.saturation), uniform(-r.hue, r.hue))
    if r.erase:
        x = erase(x, r, gen)
    return x


def tta_views(r: Recipe) -> list:
    """Deterministic views averaged at test time: the image (with dihedral training, its eight
    symmetries), a mirror if flips are allowed, and half-strength zoom (or crop), rotations and
    shifts."""
    half_angle, half_zoom, step = math.radians(r.rotate / 2), math.sqrt(r.zoom), r.shift / 2

    def view(angle=0.0, scale=1.0, dx=0.0, dy=0.0, flip=0.0):
        return lambda x: affine(x, angle, scale, dx, dy, flip, r.pad_mode)

    if r.dihedral:  # the first view stays the image itself: TTA's first view is the plain one
        views = [lambda x, k=k: dihedral(x, k) for k in range(8)]
    else:
        views = [lambda x: x] + ([view(flip=1.0)] if r.flip else [])
    if r.zoom > 1:
        views.append(view(scale=half_zoom))
    if r.crop_scale:  # a crop of the mean area makes things look bigger: zoom in half as far
        views.append(view(scale=(2 / (1 + r.crop_scale)) ** 0.25))
    if r.rotate:
        views += [view(angle=half_angle), view(angle=-half_angle)]
    if r.shift:
        views += [view(dx=step), view(dx=-step), view(dy=step), view(dy=-step)]
    return views

"""Augmentation and test-time augmentation on whole batches of float images in [0, 1]."""

import math

import torch
import torch.nn.functional as F

from kit.recipe import Recipe


def affine(x: torch.Tensor, angle, scale, dx, dy, flip, pad_mode: str) -> torch.Tensor:
    """Rotate (radians), zoom in by `scale`, shift (fractions of the side) and mirror each image.

    Every argument after `x` is a tensor of shape (N,) or a float shared by the batch.
    """
    n = x.shape[0]
    full = [
        torch.as_tensor(v, dtype=torch.float32, device=x.device).expand(n)
        for v in (angle, scale, dx, dy, flip)
    ]
    angle, scale, dx, dy, flip = full
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    mirror = 1 - 2 * flip  # -1 mirrors the x axis
    theta = torch.stack(
        [
            torch.stack([cos * mirror, -sin, 2 * dx], 1),
            torch.stack([sin * mirror, cos, 2 * dy], 1),
        ],
        1,
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=pad_mode, align_corners=False)


def random_augment(x: torch.Tensor, r: Recipe, gen: torch.Generator) -> torch.Tensor:
    """The recipe's training augmentation, drawn independently for every image."""
    n = x.shape[0]

    def uniform(lo, hi):
        return torch.rand(n, generator=gen).mul_(hi - lo).add_(lo).to(x.device)

    angle = uniform(-1, 1) * math.radians(r.rotate)
    scale = torch.exp(uniform(-math.log(r.zoom), math.log(r.zoom)))
    dx, dy = uniform(-r.shift, r.shift), uniform(-r.shift, r.shift)
    flip = (torch.rand(n, generator=gen) < 0.5).float().to(x.device) if r.flip else 0.0
    x = affine(x, angle, scale, dx, dy, flip, r.pad_mode)
    if r.lighting:
        contrast = uniform(1 - r.lighting, 1 + r.lighting).view(-1, 1, 1, 1)
        brightness = uniform(-r.lighting / 2, r.lighting / 2).view(-1, 1, 1, 1)
        x = ((x - 0.5) * contrast + 0.5 + brightness).clamp_(0, 1)
    return x


def tta_views(r: Recipe) -> list:
    """Deterministic views averaged at test time: the image, a mirror if flips are allowed,
    and half-strength zoom, rotations and shifts."""
    half_angle, half_zoom, step = math.radians(r.rotate / 2), math.sqrt(r.zoom), r.shift / 2

    def view(angle=0.0, scale=1.0, dx=0.0, dy=0.0, flip=0.0):
        return lambda x: affine(x, angle, scale, dx, dy, flip, r.pad_mode)

    views = [lambda x: x]
    if r.flip:
        views.append(view(flip=1.0))
    if r.zoom > 1:
        views.append(view(scale=half_zoom))
    if r.rotate:
        views += [view(angle=half_angle), view(angle=-half_angle)]
    if r.shift:
        views += [view(dx=step), view(dx=-step), view(dy=step), view(dy=-step)]
    return views

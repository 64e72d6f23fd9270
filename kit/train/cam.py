"""Grad-CAM: where a network looks when it names a class (the seed's "inside the black box").
The map is the feature map that the head pools, weighted by the gradient of the class's logit
(Selvaraju et al., 2017), read through fastai's hooks. A vision transformer's head takes pooled
tokens, not a map: it gets no Grad-CAM."""

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from fastai.callback.hook import Hook
from torch import nn

from kit.data.loader import model_input
from kit.recipe import Recipe
from kit.train.models import head
from kit.train.saved import load_models

BATCH = 32  # images per forward and backward pass: a few dozen are mapped per run


def grad_cam(net: nn.Module, layer: nn.Module, x: torch.Tensor, targets) -> torch.Tensor | None:
    """One map per image of the network input `x`, at its size and scaled to a peak of 1, for the
    class `targets[i]`; `layer` is the module whose input is the map (the head). None when that
    input has no two spatial dimensions (a vision transformer's tokens) or is 1x1 (a CNN on
    images small enough to pool down to one position)."""
    targets = torch.as_tensor(targets, device=x.device).long()
    with Hook(layer, lambda m, i, o: i[0], detach=False) as features, torch.enable_grad():
        logits = net(x)
        fmap = features.stored
        if fmap.ndim != 4 or fmap.shape[2] * fmap.shape[3] < 2:
            return None
        (grads,) = torch.autograd.grad(logits.float().gather(1, targets[:, None]).sum(), fmap)
    weights = grads.float().mean((2, 3), keepdim=True)  # each channel's pull on the class
    cam = F.relu((weights * fmap.detach().float()).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    return cam / cam.flatten(1).amax(1).clamp_min(1e-12)[:, None, None]


def run_maps(run_dir: Path, r: Recipe, n_classes: int, device, images, owner: np.ndarray):
    """A function (items, classes) -> Grad-CAM maps (n, H, W) or None, over a run's saved models:
    item i (`images[i]`, uint8) is mapped by the model that held it out, model `owner[i]` (its
    fold), averaged over that model's kept weights (snapshots)."""
    groups = load_models(run_dir, r, n_classes, device)

    def maps(items: np.ndarray, classes: np.ndarray) -> np.ndarray | None:
        out = [None] * len(items)
        for k, models in enumerate(groups):
            mine = [j for j, i in enumerate(items) if owner[i] == k]
            for start in range(0, len(mine), BATCH):
                part = mine[start : start + BATCH]
                xb = torch.stack([images[items[j]] for j in part]).to(device)
                found = [one_model(m, xb, classes[part], r.channels_last) for m in models]
                if found[0] is None:
                    return None
                for j, cam in zip(part, torch.stack(found).mean(0).cpu().numpy()):
                    out[j] = cam
        return np.stack(out) if out else np.zeros((0, 1, 1))

    return maps


def one_model(m, xb: torch.Tensor, classes, channels_last: bool) -> torch.Tensor | None:
    """Grad-CAM of one saved model (kit/train/saved.py's Model) on a uint8 batch, fed as training
    fed it, in float32 (the gradients of half precision would be coarse)."""
    x = model_input(xb, m.mean, m.std, None, None, channels_last)
    return grad_cam(m.net, head(m.net), x, classes)


def maps_of(run_dir, r, classes, device, images, held: list) -> Callable | None:
    """`run_maps` for a run's models, where `held` lists each model's held-out items in turn;
    None for a multi-label run (its plots are per tag)."""
    if r.multi_label:
        return None
    owner = np.repeat(np.arange(len(held)), [len(v) for v in held])
    return run_maps(run_dir, r, len(classes), device, images, owner)

"""The Learner: device and precision, the model with its data loaders, and fastai's Learner with
the recipe's loss, metric, optimizer, tricks and plain logs."""

import sys
from functools import partial
from pathlib import Path

import numpy as np
import torch
from fastai.callback.core import Callback
from fastai.callback.fp16 import MixedPrecision
from fastai.callback.mixup import CutMix, MixUp
from fastai.callback.progress import ProgressCallback
from fastai.callback.training import GradientClip
from fastai.learner import Learner
from fastai.losses import (
    BCEWithLogitsLossFlat,
    CrossEntropyLossFlat,
    LabelSmoothingCrossEntropyFlat,
)
from fastai.optimizer import OptimWrapper
from fastai.torch_core import set_seed
from fastcore.imports import IN_NOTEBOOK

from kit.data.layouts import Data
from kit.data.loader import dataloaders
from kit.errors import KitError
from kit.evaluate.metrics import learner_metric
from kit.recipe import Recipe
from kit.train import ddp
from kit.train.callbacks import Accumulate, WeightAverage
from kit.train.models import create_model, depth_groups, layer_groups, timm_body
from kit.train.weights import pretrained_model

# PyTorch's AdamW (one fused multi-tensor step) through fastai's wrapper, which keeps freezing
# and per-group rates: fastai's own Adam steps each tensor in Python, which cost 8% of an
# EfficientNet-Lite0 epoch on 2 CPU cores (measured).
ADAMW = partial(OptimWrapper, opt=torch.optim.AdamW)
# Where --balance auto weights the classes: metrics that weigh each class alike, so a rare
# class's recall counts as much as a common one's (accuracy and log loss score the test's own
# shares, which a weighted loss moves away from; AUC ranks, whatever the shares)
BALANCED_METRICS = ("f1_macro",)


class DecayedRates(OptimWrapper):
    """PyTorch's AdamW through fastai's wrapper, with layer-wise rate decay: a rate, or a slice's
    top (the decay sets the rest, not the slice's bottom), is the last group's (the head's), and
    each group below learns `decay` times the rate of the group above it. Rates per group (the
    schedulers' steps, which start from these) are set as given."""

    def __init__(self, params, decay: float, **kwargs):
        super().__init__(params, opt=torch.optim.AdamW, **kwargs)
        self.decay = decay

    def set_hyper(self, k, v):
        if k == "lr" and (isinstance(v, slice) or np.ndim(v) == 0):
            top, n = (v.stop if isinstance(v, slice) else v), len(self.param_lists)
            v = [top * self.decay ** (n - 1 - i) for i in range(n)]
        super().set_hyper(k, v)


def resolve_device(name: str = "auto") -> torch.device:
    """auto picks CUDA, then Apple's MPS, then the CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if torch.backends.mps.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise KitError(f"--device {name!r} is not a device; use auto, cpu, cuda or mps") from e
    if device.type not in ("cpu", "cuda", "mps"):  # meta, xpu...: torch's, not kit's
        raise KitError(f"--device {name!r} is not one kit trains on; use auto, cpu, cuda or mps")
    if device.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if not n:
            raise KitError(f"--device {name} asked for, but torch sees no CUDA GPU; use "
                           "--device cpu")  # fmt: skip
        if device.index is not None and device.index >= n:
            ids = "cuda:0" if n == 1 else f"cuda:0 to cuda:{n - 1}"
            raise KitError(f"--device {name} asked for, but torch sees {n} CUDA GPU"
                           f"{'s' * (n > 1)} ({ids}); use one of them, or check "
                           "CUDA_VISIBLE_DEVICES")  # fmt: skip
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise KitError(f"--device {name} asked for, but torch sees no Apple GPU (MPS); use "
                       "--device cpu")  # fmt: skip
    return device


def resolve_precision(precision: str, device: torch.device) -> str:
    """The precision that will really run: bf16 only where the hardware has it."""
    if device.type == "cuda":
        if precision in ("auto", "bf16"):  # fp16 (with a loss scaler) where bf16 is not native
            return "bf16" if native_bf16(device) else "fp16"
        return precision
    if (
        precision == "bf16"
        and device.type == "cpu"
        and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    ):
        return "bf16"
    return "fp32"  # fp16 autocast is slower than fp32 on CPUs; bf16 without hardware support too


def native_bf16(device: torch.device) -> bool:
    """Does this GPU compute in bf16 (Ampere, compute capability 8.0, and later)? PyTorch's
    `is_bf16_supported` also answers yes on a T4 (7.5), where bf16 is emulated, and slow."""
    return torch.cuda.get_device_capability(device) >= (8, 0)


class Autocast(Callback):
    """bfloat16 autocast for the forward pass and loss, on CPU or CUDA (no loss scaling needed)."""

    order = 10

    def __init__(self, device_type: str):
        self.device_type = device_type

    def before_batch(self):
        self.ctx = torch.autocast(self.device_type, dtype=torch.bfloat16)
        self.ctx.__enter__()

    def after_pred(self):
        self.learn.pred = self.pred.float()

    def after_loss(self):
        self.ctx.__exit__(None, None, None)


def norm_stats(model: torch.nn.Module, x: torch.Tensor) -> tuple[list, list]:
    """The pretrained network's normalisation if it has one, else the training data's own."""
    cfg = getattr(timm_body(model), "pretrained_cfg", None)
    if cfg and "mean" in cfg and len(cfg["mean"]) == x.shape[1]:
        return list(cfg["mean"]), list(cfg["std"])
    sample = x[:: max(1, len(x) // 5000)]  # a view: a mapped cache is read, never copied whole
    step = max(1, 2**22 // sample[0].numel())  # about 4 M pixels (16 MB as floats) at a time
    total = torch.zeros(x.shape[1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    for i in range(0, len(sample), step):
        chunk = sample[i : i + step].float()
        total += chunk.sum((0, 2, 3), dtype=torch.float64)
        squares += chunk.square_().sum((0, 2, 3), dtype=torch.float64)
    n = sample[0, 0].numel() * len(sample)
    mean = total / n
    std = ((squares - n * mean**2) / max(1, n - 1)).clamp(min=0).sqrt()  # unbiased, as torch's
    return (mean / 255).tolist(), (std / 255).clamp(min=1e-3).tolist()


def build_learner(
    r: Recipe, data: Data, device: torch.device, weights: Path | None, path: Path, valid_idx
) -> Learner:
    """Model, data loaders (the items at `valid_idx` for validation) and Learner, seeded; in a
    DDP run, this process's part of it."""
    set_seed(r.seed, reproducible=True)
    n, chans = len(data.classes), data.x.shape[1]
    if r.pretrained:
        model = pretrained_model(r.arch, n, chans, weights, r.drop_path)
    else:
        model = create_model(r.arch, n, chans, size=r.size, drop_path=r.drop_path)
    dls = dataloaders(data, r, norm_stats(model, data.x), device, valid_idx)
    if dls.train.bs < r.bs:
        print(f"{dls.train.n} training images: batches of {dls.train.bs}, not {r.bs}, so that "
              f"an epoch has {len(dls.train)} steps (see --min-batches)")  # fmt: skip
    soft = getattr(data, "soft", None)  # --distill (kit/distill.py): the teacher's targets
    if soft is not None:  # served to training only: validation scores the true labels
        dls.train.y = soft
    learn = make_learner(model, dls, r, path, resolve_precision(r.precision, device))
    return ddp.attach(learn, r.folds, r.sync_bn)


def make_learner(model, dls, r: Recipe, path: Path, precision: str) -> Learner:
    """A fastai Learner with the recipe's metric and loss (binary cross-entropy on a sigmoid per
    tag for a multi-label task), its tricks (label smoothing, MixUp, CutMix, a moving average of
    the weights), gradient accumulation and clipping, three layer groups (or one per layer, with
    layer-wise rate decay) and clean logs."""
    cbs = {"bf16": [Autocast(dls.device.type)], "fp16": [MixedPrecision()], "fp32": []}[precision]
    if r.mixup:
        cbs.append(MixUp(r.mixup))
    if r.cutmix:
        cbs.append(CutMix(r.cutmix))
    if r.ema:
        cbs.append(WeightAverage(r.ema))
    if r.accumulate > 1:  # before MixedPrecision (order 10): a skipped batch leaves no scaler step
        cbs.append(Accumulate(r.accumulate))
    if r.clip:  # after MixedPrecision's unscaling, so that fp16's loss scale is not clipped
        cbs.append(GradientClip(r.clip))
    loss = loss_function(r, class_weights(r, dls.train))
    if r.channels_last:
        model = model.to(memory_format=torch.channels_last)
    learn = Learner(
        dls,
        model,
        opt_func=partial(DecayedRates, decay=r.layer_decay) if r.layer_decay else ADAMW,
        loss_func=loss,
        metrics=[learner_metric(r.metric, r.multi_label)],
        splitter=depth_groups if r.layer_decay else layer_groups,
        wd=r.wd,
        path=path,
        model_dir=".",
        cbs=cbs,
    )
    if not (sys.stdout.isatty() or IN_NOTEBOOK):
        print_epochs(learn)
    return learn


def loss_function(r: Recipe, weight: torch.Tensor | None = None):
    """Cross-entropy (softmax), label-smoothed if asked; binary cross-entropy (a sigmoid per tag)
    for a multi-label task, its positives weighted by `weight`. fastai's predictions apply the
    loss's activation. With --distill, cross-entropy takes probability targets (training) as
    well as class indices (validation), unflattened: torch's takes both, smoothing either."""
    if r.multi_label:
        return BCEWithLogitsLossFlat(pos_weight=weight)  # soft tags as they are
    if r.distill:
        return CrossEntropyLossFlat(weight=weight, label_smoothing=r.label_smoothing, flatten=False)
    if r.label_smoothing:
        return LabelSmoothingCrossEntropyFlat(weight=weight, eps=r.label_smoothing)
    return CrossEntropyLossFlat(weight=weight)


def class_weights(r: Recipe, train) -> torch.Tensor | None:
    """With --balance weights (auto: for the metrics that weigh every class alike), each class's
    loss weighted by the inverse of its share of the training items (a tag's positives by its
    negatives per positive), so that every class counts alike; None otherwise."""
    if balanced(r) != "weights":
        return None
    y = train.y if train.rows is None else train.y[train.rows]
    if r.multi_label:
        pos = y.float().sum(0).clamp(min=1)
        return ((len(y) - pos) / pos).clamp(max=100).to(train.device)
    if y.is_floating_point():  # --distill's soft targets: each class's share of them
        counts = y.sum(0).clamp(min=1)
    else:
        counts = torch.bincount(y, minlength=int(train.y.max()) + 1).float().clamp(min=1)
    return (counts.sum() / (len(counts) * counts)).to(train.device)


def balanced(r: Recipe) -> str:
    """The balance a run uses: --balance auto weights classes for the metrics named in
    BALANCED_METRICS, measured on skewed sets (benchmarks/augment.py), and none otherwise."""
    if r.balance != "auto":
        return r.balance
    return "weights" if r.metric in BALANCED_METRICS else "none"


def print_epochs(learn: Learner) -> None:
    """Replace the progress bars with one plain line per epoch (for logs that are not terminals)."""
    learn.remove_cb(ProgressCallback)

    def log(values):
        names = learn.recorder.metric_names
        parts = [
            f"{n} {v:.4f}" if isinstance(v, float) else f"{n} {v}" for n, v in zip(names, values)
        ]
        print("  ".join(parts), flush=True)

    learn.logger = log


def monitor_name(learn: Learner) -> str:
    return learn.metrics[0].name

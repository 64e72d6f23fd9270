"""Networks by name: the kit's own small nets, or any timm model; and their layer groups."""

import difflib

import torch
from torch import nn

from kit.errors import KitError


def conv_bn(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class DigitNet(nn.Module):
    """A VGG-style CNN for small images, 28x28 digits first: three conv stages (28, 14, 7 px)
    with batch norm."""

    def __init__(
        self, in_chans: int = 1, num_classes: int = 10, width: int = 32, dropout=0.25, size=28
    ):
        super().__init__()
        w = width
        self.body = nn.Sequential(
            conv_bn(in_chans, w),
            conv_bn(w, w),
            nn.MaxPool2d(2),
            conv_bn(w, 2 * w),
            conv_bn(2 * w, 2 * w),
            nn.MaxPool2d(2),
            conv_bn(2 * w, 4 * w),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.LazyLinear(num_classes))
        self.head(self.body(torch.zeros(1, in_chans, size, size)))  # size the head for `size`

    def get_classifier(self) -> nn.Module:
        return self.head

    def forward(self, x):
        return self.head(self.body(x))


KIT_NETS = {"digitnet": DigitNet}


def arch_names() -> list[str]:
    import timm

    return sorted(KIT_NETS) + timm.list_models()


def check_arch(arch: str) -> None:
    """A KitError saying what is wrong unless `arch` names a kit net or a name timm's
    `create_model` takes: `resnet18`, a pretrained tag (`resnet18.a1_in1k`), `hf-hub:REPO` or
    `local-dir:FOLDER` (whose config.json is read: from the Hugging Face cache, else downloaded)."""
    if arch in KIT_NETS:
        return
    import timm

    try:
        source, name = timm.models.parse_model_name(arch)
    except ValueError as e:  # a path or repo id without its prefix: timm's line says which
        raise KitError(f"unknown architecture {arch!r}: {e}") from None
    if source:
        name = source_arch(source, name)
    base, tag = timm.models.split_model_name_tag(name)
    if not timm.is_model(base):  # is_model also knows the deprecated names create_model maps
        names = timm.list_models(include_tags=True) if tag else arch_names()
        close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
        hint = f"close matches: {', '.join(close)}" if close else "see `timm.list_models()`"
        raise KitError(f"unknown architecture {name!r}; {hint}")
    tags = timm.list_models(f"{base}.*", include_tags=True)
    if tag and name not in tags:
        close = difflib.get_close_matches(name, tags, n=5, cutoff=0.5)
        hint = f"close matches: {', '.join(close or tags)}" if tags else "it has no tags"
        raise KitError(f"{base} has no pretrained tag {tag!r}; {hint}")


def source_arch(source: str, model_id: str) -> str:
    """The timm architecture that a `hf-hub:` repo's or `local-dir:` folder's config.json names."""
    from timm.models import _hub  # timm 1.0.31: what timm.create_model calls for these names

    try:
        if source == "local-dir":
            return _hub.load_model_config_from_path(model_id)[1]
        return _hub.load_model_config_from_hf(model_id)[1]
    except Exception as e:  # offline and not cached, no such repo, no config.json: all one line
        if source == "local-dir":
            raise KitError(f"local-dir:{model_id} needs a folder holding timm's config.json and "
                           "model.safetensors (as timm's save_for_hf writes them); "
                           f"{type(e).__name__}: {e}") from None  # fmt: skip
        raise KitError(
            f"hf-hub:{model_id}: its config.json is not in the Hugging Face cache and could not "
            f"be downloaded ({type(e).__name__}); run `hf download {model_id.split('@')[0]}` "
            "once with network (or point $HF_HOME at a cache that has it), or give "
            "--arch local-dir:FOLDER holding its config.json and model.safetensors"
        ) from None


def create_model(
    arch: str, num_classes: int, in_chans: int = 3, pretrained=False, size: int = 28, drop_path=0.0
) -> nn.Module:
    """A network with a new `num_classes` head. A timm network gets fastai's head, as
    `vision_learner` builds it (concat pooling, batch norm, dropout, two linear layers);
    `pretrained=True` asks timm to download its weights (see kit/train/weights.py for offline).
    `drop_path` is timm's drop_path_rate (stochastic depth, rising towards it over the blocks)."""
    check_arch(arch)
    if arch in KIT_NETS:
        if pretrained:
            raise KitError(f"{arch} has no published weights; pass --weights FILE of your own "
                           "checkpoint, or use --no-pretrained")  # fmt: skip
        if drop_path:
            raise KitError(no_drop_path(arch))
        return KIT_NETS[arch](in_chans=in_chans, num_classes=num_classes, size=size)
    from fastai.vision.learner import create_timm_model

    extra = {"drop_path_rate": drop_path} if drop_path else {}
    try:
        model, _ = create_timm_model(arch, num_classes, pretrained=pretrained, n_in=in_chans,
                                     **extra)  # fmt: skip
    except TypeError as e:
        if extra and "drop_path_rate" in str(e):
            raise KitError(no_drop_path(arch)) from None
        raise
    if drop_path and not any(isinstance(getattr(m, "drop_prob", None), float)
                             for m in model.modules()):  # fmt: skip
        raise KitError(no_drop_path(arch))  # taken and ignored: say so rather than train without
    return model


def no_drop_path(arch: str) -> str:
    return (f"--drop-path: {arch} has no drop path (stochastic depth); use a timm network that "
            "has one (resnet*, efficientnet*, convnext*, vit*...), or --drop-path 0")  # fmt: skip


def timm_body(model: nn.Module) -> nn.Module | None:
    """The timm network inside a model from `create_model`, if there is one."""
    if isinstance(model, nn.Sequential) and hasattr(model[0], "model"):
        return model[0].model
    return None


def head(model: nn.Module) -> nn.Module:
    return model[1] if timm_body(model) is not None else model.get_classifier()


def layer_groups(model: nn.Module) -> list[list[nn.Parameter]]:
    """Three parameter groups for discriminative learning rates: early body, late body, head."""
    head_params = list(head(model).parameters())
    head_ids = {id(p) for p in head_params}
    body = [p for p in model.parameters() if id(p) not in head_ids]
    half = len(body) // 2
    return [body[:half], body[half:], head_params]


def depth_groups(model: nn.Module) -> list[list[nn.Parameter]]:
    """One parameter group per layer for layer-wise rate decay, the input's first and the head
    last: timm's own layers (its group_matcher, fine: a block each, as timm's
    param_groups_layer_decay groups them), else each block of the body's top-level sequences."""
    head_params = list(head(model).parameters())
    seen = {id(p) for p in head_params}
    body = timm_body(model)
    if body is not None and hasattr(body, "group_matcher"):
        from timm.models import group_parameters

        layers = group_parameters(body, body.group_matcher(coarse=False), return_values=True)
        groups = [list(g) for g in layers.values()]
    else:
        groups = [list(m.parameters()) for m in blocks(model, head(model))]
    groups = [[p for p in g if id(p) not in seen and not seen.add(id(p))] for g in groups]
    rest = [p for p in model.parameters() if id(p) not in seen]  # not in any block: lowest
    return [g for g in [rest, *groups] if g] + [head_params]


def blocks(model: nn.Module, skip: nn.Module):
    """The model's children holding parameters, in order, a sequence's opened one level."""
    for child in model.children():
        if child is skip:
            continue
        parts = child.children() if isinstance(child, (nn.Sequential, nn.ModuleList)) else [child]
        yield from (m for m in parts if any(True for _ in m.parameters()))

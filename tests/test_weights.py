"""Pretrained names (tags, hub repos, folders) and their weights, offline; tiny real networks."""

from collections import OrderedDict

import huggingface_hub.constants
import pytest
import timm
import torch
from timm.models import save_for_hf

from kit.cli import main
from kit.errors import KitError
from kit.runs.folder import new_run_dir
from kit.train.models import check_arch, create_model, timm_body
from kit.train.weights import find_weights, load_weights, pretrained_model, resolve_weights


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """No network and an empty Hugging Face cache, whatever this machine's own cache holds."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("KIT_WEIGHTS", raising=False)
    return tmp_path / "hub"


def test_a_pretrained_tag_is_an_architecture_and_a_typo_gets_close_matches():
    check_arch("convnext_small.fb_in22k_ft_in1k")
    check_arch("convnext_small_in22ft1k")  # a deprecated name timm maps to that tag
    with pytest.raises(KitError, match="unknown architecture 'convnxt_small'; close matches: "
                       "convnext_small"):  # fmt: skip
        check_arch("convnxt_small")
    with pytest.raises(KitError, match="convnext_small has no pretrained tag 'fb_in22k_ft'; "
                       "close matches: .*convnext_small.fb_in22k_ft_in1k"):  # fmt: skip
        check_arch("convnext_small.fb_in22k_ft")
    with pytest.raises(KitError, match="Use 'hf-hub:timm/resnet18'"):  # timm's own hint
        check_arch("timm/resnet18")


def test_a_tagged_name_finds_the_packaged_weights_offline(offline_hub):
    path = resolve_weights("tf_efficientnet_lite0.in1k")
    assert path == find_weights("tf_efficientnet_lite0") and path.name.startswith("efficientnet")
    assert find_weights("tf_efficientnet_lite0.other_tag") is None  # the package ships in1k's


def test_a_weights_folder_holds_a_network_under_its_tagged_or_untagged_name(
    offline_hub, tmp_path, monkeypatch
):
    monkeypatch.setenv("KIT_WEIGHTS", str(tmp_path))
    untagged = tmp_path / "resnet10t.pth"
    torch.save(timm.create_model("resnet10t").state_dict(), untagged)
    assert find_weights("resnet10t.c3_in1k") == untagged
    tagged = tmp_path / "resnet10t.c3_in1k.pth"
    tagged.write_bytes(untagged.read_bytes())
    assert find_weights("resnet10t.c3_in1k") == tagged  # the name as given comes first
    untagged.unlink()
    assert find_weights("resnet10t") == tagged  # c3_in1k is timm's default tag for resnet10t


def test_weights_file_loads_into_a_tagged_architecture(offline_hub, tmp_path):
    arch = "mobilenetv2_100.ra_in1k"
    theirs = timm.create_model("mobilenetv2_100").state_dict()
    torch.save(theirs, tmp_path / "mine.pth")
    check_arch(arch)
    model = pretrained_model(arch, 2, 3, resolve_weights(arch, tmp_path / "mine.pth"))
    assert torch.equal(timm_body(model).conv_stem.weight, theirs["conv_stem.weight"])
    assert torch.equal(timm_body(model).bn2.running_var, theirs["bn2.running_var"])


def test_a_hub_name_with_no_network_and_no_cache_is_one_line(offline_hub, photos, tmp_path,
                                                              capsys):  # fmt: skip
    arch = "hf-hub:timm/resnet18.a1_in1k"
    code = main(["run", "invasive", "--data", str(photos), "--arch", arch, "--out",
                 str(tmp_path / "out")])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 1 and err.splitlines() == [err], err
    assert "hf download timm/resnet18.a1_in1k" in err and "local-dir:" in err
    assert not (tmp_path / "out").exists()


def hub_cache(cache, repo: str, model) -> None:
    """`model` in a Hugging Face cache as a download of `repo` leaves it (config and weights)."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    save_for_hf(model, folder / "snapshots" / "0123abcd", safe_serialization=True)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text("0123abcd")


def test_hub_and_folder_names_load_their_weights_offline(offline_hub, tmp_path):
    net = timm.create_model("resnet10t", num_classes=7)
    hub_cache(offline_hub, "someone/tiny-resnet", net)
    save_for_hf(net, tmp_path / "tiny")
    for arch in ["hf-hub:someone/tiny-resnet", f"local-dir:{tmp_path / 'tiny'}"]:
        check_arch(arch)
        path = resolve_weights(arch)
        model = pretrained_model(arch, 2, 1, path)  # grey: the stem's colours summed
        assert torch.allclose(timm_body(model).conv1[0].weight,
                              net.conv1[0].weight.sum(1, keepdim=True))  # fmt: skip
        assert torch.equal(timm_body(model).layer4[0].conv2.weight, net.layer4[0].conv2.weight)
    with pytest.raises(KitError, match="local-dir:.*needs a folder holding timm's config.json"):
        check_arch(f"local-dir:{tmp_path / 'nothing'}")


def test_a_hub_or_folder_name_makes_a_run_id_without_a_path(tmp_path):
    for arch in ["hf-hub:timm/resnet18.a1_in1k", "local-dir:/models/tiny/"]:
        run_id, partial = new_run_dir(tmp_path, "mnist", arch)
        assert partial.parent == tmp_path / "runs" / "mnist" and partial.is_dir()
        assert run_id.endswith(arch.rstrip("/").split("/")[-1])


def test_an_architecture_without_published_weights_is_refused(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # even where a download would be allowed
    with pytest.raises(KitError, match="botnet50ts_256 has no published pretrained weights"):
        resolve_weights("botnet50ts_256")


def renamed(state: dict) -> OrderedDict:
    """`state` under another implementation's names (one per layer), in the same order."""
    layers = {}
    return OrderedDict(
        (f"_layer{layers.setdefault(k.rpartition('.')[0], len(layers))}.{k.rpartition('.')[2]}", v)
        for k, v in state.items()
    )


def test_a_checkpoint_loads_by_position_only_with_each_tensor_in_its_role(tmp_path):
    """Shapes alone pass a batch norm's four (C,) tensors in any order: the roles must match."""
    theirs = renamed(timm.create_model("resnet10t").state_dict())
    torch.save(theirs, tmp_path / "ported.pth")
    body = timm_body(create_model("resnet10t", 2, 3))
    load_weights(body, tmp_path / "ported.pth")
    assert torch.equal(body.conv1[1].running_var, theirs["_layer1.running_var"])

    keys = list(theirs)
    i = keys.index("_layer1.weight")  # the stem's first batch norm: weight, bias, mean, var
    keys[i : i + 4] = [keys[i + 3], keys[i + 2], keys[i], keys[i + 1]]
    torch.save(OrderedDict((k, theirs[k]) for k in keys), tmp_path / "permuted.pth")
    fresh = timm_body(create_model("resnet10t", 2, 3))
    before = fresh.conv1[1].weight.clone()
    with pytest.raises(KitError, match="_layer1.running_var is a batch-norm running_var where "
                       "conv1.1.weight needs a batch-norm weight"):  # fmt: skip
        load_weights(fresh, tmp_path / "permuted.pth")
    assert torch.equal(fresh.conv1[1].weight, before)  # nothing half-loaded

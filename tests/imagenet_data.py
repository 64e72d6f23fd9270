"""The packaged EfficientNet-Lite0 with its ImageNet classifier, for the tests that ask what it
sees (tests/test_invasive.py, tests/test_cam.py)."""

import timm
import torch

from kit.train.weights import find_weights


def imagenet_lite0() -> torch.nn.Module:
    """timm's tf_efficientnet_lite0 (eval mode) holding the packaged weights, 1,000 classes:
    the port's tensors in order, batch-norm counters left out."""
    model = timm.create_model("tf_efficientnet_lite0", num_classes=1000).eval()
    theirs = torch.load(find_weights("tf_efficientnet_lite0"), map_location="cpu",
                        weights_only=True)  # fmt: skip
    own = [k for k in model.state_dict() if not k.endswith("num_batches_tracked")]
    tensors = [v for k, v in theirs.items() if not k.endswith("num_batches_tracked")]
    model.load_state_dict(dict(zip(own, tensors)), strict=False)
    return model

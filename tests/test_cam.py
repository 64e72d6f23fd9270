"""Where the model looks (Grad-CAM, kit/train/cam.py) and the labels it doubts (relabel.csv,
kit/evaluate/review.py)."""

import numpy as np
import pandas as pd
import torch
from imagenet_data import imagenet_lite0
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_predict

from competitions import invasive, mnist
from kit.evaluate.interpret import interpret, top_losses
from kit.evaluate.review import relabel, where_it_looks, write_relabel
from kit.files import write_json
from kit.recipe import override
from kit.runs.report import write_report
from kit.train.cam import grad_cam, run_maps
from kit.train.models import create_model, head

SIZE, PATCH = 32, 8  # the from-scratch net's last map is 4x4 here: one cell is 8 px


def patches(n: int, g: torch.Generator):
    """Noise images; class 1 holds one bright PATCH-px square somewhere (its top-left corners)."""
    x = torch.rand(n, 1, SIZE, SIZE, generator=g) * 0.5
    y = torch.randint(0, 2, (n,), generator=g)
    corners = torch.randint(0, SIZE - PATCH, (n, 2), generator=g)
    for i in np.flatnonzero(y.numpy()):
        r, c = corners[i]
        x[i, :, r : r + PATCH, c : c + PATCH] = 1.0
    return x, y, corners


def peaks_within(cam: torch.Tensor, corners: torch.Tensor, size: int, margin: int) -> np.ndarray:
    """Whether each map's highest pixel lies on its patch (`size` px from `corners`), give or
    take `margin` px."""
    row, col = np.divmod(cam.flatten(1).argmax(1).numpy(), cam.shape[-1])
    r, c = corners[:, 0].numpy(), corners[:, 1].numpy()
    return (abs(row - (r + size / 2)) <= size / 2 + margin) & (
        abs(col - (c + size / 2)) <= size / 2 + margin
    )


def test_the_map_of_a_net_trained_from_scratch_peaks_on_the_patch_that_decides_its_class():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    net = create_model("digitnet", 2, 1, size=SIZE)
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    for _ in range(15):  # 15 steps of 32: the patch is all there is to learn
        x, y, _ = patches(32, g)
        loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    x, y, corners = patches(64, g)
    x, corners = x[y == 1], corners[y == 1]
    assert (net(x).argmax(1) == 1).float().mean() > 0.9
    cam = grad_cam(net, head(net), x, [1] * len(x))
    assert (
        cam.shape == (len(x), SIZE, SIZE)
        and cam.min() >= 0
        and cam.amax((1, 2)).allclose(torch.ones(len(x)))
    )
    # on the patch to within half a cell of the 4x4 map: every one here, at four seeds tried
    assert peaks_within(cam, corners, PATCH, PATCH // 2).mean() >= 0.85


def test_the_map_of_pretrained_imagenet_weights_peaks_on_the_photo_it_names():
    """The ported EfficientNet-Lite0 with its ImageNet classifier: a daisy pasted into a grey
    frame, in each corner and the middle; the map of 'daisy' (985) lies on it."""
    model = imagenet_lite0()
    size, part = 224, 96
    photo = invasive.source_photo("flower").resize((part, part))
    photo = torch.tensor(np.asarray(photo)).permute(2, 0, 1)
    corners = torch.tensor([(0, 0), (0, 128), (128, 0), (128, 128), (64, 64)])
    frames = torch.full((len(corners), 3, size, size), 128, dtype=torch.uint8)
    for frame, (r, c) in zip(frames, corners):
        frame[:, r : r + part, c : c + part] = photo
    x = (frames.float() / 255 - 0.5) / 0.5
    cam = grad_cam(model, model.global_pool, x, [985] * len(x))  # the pool takes the 7x7 map
    assert peaks_within(cam, corners, part, 0).all()  # on the photo itself, each time
    for m, (r, c) in zip(cam, corners):  # and the photo holds most of the map: 0.69-0.73 on
        on = m[r : r + part, c : c + part].mean()  # it, 0.05-0.09 around it here
        assert on > 3 * (m.sum() - m[r : r + part, c : c + part].sum()) / (size**2 - part**2)


def test_a_timm_cnn_in_kit_is_mapped_at_its_head_and_a_vision_transformer_is_not():
    cnn = create_model("resnet18", 3, 3).eval()
    x = torch.randn(2, 3, 64, 64)
    assert grad_cam(cnn, head(cnn), x, [0, 2]).shape == (2, 64, 64)
    vit = create_model("vit_tiny_patch16_224", 3, 3).eval()
    assert grad_cam(vit, head(vit), torch.randn(1, 3, 224, 224), [1]) is None  # pooled tokens


def saved_folds(run_dir, r, nets):
    """A k-fold run's model folders as training leaves them: fold<k>/model.pth and unit.json."""
    for k, net in enumerate(nets):
        (run_dir / f"fold{k}").mkdir(parents=True)
        torch.save(net.state_dict(), run_dir / f"fold{k}" / "model.pth")
        write_json(run_dir / f"fold{k}" / "unit.json", {"stats": [[0.5], [0.25]], "channels": 1})


def test_each_image_is_mapped_by_the_model_that_held_it_out(tmp_path):
    r = override(mnist.RECIPE, folds=2)
    torch.manual_seed(0)
    nets = [create_model(r.arch, 10, 1, size=r.size).eval() for _ in range(2)]
    saved_folds(tmp_path, r, nets)
    images = torch.randint(0, 256, (6, 1, r.size, r.size), dtype=torch.uint8)
    owner = np.array([0, 0, 0, 1, 1, 1])  # items 0-2 held out by fold 0, 3-5 by fold 1
    maps = run_maps(tmp_path, r, 10, torch.device("cpu"), images, owner)
    items, classes = np.array([4, 1, 5]), np.array([3, 3, 7])
    found = maps(items, classes)
    x = (images.float() - 0.5 * 255) / (0.25 * 255)
    for j, i in enumerate(items):
        own, other = nets[owner[i]], nets[1 - owner[i]]
        assert np.allclose(found[j], grad_cam(own, head(own), x[i : i + 1], classes[j : j + 1])[0],
                           atol=1e-5)  # fmt: skip
        assert not np.allclose(found[j], grad_cam(other, head(other), x[i : i + 1], [classes[j]]))


def test_relabel_finds_planted_label_errors(tmp_path):
    """scikit-learn's real digits, 40 of 1,797 labels changed; out-of-fold predictions of a
    linear model (92% accurate against the true labels) put them first in relabel.csv."""
    x, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(0)
    planted = rng.choice(len(y), 40, replace=False)
    noisy = y.copy()
    noisy[planted] = (y[planted] + rng.integers(1, 10, len(planted))) % 10
    probs = cross_val_predict(LogisticRegression(max_iter=300), x / 16, noisy, cv=5,
                              method="predict_proba")  # fmt: skip
    names, classes = [f"row {i}" for i in range(len(y))], list(range(10))
    images = torch.tensor(x.reshape(-1, 1, 8, 8) * 16, dtype=torch.uint8)
    write_relabel(tmp_path, images, names, noisy, probs, probs.argmax(1), classes, False)
    found = pd.read_csv(tmp_path / "relabel.csv")
    planted_names = {names[i] for i in planted}
    listed = found["item"].isin(planted_names)
    assert listed.sum() >= 0.8 * len(planted)  # 37 of 40 here, in the file's 100 rows
    assert listed[:40].sum() >= 0.7 * 40  # 33 in its first 40 rows here
    assert (found["p_predicted"] > 0.5).all() and found["p_predicted"].is_monotonic_decreasing
    assert (found["label"] != found["predicted"]).all()
    truth = found["item"].map(dict(zip(names, y)))  # the label it suggests is the true one:
    assert (found["predicted"] == truth)[listed].mean() > 0.9  # 36 of the 37 here
    assert (tmp_path / "relabel.png").stat().st_size > 5000


def test_a_model_that_knows_nothing_doubts_no_label():
    y = np.arange(100) % 4
    probs = np.full((100, 4), 0.25) + np.eye(4)[(y + 1) % 4] * 0.1
    assert relabel(list(range(100)), y, probs, probs.argmax(1), list("abcd")).empty


def test_the_report_shows_where_the_model_looks_and_the_labels_to_check(tmp_path):
    write_json(tmp_path / "recipe.json", {"name": "mnist", "metric": "accuracy"})
    write_json(tmp_path / "metrics.json", {"classes": list(range(10)), "valid_accuracy": 0.9})
    (tmp_path / "oof.csv").write_text("item\n")
    for png in ("grad_cam.png", "relabel.png"):
        (tmp_path / png).write_bytes(b"png")
    rows = pd.DataFrame({"item": ["row 3", "row 9"], "label": [1, 7], "predicted": [7, 1],
                         "p_label": [0.01, 0.02], "p_predicted": [0.98, 0.95]})  # fmt: skip
    rows.to_csv(tmp_path / "relabel.csv", index=False)
    page = write_report(tmp_path, "run").read_text()
    assert "Where the model looks" in page and 'src="grad_cam.png"' in page
    assert "images whose out-of-fold prediction" in page and "(2 in <a" in page
    assert 'src="relabel.png"' in page and "<td>row 9</td>" in page


def test_interpret_maps_the_top_losses_then_each_class_and_says_when_it_cannot(tmp_path, capsys):
    rng = np.random.default_rng(0)
    y = np.arange(30) % 3
    probs = rng.dirichlet(np.ones(3), 30)
    images = torch.randint(0, 256, (30, 3, 16, 16), dtype=torch.uint8)
    asked = []

    def maps(items, classes):
        asked.append((items, classes))
        return np.ones((len(items), 16, 16)) / 2

    interpret(tmp_path, images, [f"i{n}" for n in range(30)], y, probs, list("abc"), maps=maps)
    (items, classes), k = asked[0], 4
    assert list(items[: 2 * k]) == list(top_losses(y, probs, 2 * k))
    assert len(items) == 2 * k + 3 * k  # a full row per class: its wrong, then its right
    assert (classes == probs.argmax(1)[items]).all()  # the map of the predicted class
    assert (tmp_path / "grad_cam.png").stat().st_size > 5000
    (tmp_path / "grad_cam.png").unlink()
    rows = [[(0, "top loss")]]
    where_it_looks(tmp_path, images, ["i0"], y, probs, y, list("abc"), rows, lambda *_: None, False)
    assert "no Grad-CAM" in capsys.readouterr().out and not (tmp_path / "grad_cam.png").exists()

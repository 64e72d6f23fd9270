"""Interpretation plots from validation predictions: plain arrays in, PNGs and CSVs out. A
multi-label task gets per tag its precision and recall and its most confident misses instead of
a confusion matrix. Where the model looks (Grad-CAM) over the top losses and each class's most
confident right and wrong; relabel.csv: the images whose label the predictions most doubt."""

import re
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix, roc_auc_score, roc_curve

from kit.evaluate.metrics import predicted_tags
from kit.evaluate.review import where_it_looks, write_relabel
from kit.evaluate.thresholds import decide
from kit.files import save_figure

MAX_CLASS_PLOTS = 20  # per-class image grids for at most this many classes
MAX_CAM_CLASSES = 6  # Grad-CAM rows (its most confident wrong, the rest right) for the most missed


def decided(probs: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """The labels the submission writes: the likeliest class (a label column's argmax), or for a
    binary task class 1 at p_1 >= `threshold`, when a tuned one was applied to it."""
    if threshold is None:
        return probs.argmax(1)
    return (probs[:, 1] >= threshold).astype(int)


def decision_rule(classes: list, threshold: float | None) -> str:
    """How the plotted labels were decided, for the plots' titles."""
    if threshold is None:
        return "argmax"
    return f"p({classes[1]}) >= {threshold:.3f}, the tuned threshold"


def plot_roc(y: np.ndarray, p1: np.ndarray, pred: np.ndarray, rule: str, path: Path, show: bool):
    """The ROC curve of a binary task, with the point of the labels `pred` that the other plots
    (and a label submission) use, not the ROC's own best cut, which nothing submits."""
    fpr, tpr, _ = roc_curve(y, p1)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(fpr, tpr, label=f"AUC {roc_auc_score(y, p1):.4f}")
    ax.plot([0, 1], [0, 1], ls=":", c="grey")
    ax.plot(pred[y == 0].mean(), pred[y == 1].mean(), "o", label=rule)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (validation)")
    ax.legend(loc="lower right")
    save_figure(fig, path, show)


def most_confused(cm: np.ndarray, classes: list) -> pd.DataFrame:
    """Every (actual, predicted) pair that was confused, most frequent first."""
    rows = [
        (classes[a], classes[p], int(cm[a, p]))
        for a in range(len(classes))
        for p in range(len(classes))
        if a != p and cm[a, p]
    ]
    df = pd.DataFrame(rows, columns=["actual", "predicted", "count"])
    return df.sort_values("count", ascending=False, kind="stable").reset_index(drop=True)


def plot_confusion(cm: np.ndarray, classes: list, path: Path, show: bool, title: str) -> None:
    fig, ax = plt.subplots(figsize=(min(1 + 0.6 * len(classes), 24),) * 2)
    ax.imshow(cm, cmap="Blues")
    for (a, p), count in np.ndenumerate(cm if len(classes) <= 30 else []):  # readable counts
        ax.text(
            p,
            a,
            str(count),
            ha="center",
            va="center",
            color="white" if count > cm.max() / 2 else "black",
        )
    ax.set(
        xticks=range(len(classes)),
        yticks=range(len(classes)),
        xticklabels=classes,
        yticklabels=classes,
        xlabel="predicted",
        ylabel="actual",
        title=title,
    )
    save_figure(fig, path, show)


def plot_images(rows: list, path: Path, show: bool, title: str = "") -> None:
    """A grid of captioned uint8 (C, H, W) images: `rows` is a list of [(image, caption), ...]."""
    cols = max([1, *map(len, rows)])
    fig, axes = plt.subplots(len(rows), cols, figsize=(2.2 * cols, 2.5 * len(rows)), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax_row, row in zip(axes, rows):
        if not row:
            ax_row[0].text(0, 0.5, "(none)", fontsize=9)
        for ax, (image, caption) in zip(ax_row, row):
            pixels = image.permute(1, 2, 0).numpy()
            ax.imshow(pixels[..., 0] if pixels.shape[2] == 1 else pixels, cmap="gray")
            ax.set_title(caption, fontsize=8)
    fig.suptitle(title)
    save_figure(fig, path, show)


def file_name(label) -> str:
    """A class label as a file name: anything but letters, digits, '-' and '.' becomes '_'."""
    return re.sub(r"[^\w.-]+", "_", str(label)).strip("_.") or "class"


def top_losses(y: np.ndarray, probs: np.ndarray, k: int) -> np.ndarray:
    """Indices of the `k` items with the highest cross-entropy loss."""
    loss = -np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, None))
    return np.argsort(-loss, kind="stable")[:k]


def by_class(y: np.ndarray, probs: np.ndarray, c: int, k: int, threshold=None) -> dict:
    """For actual class `c`: the most confidently right, most confidently wrong, most uncertain,
    the labels decided as the submission decides them (`decided`)."""
    pred = decided(probs, threshold)
    conf = probs[np.arange(len(probs)), pred]  # the probability of the label given
    if threshold is None:
        top2 = np.sort(probs, 1)[:, -2:]
        margin = top2[:, 1] - top2[:, 0]  # small margin: the model could not decide
    else:
        margin = np.abs(probs[:, 1] - threshold)
    ours = np.flatnonzero(y == c)
    right, wrong = ours[pred[ours] == c], ours[pred[ours] != c]
    return {
        "most confidently right": right[np.argsort(-conf[right], kind="stable")][:k],
        "most confidently wrong": wrong[np.argsort(-conf[wrong], kind="stable")][:k],
        "most uncertain": ours[np.argsort(margin[ours], kind="stable")][:k],
    }


def interpret(
    run_dir: Path,
    images,
    names: list,
    y: np.ndarray,
    probs: np.ndarray,
    classes: list,
    show: bool = False,
    k: int = 4,
    thresholds: list | None = None,
    threshold: float | None = None,
    maps=None,
) -> None:
    """Write every interpretation artefact for one set of validation predictions; `images[i]` is
    item i's uint8 (C, H, W) image (a tensor, or a Subset of a larger one). The labels shown are
    the submission's: the argmax, or a binary task's class 1 at p_1 >= `threshold` when a tuned
    one is applied (a probability submission writes none: its plots show the argmax and say
    so); multi-hot `y`: the tags decided at `thresholds`, else at 0.5. `maps(items, classes)`
    gives Grad-CAM maps (kit/train/cam.py), or None where the network has none."""
    if y.ndim == 2:
        return interpret_tags(run_dir, images, names, y, probs, classes, show, k, thresholds)
    pred, rule = decided(probs, threshold), decision_rule(classes, threshold)
    if len(classes) == 2 and len(set(y)) == 2:
        plot_roc(y, probs[:, 1], pred, rule, run_dir / "roc.png", show)
    cm = confusion_matrix(y, pred, labels=range(len(classes)))
    title = f"confusion matrix (predicted: {rule})"
    plot_confusion(cm, classes, run_dir / "confusion_matrix.png", show, title)
    most_confused(cm, classes).to_csv(run_dir / "most_confused.csv", index=False)
    worst = top_losses(y, probs, 3 * k)
    cells = [
        (
            images[i],
            f"{names[i]}\nactual {classes[y[i]]}, predicted "
            f"{classes[pred[i]]} ({probs[i, pred[i]]:.2f})",
        )
        for i in worst
    ]
    rows = [cells[i : i + k] for i in range(0, len(cells), k)] or [[]]
    plot_images(rows, run_dir / "top_losses.png", show, "top losses (validation)")
    errors = np.bincount(y[pred != y], minlength=len(classes))
    for c in np.argsort(-errors, kind="stable")[:MAX_CLASS_PLOTS]:  # the classes missed most
        label = classes[c]
        rows = [
            [(images[i], f"{kind}\n{names[i]}  p({label})={probs[i, c]:.2f}") for i in idx]
            for kind, idx in by_class(y, probs, c, k, threshold).items()
        ]
        title = f"actual class {label} (predicted: {rule})"
        plot_images(rows, run_dir / f"class_{file_name(label)}.png", show, title)
    write_relabel(run_dir, images, names, y, probs, pred, classes, show)
    if maps is not None:  # Grad-CAM: the top losses, then the classes missed most
        worst = [(i, "top loss") for i in top_losses(y, probs, 2 * k)]
        rows = [worst[:k], worst[k:]]
        for c in np.argsort(-errors, kind="stable")[:MAX_CAM_CLASSES]:
            found = by_class(y, probs, c, k, threshold)
            wrong = found["most confidently wrong"][: k - k // 2]  # the rest of the row: right
            right = found["most confidently right"][: k - len(wrong)]
            rows.append([(i, "right") for i in right] + [(i, "wrong") for i in wrong])
        where_it_looks(run_dir, images, names, y, probs, pred, classes, rows, maps, show)


def per_tag(y: np.ndarray, pred: np.ndarray, classes: list) -> pd.DataFrame:
    """Per tag: the images that have it, those predicted with it, precision, recall, and the
    false and missed tags."""
    truth = y > 0.5
    hits, predicted, actual = (pred & truth).sum(0), pred.sum(0), truth.sum(0)
    return pd.DataFrame({"tag": classes, "images": actual, "predicted": predicted,
                         "precision": hits / np.maximum(predicted, 1),
                         "recall": hits / np.maximum(actual, 1),
                         "false": predicted - hits, "missed": actual - hits})  # fmt: skip


def tag_misses(y: np.ndarray, probs: np.ndarray, pred: np.ndarray, c: int, k: int, cut) -> dict:
    """For tag `c`: the images most confidently given it wrongly, those most confidently denied
    it wrongly, and the most uncertain (closest to its threshold `cut`)."""
    truth, p = y[:, c] > 0.5, probs[:, c]
    false, missed = np.flatnonzero(pred[:, c] & ~truth), np.flatnonzero(~pred[:, c] & truth)
    return {
        "most confident false tag": false[np.argsort(-p[false], kind="stable")][:k],
        "most confident missed tag": missed[np.argsort(p[missed], kind="stable")][:k],
        "most uncertain": np.argsort(np.abs(p - cut), kind="stable")[:k],
    }


def interpret_tags(run_dir, images, names, y, probs, classes, show, k, thresholds) -> None:
    """A multi-label task's interpretation: per_tag.csv, top losses (binary cross-entropy over
    the tags) and, for the tags missed most, their most confident misses."""
    pred = decide(probs, thresholds) > 0.5 if thresholds is not None else predicted_tags(probs)
    table = per_tag(y, pred, classes)
    table.to_csv(run_dir / "per_tag.csv", index=False)

    def tags(row) -> str:
        return " ".join(str(classes[j]) for j in np.flatnonzero(row)) or "-"

    p = np.clip(probs, 1e-12, 1 - 1e-12)
    loss = -(y * np.log(p) + (1 - y) * np.log(1 - p)).mean(1)
    worst = np.argsort(-loss, kind="stable")[: 3 * k]
    cells = [(images[i], f"{names[i]}\nactual {tags(y[i] > 0.5)}\npredicted {tags(pred[i])}")
             for i in worst]  # fmt: skip
    rows = [cells[i : i + k] for i in range(0, len(cells), k)] or [[]]
    plot_images(rows, run_dir / "top_losses.png", show, "top losses (validation)")
    errors = (table["false"] + table["missed"]).to_numpy()
    cuts = thresholds if thresholds is not None else [0.5] * len(classes)
    for c in np.argsort(-errors, kind="stable")[:MAX_CLASS_PLOTS]:
        label = classes[c]
        rows = [
            [(images[i], f"{kind}\n{names[i]}  p({label})={probs[i, c]:.2f}") for i in idx]
            for kind, idx in tag_misses(y, probs, pred, c, k, cuts[c]).items()
        ]
        plot_images(rows, run_dir / f"class_{file_name(label)}.png", show, f"tag {label}")

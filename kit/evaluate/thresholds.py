"""Per-tag decision thresholds for a multi-label task scored by F-beta: tuned on the validation
(out-of-fold) predictions, and applied only where they help out of sample."""

import numpy as np

from kit.evaluate.metrics import score

GRID = np.round(np.arange(0.05, 0.96, 0.05), 2)  # candidate thresholds for each tag
PASSES = 2  # coordinate ascent over the tags: a second pass settles what the first moved


def decide(probs: np.ndarray, thresholds) -> np.ndarray:
    """Each tag at or above its threshold, as 0/1; a row with none keeps the tag closest to its
    threshold (highest p / threshold), so that every image gets a tag."""
    t = np.asarray(thresholds, dtype=np.float64)
    on = probs >= t
    none = ~on.any(1)
    on[none, (probs[none] / t).argmax(1)] = True
    return on.astype(np.float64)


def tune(metric: str, y: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Per-tag thresholds: the best one threshold for every tag (GRID and 0.5), then coordinate
    ascent, each tag in turn taking the value of GRID that most raises `metric` with the other
    tags' held. Starting from the shared best rather than from 0.5 matters: an undertrained
    model's sigmoids may all sit below 0.5, where moving one tag alone changes little."""
    shared = [np.full(probs.shape[1], v) for v in (0.5, *GRID)]
    found = [score(metric, y, decide(probs, t)) for t in shared]
    best, t = max(found), shared[int(np.argmax(found))]
    for _ in range(PASSES):
        for c in range(probs.shape[1]):
            for v in GRID:
                trial = t.copy()
                trial[c] = v
                s = score(metric, y, decide(probs, trial))
                if s > best:
                    best, t = s, trial
    return t


def threshold_tuning(metric: str, y: np.ndarray, probs: np.ndarray, groups: np.ndarray) -> dict:
    """`metric` at 0.5 and with tuned thresholds, each group's tags decided by thresholds tuned on
    the other groups (folds, or halves of the validation set), so the "after" is out of sample;
    the thresholds for the test set are tuned on all of them."""
    after = np.empty_like(probs, dtype=np.float64)
    for g in np.unique(groups):
        held = groups == g
        after[held] = decide(probs[held], tune(metric, y[~held], probs[~held]))
    before, after = score(metric, y, probs), score(metric, y, after)
    t = tune(metric, y, probs)
    print(f"per-tag thresholds ({t.min():.2f}-{t.max():.2f}): {metric} {before:.4f} -> "
          f"{after:.4f} out of sample{'' if after > before else '; not applied'}")  # fmt: skip
    return {"thresholds": t.tolist(), f"{metric}_before_thresholds": before,
            f"{metric}_after_thresholds": after, "thresholded": bool(after > before)}  # fmt: skip

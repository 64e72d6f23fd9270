"""Calibrated probabilities for log loss: temperature scaling (Guo et al., 2017), and whether it
helps out of sample."""

import numpy as np

from kit.evaluate.metrics import LOGLOSS_EPS, logloss, score


def temperature(y: np.ndarray, probs: np.ndarray) -> float:
    """The temperature T that minimises log loss of probs ** (1 / T), renormalised: T > 1
    softens overconfident probabilities (Guo et al., 2017, on log-probabilities)."""
    from scipy.optimize import minimize_scalar

    logp = np.log(np.clip(probs.astype(np.float64), LOGLOSS_EPS, 1))
    found = minimize_scalar(lambda t: logloss(y, scaled(logp, t)), bounds=(0.05, 20),
                            method="bounded")  # fmt: skip
    return float(found.x)


def scaled(logp: np.ndarray, t: float) -> np.ndarray:
    z = logp / t
    z -= z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def calibrate(probs: np.ndarray, t: float) -> np.ndarray:
    """`probs` at temperature `t`."""
    return scaled(np.log(np.clip(probs.astype(np.float64), LOGLOSS_EPS, 1)), t)


def temperature_scaling(y: np.ndarray, probs: np.ndarray, groups: np.ndarray) -> dict:
    """Log loss before and after temperature scaling, each group's predictions scaled by a
    temperature fitted on the other groups (folds, or halves of the validation set), so the
    "after" is out of sample; the temperature for the test set is fitted on all of them."""
    after = np.empty_like(probs, dtype=np.float64)
    for g in np.unique(groups):
        held = groups == g
        after[held] = calibrate(probs[held], temperature(y[~held], probs[~held]))
    before, after = score("logloss", y, probs), score("logloss", y, after)
    t = temperature(y, probs)
    print(f"temperature scaling (T={t:.2f}): log loss {before:.4f} -> {after:.4f} out of sample"
          f"{'' if after < before else '; not applied'}")  # fmt: skip
    return {"temperature": t, "logloss_before_calibration": before,
            "logloss_after_calibration": after, "calibrated": bool(after < before)}  # fmt: skip

"""metrics.json, the record a finished run (or ensemble) leaves: what it scored, which
predictions it submits and how they become the submission. Written and read only here, so the
names that training, `kit ensemble`, `kit predict`, `kit submit`, `kit runs` and the report
share cannot drift apart. The file stays one flat JSON object, as runs made before wrote it."""

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from kit.files import read_json, write_json

FILE = "metrics.json"


def score_key(metric: str, kind: str = "valid", tta: bool = False) -> str:
    """A score's name: valid_auc, valid_tta_auc, folds_auc (per fold), test_auc (held out)."""
    return f"{kind}{'_tta' if tta else ''}_{metric}"


@dataclass
class Record:
    classes: list  # in the order of the predictions' columns
    submitted: str = "plain"  # "tta" or "plain": the validation predictions that scored best
    data: str | None = None  # the folder trained on: whose sample_submission.csv submit checks
    folds: int = 0
    calibrated: bool | None = None  # log loss: the test probabilities scaled by `temperature`
    temperature: float | None = None
    thresholded: bool | None = None  # multi-label F-beta: each tag decided at its tuned threshold
    thresholds: list | None = None
    method: str | None = None  # a `kit ensemble` run: how its `members` are blended
    members: list | None = None
    threshold: float | None = None  # an ensemble's tuned binary threshold (--tune-threshold)
    epochs: int | None = None
    seconds: float | None = None
    rest: dict = field(default_factory=dict)  # scores by score_key, rates, budget, versions

    @property
    def tta(self) -> bool:
        return self.submitted == "tta"

    @property
    def ensemble(self) -> bool:
        return self.method is not None

    def score(self, metric: str, kind: str = "valid", tta: bool = False):
        return self.rest.get(score_key(metric, kind, tta))

    def submitted_score(self, metric: str):
        """The validation (out-of-fold) score of the predictions submitted."""
        return self.score(metric, "valid", self.tta)

    def get(self, key: str, default=None):
        return self.to_json().get(key, default)

    def decided(self, probs: np.ndarray) -> np.ndarray:
        """A run's test probabilities as its submission takes them: calibrated and
        thresholded as validation decided."""
        from kit.evaluate.calibration import calibrate  # `kit runs` reads records without them
        from kit.evaluate.thresholds import decide

        if self.calibrated:
            probs = calibrate(probs, self.temperature)
        if self.thresholded:  # the tags each image's submission lists
            probs = decide(probs, self.thresholds)
        return probs

    def to_json(self) -> dict:
        out = {k: v for k, v in asdict(self).items() if k != "rest" and v is not None}
        return {**self.rest, **out}

    @classmethod
    def from_json(cls, obj: dict) -> "Record":
        known = {f.name for f in fields(cls)} - {"rest"}
        return cls(**{k: v for k, v in obj.items() if k in known},
                   rest={k: v for k, v in obj.items() if k not in known})  # fmt: skip


def is_finished(run_dir: Path) -> bool:
    """A run folder whose run got to its end (the record is written last)."""
    return (Path(run_dir) / FILE).is_file()


def read_record(run_dir: Path) -> Record:
    return Record.from_json(read_json(Path(run_dir) / FILE))


def write_record(run_dir: Path, record: Record) -> dict:
    """Write `record`; returns it as the flat dict `kit.run` and `kit ensemble` return."""
    out = record.to_json()
    write_json(Path(run_dir) / FILE, out)
    return out

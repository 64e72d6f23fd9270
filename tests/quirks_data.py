"""Small folders with the quirks competitions ship, for tests/test_csv_quirks.py and
tests/test_folder_quirks.py: a tiny csv layout of real digit scans, and `kit new` run on it."""

import layouts_data
import numpy as np
import pandas as pd

from kit.cli import main
from kit.recipe import load_competition

WORDS = ["crème", "thé"]  # labels that UTF-8 and cp1252 write differently


def tiny(dest, n_train=40, n_test=10, names=("0", "1"), fill="0.5"):
    """A csv layout of real digit scans (0s and 1s), 32x32 JPEGs: train.csv `id,label` naming
    train/*.jpg, sample_submission.csv the test/*.jpg filled with `fill`, solution.csv."""
    rng = np.random.default_rng(0)
    (tx, ty), (vx, vy) = layouts_data.split(n_train, n_test, 2)
    ids = [f"{i:04d}.jpg" for i in range(n_train + n_test)]
    layouts_data.draw(dest, [*tx, *vx], n_train, ("train", "test"), ids, 32, rng)
    pd.DataFrame({"id": ids[:n_train], "label": [names[t] for t in ty]}).to_csv(
        dest / "train.csv", index=False)  # fmt: skip
    pd.DataFrame({"id": ids[n_train:], "label": fill}).to_csv(dest / "sample_submission.csv",
                                                             index=False)  # fmt: skip
    layouts_data.solution(dest, ids[n_train:], [names[t] for t in vy])
    return dest


def kit_new(folder, tmp_path, *args):
    """`kit new x --data FOLDER --metric auc` in tmp_path: the exit code."""
    with layouts_data.working_in(tmp_path):
        return main(["new", "x", "--data", str(folder), "--metric", "auc", *args])


def recipe(tmp_path):
    with layouts_data.working_in(tmp_path):
        return load_competition("x").RECIPE


def refused(code, tmp_path, capsys) -> str:
    """The one line of a refusal; nothing was written."""
    err = capsys.readouterr().err.strip()
    assert code == 1 and err.splitlines() == [err] and err.startswith("kit: error: "), err
    assert not (tmp_path / "competitions").exists()
    return err


def rewrite(path, change):
    path.write_bytes(change(path.read_bytes()))

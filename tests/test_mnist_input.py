"""Bad Digit Recognizer folders: one clear line, a non-zero exit, nothing written."""

import pandas as pd
import pytest

from kit.cli import main


def edit(name, change):
    """A spoiler that rewrites one CSV of the folder through `change(df) -> df`."""

    def spoil(folder):
        change(pd.read_csv(folder / name)).to_csv(folder / name, index=False)

    return spoil


def set_cell(row, col, value):
    def change(df):
        df[col] = df[col].astype(object)
        df.loc[row, col] = value
        return df

    return change


def drop_last_pixel(df):
    return df.drop(columns=["pixel783"])


CASES = {
    "no label column": (
        edit("train.csv", lambda d: d.rename(columns={"label": "digit"})),
        "train.csv has no 'label' column",
    ),
    "pixels not square": (
        lambda f: [edit(n, drop_last_pixel)(f) for n in ("train.csv", "test.csv")],
        "783 pixel columns, not a square number",
    ),
    "test and train differ": (
        edit("test.csv", drop_last_pixel),
        "train.csv has 784 pixel columns but test.csv has 783",
    ),
    "non-numeric pixel": (
        edit("train.csv", set_cell(3, "pixel300", "dark")),
        "column pixel300 has a non-numeric value 'dark' on row 5",
    ),
    "missing pixel": (
        edit("test.csv", set_cell(7, "pixel10", None)),
        "test.csv is missing a value on row 9 (pixel10)",
    ),
    "pixel out of range": (
        edit("train.csv", set_cell(0, "pixel1", 300)),
        "pixel values outside 0-255",
    ),
    "label outside classes": (
        edit("train.csv", set_cell(2, "label", 11)),
        "labels outside 0-9, e.g. '11' on row 4",
    ),
    "empty test.csv": (edit("test.csv", lambda d: d.iloc[:0]), "test.csv has no rows"),
    "header-only train.csv": (
        edit("train.csv", lambda d: d.iloc[:0]),
        "train.csv has a header but no rows",
    ),
    "gzipped train.csv": (
        lambda f: (f / "train.csv").write_bytes(b"\x1f\x8b\x08" + bytes(64)),
        "train.csv is a gzip archive, not a CSV",
    ),
    "zero-byte test.csv": (lambda f: (f / "test.csv").write_text(""), "test.csv is empty"),
    "no test.csv": (lambda f: (f / "test.csv").unlink(), "test.csv is missing"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_folder(case, mnist_copy, tmp_path, capsys):
    spoil, message = CASES[case]
    spoil(mnist_copy)
    out = tmp_path / "out"
    code = main(["run", "mnist", "--data", str(mnist_copy), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert err.splitlines() == [err] and err.startswith("kit: error: ")
    assert message in err
    assert not (out / "submissions").exists()
    assert not (out / "runs").exists() or not any((out / "runs").rglob("*"))

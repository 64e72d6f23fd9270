"""CSV files read one way for every reader, `kit new`'s and `kit run`'s: ids and labels as text
(000123 stays 000123), only an empty cell missing, and a file that cannot be read said in one
line."""

import re
from pathlib import Path

import pandas as pd

from kit.errors import KitError

PIXEL = re.compile(r"pixel\d+")


def read_csv(path: Path, what: str, text=(), **kw) -> pd.DataFrame:
    """`path` with its `text` columns (None: every column but pixel values) read as written;
    only an empty cell is missing (NA and None are names)."""
    if not path.is_file():
        raise KitError(f"{path} is missing; the folder should hold the competition's {what}")
    try:
        if text is None:
            text = [c for c in pd.read_csv(path, nrows=0).columns if not PIXEL.fullmatch(str(c))]
        return pd.read_csv(path, low_memory=False, dtype={c: str for c in text if c},
                           keep_default_na=False, na_values=[""], **kw)  # fmt: skip
    except pd.errors.EmptyDataError:
        raise KitError(f"{path} is empty; download it again from Kaggle") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise KitError(f"{path} is not a readable CSV ({e})") from None


def column(df: pd.DataFrame, col: str, path: Path, flag: str) -> pd.Series:
    """`df[col]`; a KitError naming the flag to fix when it is absent, or the first empty row."""
    if col not in df.columns:
        have = ", ".join(map(str, df.columns[:6]))
        raise KitError(f"{path.name} has no {col!r} column (it has {have}); name the right one "
                       f"with --{flag}")  # fmt: skip
    values = df[col]
    if values.isna().any():
        row = int(values.isna().to_numpy().argmax())
        raise KitError(f"{path.name} has no {col} on row {row + 2}")
    return values

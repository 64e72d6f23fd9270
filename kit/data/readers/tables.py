"""CSV files read one way for every reader, `kit new`'s and `kit run`'s: ids and labels as text
(000123 stays 000123), only an empty cell missing, and a file that cannot be read said in one
line."""

import re
from pathlib import Path

import pandas as pd

from kit.errors import KitError

PIXEL = re.compile(r"pixel\d+")
# Tried after UTF-8 (whose BOM pandas drops): Windows' Western code page, as Excel saves a CSV,
# then Latin-1, which reads any byte.
FALLBACKS = ("cp1252", "latin-1")
PACKED = {b"PK\x03\x04": "a zip", b"\x1f\x8b": "a gzip", b"7z\xbc\xaf\x27\x1c": "a 7z"}


def encoding(path: Path) -> str:
    """utf-16 where the file starts with its BOM, else utf-8; a KitError for an archive or other
    binary file under a CSV's name."""
    with open(path, "rb") as f:
        head = f.read(4096)
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return "utf-16"
    packed = next((kind for magic, kind in PACKED.items() if head.startswith(magic)), None)
    if packed or b"\x00" in head:
        what = f"{packed} archive" if packed else "binary data"
        raise KitError(f"{path} is {what}, not a CSV; unpack it, or download it again")
    return "utf-8"


def read_csv(path: Path, what: str, text=(), **kw) -> pd.DataFrame:
    """`path` with its `text` columns (None: every column but pixel values) read as written;
    only an empty cell is missing (NA and None are names). Text that is not UTF-8 is read as
    cp1252 (else Latin-1), with a note."""
    if not path.is_file():
        raise KitError(f"{path} is missing; the folder should hold the competition's {what}")
    first = encoding(path)
    for enc in (first, *FALLBACKS) if first == "utf-8" else (first,):
        try:
            df = parse(path, enc, text, **kw)
        except UnicodeError:
            continue
        if enc in FALLBACKS:
            print(f"note: {path.name} is not UTF-8; read as {enc} text")
        return df
    raise KitError(f"{path} is not readable text ({first}); save it as UTF-8")


def parse(path: Path, enc: str, text, **kw) -> pd.DataFrame:
    kw = {"skipinitialspace": True, **kw}  # `id, label`: the columns id and label
    try:
        if text is None:
            cols = pd.read_csv(path, nrows=0, encoding=enc,
                               skipinitialspace=kw["skipinitialspace"]).columns  # fmt: skip
            text = [c for c in cols if not PIXEL.fullmatch(str(c))]
        return pd.read_csv(path, low_memory=False, dtype={c: str for c in text if c},
                           keep_default_na=False, na_values=[""], encoding=enc, **kw)  # fmt: skip
    except pd.errors.EmptyDataError:
        raise KitError(f"{path} is empty; download it again from Kaggle") from None
    except pd.errors.ParserError as e:
        reason = str(e).strip().splitlines()[-1].rstrip(".")
        raise KitError(f"{path} is not a readable CSV ({reason}); it may be cut short: download "
                       "it again") from None  # fmt: skip


def read_sample_csv(path: Path) -> pd.DataFrame:
    """sample_submission.csv, every cell as text, as written (the submission repeats its header
    and ids to the byte); a KitError for one of a header alone, or cut
    short (its last row lacks a cell, and the file its last line end)."""
    df = has_rows(read_csv(path, "sample submission", None, skipinitialspace=False), path)
    with open(path, "rb") as f:
        f.seek(-1, 2)
        ends = f.read(1) in b"\r\n"
    if df.iloc[-1].isna().any() and not ends:
        raise KitError(f"{path.name} is cut short: its last row ({len(df) + 1}) lacks a value; "
                       "download it again from Kaggle")  # fmt: skip
    return df


def has_rows(df: pd.DataFrame, path: Path) -> pd.DataFrame:
    """`df`, or a KitError for a CSV of a header alone."""
    if not len(df):
        raise KitError(f"{path.name} has a header but no rows; download it again from Kaggle")
    return df


def column(df: pd.DataFrame, col: str, path: Path, flag: str) -> pd.Series:
    """`df[col]`; a KitError naming the flag to fix when it is absent, or the first empty row."""
    if col not in df.columns:
        have = ", ".join(map(str, df.columns[:6]))
        raise KitError(f"{path.name} has no {col!r} column (it has {have}); name the right one "
                       f"with --{flag}")  # fmt: skip
    values = df[col]
    if values.isna().any():
        row = int(values.isna().to_numpy().argmax())
        cut = "; the file may be cut short: download it again" if row == len(df) - 1 else ""
        raise KitError(f"{path.name} has no {col} on row {row + 2}{cut}")
    return values

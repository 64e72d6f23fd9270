"""A competition on Kaggle: its data downloaded and unpacked, a submission checked again and
uploaded, its score awaited, and the scores filed into the records of the runs that wrote them.
"""

import os
import sys
import time
from pathlib import Path

import pandas as pd

from kit.data.archives import unpack
from kit.data.submission import (
    check_submission,
    labels_per_row,
    positive_class,
    read_sample,
    sample_path,
    submission_shape,
)
from kit.errors import KitError
from kit.files import building, read_json
from kit.kaggle.client import client, quiet, talking_to
from kit.paths import data_candidates, data_dir, output_root
from kit.recipe import Recipe, is_recipe, load_competition, saved_recipe
from kit.runs.record import Record, read_record
from kit.runs.records import (
    find_run,
    format_table,
    newest_submission,
    record_submission,
    run_id,
)

POLL_SECONDS = 5.0  # between checks of a submission's status


def download(name: str, slug: str, data: str | Path | None = None) -> Path:
    """Fetch a competition's files into the folder `kit run` looks in, and unpack them.

    A no-op when that folder already exists; nothing is left half-written on failure."""
    for folder in data_candidates(slug, data):
        if folder.is_dir() and any(folder.iterdir()):
            print(f"{name} data is already in {folder}; nothing to download")
            return folder
    dest = data_candidates(slug, data)[0] if data else default_data_dir(slug)
    with building(dest) as partial:
        api = client()
        print(f"downloading {slug} from Kaggle into {dest}")
        with talking_to(f"competition {slug!r}", slug):
            api.competition_download_files(slug, path=str(partial), quiet=not sys.stdout.isatty())
        archive = partial / f"{slug}.zip"
        if not archive.exists():
            raise KitError(f"Kaggle sent no {slug}.zip; try again")
        unpack(partial)
        archive.unlink()
    if is_recipe(name):
        print(f"{name} data is in {dest}; train with `kit run {name}`")
    else:
        print(f"{slug} data is in {dest}; write its recipe with `kit new NAME --data {dest}`")
    return dest


def default_data_dir(slug: str) -> Path:
    """Where a download goes: $KIT_DATA/<slug>, else ./data/<slug> (searched by `kit run`)."""
    root = os.environ.get("KIT_DATA")
    return Path(root) / slug if root else Path("data") / slug


def submit(slug: str, file: Path, message: str, wait: bool = True, timeout: float = 600) -> dict:
    """Upload a checked submission file, make sure Kaggle took it, and (if `wait`) return its
    public score once Kaggle has scored it; the result is also written to its run's record."""
    api = client()
    print(f"submitting {file} to {slug}: {message!r}")
    with talking_to(f"competition {slug!r}", slug), quiet():
        result = api.competition_submit(str(file), message, slug, quiet=True)
    if not result.ref or result.message == api.COMPETITION_SUBMIT_UPLOAD_FAILED_MESSAGE:
        why = f" ({result.message})" if result.message else ""
        raise KitError(f"Kaggle did not accept the upload of {file}{why}; nothing was "
                       "submitted, try again")  # fmt: skip
    entry = {"ref": result.ref, "file": str(file), "message": message, "status": "PENDING",
             "public_score": None, "submitted": time.strftime("%Y-%m-%d %H:%M:%S")}  # fmt: skip
    run_dir = find_run(file)
    if run_dir:
        record_submission(run_dir, entry)
    if not wait:
        print(f"submitted (ref {result.ref}); see its score with `kit submissions`")
        return entry
    entry |= wait_for_score(api, slug, result.ref, timeout)
    if run_dir:
        record_submission(run_dir, entry)
    if entry["status"] == "ERROR":
        raise KitError(f"Kaggle could not score submission {result.ref}: "
                       f"{entry.get('error') or 'no reason given'}")  # fmt: skip
    print(f"public score {entry['public_score']} (submission {result.ref})")
    return entry


def listing(api, slug: str) -> list:
    with talking_to(f"competition {slug!r}", slug):
        return api.competition_submissions(slug) or []


def as_entry(s) -> dict:
    """The fields of one of the client's submission objects that kit shows and records."""
    return {
        "ref": s.ref,
        "status": s.status.name,
        "public_score": s.public_score or None,
        "private_score": s.private_score or None,
        "error": s.error_description or None,
        "date": str(s.date)[:19] if s.date else "",
        "file": s.file_name or "",
        "message": s.description or "",
    }


def wait_for_score(api, slug: str, ref: int, timeout: float) -> dict:
    """Poll until Kaggle has scored submission `ref` (or failed to), at most `timeout` seconds."""
    start = last_line = time.monotonic()
    tty = sys.stdout.isatty()
    if not tty:
        print(f"waiting for Kaggle to score submission {ref} (at most {timeout:.0f} s)")
    while True:
        found = [as_entry(s) for s in listing(api, slug) if s and s.ref == ref]
        if found and found[0]["status"] != "PENDING":
            if tty:
                print()
            return {k: found[0][k] for k in ("status", "public_score", "error")}
        waited = time.monotonic() - start
        if waited > timeout:
            raise KitError(f"submission {ref} is still being scored after {waited:.0f} s; "
                           "see its score later with `kit submissions`")  # fmt: skip
        if tty:
            print(f"\rwaiting for Kaggle to score submission {ref}: {waited:.0f} s", end="")
        elif time.monotonic() - last_line >= 30:  # a log gets a line every 30 s
            print(f"still waiting ({waited:.0f} s)")
            last_line = time.monotonic()
        time.sleep(POLL_SECONDS)


def submissions(slug: str) -> list[dict]:
    """The competition's submissions on Kaggle, newest first."""
    return [as_entry(s) for s in listing(client(), slug) if s]


def submit_run(name: str, file=None, message=None, wait=True, out=None, data=None, timeout=600):
    """`kit submit`: the newest submission for `name` (or `file`), checked again against
    sample_submission.csv by the rules its run wrote it by, then submitted and scored."""
    comp = load_competition(name)
    file = Path(file) if file else newest_submission(output_root(out), name)
    if not file.is_file():
        raise KitError(f"{file} does not exist; give a submission CSV or leave FILE out for "
                       f"the newest one in submissions/{name}/")  # fmt: skip
    run_dir = find_run(file)
    record = read_record(run_dir) if run_dir else None
    r = written_by(comp.RECIPE, run_dir)
    check_file(file, r, record, data, getattr(comp, "DATA", None))
    if not message:
        m = r.metric
        score = record.submitted_score(m) if record else None
        message = f"kit {file.stem}" + (f": valid {m} {score:.4f}" if score is not None else "")
    return submit(comp.RECIPE.slug, file, message, wait, timeout)


def written_by(packaged: Recipe, run_dir: Path | None) -> Recipe:
    """The recipe a submission was made by: its run's, as saved with the flags it ran with
    (--sub-shape, --metric, --top-k...; an ensemble's: its members'), else the packaged one (a
    file of no run; an ensemble made before ensembles saved their members' recipe)."""
    saved = read_json(run_dir / "recipe.json", {}) if run_dir else {}
    legacy = "members" in saved and "sub_shape" not in saved
    return saved_recipe(saved) if saved and not legacy else packaged


def check_file(file: Path, r: Recipe, record: Record | None, data=None, also=None) -> None:
    """The checks `kit run` made when writing the file, repeated on the file as it is now; the
    sample is searched as `kit run` searches, then where `kit new` found the data (`also`)."""
    folder = Path(record.data) if data is None and record and record.data else None
    if folder is None or not folder.is_dir():
        fix = "give the folder that holds its sample_submission.csv with --data"
        folder = data_dir(r.name, r.slug, data, also, fix)
    sample = read_sample(folder)
    if sample is None:
        raise KitError(f"cannot check {file}: no sample_submission.csv in {folder}; pass the "
                       "competition folder with --data")  # fmt: skip
    try:
        df = pd.read_csv(file, dtype=str, keep_default_na=False, na_values=[""])  # as text
    except (ValueError, UnicodeDecodeError) as e:
        raise KitError(f"{file} is not a readable CSV ({e})") from None
    # label submissions (tags, top k): the run's classes when the file came from a run
    classes = record.classes if record else None
    labels, shape = None, submission_shape(r, sample, classes)
    if shape == "label":
        labels = classes or sorted(set(df.iloc[:, 1:].stack()), key=str)
    elif shape in ("tags", "top_k"):
        words = {t for v in df.iloc[:, 1].astype(str) for t in v.split(" ")}
        labels = classes or sorted(words)
    k = labels_per_row(r, shape, labels) if labels else 1
    try:
        check_submission(df, sample, sample.iloc[:, 0].tolist(), labels, shape, k)
    except KitError as e:
        raise KitError(f"{file} does not match {sample_path(folder)}: {e}; "
                       "nothing was uploaded") from None  # fmt: skip
    print(f"checked {file.name} against {sample_path(folder)}: {len(df)} rows, "
          f"{holds(r, shape, sample, classes or labels, k)}")  # fmt: skip


def holds(r: Recipe, shape: str, sample: pd.DataFrame, classes: list | None, k: int) -> str:
    """What a submission's value columns hold, in words, by the recipe that made it."""
    col, n = sample.columns[1], len(classes or [])
    if shape == "probability":
        which = classes[positive_class(r, classes)] if classes else r.positive
        return (
            f"the probability of {f'class {str(which)!r}' if which else 'the last class'} in {col}"
        )
    return {
        "label": f"one of {n} labels in {col}",
        "probabilities": f"one probability column per class ({len(sample.columns) - 1})",
        "tags": f"the tags (of {n}) in {col}",
        "top_k": f"the {k} likeliest of {n} labels in {col}, best first",
    }[shape]


def show_submissions(name: str, out=None) -> list[dict]:
    """`kit submissions`: print the competition's submissions, and file the scores Kaggle has
    given since into the records of the runs that wrote them."""
    entries = submissions(load_competition(name).RECIPE.slug)
    runs = output_root(out) / "runs" / name
    for e in entries:
        run_dir = runs / run_id(Path(e["file"]).stem)
        known = {s.get("ref") for s in read_json(run_dir / "submissions.json", [])}
        if e["file"] and e["ref"] in known:
            record_submission(run_dir, e)
    if not entries:
        print(f"no submissions to {name} on Kaggle yet; send one with `kit submit {name}`")
    else:
        cols = ["date", "ref", "status", "public_score", "private_score", "file", "message"]
        print(format_table(entries, cols))
    return entries

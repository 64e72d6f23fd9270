"""The local record of runs: which run wrote a submission, its scores, its leaderboard results.

Plain JSON files in each run folder; reading them imports neither torch nor kaggle."""

import re
from datetime import datetime
from pathlib import Path

from kit.errors import KitError
from kit.files import read_json, save_figure, write_json
from kit.paths import output_root
from kit.recipe import is_recipe, recipe_names
from kit.runs.record import is_finished, read_record

PREDICTED = re.compile(r"-predict-\d{8}-\d{6}(-\d+)?$")  # as predicted_stem names them
CV_LB = "cv_vs_lb.png"  # in runs/<name>/: every scored run's CV against its public score
RECORDS = ("metrics.json", "submissions.json")  # a run's files that the plot is drawn from


def predicted_stem(root: Path, name: str, run: str) -> str:
    """The name of a submission `kit predict` makes with the run of id `run`:
    <run-id>-predict-<time>, numbered if that submission exists (never over a file)."""
    stem = f"{run}-predict-{datetime.now():%Y%m%d-%H%M%S}"
    taken = {p.stem for p in (root / "submissions" / name).glob(f"{stem}*.csv")}
    return next(s for n in range(1, 1000) if (s := stem + (f"-{n}" if n > 1 else "")) not in taken)


def run_id(stem: str) -> str:
    """The id of the run whose models made the submission named `stem`."""
    return PREDICTED.sub("", stem)


def find_run(submission: Path) -> Path | None:
    """The run folder that wrote `<root>/submissions/<name>/<run-id>.csv`, or whose models
    `kit predict` used for `<run-id>-predict-<time>.csv`, if it is there."""
    submission = Path(submission).resolve()
    run_dir = submission.parents[2] / "runs" / submission.parent.name / run_id(submission.stem)
    return run_dir if is_finished(run_dir) else None


def record_submission(run_dir: Path, entry: dict) -> None:
    """Add or update (by Kaggle's ref) one leaderboard submission in the run's record."""
    path = run_dir / "submissions.json"
    entries = [e for e in read_json(path, []) if e.get("ref") != entry["ref"]]
    write_json(path, [*entries, entry])


def newest_submission(root: Path, name: str) -> Path:
    found = sorted((root / "submissions" / name).glob("*.csv"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise KitError(f"no submission for {name} in {root / 'submissions' / name}; "
                       f"train one with `kit run {name}`")  # fmt: skip
    return found[-1]


def completed_runs(root: Path, name: str) -> list[Path]:
    """Finished runs, oldest first (a run folder gets its name only when complete)."""
    runs = root / "runs" / name
    if not runs.is_dir():
        return []
    return sorted(p for p in runs.iterdir() if is_finished(p))


def runs_table(root: Path, name: str) -> list[dict]:
    """One row per finished run: when, what, validation and leaderboard scores, submission."""
    rows = []
    for run_dir in completed_runs(root, name):
        record, recipe = read_record(run_dir), read_json(run_dir / "recipe.json", {})
        m = recipe.get("metric", "accuracy")
        scored = [e for e in read_json(run_dir / "submissions.json", []) if e.get("public_score")]
        sub = root / "submissions" / name / f"{run_dir.name}.csv"
        rows.append({
            "run": run_dir.name,
            "date": f"{run_dir.name[:4]}-{run_dir.name[4:6]}-{run_dir.name[6:8]} "
                    f"{run_dir.name[9:11]}:{run_dir.name[11:13]}",
            "arch": recipe.get("arch", "?"),
            "metric": m,
            "valid": record.score(m),
            "valid_tta": record.score(m, tta=True),
            "cv": record.submitted_score(m),  # of the predictions the submission holds
            "public": scored[-1]["public_score"] if scored else None,
            "submission": str(sub) if sub.exists() else "",
        })  # fmt: skip
    return rows


def plot_cv_lb(root: Path, name: str, rows: list[dict]) -> Path | None:
    """runs/<name>/cv_vs_lb.png: each scored run's validation (out-of-fold) score of what it
    submitted against its public score, when two or more runs were scored: does validation
    track the leaderboard? Drawn again only when a run's record is newer than the plot."""
    scored = [r for r in rows if r["public"] is not None and r["cv"] is not None]
    path = root / "runs" / name / CV_LB
    if len(scored) < 2:
        return None
    records = [root / "runs" / name / r["run"] / f for r in scored for f in RECORDS]
    newest = max(p.stat().st_mtime for p in records if p.is_file())
    if path.is_file() and path.stat().st_mtime >= newest:
        return path
    import matplotlib.pyplot as plt  # `kit runs` without a plot to draw imports neither
    import pandas as pd

    cv, lb = [r["cv"] for r in scored], [float(r["public"]) for r in scored]
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.scatter(cv, lb)
    for r, x, y in zip(scored, cv, lb):
        ax.annotate(f"{r['run'][:15]} {r['arch']}", (x, y), fontsize=7, alpha=0.8)
    low, high = min(cv + lb), max(cv + lb)
    ax.plot([low, high], [low, high], ls=":", c="grey", label="CV = LB")
    rank = pd.Series(cv).corr(pd.Series(lb), method="spearman")
    m = scored[0]["metric"]
    ax.set(xlabel=f"CV {m} (validation / out-of-fold)", ylabel=f"public leaderboard {m}",
           title=f"{name}: {len(scored)} runs, rank correlation {rank:.2f}")  # fmt: skip
    ax.legend(loc="lower right")
    save_figure(fig, path, show=False)
    return path


def format_table(rows: list[dict], columns: list[str]) -> str:
    """Rows as aligned text columns; floats to 4 places, missing values as '-'."""

    def cell(v):
        return "-" if v is None or v == "" else f"{v:.4f}" if isinstance(v, float) else str(v)

    cells = [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = [columns, *cells]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip() for line in lines)


def show_runs(name: str, out=None, runs=()) -> list[dict]:
    """`kit runs`: print the table of `name`'s finished runs, or compare the `runs` named."""
    if not is_recipe(name):
        raise KitError(f"unknown recipe {name!r}; the recipes are: {', '.join(recipe_names())}")
    root = output_root(out)
    if runs:
        return compare_runs(root, name, runs)
    rows = runs_table(root, name)
    if not rows:
        print(f"no finished {name} runs in {root / 'runs' / name}; train one with `kit run {name}`")
        return rows
    cols = ["date", "arch", "metric", "valid", "valid_tta", "public", "submission"]
    print(format_table(rows, cols))
    plot = plot_cv_lb(root, name, rows)
    if plot:
        print(f"CV against the public score: {plot}")
    return rows


SCORES = ["valid", "valid_tta", "test", "public", "epochs", "seconds", "head_lr", "lr", "lr_low"]


def run_folder(root: Path, name: str, run: str) -> Path:
    """A finished run by id, folder, or a unique start of its id."""
    runs = root / "runs" / name
    if Path(run).is_dir() and is_finished(Path(run)):
        return Path(run)
    found = [p for p in completed_runs(root, name) if p.name.startswith(run)]
    if len(found) != 1:
        what = "no finished run" if not found else f"{len(found)} finished runs"
        raise KitError(f"{what} {run!r} in {runs}; `kit runs {name}` lists them")
    return found[0]


def run_column(run_dir: Path) -> tuple[dict, dict]:
    """A run's recipe, and its scores and rates under SCORES' names."""
    record, recipe = read_record(run_dir), read_json(run_dir / "recipe.json", {})
    m = recipe.get("metric", "accuracy")
    scored = [e for e in read_json(run_dir / "submissions.json", []) if e.get("public_score")]
    rates = record.rest if "lr" in record.rest else read_json(run_dir / "fold0" / "unit.json", {})
    rates = rates.get("rates", rates)
    scores = {
        "valid": record.score(m),
        "valid_tta": record.score(m, tta=True),
        "test": record.score(m, "test"),
        "public": scored[-1]["public_score"] if scored else None,
        "epochs": record.epochs,
        "seconds": record.seconds,
        **{k: f"{rates[k]:.2e}" for k in ("head_lr", "lr", "lr_low") if k in rates},
    }
    return recipe, scores


def compare_runs(root: Path, name: str, runs: list) -> list[dict]:
    """`kit runs NAME RUN RUN...`: the recipe fields in which the runs differ, then their
    scores, one column per run; returns one row per line printed."""
    folders = [run_folder(root, name, run) for run in runs]
    columns = [run_column(f) for f in folders]
    keys = sorted({k for recipe, _ in columns for k in recipe})
    differ = [k for k in keys if len({repr(recipe.get(k)) for recipe, _ in columns}) > 1]
    differ = differ if len(folders) > 1 else keys  # one run: its whole recipe
    rows = [{"": k, **{f.name: c[0].get(k) for f, c in zip(folders, columns)}} for k in differ]
    rows += [{"": k, **{f.name: c[1].get(k) for f, c in zip(folders, columns)}} for k in SCORES
             if any(c[1].get(k) is not None for c in columns)]  # fmt: skip
    print(format_table(rows, ["", *(f.name for f in folders)]))
    if len(folders) > 1 and not differ:
        print("(the recipes are the same)")
    return rows

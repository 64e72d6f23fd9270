"""report.html: one page per run (scores, learning rates, curves, finder and interpretation
plots), with every image linked relatively so that the run folder can be moved or downloaded."""

import html
from pathlib import Path

import pandas as pd

from kit.files import read_json, replacing
from kit.runs.record import Record, read_record

STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
td, th { border: 1px solid #ccc; padding: 0.25em 0.7em; text-align: left; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.3em 0; }
figure { display: inline-block; margin: 0.5em; vertical-align: top; max-width: 48%; }
figure.wide { max-width: 100%; }
figcaption { font-size: 0.85em; color: #555; }
"""
FINDER = ("lr_find_frozen.png", "lr_find.png")
INTERPRETATION = ("roc.png", "confusion_matrix.png", "top_losses.png")


def cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.2e}" if abs(v) < 1e-2 and v else f"{v:.4f}" if abs(v) < 100 else f"{v:.1f}"
    if isinstance(v, list):
        return ", ".join(cell(x) for x in v)
    return html.escape("-" if v is None else str(v))


def table(rows: list[tuple], head: tuple = ()) -> str:
    th = "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>" if head else ""
    trs = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table>{th}{trs}</table>"


def figure(run_dir: Path, rel: str, caption: str, wide: bool = False) -> str:
    if not (run_dir / rel).is_file():
        return ""
    src = html.escape(rel)
    return (f'<figure{" class=wide" if wide else ""}><a href="{src}"><img src="{src}" '
            f'alt="{html.escape(caption)}"></a><figcaption>{html.escape(caption)}</figcaption>'
            "</figure>")  # fmt: skip


def model_folders(run_dir: Path) -> list[str]:
    """The folders that trained a model: the run itself, or fold0/, fold1/... ('' is the run)."""
    folds = sorted((p.name for p in run_dir.glob("fold*") if p.is_dir()), key=lambda n: int(n[4:]))
    return [f"{f}/" for f in folds] or [""]


def scores(record: Record, m: str) -> list[tuple]:
    valid = "out-of-fold" if record.folds else "validation"
    rows = [
        (f"{valid} {m}", record.score(m)),
        (f"{valid} {m} with TTA", record.score(m, tta=True)),
        (f"{m} per fold", record.score(m, "folds")),
        (f"{m} per fold with TTA", record.score(m, "folds", tta=True)),
        (
            f"{valid} {m} at per-tag thresholds (out of sample)",
            record.get(f"{m}_after_thresholds"),
        ),
        ("per-tag thresholds applied", record.thresholded),
        (f"test {m} (held-out sample labels)", record.score(m, "test")),
        ("submitted predictions", record.submitted),
        ("epochs", record.epochs),
        ("seconds", record.seconds),
    ]
    return [(name, v) for name, v in rows if v is not None]


def rate_rule(recipe: dict, record: Record) -> str:
    """Which rule chose the rates, in words (recorded in metrics.json since the rules were
    measured; runs from before then used the finder's valley)."""
    if record.get("lr_rule"):
        return str(record.get("lr_rule"))
    if recipe.get("lr"):
        return f"fixed by --lr {recipe['lr']:g}"
    return "valley rule (fastai's valley), for each stage"


def rates(run_dir: Path, recipe: dict, record: Record) -> str:
    found = [
        (u or "run", read_json(run_dir / u / "unit.json", {}).get("rates"))
        for u in model_folders(run_dir)
    ]
    found = [(u, r) for u, r in found if r] or [
        ("run", {k: record.rest[k] for k in ("head_lr", "lr", "lr_low") if k in record.rest})
    ]
    keys = ["head_lr", "lr", "lr_low"]
    rows = [(u.rstrip("/"), *(f"{r[k]:.2e}" if k in r else None for k in keys)) for u, r in found]
    head = ("model", "head (body frozen)", "top group, unfrozen", "first group, unfrozen")
    rule = html.escape(rate_rule(recipe, record))
    return f"<p>Rule: {rule}; discriminative rates over the layer groups.</p>" + table(rows, head)


def write_report(run_dir: Path, run_id: str) -> Path:
    """Write run_dir/report.html from the run's records and the PNGs beside them."""
    recipe = read_json(run_dir / "recipe.json", {})
    record = read_record(run_dir)
    name, m = recipe.get("name", "?"), recipe.get("metric", "accuracy")
    parts = [f"<h1>{html.escape(name)} run {html.escape(run_id)}</h1>",
             f"<p>{html.escape(recipe.get('description', ''))}</p>",
             "<h2>Scores</h2>", table(scores(record, m)),
             "<h2>Learning rates</h2>", rates(run_dir, recipe, record)]  # fmt: skip
    if record.get("budget"):
        parts += ["<h2>Time limit</h2>", f"<p>{html.escape(record.get('budget')['note'])}</p>"]
    parts += [*plots(run_dir), "<h2>Recipe</h2>", table(sorted(recipe.items())),
              "<h2>Files</h2>", files(run_dir)]  # fmt: skip
    page = ("<!doctype html><html lang=en><head><meta charset=utf-8>"
            f"<title>{html.escape(name)} {html.escape(run_id)}</title><style>{STYLE}</style></head>"
            f"<body>{''.join(parts)}</body></html>\n")  # fmt: skip
    with replacing(run_dir / "report.html") as tmp:
        tmp.write_text(page)
    return run_dir / "report.html"


def plots(run_dir: Path) -> list[str]:
    """The curves and finder plots of every model, then the interpretation."""
    parts = ["<h2>Training curves</h2>"]
    parts += [figure(run_dir, f"{u}training_curves.png", f"{u}training_curves.png", True)
              for u in model_folders(run_dir)]  # fmt: skip
    parts.append("<h2>Learning-rate finder</h2>")
    parts += [
        figure(run_dir, f"{u}{png}", f"{u}{png}") for u in model_folders(run_dir) for png in FINDER
    ]
    parts.append("<h2>Interpretation (validation)</h2>")
    parts += [figure(run_dir, png, png) for png in INTERPRETATION]
    classes = sorted(run_dir.glob("class_*.png"), key=lambda p: p.name)
    parts += [figure(run_dir, p.name, p.name, True) for p in classes]
    confused = run_dir / "most_confused.csv"
    if confused.is_file():
        df = pd.read_csv(confused).head(10)
        rows = [tuple(r) for r in df.itertuples(index=False)]
        parts += ["<h3>Most confused</h3>", table(rows, tuple(df.columns))]
    tags = run_dir / "per_tag.csv"  # a multi-label task's precision and recall per tag
    if tags.is_file():
        df = pd.read_csv(tags)
        rows = [tuple(r) for r in df.itertuples(index=False)]
        parts += ["<h3>Per tag</h3>", table(rows, tuple(df.columns))]
    return parts + looks(run_dir) + doubts(run_dir)


def looks(run_dir: Path) -> list[str]:
    """Where the model looks: Grad-CAM over the top losses and per class (kit/train/cam.py)."""
    if not (run_dir / "grad_cam.png").is_file():
        return []
    note = (
        "<p>Grad-CAM of the predicted class: red where the network's last feature map "
        "pushes the class up; each image mapped by the model that held it out.</p>"
    )
    return ["<h2>Where the model looks</h2>", note,
            figure(run_dir, "grad_cam.png", "grad_cam.png", True)]  # fmt: skip


def doubts(run_dir: Path, shown: int = 20) -> list[str]:
    """The labels the held-out predictions doubt most (relabel.csv): candidate label noise."""
    path = run_dir / "relabel.csv"
    if not path.is_file():
        return []
    df = pd.read_csv(path, keep_default_na=False)
    held = "out-of-fold" if (run_dir / "oof.csv").is_file() else "validation"
    note = (f"<p>The training images whose {held} prediction gives another label better than "
            f'even odds, most confident first ({len(df)} in <a href="relabel.csv">relabel.csv</a>)'
            ": look at them before trusting their labels.</p>")  # fmt: skip
    rows = [tuple(r) for r in df.head(shown).itertuples(index=False)]
    return ["<h2>Labels to check</h2>", note, figure(run_dir, "relabel.png", "relabel.png", True),
            table(rows, tuple(df.columns)) if rows else ""]  # fmt: skip


def files(run_dir: Path) -> str:
    names = sorted(p.name for p in run_dir.iterdir() if p.suffix in (".csv", ".json"))
    links = "".join(f'<li><a href="{html.escape(n)}">{html.escape(n)}</a></li>' for n in names)
    return f"<ul>{links}</ul>"

"""--resume: an interrupted run goes on with its own recipe, data and weights. An option that
would change them cannot be honoured (epochs already trained, folds already written), so it is
refused in one line rather than ignored; one that repeats the run's own value is welcome, so
that the command that started a run, with --resume added, continues it."""

from pathlib import Path

from kit.errors import KitError
from kit.files import read_json
from kit.recipe import load_competition, recipe_fields
from kit.runs.folder import interrupted_run

# kit run's options that say where the run's inputs are, not what the run does
WHERE = ("data", "weights")


def resume_options(root: Path, name: str, run_id: str, options: dict) -> tuple[Path, dict]:
    """The partial folder of run `run_id` and the options `prepare` continues it with: the
    saved recipe, data and weights. `options` (kit run's, as given) must agree with them;
    --data and --weights may point elsewhere only where the run's own folder or file is gone
    (the run copied to another machine)."""
    partial = interrupted_run(root, name, run_id)
    job = read_json(partial / "job.json")
    saved = read_json(partial / "recipe.json")
    packaged = load_competition(name).RECIPE  # a field the run predates: the packaged value
    recipe = {f.name: saved.get(f.name, getattr(packaged, f.name)) for f in recipe_fields()}
    recipe = {k: v for k, v in recipe.items() if v is not None}
    if "fold_seed" not in saved:  # a run from before folds had a seed of their own
        recipe["fold_seed"] = recipe["seed"]
    where = {k: job.get(k) for k in WHERE}
    if options.get("sample"):  # the sample kit writes, as the run's job.json names it
        options = {**options, "data": str(root / "data" / f"{name}-sample")}
    for key, value in options.items():
        if value is None or key == "sample":
            continue
        if key not in recipe and key not in WHERE:  # prepare names the unknown field
            recipe[key] = value
        elif key in WHERE:
            where[key] = moved(run_id, key, where[key], value, options.get("sample"))
        elif recipe.get(key) != value:
            raise KitError(f"run {run_id} was started with {flag(key, recipe.get(key))}; "
                           f"--resume continues it as it was started: drop "
                           f"{flag(key, value)}, or start a new run with it")  # fmt: skip
    if not Path(where["data"]).is_dir():
        raise KitError(f"run {run_id} read its data from {where['data']}, which is not there; "
                       "give the folder where that data is now with --data PATH")  # fmt: skip
    return partial, {**where, **recipe}


def moved(run_id: str, key: str, saved: str | None, given: str, sample=False) -> str:
    """The run's data folder or weights file, `given` again or where it now is: a path other
    than the saved one is taken only where the saved one is gone."""
    if saved is not None and Path(given).resolve() == Path(saved).resolve():
        return saved
    if saved is not None and not Path(saved).exists():
        return given
    asked = "--sample" if sample else f"--{key} {given}"
    had = {"data": f"reads its data from {saved}",
           "weights": f"started from the weights {saved}" if saved else
           "found its weights without --weights"}[key]  # fmt: skip
    raise KitError(f"run {run_id} {had}; drop {asked} (--resume takes another "
                   f"{'folder' if key == 'data' else 'file'} only where that one is gone, "
                   "e.g. on another machine)")  # fmt: skip


def flag(key: str, value) -> str:
    """`value` of recipe field `key` as kit run's flag: --tta, --no-tta, --lr 0.003."""
    name = "--" + key.replace("_", "-")
    if isinstance(value, bool):
        return name if value else "--no-" + key.replace("_", "-")
    if isinstance(value, float):
        return f"{name} {value:g}"
    return f"{name} {value if value != '' else repr(value)}"

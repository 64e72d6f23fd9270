"""A recipe's bundled sample: real small data in the competition's layout, written into a new
folder, so that every recipe runs offline with no download."""

from pathlib import Path

from kit.errors import KitError
from kit.files import building
from kit.recipe import load_competition


def write_sample(name: str, dest: str | Path) -> Path:
    """Write the recipe's bundled sample, in the competition's layout, into a new folder."""
    dest, comp = Path(dest), load_competition(name)
    if not hasattr(comp, "write_sample"):
        raise KitError(f"recipe {name} has no bundled sample; give its data with --data")
    if dest.exists() and any(dest.iterdir()):
        raise KitError(f"{dest} is not empty; give a new folder for the sample")
    with building(dest) as partial:
        comp.write_sample(partial)
    return dest

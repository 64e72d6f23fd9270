"""What `kit new` says about a folder's images and labels in the recipe's comments: the
images' usual size and colour, and how the classes are balanced."""

import statistics
from collections import Counter
from pathlib import Path

from PIL import Image

from kit.data.label_kinds import class_order
from kit.data.photos import opened, too_big
from kit.errors import KitError

MAX_LOOK = 200  # images opened to learn sizes and colours
GREY = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")


def measure_images(files: list[Path]) -> tuple[int, bool, str]:
    """The median side of up to MAX_LOOK images, whether all are grey, and a summary."""
    step = max(1, len(files) // MAX_LOOK)
    sides, modes, sizes = [], Counter(), Counter()
    for f in files[::step][:MAX_LOOK]:
        try:
            with opened(f) as im:  # past the pixel limit: one line (kit/data/photos.py)
                sides.append((im.width + im.height) / 2)
                modes[im.mode] += 1
                sizes[f"{im.width}x{im.height}"] += 1
        except Image.DecompressionBombError as e:  # not an OSError
            raise too_big(f, f"has {e}") from None
        except (OSError, SyntaxError, ValueError):  # unreadable, as photos.decode treats them
            continue
    if not sides:
        raise KitError(f"none of the images looked at can be read, e.g. {files[0]}")
    grey = all(m in GREY for m in modes)
    common = sizes.most_common(1)[0][0]
    kinds = "/".join(m for m, _ in modes.most_common(3))
    return round(statistics.median(sides)), grey, f"{common} {kinds}"


def balance(labels: list) -> str:
    """The classes and their shares: `2 classes, 0 40% / 1 60%`, or the range of counts."""
    counts = Counter(labels)
    if len(counts) > 6:
        top = counts.most_common()
        return f"{len(counts)} classes, {top[-1][1]}-{top[0][1]} images each"
    total = sum(counts.values())
    return f"{len(counts)} classes, " + " / ".join(
        f"{c} {100 * counts[c] / total:.0f}%" for c in class_order(counts)
    )

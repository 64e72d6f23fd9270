"""`kit predict` benchmark: prints the README's table (Code competitions).

A finished Invasive Species run (the recipe at its own 224 px, EfficientNet-Lite0, trained for
one epoch on the bundled sample, TTA off) predicts a test folder of 1154x866 JPEGs (the
competition's size) made from the sample's source photos with noise, as a code competition's
hidden set would be read.

1. Images/s of `kit.predict` as a user calls it (run folder read, models loaded, every image
   decoded, resized and predicted in streamed batches, the submission checked and written)
   against a bare loop over the same network (decode with the same function, stack, normalise,
   forward, softmax, nothing else). Both are warmed up once, then timed alternately, REPEATS
   times each: the median and the range are printed.
2. Peak resident memory of a fresh `kit predict` process on a test set and on one four times
   larger: streaming keeps it flat, where holding the decoded set would add its size.

Run: `python benchmarks/predict.py [--images N] [--work DIR]`. About 6 minutes on 2 CPU cores.
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

import kit
from competitions import invasive
from kit.data.images import decode
from kit.files import read_json
from kit.recipe import saved_recipe
from kit.train.saved import kept_weights, load_model

REPEATS = 3


def photos(folder: Path, n: int, seed: int = 0) -> list[str]:
    """`n` 1154x866 JPEGs from the sample's source photos, each with its own noise; their ids."""
    (folder / "test").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    sources = [invasive.source_photo(name).resize((1154, 866)) for name in invasive.SOURCES]
    ids = []
    for i in range(n):
        noise = rng.integers(-8, 9, (866, 1154, 3))
        base = np.asarray(sources[i % len(sources)], dtype=np.int16)
        pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
        ids.append(f"p{i:05d}")
        Image.fromarray(pixels).save(folder / "test" / f"{ids[-1]}.jpg", quality=90)
    pd.DataFrame({"name": ids, "invasive": 0.5}).to_csv(folder / "sample_submission.csv",
                                                        index=False)  # fmt: skip
    return ids


def bare_loop(run_dir: Path, folder: Path, ids: list[str]) -> np.ndarray:
    """The same network's probabilities from the plainest loop over the files."""
    r = saved_recipe(read_json(run_dir / "recipe.json"))
    (weights,) = kept_weights(run_dir)
    m = load_model(weights, r, 2, torch.device("cpu"))
    out = []
    with torch.inference_mode():
        for i in range(0, len(ids), r.bs):
            batch = [decode(folder / "test" / f"{k}.jpg", r.size, 3) for k in ids[i : i + r.bs]]
            x = torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).float()
            x = ((x - m.mean) / m.std).contiguous(memory_format=torch.channels_last)
            out.append(torch.softmax(m.net(x).float(), -1))
    return torch.cat(out).numpy()


def kit_predict(run_dir: Path, folder: Path, out: Path) -> np.ndarray:
    result = kit.predict("invasive", str(run_dir), data=folder, out=out)
    return pd.read_csv(result["submission"])["invasive"].to_numpy()


def peak_rss_mb(run_dir: Path, folder: Path, out: Path) -> float:
    """Peak resident memory of a fresh process running `kit.predict`, in MB."""
    code = ("import resource, kit; "
            f"kit.predict('invasive', {str(run_dir)!r}, data={str(folder)!r}, out={str(out)!r}); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(done.stdout.strip().splitlines()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="kit-bench-predict-"))
    print(f"working in {work}", file=sys.stderr)
    # the kit's own lines, training and every prediction timed (one log opened, outside the
    # timed calls): not the page's
    with pages.quiet(work / "runs.log"):
        trained = kit.run("invasive", sample=True, out=work, size=224, head_cycles=1, cycles=0,
                          lr=1e-3, tta=False)  # fmt: skip
        run_dir = Path(trained["run_dir"])
        folder = work / "hidden"
        ids = photos(folder, args.images)
        big = work / "hidden-x4"
        photos(big, 4 * args.images, seed=1)

        same = np.allclose(
            kit_predict(run_dir, folder, work), bare_loop(run_dir, folder, ids)[:, 1], atol=1e-5
        )  # fmt: skip (both warmed up; the same probabilities)
        times = {"kit predict": [], "bare loop": []}
        for _ in range(REPEATS):
            for name, fn in (("kit predict", lambda: kit_predict(run_dir, folder, work)),
                             ("bare loop", lambda: bare_loop(run_dir, folder, ids))):  # fmt: skip
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    rate = {k: [len(ids) / s for s in v] for k, v in times.items()}
    ratio = statistics.median(rate["kit predict"]) / statistics.median(rate["bare loop"])

    print(f"\n{len(ids)} test images, 1154x866 JPEG, predicted at 224 px on "
          f"{torch.get_num_threads()} CPU threads; median of {REPEATS} (range)\n")  # fmt: skip
    print("| | images/s | vs bare loop |\n|---|---|---|")
    for name, values in rate.items():
        vs = f"{ratio:.2f}x" if name == "kit predict" else "1.00x"
        print(f"| {name} | {statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f}) "
              f"| {vs} |")  # fmt: skip
    print(f"\nsame probabilities as the bare loop (within 1e-5): {same}")
    small, large = peak_rss_mb(run_dir, folder, work), peak_rss_mb(run_dir, big, work)
    decoded = 4 * args.images * 224 * 224 * 3 / 2**20
    print(
        f"\npeak resident memory of `kit predict`: {small:.0f} MB for {len(ids)} images, "
        f"{large:.0f} MB for {4 * len(ids)} (their decoded pixels: {decoded:.0f} MB)"
    )


if __name__ == "__main__":
    import pages  # the docs page: what this printed

    sys.exit(pages.run(main, "predict"))

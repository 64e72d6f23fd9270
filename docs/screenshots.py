"""The docs' pictures, made from a real run so that they show what the kit does today:
`python docs/screenshots.py` runs `kit run mnist --sample` in a scratch folder, screenshots its
report.html in headless Chromium and copies its main plots into docs/images/ (`make screenshots`).
"""

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

IMAGES = Path(__file__).parent / "images"
PLOTS = [
    "training_curves.png",
    "lr_find.png",
    "confusion_matrix.png",
    "top_losses.png",
    "grad_cam.png",
]
WIDTH = 1000  # pixels: sharp in the docs' content column, small in the repository
CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                "--no-first-run", "--disable-background-networking", "--disable-sync"]  # fmt: skip


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        sys.exit("screenshots: no chromium on PATH (apt-get install chromium)")
    return found


def run_demo(out: Path) -> Path:
    """The demo as a user runs it; its run folder."""
    kit = Path(sys.executable).with_name("kit")
    subprocess.run([str(kit), "run", "mnist", "--sample", "--out", str(out)], check=True)
    (run_dir,) = (out / "runs" / "mnist").iterdir()
    return run_dir


def screenshot(page: Path, shot: Path, height: int) -> None:
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [chromium(), *CHROME_FLAGS, f"--user-data-dir={profile}",
             f"--window-size=1200,{height}", f"--screenshot={shot}", page.as_uri()],
            check=True, capture_output=True, timeout=120, cwd=profile,
        )  # fmt: skip


def save(source: Path, name: str) -> None:
    """`source` as docs/images/`name`, at most WIDTH wide, compressed."""
    image = Image.open(source).convert("RGB")
    if image.width > WIDTH:
        image = image.resize((WIDTH, round(image.height * WIDTH / image.width)), Image.LANCZOS)
    image.quantize(256).save(IMAGES / name, optimize=True)
    print(
        f"{IMAGES / name}: {image.width}x{image.height}, {(IMAGES / name).stat().st_size:,} bytes"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run", type=Path, help="a finished mnist run folder (default: run one)")
    parser.add_argument("--height", type=int, default=1500, help="report screenshot height, px")
    args = parser.parse_args()
    IMAGES.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        run_dir = args.run or run_demo(Path(work))
        shot = Path(work) / "report.png"
        screenshot(run_dir / "report.html", shot, args.height)
        save(shot, "report.png")
        for plot in PLOTS:
            save(run_dir / plot, plot)


if __name__ == "__main__":
    main()

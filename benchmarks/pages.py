"""A benchmark's page in the docs is what the script printed: `pages.run(main, "mnist")` in place
of `main()` tees stdout into benchmarks/results/mnist.md, which docs/benchmarks/mnist.md includes.

The file is written only when the script finishes (an interrupted or failed run keeps the last
page) and never by a `--quick` run, whose numbers mean nothing.
"""

import contextlib
import datetime
import io
import os
import platform
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).parent.parent
RESULTS = ROOT / "benchmarks" / "results"


class Tee(io.TextIOBase):
    """Writes to the terminal and keeps a copy."""

    def __init__(self, stream):
        self.stream, self.copy = stream, io.StringIO()

    def write(self, text):
        self.copy.write(text)
        return self.stream.write(text)

    def flush(self):
        self.stream.flush()


def cpu() -> str:
    info = Path("/proc/cpuinfo")
    names = [ln.split(":", 1)[1].strip() for ln in info.read_text().splitlines()
             if ln.startswith("model name")] if info.exists() else []  # fmt: skip
    return names[0] if names else platform.processor() or platform.machine()


def machine() -> str:
    """The machine the numbers were measured on, in one line."""
    import torch

    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return (
        f"{cpu()}, {os.cpu_count()} CPU cores (torch uses {torch.get_num_threads()}), {gpu}, "
        f"torch {torch.__version__}, Python {platform.python_version()}"
    )


def header(argv: list[str]) -> str:
    script = Path(argv[0]).resolve()
    if script.is_relative_to(ROOT):  # `python -m benchmarks.lr` gives a full path
        script = script.relative_to(ROOT)
    command = shlex.join(["python", str(script), *argv[1:]])
    day = datetime.date.today().isoformat()
    return f"Printed by `{command}` on {day} ({machine()}).\n\n"


@contextlib.contextmanager
def quiet(log: Path):
    """The kit's own lines (runs, epochs) go to `log` instead of the page, which keeps the table."""
    with open(log, "a") as stream, contextlib.redirect_stdout(stream):
        yield


def write(name: str, printed: str, argv: list[str]) -> Path:
    """benchmarks/results/<name>.md: the header and what the script printed, written in one step."""
    RESULTS.mkdir(exist_ok=True)
    page, partial = RESULTS / f"{name}.md", RESULTS / f".{name}.md.partial"
    partial.write_text(header(argv) + printed.strip("\n") + "\n")
    partial.replace(page)
    return page


def run(main: Callable[[], int | None], name: str) -> int | None:
    """Runs the benchmark's main(), then writes its page from what it printed."""
    tee = sys.stdout = Tee(sys.stdout)
    try:
        code = main()
    finally:
        sys.stdout = tee.stream
    if "--quick" in sys.argv:
        print(f"--quick: {RESULTS / name}.md left as it was")
    elif not code:
        print(f"docs page written: {write(name, tee.copy.getvalue(), sys.argv)}")
    return code

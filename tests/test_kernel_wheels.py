"""The wheels dataset serves whichever Python the Kaggle image has: `--push` fetches a compiled
dependency's wheel for each Python Kaggle may run (pip is stood in for: no network here), and the
notebook's install cell, run here for real, installs the ones that fit its own Python."""

import base64
import hashlib
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from kit.errors import KitError
from kit.kaggle.datasets import KAGGLE_PYTHONS
from kit.kaggle.kernel import build_wheels, notebook

try:
    from packaging.tags import sys_tags
except ImportError:
    from pip._vendor.packaging.tags import sys_tags

HERE = next(iter(sys_tags()))  # the tag this Python fits best
THIS = f"{sys.version_info.major}.{sys.version_info.minor}"


def wheel(folder: Path, name: str, tag: str, source: str) -> Path:
    """A real, minimal wheel of the module `name` tagged `tag` (python-abi-platform)."""
    path = folder / f"{name}-1.0-{tag}.whl"
    info = f"{name}-1.0.dist-info"
    files = {
        f"{name}.py": source,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n",
        f"{info}/WHEEL": f"Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: {tag}\n",
    }
    lines = []
    for file, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        lines.append(f"{file},sha256={digest.decode()},{len(text.encode())}")
    files[f"{info}/RECORD"] = "\n".join([*lines, f"{info}/RECORD,,"]) + "\n"
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as z:
        for file, text in files.items():
            z.writestr(file, text)
    return path


def other_pythons() -> list[str]:
    """cp tags of the Pythons Kaggle may have other than this one, on this platform."""
    tags = [f"cp3{v.split('.')[1]}" for v in KAGGLE_PYTHONS if v != THIS]
    return [f"{t}-{t}-{HERE.platform}" for t in tags]


def install(root: Path) -> subprocess.CompletedProcess:
    """The notebook's install cell as `kit kernel` writes it, in a fresh Python with /kaggle
    stood in for by `root`; then which build of each test module it imports."""
    nb = notebook("mnist", "someone/kit-wheels")
    cell = next(c["source"] for c in nb["cells"] if c["id"] == "install")
    probe = "\nimport kitnative, kitpure\nprint(site)\n"
    probe += "print('built for', kitnative.BUILT, kitpure.BUILT)\n"
    env = {**os.environ, "KIT_KAGGLE_ROOT": str(root)}
    env.pop("PYTHONPATH", None)
    return subprocess.run([sys.executable, "-c", cell + probe], env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip


def test_the_install_cell_takes_each_packages_wheel_for_this_python(tmp_path):
    wheels = tmp_path / "input" / "kit-wheels"
    wheel(wheels, "kit", "py3-none-any", "")
    wheel(wheels, "kitpure", "py3-none-any", "BUILT = 'any'")
    for tag in [str(HERE), *other_pythons()]:
        wheel(wheels, "kitnative", tag, f"BUILT = {tag.split('-')[0]!r}")
    done = install(tmp_path)
    assert done.returncode == 0, done.stderr
    site, built = done.stdout.splitlines()
    shutil.rmtree(site)  # the cell's own folder, as a notebook's session would drop it
    assert built.split() == ["built", "for", HERE.interpreter, "any"]


def test_the_install_cell_names_the_wheel_this_python_lacks(tmp_path):
    wheels = tmp_path / "input" / "kit-wheels"
    wheel(wheels, "kit", "py3-none-any", "")
    for tag in other_pythons():
        wheel(wheels, "kitnative", tag, "")
    done = install(tmp_path)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last == (f"RuntimeError: the dataset someone/kit-wheels has no kitnative wheel for "
                    f"this Python ({THIS}): push it again with KIT_KAGGLE_PYTHONS={THIS} "
                    "set")  # fmt: skip


class FakePip:
    """Stands in for `pip wheel` and `pip download` (no network): writes the wheels pip would,
    one compiled wheel per --python-version; a version in `fails` writes one, then fails."""

    def __init__(self, fails=()):
        self.fails, self.downloads = set(fails), []

    def __call__(self, cmd, **kwargs):
        if "wheel" in cmd:
            wheel(Path(cmd[cmd.index("-w") + 1]), "kit", "py3-none-any", "")
        else:
            version, dest = cmd[cmd.index("--python-version") + 1], Path(cmd[cmd.index("-d") + 1])
            platforms = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--platform"]
            self.downloads.append((version, platforms))
            tag = "cp" + version.replace(".", "")
            wheel(dest, "kitnative", f"{tag}-{tag}-manylinux_2_17_x86_64", "")
            if version in self.fails:
                return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution")
            wheel(dest, "kitpure", "py3-none-any", "")
        return subprocess.CompletedProcess(cmd, 0, "", "")


def test_push_fetches_wheels_for_every_python_kaggle_may_have(tmp_path, monkeypatch, capsys):
    pip = FakePip(fails={KAGGLE_PYTHONS[-1]})
    monkeypatch.setattr(subprocess, "run", pip)
    dest = tmp_path / "wheels"
    build_wheels(dest, "someone/kit-wheels", extra=("py7zr",))
    assert [v for v, _ in pip.downloads] == list(KAGGLE_PYTHONS)
    assert all(
        {"manylinux2014_x86_64", "manylinux_2_28_x86_64"} <= set(p) for _, p in pip.downloads
    )
    served = [f"cp{v.replace('.', '')}" for v in KAGGLE_PYTHONS[:-1]]
    native = sorted(re.match(r"kitnative-1.0-(cp\d+)", p.name)[1] for p in dest.glob("kitnative-*"))
    assert native == sorted(served)  # the Python pip could not serve: nothing of it, not half
    assert len(list(dest.glob("kitpure-*.whl"))) == 1 and len(list(dest.glob("kit-*.whl"))) == 1
    assert sorted(p.name for p in dest.iterdir() if p.is_dir()) == []
    assert f"none for {KAGGLE_PYTHONS[-1]}" in capsys.readouterr().out

    monkeypatch.setenv("KIT_KAGGLE_PYTHONS", "3.12")
    pip.downloads.clear()
    build_wheels(tmp_path / "only", "someone/kit-wheels", extra=("py7zr",))
    assert [v for v, _ in pip.downloads] == ["3.12"]


def test_push_stops_when_no_python_gets_its_wheels(tmp_path, monkeypatch):
    monkeypatch.setattr(subprocess, "run", FakePip(fails=KAGGLE_PYTHONS))
    with pytest.raises(KitError, match="pip download.* for Python 3.10 failed: ERROR: No match"):
        build_wheels(tmp_path / "wheels", "someone/kit-wheels", extra=("py7zr",))

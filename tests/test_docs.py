"""The documentation site, read as a reader reads it: built with --strict, then every page opened
in headless Chromium, which checks that it renders, that its images load and that every link
to the site itself lands on a page (and on the heading its #anchor names)."""

import functools
import html
import http.server
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from kit.cli import build_parser
from kit.recipe import field_help

ROOT = Path(__file__).parent.parent
spec = importlib.util.spec_from_file_location("pages", ROOT / "benchmarks" / "pages.py")
pages = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pages)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
HAVE_MKDOCS = all(importlib.util.find_spec(m) for m in ("mkdocs", "material"))
CHROME_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip

# Every page in an iframe: the load event waits for all of them and their images; then each
# page's links are looked up among the pages (and their ids) and the site's files.
CHECK = """<!doctype html><html><body><pre id="result"></pre>
%(frames)s
<script>
const FILES = new Set(%(files)s);
addEventListener("load", () => {
  const frames = [...document.querySelectorAll("iframe")];
  const docs = Object.fromEntries(frames.map(f => [new URL(f.src).pathname, f.contentDocument]));
  const results = frames.map(frame => {
    const doc = frame.contentDocument, here = frame.contentWindow.location.href;
    const images = [...doc.images], broken = [];
    for (const a of doc.querySelectorAll("a[href]")) {
      const url = new URL(a.getAttribute("href"), here);
      if (url.origin !== location.origin) continue;
      const target = docs[url.pathname], id = decodeURIComponent(url.hash.slice(1));
      const ok = target ? (!id || target.getElementById(id)) : FILES.has(url.pathname) && !id;
      if (!ok) broken.push(a.getAttribute("href"));
    }
    const h1 = doc.querySelector("article h1"), article = doc.querySelector("article");
    return {path: new URL(frame.src).pathname, h1: h1 ? h1.textContent.trim() : null,
      text: article ? article.textContent.length : 0, images: images.length,
      loaded: images.filter(im => im.complete && im.naturalWidth > 0).length, broken};
  });
  document.getElementById("result").textContent = JSON.stringify(results);
});
</script></body></html>"""


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    if not HAVE_MKDOCS:
        pytest.skip("mkdocs-material is not installed (pip install -e '.[dev]')")
    out = tmp_path_factory.mktemp("docs") / "site"
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={"NO_MKDOCS_2_WARNING": "1", "PATH": str(Path(sys.executable).parent)},
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-3000:]
    return out


def page_paths(site: Path) -> list[str]:
    found = sorted(p.relative_to(site).parent.as_posix() for p in site.rglob("index.html"))
    return ["/" if p == "." else f"/{p}/" for p in found]


@pytest.mark.skipif(not CHROMIUM, reason="no chromium on PATH (apt-get install chromium)")
def test_every_page_renders_with_its_images_and_links_in_a_browser(site, tmp_path):
    paths = page_paths(site)
    files = ["/" + p.relative_to(site).as_posix() for p in site.rglob("*") if p.is_file()]
    frames = "\n".join(f'<iframe src="{p}" width="1200" height="800"></iframe>' for p in paths)
    (site / "check.html").write_text(CHECK % {"frames": frames, "files": json.dumps(files)})
    handler = functools.partial(Quiet, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        dom = subprocess.run(
            [CHROMIUM, *CHROME_FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
             "--dump-dom",
             f"http://127.0.0.1:{server.server_port}/check.html"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        server.shutdown()
    found = re.search(r'<pre id="result">(.*?)</pre>', dom.stdout, re.S)
    assert found and found.group(1), dom.stderr[-2000:]
    results = json.loads(found.group(1))
    assert [r["path"] for r in results] == paths and len(paths) > 20
    for r in results:
        assert r["h1"] and r["text"] > 200, r
        assert r["loaded"] == r["images"], r
        assert not r["broken"], r
    pictured = {r["path"]: r["images"] for r in results}
    assert pictured["/"] >= 1 and pictured["/explanations/house-schedule/"] >= 4


def test_the_reference_is_generated_from_the_code(site):
    recipe = (site / "reference" / "recipe" / "index.html").read_text()
    text = html.unescape(re.sub(r"<[^>]+>", "", recipe))
    for name, help_ in field_help().items():
        assert f'id="{name}"' in recipe and help_.replace("`", "") in text, name
    commands = (site / "reference" / "commands" / "index.html").read_text()
    sub = next(a for a in build_parser()._actions if hasattr(a, "choices") and a.choices)
    for name in sub.choices:
        assert f'id="kit-{name}"' in commands, name
    assert "--pseudo-threshold" in commands or "pseudo_threshold" not in field_help()


def test_a_benchmark_writes_its_page_from_what_it_printed(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(pages, "RESULTS", tmp_path)
    monkeypatch.setattr(sys, "argv", ["benchmarks/demo.py", "--rows", "10"])
    assert pages.run(lambda: print("| a | b |\n|---|---|\n| 1 | 2 |"), "demo") is None
    page = (tmp_path / "demo.md").read_text()
    assert page.startswith("Printed by `python benchmarks/demo.py --rows 10` on ")
    assert page.endswith("\n\n| a | b |\n|---|---|\n| 1 | 2 |\n")
    assert "| 1 | 2 |" in capsys.readouterr().out  # still printed as it ran

    def fails():
        print("half a table")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        pages.run(fails, "demo")
    monkeypatch.setattr(sys, "argv", ["benchmarks/demo.py", "--quick"])
    pages.run(lambda: print("numbers that mean nothing"), "demo")
    assert (tmp_path / "demo.md").read_text() == page
    assert [p.name for p in tmp_path.iterdir()] == ["demo.md"]

"""Every chapter executes with the small profile, and the book built from them renders cleanly.

One test per chapter, so that a failure names it. The build test then renders the executed chapters with
Jupyter Book (warnings as errors) and opens every chapter's HTML page to check that it holds its figures
and no error or stderr output (warnings printed by a library would show up there). Where headless
Chromium is installed (Debian packages ``chromium`` and ``chromium-driver``), a last test takes a
screenshot of every chapter page and checks that the browser drew it; it is skipped elsewhere.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest

from course_lib.benchmark import read_profiles
from course_lib.book import execute_chapter

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted(path.stem for path in (ROOT / "book").glob("*.py"))
SMALL = read_profiles()["small"]
pytestmark = pytest.mark.notebook


@pytest.fixture(scope="session")
def book_copy(tmp_path_factory):
    """A copy of the book sources in which the tests put their executed chapters."""
    target = tmp_path_factory.mktemp("book")
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(ROOT / name, target / name)
    shutil.copytree(ROOT / "book", target / "book", ignore=shutil.ignore_patterns("*.ipynb", "*.profile"))
    return target


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_executes_with_the_small_profile(chapter, book_copy):
    output = book_copy / "book" / f"{chapter}.ipynb"
    execute_chapter(ROOT / "book" / f"{chapter}.py", output, parameters=SMALL)
    notebook = nbformat.read(output, as_version=4)
    errors = [
        o
        for c in notebook.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.output_type == "error"
    ]
    assert not errors
    assert any(c.cell_type == "code" and "parameters" in c.metadata.get("tags", []) for c in notebook.cells)


def test_book_builds_and_every_chapter_shows_its_figures(book_copy):
    missing = [c for c in CHAPTERS if not (book_copy / "book" / f"{c}.ipynb").exists()]
    if missing:
        pytest.skip(f"chapters not executed (see their own test failures): {missing}")
    build = subprocess.run(
        [Path(sys.executable).with_name("jupyter-book"), "build", book_copy, "-W", "--keep-going"],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    html = book_copy / "_build" / "html"
    assert (html / "index.html").exists()
    for chapter in CHAPTERS:
        page = (html / "book" / f"{chapter}.html").read_text()
        assert re.search(r'<img[^>]+src="[^"]*_images/', page), f"{chapter}: no executed figure in the page"
        assert "Traceback" not in page and 'class="output traceback' not in page, f"{chapter}: error output"
        assert 'class="output stderr' not in page, f"{chapter}: stderr output (a warning?) in the page"
        if 'class="math' in page:  # formulas must render offline: MathJax comes from the site itself
            assert 'src="../_static/mathjax/tex-chtml.js"' in page, f"{chapter}: MathJax not loaded locally"
    assert (html / "_static" / "mathjax" / "tex-chtml.js").exists(), "the site lacks its copy of MathJax"


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed")


def built_page(book_copy: Path, chapter: str) -> Path:
    page = book_copy / "_build" / "html" / "book" / f"{chapter}.html"
    if not page.exists():
        pytest.skip("the book was not built (see test_book_builds_and_every_chapter_shows_its_figures)")
    return page


def headless_chromium(page: Path, profile: Path, *options: str) -> subprocess.CompletedProcess:
    """Open ``page`` in headless Chromium with a fresh profile and no network use beyond the page."""
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
    ]
    return subprocess.run(
        [CHROMIUM, *flags, *options, page.as_uri()], capture_output=True, text=True, timeout=180, check=False
    )


@needs_chromium
@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_page_renders_in_a_browser(chapter, book_copy, tmp_path):
    from PIL import Image

    shot = tmp_path / f"{chapter}.png"
    headless_chromium(
        built_page(book_copy, chapter),
        tmp_path / "profile",
        "--window-size=1280,4000",
        f"--screenshot={shot}",
    )
    assert shot.exists(), f"{chapter}: Chromium wrote no screenshot"
    pixels = np.asarray(Image.open(shot).convert("L"))
    assert pixels.shape == (4000, 1280)
    # A drawn page has text and figures: many dark pixels and many distinct grey levels.
    assert (pixels < 128).mean() > 0.005 and np.unique(pixels).size > 50, f"{chapter}: the page looks blank"


@needs_chromium
def test_formulas_are_typeset_without_a_network(book_copy, tmp_path):
    """MathJax from the site's own copy (see the build test) typesets the formulas of chapter 3."""
    dom = headless_chromium(
        built_page(book_copy, "03_scgen"), tmp_path / "profile", "--virtual-time-budget=10000", "--dump-dom"
    ).stdout
    assert dom.count("<mjx-container") >= 5, "the formulas of chapter 3 were not typeset"

"""Every chapter executes with the small profile, and the book built from them renders cleanly.

One test per chapter, so that a failure names it. The build test then checks the book that
``conftest.built_book`` renders from the executed chapters with Jupyter Book (warnings as errors), opening
every chapter's HTML page to check that it holds its figures and no error or stderr output (warnings
printed by a library would show up there). The last tests take a screenshot of every chapter page in
headless Chromium and check that the browser drew it, and that the formulas are typeset offline; they
fail where Chromium is missing (see ``conftest.chromium``). What a learner sees on the site is checked
in ``test_site.py``.
"""

from __future__ import annotations

import re

import nbformat
import numpy as np
import pytest
from conftest import CHAPTERS, ROOT, SMALL, headless_chromium

from course_lib.book import execute_chapter

pytestmark = pytest.mark.notebook


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


def test_book_builds_and_every_chapter_shows_its_figures(built_book, book_copy):
    assert built_book.returncode == 0, built_book.stdout[-4000:] + built_book.stderr[-4000:]
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


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_page_renders_in_a_browser(chapter, site, chromium, tmp_path):
    from PIL import Image

    shot = tmp_path / f"{chapter}.png"
    headless_chromium(
        chromium,
        site / "book" / f"{chapter}.html",
        tmp_path / "profile",
        "--window-size=1280,4000",
        f"--screenshot={shot}",
    )
    assert shot.exists(), f"{chapter}: Chromium wrote no screenshot"
    pixels = np.asarray(Image.open(shot).convert("L"))
    assert pixels.shape == (4000, 1280)
    # A drawn page has text and figures: many dark pixels and many distinct grey levels.
    assert (pixels < 128).mean() > 0.005 and np.unique(pixels).size > 50, f"{chapter}: the page looks blank"


def test_formulas_are_typeset_without_a_network(site, chromium, tmp_path):
    """MathJax from the site's own copy (see the build test) typesets the formulas of chapter 3."""
    page = site / "book" / "03_scgen.html"
    dom = headless_chromium(
        chromium, page, tmp_path / "profile", "--virtual-time-budget=10000", "--dump-dom"
    ).stdout
    assert dom.count("<mjx-container") >= 5, "the formulas of chapter 3 were not typeset"
